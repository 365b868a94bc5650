"""London over real HTTP: the simulator with faults on, the adapter, the store."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import respx
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from adapters.common.http import RetryPolicy
from adapters.london_tracker.mapping import map_home
from gateway.reconcile.service import link_held_record, reconcile
from gateway.settings import Settings
from gateway.store import repository
from gateway.store.tables import Finding, HeldRecord, Location, LocationVersion, SyncRun, utcnow
from gateway.sync.london import sync_london
from gateway.sync.sources import SyncContext
from simulators.london_tracker import LondonSimulatorSettings, LondonTrackerSimulator, create_app
from simulators.server import run_in_thread
from tests.adapters.london_tracker.homes import bed, home
from tests.conftest import TokenMaker, bearer

HOMES = 300


def london_homes() -> list[dict[str, Any]]:
    homes = []
    for n in range(HOMES):
        beds = [
            bed(
                "NURS_GEN",
                commissioned=20,
                occupied=15,
                free_now=3,
                on_hold=1,
                closed=1,
                closed_reason="REFURB",
            ),
            bed("RES_DEM"),
        ]
        homes.append(
            home(
                home_ref=f"LDN-{n:06d}",
                cqc_location_id=f"1-{700000000 + n}",
                name=f"Home {n}",
                beds=beds,
                updated_at=f"2026-11-{1 + n % 20:02d}T09:{n % 60:02d}:00+00:00",
            )
        )
    homes[7]["cqc_location_id"] = None  # held for matching
    return homes


@pytest.fixture
def tracker() -> Iterator[tuple[str, LondonTrackerSimulator]]:
    settings = LondonSimulatorSettings(
        client_id="gw",
        client_secret="s3cret",
        seed=11,
        error_rate=0.1,
        throttle_rate=0.05,
        retry_after_s=0,
        malformed_rate=0.01,
        revoke_tokens_at_request=4,
        expire_cursors_at_request=9,
    )
    app = create_app(london_homes(), settings)
    with run_in_thread(app) as url:
        yield url, app.state.simulator


def run_sync(settings: Settings, factory: sessionmaker[Session], url: str, secret: str = "s3cret") -> SyncRun:
    settings = settings.model_copy(
        update={
            "london_base_url": url,
            "london_client_id": "gw",
            "london_client_secret": SecretStr(secret),
            "london_page_size": 20,
        }
    )

    async def go() -> SyncRun:
        async with httpx.AsyncClient(timeout=10) as http:
            retry = RetryPolicy(max_attempts=8, base_delay_s=0.01, max_delay_s=0.05)
            return await sync_london(SyncContext(factory, http, settings, options={"retry": retry}))

    return asyncio.run(go())


def national_london(factory: sessionmaker[Session]) -> dict[str, dict[str, Any]]:
    out = {}
    with factory() as session:
        for location in session.scalars(sa.select(Location).where(Location.source == "london")):
            _, lines = repository.get_location(session, location.cqc_location_id) or (None, [])
            out[location.cqc_location_id] = {
                "name": location.name,
                "lines": sorted(
                    (
                        ln.vacancy_type,
                        ln.maximum_capacity,
                        ln.occupied,
                        ln.admittable,
                        ln.reserved,
                        ln.unavailable,
                    )
                    for ln in lines
                ),
            }
    return out


def expected(truth: dict[str, dict[str, Any]], malformed: set[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for ref, raw in truth.items():
        mapped = map_home(raw)
        if ref in malformed or mapped.update is None:
            continue
        update = mapped.update
        out[update.cqc_location_id] = {
            "name": update.name,
            "lines": sorted(
                (
                    v.vacancy_type.value if v.vacancy_type else None,
                    v.maximum_capacity,
                    v.occupied,
                    v.admittable,
                    v.reserved,
                    v.unavailable,
                )
                for v in update.vacancies
            ),
        }
    return out


def test_faulty_tracker_synced_exactly_then_incrementally(
    tracker: tuple[str, LondonTrackerSimulator], settings: Settings, factory: sessionmaker[Session]
) -> None:
    url, sim = tracker
    malformed = sim.malformed_refs()
    assert malformed, "the seed makes some homes malformed"
    run = run_sync(settings, factory, url)
    assert run.status == "succeeded", run.error_message
    assert national_london(factory) == expected(sim.truth(), malformed)
    assert sorted(r["ref"] for r in run.rejections) == sorted(malformed)  # each listed once
    # Each copy sent counts in one status (a restarted listing sends some homes twice).
    assert run.rejected >= len(malformed)
    assert run.records_seen == run.accepted + run.unchanged + run.stale + run.rejected + run.held
    with factory() as session:
        counts = session.execute(
            sa.select(LocationVersion.cqc_location_id, sa.func.count()).group_by(
                LocationVersion.cqc_location_id
            )
        ).all()
        assert {n for _, n in counts} == {1}, "no location stored twice"
        held = session.scalars(sa.select(HeldRecord)).all()
        assert [h.source_ref for h in held] == ["LDN-000007"]
        cursor = repository.get_sync_cursor(session, "london")
    assert cursor is not None and cursor["as_of"]

    sim.settings.revoke_tokens_at_request = None
    sim.settings.expire_cursors_at_request = None
    sim.advance_clock(60)
    changed = sorted(ref for ref in sim.truth() if ref not in malformed and ref != "LDN-000007")[:50]
    for ref in changed:
        sim.update_home(ref, {"accepting_admissions": False})
    second = run_sync(settings, factory, url)
    assert second.status == "succeeded", second.error_message
    assert second.accepted == 50
    assert second.records_seen == 50
    with factory() as session:
        moved = session.scalars(
            sa.select(LocationVersion.cqc_location_id)
            .group_by(LocationVersion.cqc_location_id)
            .having(sa.func.count() > 1)
        ).all()
    assert sorted(moved) == sorted(sim.truth()[ref]["cqc_location_id"] for ref in changed)
    assert national_london(factory) == expected(sim.truth(), malformed)


def test_give_up_keeps_the_last_good_data(settings: Settings, factory: sessionmaker[Session]) -> None:
    homes = london_homes()[:30]
    good = create_app(homes, LondonSimulatorSettings(client_id="gw", client_secret="s3cret"))
    with run_in_thread(good) as url:
        assert run_sync(settings, factory, url).status == "succeeded"
    before = national_london(factory)
    broken = create_app(
        homes, LondonSimulatorSettings(client_id="gw", client_secret="s3cret", error_rate=1.0)
    )
    with run_in_thread(broken) as url:
        failed = run_sync(settings, factory, url)
    assert failed.status == "failed" and failed.error_class == "transient"
    assert national_london(factory) == before
    with run_in_thread(good) as url:
        wrong = run_sync(settings, factory, url, secret="nope")
    assert wrong.status == "failed" and wrong.error_class == "configuration"
    assert national_london(factory) == before


def test_live_providers_keep_homes_fresh_and_their_figures_adding_up() -> None:
    sim = LondonTrackerSimulator(london_homes(), LondonSimulatorSettings())
    before = sim.truth()
    changed = {sim.provider_update() for _ in range(30)}
    after = sim.truth()
    assert changed and None not in changed
    for ref in changed:
        moved = datetime.fromisoformat(after[ref]["updated_at"]) > datetime.fromisoformat(
            before[ref]["updated_at"]
        )
        assert moved
        assert after[ref]["beds"] != before[ref]["beds"] or all(
            b["free_now"] == 0 and b["occupied"] == 0 for b in before[ref]["beds"]
        )
    for served in after.values():
        for beds in served["beds"]:
            total = beds["occupied"] + beds["free_now"] + beds["on_hold"] + beds["closed"]
            assert total == beds["commissioned"]


def test_no_page_is_stored_after_one_that_failed(
    settings: Settings, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.sync import london

    store_page = london._store_page
    stored: list[int] = []

    def failing_second(context: SyncContext, run_id: int, counts: Any, page: Any, held: set[str]) -> None:
        if page.number == 2:
            raise RuntimeError("disk full")
        store_page(context, run_id, counts, page, held)
        stored.append(page.number)

    monkeypatch.setattr(london, "_store_page", failing_second)
    app = create_app(london_homes()[:100], LondonSimulatorSettings(client_id="gw", client_secret="s3cret"))
    with run_in_thread(app) as url:
        run = run_sync(settings, factory, url)
    assert run.status == "failed" and run.error_class == "internal"
    assert stored == [1] and run.pages == 1 and run.accepted == 20
    with factory() as session:
        assert repository.get_sync_cursor(session, "london") is None
        assert session.scalar(sa.select(sa.func.count()).select_from(Location)) == 20


def test_a_held_home_that_reports_its_cqc_id_later_is_no_longer_held(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    """A home held for matching (no CQC ID) that later reports its ID goes straight into the
    national view and leaves the held records: a held copy left behind stayed 'unmatched'
    for ever (an unmatched-home finding that never closed, an old copy reconciliation could
    still link to some location)."""
    homes = london_homes()[:30]
    homes[8]["cqc_location_id"] = None  # held too, and stays so
    app = create_app(homes, LondonSimulatorSettings(client_id="gw", client_secret="s3cret"))
    simulator: LondonTrackerSimulator = app.state.simulator
    with run_in_thread(app) as url:
        first = run_sync(settings, factory, url)
        assert first.status == "succeeded"
        # The held homes are counted, so the run's counts add up to the homes it saw.
        assert (first.records_seen, first.accepted, first.held) == (30, 28, 2)
        with factory() as session:
            held = set(session.scalars(sa.select(HeldRecord.source_ref)))
        assert held == {"LDN-000007", "LDN-000008"}
        simulator.update_home("LDN-000007", {"cqc_location_id": "1-799000007"})
        second = run_sync(settings, factory, url)
    assert second.status == "succeeded" and second.accepted == 1
    assert (second.records_seen, second.held) == (1, 0)
    with factory() as session:
        held = set(session.scalars(sa.select(HeldRecord.source_ref)))
        identified = session.get(Location, "1-799000007")
    assert held == {"LDN-000008"}
    assert identified is not None and identified.source == "london"


BASE = "https://london.example"


def _sync_answered(
    settings: Settings, factory: sessionmaker[Session], answers: list[httpx.Response]
) -> SyncRun:
    """One sync against a tracker (respx) whose listing calls get ``answers`` in turn."""
    settings = settings.model_copy(
        update={
            "london_base_url": BASE,
            "london_client_id": "gw",
            "london_client_secret": SecretStr("s3cret"),
        }
    )

    async def no_wait(_: float) -> None:
        return None

    async def go() -> SyncRun:
        with respx.mock:
            respx.post(f"{BASE}/oauth/token").mock(
                return_value=httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
            )
            respx.get(f"{BASE}/api/v2/homes").mock(side_effect=answers)
            async with httpx.AsyncClient() as http:
                options = {"retry": RetryPolicy(max_attempts=3, sleep=no_wait)}
                return await sync_london(SyncContext(factory, http, settings, options=options))

    return asyncio.run(go())


def _page(homes: list[dict[str, Any]], cursor: str | None = None) -> httpx.Response:
    return httpx.Response(200, json={"homes": homes, "next_cursor": cursor, "as_of": "2026-11-22T08:00:03Z"})


def test_every_malformed_home_without_a_readable_ref_is_counted(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    """Malformed homes are listed once per ref; those with no ref to tell them apart
    (missing, or not a string) are each listed (all of them were listed as one)."""
    broken = [
        {k: v for k, v in home(home_ref="LDN-000091").items() if k != "home_ref"},
        {k: v for k, v in home(home_ref="LDN-000092").items() if k != "home_ref"},
        home(home_ref=93),
    ]
    good = [home(home_ref=f"LDN-00000{n}", cqc_location_id=f"1-70000000{n}") for n in (1, 2)]
    run = _sync_answered(settings, factory, [_page([*good, *broken])])
    assert run.status == "succeeded"
    assert (run.records_seen, run.accepted, run.rejected) == (5, 2, 3)
    assert [r["ref"] for r in run.rejections] == ["?", "?", "?"]


def test_counts_add_up_when_a_restarted_listing_sends_homes_again(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    """A 410 restarts the listing, which sends the first page's homes again: each copy
    counts in one status (seen 5: accepted, unchanged, rejected twice, accepted), the
    malformed home's reasons are listed once."""
    good = home(home_ref="LDN-000001", cqc_location_id="1-700000001")
    bad = {k: v for k, v in home(home_ref="LDN-000002", cqc_location_id="1-700000002").items() if k != "name"}
    last = home(home_ref="LDN-000003", cqc_location_id="1-700000003")
    expired = httpx.Response(410, json={"error": "cursor_expired"})
    run = _sync_answered(
        settings, factory, [_page([good, bad], "c2"), expired, _page([good, bad], "c9"), _page([last])]
    )
    assert run.status == "succeeded", run.error_message
    assert (run.records_seen, run.accepted, run.unchanged, run.rejected) == (5, 2, 1, 2)
    assert run.records_seen == run.accepted + run.unchanged + run.stale + run.rejected + run.held
    assert [r["ref"] for r in run.rejections] == ["LDN-000002"]


