"""A database that does not answer is a 503 with Retry-After (problem+json, or an
OperationOutcome under /fhir), logged by the driver's error class and code only; /readyz
tells a load balancer whether a process can serve (database up, schema at this code's
revision) while /healthz only says it is alive."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from gateway.api.app import create_app
from gateway.settings import Settings
from gateway.store import repository
from gateway.store.db import alembic_config, transaction, upgrade
from gateway.store.tables import HeldRecord, utcnow
from tests.conftest import TokenMaker, bearer


def _client(url: str) -> Iterator[TestClient]:
    settings = Settings(database_url=url, scheduler_enabled=False, environment="test")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(params=["sqlite", "postgresql"])
def down(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    """A gateway whose database cannot be reached: a SQLite path that is a folder, or a
    PostgreSQL server nobody runs (its password must never reach a log)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}"
    else:
        url = "postgresql+psycopg://gateway:not-in-any-log@127.0.0.1:1/gateway"
    yield from _client(url)


def test_requests_get_503_with_retry_after_while_the_database_is_down(
    down: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="gateway.api.problems"):
        assert down.get("/healthz").status_code == 200  # alive, though it cannot serve
        for method, path in (
            ("GET", "/readyz"),
            ("GET", "/api/v1/sources"),
            ("GET", "/api/v1/vacancies?postcode=LS1+4AP"),
            ("POST", "/api/v1/submissions"),
        ):
            response = down.request(method, path, headers=bearer("ccg_any"), json={"locations": []})
            assert response.status_code == 503, (path, response.text)
            assert response.headers["Retry-After"] == "5"
            assert response.headers["content-type"] == "application/problem+json"
            problem = response.json()
            assert problem["title"] == "Service unavailable"
            assert problem["detail"].startswith("the gateway's database is unavailable")
            assert problem["instance"] == path.split("?")[0]
        fhir = down.get("/fhir/Location", headers=bearer("ccg_any"))
    assert fhir.status_code == 503 and fhir.headers["Retry-After"] == "5"
    assert fhir.headers["content-type"].startswith("application/fhir+json")
    outcome = fhir.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert (outcome["issue"][0]["code"], outcome["issue"][0]["severity"]) == ("transient", "error")
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("database unavailable on ")]
    assert "database unavailable on GET /api/v1/sources: " in said[1]
    assert said[1].split(": ")[1] in {"sqlite3.OperationalError SQLITE_CANTOPEN", "psycopg.OperationalError"}
    assert "not-in-any-log" not in caplog.text


def test_a_pool_with_no_free_connection_is_a_503_too(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    @client.app.get("/api/v1/test-pool-exhausted")  # type: ignore[attr-defined,misc]
    def exhausted() -> None:
        raise sa.exc.TimeoutError("QueuePool limit of size 10 overflow 10 reached")

    with caplog.at_level(logging.ERROR, logger="gateway.api.problems"):
        response = client.get("/api/v1/test-pool-exhausted")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert "connection pool exhausted (TimeoutError)" in caplog.text


def _bulk_insert_while_locked(folder: Path) -> None:
    """A bulk insert into a SQLite database another connection holds the write lock of."""
    url = f"sqlite:///{folder / 'locked.db'}"
    engine = sa.create_engine(url, connect_args={"timeout": 0.05})
    table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))
    table.metadata.create_all(engine)
    holder = sqlite3.connect(folder / "locked.db")
    try:
        holder.execute("BEGIN IMMEDIATE")
        with Session(engine) as session:
            repository.bulk_insert(session, table, [{"id": 1}])
    finally:
        holder.close()
        engine.dispose()


def test_a_locked_sqlite_database_met_by_a_bulk_insert_is_a_503_too(
    client: TestClient, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """The bulk inserts go to the SQLite driver directly; its errors reach the handlers as
    SQLAlchemy's, as every other statement's do."""

    @client.app.get("/api/v1/test-database-locked")  # type: ignore[attr-defined,misc]
    def locked() -> None:
        _bulk_insert_while_locked(tmp_path)

    with caplog.at_level(logging.ERROR, logger="gateway.api.problems"):
        response = client.get("/api/v1/test-database-locked")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert "sqlite3.OperationalError SQLITE_BUSY" in caplog.text


def test_a_fault_in_the_sql_is_a_500_on_either_database_not_a_503(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite reports a missing column as an OperationalError (PostgreSQL as a
    ProgrammingError): a bug, which no retry mends, is never answered 'try again'."""

    @client.app.get("/api/v1/test-sql-fault")  # type: ignore[attr-defined,misc]
    def sql_fault() -> None:
        with client.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
            connection.execute(sa.text("SELECT no_such_column FROM location"))

    answering = TestClient(client.app, raise_server_exceptions=False)  # as a server answers a 500
    with caplog.at_level(logging.ERROR, logger="gateway.api.problems"):
        response = answering.get("/api/v1/test-sql-fault")
    assert response.status_code == 500, response.text
    assert "Retry-After" not in response.headers
    assert "unexpected error on GET /api/v1/test-sql-fault" in caplog.text


def test_ready_once_the_database_answers_at_this_code_s_schema(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200 and response.json() == {"status": "ready"}


def test_not_ready_on_a_database_never_migrated_or_behind_this_code(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    for client in _client(url):
        response = client.get("/readyz")
        assert response.status_code == 503 and response.headers["Retry-After"] == "5"
        assert response.json()["detail"] == "the database has no gateway schema: run gateway db upgrade"
    upgrade(url)
    command.downgrade(alembic_config(url), "-1")
    for client in _client(url):
        detail = client.get("/readyz").json()["detail"]
        assert detail.startswith("the database schema is at revision ")
        assert detail.endswith(": run gateway db upgrade")
    upgrade(url)
    for client in _client(url):
        assert client.get("/readyz").status_code == 200
    # Migrated by a newer release (a rolling deploy migrates first): this process still
    # serves until it is replaced, or the balancer would drop every old process at once.
    with sa.create_engine(url).begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    for client in _client(url):
        response = client.get("/readyz")
        assert response.status_code == 200, response.text
        note = response.json()["schema"]
        assert note.startswith("the database schema is at revision 9999, newer than this gateway's ")
        assert "gateway db upgrade" not in note


def test_a_request_whose_commit_fails_is_answered_503_not_200(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    """A request's own transaction commits before its answer is sent: a commit the
    database refuses (locked, gone) is a 503 the caller retries, never a 200 for a change
    that was rolled back (an admin's decision on a queued match, here)."""
    admin = make_token(scopes=("admin",))
    with transaction(factory) as session:
        session.add(
            HeldRecord(
                source="london",
                source_ref="LDN-000001",
                name="Oak Lodge",
                first_seen=utcnow(),
                last_seen=utcnow(),
                status="review",
                matched_cqc_location_id="1-301",
            )
        )

    def refuse(connection: sa.Connection) -> None:
        raise sa.exc.OperationalError("COMMIT", {}, sqlite3.OperationalError("database is locked"))

    engine = client.app.state.engine  # type: ignore[attr-defined]
    sa.event.listen(engine, "commit", refuse)
    try:
        decision = {"source": "london", "source_ref": "LDN-000001", "decision": "reject"}
        answer = client.post("/api/v1/reconciliation/matches", json=decision, headers=bearer(admin))
    finally:
        sa.event.remove(engine, "commit", refuse)
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
    with factory() as session:
        held = session.get(HeldRecord, ("london", "LDN-000001"))
    assert held is not None and held.status == "review"  # the decision was not kept, and not said to be
