"""Reading the national view: one location with its vacancy lines and provenance."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from gateway.errors import NotFound
from gateway.model.capacity import above_registered
from gateway.model.vocab import NhsRegion, QualityFlag, VacancyType
from gateway.store import repository
from gateway.store.registry import get_registry_location
from gateway.store.tables import Location, RegistryLocation, VacancyLine, utcnow


def _display(vocabulary: type[VacancyType] | type[NhsRegion], code: str | None) -> str | None:
    if code is None:
        return None
    try:
        return vocabulary(code).display
    except ValueError:
        return None


def line_public(line: VacancyLine, location: Location) -> dict[str, Any]:
    """A vacancy line as the API shows it: the provider's figures, flags and provenance."""
    return {
        "vacancy_type": line.vacancy_type,
        "vacancy_type_display": _display(VacancyType, line.vacancy_type),
        "source_code": line.source_code,
        "weekly_price_from": line.weekly_price_from,
        "maximum_capacity": line.maximum_capacity,
        "occupied": line.occupied,
        "reserved": line.reserved,
        "admittable": line.admittable,
        "unavailable": line.unavailable,
        "vacancies_total": max(line.maximum_capacity - line.occupied, 0),
        "unavailable_reasons": line.unavailable_reasons,
        "flexible": line.flexible,
        "consistent": line.consistent,
        "quality_flags": [
            {"code": flag, "message": QualityFlag(flag).display} for flag in line.quality_flags
        ],
        "source": location.source,
        "source_updated_at": location.source_updated_at.isoformat(),
    }


def age_seconds(updated_at: datetime, now: datetime | None = None) -> float:
    return max(((now or utcnow()) - updated_at).total_seconds(), 0.0)


def registry_public(reg: RegistryLocation | None) -> dict[str, Any] | None:
    """What the CQC registry says of a location (None when the registry does not know it)."""
    if reg is None:
        return None
    return {
        "name": reg.name,
        "registration_status": reg.registration_status,
        "dormant": reg.dormant,
        "registered_beds": reg.registered_beds,
        "overall_rating": reg.overall_rating,
        "rating_date": reg.rating_date,
        "brand": {"id": reg.brand_id, "name": reg.brand_name} if reg.brand_id else None,
        "cqc_provider_id": reg.cqc_provider_id,
        "regulated_activities": reg.regulated_activities,
        "service_types": reg.service_types,
        "specialisms": reg.specialisms,
        "local_authority": reg.local_authority,
        "nhs_region": reg.nhs_region,
        "cqc_region": reg.cqc_region,
        "icb": {"code": reg.icb_code, "name": reg.icb_name} if reg.icb_code else None,
        "sub_icb": {"code": reg.sub_icb_code, "name": reg.sub_icb_name} if reg.sub_icb_code else None,
        "latitude": reg.latitude,
        "longitude": reg.longitude,
        "ods_code": reg.ods_code,
        "address": {
            "line1": reg.address_line1,
            "line2": reg.address_line2,
            "town": reg.town,
            "county": reg.county,
            "postcode": reg.postcode,
        },
        "synced_at": reg.synced_at.isoformat(),
    }


def location_flags(location: Location, reg: RegistryLocation | None) -> list[str]:
    """The location's data-quality flags: its lines' and those against the registry."""
    flags = set(location.quality_flags)
    registered = reg.registered_beds if reg is not None else None
    if above_registered(location.entered_capacity, registered):
        flags.add(QualityFlag.ENTERED_CAPACITY_ABOVE_REGISTERED.value)
    return sorted(flags)


def location_public(
    location: Location, lines: list[VacancyLine], reg: RegistryLocation | None = None
) -> dict[str, Any]:
    """A location of the national view as the API shows it, enriched from the registry."""
    return {
        "cqc_location_id": location.cqc_location_id,
        "name": location.name,
        "provider": {"cqc_provider_id": location.cqc_provider_id, "name": location.provider_name},
        "provider_type": location.provider_type,
        "nhs_region": location.nhs_region,
        "nhs_region_display": _display(NhsRegion, location.nhs_region),
        "local_authority": location.local_authority,
        "address": {
            "line1": location.address_line1,
            "line2": location.address_line2,
            "town": location.town,
            "county": location.county,
            "postcode": location.postcode,
        },
        "phone": location.phone,
        "active": location.active,
        "short_stay_services": location.short_stay_services,
        "languages": location.languages,
        "notes": location.notes,
        "funding_sources": location.funding_sources,
        "contracts_with_local_authorities": location.contracts_with_local_authorities,
        "contracts_with_sub_icbs": location.contracts_with_sub_icbs,
        "short_stay_weekly_cost": location.short_stay_weekly_cost,
        "accepting_admissions": location.accepting_admissions,
        "out_of_hours_admissions": location.out_of_hours_admissions,
        "entered_capacity": location.entered_capacity,
        "quality_flags": [
            {"code": flag, "message": QualityFlag(flag).display} for flag in location_flags(location, reg)
        ],
        "registry": registry_public(reg),
        "source": location.source,
        "source_updated_at": location.source_updated_at.isoformat(),
        "data_age_seconds": round(age_seconds(location.source_updated_at)),
        "received_at": location.received_at.isoformat(),
        "version_id": location.version_id,
        "vacancies": [line_public(line, location) for line in lines],
    }


def get_location_detail(session: Session, cqc_location_id: str) -> dict[str, Any]:
    """One location with its lines, or NotFound."""
    found = repository.get_location(session, cqc_location_id)
    if found is None:
        raise NotFound(f"no location {cqc_location_id} in the national view")
    location, lines = found
    return location_public(location, lines, get_registry_location(session, cqc_location_id))


def get_location_history(session: Session, cqc_location_id: str) -> list[dict[str, Any]]:
    """Every version of a location, oldest first, each saying what prompted it: its
    source's update (``source``), or a change of the CQC registry's facts about it or its
    provider (``registry``: the record is the version before's, as its source sent it)."""
    versions = repository.location_versions(session, cqc_location_id)
    if not versions:
        raise NotFound(f"no location {cqc_location_id} in the national view")
    # A source's update always differs from the version before it (the same content is
    # 'unchanged', and the source's own time is part of the digest); only a registry
    # change copies it.
    before = [None, *(v.content_hash for v in versions)]
    return [
        {
            "version_id": v.version_id,
            "prompted_by": "registry" if v.content_hash == previous else "source",
            "source": v.source,
            "source_updated_at": v.source_updated_at.isoformat(),
            "received_at": v.received_at.isoformat(),
            "submission_id": v.submission_id,
            "record": v.record,
        }
        for v, previous in zip(versions, before, strict=False)
    ]
