"""A simulator of the CQC Syndication API (``/public/v1``) in the real API's shapes.

Subscription-key check (401 with the API's body), 403 without ``User-Agent``, paging,
filters, ``/changes/location`` and ``/changes/provider`` windows (the real API has the
latter in the same shape, though the spec beside the adapter lists only the former), 404
for some changed IDs, a per-key rate limit (429 with ``Retry-After``), the "soft" 429
(HTTP 200 whose body says 429) and 5xx, and changes listed late (``listing_lag_s``: a
change appears in the windows that cover its time only that long after it), all switched
on by settings with a seed.

    python -m simulators.cqc_api --locations FILE --providers FILE --port 8102
"""

from __future__ import annotations

import argparse
import copy
import math
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
import uvicorn
from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

MISSING_KEY = (
    "Access denied due to missing subscription key. Make sure to include subscription key "
    "when making requests to an API."
)
INVALID_KEY = (
    "Access denied due to invalid subscription key. Make sure to provide a valid key for an "
    "active subscription."
)


Key = Annotated[str | None, Header(alias="Ocp-Apim-Subscription-Key")]
Agent = Annotated[str | None, Header(alias="User-Agent")]


class CqcSimulatorSettings(BaseModel):
    subscription_key: str = "demo-subscription-key"
    seed: int = 1
    requests_per_minute: float = 0.0  # 0: no limit
    soft_429_rate: float = 0.0
    hard_429_rate: float = 0.0
    error_rate: float = 0.0
    retry_after_s: int = 1
    vanished_ids: list[str] = []  # changed IDs that answer 404 on detail
    failing_ids: list[str] = []  # location or provider IDs whose detail always answers 500
    failing_changes: list[str] = []  # "location", "provider": that /changes/ listing answers 500
    # How long after its time a change is listed by /changes/location or /changes/provider
    # (as the registry does when it indexes changes late or its clock lags): until then a
    # window that covers its time leaves it out.
    listing_lag_s: float = 0.0


Change = tuple[datetime, str, datetime | None]


