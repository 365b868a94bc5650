"""A sync run that fails records what failed, never data: an internal fault's text (which
may quote records or SQL parameters) stays out of the run record, the API and the log."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from adapters.common.http import TransientUpstreamError
from gateway.settings import Settings
from gateway.store.tables import SyncRun
from gateway.sync import runs
from gateway.sync.runs import RunCounts, finish_run, start_run
from gateway.sync.scheduler import SourceScheduler
from tests.conftest import TokenMaker, bearer

RECORD_TEXT = '{"name": "Rose Lodge", "resident": "Mrs A Example", "nhs_number": "9434765919"}'


def _fail_with_record_text() -> None:
    raise ValueError(f"could not store {RECORD_TEXT}")


def test_internal_fault_text_is_not_recorded_served_or_logged(
    factory: sessionmaker[Session],
    client: TestClient,
    make_token: TokenMaker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    run_id = start_run(factory, "london", "incremental")
    try:
        _fail_with_record_text()
    except ValueError as error:
        with caplog.at_level(logging.ERROR):
            run = finish_run(factory, run_id, RunCounts(), error)
    assert run.status == "failed"
    assert run.error_class == "internal"
    assert run.error_message is not None and run.error_message.startswith("ValueError")
    assert "Mrs A Example" not in run.error_message
    # The operator still gets the type and where it happened, never the text.
    assert "ValueError" in caplog.text and "_fail_with_record_text" in caplog.text
    assert "Mrs A Example" not in caplog.text

    token = make_token(scopes=("read",))
    runs = client.get("/api/v1/sources/london/runs", headers=bearer(token))
    assert runs.status_code == 200
    assert runs.json()[0]["error_class"] == "internal"
    assert "Mrs A Example" not in runs.text
    health = client.get("/api/v1/sources", headers=bearer(token))
    assert "Mrs A Example" not in health.text


def test_upstream_error_message_is_still_recorded(factory: sessionmaker[Session]) -> None:
    run_id = start_run(factory, "london", "incremental")
    error = TransientUpstreamError("GET /api/v2/homes?cursor=abc: HTTP 503", status_code=503)
    run = finish_run(factory, run_id, RunCounts(), error)
    assert run.error_message == "TransientUpstreamError: GET /api/v2/homes?cursor=abc: HTTP 503"


async def test_failed_housekeeping_job_logs_no_exception_text(
    factory: sessionmaker[Session], settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    scheduler = SourceScheduler(factory, None, settings)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR):
        await scheduler._run_leased("test-lease", "test job", _fail_with_record_text)
    assert "test job failed" in caplog.text and "ValueError" in caplog.text
    assert "Mrs A Example" not in caplog.text


def _database_gone() -> sa.exc.OperationalError:
    return sa.exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked"))


def test_a_run_the_database_failed_is_closed_as_failed_once_it_answers_again(
    factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A run that fails because the gateway's database went away is recorded as a
    transient failure once the database answers again (its record is tried again), not
    left running for the next run to close as 'interrupted (its process stopped)', which
    hid the failure from the source's health."""
    real_finish = runs.finish_run
    refusals = iter([_database_gone(), _database_gone()])

    def finish_when_back(*args: Any) -> SyncRun:
        refusal = next(refusals, None)
        if refusal is not None:
            raise refusal
        return real_finish(*args)

    monkeypatch.setattr(runs, "finish_run", finish_when_back)
    monkeypatch.setattr(runs, "CLOSE_FIRST_WAIT_S", 0.01)
    run_id = start_run(factory, "london", "incremental")

    async def work() -> None:
        raise _database_gone()

    with caplog.at_level(logging.WARNING, logger="gateway.sync.runs"):
        run = asyncio.run(runs.recorded(factory, run_id, RunCounts(), work()))
    assert (run.status, run.error_class) == ("failed", "transient")
    assert run.error_message == "the gateway's database was unavailable (sqlite3.OperationalError)"
    # Two tries that failed, then the run itself, each a warning (no stack: nothing unexpected).
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING", "WARNING"]
    assert "database is locked" not in caplog.text  # the driver's text may quote data: never logged
