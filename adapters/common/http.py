"""One retry policy and one failure classification for every upstream.

Every adapter turns what an upstream answered into either data or one of the errors
below; :class:`RetryPolicy` retries the transient ones with exponential backoff
(honouring ``Retry-After``) a bounded number of times, then lets the last error through
so the sync run fails, is recorded with its failure class, and the last good data stays.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import orjson
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_SECRET_PARAMS = frozenset({"client_secret", "subscription-key", "access_token", "token", "password", "key"})


class FailureClass(StrEnum):
    """Why a sync run failed; recorded on every run."""

    CONFIGURATION = "configuration"  # bad credentials, bad URL: a person must act
    TRANSIENT = "transient"  # 429, 5xx, time-outs, garbled pages: retried, then given up
    UPSTREAM_DATA = "upstream-data"  # the upstream sent data we cannot use
    INTERNAL = "internal"  # a fault of the gateway's own


class UpstreamError(Exception):
    """An upstream call failed. ``failure_class`` says what kind of failure it was."""

    failure_class: FailureClass = FailureClass.INTERNAL

    def __init__(
        self, message: str, *, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after


class TransientUpstreamError(UpstreamError):
    """Worth retrying: throttling, server errors, time-outs, a page that is not JSON."""

    failure_class = FailureClass.TRANSIENT


class UpstreamConfigurationError(UpstreamError):
    """Retrying will not help: credentials or request are wrong."""

    failure_class = FailureClass.CONFIGURATION


class UpstreamDataError(UpstreamError):
    """The upstream answered, but with data that breaks its contract."""

    failure_class = FailureClass.UPSTREAM_DATA


def redact_url(url: str | httpx.URL) -> str:
    """The URL with secret query parameters and any credentials in it (``user:password@``,
    as a base URL behind a proxy may carry) masked, safe to log."""
    parts = urlsplit(str(url))
    query = [
        (k, "***" if k.lower() in _SECRET_PARAMS else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, in either of its forms (RFC 9110):
    delta-seconds (``120``) or an HTTP date (``Wed, 21 Oct 2026 07:28:00 GMT``, counted
    from ``now``); None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # '-0000' or an obsolete zone: the HTTP date is GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(seconds, 0.0) if math.isfinite(seconds) else None


_TRY_AGAIN = re.compile(r"try again in (\d+(?:\.\d+)?) second", re.IGNORECASE)


def seconds_from_message(message: str) -> float | None:
    """Seconds from a message such as '... Try again in 7 seconds.'"""
    match = _TRY_AGAIN.search(message)
    return float(match.group(1)) if match else None


# What a call to an upstream can raise before it has an answer to judge: network faults
# (time-outs, refused connections, broken protocol) and a body that cannot be decoded as
# its Content-Encoding says (a truncated gzip stream).
REQUEST_FAULTS = (httpx.TransportError, httpx.DecodingError)


def raise_for_transport(exc: httpx.RequestError) -> None:
    """Turn a network-level failure (time-out, refused connection, a body that cannot be
    decoded) into a transient error."""
    raise TransientUpstreamError(f"{type(exc).__name__} calling upstream") from exc


def check_status(response: httpx.Response, *, what: str) -> None:
    """Raise the classified error for a non-2xx answer; return on success.

    Callers handle the codes that mean something special to them (401 renewal, 404,
    410) before calling this.
    """
    status = response.status_code
    if status < 300:
        return
    if status in RETRYABLE_STATUS:
        raise TransientUpstreamError(
            f"{what}: HTTP {status}",
            status_code=status,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    if status in (401, 403):
        raise UpstreamConfigurationError(f"{what}: HTTP {status} (access refused)", status_code=status)
    raise UpstreamConfigurationError(f"{what}: HTTP {status}", status_code=status)


def json_body(response: httpx.Response, *, what: str) -> Any:
    """The JSON body of a successful answer; a body that is not JSON is a transient fault."""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise TransientUpstreamError(
            f"{what}: HTTP {response.status_code} body is not JSON", status_code=response.status_code
        ) from exc


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff; ``Retry-After`` wins when given.

    An upstream that asks to wait (``Retry-After``) is never asked again sooner. When it
    asks for longer than ``max_retry_after_s``, the run does not wait that long: it fails
    (transient) at once and the next scheduled run tries again.
    """

    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 300.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def delay_for(self, attempt: int, error: BaseException | None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based) after ``error``."""
        if isinstance(error, UpstreamError) and error.retry_after is not None:
            return error.retry_after
        return min(self.base_delay_s * (2 ** (attempt - 1)), self.max_delay_s)

    def waits_too_long(self, error: BaseException) -> bool:
        """Does ``error`` ask to wait longer than a run waits (``max_retry_after_s``)? Such
        a wait is never slept: the run fails at once and the next run tries again."""
        return (
            isinstance(error, UpstreamError)
            and error.retry_after is not None
            and error.retry_after > self.max_retry_after_s
        )

    def _retryable(self, error: BaseException) -> bool:
        return isinstance(error, TransientUpstreamError) and not self.waits_too_long(error)

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        return self.delay_for(state.attempt_number, error)

    async def run(
        self,
        call: Callable[[], Awaitable[T]],
        on_retry: Callable[[int, BaseException], None] | None = None,
    ) -> T:
        """Run ``call``, retrying transient upstream errors; re-raise the last one."""

        def before_sleep(state: RetryCallState) -> None:
            if on_retry is not None and state.outcome is not None:
                error = state.outcome.exception()
                if error is not None:
                    on_retry(state.attempt_number, error)

        async def once() -> T:
            try:
                return await call()
            except UpstreamError as error:
                if not self.waits_too_long(error):
                    raise
                assert error.retry_after is not None
                raise type(error)(
                    f"{error}; asked to wait {error.retry_after:g} s, longer than a run waits "
                    f"({self.max_retry_after_s:g} s): the next run tries again",
                    status_code=error.status_code,
                    retry_after=error.retry_after,
                ) from error

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(self._retryable),
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await once()
        raise AssertionError("unreachable: tenacity re-raises the last error")
