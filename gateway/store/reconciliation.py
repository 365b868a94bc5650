"""Queries behind reconciliation: snapshots of the national view, the registry, the
per-source figures, held records and findings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.store.repository import bulk_upsert, chunks
from gateway.store.tables import (
    SUCCEEDED,
    Finding,
    HeldRecord,
    Location,
    LocationVersion,
    RegistryLocation,
    SourceLink,
    SyncRun,
    VacancyLine,
    table,
)


def tracked_rows(session: Session) -> list[sa.Row[Any]]:
    """Active locations of the national view, with how many vacancy lines each has."""
    lines = (
        sa.select(col(VacancyLine.cqc_location_id), sa.func.count().label("lines"))
        .group_by(col(VacancyLine.cqc_location_id))
        .subquery()
    )
    query = (
        sa.select(
            col(Location.cqc_location_id),
            col(Location.source),
            col(Location.name),
            col(Location.postcode),
            col(Location.entered_capacity),
            col(Location.nhs_region),
            col(Location.local_authority),
            sa.func.coalesce(lines.c.lines, 0),
        )
        .outerjoin(lines, lines.c.cqc_location_id == col(Location.cqc_location_id))
        .where(col(Location.active).is_(True))
    )
    return list(session.execute(query))


def registry_rows(session: Session) -> list[RegistryLocation]:
    return list(session.scalars(sa.select(RegistryLocation)))


def multi_source_versions(session: Session, since: datetime) -> list[tuple[str, str, dict[str, Any]]]:
    """(location, source, record) of the latest version from each source recorded since
    ``since``, for locations that more than one source has reported since then (a source
    that stopped reporting a location no longer conflicts with the one still reporting it)."""
    recent = col(LocationVersion.recorded_at) >= since
    shared = (
        sa.select(col(LocationVersion.cqc_location_id))
        .where(recent)
        .group_by(col(LocationVersion.cqc_location_id))
        .having(sa.func.count(sa.distinct(col(LocationVersion.source))) > 1)
    )
    latest = (
        sa.select(sa.func.max(col(LocationVersion.version_id)))
        .where(recent, col(LocationVersion.cqc_location_id).in_(shared))
        .group_by(col(LocationVersion.cqc_location_id), col(LocationVersion.source))
    )
    rows = session.execute(
        sa.select(
            col(LocationVersion.cqc_location_id), col(LocationVersion.source), col(LocationVersion.record)
        ).where(col(LocationVersion.version_id).in_(latest))
    )
    return [(row[0], row[1], row[2]) for row in rows]


def held_records(session: Session, statuses: Iterable[str] | None = None) -> list[HeldRecord]:
    query = sa.select(HeldRecord).order_by(col(HeldRecord.source), col(HeldRecord.source_ref))
    if statuses is not None:
        query = query.where(col(HeldRecord.status).in_(list(statuses)))
    return list(session.scalars(query))


def registry_filling(session: Session) -> bool:
    """Is the registry still being filled by its first full CQC sync (one has started, and
    none has succeeded yet), so it holds only the homes that sync has reached?"""
    t = table(SyncRun)
    full = sa.select(t.c.status).where(t.c.source == "cqc", t.c.kind == "full")
    if session.scalar(full.limit(1)) is None:
        return False  # never synced: what the registry holds was loaded whole, or nothing
    return session.scalar(full.where(t.c.status == SUCCEEDED).limit(1)) is None


def locations_fed_by(session: Session, source: str) -> set[str]:
    """The locations a record of ``source`` feeds: those its own records name (or an admin
    linked), and those whose current record is its own."""
    loc, link = table(Location), table(SourceLink)
    named = sa.select(link.c.cqc_location_id).where(link.c.source == source)
    current = sa.select(loc.c.cqc_location_id).where(loc.c.source == source, loc.c.active.is_(True))
    return set(session.scalars(sa.union(named, current)))


def feeders_of(session: Session, source: str, cqc_location_id: str) -> tuple[list[str], bool]:
    """Which of ``source``'s records feed ``cqc_location_id``: the refs whose link names it
    (in order), and whether its current record is ``source``'s and active (fed by a record
    of the source, whose ref no link may name: one synced before links were kept)."""
    loc, link = table(Location), table(SourceLink)
    refs = session.scalars(
        sa.select(link.c.source_ref)
        .where(link.c.source == source, link.c.cqc_location_id == cqc_location_id)
        .order_by(link.c.source_ref)
    )
    current = sa.select(loc.c.cqc_location_id).where(
        loc.c.cqc_location_id == cqc_location_id, loc.c.source == source, loc.c.active.is_(True)
    )
    return list(refs), session.scalar(current) is not None


def registry_location(session: Session, cqc_location_id: str) -> RegistryLocation | None:
    """The registry's record of a location, if it holds one."""
    return session.get(RegistryLocation, cqc_location_id)


