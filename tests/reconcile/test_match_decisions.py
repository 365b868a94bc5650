"""An admin's decision on a queued match: a confirm the matcher would never make is refused."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from gateway.ingest.service import apply_updates
from gateway.model.capacity import LocationUpdate
from gateway.store import reconciliation as queries
from gateway.store.db import transaction
from gateway.store.tables import Location, SourceLink, table, utcnow
from tests.conftest import TokenMaker, bearer
from tests.factories import location, vacancy
from tests.reconcile.test_reconcile import held_home, push, registry, run

MATCHES = "/api/v1/reconciliation/matches"


def _oak_lodge(cqc_id: str = "1-301", **over: Any) -> Any:
    fields: dict[str, Any] = dict(
        name="Oak Lodge",
        postcode="NW8 7XY",
        local_authority="Westminster",
        nhs_region="london",
        latitude=51.532,
        longitude=-0.175,
    )
    fields.update(over)
    return registry(cqc_id, **fields)


def _record(beds: int = 20, **over: Any) -> dict[str, Any]:
    """A London home's mapped record, without its CQC ID."""
    record = location("1-1", region="london", vacancies=[vacancy(maximum_capacity=beds, occupied=beds - 4)])
    del record["cqc_location_id"]
    record.update(over)
    return record


def _links(factory: sessionmaker[Session]) -> list[tuple[str, str]]:
    link = table(SourceLink)
    with factory() as session:
        rows = session.execute(
            sa.select(link.c.source_ref, link.c.cqc_location_id).order_by(link.c.source_ref)
        )
        return [(ref, cqc_id) for ref, cqc_id in rows]


def _held(factory: sessionmaker[Session], ref: str) -> tuple[str, str | None]:
    with factory() as session:
        held = queries.get_held_record(session, "london", ref)
        assert held is not None
        return held.status, held.matched_cqc_location_id


