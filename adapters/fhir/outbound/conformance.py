"""Every conformance resource the gateway publishes, as JSON-ready dicts (FHIR R4 4.0.1).

- a CodeSystem and a ValueSet (the whole system) per national vocabulary
  (``VOCABULARY_CODE_SYSTEMS``), for the service categories, and for London's tracker codes;
- ConceptMaps from London's codes to the national vocabularies, drawn from the maps the
  London adapter itself uses (``CATEGORY_MAP``, ``CLOSED_REASON_MAP``);
- NamingSystems for the identifier systems the gateway mints (CQC location and provider IDs);
- a StructureDefinition per extension (generated from ``extensions.EXTENSIONS``);
- SearchParameters for the gateway's own HealthcareService search parameters.

Everything here is derived from code the gateway runs (enumerations, maps, ``systems``), so
what is published cannot drift from what the gateway sends.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from adapters.fhir import systems as S
from adapters.fhir.outbound.extensions import EXTENSIONS, structure_definition_body
from adapters.london_tracker.mapping import CATEGORY_MAP, CLOSED_REASON_MAP
from gateway.model.vocab import ShortStayService, UnavailableReason, VacancyType

VERSION = "0.1.0"
DATE = "2026-11-22"
PUBLISHER = "National Care Capacity Gateway"
RESOURCE_TYPES = (
    "CodeSystem",
    "ValueSet",
    "ConceptMap",
    "NamingSystem",
    "StructureDefinition",
    "SearchParameter",
)

# CodeSystem name -> (title, description in the users' words).
_CODE_SYSTEM_TEXT: dict[str, tuple[str, str]] = {
    "vacancy-type": (
        "Vacancy types",
        "The types of bed a care home or community rehabilitation provider reports vacancies for, "
        "as the national Capacity Tracker names them. A location has one vacancy line per type.",
    ),
    "short-stay-service": (
        "Short-stay services",
        "Short-stay services a location offers (Discharge to Assess, Respite Care...), filled from "
        "its long-term vacancies.",
    ),
    "unavailable-reason": (
        "Reasons not available",
        "Why vacant beds are not available for admission.",
    ),
    "funding-source": (
        "Funding sources",
        "Funding a location accepts: Sub ICB, Local Authority, Private, or a personal health budget (PHB).",
    ),
    "nhs-region": ("NHS regions", "The seven NHS England regions."),
    "provider-type": (
        "Provider types",
        "What kind of place a location is: a care home or a community rehabilitation provider.",
    ),
    "cqc-rating": (
        "CQC overall ratings",
        "The Care Quality Commission's overall rating of a location, or no published rating.",
    ),
    "data-quality-flag": (
        "Data-quality flags",
        "Problems the gateway found in what a source reported about a location or a vacancy line. "
        "Figures are published as the source sent them, with the flag.",
    ),
    "service-category": (
        "Service categories",
        "What kind of stay a service (one vacancy line) is for: long term care, short stay or "
        "community rehabilitation.",
    ),
    "london-bed-category": (
        "London tracker bed categories",
        "The bed categories London's capacity tracker reports, in London's words. Mapped to the "
        "national vacancy types (and short-stay services) by the ConceptMap "
        "london-bed-category-to-vacancy-type.",
    ),
    "london-closed-reason": (
        "London tracker closed-bed reasons",
        "Why London's capacity tracker says beds are closed, in London's words. Mapped to the "
        "national reasons not available by the ConceptMap london-closed-reason-to-unavailable-reason.",
    ),
}

# Where London's code is narrower than the national code it maps to. Every other code is
# "equivalent", except the short-stay categories: "transitional" alone is wider than
# e.g. D2A, which the short-stay service carried as the target's product narrows back.
_WIDER_THAN_LONDON = {
    "REHAB_NHS",  # national: NHS *or LA* funded
    "STAFF_SICKNESS",  # national: staffing absence of any kind
}


def concept_map_url(name: str) -> str:
    """The canonical URL of one of the gateway's ConceptMaps (systems.py has no helper for them)."""
    return f"{S.CANONICAL}/ConceptMap/{name}"


def _pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("-"))


def _metadata(
    resource_type: str,
    resource_id: str,
    description: str,
    *,
    url: str | None = None,
    title: str | None = None,
) -> dict[str, Any]:
    """The metadata a conformance resource carries (url, version and title where its type has them)."""
    resource: dict[str, Any] = {"resourceType": resource_type, "id": resource_id}
    if url is not None:
        resource |= {"url": url, "version": VERSION}
    resource["name"] = _pascal(resource_id)
    if title is not None:
        resource["title"] = title
    return resource | {"status": "active", "date": DATE, "publisher": PUBLISHER, "description": description}


