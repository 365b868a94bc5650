"""HTTP client of London's bed tracker: OAuth2 client credentials, cursor paging, retries.

OAuth: Authlib's httpx integration (``AsyncOAuth2Client``) is itself an
``httpx.AsyncClient``, so it would bring its own connection pool beside the gateway's one
shared client, and it renews only on expiry, not on the tracker's early revocation (401
``invalid_token``). So the token request is one form POST on the shared client, and
Authlib's ``OAuth2Token`` keeps the token and its expiry; a 401 on an API call fetches a
new token once and retries that call once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.oauth2.rfc6749 import OAuth2Token

from adapters.common.http import (
    REQUEST_FAULTS,
    RetryPolicy,
    TransientUpstreamError,
    UpstreamConfigurationError,
    UpstreamDataError,
    check_status,
    json_body,
    raise_for_transport,
    redact_url,
)
from gateway.schemas import validator

log = logging.getLogger(__name__)
MAX_LISTING_RESTARTS = 3
PAGE_SCHEMA = "london-tracker-page.schema.json"


class CursorExpired(Exception):
    """The listing's cursor expired (410): the listing must start again."""


@dataclass(frozen=True)
class HomesPage:
    """One page of a listing: the raw homes, the listing's ``as_of`` and its number;
    ``last`` when the listing has no page after it."""

    number: int
    homes: list[dict[str, Any]]
    as_of: str
    restarts: int
    last: bool = False


class LondonTrackerClient:
    """Talks to the tracker; knows nothing of the national model or the store."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        client_id: str,
        client_secret: str,
        retry: RetryPolicy | None = None,
        page_size: int = 200,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._retry = retry or RetryPolicy()
        self.page_size = page_size
        self._token: OAuth2Token | None = None

    async def fetch_token(self) -> OAuth2Token:
        """A new access token (client credentials)."""
        try:
            response = await self._http.post(
                f"{self._base}/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": self._client_id,
                    "client_secret": self._client_secret,
                    "scope": "beds.read",
                },
            )
        except REQUEST_FAULTS as exc:
            raise_for_transport(exc)
        if response.status_code == 401:
            raise UpstreamConfigurationError("London tracker refused the client credentials", status_code=401)
        check_status(response, what="POST /oauth/token")
        body = json_body(response, what="POST /oauth/token")
        if not isinstance(body, dict) or "access_token" not in body:
            raise UpstreamDataError("token answer without access_token")
        self._token = OAuth2Token.from_dict(body)
        return self._token

    async def _authorised_get(self, path: str, params: dict[str, Any]) -> httpx.Response:
        if self._token is None or self._token.is_expired(leeway=30):
            await self.fetch_token()
        renewed = False
        while True:
            assert self._token is not None
            try:
                response = await self._http.get(
                    f"{self._base}{path}",
                    params=params,
                    headers={"Authorization": f"Bearer {self._token['access_token']}"},
                )
            except REQUEST_FAULTS as exc:
                raise_for_transport(exc)
            if response.status_code == 401 and not renewed:
                log.info("London tracker token refused; fetching a new one")
                await self.fetch_token()
                renewed = True
                continue
            return response

    async def _page(self, params: dict[str, Any]) -> dict[str, Any]:
        async def call() -> dict[str, Any]:
            response = await self._authorised_get("/api/v2/homes", params)
            if response.status_code == 410:
                raise CursorExpired()
            if response.status_code == 401:
                raise UpstreamConfigurationError("London tracker refused a renewed token", status_code=401)
            check_status(response, what=f"GET {redact_url(response.request.url)}")
            body = json_body(response, what="GET /api/v2/homes")
            problems = validator(PAGE_SCHEMA).problems(body)
            if problems:
                # A garbled page, like one that is not JSON: asked for again, then given up.
                # Where, not what: the values are the upstream's data, and this text is
                # logged and kept with the run.
                where = ", ".join(sorted({p.pointer or "/" for p in problems}))
                raise TransientUpstreamError(
                    f"GET /api/v2/homes: the page breaks the contract at {where} "
                    "(schemas/london-tracker-page.schema.json)"
                )
            page: dict[str, Any] = body
            return page

        def on_retry(attempt: int, error: BaseException) -> None:
            log.warning("London tracker page failed (try %d): %s", attempt, error)

        return await self._retry.run(call, on_retry)

    async def list_homes(self, updated_since: str | None) -> AsyncGenerator[HomesPage, None]:
        """Every page of a listing of homes updated at or after ``updated_since`` (the
        previous listing's ``as_of``, passed on verbatim: the upstream's clock, not ours).

        The next page is requested as soon as a page arrives, so it is on its way while
        the caller works on the page it was given (at most one request ahead).

        A 410 (cursor expired) restarts the listing from its first page, at most
        ``MAX_LISTING_RESTARTS`` times; pages already yielded are not taken back, so the
        caller sees those homes again (the store answers 'unchanged' for them).
        """
        restarts = 0
        while True:
            params: dict[str, Any] = {"page_size": self.page_size}
            if updated_since is not None:
                params["updated_since"] = updated_since
            number = 0
            following: asyncio.Task[dict[str, Any]] | None = None
            try:
                body = await self._page(params)
                while True:
                    number += 1
                    cursor = body.get("next_cursor")
                    if cursor:
                        following = asyncio.create_task(
                            self._page({"page_size": self.page_size, "cursor": cursor})
                        )
                    yield HomesPage(number, body["homes"], body["as_of"], restarts, last=not cursor)
                    if following is None:
                        return
                    requested, following = following, None
                    body = await requested
            except CursorExpired:
                restarts += 1
                if restarts > MAX_LISTING_RESTARTS:
                    raise TransientUpstreamError(
                        "London listing cursor kept expiring", status_code=410
                    ) from None
                log.info("London listing cursor expired; restarting the listing (%d)", restarts)
            finally:
                if following is not None:
                    await _discard(following)


async def _discard(task: asyncio.Task[Any]) -> None:
    """Cancel a page request nobody will read and wait for it to end; if it had already
    failed, its error goes with it (the listing is over either way)."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()
