"""A London home without a CQC ID that closes: held no more, never matched, its finding
closed; a home an admin linked closes its location as any report of it does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from gateway.ingest.service import apply_updates
from gateway.model.capacity import LocationUpdate
from gateway.reconcile.service import link_held_record
from gateway.settings import Settings
from gateway.store import reconciliation as queries
from gateway.store.db import transaction
from gateway.store.tables import HeldRecord, Location, utcnow
from simulators.london_tracker import LondonSimulatorSettings, LondonTrackerSimulator, create_app
from simulators.server import run_in_thread
from tests.factories import location
from tests.reconcile.test_reconcile import registry, run
from tests.sync.test_london_sync import london_homes, run_sync


def _home(ref: str, active: bool = True) -> dict[str, Any]:
    return {
        "source_ref": ref,
        "name": f"Home {ref}",
        "postcode": "NW8 9AA",
        "local_authority": None,
        "record": {"name": f"Home {ref}", "active": active},
    }


def _held(factory: sessionmaker[Session]) -> dict[str, HeldRecord]:
    with factory() as session:
        return {h.source_ref: h for h in queries.held_records(session)}


def test_a_home_that_closes_is_held_no_more_unless_an_admin_linked_it(factory: sessionmaker[Session]) -> None:
    """Closed, a home is not held (or its held record goes, whatever its match status) but
    for one an admin linked: that one is refreshed and its link returned, so its closure
    goes to the linked location."""
    first = datetime(2026, 1, 1, tzinfo=UTC)
    later = first + timedelta(hours=1)
    with transaction(factory) as session:
        homes = [_home(ref) for ref in ("UNMATCHED", "REVIEW", "REJECTED", "LINKED", "OPEN")]
        assert queries.hold_records(session, "london", homes, first) == {}
    with transaction(factory) as session:
        for ref, status, cqc_id in (
            ("REVIEW", "review", "1-1"),
            ("REJECTED", "rejected", None),
            ("LINKED", "linked", "1-2"),
        ):
            held = queries.get_held_record(session, "london", ref)
            assert held is not None
            held.status, held.matched_cqc_location_id = status, cqc_id

    with transaction(factory) as session:
        closing = [_home(ref, active=False) for ref in ("UNMATCHED", "REVIEW", "REJECTED", "LINKED", "NEW")]
        # A home listed open then closed within one run is held as its last copy: closed.
        closing += [_home("OPEN"), _home("OPEN", active=False)]
        linked = queries.hold_records(session, "london", closing, later)
    assert linked == {"LINKED": "1-2"}
    kept = _held(factory)
    assert sorted(kept) == ["LINKED"]
    assert (kept["LINKED"].status, kept["LINKED"].record["active"], kept["LINKED"].last_seen) == (
        "linked",
        False,
        later,
    )

    # Open again (without a CQC ID), a home is held again, from its new sighting.
    with transaction(factory) as session:
        assert queries.hold_records(session, "london", [_home("UNMATCHED")], later) == {}
    kept = _held(factory)
    assert (kept["UNMATCHED"].status, kept["UNMATCHED"].first_seen) == ("unmatched", later)


def test_a_closed_home_without_a_cqc_id_is_never_linked_nor_left_unmatched(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    """Synced from the tracker: a held home that closes leaves the review queue and its
    finding closes; a location of its name that the registry gains later is not linked to
    it (its tombstone would retire the location another tracker reports). A held home an
    admin linked closes its linked location, as a home naming it would."""
    homes = london_homes()[:10]  # LDN-000007 has no CQC ID: held
    homes[8]["cqc_location_id"] = None  # held too, then linked by an admin
    app = create_app(homes, LondonSimulatorSettings(client_id="gw", client_secret="s3cret"))
    simulator: LondonTrackerSimulator = app.state.simulator
    with run_in_thread(app) as url:
        first = run_sync(settings, factory, url)
        assert first.status == "succeeded" and first.held == 2
        _, found, _ = run(factory)
        assert {("unmatched-home", "LDN-000007"), ("unmatched-home", "LDN-000008")} <= found
        with transaction(factory) as session:
            held = queries.get_held_record(session, "london", "LDN-000008")
            assert held is not None
            link_held_record(session, held, "1-788000008", 0.9, utcnow())

        simulator.advance_clock(60)
        simulator.update_home("LDN-000007", {"status": "CLOSED"})
        simulator.update_home("LDN-000008", {"status": "CLOSED"})
        closing = run_sync(settings, factory, url)
    assert closing.status == "succeeded", closing.error_message
    # The home closed without a CQC ID is held no more: the view is unchanged by it; the
    # linked one's closure is stored at its location.
    assert (closing.records_seen, closing.held, closing.unchanged, closing.accepted) == (2, 0, 1, 1)
    kept = _held(factory)
    assert "LDN-000007" not in kept  # not in the review queue any more
    assert (kept["LDN-000008"].status, kept["LDN-000008"].matched_cqc_location_id) == (
        "linked",
        "1-788000008",
    )
    with factory() as session:
        linked_location = session.get(Location, "1-788000008")
        assert linked_location is not None and not linked_location.active  # closed with its home
    summary, found, _ = run(factory)
    assert ("unmatched-home", "LDN-000007") not in found and summary.closed >= 1

    # The registry gains a location of its name that another tracker reports.
    with transaction(factory) as session:
        session.add(
            registry(
                "1-800",
                name="Home 7",
                postcode="NW8 9AA",
                local_authority=None,
                nhs_region="london",
                latitude=51.53,
                longitude=-0.17,
            )
        )
        reported = LocationUpdate.model_validate(location("1-800", region="london", name="Home 7"))
        apply_updates(session, source="tracker-london-push", updates=[(0, reported)], received_at=utcnow())
    summary, found, _ = run(factory)
    assert summary.linked == 0 and ("unmatched-home", "LDN-000007") not in found
    with factory() as session:
        other = session.get(Location, "1-800")
        assert other is not None and (other.active, other.source) == (True, "tracker-london-push")
    assert "LDN-000007" not in _held(factory)
