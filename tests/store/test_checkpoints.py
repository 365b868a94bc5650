"""SQLite's log is checkpointed in the background, never by a committing writer."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.store import checkpoints
from gateway.store.db import create_engine

ROW = "x" * 4000
ROWS_PAST_THRESHOLD = checkpoints.THRESHOLD_BYTES // len(ROW) + 200


def _engine(tmp_path: Path) -> tuple[sa.Engine, Path]:
    path = tmp_path / "wal.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE blob (id INTEGER PRIMARY KEY, body TEXT)")
    return engine, path


def _write(engine: sa.Engine, rows: int) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO blob (body) VALUES (?)", [(ROW,)] * rows)


def test_writers_leave_checkpoints_to_the_background(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, path = _engine(tmp_path)
    asked: list[str] = []
    monkeypatch.setattr(checkpoints, "request", asked.append)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        _write(engine, 10)
        assert asked == []  # a small commit asks nothing
        before = path.stat().st_size
        _write(engine, ROWS_PAST_THRESHOLD)
        # The commit that took the log past the threshold asked for a checkpoint and did
        # not run one itself: the database file has not grown, the log holds it all.
        assert asked == [os.path.abspath(path)]
        assert path.stat().st_size == before
        assert Path(f"{path}-wal").stat().st_size > checkpoints.THRESHOLD_BYTES
    finally:
        engine.dispose()


def test_a_background_checkpoint_copies_the_log_into_the_database(tmp_path: Path) -> None:
    engine, path = _engine(tmp_path)
    try:
        _write(engine, ROWS_PAST_THRESHOLD)
        checkpoints.settle()
        assert path.stat().st_size > checkpoints.THRESHOLD_BYTES
        # The log starts over at the next write and is cut back to its limit.
        _write(engine, 1)
        assert Path(f"{path}-wal").stat().st_size <= checkpoints.LOG_SIZE_LIMIT_BYTES
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT count(*) FROM blob").scalar() == ROWS_PAST_THRESHOLD + 1
    finally:
        engine.dispose()


def test_requests_while_one_waits_share_it(tmp_path: Path) -> None:
    engine, path = _engine(tmp_path)
    release = threading.Event()
    try:
        # Hold the checkpoint thread with a first request that cannot finish yet.
        checkpoints.request(str(tmp_path / "other.db"))
        executor = checkpoints._executor
        assert executor is not None
        blocker = executor.submit(release.wait, 10)
        first = checkpoints.request(str(path))
        assert checkpoints.request(str(path)) is first
        release.set()
        blocker.result()
        first.result()
    finally:
        release.set()
        engine.dispose()


def test_a_checkpoint_that_cannot_run_is_reported_and_lost_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    garbage = tmp_path / "not-a-database.db"
    garbage.write_bytes(b"this is not SQLite" * 100)
    with caplog.at_level(logging.WARNING, logger="gateway.store.checkpoints"):
        checkpoints.request(str(garbage)).result()
    assert [r.getMessage() for r in caplog.records] == [
        "SQLite checkpoint of not-a-database.db did not run: SQLITE_NOTADB"
    ]


def test_a_checkpoint_another_connection_holds_off_is_left_to_it_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine, path = _engine(tmp_path)
    engine.dispose()
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        # A connection keeping the file to itself: every other one is told it is busy.
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("INSERT INTO blob (body) VALUES ('x')")
        with caplog.at_level(logging.DEBUG, logger="gateway.store.checkpoints"):
            checkpoints.request(str(path)).result()
    finally:
        holder.close()
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, "SQLite checkpoint of wal.db did not run: SQLITE_BUSY")
    ]
