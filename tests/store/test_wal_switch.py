"""A SQLite database is put in WAL mode once, by its migration; processes and threads
opening one that is not yet in it (migrated by an older release, say) all get there,
none refused because another was switching it at the same moment."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.store import db
from gateway.store.db import create_engine, upgrade


def _journal_mode(path: Path) -> str:
    with sqlite3.connect(path) as connection:
        mode: str = connection.execute("PRAGMA journal_mode").fetchone()[0]
    connection.close()
    return mode


def _rollback_journal_database(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE t (x)")
    connection.commit()
    connection.close()


def test_a_migrated_database_is_already_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    upgrade(f"sqlite:///{path}")
    assert _journal_mode(path) == "wal"


def test_connections_opening_at_once_all_switch_a_database_to_wal(tmp_path: Path) -> None:
    # Without the retry, about one round in twenty had a connection refused at once
    # ('database is locked') whatever its busy timeout.
    failures: list[BaseException] = []
    for round_ in range(40):
        path = tmp_path / f"r{round_}.db"
        _rollback_journal_database(path)
        engines = [create_engine(f"sqlite:///{path}") for _ in range(4)]
        start = threading.Barrier(len(engines))

        def open_and_read(engine: sa.Engine, start: threading.Barrier) -> None:
            start.wait()
            try:
                with engine.connect() as connection:
                    connection.exec_driver_sql("SELECT count(*) FROM t").scalar()
            except BaseException as error:  # noqa: BLE001 (collected, asserted below)
                failures.append(error)

        threads = [threading.Thread(target=open_and_read, args=(engine, start)) for engine in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for engine in engines:
            engine.dispose()
        assert _journal_mode(path) == "wal"
    assert failures == []


def _held_by_a_reader(path: Path) -> sqlite3.Connection:
    """A connection reading the database in its old journal mode: no switch until it ends."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN")
    holder.execute("SELECT * FROM t").fetchall()
    return holder


def test_a_switch_refused_for_a_moment_is_tried_again(tmp_path: Path) -> None:
    path = tmp_path / "held.db"
    _rollback_journal_database(path)
    holder = _held_by_a_reader(path)
    released = threading.Timer(0.2, holder.execute, args=("ROLLBACK",))
    released.start()
    connection = sqlite3.connect(path, timeout=0)  # refused at once while the reader reads
    try:
        db._wal(connection.cursor())
    finally:
        released.join()
        holder.close()
        connection.close()
    assert _journal_mode(path) == "wal"


def test_a_switch_still_refused_past_its_timeout_is_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "held.db"
    _rollback_journal_database(path)
    holder = _held_by_a_reader(path)
    monkeypatch.setattr(db, "WAL_SWITCH_TIMEOUT_S", 0.3)
    connection = sqlite3.connect(path, timeout=0)
    try:
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            db._wal(connection.cursor())
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        connection.close()
    assert _journal_mode(path) == "delete"
