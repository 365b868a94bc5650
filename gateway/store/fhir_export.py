"""Queries behind FHIR bulk export: export jobs, and the national view as of an instant.

The national view as of an instant ``T`` is, for each location, its newest version
recorded before ``T`` (newest in the change feed's order: ``recorded_at``, then
``version_id``). Every version recorded before a feed horizon is committed and no later
one can be stamped before it, so the same query answers the same rows for as long as the
versions are kept: an export job stores ``T`` and nothing else of the data, and any
gateway process can count or serve its files.

Rows are read with ``yield_per`` (a server-side cursor on PostgreSQL, ``fetchmany`` on
SQLite), so a national export is read a partition at a time; records come as JSON text,
parsed one row at a time as they are rendered, so a partition is a few thousand strings
rather than a million young objects for the garbage collector to walk again and again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapters.fhir.outbound.render import LocationSnapshot, RegistryFacts
from gateway.store.fhir import REGISTRY_COLUMNS
from gateway.store.tables import BulkExport, Location, LocationVersion, RegistryLocation, table, utcnow

JOB, LOC, VER, REG = table(BulkExport), table(Location), table(LocationVersion), table(RegistryLocation)

IN_PROGRESS, COMPLETE, CANCELLED, FAILED = "in-progress", "complete", "cancelled", "failed"

# ``gateway.store.fhir.VERSION_COLUMNS`` with the record as JSON text (parsed per row).
RECORD_TEXT = sa.cast(VER.c.record, sa.Text).label("record")
VERSION_COLUMNS = (VER.c.version_id, VER.c.recorded_at, VER.c.source, RECORD_TEXT, VER.c.cqc_location_id)


# --- jobs --------------------------------------------------------------------------------


def add_job(
    session: Session,
    *,
    job_id: str,
    token_id: str,
    request_url: str,
    types: Sequence[str],
    since: datetime | None,
    transaction_time: datetime,
) -> None:
    """Record a new export job, in progress."""
    session.execute(
        sa.insert(JOB).values(
            id=job_id,
            token_id=token_id,
            status=IN_PROGRESS,
            request_url=request_url,
            types=list(types),
            since=since,
            transaction_time=transaction_time,
            created_at=utcnow(),
            output=[],
        )
    )


def get_job(session: Session, job_id: str) -> BulkExport | None:
    """The job, whatever its status, or None."""
    return session.get(BulkExport, job_id)


def _finish(session: Session, job_id: str, **values: Any) -> bool:
    # Only a job still in progress moves on: a cancelled job stays cancelled, and of two
    # processes finishing one job (a worker, and a poll that gave up waiting) one writes.
    result = session.execute(
        sa.update(JOB).where(JOB.c.id == job_id, JOB.c.status == IN_PROGRESS).values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def complete_job(session: Session, job_id: str, output: list[dict[str, Any]]) -> bool:
    """Mark an in-progress job complete with its manifest's output; False if it was not
    in progress any more."""
    return _finish(session, job_id, status=COMPLETE, output=output, completed_at=utcnow())


def fail_job(session: Session, job_id: str, error: str) -> bool:
    """Mark an in-progress job failed, with a short reason (never data)."""
    return _finish(session, job_id, status=FAILED, error=error, completed_at=utcnow())


def cancel_job(session: Session, job_id: str) -> None:
    """Cancel a job (in progress or complete): its status and files are gone from the API."""
    session.execute(
        sa.update(JOB)
        .where(JOB.c.id == job_id, JOB.c.status != CANCELLED)
        .values(status=CANCELLED, completed_at=utcnow())
    )


# --- the national view as of an instant --------------------------------------------------


def _newest_before(transaction_time: datetime) -> sa.Subquery:
    """Each location's versions recorded before ``transaction_time``, ranked newest first."""
    rank = sa.func.row_number().over(
        partition_by=VER.c.cqc_location_id, order_by=(VER.c.recorded_at.desc(), VER.c.version_id.desc())
    )
    return (
        sa.select(VER.c.version_id, rank.label("rank"))
        .where(VER.c.recorded_at < transaction_time)
        .subquery("ranked")
    )


