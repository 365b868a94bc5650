"""Reconciliation: run every rule, match held homes, and keep findings up to date.

A finding's id is derived from its kind, location, source and source reference, so it
persists across runs (``first_seen`` stays, ``last_seen`` moves) and closes itself when its
condition is no longer observed; it reopens if the condition comes back.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from gateway.ingest import links
from gateway.ingest.service import RecordStatus, apply_updates
from gateway.model.capacity import LocationUpdate
from gateway.places import district_centroid
from gateway.reconcile import matching
from gateway.reconcile.rules import (
    SEVERITY,
    Kind,
    Observation,
    RegisteredLocation,
    SourceFigures,
    TrackedLocation,
    compare,
    conflicting_reports,
    not_reported,
    shared_locations,
)
from gateway.store import reconciliation as queries
from gateway.store.tables import Finding, HeldRecord, utcnow

PointOf = Callable[[str | None], tuple[float, float] | None]
# How recent a source's report must be to conflict with another's, unless the caller says
# (the scheduler and the command pass the push freshness target, GATEWAY_PUSH_FRESHNESS_TARGET_S).
RECENT_REPORTS = timedelta(days=1)


@dataclass
class ReconcileSummary:
    open_by_kind: Counter[str] = field(default_factory=Counter)
    opened: int = 0
    closed: int = 0
    linked: int = 0
    queued_for_review: int = 0
    unmatched: int = 0
    coverage: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "open_by_kind": dict(sorted(self.open_by_kind.items())),
            "opened": self.opened,
            "closed": self.closed,
            "matching": {
                "linked": self.linked,
                "queued_for_review": self.queued_for_review,
                "unmatched": self.unmatched,
            },
            "coverage_by_region": self.coverage,
        }


def finding_id(kind: str, cqc_location_id: str | None, source: str | None, source_ref: str | None) -> str:
    key = "|".join([kind, cqc_location_id or "", source or "", source_ref or ""])
    return hashlib.sha1(key.encode()).hexdigest()[:20]


def _snapshots(session: Session) -> tuple[list[TrackedLocation], dict[str, RegisteredLocation]]:
    tracked = []
    for row in queries.tracked_rows(session):
        cqc_id, source, name, postcode, capacity, region, authority, lines = tuple(row)
        tracked.append(
            TrackedLocation(cqc_id, source, name, postcode, capacity, region, authority, lines > 0)
        )
    registry = {
        r.cqc_location_id: RegisteredLocation(
            r.cqc_location_id,
            r.name,
            r.postcode,
            r.registration_status,
            r.dormant,
            r.registered_beds,
            r.care_home,
            r.nhs_region,
            r.local_authority,
        )
        for r in queries.registry_rows(session)
    }
    return tracked, registry


def _figures(session: Session, since: datetime) -> list[SourceFigures]:
    out = []
    for cqc_id, source, record in queries.multi_source_versions(session, since):
        lines = tuple(
            sorted(
                (
                    str(line.get("vacancy_type")),
                    line["maximum_capacity"],
                    line["occupied"],
                    line["reserved"],
                    line["admittable"],
                    line["unavailable"],
                )
                for line in record.get("vacancies", [])
            )
        )
        out.append(SourceFigures(cqc_id, source, lines))
    return out


def link_held_record(
    session: Session, held: HeldRecord, cqc_location_id: str, score: float | None, now: datetime
) -> None:
    """Link a held home to a registry location and put its latest report into the view."""
    held.status = "linked"
    held.matched_cqc_location_id = cqc_location_id
    held.match_score = score
    if held.record:
        update = LocationUpdate.model_validate({**held.record, "cqc_location_id": cqc_location_id})
        results = apply_updates(session, source=held.source, updates=[(0, update)], received_at=now)
        if results[0].status is not RecordStatus.REJECTED:
            # The location the home fed before (an earlier link) leaves its source.
            links.follow(session, held.source, {held.source_ref: cqc_location_id}, now)


def is_closed(held: HeldRecord) -> bool:
    """Is a held home's latest report a closure (it left its tracker)? It is no home to
    match then: linked to a location, its tombstone would retire that location."""
    return (held.record or {}).get("active") is False


def _match_held(
    session: Session, summary: ReconcileSummary, point_of: PointOf, now: datetime
) -> list[Observation]:
    # A home whose queued match an admin rejected is still missing from the national view:
    # its finding stays open (it is not matched again, which would queue the same candidate).
    # A closed home is missing from nowhere: it is neither matched nor a finding (its finding
    # closes), whatever its status.
    rejected = queries.held_records(session, statuses=["rejected"])
    observations = [_unmatched(held, []) for held in rejected if not is_closed(held)]
    pending = [
        held
        for held in queries.held_records(session, statuses=["unmatched", "review"])
        if not is_closed(held)
    ]
    if not pending:
        return observations
    index = matching.RegistryIndex(
        matching.RegistryCandidate(
            r.cqc_location_id, r.name, r.postcode, r.local_authority, r.latitude, r.longitude
        )
        for r in queries.registry_rows(session)
        if r.registration_status.lower() == "registered"
    )
    # While the first full CQC sync fills the registry it holds only part of the homes: a
    # clear winner among them may lose to one not synced yet, so nothing is linked on its
    # own, only queued for review (and matched again by the next reconciliation).
    complete = not queries.registry_filling(session)
    taken: dict[str, set[str]] = {}
    for held in pending:
        if held.source not in taken:
            taken[held.source] = queries.locations_fed_by(session, held.source)
        decision = matching.match_home(
            held.name, held.postcode, held.local_authority, point_of(held.postcode), index, taken[held.source]
        )
        best = decision.best
        if decision.decision == "link" and best is not None and complete:
            link_held_record(session, held, best.cqc_location_id, best.score, now)
            taken[held.source].add(best.cqc_location_id)
            summary.linked += 1
            continue
        if decision.decision == "link":
            decision = matching.MatchDecision("review", best, decision.runner_up)
        held.status = "review" if decision.decision == "review" else "unmatched"
        queued = decision.decision == "review" and best is not None
        held.matched_cqc_location_id = best.cqc_location_id if queued and best else None
        held.match_score = best.score if best else None
        if decision.decision == "review":
            summary.queued_for_review += 1
        else:
            summary.unmatched += 1
        candidates = [c for c in (decision.best, decision.runner_up) if c is not None]
        observations.append(_unmatched(held, candidates))
    return observations


def _unmatched(held: HeldRecord, candidates: list[matching.ScoredCandidate]) -> Observation:
    """The ``unmatched-home`` observation of a held home, with its best candidates."""
    return Observation(
        Kind.UNMATCHED_HOME,
        None,
        held.source,
        _region_of(held),
        held.local_authority,
        {
            "name": held.name,
            "postcode": held.postcode,
            "status": held.status,
            "candidates": [
                {
                    "cqc_location_id": c.cqc_location_id,
                    "name": c.name,
                    "score": c.score,
                    "distance_km": c.distance_km,
                }
                for c in candidates
            ],
        },
        source_ref=held.source_ref,
    )


def _region_of(held: HeldRecord) -> str | None:
    """The NHS region a held home's tracker gives it, so filtering findings by region finds
    its ``unmatched-home`` finding too."""
    region = (held.record or {}).get("nhs_region")
    return str(region) if region else None


def _coverage(
    tracked: list[TrackedLocation], registry: dict[str, RegisteredLocation]
) -> dict[str, dict[str, int]]:
    reported = {t.cqc_location_id for t in tracked}
    coverage: dict[str, dict[str, int]] = {}
    for reg in registry.values():
        if not (reg.care_home and reg.registration_status.lower() == "registered"):
            continue
        row = coverage.setdefault(reg.nhs_region or "unknown", {"registered": 0, "reported": 0})
        row["registered"] += 1
        row["reported"] += reg.cqc_location_id in reported
    return dict(sorted(coverage.items()))


def reconcile(
    session: Session,
    *,
    point_of: PointOf = district_centroid,
    now: datetime | None = None,
    recent: timedelta = RECENT_REPORTS,
) -> ReconcileSummary:
    """Run every rule once and bring the findings up to date (in the caller's transaction).

    Sources conflict over a location only through the versions they sent within ``recent``.
    A held home is placed by ``point_of`` its postcode (its district's centroid unless the
    caller says), so matching weighs how far each candidate is.
    """
    now = now or utcnow()
    summary = ReconcileSummary()
    observations = _match_held(session, summary, point_of, now)
    session.flush()
    tracked, registry = _snapshots(session)
    by_id = {t.cqc_location_id: t for t in tracked}
    observations += list(compare(tracked, registry))
    observations += list(conflicting_reports(_figures(session, now - recent), by_id))
    observations += list(not_reported(registry, set(by_id)))
    observations += list(shared_locations(queries.source_links(session), by_id))
    summary.coverage = _coverage(tracked, registry)

    existing = queries.findings_by_id(session)
    seen: set[str] = set()
    new: list[Finding] = []
    for obs in observations:
        fid = finding_id(obs.kind, obs.cqc_location_id, obs.source, obs.source_ref)
        if fid in seen:
            continue
        seen.add(fid)
        summary.open_by_kind[obs.kind] += 1
        finding = existing.get(fid)
        if finding is None:
            new.append(
                Finding(
                    id=fid,
                    kind=obs.kind,
                    severity=SEVERITY[obs.kind],
                    cqc_location_id=obs.cqc_location_id,
                    source=obs.source,
                    source_ref=obs.source_ref,
                    nhs_region=obs.nhs_region,
                    local_authority=obs.local_authority,
                    evidence=obs.evidence,
                    status="open",
                    first_seen=now,
                    last_seen=now,
                )
            )
            summary.opened += 1
            continue
        if finding.status != "open":
            summary.opened += 1
        finding.status, finding.closed_at = "open", None
        finding.last_seen, finding.evidence = now, obs.evidence
        finding.nhs_region, finding.local_authority = obs.nhs_region, obs.local_authority
    queries.add_findings(session, new)
    for fid, finding in existing.items():
        if fid not in seen and finding.status == "open":
            queries.close_finding(finding, now)
            summary.closed += 1
    return summary
