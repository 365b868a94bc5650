"""What a CQC run records: counts that add up to the records seen (an ID the API answers
404 for is no record it sent), and a wait the API asks for that is longer than a run waits
failing the run at once, never slept."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from adapters.common.http import RetryPolicy
from adapters.cqc.client import CqcClient
from gateway.settings import Settings
from gateway.store.tables import SyncRun
from gateway.sync.cqc import sync_cqc_full, sync_cqc_incremental
from simulators.cqc_api import CqcSimulatorSettings, create_app
from simulators.server import run_in_thread
from tests.sync.test_cqc_sync import cursor_of, registry, run

BASE = "https://cqc.example/public/v1"


def _record(location_id: str, provider_id: str = "1-900") -> dict[str, Any]:
    return {
        "locationId": location_id,
        "providerId": provider_id,
        "name": f"Home {location_id}",
        "careHome": "Y",
        "registrationStatus": "Registered",
        "numberOfBeds": 30,
        "region": "London",
        "postalCode": "NW8 9AA",
        "localAuthority": "Westminster",
    }


def _statuses(run: SyncRun) -> int:
    return run.accepted + run.unchanged + run.stale + run.rejected + run.held


def test_ids_answering_404_are_in_the_warnings_not_the_records_seen(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    """A location and a provider the API answers 404 for are named in the warnings, and
    the run's counts add up to its records seen: each record the API sent, once."""
    records = [_record(f"1-{100 + n}") for n in range(4)] + [_record("1-104", provider_id="1-901")]
    providers = [
        {"providerId": "1-900", "name": "P Ltd", "locationIds": [r["locationId"] for r in records[:4]]}
    ]
    app = create_app(records, providers, CqcSimulatorSettings(subscription_key="k3y", vanished_ids=["1-102"]))
    with run_in_thread(app) as url:
        full = run(sync_cqc_full, settings, factory, f"{url}/public/v1")
        again = run(sync_cqc_full, settings, factory, f"{url}/public/v1")
    assert full.status == "succeeded", full.error_message
    assert sorted(full.warnings) == [
        "1-102: not found (404) on detail; skipped",
        "provider 1-901: not found (404) on detail; skipped",
    ]
    # Four locations and one provider sent; the two 404s are no records.
    assert (full.records_seen, full.accepted) == (5, 5)
    assert full.records_seen == _statuses(full)
    assert sorted(registry(factory)) == ["1-100", "1-101", "1-103", "1-104"]
    # A full sync run again asks for the 404s again: still in neither.
    assert again.status == "succeeded", again.error_message
    assert again.records_seen == _statuses(again) == again.unchanged


def test_a_detail_call_asked_to_wait_too_long_fails_the_run_at_once(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    """A location answered 503 with ``Retry-After: 3600`` (over the policy's 5 minutes):
    the run fails (transient) at once, naming the call and the wait, nothing is slept and
    the cursor stays, so the next run asks for the same window again."""
    ids = [f"1-{n}" for n in range(1, 6)]
    busy = {"1-3"}
    sleeps: list[float] = []
    calls: list[str] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        calls.append(path)
        if path.endswith("/changes/location"):
            return httpx.Response(200, json={"total": len(ids), "page": 1, "totalPages": 1, "changes": ids})
        if path.endswith("/changes/provider"):
            return httpx.Response(200, json={"total": 0, "page": 1, "totalPages": 1, "changes": []})
        if path.startswith("/public/v1/providers/"):
            return httpx.Response(200, json={"providerId": "1-900", "name": "P Ltd", "locationIds": ids})
        location_id = path.rsplit("/", 1)[1]
        if location_id in busy:
            return httpx.Response(503, headers={"Retry-After": "3600"}, text="<html/>")
        return httpx.Response(200, json=_record(location_id))

    def client() -> CqcClient:
        http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
        return CqcClient(
            http, BASE, "k3y", RetryPolicy(max_attempts=6, sleep=sleep), requests_per_minute=60_000
        )

    failed = run(sync_cqc_incremental, settings, factory, BASE, client=client())
    assert failed.status == "failed" and failed.error_class == "transient"
    message = failed.error_message or ""
    assert "/locations/1-3: HTTP 503" in message and "asked to wait 3600 s" in message
    assert sleeps == [] and calls.count("/public/v1/locations/1-3") == 1
    assert not [w for w in failed.warnings if "1-3" in w]  # not skipped as its own failure
    assert cursor_of(factory) == {}  # the window is asked for again

    busy.clear()
    again = run(sync_cqc_incremental, settings, factory, BASE, client=client())
    assert again.status == "succeeded", again.error_message
    assert sorted(registry(factory)) == ids and sleeps == []