def snapshot_query(
    transaction_time: datetime,
    since: datetime | None,
    *,
    columns: Sequence[Any] = VERSION_COLUMNS,
    enriched: bool = False,
) -> sa.Select[Any]:
    """The newest version before ``transaction_time`` of every location (with ``since``,
    only those recorded at or after it).

    ``enriched``: also the registry's facts and the current view's region (the layout
    ``enriched_snapshot`` reads). Unordered: an ORDER BY would make the database sort
    every record before sending the first.
    """
    ranked = _newest_before(transaction_time)
    source: sa.FromClause = VER.join(
        ranked, sa.and_(ranked.c.version_id == VER.c.version_id, ranked.c.rank == 1)
    )
    selected = list(columns)
    if enriched:
        selected = [*VERSION_COLUMNS, *REGISTRY_COLUMNS, LOC.c.nhs_region]
        source = source.outerjoin(REG, REG.c.cqc_location_id == VER.c.cqc_location_id).outerjoin(
            LOC, LOC.c.cqc_location_id == VER.c.cqc_location_id
        )
    query = sa.select(*selected).select_from(source)
    if since is not None:
        query = query.where(VER.c.recorded_at >= since)
    return query


def provider_query(transaction_time: datetime, since: datetime | None) -> sa.Select[Any]:
    """For each provider named in the view as of ``transaction_time`` (with ``since``: in
    the versions recorded since), its Organization's version then: the newest version
    naming it recorded before ``transaction_time`` (of any location, even one that later
    named another provider), as a read at that instant gives it.

    Version ids grow in the change feed's order, so the newest is the greatest. Providers
    no location names at ``transaction_time`` (retired) are left out, as retired services are.
    """
    named = snapshot_query(transaction_time, since, columns=[VER.c.cqc_provider_id]).subquery("named")
    newest = (
        sa.select(sa.func.max(VER.c.version_id).label("version_id"))
        .where(
            VER.c.recorded_at < transaction_time,
            VER.c.cqc_provider_id.in_(
                sa.select(named.c.cqc_provider_id).where(named.c.cqc_provider_id.is_not(None))
            ),
        )
        .group_by(VER.c.cqc_provider_id)
        .subquery("newest")
    )
    return sa.select(*VERSION_COLUMNS).select_from(VER.join(newest, newest.c.version_id == VER.c.version_id))


_FACTS = slice(len(VERSION_COLUMNS) + 1, len(VERSION_COLUMNS) + len(REGISTRY_COLUMNS))


def enriched_snapshot(row: Sequence[Any]) -> LocationSnapshot:
    """The snapshot of one row of an ``enriched`` snapshot query.

    The registry's facts and the region are today's (neither keeps history); the record
    is the version's.
    """
    registered = row[len(VERSION_COLUMNS)] is not None
    return LocationSnapshot(
        version_id=row[0],
        recorded_at=row[1],
        source=row[2],
        record=orjson.loads(row[3]),
        registry=RegistryFacts(*row[_FACTS]) if registered else None,
        nhs_region=row[-1],
    )


def plain_snapshot(row: Sequence[Any]) -> LocationSnapshot:
    """The snapshot of one row of ``VERSION_COLUMNS`` (no registry facts)."""
    return LocationSnapshot(version_id=row[0], recorded_at=row[1], source=row[2], record=orjson.loads(row[3]))


def stream(session: Session, query: sa.Select[Any], partition: int) -> Iterator[Sequence[Sequence[Any]]]:
    """The query's rows, ``partition`` at a time, read lazily from the database."""
    result = session.execute(query, execution_options={"yield_per": partition})
    yield from result.partitions()


def records(
    session: Session, transaction_time: datetime, since: datetime | None, partition: int
) -> Iterator[dict[str, Any]]:
    """The records of the view as of ``transaction_time`` (just the records: for counting)."""
    query = snapshot_query(transaction_time, since, columns=[RECORD_TEXT])
    for rows in stream(session, query, partition):
        for row in rows:
            found: dict[str, Any] = orjson.loads(row[0])
            yield found
