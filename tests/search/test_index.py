"""The search index follows the database: every write of the view or the registry is seen
by the next search, in this process and in any other process on the same database."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from gateway.api.app import create_app, warm_index
from gateway.places import district_centroid, haversine_km
from gateway.search.index import index_for
from gateway.search.query import SearchQuery, Sort
from gateway.search.service import search
from gateway.settings import Settings
from gateway.store.db import create_engine, session_factory, transaction
from gateway.store.registry import replace_registry_locations
from gateway.store.tables import RegistryLocation, utcnow
from tests.conftest import TokenMaker, bearer
from tests.factories import batch, location, vacancy

NEAR = {"postcode": "M1 1AA", "radius_km": 10}


def push(client: TestClient, token: str, *records: dict[str, Any]) -> None:
    response = client.post(
        "/api/v1/submissions", content=orjson.dumps(batch(*records)), headers=bearer(token)
    )
    assert response.status_code == 200, response.text
    assert response.json()["summary"]["rejected"] == 0, response.text


def found(client: TestClient, token: str, **params: Any) -> list[str]:
    response = client.get("/api/v1/vacancies", params={**NEAR, **params}, headers=bearer(token))
    assert response.status_code == 200, response.text
    return [r["cqc_location_id"] for r in response.json()["results"]]


def home(cqc_id: str, updated_at: str = "2026-11-20T09:00:00Z", **over: Any) -> dict[str, Any]:
    return location(cqc_id, updated_at, **{"address": {"line1": "1 Road", "postcode": "M1 1AA"}, **over})


def register(factory: sessionmaker[Session], cqc_id: str, **over: Any) -> None:
    fields = {"name": "Registered name", "registration_status": "Registered", "postcode": "M1 1AA", **over}
    row = RegistryLocation(cqc_location_id=cqc_id, synced_at=utcnow(), **fields)
    with transaction(factory) as session:
        replace_registry_locations(session, [row.model_dump()])


def test_pushes_after_the_index_is_built_are_found(client: TestClient, make_token: TokenMaker) -> None:
    token = make_token()
    push(client, token, home("1-1"), home("1-2", accepting_admissions=False))
    assert found(client, token) == ["1-1", "1-2"]
    assert found(client, token, accepting_today=True) == ["1-1"]

    # A change, a new home, and a home that leaves the view.
    later = "2026-11-21T09:00:00Z"
    push(
        client,
        token,
        home("1-2", later, accepting_admissions=True, languages=["English", "Polish"]),
        home("1-3", later, vacancies=[vacancy("dementia-nursing", weekly_price_from=900.0)]),
        home("1-1", later, active=False),
    )
    assert found(client, token) == ["1-2", "1-3"]
    assert found(client, token, accepting_today=True) == ["1-2", "1-3"]
    assert found(client, token, language="polish") == ["1-2"]
    assert found(client, token, vacancy_type="dementia-nursing", max_weekly_price=1000) == ["1-3"]
    assert found(client, token, sort="price") == ["1-3", "1-2"]


def test_registry_writes_after_the_index_is_built_are_found(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    token = make_token()
    push(client, token, home("1-1"), home("1-2"))
    register(factory, "1-1", overall_rating="good")
    assert found(client, token, rating="good") == ["1-1"]

    # The registry re-rates one home and moves the other 60 km away (to Leeds).
    register(factory, "1-1", overall_rating="requires-improvement")
    register(factory, "1-2", overall_rating="good", postcode="LS1 4AP", latitude=53.7997, longitude=-1.5492)
    assert found(client, token, rating="good") == []
    assert found(client, token, rating="requires-improvement") == ["1-1"]
    assert found(client, token) == ["1-1"]
    assert found(client, token, radius_km=80) == ["1-1", "1-2"]
    # The registry's new postcode is searched from its exact point.
    response = client.get(
        "/api/v1/vacancies", params={"postcode": "ls1 4ap", "radius_km": 0.1}, headers=bearer(token)
    )
    assert response.json()["origin"]["found_by"] == "postcode"
    assert [r["cqc_location_id"] for r in response.json()["results"]] == ["1-2"]


def test_another_process_sees_writes_made_through_this_one(
    client: TestClient, make_token: TokenMaker, database_url: str
) -> None:
    """Two gateway processes on one database: each keeps its own index."""
    token = make_token()
    push(client, token, home("1-1"))
    other = create_engine(database_url)
    try:
        other_factory = session_factory(other)
        query = SearchQuery(postcode="M1 1AA", radius_km=10, sort=Sort.DISTANCE)

        def other_finds() -> list[str]:
            with other_factory() as session:
                return [r["cqc_location_id"] for r in search(session, query)["results"]]

        assert other_finds() == ["1-1"]
        push(client, token, home("1-2"), home("1-1", "2026-11-21T09:00:00Z", active=False))
        assert other_finds() == ["1-2"]
        assert found(client, token) == ["1-2"]
    finally:
        other.dispose()


def test_the_index_is_reused_until_the_view_moves(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    token = make_token()
    push(client, token, home("1-1"))
    with factory() as session:
        index = index_for(session)
        first = index.current(session)
        assert index.current(session) is first
    push(client, token, home("1-2"))
    with factory() as session:
        second = index.current(session)
        assert second is not first
        assert sorted(second.entries) == ["1-1", "1-2"]
        assert second.entries["1-1"] is first.entries["1-1"]  # only what changed is read again


def test_a_view_whose_versions_went_back_is_read_again_whole(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    """Should history ever be pruned, the newest version id can fall: the index cannot
    tell what changed, so it reads everything again."""
    token = make_token()
    push(client, token, home("1-1"), home("1-2"))
    assert found(client, token) == ["1-1", "1-2"]
    with transaction(factory) as session:
        for statement in (
            "DELETE FROM vacancy_line WHERE cqc_location_id = '1-2'",
            "DELETE FROM location WHERE cqc_location_id = '1-2'",
            "DELETE FROM location_version WHERE cqc_location_id = '1-2'",
        ):
            session.execute(sa.text(statement))
    assert found(client, token) == ["1-1"]


def test_a_home_exactly_at_the_radius_is_within_it(client: TestClient, make_token: TokenMaker) -> None:
    token = make_token()
    push(client, token, home("1-1"), home("1-2", address={"line1": "x", "postcode": "M14 5AA"}))
    a, b = district_centroid("M1 1AA"), district_centroid("M14 5AA")
    assert a is not None and b is not None
    distance = haversine_km(a[0], a[1], b[0], b[1])
    assert found(client, token, radius_km=distance) == ["1-1", "1-2"]
    assert found(client, token, radius_km=distance * (1 - 1e-12)) == ["1-1"]


def test_the_app_builds_the_index_when_it_starts(
    settings: Settings,
    engine: sa.Engine,
    factory: sessionmaker[Session],
    make_token: TokenMaker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = make_token()
    with TestClient(create_app(settings)) as client:
        push(client, token, home("1-1"))
    built: list[list[str]] = []

    def warm(app_factory: sessionmaker[Session]) -> None:
        warm_index(app_factory)
        with app_factory() as session:
            snapshot = index_for(session)._snapshot
            built.append(sorted(snapshot.entries) if snapshot else [])

    monkeypatch.setattr("gateway.api.app.warm_index", warm)
    with TestClient(create_app(settings)):
        pass
    assert built == [["1-1"]]


def test_a_failed_build_at_start_is_logged_by_type_only(caplog: pytest.LogCaptureFixture) -> None:
    broken = session_factory(create_engine("sqlite:////nonexistent-dir/none.db"))
    warm_index(broken)
    assert "search index not built at start: OperationalError" in caplog.text
    assert "nonexistent" not in caplog.text


def test_values_no_location_holds_do_not_grow_the_index_cache(
    client: TestClient, make_token: TokenMaker
) -> None:
    token = make_token()
    push(client, token, home("1-1", languages=["English", "Polish"]))
    for n in range(20):
        assert found(client, token, language=f"made-up-{n}") == []
    assert found(client, token, language="POLISH") == ["1-1"]
    app_factory: sessionmaker[Session] = client.app.state.session_factory  # type: ignore[attr-defined]
    with app_factory() as session:  # the app's own index
        cached = index_for(session).current(session)._masks
    assert list(cached) == [(0, "polish")]
