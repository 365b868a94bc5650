"""Every query the national view needs, in one place. Callers own the transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from operator import itemgetter
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, defer
from sqlmodel import col

from gateway.model.vocab import OFFERED_VACANCY_TYPES
from gateway.store.tables import (
    ApiToken,
    ChangeClock,
    Location,
    LocationVersion,
    Submission,
    SyncState,
    UTCDateTime,
    VacancyLine,
    table,
)

# SQLite allows 32766 bound parameters; PostgreSQL far more. Keep IN lists well under.
_CHUNK = 900


def chunks(values: Sequence[Any]) -> Iterator[list[Any]]:
    """``values`` in lists short enough for one IN list."""
    for start in range(0, len(values), _CHUNK):
        yield list(values[start : start + _CHUNK])


def insert_for(session: Session, t: sa.Table) -> Any:
    """An INSERT of ``t`` in the session's dialect (for ON CONFLICT clauses)."""
    return dialect_insert(session.connection().dialect.name, t)


def dialect_insert(dialect: str, t: sa.Table) -> Any:
    """An INSERT of ``t`` in the dialect named ``dialect`` (for ON CONFLICT clauses)."""
    return (sqlite_insert if dialect == "sqlite" else pg_insert)(t)


@dataclass(frozen=True, slots=True)
class HeldLocation:
    """What the national view holds of a location, enough to judge an incoming update."""

    nhs_region: str | None
    source: str
    source_updated_at: datetime
    content_hash: str


def offers_sql(
    provider_type: sa.ColumnElement[Any], vacancy_type: sa.ColumnElement[Any]
) -> sa.ColumnElement[bool]:
    """``gateway.model.vocab.offers`` in SQL: whether a provider of ``provider_type`` offers
    beds of ``vacancy_type`` (a line that counts, and is a service). Over the current view's
    columns or a version record's fields alike."""
    return sa.or_(
        *(
            sa.and_(provider_type == kind, vacancy_type.in_(sorted(types)))
            for kind, types in OFFERED_VACANCY_TYPES.items()
        )
    )


def _rows_by_ids(
    session: Session, columns: Sequence[sa.ColumnElement[Any]], key: sa.ColumnElement[str], ids: Sequence[str]
) -> Iterator[Sequence[Any]]:
    """Rows of ``columns`` whose ``key`` is one of ``ids``.

    On SQLite the ids go as one JSON array read by ``json_each``: one bound value and one
    prepared statement however many ids (an expanding IN list is re-rendered, and the
    statement prepared again, for every count). Elsewhere, expanding IN lists in chunks.
    """
    unique = sorted(set(ids))
    if not unique:
        return
    sqlite = session.get_bind().dialect.name == "sqlite"
    query = _by_ids_statement(tuple(columns), key, sqlite)
    if sqlite:
        yield from session.execute(query, {"ids": orjson.dumps(unique).decode()})
        return
    for chunk in chunks(unique):
        yield from session.execute(query, {"ids": list(chunk)})


@lru_cache(maxsize=64)
def _by_ids_statement(
    columns: tuple[sa.ColumnElement[Any], ...], key: sa.ColumnElement[str], sqlite: bool
) -> sa.Select[Any]:
    # Built once: building a statement (and its cache key) costs more than running it.
    if sqlite:
        listed = sa.func.json_each(sa.bindparam("ids")).table_valued("value")
        return sa.select(*columns).where(key.in_(sa.select(listed.c.value)))
    return sa.select(*columns).where(key.in_(sa.bindparam("ids", expanding=True)))


def held_locations(session: Session, ids: Sequence[str]) -> dict[str, HeldLocation]:
    """The held state of each of ``ids`` that the national view has."""
    t = table(Location)
    columns = (t.c.cqc_location_id, t.c.nhs_region, t.c.source, t.c.source_updated_at, t.c.content_hash)
    return {
        row[0]: HeldLocation(row[1], row[2], row[3], row[4])
        for row in _rows_by_ids(session, columns, t.c.cqc_location_id, ids)
    }


@lru_cache(maxsize=8192)
def _sqlite_instant(value: datetime | None) -> str | None:
    # Cached: a batch repeats its received_at on every row.
    # As SQLAlchemy writes it, the year in four digits (``strftime`` leaves years before
    # 1000 unpadded on glibc, text that no reader can parse back).
    return (
        None if value is None else value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    )