def source_links(session: Session) -> list[tuple[str, str, str]]:
    """Every source record's link to the location it feeds: (source, ref, CQC ID)."""
    link = table(SourceLink)
    rows = session.execute(sa.select(link.c.source, link.c.source_ref, link.c.cqc_location_id))
    return [(source, ref, cqc_id) for source, ref, cqc_id in rows]


def get_held_record(session: Session, source: str, source_ref: str) -> HeldRecord | None:
    return session.get(HeldRecord, (source, source_ref))


def held_source_refs(session: Session, source: str) -> set[str]:
    """The refs of ``source``'s records held for matching (homes that came without a CQC
    ID): a few dozen at most, read once per run."""
    t = table(HeldRecord)
    return set(session.scalars(sa.select(t.c.source_ref).where(t.c.source == source)))


def release_held_records(session: Session, source: str, refs: Sequence[str]) -> None:
    """Let go of ``source``'s held records of ``refs``: those homes now report their own
    CQC ID, so there is nothing left to match (their ``unmatched-home`` findings close at the
    next reconciliation, and no stale held copy can be linked to a location any more)."""
    t = table(HeldRecord)
    session.execute(sa.delete(t).where(t.c.source == source, t.c.source_ref.in_(list(refs))))


def hold_records(
    session: Session, source: str, records: Sequence[dict[str, Any]], now: datetime
) -> dict[str, str]:
    """Hold ``records`` of ``source`` (each with its ``source_ref``, name, postcode, local
    authority and record): insert those not held yet, refresh the others keeping their
    first sighting and any match made. Returns the CQC ID of each one already linked.

    A record whose home is closed (its record inactive: it left the tracker) is no home to
    match: it is not held, and its held record goes (its ``unmatched-home`` finding closes
    at the next reconciliation), unless an admin linked it: its closure then goes to that
    location as any report of it does.

    One query, one upsert and (for closed homes) one delete, whatever is held already; a
    record listed twice is held as its last copy."""
    if not records:
        return {}
    latest = {record["source_ref"]: record for record in records}
    linked = {
        ref: cqc_id
        for chunk in chunks(sorted(latest))
        for ref, cqc_id in session.execute(_LINKED, {"source": source, "refs": chunk})
        if cqc_id
    }
    closed = {
        ref
        for ref, record in latest.items()
        if ref not in linked and (record.get("record") or {}).get("active") is False
    }
    rows = [
        {**record, "source": source, "first_seen": now, "last_seen": now, "status": "unmatched"}
        for ref, record in latest.items()
        if ref not in closed
    ]
    refreshed = ("name", "postcode", "local_authority", "record", "last_seen")
    if rows:
        bulk_upsert(session, table(HeldRecord), rows, ("source", "source_ref"), refreshed)
    for chunk in chunks(sorted(closed)):
        session.execute(
            sa.delete(_HELD).where(
                _HELD.c.source == source, _HELD.c.source_ref.in_(chunk), _HELD.c.status != "linked"
            )
        )
    return linked


_HELD = table(HeldRecord)
_LINKED = sa.select(_HELD.c.source_ref, _HELD.c.matched_cqc_location_id).where(
    _HELD.c.source == sa.bindparam("source"),
    _HELD.c.status == "linked",
    _HELD.c.source_ref.in_(sa.bindparam("refs", expanding=True)),
)


def findings_by_id(session: Session) -> dict[str, Finding]:
    return {f.id: f for f in session.scalars(sa.select(Finding))}


def add_findings(session: Session, findings: list[Finding]) -> None:
    session.add_all(findings)


def list_findings(
    session: Session,
    *,
    kinds: list[str] | None = None,
    regions: list[str] | None = None,
    sources: list[str] | None = None,
    statuses: list[str] | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> tuple[int, list[Finding]]:
    query = sa.select(Finding)
    if kinds:
        query = query.where(col(Finding.kind).in_(kinds))
    if regions:
        query = query.where(col(Finding.nhs_region).in_(regions))
    if sources:
        query = query.where(col(Finding.source).in_(sources))
    if statuses:
        query = query.where(col(Finding.status).in_(statuses))
    total = int(session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0)
    query = query.order_by(col(Finding.kind), col(Finding.cqc_location_id), col(Finding.id)).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return total, list(session.scalars(query))


def finding_sources(session: Session) -> list[str]:
    """Every source some finding names, in order."""
    column = col(Finding.source)
    return list(session.scalars(sa.select(column).where(column.is_not(None)).distinct().order_by(column)))


def close_finding(finding: Finding, now: datetime) -> None:
    finding.status = "closed"
    finding.closed_at = now
