"""The deliberate discrepancies of the demo set, for reconciliation to find.

Each planted item is recorded in the manifest with its ids so tests can check that the
gateway finds exactly these.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from gateway.demoset import words
from gateway.demoset.homes import Builder, Home, Line
from gateway.demoset.writer import cqc_location, london_home
from gateway.model.vocab import NhsRegion, ProviderType, VacancyType


@dataclass
class Plan:
    london_homes: list[dict[str, Any]] = field(default_factory=list)
    cqc_locations: list[dict[str, Any]] = field(default_factory=list)
    cqc_providers: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, dict[str, int]] = field(default_factory=dict)
    planted: dict[str, Any] = field(default_factory=dict)


def _take(pool: list[Home], count: int, taken: set[str], rng: Any) -> list[Home]:
    free = [h for h in pool if h.cqc_id not in taken]
    chosen = rng.sample(free, min(count, len(free)))
    taken.update(h.cqc_id for h in chosen)
    return chosen


def plant(builder: Builder, homes: dict[NhsRegion, list[Home]], extra: list[Home]) -> Plan:
    rng = builder.rng
    plan = Plan()
    care = [h for region in NhsRegion for h in homes[region] if h.provider_type is ProviderType.CARE_HOME]
    lines = [(h, ln) for h in care for ln in h.lines]
    inconsistent = rng.sample(lines, len(lines) // 200)
    for _, line in inconsistent:
        line.admittable += 1  # kept as sent: capacity no longer adds up
    plan.planted["inconsistent_lines"] = sorted(
        f"{h.cqc_id}:{ln.vacancy_type.value}" for h, ln in inconsistent
    )

    taken: set[str] = set()
    london = homes[NhsRegion.LONDON]
    london_care = [h for h in london if h.provider_type is ProviderType.CARE_HOME]
    suspended = _take([h for h in london_care if not any(ln.admittable for ln in h.lines)], 10, taken, rng)
    unmatched = _take(london_care, round(len(london_care) * 0.02), taken, rng)
    unknown_category = _take(london_care, 2, taken, rng)
    border = _take(
        [h for h in homes[NhsRegion.SOUTH_EAST] if h.provider_type is ProviderType.CARE_HOME], 6, taken, rng
    )
    closed = [
        builder.home(NhsRegion.LONDON, ProviderType.CARE_HOME, [VacancyType.GENERAL_NURSING], [20])
        for _ in range(5)
    ]
    pushed = [h for r in NhsRegion if r is not NhsRegion.LONDON for h in homes[r]]
    unknown_to_cqc = _take(pushed, 8, taken, rng)
    everyone = [h for r in NhsRegion for h in homes[r]]
    above = _take([h for h in care if h.entered_capacity > 6], round(len(care) * 0.01), taken, rng)
    deregistered = _take(everyone, round(len(everyone) * 0.005), taken, rng)
    dormant = _take(everyone, 10, taken, rng)
    postcode_differs = _take(everyone, 10, taken, rng)
    name_differs = _take(everyone, 10, taken, rng)

    suspended_ids, unmatched_ids = {h.cqc_id for h in suspended}, {h.cqc_id for h in unmatched}
    closed_ids, unknown_category_ids = {h.cqc_id for h in closed}, {h.cqc_id for h in unknown_category}
    above_ids, deregistered_ids = {h.cqc_id for h in above}, {h.cqc_id for h in deregistered}
    dormant_ids, name_ids = {h.cqc_id for h in dormant}, {h.cqc_id for h in name_differs}
    postcode_ids = {h.cqc_id for h in postcode_differs}
    refs = iter(range(4211, 10**6))
    london_refs: dict[str, str] = {}
    for home in london + closed:
        ref = f"LDN-{next(refs):06d}"
        london_refs[home.cqc_id] = ref
        is_unmatched = home.cqc_id in unmatched_ids
        record = london_home(
            home,
            ref,
            rng,
            cqc_id=None if is_unmatched else home.cqc_id,
            name=words.variant(rng, home.name) if is_unmatched else home.name,
            status="SUSPENDED"
            if home.cqc_id in suspended_ids
            else "CLOSED"
            if home.cqc_id in closed_ids
            else "OPEN",
        )
        if home.cqc_id in unknown_category_ids:
            record["beds"].append(
                {
                    "category": "HOSPICE_STEP",
                    "commissioned": 4,
                    "occupied": 3,
                    "free_now": 1,
                    "on_hold": 0,
                    "closed": 0,
                    "closed_reason": None,
                    "weekly_fee_pence": 180000,
                    "interchangeable": False,
                }
            )
        plan.london_homes.append(record)
    for home in border:
        twin = copy.deepcopy(home)
        twin.updated_at = builder.now - timedelta(minutes=rng.randint(5, 60))
        first = twin.lines[0]
        if first.occupied:
            first.occupied, first.admittable = first.occupied - 1, first.admittable + 1
        else:
            twin.lines.append(Line(VacancyType.GENERAL_RESIDENTIAL, 2, occupied=2, price=900.0))
        ref = f"LDN-{next(refs):06d}"
        london_refs[home.cqc_id] = ref
        plan.london_homes.append(london_home(twin, ref, rng, cqc_id=home.cqc_id, name=home.name))

    unknown_ids = {h.cqc_id for h in unknown_to_cqc}
    for home in everyone + closed + extra:
        if home.cqc_id in unknown_ids:
            continue
        plan.cqc_locations.append(
            cqc_location(
                home,
                status="Deregistered" if home.cqc_id in deregistered_ids else "Registered",
                dormant=home.cqc_id in dormant_ids,
                beds=max(1, home.entered_capacity - rng.randint(1, 5))
                if home.cqc_id in above_ids
                else home.entered_capacity + rng.choice([0, 0, 0, 2, 4]),
                name=f"{rng.choice(words.FIRST)} {rng.choice(words.SECOND)}"
                if home.cqc_id in name_ids
                else None,
                postcode=f"{home.district.code} 9ZZ" if home.cqc_id in postcode_ids else None,
            )
        )
    plan.cqc_locations.sort(key=lambda r: r["locationId"])
    providers: dict[str, dict[str, Any]] = {}
    for home in everyone + closed + extra:
        entry = providers.setdefault(
            home.provider_id,
            {
                "providerId": home.provider_id,
                "name": home.provider_name,
                "organisationType": "Provider",
                "ownershipType": "Organisation",
                "registrationStatus": "Registered",
                "locationIds": [],
            },
        )
        entry["locationIds"].append(home.cqc_id)
    plan.cqc_providers = [providers[k] for k in sorted(providers)]

    for region in NhsRegion:
        counted = [h for h in homes[region] if h.provider_type is ProviderType.CARE_HOME]
        all_lines = [ln for h in counted for ln in h.lines]
        plan.figures[region.value] = {
            "locations": len(counted),
            "maximum_capacity": sum(ln.capacity for ln in all_lines),
            "vacancies_total": sum(max(ln.capacity - ln.occupied, 0) for ln in all_lines),
            "admittable": sum(ln.admittable for ln in all_lines),
            "unavailable": sum(ln.unavailable for ln in all_lines),
            "reserved": sum(ln.reserved for ln in all_lines),
            "occupied": sum(ln.occupied for ln in all_lines),
        }

    def ids(items: list[Home]) -> list[str]:
        return sorted(h.cqc_id for h in items)

    plan.planted.update(
        {
            "london_without_cqc_id": {london_refs[h.cqc_id]: h.cqc_id for h in unmatched},
            "london_suspended": sorted(london_refs[h.cqc_id] for h in suspended),
            "london_closed": sorted(london_refs[h.cqc_id] for h in closed),
            "london_unknown_category": sorted(london_refs[h.cqc_id] for h in unknown_category),
            "reported_by_two_trackers": ids(border),
            "unknown_to_cqc": ids(unknown_to_cqc),
            "capacity_above_registered": ids(above),
            "deregistered_reporting": ids(deregistered),
            "dormant_reporting": ids(dormant),
            "postcode_differs": ids(postcode_differs),
            "name_differs": ids(name_differs),
            "registered_not_reported": ids(extra),
        }
    )
    return plan