def test_a_confirm_to_a_location_another_home_of_the_source_feeds_is_refused(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    """Two held homes queued for the same location: the first confirmed feeds it, the
    second is refused (409, naming the first) whether it confirms its queued candidate or
    names the location itself, and the location keeps the first home's figures."""
    admin = bearer(make_token(name="admin", scopes=("admin",)))
    with transaction(factory) as session:
        session.add(_oak_lodge())
        session.add(held_home("LDN-000001", "Oak Lodge Care", "NW8 7XY", "Westminster", _record(20)))
        session.add(held_home("LDN-000002", "Oak Lodge Care", "NW8 7XY", "Westminster", _record(30)))
    summary, _, _ = run(factory)
    assert summary.queued_for_review == 2

    first = client.post(
        MATCHES, headers=admin, json={"source": "london", "source_ref": "LDN-000001", "decision": "confirm"}
    )
    assert first.status_code == 200 and first.json()["status"] == "linked", first.text

    for named in ({}, {"cqc_location_id": "1-301"}):
        body = {"source": "london", "source_ref": "LDN-000002", "decision": "confirm", **named}
        refused = client.post(MATCHES, headers=admin, json=body)
        assert refused.status_code == 409, refused.text
        problem = refused.json()
        assert "1-301" in problem["detail"] and "LDN-000001" in problem["detail"]
        assert problem["fed_by"] == [{"source": "london", "source_ref": "LDN-000001"}]
        assert problem["errors"][0]["parameter"] == "cqc_location_id"
    assert _links(factory) == [("LDN-000001", "1-301")]
    assert _held(factory, "LDN-000002") == ("review", "1-301")  # still queued, not linked
    with factory() as session:
        oak = session.get(Location, "1-301")
        assert oak is not None and oak.entered_capacity == 20  # the first home's beds

    # The home that feeds it may confirm it again: the location is its own.
    again = client.post(
        MATCHES, headers=admin, json={"source": "london", "source_ref": "LDN-000001", "decision": "confirm"}
    )
    assert again.status_code == 200 and again.json()["candidate_cqc_location_id"] == "1-301"
    # And the refused home is matched again by the next reconciliation, without 1-301.
    run(factory)
    assert _held(factory, "LDN-000002") == ("unmatched", None)


def test_a_confirm_to_a_location_whose_current_record_is_the_source_s_is_refused(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    """A location a record of the source feeds though no link names it (a home synced
    before links were kept) is as taken as the matcher sees it."""
    admin = bearer(make_token(name="admin", scopes=("admin",)))
    other_home = LocationUpdate.model_validate(location("1-301", region="london", name="Oak Lodge"))
    with transaction(factory) as session:
        session.add(_oak_lodge())
        session.add(held_home("LDN-000002", "Oak Lodge Care", "NW8 7XY", "Westminster", _record(30)))
        apply_updates(session, source="london", updates=[(0, other_home)], received_at=utcnow())
    body = {"source": "london", "source_ref": "LDN-000002", "decision": "confirm", "cqc_location_id": "1-301"}
    refused = client.post(MATCHES, headers=admin, json=body)
    assert refused.status_code == 409, refused.text
    assert (
        "1-301" in refused.json()["detail"]
        and "already fed by a record of london" in refused.json()["detail"]
    )
    assert _held(factory, "LDN-000002") == ("unmatched", None) and _links(factory) == []
    with factory() as session:
        oak = session.get(Location, "1-301")
        assert oak is not None and oak.entered_capacity == 20  # the other home's figures, kept


def test_a_confirm_to_a_location_the_registry_does_not_hold_as_registered_is_refused(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    """An admin may link a home to another location than its candidate, but only to one
    the registry holds as registered (as the matcher's candidates are): 422, naming the
    field; nothing is linked and the home stays where it was."""
    admin = bearer(make_token(name="admin", scopes=("admin",)))
    with transaction(factory) as session:
        session.add(_oak_lodge())
        session.add(_oak_lodge("1-302", name="Elm View", registration_status="Deregistered"))
        session.add(held_home("LDN-000003", "Oak Lodge Care", "NW8 7XY", "Westminster", _record()))
    run(factory)
    assert _held(factory, "LDN-000003") == ("review", "1-301")
    for target, why in (("1-999999", "does not hold it"), ("1-302", "holds it as Deregistered")):
        body = {
            "source": "london",
            "source_ref": "LDN-000003",
            "decision": "confirm",
            "cqc_location_id": target,
        }
        refused = client.post(MATCHES, headers=admin, json=body)
        assert refused.status_code == 422, refused.text
        problem = refused.json()
        assert problem["detail"].startswith(f"cqc_location_id: {target}") and why in problem["detail"]
        assert [e["parameter"] for e in problem["errors"]] == ["cqc_location_id"]
    assert _held(factory, "LDN-000003") == ("review", "1-301") and _links(factory) == []
    with factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Location)) == 0

    # A queued candidate the registry has since deregistered is refused the same way.
    with transaction(factory) as session:
        oak = queries.registry_location(session, "1-301")
        assert oak is not None
        oak.registration_status = "Deregistered"
    body = {"source": "london", "source_ref": "LDN-000003", "decision": "confirm"}
    refused = client.post(MATCHES, headers=admin, json=body)
    assert refused.status_code == 422 and "1-301" in refused.json()["detail"], refused.text


def test_a_closed_held_home_is_neither_matched_nor_confirmed(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    """A held home whose latest report is a closure is skipped by reconciliation (its
    finding closes, it is never linked) and an admin's confirm of it is refused: its
    tombstone would retire a location another tracker reports."""
    admin = bearer(make_token(name="admin", scopes=("admin",)))
    tracker = make_token(name="tracker-london-push")
    with transaction(factory) as session:
        session.add(held_home("LDN-000001", "Rosemary Court", "NW8 9AB", "Westminster", _record()))
    _, found, _ = run(factory)
    assert ("unmatched-home", "LDN-000001") in found

    with transaction(factory) as session:  # the home closes (a held copy kept from before)
        held = queries.get_held_record(session, "london", "LDN-000001")
        assert held is not None
        held.record = _record(active=False)
    summary, found, _ = run(factory)
    assert ("unmatched-home", "LDN-000001") not in found and summary.closed == 1

    # The registry gains a location of its name, which another tracker reports.
    with transaction(factory) as session:
        session.add(_oak_lodge("1-800", name="Rosemary Court", postcode="NW8 9AB"))
    push(client, tracker, location("1-800", region="london", name="Rosemary Court"))
    summary, found, _ = run(factory)
    assert (summary.linked, summary.queued_for_review, summary.unmatched) == (0, 0, 0)
    assert ("unmatched-home", "LDN-000001") not in found
    body = {"source": "london", "source_ref": "LDN-000001", "decision": "confirm", "cqc_location_id": "1-800"}
    refused = client.post(MATCHES, headers=admin, json=body)
    assert refused.status_code == 409 and "closed" in refused.json()["detail"], refused.text
    with factory() as session:
        reported = session.get(Location, "1-800")
        assert reported is not None and (reported.active, reported.source) == (True, "tracker-london-push")
    assert _held(factory, "LDN-000001") == ("unmatched", None) and _links(factory) == []