def _moment(text: str) -> datetime | None:
    """An ISO 8601 time (UTC when it names no offset), or None when it is not one."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class CqcApiSimulator:
    def __init__(
        self,
        locations: list[dict[str, Any]],
        providers: list[dict[str, Any]],
        settings: CqcSimulatorSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.locations = {r["locationId"]: copy.deepcopy(r) for r in locations}
        self.providers = {r["providerId"]: copy.deepcopy(r) for r in providers}
        # Each change: its time, the location (or provider), and when it is listed (None:
        # its time plus the settings' listing lag).
        self.changes: list[Change] = []
        self.provider_changes: list[Change] = []
        self.random = random.Random(settings.seed)
        self.lock = threading.Lock()
        self.clock = clock
        self.tokens = max(1.0, settings.requests_per_minute / 60.0)  # a fresh client finds it full
        self.refilled = clock()
        self.detail_calls = 0
        self.location_calls: list[str] = []  # the location IDs asked for, in order
        self.provider_calls: list[str] = []  # the provider IDs asked for, in order
        self.windows: list[tuple[str, str]] = []  # the /changes/location windows asked for
        self.provider_windows: list[tuple[str, str]] = []  # the /changes/provider ones
        self._bodies: dict[str, bytes] = {}

    def serialised(self, location_id: str) -> bytes | None:
        """A location's JSON, serialised once until it changes."""
        body = self._bodies.get(location_id)
        if body is None:
            record = self.locations.get(location_id)
            if record is None:
                return None
            body = self._bodies[location_id] = orjson.dumps(record)
        return body

    def change_location(
        self,
        location_id: str,
        changes: dict[str, Any],
        at: datetime | None = None,
        listed_at: datetime | None = None,
    ) -> None:
        """Change a location's record at ``at`` (now by default). /changes/location lists
        the change from ``listed_at`` on (by default ``listing_lag_s`` after ``at``); its
        detail shows the change at once."""
        with self.lock:
            self._bodies.pop(location_id, None)
            self.locations[location_id].update(copy.deepcopy(changes))
            self.changes.append((at or datetime.now(UTC), location_id, listed_at))

    def list_late(self, record_id: str) -> None:
        """List the location's (or provider's) changes not listed yet now, at their own
        times (as the registry does when it indexes a change late)."""
        now = datetime.now(UTC)

        def listed_now(log: list[Change]) -> list[Change]:
            return [
                (at, i, now if i == record_id and self._listed_at(at, listed) > now else listed)
                for at, i, listed in log
            ]

        with self.lock:
            self.changes = listed_now(self.changes)
            self.provider_changes = listed_now(self.provider_changes)

    def listed_changes(self, start: datetime, end: datetime, providers: bool = False) -> list[str]:
        """The IDs /changes/location (or /changes/provider) lists now for [start, end),
        each once."""
        now = datetime.now(UTC)
        with self.lock:
            log = self.provider_changes if providers else self.changes
            return list(
                dict.fromkeys(
                    i for at, i, listed in log if start <= at < end and self._listed_at(at, listed) <= now
                )
            )

    def _listed_at(self, at: datetime, listed: datetime | None) -> datetime:
        return listed if listed is not None else at + timedelta(seconds=self.settings.listing_lag_s)

    def change_provider(
        self,
        provider_id: str,
        changes: dict[str, Any],
        at: datetime | None = None,
        listed_at: datetime | None = None,
    ) -> None:
        """Change a provider's record at ``at`` (now by default; its locations' records stay
        as they are). /changes/provider lists the change from ``listed_at`` on (by default
        ``listing_lag_s`` after ``at``); its detail shows the change at once."""
        with self.lock:
            self.providers[provider_id].update(copy.deepcopy(changes))
            self.provider_changes.append((at or datetime.now(UTC), provider_id, listed_at))

    def deregister(self, location_id: str, at: datetime | None = None) -> None:
        self.change_location(
            location_id,
            {
                "registrationStatus": "Deregistered",
                "deregistrationDate": datetime.now(UTC).date().isoformat(),
            },
            at,
        )

    def truth(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(self.locations)

    def draw(self) -> float:
        with self.lock:
            return self.random.random()

    def over_limit(self) -> bool:
        rate = self.settings.requests_per_minute / 60.0
        if rate <= 0:
            return False
        with self.lock:
            now = self.clock()
            # The bucket holds a second's worth of calls, and one call at least: below
            # 60 a minute it would otherwise never fill to one token and refuse every call.
            self.tokens = min(max(1.0, rate), self.tokens + (now - self.refilled) * rate)
            self.refilled = now
            if self.tokens < 1:
                return True
            self.tokens -= 1
            return False


def create_app(
    locations: list[dict[str, Any]],
    providers: list[dict[str, Any]],
    settings: CqcSimulatorSettings | None = None,
) -> FastAPI:
    sim = CqcApiSimulator(locations, providers, settings or CqcSimulatorSettings())
    app = FastAPI(title="CQC Syndication API (simulator)")
    app.state.simulator = sim

    def refuse(request: Request, user_agent: str | None, key: str | None) -> Response | None:
        key = key or request.query_params.get("subscription-key")
        if not key:
            return JSONResponse({"statusCode": 401, "message": MISSING_KEY}, status_code=401)
        if key != sim.settings.subscription_key:
            return JSONResponse({"statusCode": 401, "message": INVALID_KEY}, status_code=401)
        if not user_agent:
            return Response(
                "<html><body>403 Forbidden</body></html>", status_code=403, media_type="text/html"
            )
        if sim.over_limit() or sim.draw() < sim.settings.hard_429_rate:
            return JSONResponse(
                {"statusCode": 429, "message": "Rate limit is exceeded."},
                status_code=429,
                headers={"Retry-After": str(sim.settings.retry_after_s)},
            )
        if sim.draw() < sim.settings.soft_429_rate:
            return JSONResponse(
                {
                    "statusCode": 429,
                    "message": f"Rate limit is exceeded. Try again in {sim.settings.retry_after_s} seconds.",
                }
            )
        if sim.draw() < sim.settings.error_rate:
            return Response(
                "<html><body>502 Bad Gateway</body></html>", status_code=502, media_type="text/html"
            )
        return None

    def paged(
        uri: str, items: list[Any], key: str, page: int, per_page: int, extra: str = ""
    ) -> dict[str, Any]:
        pages = max(1, math.ceil(len(items) / per_page))

        def link(n: int) -> str:
            return f"{uri}?page={n}&perPage={per_page}{extra}"

        return {
            "total": len(items),
            "page": page,
            "perPage": per_page,
            "totalPages": pages,
            "firstPageUri": link(1),
            "previousPageUri": link(page - 1) if page > 1 else None,
            "nextPageUri": link(page + 1) if page < pages else None,
            "lastPageUri": link(pages),
            "uri": uri,
            key: items[(page - 1) * per_page : page * per_page],
        }

    @app.get("/public/v1/locations")
    async def list_locations(
        request: Request,
        key: Key = None,
        agent: Agent = None,
        page: Annotated[int, Query(ge=1)] = 1,
        perPage: Annotated[int, Query(ge=1, le=10000)] = 500,  # noqa: N803
        careHome: Annotated[list[str] | None, Query()] = None,  # noqa: N803
        region: Annotated[list[str] | None, Query()] = None,
        localAuthority: Annotated[list[str] | None, Query()] = None,  # noqa: N803
    ) -> Response:
        if (refused := refuse(request, agent, key)) is not None:
            return refused
        rows = [
            r
            for _, r in sorted(sim.locations.items())
            if (not careHome or r.get("careHome") in careHome)
            and (not region or r.get("region") in region)
            and (not localAuthority or r.get("localAuthority") in localAuthority)
        ]
        summary = [
            {"locationId": r["locationId"], "locationName": r["name"], "postalCode": r.get("postalCode")}
            for r in rows
        ]
        return Response(
            orjson.dumps(paged("/locations", summary, "locations", page, perPage)),
            media_type="application/json",
        )

    @app.get("/public/v1/locations/{location_id}")
    async def one_location(
        request: Request, location_id: str, key: Key = None, agent: Agent = None
    ) -> Response:
        if (refused := refuse(request, agent, key)) is not None:
            return refused
        with sim.lock:
            sim.detail_calls += 1
            sim.location_calls.append(location_id)
        if location_id != location_id.upper():
            return JSONResponse({"statusCode": 400, "message": "Invalid location id"}, status_code=400)
        if location_id in sim.settings.failing_ids:
            return Response("<html><body>500</body></html>", status_code=500, media_type="text/html")
        body = sim.serialised(location_id)
        if body is None or location_id in sim.settings.vanished_ids:
            return JSONResponse({"statusCode": 404, "message": "Not found"}, status_code=404)
        return Response(body, media_type="application/json")

    @app.get("/public/v1/providers/{provider_id}")
    async def one_provider(
        request: Request, provider_id: str, key: Key = None, agent: Agent = None
    ) -> Response:
        if (refused := refuse(request, agent, key)) is not None:
            return refused
        with sim.lock:
            sim.provider_calls.append(provider_id)
        if provider_id != provider_id.upper():
            return JSONResponse({"statusCode": 400, "message": "Invalid provider id"}, status_code=400)
        if provider_id in sim.settings.failing_ids:
            return Response("<html><body>500</body></html>", status_code=500, media_type="text/html")
        record = sim.providers.get(provider_id)
        if record is None:
            return JSONResponse({"statusCode": 404, "message": "Not found"}, status_code=404)
        return Response(orjson.dumps(record), media_type="application/json")

    @app.get("/public/v1/changes/{kind}")
    async def changes(
        request: Request,
        kind: str,
        startTimestamp: str,  # noqa: N803
        endTimestamp: str,  # noqa: N803
        key: Key = None,
        agent: Agent = None,
        page: Annotated[int, Query(ge=1)] = 1,
        perPage: Annotated[int, Query(ge=1, le=10000)] = 1000,  # noqa: N803
    ) -> Response:
        """A page of the IDs of locations or providers (``kind``) changed in the window."""
        if kind not in ("location", "provider"):
            return JSONResponse({"statusCode": 404, "message": "Not found"}, status_code=404)
        if (refused := refuse(request, agent, key)) is not None:
            return refused
        window = (startTimestamp, endTimestamp)
        start, end = _moment(startTimestamp), _moment(endTimestamp)
        if start is None or end is None:
            message = "startTimestamp and endTimestamp must be ISO 8601 times, e.g. 2025-01-01T00:00:00Z"
            return JSONResponse({"statusCode": 400, "message": message}, status_code=400)
        if kind in sim.settings.failing_changes:
            return Response("<html><body>500</body></html>", status_code=500, media_type="text/html")
        providers = kind == "provider"
        with sim.lock:
            (sim.provider_windows if providers else sim.windows).append(window)
        ids = sim.listed_changes(start, end, providers=providers)
        extra = f"&startTimestamp={_stamp(start)}&endTimestamp={_stamp(end)}"
        return Response(
            orjson.dumps(paged(f"/changes/{kind}", ids, "changes", page, perPage, extra)),
            media_type="application/json",
        )

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="CQC Syndication API simulator")
    parser.add_argument("--locations", required=True)
    parser.add_argument("--providers", required=True)
    parser.add_argument("--port", type=int, default=8102)
    parser.add_argument("--subscription-key", default="demo-subscription-key")
    parser.add_argument("--requests-per-minute", type=float, default=0.0)
    parser.add_argument(
        "--listing-lag-s", type=float, default=0.0, help="list each change this long after its time"
    )
    args = parser.parse_args(argv)
    with open(args.locations, "rb") as handle:
        locations = orjson.loads(handle.read())
    with open(args.providers, "rb") as handle:
        providers = orjson.loads(handle.read())
    settings = CqcSimulatorSettings(
        subscription_key=args.subscription_key,
        requests_per_minute=args.requests_per_minute,
        listing_lag_s=args.listing_lag_s,
    )
    uvicorn.run(
        create_app(locations, providers, settings), host="127.0.0.1", port=args.port, log_level="warning"
    )


if __name__ == "__main__":  # pragma: no cover
    main()
