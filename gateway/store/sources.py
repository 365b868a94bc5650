"""Queries about sources: their sync runs, their newest data, their pushes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.store.repository import insert_for
from gateway.store.tables import (
    FAILED,
    SUCCEEDED,
    Location,
    RegistryLocation,
    Submission,
    SyncLease,
    SyncRun,
    table,
)


@dataclass(frozen=True, slots=True)
class SourceActivity:
    """What the store knows of one source's recent activity."""

    last_attempt: datetime | None
    last_success: datetime | None
    consecutive_failures: int
    newest_data: datetime | None
    last_error_class: str | None
    last_error: str | None


_RECENT_RUNS = 50  # a source's runs read to judge its health


def _runs(session: Session, source: str, limit: int = 50) -> list[SyncRun]:
    return list(
        session.scalars(
            sa.select(SyncRun)
            .where(col(SyncRun.source) == source)
            .order_by(col(SyncRun.started_at).desc(), col(SyncRun.id).desc())
            .limit(limit)
        )
    )


def newest_location_data(session: Session, source: str) -> datetime | None:
    return session.scalar(
        sa.select(sa.func.max(col(Location.source_updated_at))).where(col(Location.source) == source)
    )


def pulled_source_activity(session: Session, source: str, data_source: str | None = None) -> SourceActivity:
    """Activity of a pulled source from its sync runs (newest data from ``data_source``'s
    locations, or the registry for 'cqc')."""
    t = table(SyncRun)
    # Runs still going, and runs cut short by their process stopping, say nothing of the
    # source's health. Only the columns needed: a run's rejections and warnings stay put.
    recent = session.execute(
        sa.select(t.c.status, t.c.started_at, t.c.finished_at, t.c.error_class, t.c.error_message)
        .where(t.c.source == source)
        .order_by(t.c.started_at.desc(), t.c.id.desc())
        .limit(_RECENT_RUNS)
    ).all()
    runs = [r for r in recent if r.status in (SUCCEEDED, FAILED)]
    # Failures in a row: the runs before the first that did not fail.
    failures = next((n for n, run in enumerate(runs) if run.status != FAILED), len(runs))
    success = next((r for r in runs if r.status == SUCCEEDED), None)
    last_success = success.finished_at if success else None
    if success is None and len(recent) == _RECENT_RUNS:
        # No success among the recent runs: the last one (and the failures since) lie
        # further back. Rare (a long outage), so looked up only then.
        last_success, failures = _last_success_and_failures_since(session, source)
    last_failed = runs[0] if runs and runs[0].status == FAILED else None
    if source == "cqc":
        newest = session.scalar(sa.select(sa.func.max(col(RegistryLocation.synced_at))))
    else:
        newest = newest_location_data(session, data_source or source)
    return SourceActivity(
        last_attempt=runs[0].started_at if runs else None,
        last_success=last_success,
        consecutive_failures=failures,
        newest_data=newest,
        last_error_class=last_failed.error_class if last_failed else None,
        last_error=last_failed.error_message if last_failed else None,
    )


def _last_success_and_failures_since(session: Session, source: str) -> tuple[datetime | None, int]:
    """When ``source``'s last succeeded run ended (None if none ever did) and how many of
    its runs failed after it."""
    t = table(SyncRun)
    success = session.execute(
        sa.select(t.c.started_at, t.c.finished_at)
        .where(t.c.source == source, t.c.status == SUCCEEDED)
        .order_by(t.c.started_at.desc(), t.c.id.desc())
        .limit(1)
    ).first()
    failed = sa.select(sa.func.count()).where(t.c.source == source, t.c.status == FAILED)
    if success is not None:
        failed = failed.where(t.c.started_at > success.started_at)
    return (success.finished_at if success else None), session.scalar(failed) or 0


def latest_runs(session: Session) -> dict[tuple[str, str], tuple[str, datetime]]:
    """Each (source, kind)'s latest run that has ended: its status and start."""
    t = table(SyncRun)
    latest = (
        sa.select(t.c.source, t.c.kind, t.c.status, t.c.started_at)
        .where(t.c.finished_at.is_not(None))
        .add_columns(
            sa.func.row_number()
            .over(partition_by=(t.c.source, t.c.kind), order_by=(t.c.started_at.desc(), t.c.id.desc()))
            .label("n")
        )
        .subquery()
    )
    rows = session.execute(
        sa.select(latest.c.source, latest.c.kind, latest.c.status, latest.c.started_at).where(latest.c.n == 1)
    )
    return {(source, kind): (status, started_at) for source, kind, status, started_at in rows}


def push_sources(session: Session) -> list[str]:
    """Names of every source that has pushed to the gateway, in order.

    One index look-up per source (each the next source after the last), not a walk over
    every push ever kept, which grows without end."""
    t = table(Submission)
    first = sa.select(sa.func.min(t.c.source).label("source")).cte("sources", recursive=True)
    following = sa.select(
        sa.select(sa.func.min(t.c.source)).where(t.c.source > first.c.source).scalar_subquery()
    ).where(first.c.source.is_not(None))
    sources = first.union_all(following)
    return list(session.scalars(sa.select(sources.c.source).where(sources.c.source.is_not(None))))


def push_source_activity(session: Session, source: str) -> SourceActivity:
    """Activity of a pushing tracker from its submissions."""
    submissions = list(
        session.execute(
            sa.select(col(Submission.received_at), col(Submission.status_code))
            .where(col(Submission.source) == source)
            .order_by(col(Submission.received_at).desc())
            .limit(50)
        )
    )
    failures = 0
    for _, status in submissions:
        if status == 200:
            break
        failures += 1
    success = next((received for received, status in submissions if status == 200), None)
    return SourceActivity(
        last_attempt=submissions[0][0] if submissions else None,
        last_success=success,
        consecutive_failures=failures,
        newest_data=newest_location_data(session, source),
        last_error_class="refused" if failures else None,
        last_error=None,
    )


def recent_runs(session: Session, source: str, limit: int = 20) -> list[SyncRun]:
    return _runs(session, source, limit)


def update_run_counts(session: Session, run_id: int, counts: dict[str, Any]) -> None:
    """Write a run's counters with one UPDATE, without loading the run (this happens
    with every page of a sync)."""
    t = table(SyncRun)
    updated = session.execute(sa.update(t).where(t.c.id == run_id).values(**counts))
    if updated.rowcount != 1:  # type: ignore[attr-defined]  # pragma: no cover - made by start_run
        raise RuntimeError(f"sync run {run_id} vanished")


# --- leases: one process at a time runs a source's sync -----------------------------------


def acquire_lease(session: Session, source: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take (or renew) the lease on ``source`` for ``holder`` until ``now + ttl``; False
    when another holder's lease has not expired."""
    t = table(SyncLease)
    insert = insert_for(session, t).values(source=source, holder=holder, expires_at=now + ttl)
    session.execute(
        insert.on_conflict_do_update(
            index_elements=[t.c.source],
            set_={"holder": holder, "expires_at": now + ttl},
            where=sa.or_(t.c.expires_at < now, t.c.holder == holder),
        )
    )
    return session.scalar(sa.select(t.c.holder).where(t.c.source == source)) == holder


def release_lease(session: Session, source: str, holder: str) -> None:
    """Give the lease up (only the holder can)."""
    t = table(SyncLease)
    session.execute(sa.delete(t).where(t.c.source == source, t.c.holder == holder))
