"""Matching tracker homes that carry no CQC ID to the registry.

Candidates are the registry's locations in the same postcode district or the same local
authority. Each is scored by name similarity (rapidfuzz token-sort ratio over normalised
names without the kind of place at their end, as the name-mismatch rule compares them)
less a penalty for distance beyond a few kilometres. The kind of place is left out of the
score because trackers add or drop it ("Highfield" / "Highfield Care Home"), and a long
one both names share would make different homes look alike ("Beech House Nursing Home" /
"Birch House Nursing Home"). The best is linked automatically when it scores at least
``LINK_SCORE`` and clearly beats the runner-up: by ``LINK_MARGIN`` in score, or, scoring
about the same, by as much in whole-name similarity when the tracker's name says what
kind of place it is (of "Heather Gardens Nursing Home" and "Heather Gardens Residential
Home", "The Heather Gardens Nursing Home" is the first; "Heather Gardens" is queued).
Otherwise it is queued for review (score at least ``REVIEW_SCORE``) or left unmatched.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from gateway.reconcile.rules import (
    core_name,
    name_agreement,
    name_similarity,
    normalise_name,
    normalise_postcode,
)

LINK_SCORE = 90.0
LINK_MARGIN = 5.0
REVIEW_SCORE = 60.0
FREE_DISTANCE_KM = 3.0
PENALTY_PER_KM = 2.0
MAX_PENALTY = 30.0


@dataclass(frozen=True)
class RegistryCandidate:
    cqc_location_id: str
    name: str
    postcode: str | None
    local_authority: str | None
    latitude: float | None
    longitude: float | None


@dataclass(frozen=True)
class ScoredCandidate:
    cqc_location_id: str
    name: str
    score: float
    similarity: float  # of the names without the kind of place
    distance_km: float | None
    whole_name_similarity: float = 0.0  # of the whole names: tells same-scoring candidates apart


@dataclass(frozen=True)
class MatchDecision:
    decision: str  # link, review, none
    best: ScoredCandidate | None
    runner_up: ScoredCandidate | None


def district(postcode: str | None) -> str | None:
    """The outward code of a postcode ('NW8 9AA' -> 'NW8')."""
    normal = normalise_postcode(postcode)
    return normal.split(" ")[0] if normal and " " in normal else normal


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(min(1.0, a)))


class RegistryIndex:
    """The registry's locations by postcode district and by local authority."""

    def __init__(self, candidates: Iterable[RegistryCandidate]) -> None:
        self.by_district: dict[str, list[RegistryCandidate]] = {}
        self.by_authority: dict[str, list[RegistryCandidate]] = {}
        for candidate in candidates:
            if (code := district(candidate.postcode)) is not None:
                self.by_district.setdefault(code, []).append(candidate)
            if candidate.local_authority:
                self.by_authority.setdefault(candidate.local_authority.lower(), []).append(candidate)

    def candidates(self, postcode: str | None, local_authority: str | None) -> list[RegistryCandidate]:
        seen: dict[str, RegistryCandidate] = {}
        code = district(postcode)
        for candidate in self.by_district.get(code or "", []):
            seen[candidate.cqc_location_id] = candidate
        for candidate in self.by_authority.get((local_authority or "").lower(), []):
            seen.setdefault(candidate.cqc_location_id, candidate)
        return list(seen.values())


def match_home(
    name: str,
    postcode: str | None,
    local_authority: str | None,
    point: tuple[float, float] | None,
    index: RegistryIndex,
    taken: Collection[str] = (),
) -> MatchDecision:
    """Score every candidate but those ``taken`` (fed by another record of the home's
    source: a location is one home) and decide: link, review or none."""
    scored: list[ScoredCandidate] = []
    # Whole names tell candidates apart only when the tracker's names a kind of place: else
    # the shorter registry name would win, for its length alone.
    names_kind = core_name(name) != normalise_name(name)
    for candidate in index.candidates(postcode, local_authority):
        if candidate.cqc_location_id in taken:
            continue
        similarity = name_agreement(name, candidate.name)
        distance = None
        if point is not None and candidate.latitude is not None and candidate.longitude is not None:
            distance = haversine_km(point[0], point[1], candidate.latitude, candidate.longitude)
        penalty = (
            0.0
            if distance is None
            else min(MAX_PENALTY, max(0.0, distance - FREE_DISTANCE_KM) * PENALTY_PER_KM)
        )
        scored.append(
            ScoredCandidate(
                candidate.cqc_location_id,
                candidate.name,
                round(similarity - penalty, 1),
                round(similarity, 1),
                None if distance is None else round(distance, 2),
                round(name_similarity(name, candidate.name), 1) if names_kind else 0.0,
            )
        )
    scored.sort(key=lambda c: (-c.score, -c.whole_name_similarity, c.cqc_location_id))
    best = scored[0] if scored else None
    runner_up = scored[1] if len(scored) > 1 else None
    if best is None or best.score < REVIEW_SCORE:
        return MatchDecision("none", best, runner_up)
    clear = (
        runner_up is None
        or best.score - runner_up.score >= LINK_MARGIN
        or best.whole_name_similarity - runner_up.whole_name_similarity >= LINK_MARGIN
    )
    if best.score >= LINK_SCORE and clear:
        return MatchDecision("link", best, runner_up)
    return MatchDecision("review", best, runner_up)
