"""A wait the CQC API asks for that is longer than a run waits: the run ends at once and
nothing sleeps it out, whichever call was told (a detail call's 5xx too)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from adapters.common.http import RetryPolicy, TransientUpstreamError
from adapters.cqc.client import CqcClient
from adapters.cqc.source import CqcSource, RegistryBatch

BASE = "https://cqc.example/public/v1"
IDS = [f"1-{n}" for n in range(1, 21)]


class Clock:
    """A clock that the retry policy's sleeps move on at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _client(clock: Clock) -> CqcClient:
    return CqcClient(
        httpx.AsyncClient(),
        BASE,
        "k3y",
        RetryPolicy(max_attempts=4, sleep=clock.sleep),
        requests_per_minute=60_000,
        clock=clock,
    )


def _record(location_id: str) -> dict[str, Any]:
    return {
        "locationId": location_id,
        "providerId": "1-9",
        "name": f"Home {location_id}",
        "careHome": "Y",
        "registrationStatus": "Registered",
        "numberOfBeds": 30,
    }


def _listing() -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "total": len(IDS),
            "page": 1,
            "totalPages": 1,
            "nextPageUri": None,
            "locations": [{"locationId": i} for i in IDS],
        },
    )


TOO_LONG = {
    "5xx": lambda: httpx.Response(503, headers={"Retry-After": "3600"}, text="<html/>"),
    "429": lambda: httpx.Response(429, headers={"Retry-After": "3600"}, json={"statusCode": 429}),
    "soft 429": lambda: httpx.Response(
        200, json={"statusCode": 429, "message": "Rate limit is exceeded. Try again in 3600 seconds."}
    ),
}


@pytest.mark.parametrize("kind", sorted(TOO_LONG))
@respx.mock
async def test_a_detail_call_asked_to_wait_too_long_ends_the_run_and_nothing_waits(kind: str) -> None:
    clock = Clock()
    client = _client(clock)
    respx.get(f"{BASE}/locations").mock(return_value=_listing())
    told = respx.get(f"{BASE}/locations/1-3").mock(side_effect=lambda _: TOO_LONG[kind]())
    details = respx.get(url__regex=rf"{BASE}/locations/1-\d+").mock(
        side_effect=lambda request: httpx.Response(200, json=_record(request.url.path.rsplit("/", 1)[1]))
    )
    failed: list[tuple[str, str]] = []

    async def keep(batch: RegistryBatch) -> None:
        failed.extend(batch.failed)

    with pytest.raises(
        TransientUpstreamError, match="asked to wait 3600 s, longer than a run waits"
    ) as ended:
        await CqcSource(client, concurrency=4).full_sync(set(), keep)
    assert "/locations/1-3" in str(ended.value)
    # Not skipped as that location's own failure: the run ended, not asked again, not slept.
    assert failed == [] and told.call_count == 1
    assert clock.sleeps == [] and clock.now == 0.0
    # The client holds no wait for its later calls either (a client used again by the
    # next run, say): a call goes at once.
    assert await client.get_location("1-4") == _record("1-4")
    assert clock.sleeps == [] and details.call_count >= 1


@respx.mock
async def test_a_5xx_asking_to_wait_within_the_limit_is_still_waited_by_every_call() -> None:
    """A wait a run does wait (here a minute) holds every call of the client until it has
    passed, and a location that keeps failing so is skipped as its own failure."""
    clock = Clock()
    client = _client(clock)
    respx.get(f"{BASE}/locations").mock(return_value=_listing())
    told = respx.get(f"{BASE}/locations/1-3").mock(
        return_value=httpx.Response(503, headers={"Retry-After": "60"}, text="<html/>")
    )
    respx.get(url__regex=rf"{BASE}/locations/1-\d+").mock(
        side_effect=lambda request: httpx.Response(200, json=_record(request.url.path.rsplit("/", 1)[1]))
    )
    stored: list[str] = []
    failed: list[str] = []

    async def keep(batch: RegistryBatch) -> None:
        stored.extend(r["cqc_location_id"] for r in batch.rows)
        failed.extend(key for key, _ in batch.failed)

    assert await CqcSource(client, concurrency=1).full_sync(set(), keep) == len(IDS)
    assert failed == ["1-3"] and told.call_count == 4 and len(stored) == len(IDS) - 1
    assert clock.now >= 3 * 60.0 and all(s <= 60.0 for s in clock.sleeps)
