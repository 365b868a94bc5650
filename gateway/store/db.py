"""Engine, sessions and schema migrations for SQLite (default) and PostgreSQL."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.orm import Session, sessionmaker
from typing_extensions import TypeIs

from gateway.store import checkpoints

MIGRATIONS = Path(__file__).parent / "migrations"


# How long a new connection keeps trying to put a file database in WAL mode while other
# connections are doing the same (see ``_wal``).
WAL_SWITCH_TIMEOUT_S = 30.0


def _wal(cursor: sqlite3.Cursor) -> None:
    """Put the database in WAL mode (kept in the file: lets readers go on while a writer
    commits). A database already in it is left alone. The switch needs the file to itself,
    and SQLite refuses at once, busy timeout or not, a connection whose switch collides
    with another's (two connections opening a database migrated moments ago): it is tried
    again until ``WAL_SWITCH_TIMEOUT_S``. ``upgrade`` switches a database as it migrates
    it, so a served database has normally switched long before."""
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    deadline = time.monotonic() + WAL_SWITCH_TIMEOUT_S
    pause = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if error.sqlite_errorname != "SQLITE_BUSY" or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # NORMAL sync is safe under WAL.
    cursor = dbapi_connection.cursor()
    _wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    checkpoints.connection_pragmas(cursor)
    cursor.close()


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def create_engine(url: str, *, pool_size: int = 10) -> sa.Engine:
    """An engine for ``url``: SQLite in WAL mode, or a pooled PostgreSQL engine."""
    json_options: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
    if url.startswith("sqlite"):
        # Connections are cheap to keep and dear to open (the pragmas above): keep enough
        # for every request thread's session and its principal look-up, so none is
        # opened and thrown away under load.
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size * 2,
            max_overflow=pool_size * 2,
            **json_options,
        )
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        checkpoints.watch(engine)
        return engine
    return sa.create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, **json_options
    )


def read_snapshot(session: Session) -> None:
    """Make what ``session`` reads from here to the end of its transaction one snapshot
    of the database, so an answer drawn from several statements (a report's rows and its
    total) adds up while others write. Call it before the transaction's first statement.

    PostgreSQL's default (read committed) gives each statement its own snapshot; repeatable
    read gives the transaction one. SQLite's driver opens no transaction for reads, so each
    statement would see the latest commit; an explicit BEGIN holds one snapshot (WAL) from
    the first read."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    elif not connection.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
        connection.exec_driver_sql("BEGIN")


def database_fault(error: sa.exc.DBAPIError | sa.exc.TimeoutError) -> str:
    """What went wrong with the database, safe to log: the driver's error class and its
    code (a PostgreSQL SQLSTATE, a SQLite error name), never the message, which may quote
    SQL parameters (records)."""
    if isinstance(error, sa.exc.TimeoutError):
        return "connection pool exhausted (TimeoutError)"
    orig = error.orig
    kind = f"{type(orig).__module__.split('.')[0]}.{type(orig).__name__}"
    code = getattr(orig, "sqlstate", None) or getattr(orig, "sqlite_errorname", None)
    return f"{kind} {code}" if code else kind


def database_bug(error: sa.exc.DBAPIError | sa.exc.TimeoutError) -> bool:
    """Whether a driver's operational error is the SQL's fault, not the database's state:
    SQLite reports a syntax error, a missing table or column as an OperationalError with
    the generic SQLITE_ERROR (PostgreSQL raises a ProgrammingError), and retrying it never
    helps. Anything else of its class (locked, cannot open, I/O) passes."""
    orig = error.orig if isinstance(error, sa.exc.DBAPIError) else None
    return getattr(orig, "sqlite_errorname", None) == "SQLITE_ERROR"


def database_unavailable(error: BaseException) -> TypeIs[sa.exc.OperationalError | sa.exc.TimeoutError]:
    """Whether ``error`` says the database does not answer (down, restarting, locked, its
    pool exhausted): worth trying again later, unlike a fault in the SQL itself."""
    return isinstance(error, sa.exc.OperationalError | sa.exc.TimeoutError) and not database_bug(error)


@dataclass(frozen=True, slots=True)
class SchemaCheck:
    """Whether this code can serve the database's schema, and what to say of it."""

    ready: bool
    detail: str | None = None


def check_schema(engine: sa.Engine) -> SchemaCheck:
    """Can this code serve the database's schema? Not when never migrated or at an older
    revision (``gateway db upgrade`` mends it); yes at its own revision, and at one a newer
    release made: a rolling deploy migrates first, and the processes of the release before
    keep serving until they are replaced (the detail says so). The driver's error when the
    database does not answer."""
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    latest, known = _revisions()
    if current == latest:
        return SchemaCheck(True)
    if current is None:
        return SchemaCheck(False, "the database has no gateway schema: run gateway db upgrade")
    if current not in known:
        return SchemaCheck(True, check_schema_detail(current))
    return SchemaCheck(
        False,
        f"the database schema is at revision {current}, this gateway needs {latest}: run gateway db upgrade",
    )


def check_schema_detail(current: str) -> str:
    """What is said of a database schema at ``current``, a revision newer than this code's."""
    return (
        f"the database schema is at revision {current}, newer than this gateway's {_revisions()[0]}: "
        "a newer release migrated it; this process serves until it is replaced"
    )


@lru_cache(maxsize=1)
def _revisions() -> tuple[str | None, frozenset[str]]:
    """This code's latest schema revision and every revision it knows (read once)."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return script.get_current_head(), frozenset(r.revision for r in script.walk_revisions())


def session_factory(engine: sa.Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> str | None:
    """Bring the database at ``url`` to ``revision`` (the latest by default); a SQLite
    file is left in WAL mode, before any gateway process opens it.

    A database a newer release already migrated (at a revision this code does not know) is
    left as it is, and what was found is returned: during a rolling deploy the processes of
    the release before keep starting and serving (see ``check_schema``)."""
    if revision == "head":
        newer = _newer_schema(url)
        if newer is not None:
            return newer
    command.upgrade(alembic_config(url), revision)
    if url.startswith("sqlite"):
        engine = create_engine(url, pool_size=1)  # its connections switch to WAL
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    return None


def sqlite_file_missing(url: str) -> bool:
    """Does ``url`` name a SQLite file that does not exist?"""
    parsed = sa.engine.make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" or parsed.query:
        return False  # a URI filename or options: left to SQLite
    return not Path(database).exists()


def _newer_schema(url: str) -> str | None:
    """What ``check_schema`` says of a database at a revision newer than this code's; None
    for any other (a new SQLite file is not made here: the migration makes it)."""
    if sqlite_file_missing(url):
        return None
    engine = create_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    if current is None or current in _revisions()[1]:
        return None
    return check_schema_detail(current)
