"""The national view as FHIR R4 resources (plain dicts, R4 4.0.1 on the wire).

Every resource is drawn from one accepted version of one location (its normalised record,
as ``gateway/ingest`` stored it) plus what the CQC registry says of the place:

- ``Location`` (id: the CQC location ID) per care home or community-rehab provider;
- ``HealthcareService`` (id: ``<CQC location ID>-<vacancy type>``) per vacancy line, with
  the bed counts in the ``bed-availability`` extension;
- ``Organization`` (id: the CQC provider ID) per provider, inactive once no location
  names it any more.

``meta.versionId`` is the store's version id and ``meta.lastUpdated`` the instant the
gateway recorded that version, so reads, searches, history and exports agree. The dicts
are built by hand because the national data set is rendered whole (bulk export, big
pages); ``tests/fhir/test_national.py`` parses every resource served for the national demo
data with the R4B models and checks the UK Core and gateway rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from adapters.fhir import systems as S
from adapters.fhir.outbound.languages import bcp47
from gateway.model.capacity import above_registered
from gateway.model.vocab import (
    CqcRating,
    FundingSource,
    NhsRegion,
    ProviderType,
    QualityFlag,
    ShortStayService,
    UnavailableReason,
    VacancyType,
    offers,
)
from gateway.places import district_centroid

UK_CORE = "https://fhir.hl7.org.uk/StructureDefinition/"


@dataclass(frozen=True, slots=True)
class RegistryFacts:
    """What the CQC registry says of a location, as far as the FHIR resources use it."""

    ods_code: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    registered_beds: int | None = None
    overall_rating: str | None = None
    rating_date: str | None = None
    nhs_region: str | None = None
    local_authority: str | None = None
    icb_code: str | None = None
    icb_name: str | None = None


@dataclass(frozen=True, slots=True)
class LocationSnapshot:
    """One accepted version of one location: the record as accepted and its provenance."""

    version_id: int
    recorded_at: datetime
    source: str
    record: dict[str, Any]
    registry: RegistryFacts | None = None
    nhs_region: str | None = None  # where the national view places it (registry, district...)

    @property
    def cqc_location_id(self) -> str:
        cqc_id: str = self.record["cqc_location_id"]
        return cqc_id

    @property
    def provider_id(self) -> str | None:
        provider = self.record.get("provider") or {}
        found: str | None = provider.get("cqc_provider_id")
        return found


def instant(value: datetime) -> str:
    """A FHIR instant in UTC to the microsecond: one format everywhere, exact enough for the
    change feed to compare."""
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _text(value: Any) -> Any:
    """A source's text as an R4 string: None when it is only whitespace (R4: strings SHOULD
    always contain non-whitespace content; one of only spaces is, trimmed, an empty value).
    Sources' blanks (a local authority of " ") are left out as unsaid, never sent."""
    return value if not isinstance(value, str) or value.strip() else None


def _coding(system: str, code: str, display: str | None) -> dict[str, Any]:
    out = {"system": system, "code": code}
    if display is not None and _text(display):
        out["display"] = display
    return out


@cache
def _display(vocabulary: type[Any], code: str) -> str | None:
    try:
        found: str = vocabulary(code).display
    except ValueError:
        return None
    return found


def _vocab_coding(system: str, vocabulary: type[Any], code: str) -> dict[str, Any]:
    return _coding(system, code, _display(vocabulary, code))  # type: ignore[arg-type]


def _concept(system: str, vocabulary: type[Any], code: str) -> dict[str, Any]:
    coding = _vocab_coding(system, vocabulary, code)
    return {"coding": [coding], "text": coding.get("display", code)}


def _money(value: float) -> dict[str, Any]:
    return {"value": value, "currency": "GBP"}


def _meta(snapshot: LocationSnapshot, profile: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "versionId": str(snapshot.version_id),
        "lastUpdated": instant(snapshot.recorded_at),
        "source": S.source_uri(snapshot.source),
    }
    if profile:
        meta["profile"] = [UK_CORE + profile]
    return meta


