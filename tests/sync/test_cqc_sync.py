"""The CQC registry over real HTTP: full sync with faults, incremental windows, resume."""

from __future__ import annotations

import asyncio
import random
import string
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from adapters.common.http import RetryPolicy
from adapters.cqc.mapping import provider_row, registry_row
from gateway.ingest.service import apply_updates
from gateway.model.capacity import LocationUpdate
from gateway.reconcile.service import reconcile
from gateway.settings import Settings
from gateway.store import fhir as fhir_store
from gateway.store import reconciliation as findings_queries
from gateway.store import registry as registry_queries
from gateway.store import repository
from gateway.store.db import transaction
from gateway.store.tables import RegistryLocation, RegistryProvider, SyncRun, utcnow
from gateway.sync.cqc import sync_cqc_full, sync_cqc_incremental
from gateway.sync.runs import RunCounts
from gateway.sync.sources import SyncContext
from simulators.cqc_api import CqcApiSimulator, CqcSimulatorSettings, create_app
from simulators.server import run_in_thread
from tests.conftest import TokenMaker, bearer
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


def providers_of(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A provider record (as /providers/{id} gives it) for each provider the records name."""
    out: dict[str, dict[str, Any]] = {}
    for record in records:
        provider = out.setdefault(
            record["providerId"],
            {
                "providerId": record["providerId"],
                "name": f"{record['name']} Care Ltd",
                "organisationType": "Provider",
                "ownershipType": "Organisation",
                "companiesHouseNumber": f"0{len(out) + 1000000}",
                "registrationStatus": "Registered",
                "locationIds": [],
            },
        )
        provider["locationIds"].append(record["locationId"])
    return list(out.values())


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
    records = registry_records()
    app = create_app(records, providers_of(records), settings)
    with run_in_thread(app) as url:
        yield f"{url}/public/v1", app.state.simulator


def run(
    job: Any,
    settings: Settings,
    factory: sessionmaker[Session],
    url: str,
    key: str = "k3y",
    **options: Any,
) -> SyncRun:
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
            return await job(SyncContext(factory, http, settings, options={"retry": retry, **options}))

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
    wait_past(start)
    incremental = run(sync_cqc_incremental, settings, factory, url)
    assert incremental.status == "succeeded", incremental.error_message
    assert incremental.accepted == 2
    after = registry(factory)
    assert after["1-900000010"]["registered_beds"] == 99
    assert after["1-900000011"]["registration_status"] == "Deregistered"
    with factory() as session:
        moved = repository.get_sync_cursor(session, "cqc")
    assert moved is not None and moved["incremental_end"] > cursor["incremental_end"]
    # The next window reaches back over this one's last hour (changes the registry lists
    # late): the two are fetched again and come back unchanged, nothing written.
    again = run(sync_cqc_incremental, settings, factory, url)
    assert again.status == "succeeded", again.error_message
    assert (again.records_seen, again.accepted, again.unchanged) == (2, 0, 2)
    assert registry(factory) == after


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
    providers = len(sim.providers)  # fetched once the locations are in
    assert resumed.records_seen == len(ids) - kept + providers  # it did not start from zero
    assert registry(factory) == expected(sim)
    with factory() as session:
        cursor = repository.get_sync_cursor(session, "cqc") or {}
    assert cursor["full_completed_at"] >= cursor["full_started_at"]
    # The next full sync is a new one: everything is fetched again, and as the registry
    # has not changed, nothing is written again.
    before = generations(factory)
    fresh = run(sync_cqc_full, settings, factory, url)
    assert fresh.status == "succeeded" and fresh.records_seen == len(ids) + providers
    assert (fresh.accepted, fresh.unchanged) == (0, len(ids) + providers)
    assert generations(factory) == before


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
    wait_past(start)
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


def test_a_full_sync_fetches_locations_reported_while_it_ran(
    cqc: tuple[str, CqcApiSimulator],
    settings: Settings,
    factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tracker that starts reporting a location the care-home listing leaves out while a
    full sync runs (it takes half an hour at the CQC's rate; the demo's trackers push
    during its first) has it fetched by that sync, not an hour later."""
    url, sim = cqc
    quiet(sim)
    not_a_care_home(sim, "1-555000001", "Riverside Rehabilitation Unit")
    report(factory, "tracker-east", "1-555000001", "1-555000002")
    # As if the trackers reported them just after the run read what is reported.
    monkeypatch.setattr(registry_queries, "reported_location_ids", lambda session: set())
    full = run(sync_cqc_full, settings, factory, url)
    assert full.status == "succeeded", full.error_message
    assert registry(factory)["1-555000001"]["name"] == "Riverside Rehabilitation Unit"
    assert full.warnings == ["1-555000002: not found (404) on detail; skipped"]
    assert cursor_of(factory)["reported_unknown_ids"] == ["1-555000002"]  # left to the next full sync
    assert unknown_to_cqc(factory) == {"1-555000002"}


def quiet(sim: CqcApiSimulator) -> None:
    """No faults: the runs' counts are then exact."""
    sim.settings.error_rate = sim.settings.soft_429_rate = sim.settings.hard_429_rate = 0.0
    sim.settings.vanished_ids = []


def wait_past(start: datetime) -> None:
    """Wait until the second after ``start`` has begun: the API's windows are in whole
    seconds, so a run must end after a change stamped ``start`` for its window to hold it."""
    time.sleep(max(0.0, (start + timedelta(seconds=1) - utcnow()).total_seconds()))


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def generations(factory: sessionmaker[Session]) -> dict[str, int]:
    with factory() as session:
        rows = session.execute(sa.select(RegistryLocation.cqc_location_id, RegistryLocation.generation))
        return {location_id: generation for location_id, generation in rows}


@pytest.mark.parametrize(("overlap_s", "fetched"), [(3600.0, True), (0.0, False)])
def test_a_change_the_registry_lists_late_is_fetched_by_the_next_run(
    cqc: tuple[str, CqcApiSimulator],
    settings: Settings,
    factory: sessionmaker[Session],
    overlap_s: float,
    fetched: bool,
) -> None:
    url, sim = cqc
    quiet(sim)
    settings = settings.model_copy(update={"cqc_changes_overlap_s": overlap_s})
    assert run(sync_cqc_full, settings, factory, url).status == "succeeded"
    start = moment(cursor_of(factory)["incremental_end"])
    # Two changes stamped inside the next window: one listed at once, one the registry
    # lists only after that window was asked for.
    sim.change_location("1-900000011", {"numberOfBeds": 77}, at=start)
    sim.change_location("1-900000010", {"numberOfBeds": 99}, at=start, listed_at=start + timedelta(days=1))
    wait_past(start)
    first = run(sync_cqc_incremental, settings, factory, url)
    assert first.status == "succeeded", first.error_message
    # The changed location, and its provider's detail (held already: unchanged).
    assert (first.records_seen, first.accepted, first.unchanged) == (2, 1, 1)
    held = registry(factory)
    assert held["1-900000011"]["registered_beds"] == 77 and held["1-900000010"]["registered_beds"] != 99
    end = moment(cursor_of(factory)["incremental_end"])
    assert end > start  # the late change's time is inside the window already asked for
    before = generations(factory)
    with factory() as session:
        synced_before = registry_queries.get_registry_location(session, "1-900000011")
    assert synced_before is not None

    sim.list_late("1-900000010")
    second = run(sync_cqc_incremental, settings, factory, url)
    assert second.status == "succeeded", second.error_message
    assert sim.windows[-1][0] == _stamp(end - timedelta(seconds=overlap_s))
    assert sim.provider_windows[-1] == sim.windows[-1]  # providers' changes: the same window
    after = registry(factory)
    if not fetched:  # without an overlap the late change is never asked for again
        assert (second.records_seen, second.accepted, second.unchanged) == (0, 0, 0)
        assert after["1-900000010"]["registered_beds"] != 99
        return
    # Both changes are in the window again: the late one is fetched (and its provider),
    # the other comes back unchanged (its row only marked as synced, no new registry
    # generation; its provider, held and not changed with it, is not asked for again).
    assert (second.records_seen, second.accepted, second.unchanged) == (3, 1, 2)
    assert not second.warnings and second.pages == 2  # a batch of locations, one of providers
    assert after["1-900000010"]["registered_beds"] == 99
    assert after == expected(sim)
    now = generations(factory)
    assert now["1-900000011"] == before["1-900000011"]
    assert now["1-900000010"] > before["1-900000010"]
    assert {i for i in now if now[i] != before[i]} == {"1-900000010"}
    with factory() as session:
        synced_after = registry_queries.get_registry_location(session, "1-900000011")
    assert synced_after is not None and synced_after.synced_at > synced_before.synced_at
    assert cursor_of(factory)["incremental_end"] >= _stamp(end)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_an_incremental_run_that_fails_leaves_its_window_to_the_next(
    cqc: tuple[str, CqcApiSimulator], settings: Settings, factory: sessionmaker[Session]
) -> None:
    url, sim = cqc
    quiet(sim)
    assert run(sync_cqc_full, settings, factory, url).status == "succeeded"
    cursor = cursor_of(factory)
    start = moment(cursor["incremental_end"])
    sim.change_location("1-900000010", {"numberOfBeds": 99}, at=start)
    wait_past(start)
    failed = run(sync_cqc_incremental, settings, factory, url, key="wrong")
    assert failed.status == "failed" and failed.error_class == "configuration"
    assert cursor_of(factory) == cursor
    again = run(sync_cqc_incremental, settings, factory, url)
    assert again.status == "succeeded" and again.accepted == 1
    assert registry(factory)["1-900000010"]["registered_beds"] == 99


def providers_held(factory: sessionmaker[Session]) -> dict[str, dict[str, Any]]:
    with factory() as session:
        rows = session.scalars(sa.select(RegistryProvider))
        return {r.cqc_provider_id: r.model_dump(exclude={"synced_at"}) for r in rows}


def test_providers_are_fetched_with_their_locations(
    cqc: tuple[str, CqcApiSimulator], settings: Settings, factory: sessionmaker[Session]
) -> None:
    url, sim = cqc
    quiet(sim)
    full = run(sync_cqc_full, settings, factory, url)
    assert full.status == "succeeded", full.error_message
    assert providers_held(factory) == {i: provider_row(r) for i, r in sim.providers.items()}
    assert sorted(sim.provider_calls) == sorted(sim.providers)  # each asked for once
    henley = "1-102642938"  # Henley House's provider: the 300 demo homes'
    assert len(providers_held(factory)[henley]["location_ids"]) == 300
    with factory() as session:  # what the FHIR Organization is named by
        assert fhir_store.provider_names(session, [henley]) == {henley: "Demo Home 0 Care Ltd"}

    # A provider renamed with one of its locations changing, and one renamed on its own
    # (listed by /changes/provider only), are both fetched by the next incremental run,
    # each once.
    cursor = cursor_of(factory)
    start = moment(cursor["incremental_end"])
    sim.change_provider(henley, {"name": "Evergreen Homes Ltd"}, at=start)
    sim.change_location("1-900000010", {"numberOfBeds": 99}, at=start)
    devon = "1-101657606"  # Burridge Farm's provider
    sim.change_provider(
        devon, {"name": "Burridge Farm Holdings Ltd", "companiesHouseNumber": "09999999"}, at=start
    )
    sim.provider_calls.clear()
    wait_past(start)
    incremental = run(sync_cqc_incremental, settings, factory, url)
    assert incremental.status == "succeeded", incremental.error_message
    assert (incremental.records_seen, incremental.accepted) == (3, 3)
    assert sorted(sim.provider_calls) == sorted([henley, devon])
    held = providers_held(factory)
    assert held[henley]["name"] == "Evergreen Homes Ltd"
    assert held[devon]["name"] == "Burridge Farm Holdings Ltd"
    assert held[devon]["companies_house_number"] == "09999999"
    assert cursor_of(factory)["retry_provider_ids"] == []
    again = run(sync_cqc_full, settings, factory, url)
    assert again.status == "succeeded", again.error_message
    # Nothing else changed: everything comes back unchanged.
    assert again.accepted == 0 and again.unchanged == len(sim.truth()) + len(sim.providers)


def test_a_provider_whose_detail_fails_is_skipped_and_fetched_again(
    cqc: tuple[str, CqcApiSimulator], settings: Settings, factory: sessionmaker[Session]
) -> None:
    url, sim = cqc
    quiet(sim)
    failing, gone = "1-101693962", "1-101645234"  # Highlands Borders', Park Lane's
    sim.settings.failing_ids = [failing]
    del sim.providers[gone]
    full = run(sync_cqc_full, settings, factory, url)
    assert full.status == "succeeded", full.error_message
    assert f"provider {gone}: not found (404) on detail; skipped" in full.warnings
    assert any(
        w.startswith(f"provider {failing}: detail call failed") and "HTTP 500" in w for w in full.warnings
    )
    assert len(full.warnings) == 2
    held = providers_held(factory)
    assert failing not in held and gone not in held and len(held) == len(sim.providers) - 1
    assert "1-1000587219" in registry(factory)  # its location is stored all the same
    assert cursor_of(factory)["retry_provider_ids"] == [failing]

    sim.settings.failing_ids = []
    sim.provider_calls.clear()
    again = run(sync_cqc_incremental, settings, factory, url)  # no location changed
    assert again.status == "succeeded", again.error_message
    assert sim.provider_calls == [failing]  # the 404 is not asked for again
    assert (again.records_seen, again.accepted, again.warnings) == (1, 1, [])
    assert providers_held(factory)[failing]["name"] == "Highlands Borders Care Home Care Ltd"
    assert cursor_of(factory)["retry_provider_ids"] == []


def test_a_full_sync_cut_short_among_providers_resumes_with_those_left(
    cqc: tuple[str, CqcApiSimulator], settings: Settings, factory: sessionmaker[Session]
) -> None:
    url, sim = cqc
    quiet(sim)
    ids = sorted(sim.providers)
    sim.settings.failing_ids = ids[:11]  # more than a run tolerates: the API is failing
    cut = run(sync_cqc_full, settings, factory, url)
    assert cut.status == "failed" and cut.error_class == "transient"
    assert len(registry(factory)) == len(sim.truth())  # the locations are in
    assert set(providers_held(factory)) <= set(ids[11:])
    assert "full_completed_at" not in cursor_of(factory)
    sim.settings.failing_ids = []
    sim.provider_calls.clear()
    resumed = run(sync_cqc_full, settings, factory, url)
    assert resumed.status == "succeeded", resumed.error_message
    assert set(sim.provider_calls) | set(providers_held(factory)) == set(ids)
    assert set(ids[:11]) <= set(sim.provider_calls)
    assert resumed.records_seen == len(sim.provider_calls)  # no location fetched again
    assert providers_held(factory) == {i: provider_row(r) for i, r in sim.providers.items()}


def test_a_location_fetched_unchanged_brings_its_provider_when_none_is_held(
    cqc: tuple[str, CqcApiSimulator], settings: Settings, factory: sessionmaker[Session]
) -> None:
    url, sim = cqc
    quiet(sim)
    assert run(sync_cqc_full, settings, factory, url).status == "succeeded"
    with transaction(factory) as session:  # as a registry synced before providers were
        session.execute(sa.delete(RegistryProvider))
    start = moment(cursor_of(factory)["incremental_end"])
    beds = sim.truth()["1-900000010"]["numberOfBeds"]
    sim.change_location("1-900000010", {"numberOfBeds": beds}, at=start)  # listed, nothing new
    sim.provider_calls.clear()
    wait_past(start)
    incremental = run(sync_cqc_incremental, settings, factory, url)
    assert incremental.status == "succeeded", incremental.error_message
    assert (incremental.records_seen, incremental.accepted, incremental.unchanged) == (2, 1, 1)
    assert sim.provider_calls == ["1-102642938"]
    assert set(providers_held(factory)) == {"1-102642938"}


HENLEY_PROVIDER = "1-102642938"  # the provider of Henley House and the 300 demo homes


def organization(client: TestClient, token: str, provider_id: str) -> dict[str, Any]:
    answer = client.get(f"/fhir/Organization/{provider_id}", headers=bearer(token))
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def test_a_provider_renamed_while_none_of_its_locations_changes_is_fetched_by_the_next_run(
    cqc: tuple[str, CqcApiSimulator],
    settings: Settings,
    factory: sessionmaker[Session],
    client: TestClient,
    make_token: TokenMaker,
) -> None:
    url, sim = cqc
    quiet(sim)
    token = make_token(name="reader", scopes=("read",))
    tracked = location("1-900000010", provider={"cqc_provider_id": HENLEY_PROVIDER, "name": "Henley"})
    with transaction(factory) as session:
        update = LocationUpdate.model_validate(tracked)
        apply_updates(session, source="tracker-east", updates=[(0, update)], received_at=utcnow())
    assert run(sync_cqc_full, settings, factory, url).status == "succeeded"
    before = organization(client, token, HENLEY_PROVIDER)
    assert before["name"] == "Demo Home 0 Care Ltd"  # as the registry names it

    start = moment(cursor_of(factory)["incremental_end"])
    sim.change_provider(HENLEY_PROVIDER, {"name": "Evergreen Homes Ltd"}, at=start)
    sim.provider_calls.clear()
    wait_past(start)
    renamed = run(sync_cqc_incremental, settings, factory, url)
    assert renamed.status == "succeeded", renamed.error_message
    assert (renamed.records_seen, renamed.accepted, renamed.unchanged) == (1, 1, 0)
    assert sim.provider_calls == [HENLEY_PROVIDER]
    assert providers_held(factory)[HENLEY_PROVIDER]["name"] == "Evergreen Homes Ltd"
    after = organization(client, token, HENLEY_PROVIDER)
    assert after["name"] == "Evergreen Homes Ltd"
    assert int(after["meta"]["versionId"]) > int(before["meta"]["versionId"])

    # The next window reaches back over the change: fetched again, unchanged, no new version.
    again = run(sync_cqc_incremental, settings, factory, url)
    assert again.status == "succeeded", again.error_message
    assert (again.records_seen, again.accepted, again.unchanged) == (1, 0, 1)
    assert organization(client, token, HENLEY_PROVIDER)["meta"]["versionId"] == after["meta"]["versionId"]


def test_a_changed_provider_the_registry_does_not_track_is_not_fetched(
    cqc: tuple[str, CqcApiSimulator], settings: Settings, factory: sessionmaker[Session]
) -> None:
    url, sim = cqc
    quiet(sim)
    stranger = "1-999999999"  # a provider of no care home: no registry location names it
    sim.providers[stranger] = {"providerId": stranger, "name": "Domiciliary Care Ltd", "locationIds": []}
    assert run(sync_cqc_full, settings, factory, url).status == "succeeded"
    assert stranger not in providers_held(factory)
    start = moment(cursor_of(factory)["incremental_end"])
    sim.change_provider(stranger, {"name": "Domiciliary Care Group Ltd"}, at=start)
    devon = "1-101657606"  # Burridge Farm's provider: held
    sim.change_provider(devon, {"name": "Burridge Farm Holdings Ltd"}, at=start)
    sim.provider_calls.clear()
    wait_past(start)
    incremental = run(sync_cqc_incremental, settings, factory, url)
    assert incremental.status == "succeeded", incremental.error_message
    assert sim.provider_calls == [devon]
    assert (incremental.records_seen, incremental.accepted) == (1, 1)
    assert stranger not in providers_held(factory)


@pytest.mark.parametrize("listing", ["location", "provider"])
def test_a_failing_changes_listing_fails_the_run_and_leaves_the_cursor(
    cqc: tuple[str, CqcApiSimulator], settings: Settings, factory: sessionmaker[Session], listing: str
) -> None:
    url, sim = cqc
    quiet(sim)
    assert run(sync_cqc_full, settings, factory, url).status == "succeeded"
    cursor = cursor_of(factory)
    start = moment(cursor["incremental_end"])
    sim.change_location("1-900000010", {"numberOfBeds": 99}, at=start)
    sim.change_provider(HENLEY_PROVIDER, {"name": "Evergreen Homes Ltd"}, at=start)
    sim.settings.failing_changes = [listing]
    wait_past(start)
    held = registry(factory), providers_held(factory)
    failed = run(sync_cqc_incremental, settings, factory, url)
    assert failed.status == "failed" and failed.error_class == "transient"
    assert f"/changes/{listing}" in (failed.error_message or "")
    assert cursor_of(factory) == cursor
    assert (registry(factory), providers_held(factory)) == held
    sim.settings.failing_changes = []
    again = run(sync_cqc_incremental, settings, factory, url)
    assert again.status == "succeeded", again.error_message
    assert registry(factory)["1-900000010"]["registered_beds"] == 99
    assert providers_held(factory)[HENLEY_PROVIDER]["name"] == "Evergreen Homes Ltd"


def report(factory: sessionmaker[Session], source: str, *cqc_ids: str) -> None:
    """A tracker starts reporting ``cqc_ids``."""
    updates = [(n, LocationUpdate.model_validate(location(i))) for n, i in enumerate(cqc_ids)]
    with transaction(factory) as session:
        apply_updates(session, source=source, updates=updates, received_at=utcnow())


def unknown_to_cqc(factory: sessionmaker[Session]) -> set[str]:
    """The locations reconciliation finds unknown to the CQC (open findings)."""
    with transaction(factory) as session:
        reconcile(session)
    with factory() as session:
        _, open_findings = findings_queries.list_findings(session, statuses=["open"])
    return {f.cqc_location_id for f in open_findings if f.kind == "unknown-to-cqc" and f.cqc_location_id}


def not_a_care_home(sim: CqcApiSimulator, location_id: str, name: str) -> None:
    """A location the API knows that its care-home listing leaves out."""
    sim.locations[location_id] = {
        **sim.truth()["1-900000001"],
        "locationId": location_id,
        "name": name,
        "careHome": "N",
        "numberOfBeds": 0,
        "gacServiceTypes": [{"name": "Rehabilitation services", "description": "Rehabilitation services"}],
    }


def test_an_incremental_run_fetches_reported_locations_the_registry_does_not_hold(
    cqc: tuple[str, CqcApiSimulator], settings: Settings, factory: sessionmaker[Session]
) -> None:
    url, sim = cqc
    quiet(sim)
    synced = run(sync_cqc_full, settings, factory, url)
    assert synced.status == "succeeded", synced.error_message
    # After the full sync, a tracker starts reporting two locations the care-home listing
    # leaves out (the API knows them) and one the API does not know (404).
    not_a_care_home(sim, "1-555000001", "Riverside Rehabilitation Unit")
    not_a_care_home(sim, "1-555000003", "Hillside Intermediate Care")
    report(factory, "tracker-east", "1-555000001", "1-555000002", "1-555000003")
    assert unknown_to_cqc(factory) == {"1-555000001", "1-555000002", "1-555000003"}

    sim.location_calls.clear()
    first = run(sync_cqc_incremental, settings, factory, url, unknown_per_run=2)
    assert first.status == "succeeded", first.error_message
    # Two a run, in ID order: the third waits for the next run. The 404 does not fail it.
    assert sorted(sim.location_calls) == ["1-555000001", "1-555000002"]
    assert first.warnings == ["1-555000002: not found (404) on detail; skipped"]
    assert registry(factory)["1-555000001"]["name"] == "Riverside Rehabilitation Unit"
    assert cursor_of(factory)["reported_unknown_ids"] == ["1-555000002"]
    assert unknown_to_cqc(factory) == {"1-555000002", "1-555000003"}

    sim.location_calls.clear()
    second = run(sync_cqc_incremental, settings, factory, url, unknown_per_run=2)
    assert second.status == "succeeded", second.error_message
    assert sim.location_calls == ["1-555000003"]  # the 404 is not asked for again
    assert unknown_to_cqc(factory) == {"1-555000002"}

    sim.location_calls.clear()
    third = run(sync_cqc_incremental, settings, factory, url, unknown_per_run=2)
    assert third.status == "succeeded" and sim.location_calls == [] and third.records_seen == 0
    assert cursor_of(factory)["reported_unknown_ids"] == ["1-555000002"]

    # The daily full sync asks for it again (once), and leaves it to the next one.
    full = run(sync_cqc_full, settings, factory, url)
    assert full.status == "succeeded", full.error_message
    assert sim.location_calls.count("1-555000002") == 1
    assert cursor_of(factory)["reported_unknown_ids"] == ["1-555000002"]
    # Once the registry lists it as changed (newly registered), the next incremental run
    # fetches it and the finding closes.
    not_a_care_home(sim, "1-555000002", "Lakeside Reablement")
    start = moment(cursor_of(factory)["incremental_end"])
    sim.change_location("1-555000002", {}, at=start)
    wait_past(start)
    known = run(sync_cqc_incremental, settings, factory, url, unknown_per_run=2)
    assert known.status == "succeeded", known.error_message
    assert unknown_to_cqc(factory) == set()
    assert cursor_of(factory)["reported_unknown_ids"] == []


def test_upstream_text_too_long_or_with_a_nul_is_set_aside_and_the_rest_of_the_batch_stored(
    cqc: tuple[str, CqcApiSimulator], settings: Settings, factory: sessionmaker[Session]
) -> None:
    url, sim = cqc
    quiet(sim)
    noise = random.Random(7)
    text = "".join(noise.choice(string.ascii_letters) for _ in range(3000))  # compresses badly
    sim.locations["1-900000005"]["postalCode"] = "NOT KNOWN - SEE THE PROVIDER'S OWN RECORDS"[:40]
    sim.locations["1-900000006"].update(
        {"localAuthority": text, "brandName": text, "providerId": "1-" + "9" * 28, "odsCode": text}
    )
    sim.locations["1-900000007"]["registrationStatus"] = "Registered (pending " + "x" * 30 + ")"
    # A NUL character (U+0000): PostgreSQL's text cannot hold one at any length.
    sim.locations["1-900000008"]["brandName"] = "BRAND\u0000 Care"
    sim.locations["1-900000009"]["name"] = "Demo\u0000 Home 9"
    full = run(sync_cqc_full, settings, factory, url)
    assert full.status == "succeeded", full.error_message

    want = expected(sim, {"1-900000007", "1-900000009"})
    want["1-900000005"]["postcode"] = None
    want["1-900000006"].update({"local_authority": None, "brand_name": None, "cqc_provider_id": None})
    want["1-900000008"]["brand_name"] = None
    assert registry(factory) == want  # the rest of each batch, and the rest of these records
    assert registry(factory)["1-900000006"]["ods_code"] == text  # a column without a limit
    assert sorted(w for w in full.warnings if "stored empty" in w) == [
        "1-900000005: postcode longer than the registry holds (10 characters); stored empty",
        "1-900000006: brand_name longer than the registry holds (500 characters); stored empty",
        "1-900000006: cqc_provider_id longer than the registry holds (20 characters); stored empty",
        "1-900000006: local_authority longer than the registry holds (500 characters); stored empty",
        "1-900000008: brand_name holds a NUL character (U+0000), which the registry cannot store; "
        "stored empty",
    ]
    # Detail calls run side by side: records come in the order their answers do.
    assert full.rejected == 2 and sorted(full.rejections, key=lambda r: r["ref"]) == [
        {
            "ref": "1-900000007",
            "reasons": ["registration_status: longer than the registry holds (20 characters)"],
        },
        {
            "ref": "1-900000009",
            "reasons": ["name: holds a NUL character (U+0000), which the registry cannot store"],
        },
    ]
    assert all(text not in w for w in full.warnings)  # the values themselves are not logged

    # Fetched again, as it is: nothing changed, nothing written.
    again = run(sync_cqc_full, settings, factory, url)
    assert again.status == "succeeded", again.error_message
    assert again.accepted == 0 and again.rejected == 2
    assert registry(factory) == want


def test_a_batch_rolled_back_is_not_counted_in_the_run(
    cqc: tuple[str, CqcApiSimulator],
    settings: Settings,
    factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The registry write fails (its transaction rolls back): the failed run counts no
    record as written, as the registry holds none."""
    url, _ = cqc

    def broken(_session: object, _run_id: int, counts: RunCounts) -> None:
        if counts.pages:  # a batch's write, after its counts
            raise RuntimeError("the database went away")

    monkeypatch.setattr("gateway.sync.cqc.write_counts", broken)
    failed = run(sync_cqc_full, settings, factory, url)
    assert failed.status == "failed" and failed.error_class == "internal"
    assert registry(factory) == {}
    assert (failed.pages, failed.accepted, failed.unchanged) == (0, 0, 0)
