"""Reconciliation rules: what trackers report, compared with the CQC registry.

Pure functions over plain snapshots, so each rule is tested without a database. Each rule
yields :class:`Observation` s; the service turns them into findings with stable ids.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz import fuzz

from gateway.model.capacity import above_registered

NAME_AGREEMENT = 80.0  # name agreement (0-100) under which names disagree


class Kind:
    UNKNOWN_TO_CQC = "unknown-to-cqc"
    DEREGISTERED_REPORTING = "deregistered-reporting"
    DORMANT_REPORTING = "dormant-reporting"
    CAPACITY_ABOVE_REGISTERED = "capacity-above-registered"
    POSTCODE_MISMATCH = "postcode-mismatch"
    NAME_MISMATCH = "name-mismatch"
    CONFLICTING_REPORTS = "conflicting-reports"
    NOT_REPORTED = "not-reported"
    UNMATCHED_HOME = "unmatched-home"
    SHARED_LOCATION = "shared-location"


SEVERITY = {
    Kind.UNKNOWN_TO_CQC: "high",
    Kind.DEREGISTERED_REPORTING: "high",
    Kind.DORMANT_REPORTING: "medium",
    Kind.CAPACITY_ABOVE_REGISTERED: "medium",
    Kind.POSTCODE_MISMATCH: "low",
    Kind.NAME_MISMATCH: "low",
    Kind.CONFLICTING_REPORTS: "high",
    Kind.NOT_REPORTED: "low",
    Kind.UNMATCHED_HOME: "medium",
    Kind.SHARED_LOCATION: "high",
}


@dataclass(frozen=True)
class TrackedLocation:
    """A location as the national view holds it (one source's report)."""

    cqc_location_id: str
    source: str
    name: str
    postcode: str | None
    entered_capacity: int
    nhs_region: str | None
    local_authority: str | None
    reporting: bool  # active with at least one vacancy line


@dataclass(frozen=True)
class RegisteredLocation:
    cqc_location_id: str
    name: str
    postcode: str | None
    registration_status: str
    dormant: bool | None
    registered_beds: int | None
    care_home: bool
    nhs_region: str | None
    local_authority: str | None


@dataclass(frozen=True)
class SourceFigures:
    """The latest figures one source reported for a location (from its versions)."""

    cqc_location_id: str
    source: str
    figures: tuple[tuple[str, int, int, int, int, int], ...]  # per line key: the counts


@dataclass
class Observation:
    kind: str
    cqc_location_id: str | None
    source: str | None
    nhs_region: str | None
    local_authority: str | None
    evidence: dict[str, Any] = field(default_factory=dict)
    source_ref: str | None = None


_PUNCTUATION = re.compile(r"[^a-z0-9 ]+")
_NOISE = {"the", "ltd", "limited", "plc", "llp"}


def normalise_name(name: str) -> str:
    """Lower case, '&' as 'and', no punctuation, no company suffixes or leading 'the'."""
    text = _PUNCTUATION.sub(" ", name.lower().replace("&", " and "))
    return " ".join(word for word in text.split() if word not in _NOISE)


def name_similarity(a: str, b: str) -> float:
    """How alike two whole names are (0-100), once normalised, the kind of place included."""
    return float(fuzz.token_sort_ratio(normalise_name(a), normalise_name(b)))


# What kind of place a home is: trackers and the registry put it on the end of one home's
# name or leave it off ("Edenmore" / "Edenmore Nursing Home", "Park Lane Nursing Home" /
# "Park Lane Care Home"), so it says nothing about whether two names are one home's.
# Longest first; '&' has become 'and' by now.
_KIND_SUFFIXES = sorted(
    (
        tuple(phrase.split())
        for phrase in (
            "nursing home",
            "care home",
            "residential home",
            "residential care home",
            "nursing care home",
            "nursing and residential home",
            "residential and nursing home",
            "nursing and residential care home",
            "rest home",
            "retirement home",
            "care centre",
            "nursing centre",
        )
    ),
    key=len,
    reverse=True,
)


def core_name(name: str) -> str:
    """A normalised name without what kind of place it names at its end ("Kingswood House
    Nursing Home Ltd" -> "kingswood house"). A name that is nothing but that is kept whole."""
    words = normalise_name(name).split()
    stripped = True
    while stripped:
        stripped = False
        for suffix in _KIND_SUFFIXES:
            if len(words) > len(suffix) and tuple(words[-len(suffix) :]) == suffix:
                words, stripped = words[: -len(suffix)], True
                break
    return " ".join(words)


def name_agreement(tracker_name: str, cqc_name: str) -> float:
    """How alike a tracker's name for a location is to the registry's (0-100), compared
    without what kind of place they name: names that differ only by case, punctuation,
    '&' or 'and', a company suffix or a kind of place such as "Nursing Home" agree, and a
    kind of place both share does not make different names look alike."""
    return float(fuzz.token_sort_ratio(core_name(tracker_name), core_name(cqc_name)))


def normalise_postcode(postcode: str | None) -> str | None:
    if not postcode:
        return None
    compact = re.sub(r"\s+", "", postcode.upper())
    return f"{compact[:-3]} {compact[-3:]}" if len(compact) > 3 else compact


def compare(
    tracked: Iterable[TrackedLocation], registry: dict[str, RegisteredLocation]
) -> Iterator[Observation]:
    """Rules that compare each tracked location with its registry record."""
    for loc in tracked:
        reg = registry.get(loc.cqc_location_id)

        def observe(kind: str, evidence: dict[str, Any], loc: TrackedLocation = loc) -> Observation:
            return Observation(
                kind, loc.cqc_location_id, loc.source, loc.nhs_region, loc.local_authority, evidence
            )

        if reg is None:
            yield observe(Kind.UNKNOWN_TO_CQC, {"tracker_name": loc.name, "tracker_postcode": loc.postcode})
            continue
        if loc.reporting and reg.registration_status.lower() == "deregistered":
            yield observe(
                Kind.DEREGISTERED_REPORTING,
                {"registration_status": reg.registration_status, "tracker_name": loc.name},
            )
        if loc.reporting and reg.dormant:
            yield observe(Kind.DORMANT_REPORTING, {"dormancy": "Y"})
        # The rule of the ``entered-capacity-above-registered`` flag, so every output
        # agrees: no registered beds (a community rehabilitation provider's 0) bound nothing.
        if above_registered(loc.entered_capacity, reg.registered_beds):
            yield observe(
                Kind.CAPACITY_ABOVE_REGISTERED,
                {"entered_capacity": loc.entered_capacity, "registered_beds": reg.registered_beds},
            )
        tracker_pc, cqc_pc = normalise_postcode(loc.postcode), normalise_postcode(reg.postcode)
        if tracker_pc and cqc_pc and tracker_pc != cqc_pc:
            yield observe(Kind.POSTCODE_MISMATCH, {"tracker_postcode": tracker_pc, "cqc_postcode": cqc_pc})
        similarity = name_agreement(loc.name, reg.name)
        if similarity < NAME_AGREEMENT:
            yield observe(
                Kind.NAME_MISMATCH,
                {"tracker_name": loc.name, "cqc_name": reg.name, "similarity": round(similarity, 1)},
            )


def conflicting_reports(
    figures: Iterable[SourceFigures], tracked: dict[str, TrackedLocation]
) -> Iterator[Observation]:
    """One CQC ID reported by two or more sources with different figures."""
    by_location: dict[str, list[SourceFigures]] = {}
    for item in figures:
        by_location.setdefault(item.cqc_location_id, []).append(item)
    for cqc_id, reports in sorted(by_location.items()):
        if len({r.source for r in reports}) < 2 or len({r.figures for r in reports}) < 2:
            continue
        evidence = {"sources": {r.source: [list(f) for f in r.figures] for r in reports}}
        yield _at(tracked, Kind.CONFLICTING_REPORTS, cqc_id, None, evidence)


def shared_locations(
    links: Iterable[tuple[str, str, str]], tracked: dict[str, TrackedLocation]
) -> Iterator[Observation]:
    """One CQC ID named by two or more records of one source (``links``: source, its
    record's ref, the location it names), as when two London homes give one CQC ID: each
    report replaces the other's figures, so the location shows whichever came last."""
    refs: dict[tuple[str, str], list[str]] = {}
    for source, ref, cqc_id in links:
        refs.setdefault((cqc_id, source), []).append(ref)
    for (cqc_id, source), named_by in sorted(refs.items()):
        if len(named_by) < 2:
            continue
        yield _at(tracked, Kind.SHARED_LOCATION, cqc_id, source, {"source_refs": sorted(named_by)})


def _at(
    tracked: dict[str, TrackedLocation], kind: str, cqc_id: str, source: str | None, evidence: dict[str, Any]
) -> Observation:
    """An observation of a location, placed where the national view has it."""
    loc = tracked.get(cqc_id)
    region, authority = (loc.nhs_region, loc.local_authority) if loc else (None, None)
    return Observation(kind, cqc_id, source, region, authority, evidence)


def not_reported(registry: dict[str, RegisteredLocation], reported_ids: set[str]) -> Iterator[Observation]:
    """Registered, active care homes that no tracker reports."""
    for reg in registry.values():
        if (
            reg.care_home
            and reg.registration_status.lower() == "registered"
            and not reg.dormant
            and reg.cqc_location_id not in reported_ids
        ):
            yield Observation(
                Kind.NOT_REPORTED,
                reg.cqc_location_id,
                None,
                reg.nhs_region,
                reg.local_authority,
                {"cqc_name": reg.name},
            )
