"""SQLite's write-ahead log, checkpointed off the writers' path.

By default SQLite makes the writer whose commit takes the log past 1,000 pages copy the
log back into the database and sync the file before its commit returns: a push or a sync
page that happens to cross the line waits for it (measured: about 15 % of a full London
sync). Here writers never checkpoint (``wal_autocheckpoint=0`` on every connection). A
connection going back to its pool that leaves the log past ``THRESHOLD_BYTES`` asks one
background thread for a passive checkpoint, on a connection of its own: it copies what no
reader still needs, and never waits for, or blocks, readers or writers.
``journal_size_limit`` cuts the log back once it starts over, so its size says how much
has been written since.

A process that stops before its checkpoint runs loses nothing: the log is the database's
own, and the next connection (or the last one closed) checkpoints it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa

log = logging.getLogger(__name__)

THRESHOLD_BYTES = 4 * 1024 * 1024  # about SQLite's own 1,000 pages of 4 KiB
LOG_SIZE_LIMIT_BYTES = 1024 * 1024  # what the log is cut back to when it starts over

_BUSY = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED"})

_lock = threading.Lock()
_pending: dict[str, Future[None]] = {}  # database file -> its checkpoint asked for
_executor: ThreadPoolExecutor | None = None


def connection_pragmas(cursor: sqlite3.Cursor) -> None:
    """Leave checkpoints to the background (set on every connection of a file database)."""
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.execute(f"PRAGMA journal_size_limit={LOG_SIZE_LIMIT_BYTES}")


def watch(engine: sa.Engine) -> None:
    """Ask for a checkpoint whenever a connection of ``engine`` goes back to its pool
    leaving the log large (the engine's own commit event comes before the commit)."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = os.path.abspath(database)

    def checked_in(_dbapi_connection: Any, _record: Any) -> None:
        try:
            size = os.stat(f"{path}-wal").st_size
        except OSError:  # no log (yet, or any more): nothing to copy
            return
        if size > THRESHOLD_BYTES:
            request(path)

    sa.event.listen(engine, "checkin", checked_in)


def request(path: str) -> Future[None]:
    """A checkpoint of the database file ``path`` in the background; one at a time per
    file (a request while one waits to run shares it)."""
    global _executor
    with _lock:
        pending = _pending.get(path)
        if pending is not None and not pending.running() and not pending.done():
            return pending
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-checkpoint")
        future = _executor.submit(_checkpoint, path)
        _pending[path] = future
        return future


def settle() -> None:
    """Wait for the checkpoints asked for so far (tests; a process about to stop)."""
    with _lock:
        pending = list(_pending.values())
    for future in pending:
        future.result()


def _checkpoint(path: str) -> None:
    try:
        connection = sqlite3.connect(path, timeout=0)
        try:
            _busy, logged, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            connection.close()
    except sqlite3.Error as exc:
        # A checkpoint that cannot run now runs after a later commit; nothing is lost.
        # Busy is the usual reason, and no fault: another connection (another gateway
        # process's checkpoint, the last connection closing) is copying the log already.
        level = logging.DEBUG if exc.sqlite_errorname in _BUSY else logging.WARNING
        name = os.path.basename(path)
        log.log(level, "SQLite checkpoint of %s did not run: %s", name, exc.sqlite_errorname)
        return
    log.debug("SQLite checkpoint of %s: %s of %s log pages copied", os.path.basename(path), copied, logged)