def _canonical(
    resource_type: str, resource_id: str, url: str, title: str, description: str
) -> dict[str, Any]:
    return _metadata(resource_type, resource_id, description, url=url, title=title)


def _code_system(name: str, concepts: Iterable[tuple[str, str]]) -> dict[str, Any]:
    title, description = _CODE_SYSTEM_TEXT[name]
    concept = [{"code": code, "display": display} for code, display in concepts]
    return _canonical("CodeSystem", name, S.code_system(name), title, description) | {
        "caseSensitive": True,
        "valueSet": S.value_set(name),
        "content": "complete",
        "count": len(concept),
        "concept": concept,
    }


def _vocabulary(enum: type[StrEnum]) -> list[tuple[str, str]]:
    # Every vocabulary enumeration has a ``display`` property (the users' words).
    return [(member.value, member.display) for member in enum]  # type: ignore[attr-defined]


def code_systems() -> list[dict[str, Any]]:
    """A CodeSystem per national vocabulary, the service categories and London's codes."""
    systems = [_code_system(name, _vocabulary(enum)) for name, enum in S.VOCABULARY_CODE_SYSTEMS.items()]
    systems.append(_code_system("service-category", _vocabulary(S.ServiceCategory)))
    systems.append(_code_system("london-bed-category", ((code, m[2]) for code, m in CATEGORY_MAP.items())))
    systems.append(
        _code_system("london-closed-reason", ((code, m[1]) for code, m in CLOSED_REASON_MAP.items()))
    )
    return systems


