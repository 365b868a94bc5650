"""A realistic simulator of London's care-home bed tracker (API v2), quirks included.

It implements the contract of ``shared/specs/london-tracker-api.md``: OAuth2 client
credentials, cursor paging with ``as_of`` and ``updated_since``, cursors that expire (410),
tokens that expire or are revoked (401), 429 with ``Retry-After`` past 120 requests a minute
per client, 5xx with HTML bodies, slow pages, non-JSON 200 bodies and malformed homes.

A listing pages through the live homes in ``(updated_at, home_ref)`` order, each cursor
carrying the key of the last home it showed: a home updated during the listing moves to
the end and comes again on a later page, as the contract warns. Each cursor expires 15
minutes after it was handed out. Faults are switched on by settings
(rates and a seed) and on demand by tests (``revoke_tokens``, ``expire_cursors``).

    python -m simulators.london_tracker --homes var/demo-data/london/homes.json --port 8101
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import copy
import hashlib
import math
import random
import secrets
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import uvicorn
from fastapi import FastAPI, Form, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel


class LondonSimulatorSettings(BaseModel):
    client_id: str = "gateway"
    client_secret: str = "secret"
    token_ttl_s: float = 3600.0
    cursor_ttl_s: float = 900.0
    seed: int = 1
    error_rate: float = 0.0  # share of calls (token requests too) answered 500/502/503/504
    rate_limit_per_minute: int = 120  # per client, as the contract says; 0: no limit
    retry_after_s: int = 1  # Retry-After of a throttle fault; the limit's 429 tells its own wait
    slow_rate: float = 0.0
    slow_seconds: float = 0.0
    non_json_rate: float = 0.0
    malformed_rate: float = 0.0  # share of homes served malformed (chosen by home_ref)
    throttle_rate: float = 0.0  # share of calls (token requests too) answered 429, whatever the rate
    revoke_tokens_at_request: int | None = None  # revoke every token once, at this listing call
    expire_cursors_at_request: int | None = None  # expire every cursor once, at this listing call


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


class LondonTrackerSimulator:
    """The tracker's state: homes, tokens, listings, and the faults to play."""

    def __init__(self, homes: list[dict[str, Any]], settings: LondonSimulatorSettings) -> None:
        self.settings = settings
        self.homes: dict[str, dict[str, Any]] = {h["home_ref"]: copy.deepcopy(h) for h in homes}
        self.tokens: dict[str, tuple[float, str]] = {}  # token -> (expiry, client id)
        self.listings: dict[str, tuple[datetime | None, str]] = {}  # id -> (updated_since, as_of)
        self._order: list[tuple[datetime, str]] | None = None  # the homes by (updated_at, ref)
        self.calls: deque[tuple[str, float]] = deque()  # (client, clock()) in the last minute
        self.random = random.Random(settings.seed)
        self.lock = threading.Lock()
        self.request_count = 0
        self._clock_offset = 0.0

    # --- clock and test hooks -----------------------------------------------------------
    def now(self) -> datetime:
        return datetime.fromtimestamp(time.time() + self._clock_offset, UTC).replace(microsecond=0)

    def clock(self) -> float:
        """Monotonic seconds, moved on by ``advance_clock`` (token and cursor expiry, the
        rate limit's window)."""
        return time.monotonic() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        self._clock_offset += seconds

    def revoke_tokens(self) -> None:
        """Every token issued so far answers 401 invalid_token from now on."""
        with self.lock:
            self.tokens.clear()

    def expire_cursors(self) -> None:
        """Every cursor handed out so far answers 410 cursor_expired from now on."""
        with self.lock:
            self.listings.clear()

    def update_home(self, home_ref: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change a home as its provider would; its ``updated_at`` moves to the clock."""
        with self.lock:
            home = self.homes[home_ref]
            home.update(copy.deepcopy(changes))
            home["updated_at"] = self.now().isoformat().replace("+00:00", "Z")
            self._order = None
            return copy.deepcopy(home)

    def provider_update(self) -> str | None:
        """One provider updates its home as providers do: a bed moves between occupied and
        free (the figures still add up), and its ``updated_at`` moves to the clock. Returns
        the home's ref (None when no open home has beds to move)."""
        with self.lock:
            refs = [
                ref for ref, home in self.homes.items() if home.get("status") == "OPEN" and home.get("beds")
            ]
            if not refs:
                return None
            ref = self.random.choice(refs)
            beds = self.random.choice(self.homes[ref]["beds"])
        if beds["free_now"] > 0 and (beds["occupied"] == 0 or self.random.random() < 0.5):
            change = {"occupied": beds["occupied"] + 1, "free_now": beds["free_now"] - 1}
        elif beds["occupied"] > 0:
            change = {"occupied": beds["occupied"] - 1, "free_now": beds["free_now"] + 1}
        else:
            change = {}
        updated = [dict(b, **change) if b is beds else b for b in self.homes[ref]["beds"]]
        self.update_home(ref, {"beds": updated})
        return ref

    def live(self, updates_per_minute: float, stop: threading.Event) -> None:
        """Providers keep updating their homes (``updates_per_minute`` in all) until ``stop``."""
        while not stop.wait(60.0 / updates_per_minute):
            self.provider_update()

    def truth(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(self.homes)

    def malformed_refs(self) -> set[str]:
        """The homes served malformed (fixed by the seed and the rate)."""
        rate = self.settings.malformed_rate
        return {ref for ref in self.homes if self._fraction(ref) < rate}

    def _fraction(self, ref: str) -> float:
        digest = hashlib.sha256(f"{self.settings.seed}:{ref}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    # --- protocol -------------------------------------------------------------------
    def issue_token(self, client_id: str) -> str:
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = (self.clock() + self.settings.token_ttl_s, client_id)
        return token

    def client_of(self, authorization: str | None) -> str | None:
        """The client a valid bearer token was issued to, or None."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        with self.lock:
            expires, client = self.tokens.get(authorization[7:], (0.0, ""))
        return client if expires > self.clock() else None

    def throttled(self, client: str) -> int | None:
        """None when the client is within its limit (the call is counted), else the whole
        seconds until its oldest call in the 60-second window leaves it (at least 1). The
        window runs on ``clock()``, so ``advance_clock`` moves it on."""
        limit = self.settings.rate_limit_per_minute
        if limit <= 0:
            return None
        now = self.clock()
        with self.lock:
            while self.calls and self.calls[0][1] <= now - 60:
                self.calls.popleft()
            mine = [at for c, at in self.calls if c == client]
            if len(mine) >= limit:
                return max(1, math.ceil(mine[0] + 60 - now))
            self.calls.append((client, now))
        return None

    def draw(self) -> float:
        with self.lock:
            return self.random.random()

    def start_listing(self, updated_since: datetime | None) -> str:
        with self.lock:
            listing_id = secrets.token_hex(6)
            self.listings[listing_id] = (updated_since, self.now().isoformat().replace("+00:00", "Z"))
        return listing_id

    def page(
        self, listing_id: str, after: tuple[datetime, str] | None, size: int
    ) -> tuple[list[dict[str, Any]], tuple[datetime, str] | None, str] | None:
        """The next ``size`` homes of a listing after the key ``after`` (None: from the
        start), the key to go on from (None: the last page), and the listing's ``as_of``;
        None when the listing is unknown (its cursors expired)."""
        with self.lock:
            listing = self.listings.get(listing_id)
            if listing is None:
                return None
            since, as_of = listing
            order = self._ordered()
            start = 0 if after is None else bisect.bisect_right(order, after)
            if since is not None:
                start = max(start, bisect.bisect_left(order, (since, "")))
            chosen = order[start : start + size]
            homes = [self._served(copy.deepcopy(self.homes[ref])) for _, ref in chosen]
            following = chosen[-1] if chosen and start + size < len(order) else None
        return homes, following, as_of

    def _ordered(self) -> list[tuple[datetime, str]]:
        if self._order is None:
            self._order = sorted((_instant(h["updated_at"]), ref) for ref, h in self.homes.items())
        return self._order

    def _served(self, home: dict[str, Any]) -> dict[str, Any]:
        if self._fraction(home["home_ref"]) >= self.settings.malformed_rate:
            return home
        kind = int(self._fraction(home["home_ref"] + "kind") * 3)
        if kind == 0:
            home.pop("name", None)
        elif kind == 1 and home["beds"]:
            home["beds"][0]["occupied"] = "seventeen"
        else:
            home["updated_at"] = "yesterday afternoon"
        return home


def _cursor(listing_id: str, after: tuple[datetime, str], issued: float) -> str:
    """An opaque cursor: the listing, the key of the last home shown, when it was issued."""
    data = {"l": listing_id, "u": after[0].isoformat(), "r": after[1], "t": issued}
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode()


def _uncursor(cursor: str) -> tuple[str, tuple[datetime, str], float] | None:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        return str(data["l"]), (_instant(data["u"]), str(data["r"])), float(data["t"])
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        return None


def _error(status: int, error: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def create_app(homes: list[dict[str, Any]], settings: LondonSimulatorSettings | None = None) -> FastAPI:
    """The simulator as a FastAPI app; its state is ``app.state.simulator``."""
    sim = LondonTrackerSimulator(homes, settings or LondonSimulatorSettings())
    app = FastAPI(title="London Care Home Bed Tracker (simulator)")
    app.state.simulator = sim

    async def played(client: str) -> Response | None:
        """The faults every call may meet, the token request's too: the client's rate limit
        (its own 429 says how long until the window frees), then, at their rates, a
        throttle, a 5xx and a slow answer."""
        if (wait := sim.throttled(client)) is not None:
            return _error(429, "rate_limited", {"Retry-After": str(wait)})
        if sim.draw() < sim.settings.throttle_rate:
            return _error(429, "rate_limited", {"Retry-After": str(sim.settings.retry_after_s)})
        if sim.draw() < sim.settings.error_rate:
            status = sim.random.choice([500, 502, 503, 504])
            if sim.draw() < 0.5:
                return Response(
                    f"<html><body><h1>{status} Upstream trouble</h1></body></html>",
                    status_code=status,
                    media_type="text/html",
                )
            return _error(status, "server_error")
        if sim.draw() < sim.settings.slow_rate:
            await asyncio.sleep(sim.settings.slow_seconds)
        return None

    @app.post("/oauth/token")
    async def token(
        grant_type: Annotated[str, Form()],
        client_id: Annotated[str, Form()] = "",
        client_secret: Annotated[str, Form()] = "",
        scope: Annotated[str, Form()] = "beds.read",
    ) -> Response:
        if (refused := await played(client_id)) is not None:
            return refused
        if grant_type != "client_credentials":
            return _error(400, "unsupported_grant_type")
        if client_id != sim.settings.client_id or client_secret != sim.settings.client_secret:
            return _error(401, "invalid_client")
        return JSONResponse(
            {
                "access_token": sim.issue_token(client_id),
                "token_type": "Bearer",
                "expires_in": int(sim.settings.token_ttl_s),
                "scope": scope,
            }
        )

    async def faults(request: Request, authorization: str | None) -> Response | None:
        sim.request_count += 1
        if sim.request_count == sim.settings.revoke_tokens_at_request:
            sim.revoke_tokens()
        if sim.request_count == sim.settings.expire_cursors_at_request:
            sim.expire_cursors()
        client = sim.client_of(authorization)
        if client is None:
            return _error(401, "invalid_token")
        return await played(client)

    @app.get("/api/v2/homes")
    async def list_homes(
        request: Request,
        authorization: Annotated[str | None, Header()] = None,
        updated_since: str | None = None,
        page_size: Annotated[int, Query()] = 100,
        cursor: str | None = None,
    ) -> Response:
        if (refused := await faults(request, authorization)) is not None:
            return refused
        if not 1 <= page_size <= 500:
            return _error(400, "page_size must be 1..500")
        if cursor is None:
            try:
                since = _instant(updated_since) if updated_since else None
            except ValueError:
                return _error(400, "updated_since is not an ISO 8601 instant")
            listing_id, after = sim.start_listing(since), None
        else:
            parsed = _uncursor(cursor)
            if parsed is None:
                return _error(400, "bad cursor")
            listing_id, after, issued = parsed
            if sim.clock() - issued > sim.settings.cursor_ttl_s:
                return _error(410, "cursor_expired")
        page = sim.page(listing_id, after, page_size)
        if page is None:
            return _error(410, "cursor_expired")
        homes, following, as_of = page
        if sim.draw() < sim.settings.non_json_rate:
            return Response(
                b"<html>Service temporarily busy</html>", status_code=200, media_type="application/json"
            )
        body = {
            "homes": homes,
            "next_cursor": _cursor(listing_id, following, sim.clock()) if following is not None else None,
            "as_of": as_of,
        }
        return Response(orjson.dumps(body), media_type="application/json")

    @app.get("/api/v2/homes/{home_ref}")
    async def one_home(
        request: Request, home_ref: str, authorization: Annotated[str | None, Header()] = None
    ) -> Response:
        if (refused := await faults(request, authorization)) is not None:
            return refused
        home = sim.truth().get(home_ref)
        if home is None:
            return _error(404, "not_found")
        return Response(orjson.dumps(sim._served(home)), media_type="application/json")

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="London care-home bed tracker simulator")
    parser.add_argument("--homes", required=True)
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--client-id", default="gateway")
    parser.add_argument("--client-secret", default="secret")
    parser.add_argument(
        "--updates-per-minute",
        type=float,
        default=0.0,
        help="providers keep updating their homes, this many updates a minute in all (0: never)",
    )
    args = parser.parse_args(argv)
    with open(args.homes, "rb") as handle:
        homes = orjson.loads(handle.read())
    settings = LondonSimulatorSettings(client_id=args.client_id, client_secret=args.client_secret)
    app = create_app(homes, settings)
    stop = threading.Event()
    if args.updates_per_minute > 0:
        live = threading.Thread(
            target=app.state.simulator.live, args=(args.updates_per_minute, stop), daemon=True
        )
        live.start()
    try:
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    finally:
        stop.set()


if __name__ == "__main__":  # pragma: no cover
    main()