def _consistent(line: dict[str, Any]) -> bool:
    figures = (
        line["occupied"] + line.get("reserved", 0) + line.get("admittable", 0) + line.get("unavailable", 0)
    )
    # A line summed from parts that broke the invariant is not consistent either (the model's
    # ``VacancyLine.is_consistent``).
    return bool(line["maximum_capacity"] == figures) and not line.get("parts_inconsistent", False)


def line_flags(line: dict[str, Any], provider_type: str | None) -> list[str]:
    """Data-quality flags of one vacancy line of a location of ``provider_type`` (the
    model's checks, ``LocationUpdate.line_quality_flags``, on the stored record)."""
    flags = []
    if not _consistent(line):
        flags.append(QualityFlag.CAPACITY_INVARIANT_BROKEN.value)
    if line.get("unavailable", 0) > 0 and not line.get("unavailable_reasons"):
        flags.append(QualityFlag.UNAVAILABLE_WITHOUT_REASON.value)
    if line.get("unavailable", 0) == 0 and line.get("unavailable_reasons"):
        flags.append(QualityFlag.REASONS_WITHOUT_UNAVAILABLE.value)
    vacancy_type = line.get("vacancy_type")
    if vacancy_type is None:
        flags.append(QualityFlag.UNMAPPED_VACANCY_TYPE.value)
    elif not offers(provider_type, vacancy_type):
        flags.append(QualityFlag.TYPE_NOT_OFFERED_BY_PROVIDER.value)
    return flags