def value_sets(code_system_resources: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """A ValueSet per CodeSystem: every code of that system."""
    return [
        _canonical(
            "ValueSet",
            cs["id"],
            S.value_set(cs["id"]),
            cs["title"],
            f"Every code of the CodeSystem {cs['id']}: {cs['description']}",
        )
        | {"compose": {"include": [{"system": cs["url"]}]}}
        for cs in code_system_resources
    ]


def _target(
    code: VacancyType | UnavailableReason, equivalence: str, service: ShortStayService | None = None
) -> dict[str, Any]:
    target: dict[str, Any] = {"code": code.value, "display": code.display, "equivalence": equivalence}
    if service is not None:
        target["comment"] = f"A transitional bed offered as {service.display}."
        target["product"] = [
            {
                "property": S.SHORT_STAY_SERVICE,
                "system": S.SHORT_STAY_SERVICE,
                "value": service.value,
                "display": service.display,
            }
        ]
    return target


def _concept_map(
    map_id: str,
    title: str,
    description: str,
    source: str,
    target: str,
    elements: list[dict[str, Any]],
) -> dict[str, Any]:
    return _canonical("ConceptMap", map_id, concept_map_url(map_id), title, description) | {
        "sourceCanonical": S.value_set(source),
        "targetCanonical": S.value_set(target),
        "group": [{"source": S.code_system(source), "target": S.code_system(target), "element": elements}],
    }


def _equivalence(london_code: str) -> str:
    return "wider" if london_code in _WIDER_THAN_LONDON else "equivalent"


def concept_maps() -> list[dict[str, Any]]:
    """ConceptMaps from London's tracker codes to the national vocabularies (from mapping.py)."""
    categories: list[dict[str, Any]] = []
    for code, (vacancy_type, service, words) in CATEGORY_MAP.items():
        equivalence = "wider" if service is not None else _equivalence(code)
        categories.append(
            {"code": code, "display": words, "target": [_target(vacancy_type, equivalence, service)]}
        )
    reasons = [
        {"code": code, "display": words, "target": [_target(reason, _equivalence(code))]}
        for code, (reason, words) in CLOSED_REASON_MAP.items()
    ]
    return [
        _concept_map(
            "london-bed-category-to-vacancy-type",
            "London bed categories to national vacancy types",
            "How the gateway maps London's bed categories to the national vacancy types. The short-stay "
            "categories become transitional beds and also declare the short-stay service (the product); "
            "an unknown category is kept with its counts but left out of national totals.",
            "london-bed-category",
            "vacancy-type",
            categories,
        ),
        _concept_map(
            "london-closed-reason-to-unavailable-reason",
            "London closed-bed reasons to national reasons not available",
            "How the gateway maps London's reasons for closed beds to the national reasons why vacant "
            "beds are not available for admission.",
            "london-closed-reason",
            "unavailable-reason",
            reasons,
        ),
    ]


def _naming_system(resource_id: str, title: str, uri: str, what: str, example: str) -> dict[str, Any]:
    # R4 NamingSystem has no url, version or title.
    description = (
        f"{title}: {what} The gateway mints this identifier system; the values are issued by "
        "the Care Quality Commission (CQC), the regulator of health and social care in England."
    )
    return _metadata("NamingSystem", resource_id, description) | {
        "kind": "identifier",
        "responsible": "Care Quality Commission",
        "usage": f"Values are exactly as the CQC gives them, '1-' then digits, e.g. {example}.",
        "uniqueId": [{"type": "uri", "value": uri, "preferred": True}],
    }


def naming_systems() -> list[dict[str, Any]]:
    """NamingSystems for the identifier systems the gateway mints."""
    return [
        _naming_system(
            "cqc-location-id",
            "CQC location ID",
            S.CQC_LOCATION_ID,
            "the CQC's ID of a registered location (a care home, a community rehabilitation provider), "
            "the gateway's national key for a location.",
            "1-10000302982",
        ),
        _naming_system(
            "cqc-provider-id",
            "CQC provider ID",
            S.CQC_PROVIDER_ID,
            "the CQC's ID of a registered provider, the organisation running one or more locations.",
            "1-101693962",
        ),
    ]


def structure_definitions() -> list[dict[str, Any]]:
    """A StructureDefinition for every extension the gateway defines."""
    return [
        _canonical("StructureDefinition", ext.id, ext.url, ext.title, ext.description)
        | {"name": ext.name}
        | structure_definition_body(ext)
        for ext in EXTENSIONS
    ]


_COMPARATORS = ["eq", "gt", "ge", "lt", "le"]


def _search_parameter(url: str, code: str, title: str, description: str, expression: str) -> dict[str, Any]:
    # R4 SearchParameter has no title: it goes in front of the description.
    resource_id = url.rsplit("/", 1)[1]
    return _metadata("SearchParameter", resource_id, f"{title}. {description}", url=url) | {
        "code": code,
        "base": ["HealthcareService"],
        "type": "number",
        "expression": expression,
        "xpathUsage": "normal",
        "comparator": list(_COMPARATORS),
    }


def search_parameters() -> list[dict[str, Any]]:
    """The gateway's own HealthcareService search parameters."""
    bed_part = f"HealthcareService.extension('{S.EXT_BED_AVAILABILITY}').extension"
    return [
        _search_parameter(
            S.SP_ADMITTABLE,
            "admittable",
            "Admittable beds",
            "Services (vacancy lines) by their admittable beds: vacant beds that can safely admit today, "
            "e.g. admittable=gt0.",
            f"{bed_part}('admittable').value",
        ),
        _search_parameter(
            S.SP_WEEKLY_PRICE,
            "weekly-price",
            "Weekly price from",
            "Services (vacancy lines) by their weekly price from, in pounds (GBP), e.g. weekly-price=le1200.",
            f"{bed_part}('weeklyPriceFrom').value.value",
        ),
        _metadata(
            "SearchParameter",
            S.SP_SERVICE_NEAR.rsplit("/", 1)[1],
            "Services near a point. Services whose location lies within a distance of a point: "
            "near=latitude|longitude|distance|units (km or [mi_us]), as Location's near; "
            "_sort=near puts the closest first.",
            url=S.SP_SERVICE_NEAR,
        )
        | {
            "code": "near",
            "base": ["HealthcareService"],
            "type": "special",
            "expression": "HealthcareService.location.resolve().position",
            "xpathUsage": "nearby",
        },
    ]


@functools.cache
def conformance_resources() -> dict[str, list[dict[str, Any]]]:
    """Every conformance resource the gateway publishes, by resourceType (built once).

    Callers share the cached dicts: copy before changing one.
    """
    systems = code_systems()
    return {
        "CodeSystem": systems,
        "ValueSet": value_sets(systems),
        "ConceptMap": concept_maps(),
        "NamingSystem": naming_systems(),
        "StructureDefinition": structure_definitions(),
        "SearchParameter": search_parameters(),
    }


def find_conformance(resource_type: str, resource_id: str) -> dict[str, Any] | None:
    """The conformance resource of that type and id, or None (unknown type or id)."""
    for resource in conformance_resources().get(resource_type, []):
        if resource["id"] == resource_id:
            return resource
    return None