def test_a_page_rolled_back_is_not_counted_in_the_run(
    settings: Settings, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last page fails as it is stored (its transaction rolls back): the failed run
    reports the first page's homes only, as the national view holds them."""
    base = "https://london.example"
    first = [home(home_ref=f"LDN-00001{n}", cqc_location_id=f"1-71000000{n}") for n in (1, 2, 3)]
    last = [home(home_ref=f"LDN-00002{n}", cqc_location_id=f"1-72000000{n}") for n in (1, 2)]
    pages = [
        {"homes": first, "next_cursor": "c2", "as_of": "2026-11-22T08:00:03Z"},
        {"homes": last, "next_cursor": None, "as_of": "2026-11-22T08:00:03Z"},
    ]
    settings = settings.model_copy(
        update={"london_base_url": base, "london_client_id": "gw", "london_client_secret": SecretStr("s")}
    )

    def no_cursor(*_: object) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(repository, "set_sync_cursor", no_cursor)  # written with the last page

    async def go() -> SyncRun:
        with respx.mock:
            respx.post(f"{base}/oauth/token").mock(
                return_value=httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
            )
            respx.get(f"{base}/api/v2/homes").mock(
                side_effect=[httpx.Response(200, json=page) for page in pages]
            )
            async with httpx.AsyncClient() as http:
                return await sync_london(SyncContext(factory, http, settings))

    run = asyncio.run(go())
    assert run.status == "failed" and run.error_class == "internal"
    with factory() as session:
        stored = session.scalar(sa.select(sa.func.count()).select_from(Location))
    assert stored == 3
    assert (run.pages, run.records_seen, run.accepted) == (1, 3, 3)


def _london_view(factory: sessionmaker[Session], *cqc_ids: str) -> dict[str, tuple[str, bool] | None]:
    """Each location's (source, active), or None where the national view has none."""
    with factory() as session:
        found = {cqc_id: session.get(Location, cqc_id) for cqc_id in cqc_ids}
        return {cqc_id: (loc.source, loc.active) if loc else None for cqc_id, loc in found.items()}


def test_a_home_that_names_another_location_leaves_the_one_it_fed(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    """A home that comes to name another CQC location (a re-registration, a corrected ID)
    or none (held for matching) takes its beds with it: the location it fed leaves the
    London source, as a CLOSED home does, instead of keeping its last report as current and
    its beds counted twice. A location another home still names stays."""
    homes = london_homes()[:30]
    homes[5]["cqc_location_id"] = homes[4]["cqc_location_id"]  # two homes name one location
    app = create_app(homes, LondonSimulatorSettings(client_id="gw", client_secret="s3cret"))
    simulator: LondonTrackerSimulator = app.state.simulator
    with run_in_thread(app) as url:
        assert run_sync(settings, factory, url).status == "succeeded"
        simulator.update_home("LDN-000003", {"cqc_location_id": "1-799000003"})
        simulator.update_home("LDN-000009", {"cqc_location_id": None})
        simulator.update_home("LDN-000005", {"cqc_location_id": "1-799000005"})
        second = run_sync(settings, factory, url)
    assert second.status == "succeeded"
    assert (second.records_seen, second.accepted, second.held) == (3, 2, 1)  # the homes, not the retirements
    assert sorted(w.split(":")[0] for w in second.warnings if "leaves the London source" in w) == [
        "1-700000003",
        "1-700000009",
    ]
    assert _london_view(factory, "1-700000003", "1-799000003", "1-700000009", "1-700000004") == {
        "1-700000003": ("london", False),  # retired, its history kept
        "1-799000003": ("london", True),
        "1-700000009": ("london", False),
        "1-700000004": ("london", True),  # LDN-000004 still names it
    }
    with factory() as session:
        versions = session.scalar(
            sa.select(sa.func.count()).where(LocationVersion.cqc_location_id == "1-700000003")
        )
        active = session.scalar(
            sa.select(sa.func.count()).where(Location.source == "london", Location.active.is_(True))
        )
    assert versions == 2
    # 30 homes, one held since the first sync and one since the second: each counted once.
    assert active == 28
    # The same homes listed again (the listing includes its last instant) move nothing.
    with run_in_thread(app) as url:
        third = run_sync(settings, factory, url)
    assert third.status == "succeeded" and not [w for w in third.warnings if "leaves" in w]
    assert third.accepted == 0


def test_an_admins_link_corrected_by_the_tracker_leaves_the_linked_location(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    """A held home an admin linked feeds the linked location; when the tracker later names
    another CQC ID for it, or an admin links it elsewhere, the location it fed leaves London
    (before, it kept the home's old figures as current for ever)."""
    homes = london_homes()[:10]  # LDN-000007 has no CQC ID: held
    app = create_app(homes, LondonSimulatorSettings(client_id="gw", client_secret="s3cret"))
    simulator: LondonTrackerSimulator = app.state.simulator
    with run_in_thread(app) as url:
        assert run_sync(settings, factory, url).status == "succeeded"
        with factory.begin() as session:
            held = session.get(HeldRecord, ("london", "LDN-000007"))
            assert held is not None
            link_held_record(session, held, "1-788000001", 0.9, utcnow())
        with factory.begin() as session:  # the admin thinks again
            held = session.get(HeldRecord, ("london", "LDN-000007"))
            assert held is not None
            link_held_record(session, held, "1-788000002", 0.9, utcnow())
        assert _london_view(factory, "1-788000001", "1-788000002") == {
            "1-788000001": ("london", False),
            "1-788000002": ("london", True),
        }
        simulator.update_home("LDN-000007", {"cqc_location_id": "1-788000003"})
        assert run_sync(settings, factory, url).status == "succeeded"
    assert _london_view(factory, "1-788000002", "1-788000003") == {
        "1-788000002": ("london", False),
        "1-788000003": ("london", True),
    }


def test_a_closed_home_no_longer_feeds_the_location_another_home_names(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    """Two homes name one location and one of them closes: its tombstone retires the
    location until the other reports again, and the closed home feeds it no more. So when
    the other home later names another location, the first leaves London instead of
    keeping that home's old report as current (its beds counted twice)."""
    homes = london_homes()[:10]
    homes[5]["cqc_location_id"] = homes[4]["cqc_location_id"]  # 1-700000004, twice
    app = create_app(homes, LondonSimulatorSettings(client_id="gw", client_secret="s3cret"))
    simulator: LondonTrackerSimulator = app.state.simulator
    with run_in_thread(app) as url:
        assert run_sync(settings, factory, url).status == "succeeded"
        simulator.update_home("LDN-000005", {"status": "CLOSED"})
        closing = run_sync(settings, factory, url)
        assert closing.status == "succeeded" and closing.accepted == 1
        assert not [w for w in closing.warnings if "leaves the London source" in w]  # said by the closure
        assert _london_view(factory, "1-700000004") == {"1-700000004": ("london", False)}
        simulator.advance_clock(60)
        simulator.update_home("LDN-000004", {"name": "Home 4, renamed"})  # reports again, later
        assert run_sync(settings, factory, url).status == "succeeded"
        assert _london_view(factory, "1-700000004") == {"1-700000004": ("london", True)}
        simulator.advance_clock(60)
        simulator.update_home("LDN-000004", {"cqc_location_id": "1-799000004"})
        moved = run_sync(settings, factory, url)
    assert moved.status == "succeeded"
    assert "1-700000004: no London home names it any more; it leaves the London source" in moved.warnings
    assert _london_view(factory, "1-700000004", "1-799000004") == {
        "1-700000004": ("london", False),
        "1-799000004": ("london", True),
    }


def test_two_homes_naming_one_location_are_warned_of_and_found_until_one_moves(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    """Two London homes give one CQC ID: each report replaces the other's beds there. The
    run that links the second says so, and reconciliation keeps a shared-location finding
    naming both refs until one of them names another location."""
    homes = london_homes()[:10]
    homes[5]["cqc_location_id"] = homes[4]["cqc_location_id"]  # 1-700000004, twice
    app = create_app(homes, LondonSimulatorSettings(client_id="gw", client_secret="s3cret"))
    simulator: LondonTrackerSimulator = app.state.simulator
    with run_in_thread(app) as url:
        first = run_sync(settings, factory, url)
        assert first.status == "succeeded"
        shared = [w for w in first.warnings if "named by" in w]
        assert shared == [
            "1-700000004: named by 2 London homes (LDN-000004, LDN-000005); each report replaces "
            "the others' beds there (a shared-location finding of the next reconciliation)"
        ]
        assert not [
            w for w in run_sync(settings, factory, url).warnings if "named by" in w
        ]  # links unchanged
        with factory.begin() as session:
            reconcile(session)
        with factory() as session:
            (finding,) = session.scalars(sa.select(Finding).where(Finding.kind == "shared-location"))
            assert (finding.cqc_location_id, finding.source, finding.severity) == (
                "1-700000004",
                "london",
                "high",
            )
            assert finding.evidence == {"source_refs": ["LDN-000004", "LDN-000005"]}
            assert finding.nhs_region == "london" and finding.status == "open"
        simulator.update_home("LDN-000005", {"cqc_location_id": "1-799000005"})
        moved = run_sync(settings, factory, url)
    assert moved.status == "succeeded" and not [w for w in moved.warnings if "named by" in w]
    with factory.begin() as session:
        reconcile(session)
    with factory() as session:
        (finding,) = session.scalars(sa.select(Finding).where(Finding.kind == "shared-location"))
        assert finding.status == "closed"


def test_a_line_summed_from_parts_that_break_the_invariant_is_stored_and_served_as_inconsistent(
    settings: Settings, factory: sessionmaker[Session], client: TestClient, make_token: TokenMaker
) -> None:
    """Step-down, D2A and respite beds are one national line; when its parts' errors cancel
    out, the stored line, the reports and FHIR all say it is inconsistent (it had been
    published clean, its 'free now' beds taken at their word)."""
    homes = london_homes()[:5]
    over = bed("D2A", commissioned=5, occupied=3, free_now=3, on_hold=0, closed=0)  # 5 against 6
    under = bed("RESPITE", commissioned=5, occupied=3, free_now=1, on_hold=0, closed=0)  # 5 against 4
    homes[1]["beds"] = [over, under]
    cqc_id = homes[1]["cqc_location_id"]
    app = create_app(homes, LondonSimulatorSettings(client_id="gw", client_secret="s3cret"))
    with run_in_thread(app) as url:
        run = run_sync(settings, factory, url)
    assert run.status == "succeeded" and any("flagged as inconsistent" in w for w in run.warnings)
    token = bearer(make_token(scopes=("read",)))
    (line,) = client.get(f"/api/v1/locations/{cqc_id}", headers=token).json()["vacancies"]
    assert (line["maximum_capacity"], line["admittable"], line["consistent"]) == (10, 4, False)
    assert "capacity-invariant-broken" in [flag["code"] for flag in line["quality_flags"]]
    service = client.get(f"/fhir/HealthcareService/{cqc_id}-transitional", headers=token).json()
    assert service["resourceType"] == "HealthcareService", service
    assert {"url": "consistent", "valueBoolean": False} in _parts(service)


def _parts(resource: Any) -> list[Any]:
    """Every object nested anywhere in ``resource``."""
    if isinstance(resource, dict):
        return [resource, *(part for value in resource.values() for part in _parts(value))]
    if isinstance(resource, list):
        return [part for value in resource for part in _parts(value)]
    return []
