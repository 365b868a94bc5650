"""HTTP client of the CQC Syndication API: subscription key, client-side rate limit,
the shared retry policy, and the API's "soft" 429 (HTTP 200 with a 429 body)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from aiolimiter import AsyncLimiter

from adapters.common.http import (
    RetryPolicy,
    TransientUpstreamError,
    UpstreamConfigurationError,
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
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._headers = {"Ocp-Apim-Subscription-Key": subscription_key, "User-Agent": user_agent}
        self._retry = retry or RetryPolicy()
        self._limiter = rate_limiter(requests_per_minute)
        self.requests = 0

    async def _get(self, path: str, params: dict[str, Any] | None = None, missing_ok: bool = False) -> Any:
        async def call() -> Any:
            async with self._limiter:
                self.requests += 1
                try:
                    response = await self._http.get(
                        f"{self._base}{path}", params=params, headers=self._headers
                    )
                except httpx.TransportError as exc:
                    raise_for_transport(exc)
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

        def on_retry(attempt: int, error: BaseException) -> None:
            log.warning("CQC call failed (try %d): %s", attempt, error)

        return await self._retry.run(call, on_retry)

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
