"""The migrations build the schema the models declare, and source health reads each of its
answers from the top of an index, however many runs and pushes a source has had."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import SQLModel

import gateway.store.tables  # noqa: F401 - the models' metadata
from gateway.settings import Settings
from gateway.store.db import transaction
from gateway.store.tables import Submission, SyncRun, utcnow
from gateway.sync.health import source_health
from tests.conftest import sqlite_plan, statements_run


def _index_differences(engine: sa.Engine) -> list[Any]:
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    return [d for d in differences if isinstance(d, tuple) and d[0] in ("add_index", "remove_index")]


def test_the_migrations_build_the_models_indexes(engine: sa.Engine) -> None:
    assert _index_differences(engine) == []


def test_source_health_reads_from_indexes(
    engine: sa.Engine, factory: sessionmaker[Session], settings: Settings
) -> None:
    """No health query sorts a source's rows or reads them all: each plan searches an
    index (SQLite's query plans; PostgreSQL plans by its statistics)."""
    if engine.dialect.name != "sqlite":
        pytest.skip("query plans are read from SQLite")
    now = utcnow()
    with transaction(factory) as session:
        for n in range(30):
            started = now - timedelta(minutes=5 * n)
            session.add(SyncRun(source="london", started_at=started, finished_at=started, status="succeeded"))
            session.add(
                Submission(
                    id=f"push-{n}",
                    source="tracker-north-west",
                    token_id="t",
                    request_hash="h",
                    body=b"{}" * 1000,
                    received_at=started,
                    status_code=200,
                )
            )
    settings = settings.model_copy(
        update={"london_base_url": "http://x", "london_client_id": "a", "london_client_secret": "b"}
    )
    with statements_run(engine, "SELECT") as statements, factory() as session:
        health = {s["source"]: s for s in source_health(session, settings)}
    assert health["london"]["last_attempt"] == now.isoformat()
    assert health["tracker-north-west"]["last_successful_sync"] == now.isoformat()

    assert statements
    tables = set(SQLModel.metadata.tables)
    for statement in statements:
        plan = sqlite_plan(engine, statement)
        assert not [step for step in plan if "TEMP B-TREE" in step], (statement, plan)
        # A table is read by a search of an index, or by a walk of a covering index.
        scans = [step for step in plan if step.startswith("SCAN") and step.split()[1] in tables]
        assert not [step for step in scans if "COVERING INDEX" not in step], (statement, plan)
        assert any(step.split()[1] in tables for step in plan if step.startswith(("SEARCH", "SCAN"))), plan


def test_push_sources_lists_each_pushing_source_once_in_order(factory: sessionmaker[Session]) -> None:
    from gateway.store.sources import push_sources

    with factory() as session:
        assert push_sources(session) == []
    now = utcnow()
    with transaction(factory) as session:
        for n, source in enumerate(
            ["tracker-south-west", "tracker-east", "tracker-south-west", "tracker-midlands"]
        ):
            session.add(
                Submission(
                    id=f"push-{n}",
                    source=source,
                    token_id="t",
                    request_hash="h",
                    body=b"{}",
                    received_at=now,
                    status_code=200 if n else 422,
                )
            )
    with factory() as session:
        assert push_sources(session) == ["tracker-east", "tracker-midlands", "tracker-south-west"]


def test_a_new_run_finds_runs_left_running_from_an_index(
    engine: sa.Engine, factory: sessionmaker[Session]
) -> None:
    """``start_run`` closes its source's runs left running without reading every run the
    source ever had (they grow by hundreds a day)."""
    if engine.dialect.name != "sqlite":
        pytest.skip("query plans are read from SQLite")
    from gateway.sync.runs import start_run

    with statements_run(engine, "UPDATE SYNC_RUN") as updates:
        start_run(factory, "london", "incremental")
    assert len(updates) == 1
    plan = sqlite_plan(engine, updates[0])
    assert plan == ["SEARCH sync_run USING INDEX ix_sync_run_source_status (source=? AND status=?)"], plan
