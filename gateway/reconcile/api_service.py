"""What the reconciliation endpoints do: list findings, review the match queue."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import orjson
from sqlalchemy.orm import Session

from gateway.errors import Conflict, NotFound, Unprocessable
from gateway.reconcile.rules import SEVERITY
from gateway.reconcile.service import is_closed, link_held_record
from gateway.search.exports import BOM, spreadsheet_cell
from gateway.store import reconciliation as queries
from gateway.store.sources import push_sources
from gateway.store.tables import Finding, HeldRecord, utcnow
from gateway.sync.sources import PULLED_SOURCES

KINDS = tuple(SEVERITY)
STATUSES = ("open", "closed")
CSV_COLUMNS = (
    "id",
    "kind",
    "severity",
    "status",
    "cqc_location_id",
    "source",
    "source_ref",
    "nhs_region",
    "local_authority",
    "first_seen",
    "last_seen",
    "closed_at",
    "evidence",
)


def _check(values: list[str] | None, allowed: tuple[str, ...], parameter: str) -> None:
    for value in values or []:
        if value not in allowed:
            raise Unprocessable(
                f"{parameter}: unknown value {value!r}; allowed: {', '.join(allowed)}",
                errors=[{"parameter": parameter, "message": f"unknown value {value!r}"}],
            )


def finding_public(f: Finding) -> dict[str, Any]:
    return {
        "id": f.id,
        "kind": f.kind,
        "severity": f.severity,
        "status": f.status,
        "cqc_location_id": f.cqc_location_id,
        "source": f.source,
        "source_ref": f.source_ref,
        "nhs_region": f.nhs_region,
        "local_authority": f.local_authority,
        "evidence": f.evidence,
        "first_seen": f.first_seen.isoformat(),
        "last_seen": f.last_seen.isoformat(),
        "closed_at": f.closed_at.isoformat() if f.closed_at else None,
    }


def find(
    session: Session,
    *,
    kinds: list[str] | None,
    regions: list[str] | None,
    sources: list[str] | None,
    statuses: list[str] | None,
    limit: int | None,
    offset: int,
) -> tuple[int, list[dict[str, Any]]]:
    _check(kinds, KINDS, "kind")
    _check(statuses, STATUSES, "status")
    if sources:
        # A mistyped source would look like one with no findings; a source that has pushed
        # (or a pulled one) but has none has an empty answer. With no finding or push at all
        # there is nothing to tell a source by.
        known = set(queries.finding_sources(session)) | set(push_sources(session))
        if known:
            _check(sources, tuple(sorted(known | set(PULLED_SOURCES))), "source")
    total, findings = queries.list_findings(
        session, kinds=kinds, regions=regions, sources=sources, statuses=statuses, limit=limit, offset=offset
    )
    return total, [finding_public(f) for f in findings]


def findings_csv(rows: list[dict[str, Any]]) -> Iterator[str]:
    """The findings as CSV, UTF-8 with a byte-order mark (as every export: Excel then reads
    accented names as written)."""
    buffer = io.StringIO()
    buffer.write(BOM)
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        # Sources' text (refs, local authorities) never runs as a spreadsheet formula.
        writer.writerow(
            [
                spreadsheet_cell(orjson.dumps(row[c]).decode() if c == "evidence" else row[c] or "")
                for c in CSV_COLUMNS
            ]
        )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def held_public(h: HeldRecord) -> dict[str, Any]:
    return {
        "source": h.source,
        "source_ref": h.source_ref,
        "name": h.name,
        "postcode": h.postcode,
        "local_authority": h.local_authority,
        "status": h.status,
        "candidate_cqc_location_id": h.matched_cqc_location_id,
        "score": h.match_score,
        "first_seen": h.first_seen.isoformat(),
        "last_seen": h.last_seen.isoformat(),
    }


def review_queue(session: Session, statuses: list[str] | None) -> list[dict[str, Any]]:
    _check(statuses, ("unmatched", "review", "linked", "rejected"), "status")
    return [held_public(h) for h in queries.held_records(session, statuses)]


def decide(
    session: Session, *, source: str, source_ref: str, decision: str, cqc_location_id: str | None
) -> dict[str, Any]:
    """Confirm a queued match (or link to another registry location), or reject it.

    A link is refused as the matcher would never make it: to a location the registry does
    not hold as registered (422), to one another record of the source already feeds (409:
    the two would overwrite each other's figures there), or of a home its tracker reports
    closed (409: its tombstone would retire the location)."""
    held = queries.get_held_record(session, source, source_ref)
    if held is None:
        raise NotFound(f"no held record {source_ref} from {source}")
    if decision == "confirm":
        if is_closed(held):
            raise Conflict(
                f"{source_ref} of {source} is closed on its tracker: there is nothing to link "
                "(its last report, a closure, would retire the location)"
            )
        target = cqc_location_id or held.matched_cqc_location_id
        if target is None:
            raise Unprocessable(
                "cqc_location_id: required, the record has no candidate to confirm",
                errors=[{"parameter": "cqc_location_id", "message": "required"}],
            )
        _check_linkable(session, held, target)
        link_held_record(session, held, target, held.match_score, utcnow())
    else:
        held.status = "rejected"
        held.matched_cqc_location_id = None
    return held_public(held)


def _check_linkable(session: Session, held: HeldRecord, target: str) -> None:
    """Refuse a link of ``held`` to ``target`` the matcher would never make."""
    registered = queries.registry_location(session, target)
    if registered is None or registered.registration_status.lower() != "registered":
        why = (
            "the registry does not hold it"
            if registered is None
            else f"the registry holds it as {registered.registration_status}"
        )
        raise Unprocessable(
            f"cqc_location_id: {target} is not a registered location ({why})",
            errors=[{"parameter": "cqc_location_id", "message": f"not a registered location: {why}"}],
        )
    refs, current = queries.feeders_of(session, held.source, target)
    others = [ref for ref in refs if ref != held.source_ref]
    # The location this record already feeds is its own to confirm again.
    own = held.source_ref in refs or (held.status == "linked" and held.matched_cqc_location_id == target)
    if others or (current and not own):
        by = (
            f"{held.source} record{'s' if len(others) > 1 else ''} {', '.join(others)}"
            if others
            else f"a record of {held.source} (the location's current record is {held.source}'s)"
        )
        raise Conflict(
            f"cqc_location_id: {target} is already fed by {by}; linking {held.source_ref} too "
            "would have the two overwrite each other's figures there",
            errors=[{"parameter": "cqc_location_id", "message": f"already fed by {by}"}],
            fed_by=[{"source": held.source, "source_ref": ref} for ref in others],
        )