def _json_text(values: Iterable[Any]) -> Iterator[str]:
    # Two C-level maps: orjson then bytes.decode, with no Python frame per value.
    return map(bytes.decode, map(orjson.dumps, values))


def _instant_texts(values: Iterable[datetime | None]) -> Iterator[str | None]:
    return map(_sqlite_instant, values)


def _sqlite_column(column: sa.Column[Any]) -> Callable[[Iterable[Any]], Iterable[Any]] | None:
    """How SQLAlchemy would store a column of Python values on SQLite (None: as they are;
    the driver binds a bool as the integer SQLAlchemy would write)."""
    if isinstance(column.type, sa.JSON):
        return _json_text
    if isinstance(column.type, UTCDateTime):
        return _instant_texts
    return None


def bulk_insert(session: Session, t: sa.Table, rows: list[dict[str, Any]]) -> int | None:
    """Insert ``rows`` (all with the same keys) in one executemany.

    On SQLite this goes straight to the driver with the values converted as SQLAlchemy
    would convert them: the per-row parameter processing of SQLAlchemy Core costs more
    than the insert itself on a national push. Values are converted a column at a time,
    which keeps the per-value work in C. Returns the last rowid on SQLite.
    Elsewhere it is a plain Core executemany.
    """
    if not rows:
        return None
    if session.connection().dialect.name != "sqlite":
        session.execute(sa.insert(t), rows)
        return None
    return _sqlite_executemany(session, t, rows)


def bulk_upsert(
    session: Session,
    t: sa.Table,
    rows: list[dict[str, Any]],
    keys: Sequence[str],
    updated: Sequence[str] | None = None,
) -> None:
    """``bulk_insert``, where a row whose ``keys`` (a unique constraint's columns) are
    already held replaces that row's ``updated`` columns (all the others by default)."""
    if not rows:
        return
    updated = tuple(key for key in rows[0] if key not in keys) if updated is None else tuple(updated)
    if session.connection().dialect.name == "sqlite":
        _sqlite_executemany(
            session,
            t,
            rows,
            f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
            + ", ".join(f"{column} = excluded.{column}" for column in updated),
        )
        return
    session.execute(_upsert_statement(t, tuple(keys), updated), rows)


@lru_cache(maxsize=16)
def _upsert_statement(t: sa.Table, keys: tuple[str, ...], updated: tuple[str, ...]) -> sa.Insert:
    # Built once: building an upsert costs more than running it.
    insert = pg_insert(t)
    statement: sa.Insert = insert.on_conflict_do_update(
        index_elements=[t.c[key] for key in keys], set_={key: insert.excluded[key] for key in updated}
    )
    return statement


def _sqlite_executemany(session: Session, t: sa.Table, rows: list[dict[str, Any]], clause: str = "") -> int:
    """One executemany of an INSERT of ``rows`` (and ``clause``) on the SQLite driver;
    the last rowid."""
    connection = session.connection()
    keys = list(rows[0])
    columns = [t.c[key] for key in keys]
    values: list[Iterable[Any]] = []
    for key, column in zip(keys, columns, strict=True):
        column_values = map(itemgetter(key), rows)
        convert = _sqlite_column(column)
        values.append(convert(column_values) if convert is not None else column_values)
    sql = (
        f"INSERT INTO {t.name} ({', '.join(c.name for c in columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)}){clause}"
    )
    cursor = connection.connection.cursor()
    try:
        cursor.executemany(sql, list(zip(*values, strict=True)))
        cursor.execute("SELECT last_insert_rowid()")
        found = cursor.fetchone()
        assert found is not None
        last: int = found[0]
    except sqlite3.Error as exc:
        # As SQLAlchemy would raise it (OperationalError, IntegrityError...), so callers
        # handle one kind of database error whichever way a statement went; the rows are
        # left out of it (health and care data).
        raise sa.exc.DBAPIError.instance(sql, None, exc, sqlite3.Error) from exc
    finally:
        cursor.close()
    return last


def claim_change_clock(session: Session) -> datetime:
    """Take the change clock's row lock for the rest of the transaction and return the
    instant it now stands at: later than every instant handed out before (by at least a
    microsecond, however far a host's clock lags the last one).

    Writers stamp their versions with it; readers of the change feed take it in a
    transaction of their own to get a horizon that every version committed before is
    earlier than and every later one is later than (had two claims been able to return the
    same instant, a bulk export's ``recorded_at < transactionTime`` would leave out
    versions committed before its kick-off).
    """
    # The UPDATE takes the row lock first, and (on PostgreSQL) reads the row a concurrent
    # writer committed while it waited, so the clock never runs backwards.
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    last: datetime = update_counter(session, _LOCK_CLOCK, {}, last=epoch)
    stamp = max(datetime.now(UTC), last + _TICK)
    session.execute(_SET_CLOCK, {"stamp": stamp})
    return stamp


