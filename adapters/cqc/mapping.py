"""CQC Syndication API records -> registry rows. Pure functions, no HTTP, no store.

Real records are accepted unchanged: optional fields are absent rather than null,
``inspectionCategories[].primary`` is the string "true", ratings may be inherited from a
predecessor (they carry ``organisationId``), and older records carry a CCG but no ICB.
"""

from __future__ import annotations

from typing import Any

from gateway.model.vocab import CqcRating, NhsRegion
from gateway.places import normalise_postcode

CQC_REGION_TO_NHS = {
    "london": NhsRegion.LONDON,
    "south west": NhsRegion.SOUTH_WEST,
    "south east": NhsRegion.SOUTH_EAST,
    "east": NhsRegion.EAST_OF_ENGLAND,
    "east of england": NhsRegion.EAST_OF_ENGLAND,
    "east midlands": NhsRegion.MIDLANDS,
    "west midlands": NhsRegion.MIDLANDS,
    "north east": NhsRegion.NORTH_EAST_AND_YORKSHIRE,
    "yorkshire & humberside": NhsRegion.NORTH_EAST_AND_YORKSHIRE,
    "yorkshire and the humber": NhsRegion.NORTH_EAST_AND_YORKSHIRE,
    "yorkshire and humber": NhsRegion.NORTH_EAST_AND_YORKSHIRE,
    "north west": NhsRegion.NORTH_WEST,
}
_RATINGS = {r.display.casefold(): r for r in CqcRating}