def national_lines(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The record's lines that are services: those the model counts
    (``LocationUpdate.counted``), of national vacancy types its kind of provider offers.
    Unmapped source codes, and types its provider does not offer (a care home's community
    rehabilitation line), have no service: they are flagged on the Location."""
    provider_type = record.get("provider_type")
    return [line for line in record.get("vacancies", ()) if offers(provider_type, line.get("vacancy_type"))]


def location_flags(snapshot: LocationSnapshot) -> list[str]:
    """The Location's data-quality flags: its lines', and its entered capacity against the
    registry's beds (``above_registered``, as every output judges it)."""
    record = snapshot.record
    flags: set[str] = set()
    for line in record.get("vacancies", ()):
        flags.update(line_flags(line, record.get("provider_type")))
    registered = snapshot.registry.registered_beds if snapshot.registry else None
    entered = sum(line["maximum_capacity"] for line in national_lines(record))
    if above_registered(entered, registered):
        flags.add(QualityFlag.ENTERED_CAPACITY_ABOVE_REGISTERED.value)
    return sorted(flags)


def _flag_extensions(flags: Iterable[str]) -> list[dict[str, Any]]:
    return [
        {"url": S.EXT_DATA_QUALITY, "valueCoding": _vocab_coding(S.DATA_QUALITY_FLAG, QualityFlag, flag)}
        for flag in flags
    ]


def _admissions(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The admissions extension, with a part for each answer the source gave (none when
    it gave neither: an extension must carry something)."""
    parts = [
        {"url": url, "valueBoolean": record[name]}
        for url, name in (("accepting", "accepting_admissions"), ("outOfHours", "out_of_hours_admissions"))
        if record.get(name) is not None
    ]
    return [{"url": S.EXT_ADMISSIONS, "extension": parts}] if parts else []


def _telecom(record: dict[str, Any]) -> list[dict[str, Any]]:
    phone = _text(record.get("phone"))
    return [{"system": "phone", "value": phone, "use": "work"}] if phone else []


def _position(snapshot: LocationSnapshot) -> dict[str, float] | None:
    reg = snapshot.registry
    if reg is not None and reg.latitude is not None and reg.longitude is not None:
        return {"longitude": reg.longitude, "latitude": reg.latitude}
    centroid = district_centroid((snapshot.record.get("address") or {}).get("postcode"))
    return {"longitude": centroid[1], "latitude": centroid[0]} if centroid else None


def _address(record: dict[str, Any]) -> dict[str, Any] | None:
    address = record.get("address") or {}
    out: dict[str, Any] = {"use": "work", "type": "physical"}
    lines = [value for value in (address.get("line1"), address.get("line2")) if _text(value)]
    if lines:
        out["line"] = lines
    for key, element in (("town", "city"), ("county", "district"), ("postcode", "postalCode")):
        if _text(address.get(key)):
            out[element] = address[key]
    if len(out) == 2:
        return None
    out["country"] = "GB"
    return out


def _organization_reference(record: dict[str, Any]) -> dict[str, Any] | None:
    provider = record.get("provider") or {}
    if not provider.get("cqc_provider_id"):
        return None
    ref: dict[str, Any] = {"reference": f"Organization/{provider['cqc_provider_id']}"}
    if _text(provider.get("name")):
        ref["display"] = provider["name"]
    return ref


def render_location(snapshot: LocationSnapshot) -> dict[str, Any]:
    """The Location resource of one version of a location (UK Core Location rules met)."""
    record, reg = snapshot.record, snapshot.registry
    extensions: list[dict[str, Any]] = _admissions(record)
    if reg is not None and reg.overall_rating:
        rating: list[dict[str, Any]] = [
            {"url": "rating", "valueCoding": _vocab_coding(S.CQC_RATING, CqcRating, reg.overall_rating)}
        ]
        if reg.rating_date:
            rating.append({"url": "date", "valueDate": reg.rating_date[:10]})
        extensions.append({"url": S.EXT_CQC_RATING, "extension": rating})
    if reg is not None and reg.registered_beds is not None:
        extensions.append({"url": S.EXT_REGISTERED_BEDS, "valueUnsignedInt": reg.registered_beds})
    region = snapshot.nhs_region or (reg.nhs_region if reg else None) or record.get("nhs_region")
    if region:
        extensions.append(
            {"url": S.EXT_NHS_REGION, "valueCoding": _vocab_coding(S.NHS_REGION, NhsRegion, region)}
        )
    local_authority = _text((reg.local_authority if reg else None) or record.get("local_authority"))
    if local_authority:
        extensions.append({"url": S.EXT_LOCAL_AUTHORITY, "valueString": local_authority})
    if reg is not None and reg.icb_code:
        extensions.append(
            {"url": S.EXT_ICB, "valueCoding": _coding(S.ODS_ORGANIZATION_CODE, reg.icb_code, reg.icb_name)}
        )
    if record.get("short_stay_weekly_cost") is not None:
        extensions.append(
            {"url": S.EXT_SHORT_STAY_WEEKLY_COST, "valueMoney": _money(record["short_stay_weekly_cost"])}
        )
    for name in record.get("contracts_with_local_authorities", ()):
        if _text(name):
            extensions.append({"url": S.EXT_CONTRACT_LOCAL_AUTHORITY, "valueString": name})
    for name in record.get("contracts_with_sub_icbs", ()):
        if _text(name):
            extensions.append({"url": S.EXT_CONTRACT_SUB_ICB, "valueString": name})
    extensions.extend(_flag_extensions(location_flags(snapshot)))

    identifiers = [{"use": "official", "system": S.CQC_LOCATION_ID, "value": snapshot.cqc_location_id}]
    if reg is not None and reg.ods_code:
        identifiers.append({"system": S.ODS_SITE_CODE, "value": reg.ods_code})
    provider_type = record.get("provider_type") or ProviderType.CARE_HOME.value
    role = ("NCCF", "Nursing or custodial care facility")
    if provider_type == ProviderType.COMMUNITY_REHAB.value:
        role = ("CHR", "Chronic Care Facility")  # HL7's display, to the letter
    resource: dict[str, Any] = {
        "resourceType": "Location",
        "id": snapshot.cqc_location_id,
        "meta": _meta(snapshot, "UKCore-Location"),
        "extension": extensions,
        "identifier": identifiers,
        "status": "active" if record.get("active", True) else "inactive",
        "name": record["name"],
        "mode": "instance",
        "type": [
            {
                "coding": [
                    _coding(S.V3_ROLE_CODE, *role),
                    _vocab_coding(S.PROVIDER_TYPE, ProviderType, provider_type),
                ]
            }
        ],
    }
    if not extensions:
        del resource["extension"]  # R4 JSON has no empty arrays
    telecom = _telecom(record)
    if telecom:
        resource["telecom"] = telecom
    address = _address(record)
    if address:
        resource["address"] = address
    resource["physicalType"] = {"coding": [_coding(S.LOCATION_PHYSICAL_TYPE, "bu", "Building")]}
    position = _position(snapshot)
    if position:
        resource["position"] = position
    organization = _organization_reference(record)
    if organization:
        resource["managingOrganization"] = organization
    return resource


def service_id(cqc_location_id: str, vacancy_type: str) -> str:
    return f"{cqc_location_id}-{vacancy_type}"


_REHAB_TYPES = frozenset(v.value for v in VacancyType if v.is_community_rehab)


def service_categories(record: dict[str, Any], vacancy_type: str) -> list[S.ServiceCategory]:
    """Community rehab lines are community rehab; long-term lines are long term, and short
    stay too where the location offers short-stay services (filled from them)."""
    if vacancy_type in _REHAB_TYPES:
        return [S.ServiceCategory.COMMUNITY_REHAB]
    out = [S.ServiceCategory.LONG_TERM]
    if record.get("short_stay_services"):
        out.append(S.ServiceCategory.SHORT_STAY)
    return out


def _bed_availability(line: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"url": "maximumCapacity", "valueUnsignedInt": line["maximum_capacity"]},
        {"url": "occupied", "valueUnsignedInt": line["occupied"]},
        {"url": "reserved", "valueUnsignedInt": line.get("reserved", 0)},
        {"url": "admittable", "valueUnsignedInt": line.get("admittable", 0)},
        {"url": "unavailable", "valueUnsignedInt": line.get("unavailable", 0)},
        {"url": "vacanciesTotal", "valueUnsignedInt": max(line["maximum_capacity"] - line["occupied"], 0)},
    ]
    parts.extend(
        {
            "url": "unavailableReason",
            "valueCoding": _vocab_coding(S.UNAVAILABLE_REASON, UnavailableReason, reason),
        }
        for reason in line.get("unavailable_reasons", ())
    )
    if line.get("weekly_price_from") is not None:
        parts.append({"url": "weeklyPriceFrom", "valueMoney": _money(line["weekly_price_from"])})
    parts.append({"url": "flexible", "valueBoolean": bool(line.get("flexible", False))})
    parts.append({"url": "consistent", "valueBoolean": _consistent(line)})
    parts.append({"url": "providerUpdated", "valueDateTime": record["updated_at"]})
    return {"url": S.EXT_BED_AVAILABILITY, "extension": parts}


def _languages(languages: Iterable[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(communication, other-language extensions): a language goes in ``communication`` only
    with its BCP-47 tag (the binding is required); one without stays readable in an extension."""
    communication: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    for name in languages:
        found = bcp47(name)
        if found is None:
            others.append({"url": S.EXT_OTHER_LANGUAGE, "valueString": name})
        else:
            communication.append({"coding": [_coding(S.BCP47, found[0], found[1])], "text": name})
    return communication, others


def _service_common(snapshot: LocationSnapshot) -> dict[str, Any]:
    """The parts of a location's services that every vacancy line shares."""
    record = snapshot.record
    communication, other_languages = _languages(record.get("languages", ()))
    common: dict[str, Any] = {
        "meta": _meta(snapshot, "UKCore-HealthcareService"),
        "other_languages": other_languages,
        "admissions": _admissions(record),
        "identifier": [{"system": S.CQC_LOCATION_ID, "value": snapshot.cqc_location_id}],
        "providedBy": _organization_reference(record),
        "location": [{"reference": f"Location/{snapshot.cqc_location_id}", "display": record["name"]}],
        "extraDetails": _text(record.get("notes")) or None,
        "telecom": _telecom(record),
        "characteristic": [
            _concept(S.SHORT_STAY_SERVICE, ShortStayService, code)
            for code in record.get("short_stay_services", ())
        ],
        "communication": communication,
        "program": [
            _concept(S.FUNDING_SOURCE, FundingSource, code) for code in record.get("funding_sources", ())
        ],
    }
    return common


def render_service(
    snapshot: LocationSnapshot,
    line: dict[str, Any] | None,
    vacancy_type: str,
    common: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The HealthcareService of one vacancy line of one version of a location.

    ``line`` None: the location no longer offers this vacancy type in this version; the
    service is published inactive, without bed counts (retired entries are never deleted).
    ``common``: the location-level parts, when rendering several lines of one location.
    """
    record = snapshot.record
    c = common if common is not None else _service_common(snapshot)
    active = bool(record.get("active", True)) and line is not None
    extensions = [*c["admissions"], *c["other_languages"]]
    if line is not None:
        extensions.insert(0, _bed_availability(line, record))
        extensions.extend(_flag_extensions(line_flags(line, record.get("provider_type"))))
    resource: dict[str, Any] = {
        "resourceType": "HealthcareService",
        "id": service_id(snapshot.cqc_location_id, vacancy_type),
        "meta": c["meta"],
        "extension": extensions,
        "identifier": c["identifier"],
        "active": active,
    }
    if not extensions:
        del resource["extension"]  # R4 JSON has no empty arrays
    if c["providedBy"]:
        resource["providedBy"] = c["providedBy"]
    resource["category"] = [_category(category) for category in service_categories(record, vacancy_type)]
    resource["type"] = [_concept(S.VACANCY_TYPE, VacancyType, vacancy_type)]
    resource["location"] = c["location"]
    resource["name"] = f"{record['name']}: {_display(VacancyType, vacancy_type)}"
    for key in ("extraDetails", "telecom", "characteristic", "communication", "program"):
        if c[key]:
            resource[key] = c[key]
    return resource


@cache
def _category_parts(category: S.ServiceCategory) -> tuple[str, str]:
    return category.value, category.display


def _category(category: S.ServiceCategory) -> dict[str, Any]:
    code, display = _category_parts(category)
    return {"coding": [_coding(S.SERVICE_CATEGORY, code, display)], "text": display}


def render_services(
    snapshot: LocationSnapshot, previous: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The location's HealthcareServices in this version, in vacancy-type order; with the
    previous version's record, also the services it stopped offering (inactive)."""
    lines = {line["vacancy_type"]: line for line in national_lines(snapshot.record)}
    dropped = {line["vacancy_type"] for line in national_lines(previous or {})} - set(lines)
    types = sorted(set(lines) | dropped)
    common = _service_common(snapshot)
    return [render_service(snapshot, lines.get(vacancy_type), vacancy_type, common) for vacancy_type in types]


def render_organization(
    snapshot: LocationSnapshot, registry_name: str | None = None
) -> dict[str, Any] | None:
    """The Organization (provider) named by this version of a location; None without a
    CQC provider ID. The registry's name for the provider wins over the tracker's."""
    return _organization(snapshot, snapshot.record.get("provider") or {}, registry_name, active=True)


def render_retired_organization(
    snapshot: LocationSnapshot, provider: dict[str, Any], registry_name: str | None = None
) -> dict[str, Any]:
    """The Organization of ``provider`` (the provider part of the record that last named
    it) retired by this version: the one in which its last location stopped naming it.

    Published inactive with this version's meta, never deleted (IHE mCSD: retired entries
    become inactive); a later location naming the provider makes it active again.
    """
    resource = _organization(snapshot, provider, registry_name, active=False)
    if resource is None:
        raise ValueError("a retired Organization needs the CQC provider ID of the provider it was")
    return resource


def _organization(
    snapshot: LocationSnapshot, provider: dict[str, Any], registry_name: str | None, *, active: bool
) -> dict[str, Any] | None:
    provider_id = provider.get("cqc_provider_id")
    if not provider_id:
        return None
    resource: dict[str, Any] = {
        "resourceType": "Organization",
        "id": provider_id,
        "meta": _meta(snapshot, "UKCore-Organization"),
        "identifier": [{"use": "official", "system": S.CQC_PROVIDER_ID, "value": provider_id}],
        "active": active,
        "type": [
            {
                "coding": [
                    _coding(
                        "http://terminology.hl7.org/CodeSystem/organization-type",
                        "prov",
                        "Healthcare Provider",
                    )
                ]
            }
        ],
    }
    name = _text(registry_name) or _text(provider.get("name"))
    if name:
        resource["name"] = name
    return resource
