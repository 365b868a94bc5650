"""Builders for valid push records; tests change one field at a time."""

from __future__ import annotations

from typing import Any


def vacancy(vacancy_type: str = "general-nursing", **over: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "vacancy_type": vacancy_type,
        "weekly_price_from": 1150.0,
        "maximum_capacity": 20,
        "occupied": 16,
        "reserved": 1,
        "admittable": 2,
        "unavailable": 1,
        "unavailable_reasons": ["staffing-absence"],
        "flexible": False,
    }
    line.update(over)
    return line


def location(
    cqc_id: str = "1-100000001",
    updated_at: str = "2026-11-20T09:00:00Z",
    region: str | None = "north-west",
    **over: Any,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "cqc_location_id": cqc_id,
        "name": f"Test Home {cqc_id}",
        "provider": {"cqc_provider_id": "1-200000001", "name": "Test Care Ltd"},
        "nhs_region": region,
        "local_authority": "Manchester",
        "address": {"line1": "1 High Street", "town": "Manchester", "postcode": "M1 1AA"},
        "provider_type": "care-home",
        "languages": ["English"],
        "funding_sources": ["local-authority", "private"],
        "accepting_admissions": True,
        "out_of_hours_admissions": False,
        "updated_at": updated_at,
        "vacancies": [vacancy()],
    }
    record.update(over)
    return record


def batch(*records: dict[str, Any]) -> dict[str, Any]:
    return {"sent_at": "2026-11-22T08:00:00Z", "locations": list(records)}