def update_counter(session: Session, statement: sa.Update, params: dict[str, Any], **first: Any) -> Any:
    """Run ``statement``, an UPDATE ... RETURNING of a one-row table's row ``id = 1`` (its
    row lock then holds to the end of the transaction), and return what it returns. A
    database whose row was never made (made without the migrations) gets it, with the
    values ``first``, and the statement runs again."""
    found = session.scalar(statement, params)
    if found is None:
        t = statement.table
        assert isinstance(t, sa.Table)
        session.execute(insert_for(session, t).values(id=1, **first).on_conflict_do_nothing())
        found = session.scalar(statement, params)
    assert found is not None
    return found


_CLOCK = table(ChangeClock)
_LOCK_CLOCK = sa.update(_CLOCK).where(_CLOCK.c.id == 1).values(last=_CLOCK.c.last).returning(_CLOCK.c.last)
_SET_CLOCK = (
    sa.update(_CLOCK).where(_CLOCK.c.id == 1).values(last=sa.bindparam("stamp", type_=_CLOCK.c.last.type))
)
_TICK = timedelta(microseconds=1)  # the clock's resolution on both databases


def add_versions(
    session: Session, versions: list[dict[str, Any]], stamp: datetime | None = None
) -> list[int]:
    """Insert version rows in order, stamped with the change clock (``recorded_at``: the
    ``stamp`` the caller claimed, else claimed here); return their version ids in the same
    order."""
    if not versions:
        return []
    if stamp is None:
        stamp = claim_change_clock(session)
    for version in versions:
        version["recorded_at"] = stamp
    t = table(LocationVersion)
    if session.connection().dialect.name == "sqlite":
        last = bulk_insert(session, t, versions)
        assert last is not None
        # One writer holds a SQLite database, so the rowids of one executemany are
        # consecutive and end at the last one inserted.
        return list(range(last - len(versions) + 1, last + 1))
    result = session.execute(
        sa.insert(t).returning(t.c.version_id, t.c.cqc_location_id, t.c.content_hash), versions
    )
    # Ids grow in insertion order, so repeats of one (location, content) keep their order.
    found: dict[tuple[str, str], list[int]] = {}
    for version_id, cqc_id, digest in sorted(result, key=lambda row: row[0]):
        found.setdefault((cqc_id, digest), []).append(version_id)
    return [found[(v["cqc_location_id"], v["content_hash"])].pop(0) for v in versions]


def replace_locations(
    session: Session,
    locations: list[dict[str, Any]],
    lines: list[dict[str, Any]],
    existing: Sequence[str] | None = None,
) -> None:
    """Make ``locations`` (and exactly ``lines`` for them) the current national view.

    ``existing``: those of the locations the view already holds (all of them when None).
    """
    if not locations:
        return
    ids = [row["cqc_location_id"] for row in locations] if existing is None else list(existing)
    line_t, loc_t = table(VacancyLine), table(Location)
    ids_param: sa.BindParameter[Any] = sa.bindparam("ids", expanding=True)
    delete_lines = sa.delete(line_t).where(line_t.c.cqc_location_id.in_(ids_param))
    delete_locations = sa.delete(loc_t).where(loc_t.c.cqc_location_id.in_(ids_param))
    for chunk in chunks(ids):
        session.execute(delete_lines, {"ids": list(chunk)})
        session.execute(delete_locations, {"ids": list(chunk)})
    bulk_insert(session, loc_t, locations)
    bulk_insert(session, line_t, lines)


@dataclass(frozen=True, slots=True)
class RegistryPlace:
    """What the CQC registry says of where a location is, and of how many beds it is
    registered for (what an incoming update's entered capacity is compared with)."""

    nhs_region: str | None
    latitude: float | None
    longitude: float | None
    registered_beds: int | None = None


