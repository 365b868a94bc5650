"""Held records: homes a source cannot place yet, kept until they are matched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from gateway.store import reconciliation as queries
from gateway.store.db import transaction


def _home(ref: str, name: str) -> dict[str, object]:
    return {
        "source_ref": ref,
        "name": name,
        "postcode": "NW8 9AA",
        "local_authority": None,
        "record": {"n": name},
    }


def test_held_records_are_refreshed_keeping_first_sighting_and_match(factory: sessionmaker[Session]) -> None:
    first = datetime(2025, 1, 1, tzinfo=UTC)
    later = first + timedelta(hours=1)
    with transaction(factory) as session:
        linked = queries.hold_records(session, "london", [_home("A", "Old A"), _home("B", "B")], first)
    assert linked == {}
    with transaction(factory) as session:
        held = queries.get_held_record(session, "london", "A")
        assert held is not None and held.status == "unmatched" and held.first_seen == first
        held.status, held.matched_cqc_location_id = "linked", "1-101"

    with transaction(factory) as session:
        homes = [_home("A", "Older A"), _home("A", "New A"), _home("B", "B"), _home("C", "C")]
        linked = queries.hold_records(session, "london", homes, later)
    assert linked == {"A": "1-101"}
    with factory() as session:
        held = {h.source_ref: h for h in queries.held_records(session)}
    assert sorted(held) == ["A", "B", "C"]
    a = held["A"]
    assert (a.name, a.record, a.status, a.matched_cqc_location_id) == (
        "New A",
        {"n": "New A"},
        "linked",
        "1-101",
    )
    assert (a.first_seen, a.last_seen) == (first, later)
    assert (held["C"].status, held["C"].first_seen) == ("unmatched", later)
