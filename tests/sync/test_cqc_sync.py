"""The CQC registry over real HTTP: full sync with faults, incremental windows, resume."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from adapters.common.http import RetryPolicy
from adapters.cqc.mapping import registry_row
from gateway.ingest.service import apply_updates
from gateway.model.capacity import LocationUpdate
from gateway.reconcile.service import reconcile
from gateway.settings import Settings
from gateway.store import reconciliation as findings_queries
from gateway.store import registry as registry_queries
from gateway.store import repository
from gateway.store.db import transaction
from gateway.store.tables import SyncRun, utcnow
from gateway.sync.cqc import sync_cqc_full, sync_cqc_incremental
from gateway.sync.sources import SyncContext
from simulators.cqc_api import CqcApiSimulator, CqcSimulatorSettings, create_app
from simulators.server import run_in_thread
from tests.factories import location, vacancy

SHARED = Path(__file__).resolve().parents[1] / "fixtures" / "cqc"


def registry_records() -> list[dict[str, Any]]:
    base = orjson.loads((SHARED / "location-henley-house.json").read_bytes())
    records = orjson.loads((SHARED / "locations-south-west-2021.json").read_bytes())
    for n in range(300):
        records.append(
            {
                **base,
                "locationId": f"1-{900000000 + n}",
                "name": f"Demo Home {n}",
                "numberOfBeds": 10 + n % 50,
            }
        )
    return records


@pytest.fixture
def cqc() -> Iterator[tuple[str, CqcApiSimulator]]:
    settings = CqcSimulatorSettings(
        subscription_key="k3y",
        seed=5,
        error_rate=0.05,
        soft_429_rate=0.05,
        hard_429_rate=0.03,
        retry_after_s=0,
        vanished_ids=["1-900000003"],
    )
    app = create_app(registry_records(), [], settings)
    with run_in_thread(app) as url:
        yield f"{url}/public/v1", app.state.simulator


def run(job: Any, settings: Settings, factory: sessionmaker[Session], url: str, key: str = "k3y") -> SyncRun:
    settings = settings.model_copy(
        update={
            "cqc_base_url": url,
            "cqc_subscription_key": SecretStr(key),
            "cqc_requests_per_minute": 60_000,
        }
    )

    async def go() -> SyncRun:
        async with httpx.AsyncClient(timeout=10) as http:
            retry = RetryPolicy(max_attempts=8, base_delay_s=0.01, max_delay_s=0.05)
            return await job(SyncContext(factory, http, settings, options={"retry": retry}))

    return asyncio.run(go())


def registry(factory: sessionmaker[Session]) -> dict[str, dict[str, Any]]:
    with factory() as session:
        return registry_queries.registry_snapshot(session)


def expected(sim: CqcApiSimulator, skip: set[str] = frozenset()) -> dict[str, dict[str, Any]]:  # type: ignore[assignment]
    return {i: registry_row(r) for i, r in sim.truth().items() if i not in skip}


def test_full_then_incremental_sync_mirror_the_registry(
    cqc: tuple[str, CqcApiSimulator], settings: Settings, factory: sessionmaker[Session]
) -> None:
    url, sim = cqc
    full = run(sync_cqc_full, settings, factory, url)
    assert full.status == "succeeded", full.error_message
    assert registry(factory) == expected(sim, {"1-900000003"})
    assert any("1-900000003" in w for w in full.warnings)

    with factory() as session:
        cursor = repository.get_sync_cursor(session, "cqc")
    assert cursor is not None and cursor["incremental_end"] == cursor["full_started_at"][:19] + "Z"
    start = datetime.fromisoformat(cursor["incremental_end"].replace("Z", "+00:00"))
    sim.change_location("1-900000010", {"numberOfBeds": 99}, at=start)
    sim.deregister("1-900000011", at=start)
    # The API's windows are in whole seconds and end at 'now': a full sync that ended in
    # the second it started leaves nothing to fetch until the next second begins.
    time.sleep(max(0.0, (start + timedelta(seconds=1) - utcnow()).total_seconds()))
    incremental = run(sync_cqc_incremental, settings, factory, url)
    assert incremental.status == "succeeded", incremental.error_message
    assert incremental.accepted == 2
    after = registry(factory)
    assert after["1-900000010"]["registered_beds"] == 99
    assert after["1-900000011"]["registration_status"] == "Deregistered"
    with factory() as session:
        moved = repository.get_sync_cursor(session, "cqc")
    assert moved is not None and moved["incremental_end"] > cursor["incremental_end"]
    # The next window starts where this one ended: nothing new, nothing fetched.
    again = run(sync_cqc_incremental, settings, factory, url)
    assert again.status == "succeeded" and again.records_seen == 0


def test_interrupted_full_sync_resumes(
    cqc: tuple[str, CqcApiSimulator], settings: Settings, factory: sessionmaker[Session]
) -> None:
    url, sim = cqc
    sim.settings.error_rate = sim.settings.soft_429_rate = sim.settings.hard_429_rate = 0.0
    sim.settings.vanished_ids = []
    ids = sorted(sim.truth())
    # A dozen locations of the second batch of 200 fail: more than a run tolerates.
    sim.settings.failing_ids = ids[250:262]
    interrupted = run(sync_cqc_full, settings, factory, url)
    assert interrupted.status == "failed" and interrupted.error_class == "transient"
    kept = len(registry(factory))
    assert 0 < kept < len(ids) and kept % 200 == 0  # whole batches stored before the failure
    sim.settings.failing_ids = []
    resumed = run(sync_cqc_full, settings, factory, url)
    assert resumed.status == "succeeded", resumed.error_message
    assert resumed.records_seen == len(ids) - kept  # it did not start from zero
    assert registry(factory) == expected(sim)
    with factory() as session:
        cursor = repository.get_sync_cursor(session, "cqc") or {}
    assert cursor["full_completed_at"] >= cursor["full_started_at"]
    # The next full sync is a new one: everything is fetched again.
    fresh = run(sync_cqc_full, settings, factory, url)
    assert fresh.status == "succeeded" and fresh.records_seen == len(ids)


def test_wrong_key_fails_with_configuration_and_keeps_data(
    cqc: tuple[str, CqcApiSimulator], settings: Settings, factory: sessionmaker[Session]
) -> None:
    url, _ = cqc
    assert run(sync_cqc_full, settings, factory, url).status == "succeeded"
    before = registry(factory)
    failed = run(sync_cqc_full, settings, factory, url, key="wrong")
    assert failed.status == "failed" and failed.error_class == "configuration"
    assert registry(factory) == before


def test_a_location_whose_detail_keeps_failing_is_skipped_and_fetched_again(
    cqc: tuple[str, CqcApiSimulator], settings: Settings, factory: sessionmaker[Session]
) -> None:
    url, sim = cqc
    sim.settings.error_rate = sim.settings.soft_429_rate = sim.settings.hard_429_rate = 0.0
    sim.settings.failing_ids = ["1-900000020"]
    full = run(sync_cqc_full, settings, factory, url)
    assert full.status == "succeeded", full.error_message
    assert "1-900000020" not in registry(factory) and "1-900000021" in registry(factory)
    assert any(w.startswith("1-900000020: detail call failed") and "HTTP 500" in w for w in full.warnings)
    cursor = cursor_of(factory)
    assert cursor["full_completed_at"] >= cursor["full_started_at"]
    assert cursor["retry_ids"] == ["1-900000020"]

    start = datetime.fromisoformat(cursor["incremental_end"].replace("Z", "+00:00"))
    sim.change_location("1-900000010", {"numberOfBeds": 99}, at=start)
    sim.settings.failing_ids = ["1-900000010", "1-900000020"]
    time.sleep(max(0.0, (start + timedelta(seconds=1) - utcnow()).total_seconds()))
    incremental = run(sync_cqc_incremental, settings, factory, url)
    assert incremental.status == "succeeded", incremental.error_message
    assert incremental.accepted == 0
    assert {w.split(":")[0] for w in incremental.warnings} == {"1-900000010", "1-900000020"}
    moved = cursor_of(factory)
    assert moved["incremental_end"] > cursor["incremental_end"]  # the window is not held back
    assert moved["retry_ids"] == ["1-900000010", "1-900000020"]

    # The API recovers: the next run fetches both again, though its window holds no change.
    sim.settings.failing_ids = []
    again = run(sync_cqc_incremental, settings, factory, url)
    assert again.status == "succeeded" and again.accepted == 2 and not again.warnings
    assert registry(factory)["1-900000010"]["registered_beds"] == 99
    assert "1-900000020" in registry(factory)
    assert cursor_of(factory)["retry_ids"] == []


def cursor_of(factory: sessionmaker[Session]) -> dict[str, Any]:
    with factory() as session:
        return repository.get_sync_cursor(session, "cqc") or {}


def test_full_sync_fetches_tracked_locations_the_care_home_listing_leaves_out(
    cqc: tuple[str, CqcApiSimulator], settings: Settings, factory: sessionmaker[Session]
) -> None:
    url, sim = cqc
    sim.settings.error_rate = sim.settings.soft_429_rate = sim.settings.hard_429_rate = 0.0
    home = sim.truth()["1-900000001"]
    rehab = {
        **home,
        "locationId": "1-555000001",
        "name": "Riverside Rehabilitation Unit",
        "careHome": "N",
        "numberOfBeds": 0,
        "gacServiceTypes": [{"name": "Rehabilitation services", "description": "Rehabilitation services"}],
    }
    sim.locations[rehab["locationId"]] = rehab
    # A tracker reports the rehab unit, and an ID the CQC does not know.
    beds = [vacancy("community-rehab-nhs-la", maximum_capacity=12, occupied=9, reserved=1, admittable=1)]
    reported = [
        location("1-555000001", provider_type="community-rehab", vacancies=beds),
        location("1-555000002"),
    ]
    updates = [(n, LocationUpdate.model_validate(r)) for n, r in enumerate(reported)]
    with transaction(factory) as session:
        apply_updates(session, source="tracker-east", updates=updates, received_at=utcnow())
    full = run(sync_cqc_full, settings, factory, url)
    assert full.status == "succeeded", full.error_message
    stored = registry(factory)
    assert stored["1-555000001"]["care_home"] is False and stored["1-555000001"]["registered_beds"] == 0
    assert "1-555000002" not in stored
    assert "1-555000002: not found (404) on detail; skipped" in full.warnings

    with transaction(factory) as session:
        reconcile(session)
    with factory() as session:
        _, open_findings = findings_queries.list_findings(session, statuses=["open"])
    kinds = {(f.kind, f.cqc_location_id) for f in open_findings}
    assert ("unknown-to-cqc", "1-555000002") in kinds
    rehab_kinds = {kind for kind, cqc_id in kinds if cqc_id == "1-555000001"}
    assert not rehab_kinds & {"unknown-to-cqc", "capacity-above-registered", "not-reported"}