def registry_places(session: Session, ids: Sequence[str]) -> dict[str, RegistryPlace]:
    """The registry's region, coordinates and registered beds of those of ``ids`` it knows."""
    from gateway.store.tables import RegistryLocation

    t = table(RegistryLocation)
    columns = (t.c.cqc_location_id, t.c.nhs_region, t.c.latitude, t.c.longitude, t.c.registered_beds)
    return {
        cqc_id: RegistryPlace(region, lat, lon, beds)
        for cqc_id, region, lat, lon, beds in _rows_by_ids(session, columns, t.c.cqc_location_id, ids)
    }


def get_location(session: Session, cqc_location_id: str) -> tuple[Location, list[VacancyLine]] | None:
    """A location of the national view with its vacancy lines, or None."""
    location = session.get(Location, cqc_location_id)
    if location is None:
        return None
    lines = session.scalars(
        sa.select(VacancyLine)
        .where(col(VacancyLine.cqc_location_id) == cqc_location_id)
        .order_by(col(VacancyLine.line_key))
    ).all()
    return location, list(lines)


def location_versions(session: Session, cqc_location_id: str) -> list[LocationVersion]:
    """Every accepted version of one location, oldest first."""
    return list(
        session.scalars(
            sa.select(LocationVersion)
            .where(col(LocationVersion.cqc_location_id) == cqc_location_id)
            .order_by(col(LocationVersion.version_id))
        )
    )


# --- submissions -------------------------------------------------------------------------


def add_submission(session: Session, submission: Submission) -> None:
    session.add(submission)
    session.flush()


def submission_by_idempotency_key(session: Session, token_id: str, key: str) -> Submission | None:
    """The push made with ``key`` by the token ``token_id``, its raw body left unread (an
    idempotent retry is answered from the request's digest and the answer kept)."""
    return session.scalars(
        sa.select(Submission)
        .options(defer(Submission.body))  # type: ignore[arg-type]  # a SQLModel field is a column attribute
        .where(
            col(Submission.token_id) == token_id,
            col(Submission.idempotency_key) == key,
        )
    ).first()


def discard_submission_bodies(session: Session, received_before: datetime, now: datetime, limit: int) -> int:
    """Discard the raw bodies of at most ``limit`` pushes received before
    ``received_before``, oldest first; keep each push's record, answer and counts. Returns
    how many were discarded (fewer than ``limit``: none older is left)."""
    t = table(Submission)
    oldest = (
        sa.select(t.c.id)
        .where(t.c.body_discarded_at.is_(None), t.c.received_at < received_before)
        .order_by(t.c.body_discarded_at, t.c.received_at)
        .limit(limit)
    )
    ids = list(session.scalars(oldest))
    if ids:
        session.execute(
            sa.update(t).where(t.c.id.in_(ids)).values(body=None, body_discarded_at=now),
        )
    return len(ids)


def finish_submission(session: Session, submission_id: str, values: dict[str, Any]) -> None:
    """Record what became of a kept submission (its answer and counts), without reading
    its raw body back."""
    t = table(Submission)
    updated = session.execute(sa.update(t).where(t.c.id == submission_id).values(**values))
    if updated.rowcount != 1:  # type: ignore[attr-defined]  # pragma: no cover - kept just before
        raise RuntimeError(f"submission {submission_id} vanished")


def count_submissions(session: Session) -> int:
    return int(session.scalar(sa.select(sa.func.count()).select_from(Submission)) or 0)


# --- tokens ------------------------------------------------------------------------------


def token_by_hash(session: Session, token_hash: str) -> ApiToken | None:
    return session.scalars(sa.select(ApiToken).where(col(ApiToken.token_hash) == token_hash)).first()


def add_token(session: Session, token: ApiToken) -> None:
    session.add(token)
    session.flush()


def token_by_id(session: Session, token_id: str) -> ApiToken | None:
    return session.get(ApiToken, token_id)


def tokens_named(session: Session, name: str) -> list[ApiToken]:
    return list(session.scalars(sa.select(ApiToken).where(col(ApiToken.name) == name)))


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(sa.select(ApiToken).order_by(col(ApiToken.created_at))))


# --- sync state --------------------------------------------------------------------------


def get_sync_cursor(session: Session, source: str) -> dict[str, Any] | None:
    state = session.get(SyncState, source)
    return dict(state.cursor) if state is not None else None


def set_sync_cursor(session: Session, source: str, cursor: dict[str, Any], now: datetime) -> None:
    state = session.get(SyncState, source)
    if state is None:
        session.add(SyncState(source=source, cursor=cursor, updated_at=now))
    else:
        state.cursor = cursor
        state.updated_at = now
    session.flush()