class CqcRecordError(ValueError):
    """A record the registry cannot hold, naming the field and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _text(record: dict[str, Any], key: str) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _names(items: Any, key: str = "name") -> list[str]:
    if not isinstance(items, list):
        return []
    return [str(item[key]) for item in items if isinstance(item, dict) and item.get(key)]


# gacServiceTypes names and the descriptions the API gives them; a record that carries only
# the name is given the description, so search and reports see one vocabulary.
SERVICE_TYPE_DESCRIPTIONS = {
    "nursing homes": "Care home service with nursing",
    "residential homes": "Care home service without nursing",
}
CARE_HOME_SERVICE_TYPES = frozenset(SERVICE_TYPE_DESCRIPTIONS.values())
CARE_HOME_ACTIVITY = "RA2"  # Accommodation for persons who require nursing or personal care
_CARE_HOME_ACTIVITY_NAME = "accommodation for persons who require nursing or personal care"


def service_types(record: dict[str, Any]) -> list[str]:
    """The descriptions of a record's ``gacServiceTypes``; an entry without one is named by
    the description its name stands for, or else by its name."""
    out = []
    for item in record.get("gacServiceTypes") or []:
        if not isinstance(item, dict):
            continue
        name = str(item.get("name") or "").strip()
        description = str(item.get("description") or "").strip()
        text = description or SERVICE_TYPE_DESCRIPTIONS.get(name.casefold(), name)
        if text:
            out.append(text)
    return out


def is_care_home(record: dict[str, Any], types: list[str]) -> bool:
    """The record's ``careHome`` flag; when a record lacks it, whether its service types
    (``types``) include a care home service, or, when it names none, whether it is
    registered for accommodation with nursing or personal care (RA2)."""
    flag = _text(record, "careHome")
    if flag is not None:
        return flag == "Y"
    if types:
        return any(t in CARE_HOME_SERVICE_TYPES for t in types)
    activities = [a for a in record.get("regulatedActivities") or [] if isinstance(a, dict)]
    return any(
        a.get("code") == CARE_HOME_ACTIVITY or str(a.get("name", "")).casefold() == _CARE_HOME_ACTIVITY_NAME
        for a in activities
    )


def rating(record: dict[str, Any]) -> tuple[str, str | None, bool]:
    """(rating code, report date, inherited?) of the overall rating."""
    overall = (record.get("currentRatings") or {}).get("overall") or {}
    found = _RATINGS.get(str(overall.get("rating", "")).strip().casefold(), CqcRating.NOT_RATED)
    return found.value, overall.get("reportDate"), "organisationId" in overall


def registry_row(record: dict[str, Any]) -> dict[str, Any]:
    """The registry row of one full ``/locations/{id}`` record (without ``synced_at``)."""
    location_id = _text(record, "locationId")
    if location_id is None:
        raise CqcRecordError("locationId", "missing")
    name = _text(record, "name")
    if name is None:
        raise CqcRecordError("name", "missing")  # the rejection names the ID asked for
    beds = record.get("numberOfBeds")
    if beds is not None and not isinstance(beds, int):
        try:
            beds = int(beds)
        except (TypeError, ValueError) as exc:
            raise CqcRecordError("numberOfBeds", "not a number") from exc
    region = _text(record, "region")
    nhs_region = CQC_REGION_TO_NHS.get(region.casefold()) if region else None
    code, rating_date, _ = rating(record)
    dormancy = _text(record, "dormancy")
    postcode = _text(record, "postalCode")
    specialisms = _names(record.get("specialisms")) + _names(record.get("specialism"))
    types = service_types(record)
    return {
        "cqc_location_id": location_id,
        "cqc_provider_id": _text(record, "providerId"),
        "name": name,
        "care_home": is_care_home(record, types),
        "registration_status": _text(record, "registrationStatus") or "Registered",
        "registration_date": _text(record, "registrationDate"),
        "deregistration_date": _text(record, "deregistrationDate"),
        "dormant": None if dormancy is None else dormancy == "Y",
        "registered_beds": beds,
        "brand_id": _text(record, "brandId"),
        "brand_name": _text(record, "brandName"),
        "address_line1": _text(record, "postalAddressLine1"),
        "address_line2": _text(record, "postalAddressLine2"),
        "town": _text(record, "postalAddressTownCity"),
        "county": _text(record, "postalAddressCounty"),
        "postcode": normalise_postcode(postcode) or postcode if postcode else None,
        "latitude": record.get("onspdLatitude"),
        "longitude": record.get("onspdLongitude"),
        "cqc_region": region,
        "nhs_region": nhs_region.value if nhs_region else None,
        "local_authority": _text(record, "localAuthority"),
        "icb_code": _text(record, "onspdIcbCode"),
        "icb_name": _text(record, "onspdIcbName"),
        "sub_icb_code": _text(record, "onspdCcgCode"),
        "sub_icb_name": _text(record, "onspdCcgName"),
        "ods_code": _text(record, "odsCode"),
        "phone": _text(record, "mainPhoneNumber"),
        "website": _text(record, "website"),
        "regulated_activities": _names(record.get("regulatedActivities")),
        "service_types": types,
        "specialisms": sorted(set(specialisms)),
        "overall_rating": code,
        "rating_date": rating_date,
        "last_inspection_date": (record.get("lastInspection") or {}).get("date"),
        "record": record,
    }


def predecessors(record: dict[str, Any]) -> list[str]:
    """Locations this one took over (``HSCA Predecessor`` relationships)."""
    return [
        str(r["relatedLocationId"])
        for r in record.get("relationships") or []
        if isinstance(r, dict) and r.get("type") == "HSCA Predecessor" and r.get("relatedLocationId")
    ]


def provider_row(record: dict[str, Any]) -> dict[str, Any]:
    """The registry row of one ``/providers/{id}`` record (without ``synced_at``)."""
    provider_id = _text(record, "providerId")
    if provider_id is None:
        raise CqcRecordError("providerId", "missing")
    name = _text(record, "name")
    if name is None:
        raise CqcRecordError("name", "missing")  # the rejection names the ID asked for
    return {
        "cqc_provider_id": provider_id,
        "name": name,
        "ownership_type": _text(record, "ownershipType"),
        "companies_house_number": _text(record, "companiesHouseNumber"),
        "location_ids": [str(i) for i in record.get("locationIds") or []],
        "record": record,
    }


def parse_list_page(page: dict[str, Any]) -> tuple[list[str], str | None]:
    """The location IDs of one ``/locations`` page and the next page's URI (None: last)."""
    ids = [str(item["locationId"]) for item in page.get("locations") or [] if item.get("locationId")]
    return ids, page.get("nextPageUri")
