"""The search index under concurrent writers: a process that searches while trackers and
the registry write keeps refreshing from its marker, and once the writes end it answers
exactly what the database holds (on SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from gateway.auth import Principal
from gateway.ingest.submissions import receive_submission
from gateway.search import index
from gateway.search.query import SearchQuery
from gateway.search.service import search
from gateway.store.db import transaction
from gateway.store.registry import replace_registry_locations
from gateway.store.tables import Location, RegistryLocation, table, utcnow
from tests.factories import batch, location

RATINGS = ["good", "outstanding", "requires-improvement"]


def found(factory: sessionmaker[Session], q: SearchQuery) -> set[str]:
    with factory() as session:
        page = search(session, q)
        assert page["total"] == len(page["results"])
        return {r["cqc_location_id"] for r in page["results"]}


def test_searches_beside_concurrent_writers_end_on_the_database_state(
    factory: sessionmaker[Session],
) -> None:
    principal = Principal("t", "tracker-index", frozenset({"submit"}), frozenset({"*"}))
    errors: list[BaseException] = []

    def tracker(worker: int) -> None:
        try:
            for round_ in range(10):
                records = [
                    location(
                        f"1-{worker}0{n}",
                        updated_at=f"2026-11-21T{round_:02d}:00:00Z",
                        accepting_admissions=(round_ + n) % 2 == 0,
                        active=not (n == 0 and round_ == 9 and worker == 1),
                        address={"line1": "1 Road", "postcode": "M1 1AA"},
                    )
                    for n in range(4)
                ]
                receive_submission(factory, principal, orjson.dumps(batch(*records)))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    def registry() -> None:
        try:
            for round_ in range(10):
                rows = [
                    RegistryLocation(
                        cqc_location_id=f"1-{worker}0{n}",
                        name="Registered",
                        registration_status="Registered",
                        overall_rating=RATINGS[(round_ + worker + n) % 3],
                        synced_at=utcnow(),
                    ).model_dump()
                    for worker in (1, 2, 3)
                    for n in range(4)
                ]
                with transaction(factory) as session:
                    replace_registry_locations(session, rows)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=tracker, args=(w,)) for w in (1, 2, 3)]
    threads.append(threading.Thread(target=registry))
    for thread in threads:
        thread.start()
    accepting = SearchQuery(postcode="M1 1AA", radius_km=5, accepting_today=True, page_size=100)
    good = SearchQuery(ratings=["good"], page_size=100)
    searches = 0
    while any(t.is_alive() for t in threads):
        found(factory, accepting)
        found(factory, good)
        searches += 1
    assert not errors, errors
    assert searches > 0

    loc, reg = table(Location), table(RegistryLocation)
    with factory() as session:
        truth_accepting = set(
            session.scalars(
                sa.select(loc.c.cqc_location_id).where(
                    loc.c.active.is_(True), loc.c.accepting_admissions.is_(True)
                )
            )
        )
        truth_good = set(
            session.scalars(
                sa.select(loc.c.cqc_location_id)
                .join(reg, reg.c.cqc_location_id == loc.c.cqc_location_id)
                .where(loc.c.active.is_(True), reg.c.overall_rating == "good")
            )
        )
    assert "1-100" not in truth_accepting | truth_good  # left the view in the last round
    assert found(factory, accepting) == truth_accepting
    assert found(factory, good) == truth_good


def test_a_search_whose_marker_another_search_overtook_keeps_the_newer_index(
    factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Search A reads the marker, search B (after a write) brings the index past it, then A
    takes the lock: A answers from B's index, neither reading it all again (a full build
    nationally) nor putting it back to A's older marker."""
    principal = Principal("t", "tracker-index", frozenset({"submit"}), frozenset({"*"}))
    receive_submission(factory, principal, orjson.dumps(batch(*[location(f"1-{n}") for n in range(1, 6)])))
    with factory() as session:
        search(session, SearchQuery())
        before = index.read_marker(session)
    receive_submission(factory, principal, orjson.dumps(batch(location("1-9"))))
    with factory() as session:  # B
        search(session, SearchQuery())
        overtaken = index.index_for(session)._snapshot
    assert overtaken is not None and overtaken.marker != before
    reads = iter([before])  # A's first read came before B's refresh; then the database as it is
    real_read = index.read_marker
    monkeypatch.setattr(index, "read_marker", lambda session: next(reads, None) or real_read(session))
    whole: list[bool] = []
    real_load = index.load

    def load(session: Session, ids: set[str] | None) -> object:
        whole.append(ids is None)
        return real_load(session, ids)

    monkeypatch.setattr(index, "load", load)
    assert "1-9" in found(factory, SearchQuery())  # A
    with factory() as session:
        assert index.index_for(session)._snapshot is overtaken
    assert whole == []
