"""Every query the national view needs, in one place. Callers own the transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.store.tables import (
    ApiToken,
    Location,
    LocationVersion,
    Submission,
    SyncState,
    VacancyLine,
    table,
)

# SQLite allows 32766 bound parameters; PostgreSQL far more. Keep IN lists well under.
_CHUNK = 900


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


@dataclass(frozen=True, slots=True)
class HeldLocation:
    """What the national view holds of a location, enough to judge an incoming update."""

    nhs_region: str | None
    source: str
    source_updated_at: datetime
    content_hash: str


def held_locations(session: Session, ids: Sequence[str]) -> dict[str, HeldLocation]:
    """The held state of each of ``ids`` that the national view has."""
    held: dict[str, HeldLocation] = {}
    t = table(Location)
    for chunk in _chunks(sorted(set(ids))):
        rows = session.execute(
            sa.select(
                t.c.cqc_location_id,
                t.c.nhs_region,
                t.c.source,
                t.c.source_updated_at,
                t.c.content_hash,
            ).where(t.c.cqc_location_id.in_(chunk))
        )
        for row in rows:
            held[row[0]] = HeldLocation(row[1], row[2], row[3], row[4])
    return held


def add_versions(session: Session, versions: list[dict[str, Any]]) -> list[int]:
    """Insert version rows in order; return their version ids in the same order."""
    if not versions:
        return []
    result = session.execute(
        sa.insert(table(LocationVersion)).returning(
            table(LocationVersion).c.version_id, sort_by_parameter_order=True
        ),
        versions,
    )
    return [row[0] for row in result]


def replace_locations(
    session: Session, locations: list[dict[str, Any]], lines: list[dict[str, Any]]
) -> None:
    """Make ``locations`` (and exactly ``lines`` for them) the current national view."""
    if not locations:
        return
    ids = [row["cqc_location_id"] for row in locations]
    line_t, loc_t = table(VacancyLine), table(Location)
    for chunk in _chunks(ids):
        session.execute(sa.delete(line_t).where(line_t.c.cqc_location_id.in_(chunk)))
        session.execute(sa.delete(loc_t).where(loc_t.c.cqc_location_id.in_(chunk)))
    session.execute(sa.insert(loc_t), locations)
    if lines:
        session.execute(sa.insert(line_t), lines)


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
    return session.scalars(
        sa.select(Submission).where(
            col(Submission.token_id) == token_id,
            col(Submission.idempotency_key) == key,
        )
    ).first()


def get_submission(session: Session, submission_id: str) -> Submission | None:
    return session.get(Submission, submission_id)


def count_submissions(session: Session) -> int:
    return int(session.scalar(sa.select(sa.func.count()).select_from(Submission)) or 0)


# --- tokens ------------------------------------------------------------------------------


def token_by_hash(session: Session, token_hash: str) -> ApiToken | None:
    return session.scalars(
        sa.select(ApiToken).where(col(ApiToken.token_hash) == token_hash)
    ).first()


def add_token(session: Session, token: ApiToken) -> None:
    session.add(token)
    session.flush()


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
