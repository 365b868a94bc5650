"""Shared fixtures: a migrated database (SQLite, or PostgreSQL when
GATEWAY_TEST_DATABASE_URL says so), an app on it, and tokens."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import SQLModel
from typer.testing import CliRunner, Result

from gateway.api.app import create_app
from gateway.auth import create_token
from gateway.settings import Settings
from gateway.store.db import create_engine, session_factory, transaction, upgrade


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("GATEWAY_TEST_DATABASE_URL")
    if url:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
        engine.dispose()
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'gateway.db'}"
    upgrade(url)
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(database_url)
    yield engine
    with engine.begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            conn.execute(table.delete())
    engine.dispose()


@pytest.fixture
def factory(engine: sa.Engine) -> sessionmaker[Session]:
    return session_factory(engine)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, scheduler_enabled=False, environment="test")


@pytest.fixture
def client(settings: Settings, engine: sa.Engine) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


TokenMaker = Callable[..., str]


@pytest.fixture
def make_token(factory: sessionmaker[Session]) -> TokenMaker:
    def make(
        name: str = "tracker",
        scopes: tuple[str, ...] = ("submit", "read"),
        regions: tuple[str, ...] = ("all",),
    ) -> str:
        with transaction(factory) as session:
            _, plain = create_token(session, name=name, scopes=scopes, regions=regions)
        return plain

    return make


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


GatewayCli = Callable[..., Result]


@pytest.fixture
def gateway_cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> GatewayCli:
    """Run the ``gateway`` command on the test database: ``gateway_cli("sync", "london",
    GATEWAY_LONDON_BASE_URL=...)``; a variable given as None is unset."""
    from gateway import cli
    from gateway.settings import get_settings

    def invoke(*args: str, **env: str | None) -> Result:
        monkeypatch.setenv("GATEWAY_DATABASE_URL", database_url)
        for name, value in env.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(cli.app, list(args))
        finally:
            get_settings.cache_clear()

    return invoke


Statement = tuple[str, Any]


@contextmanager
def statements_run(engine: sa.Engine, starting: str) -> Iterator[list[Statement]]:
    """The SQL statements (with their parameters) run on ``engine`` during the block whose
    text starts with ``starting`` (case ignored)."""
    seen: list[Statement] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(starting.upper()):
            seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def sqlite_plan(engine: sa.Engine, statement: Statement) -> list[str]:
    """SQLite's query plan of ``statement``, a step a line."""
    sql, parameters = statement
    with engine.connect() as connection:
        return [row[3] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters)]
