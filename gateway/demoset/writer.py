"""Plant the discrepancies and write the demo set in each source's own format."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from gateway.demoset.homes import Builder, Home
from gateway.model.vocab import NhsRegion, ProviderType, UnavailableReason, VacancyType

DEFAULT_NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
PUSH_BATCH_LIMIT = 5000

LONDON_CATEGORY = {
    VacancyType.GENERAL_NURSING: "NURS_GEN",
    VacancyType.DEMENTIA_NURSING: "NURS_DEM",
    VacancyType.GENERAL_RESIDENTIAL: "RES_GEN",
    VacancyType.DEMENTIA_RESIDENTIAL: "RES_DEM",
    VacancyType.LEARNING_DISABILITY_NURSING: "LD_NURS",
    VacancyType.LEARNING_DISABILITY_RESIDENTIAL: "LD_RES",
    VacancyType.MENTAL_HEALTH_NURSING: "MH_NURS",
    VacancyType.MENTAL_HEALTH_RESIDENTIAL: "MH_RES",
    VacancyType.YOUNG_PHYSICALLY_DISABLED: "YPD",
    VacancyType.TRANSITIONAL: "STEP_DOWN",
    VacancyType.COMMUNITY_CARE: "RESPITE",
    VacancyType.COMMUNITY_REHAB_NHS_LA: "REHAB_NHS",
    VacancyType.COMMUNITY_REHAB_PRIVATE: "REHAB_PRIVATE",
}
LONDON_REASON = {
    UnavailableReason.STAFFING_ABSENCE: "STAFF_SICKNESS",
    UnavailableReason.STAFFING_VACANCIES: "STAFF_VACANCY",
    UnavailableReason.OUTBREAK_COVID: "INFECTION_COVID",
    UnavailableReason.OUTBREAK_OTHER: "INFECTION_OTHER",
    UnavailableReason.REFURBISHMENT: "REFURB",
    UnavailableReason.SAFEGUARDING: "SAFEGUARDING",
    UnavailableReason.FINANCIAL_FUNDING: "FUNDING",
    UnavailableReason.SURGE_CAPACITY: "SURGE",
    UnavailableReason.MANAGEMENT_DECISION: "MANAGEMENT",
    UnavailableReason.VISITING: "VISITING",
    UnavailableReason.SINGLE_BED_OCCUPANCY: "SINGLE_OCCUPANCY",
    UnavailableReason.OTHER: "OTHER",
}
LONDON_FUNDING = {"local-authority": "LA", "sub-icb": "ICB", "private": "SELF_FUNDED", "phb": "PHB"}
BOROUGH_VARIANTS = {
    "Kensington and Chelsea": ["Kensington & Chelsea", "RBKC", "Kensington and Chelsea"],
    "Hammersmith and Fulham": ["Hammersmith and Fulham", "LBHF", "Hammersmith & Fulham"],
    "City of London": ["City", "City of London"],
    "Barking and Dagenham": ["Barking & Dagenham", "Barking and Dagenham"],
}
CQC_REGION = {"East of England": "East", "Yorkshire and The Humber": "Yorkshire & Humberside"}
NURSING = {
    VacancyType.GENERAL_NURSING,
    VacancyType.DEMENTIA_NURSING,
    VacancyType.LEARNING_DISABILITY_NURSING,
    VacancyType.MENTAL_HEALTH_NURSING,
}


def _dump(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))


def push_record(home: Home) -> dict[str, Any]:
    return {
        "cqc_location_id": home.cqc_id,
        "name": home.name,
        "provider": {"cqc_provider_id": home.provider_id, "name": home.provider_name},
        "nhs_region": home.region.value,
        "local_authority": home.district.local_authority,
        "address": {
            "line1": home.address_line1,
            "town": home.district.post_town.title(),
            "postcode": home.postcode,
        },
        "phone": home.phone,
        "provider_type": home.provider_type.value,
        "short_stay_services": [s.value for s in home.short_stay],
        "languages": home.languages,
        "notes": home.notes,
        "funding_sources": [f.value for f in home.funding],
        "contracts_with_local_authorities": [home.district.local_authority] if home.funding else [],
        "contracts_with_sub_icbs": [home.sub_icb[0]] if "sub-icb" in home.funding else [],
        "short_stay_weekly_cost": round(min(ln.price for ln in home.lines) * 0.95)
        if home.short_stay
        else None,
        "accepting_admissions": home.accepting,
        "out_of_hours_admissions": home.out_of_hours,
        "updated_at": home.updated_at.isoformat().replace("+00:00", "Z"),
        "vacancies": [
            {
                "vacancy_type": ln.vacancy_type.value,
                "weekly_price_from": ln.price,
                "maximum_capacity": ln.capacity,
                "occupied": ln.occupied,
                "reserved": ln.reserved,
                "admittable": ln.admittable,
                "unavailable": ln.unavailable,
                "unavailable_reasons": [r.value for r in ln.reasons],
                "flexible": ln.flexible,
            }
            for ln in home.lines
        ],
    }


def london_home(
    home: Home, ref: str, rng: random.Random, *, cqc_id: str | None, name: str, status: str = "OPEN"
) -> dict[str, Any]:
    types = {ln.vacancy_type for ln in home.lines}
    home_type = (
        "REHAB"
        if home.provider_type is ProviderType.COMMUNITY_REHAB
        else "NURSING_AND_RESIDENTIAL"
        if types & NURSING and types - NURSING
        else "NURSING"
        if types & NURSING
        else "RESIDENTIAL"
    )
    borough = rng.choice(BOROUGH_VARIANTS.get(home.district.local_authority, [home.district.local_authority]))
    postcode = rng.choice([home.postcode, home.postcode.lower(), home.postcode.replace(" ", "")])
    offset = rng.randrange(3)
    stamp = home.updated_at + (timedelta(hours=1) if offset == 2 else timedelta())
    updated = stamp.replace(tzinfo=None).isoformat() + ("Z", "+00:00", "+01:00")[offset]
    return {
        "home_ref": ref,
        "cqc_location_id": cqc_id,
        "name": name,
        "borough": borough,
        "address": {"line1": home.address_line1, "line2": None, "town": "London", "postcode": postcode},
        "phone": home.phone,
        "home_type": home_type,
        "status": status,
        "accepting_admissions": home.accepting and status == "OPEN",
        "out_of_hours_admissions": {True: "YES", False: "NO", None: "UNKNOWN"}[home.out_of_hours],
        "languages": home.languages,
        "facilities": home.notes or None,
        "funding_accepted": [LONDON_FUNDING[f.value] for f in home.funding],
        "beds": [
            {
                "category": LONDON_CATEGORY[ln.vacancy_type],
                "commissioned": ln.capacity,
                "occupied": ln.occupied,
                "free_now": ln.admittable,
                "on_hold": ln.reserved,
                "closed": ln.unavailable,
                "closed_reason": LONDON_REASON[ln.reasons[0]] if ln.unavailable and ln.reasons else None,
                "weekly_fee_pence": int(round(ln.price * 100)),
                "interchangeable": ln.flexible,
            }
            for ln in home.lines
        ],
        "updated_at": updated,
    }


def cqc_location(
    home: Home,
    *,
    status: str = "Registered",
    dormant: bool = False,
    beds: int | None = None,
    name: str | None = None,
    postcode: str | None = None,
) -> dict[str, Any]:
    types = {ln.vacancy_type for ln in home.lines}
    nursing = bool(types & NURSING)
    rehab = home.provider_type is ProviderType.COMMUNITY_REHAB
    record: dict[str, Any] = {
        "locationId": home.cqc_id,
        "providerId": home.provider_id,
        "organisationType": "Location",
        "type": "Social Care Org" if not rehab else "Independent Healthcare Org",
        "name": name or home.name,
        "registrationStatus": status,
        "registrationDate": home.registration_date,
        "dormancy": "Y" if dormant else "N",
        "careHome": "N" if rehab else "Y",
        "onspdIcbCode": home.icb[0],
        "onspdIcbName": home.icb[1],
        "onspdLatitude": home.latitude,
        "onspdLongitude": home.longitude,
        "inspectionDirectorate": "Hospitals" if rehab else "Adult social care",
        "postalAddressLine1": home.address_line1,
        "postalAddressTownCity": home.district.post_town.title(),
        "region": CQC_REGION.get(home.district.ons_region, home.district.ons_region),
        "postalCode": postcode or home.postcode,
        # The CQC registers no beds for a community rehabilitation provider: 0 where none.
        "numberOfBeds": 0 if rehab else (home.entered_capacity if beds is None else beds),
        "mainPhoneNumber": home.phone.replace(" ", ""),
        "localAuthority": home.district.local_authority,
        "lastInspection": {"date": home.rating_date},
        "regulatedActivities": [
            {
                "name": "Accommodation for persons who require nursing or personal care",
                "code": "RA2",
                "contacts": [],
            }
        ]
        if not rehab
        else [{"name": "Treatment of disease, disorder or injury", "code": "RA5", "contacts": []}],
        "gacServiceTypes": [{"name": "Rehabilitation services", "description": "Rehabilitation services"}]
        if rehab
        else [{"name": "Nursing homes", "description": "Care home service with nursing"}]
        if nursing
        else [{"name": "Residential homes", "description": "Care home service without nursing"}],
        "specialisms": [{"name": s} for s in _specialisms(types)],
        "inspectionCategories": [{"code": "S1", "primary": "true", "name": "Residential social care"}],
        "relationships": [],
    }
    if home.brand:
        record["brandId"], record["brandName"] = home.brand
    if home.ods_code:
        record["odsCode"] = home.ods_code
    if status == "Deregistered":
        record["deregistrationDate"] = "2026-06-30"
    if home.rating:
        record["currentRatings"] = {"overall": {"rating": home.rating, "reportDate": home.rating_date}}
    return record


def _specialisms(types: set[VacancyType]) -> list[str]:
    out = ["Caring for adults over 65 yrs"]
    if types & {VacancyType.DEMENTIA_NURSING, VacancyType.DEMENTIA_RESIDENTIAL}:
        out.append("Dementia")
    if types & {VacancyType.LEARNING_DISABILITY_NURSING, VacancyType.LEARNING_DISABILITY_RESIDENTIAL}:
        out.append("Learning disabilities")
    if types & {VacancyType.MENTAL_HEALTH_NURSING, VacancyType.MENTAL_HEALTH_RESIDENTIAL}:
        out.append("Mental health conditions")
    if VacancyType.YOUNG_PHYSICALLY_DISABLED in types:
        out.append("Physical disabilities")
    return out


def generate(out_dir: Path, seed: int = 2023, now: datetime | None = None) -> dict[str, Any]:
    """Build and write the national demo data set; returns the manifest it writes."""
    from gateway.demoset.planting import plant

    builder = Builder(seed, now or DEFAULT_NOW)
    homes = {region: builder.care_homes(region) for region in NhsRegion}
    rehab = builder.rehab_providers()
    for home in rehab:
        homes[home.region].append(home)
    extra = [
        builder.home(r, ProviderType.CARE_HOME, [VacancyType.GENERAL_RESIDENTIAL], [30])
        for r in random.Random(seed + 1).choices(list(NhsRegion), k=300)
    ]
    plan = plant(builder, homes, extra)

    out_dir = Path(out_dir)
    for region in NhsRegion:
        if region is NhsRegion.LONDON:
            continue
        records = [push_record(h) for h in homes[region]]
        chunks = [records[i : i + PUSH_BATCH_LIMIT] for i in range(0, len(records), PUSH_BATCH_LIMIT)]
        for n, chunk in enumerate(chunks, start=1):
            suffix = f"-{n}" if len(chunks) > 1 else ""
            _dump(
                out_dir / "push" / f"{region.value}{suffix}.json",
                {"sent_at": builder.now.isoformat().replace("+00:00", "Z"), "locations": chunk},
            )
    _dump(out_dir / "london" / "homes.json", plan.london_homes)
    _dump(out_dir / "cqc" / "locations.json", plan.cqc_locations)
    _dump(out_dir / "cqc" / "providers.json", plan.cqc_providers)
    manifest = {
        "seed": seed,
        "reference_instant": builder.now.isoformat(),
        "regions": plan.figures,
        "community_rehab_providers": len(rehab),
        "planted": plan.planted,
        "counts": dict(Counter({k: len(v) for k, v in plan.planted.items()})),
    }
    _dump(out_dir / "manifest.json", manifest)
    return manifest
