"""The conformance resources the gateway publishes: valid R4 (R4B models), complete, and
derived from the code that does the work (vocabularies, London's maps, systems.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fhir.resources.R4B.codesystem import CodeSystem
from fhir.resources.R4B.conceptmap import ConceptMap
from fhir.resources.R4B.namingsystem import NamingSystem
from fhir.resources.R4B.searchparameter import SearchParameter
from fhir.resources.R4B.structuredefinition import StructureDefinition
from fhir.resources.R4B.valueset import ValueSet
from pydantic import ValidationError

from adapters.fhir import systems as S
from adapters.fhir.outbound.conformance import (
    DATE,
    PUBLISHER,
    RESOURCE_TYPES,
    conformance_resources,
    find_conformance,
)
from adapters.fhir.outbound.extensions import EXTENSIONS, EXTENSIONS_BY_URL, ExtensionDefinition
from adapters.london_tracker.mapping import CATEGORY_MAP, CLOSED_REASON_MAP

FHIR_ID = re.compile(r"[A-Za-z0-9\-\.]{1,64}")
MODELS: dict[str, Any] = {
    "CodeSystem": CodeSystem,
    "ValueSet": ValueSet,
    "ConceptMap": ConceptMap,
    "NamingSystem": NamingSystem,
    "StructureDefinition": StructureDefinition,
    "SearchParameter": SearchParameter,
}
# R4 elements each type has (NamingSystem has no url/version/title, SearchParameter no title).
HAS_URL = {"CodeSystem", "ValueSet", "ConceptMap", "StructureDefinition", "SearchParameter"}
HAS_TITLE = {"CodeSystem", "ValueSet", "ConceptMap", "StructureDefinition"}


def all_resources() -> list[dict[str, Any]]:
    return [r for resources in conformance_resources().values() for r in resources]


def by_id(resource_type: str) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in conformance_resources()[resource_type]}


def concepts(code_system_id: str) -> dict[str, str]:
    resource = find_conformance("CodeSystem", code_system_id)
    assert resource is not None, code_system_id
    return {c["code"]: c["display"] for c in resource["concept"]}


def test_every_published_type_is_there() -> None:
    resources = conformance_resources()
    assert tuple(resources) == RESOURCE_TYPES
    assert all(resources[t] for t in RESOURCE_TYPES)
    assert conformance_resources() is resources  # built once


@pytest.mark.parametrize("resource", all_resources(), ids=lambda r: f"{r['resourceType']}/{r['id']}")
def test_resource_is_valid_r4_and_round_trips(resource: dict[str, Any]) -> None:
    model = MODELS[resource["resourceType"]].model_validate(resource)
    assert model.model_dump(mode="json", exclude_none=True) == resource


@pytest.mark.parametrize("resource", all_resources(), ids=lambda r: f"{r['resourceType']}/{r['id']}")
def test_resource_carries_the_common_metadata(resource: dict[str, Any]) -> None:
    resource_type = resource["resourceType"]
    assert FHIR_ID.fullmatch(resource["id"])
    assert re.fullmatch(r"[A-Z][A-Za-z0-9_]{0,254}", resource["name"])  # computer-friendly
    assert resource["status"] == "active"
    assert resource["date"] == DATE
    assert resource["publisher"] == PUBLISHER
    assert resource["description"].strip()
    if resource_type in HAS_URL:
        assert resource["url"].startswith(S.CANONICAL + "/")
        assert resource["url"].endswith("/" + resource["id"])
        assert resource["version"] == "0.1.0"
    else:
        assert "url" not in resource and "version" not in resource
    assert ("title" in resource) is (resource_type in HAS_TITLE)


def test_ids_and_urls_are_unique_per_type() -> None:
    for resource_type, resources in conformance_resources().items():
        ids = [r["id"] for r in resources]
        assert len(ids) == len(set(ids)), resource_type
        urls = [r["url"] for r in resources if "url" in r]
        assert len(urls) == len(set(urls)), resource_type


def test_find_conformance_returns_the_resource() -> None:
    found = find_conformance("CodeSystem", "vacancy-type")
    assert found is not None
    assert found["url"] == S.VACANCY_TYPE
    assert (
        find_conformance("StructureDefinition", "bed-availability")
        is by_id("StructureDefinition")["bed-availability"]
    )


@pytest.mark.parametrize(
    ("resource_type", "resource_id"),
    [
        ("CodeSystem", "no-such-system"),
        ("CodeSystem", ""),
        ("Location", "vacancy-type"),  # a real id, but not a conformance type
        ("codesystem", "vacancy-type"),  # resource types are case-sensitive
        ("ValueSet", "../CodeSystem/vacancy-type"),
    ],
)
def test_find_conformance_returns_none_for_unknown(resource_type: str, resource_id: str) -> None:
    assert find_conformance(resource_type, resource_id) is None


def test_a_resource_missing_a_required_element_is_refused_by_the_model() -> None:
    # The models are strict enough to be worth testing against: no status, no resource.
    code_system = {k: v for k, v in by_id("CodeSystem")["vacancy-type"].items() if k != "status"}
    with pytest.raises(ValidationError):
        CodeSystem.model_validate(code_system)
    # ...and an element R4 does not have (NamingSystem.url came with R5) is refused too.
    with pytest.raises(ValidationError):
        NamingSystem.model_validate(by_id("NamingSystem")["cqc-location-id"] | {"url": S.CQC_LOCATION_ID})


# --- CodeSystems and ValueSets ---------------------------------------------------------


@pytest.mark.parametrize("name", [*S.VOCABULARY_CODE_SYSTEMS, "service-category"])
def test_every_vocabulary_member_is_in_its_code_system(name: str) -> None:
    enum = S.VOCABULARY_CODE_SYSTEMS.get(name, S.ServiceCategory)
    resource = by_id("CodeSystem")[name]
    assert resource["url"] == S.code_system(name)
    assert resource["content"] == "complete" and resource["caseSensitive"] is True
    assert resource["count"] == len(resource["concept"])
    assert concepts(name) == {member.value: member.display for member in enum}  # type: ignore[attr-defined]


def test_london_code_systems_are_londons_codes_in_londons_words() -> None:
    assert concepts("london-bed-category") == {code: m[2] for code, m in CATEGORY_MAP.items()}
    assert concepts("london-closed-reason") == {code: m[1] for code, m in CLOSED_REASON_MAP.items()}
    assert by_id("CodeSystem")["london-bed-category"]["url"] == S.LONDON_BED_CATEGORY
    assert by_id("CodeSystem")["london-closed-reason"]["url"] == S.LONDON_CLOSED_REASON


def test_every_code_system_has_a_value_set_of_all_its_codes() -> None:
    code_systems = by_id("CodeSystem")
    value_sets = by_id("ValueSet")
    assert set(value_sets) == set(code_systems)
    for name, value_set in value_sets.items():
        assert value_set["url"] == S.value_set(name) == code_systems[name]["valueSet"]
        assert value_set["compose"] == {"include": [{"system": code_systems[name]["url"]}]}


# --- ConceptMaps -------------------------------------------------------------------------


def mapped(concept_map_id: str) -> dict[str, dict[str, Any]]:
    resource = find_conformance("ConceptMap", concept_map_id)
    assert resource is not None
    (group,) = resource["group"]
    result = {}
    for element in group["element"]:
        (target,) = element["target"]
        result[element["code"]] = target | {"source_display": element["display"]}
    return result


def test_london_bed_categories_map_to_the_vacancy_types_the_adapter_uses() -> None:
    resource = by_id("ConceptMap")["london-bed-category-to-vacancy-type"]
    assert resource["sourceCanonical"] == S.value_set("london-bed-category")
    assert resource["targetCanonical"] == S.value_set("vacancy-type")
    assert resource["group"][0]["source"] == S.LONDON_BED_CATEGORY
    assert resource["group"][0]["target"] == S.VACANCY_TYPE

    targets = mapped("london-bed-category-to-vacancy-type")
    assert set(targets) == set(CATEGORY_MAP)
    vacancy_types = concepts("vacancy-type")
    services = concepts("short-stay-service")
    for code, (vacancy_type, service, words) in CATEGORY_MAP.items():
        target = targets[code]
        assert target["code"] == vacancy_type.value
        assert target["display"] == vacancy_types[target["code"]]
        assert target["source_display"] == words
        assert target["equivalence"] in {"equivalent", "wider", "narrower"}
        if service is None:
            assert "product" not in target
        else:
            assert target["equivalence"] == "wider"  # "transitional" alone is wider than e.g. D2A
            (product,) = target["product"]
            assert product["property"] == product["system"] == S.SHORT_STAY_SERVICE
            assert product["value"] == service.value
            assert product["display"] == services[product["value"]]


def test_d2a_is_a_transitional_bed_for_discharge_to_assess() -> None:
    d2a = mapped("london-bed-category-to-vacancy-type")["D2A"]
    assert d2a["code"] == "transitional"
    assert d2a["product"][0]["value"] == "discharge-to-assess"


def test_equivalence_where_the_national_code_is_wider() -> None:
    categories = mapped("london-bed-category-to-vacancy-type")
    reasons = mapped("london-closed-reason-to-unavailable-reason")
    assert categories["NURS_GEN"]["equivalence"] == "equivalent"
    assert categories["REHAB_NHS"]["equivalence"] == "wider"  # national: NHS or LA funded
    assert reasons["STAFF_SICKNESS"]["equivalence"] == "wider"  # national: any staff absence
    assert reasons["REFURB"]["equivalence"] == "equivalent"


def test_london_closed_reasons_map_to_the_national_reasons_the_adapter_uses() -> None:
    resource = by_id("ConceptMap")["london-closed-reason-to-unavailable-reason"]
    assert resource["sourceCanonical"] == S.value_set("london-closed-reason")
    assert resource["targetCanonical"] == S.value_set("unavailable-reason")
    assert resource["group"][0]["target"] == S.UNAVAILABLE_REASON

    targets = mapped("london-closed-reason-to-unavailable-reason")
    assert set(targets) == set(CLOSED_REASON_MAP)
    reasons = concepts("unavailable-reason")
    for code, (reason, words) in CLOSED_REASON_MAP.items():
        assert targets[code]["code"] == reason.value
        assert targets[code]["display"] == reasons[reason.value]
        assert targets[code]["source_display"] == words
        assert targets[code]["equivalence"] in {"equivalent", "wider", "narrower"}


def test_concept_maps_only_use_codes_of_their_code_systems() -> None:
    code_systems = by_id("CodeSystem")
    systems_by_url = {cs["url"]: cs for cs in code_systems.values()}
    for concept_map in conformance_resources()["ConceptMap"]:
        for group in concept_map["group"]:
            source = {c["code"] for c in systems_by_url[group["source"]]["concept"]}
            target = {c["code"] for c in systems_by_url[group["target"]]["concept"]}
            for element in group["element"]:
                assert element["code"] in source
                for mapping in element["target"]:
                    assert mapping["code"] in target
                    for product in mapping.get("product", []):
                        codes = {c["code"] for c in systems_by_url[product["system"]]["concept"]}
                        assert product["value"] in codes


# --- NamingSystems -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource_id", "system"),
    [("cqc-location-id", S.CQC_LOCATION_ID), ("cqc-provider-id", S.CQC_PROVIDER_ID)],
)
def test_naming_systems_for_the_cqc_ids(resource_id: str, system: str) -> None:
    naming_system = by_id("NamingSystem")[resource_id]
    assert naming_system["kind"] == "identifier"
    assert naming_system["uniqueId"] == [{"type": "uri", "value": system, "preferred": True}]
    assert naming_system["responsible"] == "Care Quality Commission"
    assert "Care Quality Commission" in naming_system["description"]
    assert re.search(r"\b1-\d+\b", naming_system["usage"])


# --- StructureDefinitions (extensions) ---------------------------------------------------


def system_extension_urls() -> set[str]:
    return {value for name, value in vars(S).items() if name.startswith("EXT_") and isinstance(value, str)}


def elements(resource: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in resource["differential"]["element"]}


def test_every_extension_in_systems_has_a_structure_definition() -> None:
    defined = {sd["url"] for sd in conformance_resources()["StructureDefinition"]}
    assert system_extension_urls() == defined == set(EXTENSIONS_BY_URL)
    assert all(url.startswith(S.extension("")) for url in defined)


def test_bed_availability_declares_every_part_of_systems() -> None:
    assert EXTENSIONS_BY_URL[S.EXT_BED_AVAILABILITY].part_names() == S.BED_AVAILABILITY_PARTS


@pytest.mark.parametrize("ext", EXTENSIONS, ids=lambda e: e.id)
def test_structure_definition_follows_the_extension_table(ext: ExtensionDefinition) -> None:
    sd = find_conformance("StructureDefinition", ext.id)
    assert sd is not None
    assert sd["url"] == ext.url and sd["name"] == ext.name and sd["title"] == ext.title
    assert (sd["kind"], sd["type"], sd["derivation"], sd["abstract"]) == (
        "complex-type",
        "Extension",
        "constraint",
        False,
    )
    assert sd["baseDefinition"] == "http://hl7.org/fhir/StructureDefinition/Extension"
    assert sd["fhirVersion"] == "4.0.1"
    assert [c["expression"] for c in sd["context"]] == list(ext.context)
    assert all(c["type"] == "element" for c in sd["context"])

    by_element = elements(sd)
    assert all(e["path"] == re.sub(r":[^.]+", "", e["id"]) for e in by_element.values())
    assert by_element["Extension"]["max"] == ext.max
    assert by_element["Extension.url"]["fixedUri"] == ext.url
    slices = {e["sliceName"] for e in by_element.values() if "sliceName" in e}
    # A complex extension declares exactly its parts; a simple one has none.
    assert slices == set(ext.part_names())
    if ext.is_complex:
        assert by_element["Extension.value[x]"]["max"] == "0"
        assert by_element["Extension.extension"]["slicing"]["discriminator"] == [
            {"type": "value", "path": "url"}
        ]
        for part in ext.parts:
            prefix = f"Extension.extension:{part.name}"
            assert by_element[prefix]["path"] == "Extension.extension"
            assert (by_element[prefix]["min"], by_element[prefix]["max"]) == (part.min, part.max)
            assert by_element[f"{prefix}.url"]["fixedUri"] == part.name
            assert by_element[f"{prefix}.value[x]"]["type"] == [{"code": part.value_type}]
    else:
        assert by_element["Extension.extension"]["max"] == "0"
        assert by_element["Extension.value[x]"]["type"] == [{"code": ext.value_type}]


def part_value(sd_id: str, part: str) -> dict[str, Any]:
    sd = find_conformance("StructureDefinition", sd_id)
    assert sd is not None
    return elements(sd)[f"Extension.extension:{part}.value[x]"]


def test_bed_availability_parts_types_and_bindings() -> None:
    types = {
        part: part_value("bed-availability", part)["type"][0]["code"] for part in S.BED_AVAILABILITY_PARTS
    }
    assert types == {
        "maximumCapacity": "unsignedInt",
        "occupied": "unsignedInt",
        "reserved": "unsignedInt",
        "admittable": "unsignedInt",
        "unavailable": "unsignedInt",
        "vacanciesTotal": "unsignedInt",
        "unavailableReason": "Coding",
        "weeklyPriceFrom": "Money",
        "flexible": "boolean",
        "consistent": "boolean",
        "providerUpdated": "dateTime",
    }
    sd = find_conformance("StructureDefinition", "bed-availability")
    assert sd is not None
    maxima = {e["sliceName"]: e["max"] for e in elements(sd).values() if "sliceName" in e}
    assert maxima == {part: "*" if part == "unavailableReason" else "1" for part in S.BED_AVAILABILITY_PARTS}
    assert part_value("bed-availability", "unavailableReason")["binding"] == {
        "strength": "required",
        "valueSet": S.value_set("unavailable-reason"),
    }
    assert part_value("bed-availability", "weeklyPriceFrom")["patternMoney"] == {"currency": "GBP"}


def test_coded_extensions_are_bound_to_published_value_sets() -> None:
    value_sets = {vs["url"] for vs in conformance_resources()["ValueSet"]}
    bindings = [
        e["binding"]["valueSet"]
        for sd in conformance_resources()["StructureDefinition"]
        for e in sd["differential"]["element"]
        if "binding" in e
    ]
    assert set(bindings) == {
        S.value_set("unavailable-reason"),
        S.value_set("cqc-rating"),
        S.value_set("data-quality-flag"),
        S.value_set("nhs-region"),
    }
    assert set(bindings) <= value_sets
    assert part_value("cqc-rating", "rating")["binding"]["valueSet"] == S.value_set("cqc-rating")


def test_simple_extension_values() -> None:
    def value(sd_id: str) -> dict[str, Any]:
        sd = find_conformance("StructureDefinition", sd_id)
        assert sd is not None
        return elements(sd)["Extension.value[x]"]

    assert value("integrated-care-board")["patternCoding"] == {"system": S.ODS_ORGANIZATION_CODE}
    assert value("data-quality-flag")["binding"]["valueSet"] == S.value_set("data-quality-flag")
    assert EXTENSIONS_BY_URL[S.EXT_DATA_QUALITY].context == ("Location", "HealthcareService")
    assert EXTENSIONS_BY_URL[S.EXT_DATA_QUALITY].max == "*"
    assert value("registered-beds")["type"] == [{"code": "unsignedInt"}]
    assert value("short-stay-weekly-cost")["patternMoney"] == {"currency": "GBP"}
    for string_valued in ("local-authority", "contract-local-authority", "contract-sub-icb"):
        assert value(string_valued)["type"] == [{"code": "string"}]


# --- SearchParameters --------------------------------------------------------------------


def test_search_parameters() -> None:
    parameters = {sp["url"]: sp for sp in conformance_resources()["SearchParameter"]}
    assert set(parameters) == {S.SP_ADMITTABLE, S.SP_WEEKLY_PRICE, S.SP_SERVICE_NEAR}
    near = parameters[S.SP_SERVICE_NEAR]
    assert (near["code"], near["type"], near["base"]) == ("near", "special", ["HealthcareService"])
    admittable, price = parameters[S.SP_ADMITTABLE], parameters[S.SP_WEEKLY_PRICE]
    assert (admittable["code"], price["code"]) == ("admittable", "weekly-price")
    for sp in (admittable, price):
        assert sp["base"] == ["HealthcareService"]
        assert sp["type"] == "number"
        assert sp["comparator"] == ["eq", "gt", "ge", "lt", "le"]
        assert sp["expression"].startswith(f"HealthcareService.extension('{S.EXT_BED_AVAILABILITY}')")
    assert admittable["expression"].endswith(".extension('admittable').value")
    assert price["expression"].endswith(".extension('weeklyPriceFrom').value.value")


def test_search_parameter_expressions_name_declared_parts() -> None:
    declared = set(EXTENSIONS_BY_URL[S.EXT_BED_AVAILABILITY].part_names())
    for sp in conformance_resources()["SearchParameter"]:
        named = re.findall(r"\.extension\('([^']+)'\)", sp["expression"])
        if sp["type"] == "special":
            continue  # near: the location's position, no extension
        assert named[0] in EXTENSIONS_BY_URL
        assert set(named[1:]) <= declared


def test_models_are_the_r4b_ones() -> None:
    # R5 models would accept elements R4 consumers reject; make sure we test with R4B.
    for model in MODELS.values():
        assert model.__module__.startswith("fhir.resources.R4B.")
