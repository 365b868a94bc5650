"""HTTP client of the CQC Syndication API: subscription key, client-side rate limit,
the shared retry policy, the API's "soft" 429 (HTTP 200 with a 429 body), and a wait the
API asks for (``Retry-After``, or "Try again in N seconds") kept by every call of the
client, not only the one that was told."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from aiolimiter import AsyncLimiter

from adapters.common.http import (
    REQUEST_FAULTS,
    RetryPolicy,
    TransientUpstreamError,
    UpstreamConfigurationError,
    UpstreamError,
    check_status,
    json_body,
    raise_for_transport,
    redact_url,
    seconds_from_message,
)
from adapters.cqc.mapping import parse_list_page

log = logging.getLogger(__name__)
USER_AGENT = "care-capacity-gateway/0.1 (+https://care-capacity-gateway.example)"


def rate_limiter(requests_per_minute: float) -> AsyncLimiter:
    """A bucket that lets ``requests_per_minute`` through a minute, however low, in bursts
    of up to a second's worth of calls (one call at least), so a fresh client never sends
    the API a minute's worth at once."""
    per_second = max(requests_per_minute, 0.01) / 60.0
    burst = max(1.0, per_second)
    return AsyncLimiter(burst, burst / per_second)


class CqcClient:
    """Talks to the CQC API; knows nothing of the store."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        subscription_key: str,
        retry: RetryPolicy | None = None,
        requests_per_minute: float = 500.0,
        user_agent: str = USER_AGENT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` (seconds, monotonic) times the waits the API asks for; they are slept
        with the retry policy's ``sleep``."""
        self._http = http
        self._base = base_url.rstrip("/")
        self._headers = {"Ocp-Apim-Subscription-Key": subscription_key, "User-Agent": user_agent}
        self._retry = retry or RetryPolicy()
        self._limiter = rate_limiter(requests_per_minute)
        self._clock = clock
        # No call of this client is sent before this instant (of ``clock``): the API asked
        # the client to wait until then.
        self._not_before = float("-inf")
        self.requests = 0

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy every call of the client goes through."""
        return self._retry

    def _asked_to_wait(self, seconds: float) -> None:
        """The API asked to wait ``seconds`` from now: every call of the client waits."""
        self._not_before = max(self._not_before, self._clock() + seconds)

    async def _wait_as_asked(self) -> None:
        """Wait until the time the API named has passed (again if, meanwhile, another call
        was told to wait longer)."""
        while (delay := self._not_before - self._clock()) > 0:
            until = self._not_before
            await self._retry.sleep(delay)
            if self._not_before <= until:
                return

    async def _get(self, path: str, params: dict[str, Any] | None = None, missing_ok: bool = False) -> Any:
        async def call() -> Any:
            await self._wait_as_asked()
            async with self._limiter:
                # A call told to wait while this one queued for the rate limit holds it too.
                await self._wait_as_asked()
                self.requests += 1
                try:
                    response = await self._http.get(
                        f"{self._base}{path}", params=params, headers=self._headers
                    )
                except REQUEST_FAULTS as exc:
                    raise_for_transport(exc)
            try:
                return self._answer(response, missing_ok)
            except UpstreamError as error:
                # A wait longer than a run waits ends the run instead: never held by the
                # other calls (they would sleep it out before the run could end).
                if error.retry_after is not None and not self._retry.waits_too_long(error):
                    self._asked_to_wait(error.retry_after)
                raise

        def on_retry(attempt: int, error: BaseException) -> None:
            log.warning("CQC call failed (try %d): %s", attempt, error)

        return await self._retry.run(call, on_retry)

    @staticmethod
    def _answer(response: httpx.Response, missing_ok: bool) -> Any:
        """The body of an answer, None for a 404 when ``missing_ok``, or the classified
        error (a soft 429 too)."""
        what = f"GET {redact_url(response.request.url)}"
        if missing_ok and response.status_code == 404:
            return None
        if response.status_code == 401:
            raise UpstreamConfigurationError(f"{what}: the subscription key was refused", status_code=401)
        check_status(response, what=what)
        body = json_body(response, what=what)
        if isinstance(body, dict) and body.get("statusCode") == 429:
            message = str(body.get("message", ""))
            raise TransientUpstreamError(
                f"{what}: throttled (soft 429)",
                status_code=429,
                retry_after=seconds_from_message(message),
            )
        return body

    async def list_care_home_ids(self, page_size: int = 1000) -> AsyncIterator[list[str]]:
        """Every care home's location ID, a page at a time."""
        page = 1
        while True:
            body = await self._get("/locations", {"careHome": "Y", "page": page, "perPage": page_size})
            ids, following = parse_list_page(body)
            yield ids
            if not following:
                return
            page += 1

    async def get_location(self, location_id: str) -> dict[str, Any] | None:
        """One full location record, or None when the API says 404."""
        found: dict[str, Any] | None = await self._get(f"/locations/{location_id}", missing_ok=True)
        return found

    async def get_provider(self, provider_id: str) -> dict[str, Any] | None:
        """One provider's record (name, ownership, Companies House number, locations), or
        None when the API says 404."""
        found: dict[str, Any] | None = await self._get(f"/providers/{provider_id}", missing_ok=True)
        return found

    async def changed_location_ids(self, start: str, end: str, page_size: int = 1000) -> list[str]:
        """Location IDs changed in [start, end), every page."""
        return await self._changed("location", start, end, page_size)

    async def changed_provider_ids(self, start: str, end: str, page_size: int = 1000) -> list[str]:
        """Provider IDs changed in [start, end), every page (``/changes/provider``: not in
        the spec beside the adapter, but the real API offers it in the same shape as
        ``/changes/location``)."""
        return await self._changed("provider", start, end, page_size)

    async def _changed(self, kind: str, start: str, end: str, page_size: int) -> list[str]:
        out: list[str] = []
        page = 1
        while True:
            body = await self._get(
                f"/changes/{kind}",
                {"startTimestamp": start, "endTimestamp": end, "page": page, "perPage": page_size},
            )
            out.extend(str(i) for i in body.get("changes") or [])
            if page >= int(body.get("totalPages") or 1):
                return out
            page += 1
