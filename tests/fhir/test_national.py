"""Every resource the gateway serves for the national demo data parses with the R4B models
and meets UK Core and the gateway's own rules; then a conformance walk calls every search
parameter the CapabilityStatement declares, with values taken from the served data."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.healthcareservice import HealthcareService
from fhir.resources.R4B.location import Location
from fhir.resources.R4B.organization import Organization
from sqlalchemy.orm import Session, sessionmaker

from adapters.fhir import systems as S
from adapters.fhir.outbound.conformance import conformance_resources
from adapters.fhir.outbound.extensions import EXTENSIONS_BY_URL
from gateway.demo_loading import load_national_demo
from gateway.demoset import generate
from gateway.places import haversine_km
from tests.conftest import TokenMaker, bearer
from tests.fhir.official import all_problems, one_of_each_shape

MODELS = {"Location": Location, "HealthcareService": HealthcareService, "Organization": Organization}
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@pytest.fixture
def served(
    client: TestClient,
    make_token: TokenMaker,
    factory: sessionmaker[Session],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[str, dict[str, dict[str, dict[str, Any]]]]:
    data = tmp_path_factory.mktemp("demo")
    generate(data)
    load_national_demo(data, factory)
    token = make_token(name="reader", scopes=("read",))
    resources: dict[str, dict[str, dict[str, Any]]] = {}
    for resource_type in MODELS:
        resources[resource_type] = {
            r["id"]: r for r in walk(client, token, f"/fhir/{resource_type}?_count=500")
        }
    return token, resources


def walk(client: TestClient, token: str, url: str) -> Iterator[dict[str, Any]]:
    """Every match of a search, following next links to the end."""
    total = None
    count = 0
    next_url: str | None = url
    while next_url:
        response = client.get(next_url, headers=bearer(token))
        assert response.status_code == 200, response.text
        page = response.json()
        total = page["total"] if total is None else total
        for item in page.get("entry", []):
            if item["search"]["mode"] == "match":
                count += 1
                yield item["resource"]
        next_url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert count == total


def codes_by_system() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for code_system in conformance_resources()["CodeSystem"]:
        out[code_system["url"]] = {c["code"] for c in code_system["concept"]}
    return out


def check_extensions(resource: dict[str, Any], where: str) -> None:
    for extension in resource.get("extension", []):
        definition = EXTENSIONS_BY_URL.get(extension["url"])
        assert definition is not None, f"{where}: undeclared extension {extension['url']}"
        assert resource["resourceType"] in definition.context, f"{where}: {definition.name} out of context"
        if definition.is_complex:
            parts = Counter(p["url"] for p in extension["extension"])
            declared = {p.name: p for p in definition.parts}
            assert set(parts) <= set(declared), f"{where}: undeclared parts {set(parts) - set(declared)}"
            for name, part in declared.items():
                assert part.min <= parts.get(name, 0), f"{where}: {name} missing"
                assert part.max == "*" or parts.get(name, 0) <= int(part.max), f"{where}: {name} repeated"
        else:
            assert f"value{definition.value_type[0].upper()}{definition.value_type[1:]}" in extension


def codings(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if "system" in value and "code" in value:
            yield value
        for item in value.values():
            yield from codings(item)
    elif isinstance(value, list):
        for item in value:
            yield from codings(item)


def test_national_demo_data_as_fhir(
    client: TestClient, served: tuple[str, dict[str, dict[str, dict[str, Any]]]]
) -> None:
    """One load of the national demo data (it takes a while) for every check."""
    every_served_resource_parses_and_meets_uk_core_and_gateway_rules(served[1])
    conformance_walk_calls_every_declared_search_parameter(client, served)
    every_shape_of_served_resource_meets_the_official_r4_definitions(served[1])


def every_shape_of_served_resource_meets_the_official_r4_definitions(
    resources: dict[str, dict[str, dict[str, Any]]],
) -> None:
    """HL7's R4 schema, invariants and code systems (tests/fixtures/fhir_r4), on one resource
    of each shape (elements, extensions, code systems) the national data gives: the rules a
    resource meets depend on its shape, not its values (which the R4B models check above)."""
    sample = one_of_each_shape([r for items in resources.values() for r in items.values()])
    assert {r["resourceType"] for r in sample} == set(MODELS)
    assert [p for resource in sample for p in all_problems(resource)] == []


def every_served_resource_parses_and_meets_uk_core_and_gateway_rules(
    resources: dict[str, dict[str, dict[str, Any]]],
) -> None:
    locations, services, organizations = (resources[t] for t in MODELS)
    assert len(locations) > 14_000 and len(services) > 29_000 and len(organizations) > 1_000
    known_codes = codes_by_system()
    for resource_type, found in resources.items():
        for resource_id, resource in found.items():
            where = f"{resource_type}/{resource_id}"
            MODELS[resource_type].model_validate(resource)
            assert FHIR_ID.match(resource_id), where
            meta = resource["meta"]
            assert (
                meta["versionId"]
                and meta["lastUpdated"].endswith("Z")
                and meta["source"].startswith(S.CANONICAL)
            )
            check_extensions(resource, where)
            for coding in codings(resource):
                if coding["system"] in known_codes:
                    assert coding["code"] in known_codes[coding["system"]], f"{where}: {coding}"
    for resource_id, resource in locations.items():
        ods = [i for i in resource["identifier"] if i["system"] == S.ODS_SITE_CODE]
        assert len(ods) <= 1 and all(i.get("value") for i in ods), resource_id  # UKCore-Location slice
        assert resource["status"] in ("active", "inactive") and resource["name"] and resource["address"]
        org = resource.get("managingOrganization", {}).get("reference", "Organization/")
        assert org == "Organization/" or org.split("/")[1] in organizations
    for resource_id, resource in services.items():
        assert resource["type"] and resource["location"][0]["reference"].split("/")[1] in locations
        if "providedBy" in resource:
            assert resource["providedBy"]["reference"].split("/")[1] in organizations
        for language in resource.get("communication", []):  # bound (required) to all languages
            assert language["coding"][0]["system"] == S.BCP47, resource_id
        beds = [e for e in resource["extension"] if e["url"] == S.EXT_BED_AVAILABILITY]
        assert len(beds) == 1
        counts = {p["url"]: p.get("valueUnsignedInt") for p in beds[0]["extension"]}
        assert all(v is None or v >= 0 for v in counts.values())
    for resource in organizations.values():
        assert resource["active"] is True and resource["name"] and resource["identifier"]


SAMPLES: dict[tuple[str, str], Callable[[dict[str, Any]], tuple[str, Callable[[dict[str, Any]], bool]]]] = {}


def sample(resource_type: str, name: str) -> Callable[..., Any]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        SAMPLES[(resource_type, name)] = fn
        return fn

    return register


def _ext_value(resource: dict[str, Any], part: str) -> Any:
    beds = next(e for e in resource["extension"] if e["url"] == S.EXT_BED_AVAILABILITY)
    found = next((p for p in beds["extension"] if p["url"] == part), None)
    return None if found is None else next(v for k, v in found.items() if k.startswith("value"))


for _type in ("Location", "HealthcareService"):
    sample(_type, "_id")(lambda r: (r["id"], lambda m, r=r: m["id"] == r["id"]))
    sample(_type, "_lastUpdated")(
        lambda r: (
            "ge" + r["meta"]["lastUpdated"],
            lambda m, r=r: m["meta"]["lastUpdated"] >= r["meta"]["lastUpdated"],
        )
    )


@sample("Location", "near")
def _near(r: dict[str, Any]) -> tuple[str, Callable[[dict[str, Any]], bool]]:
    lat, lon = r["position"]["latitude"], r["position"]["longitude"]
    return (
        f"{lat}|{lon}|10|km",
        lambda m: haversine_km(lat, lon, m["position"]["latitude"], m["position"]["longitude"]) <= 10,
    )


@sample("Location", "address-postalcode")
def _postcode(r: dict[str, Any]) -> tuple[str, Callable[[dict[str, Any]], bool]]:
    value = r["address"]["postalCode"]
    return (
        value.lower(),
        lambda m: m["address"]["postalCode"].replace(" ", "").startswith(value.replace(" ", "")),
    )


@sample("Location", "address-city")
def _city(r: dict[str, Any]) -> tuple[str, Callable[[dict[str, Any]], bool]]:
    value = r["address"]["city"]
    return value, lambda m: m["address"]["city"].lower().startswith(value.lower())


@sample("Location", "identifier")
def _identifier(r: dict[str, Any]) -> tuple[str, Callable[[dict[str, Any]], bool]]:
    return f"{S.CQC_LOCATION_ID}|{r['id']}", lambda m: m["id"] == r["id"]


@sample("Location", "name")
def _name(r: dict[str, Any]) -> tuple[str, Callable[[dict[str, Any]], bool]]:
    value = r["name"].split()[0]
    return value, lambda m: m["name"].lower().startswith(value.lower())


@sample("Location", "organization")
def _organization(r: dict[str, Any]) -> tuple[str, Callable[[dict[str, Any]], bool]]:
    ref = r["managingOrganization"]["reference"]
    return ref, lambda m: m["managingOrganization"]["reference"] == ref


@sample("Location", "status")
def _status(r: dict[str, Any]) -> tuple[str, Callable[[dict[str, Any]], bool]]:
    return "inactive", lambda m: m["status"] == "inactive"


@sample("HealthcareService", "location")
def _location(r: dict[str, Any]) -> tuple[str, Callable[[dict[str, Any]], bool]]:
    ref = r["location"][0]["reference"]
    return ref, lambda m: m["location"][0]["reference"] == ref


@sample("HealthcareService", "organization")
def _provided_by(r: dict[str, Any]) -> tuple[str, Callable[[dict[str, Any]], bool]]:
    ref = r["providedBy"]["reference"]
    return ref, lambda m: m["providedBy"]["reference"] == ref


@sample("HealthcareService", "service-category")
def _category(r: dict[str, Any]) -> tuple[str, Callable[[dict[str, Any]], bool]]:
    return "community-rehab", lambda m: "community-rehab" in {c["coding"][0]["code"] for c in m["category"]}


@sample("HealthcareService", "service-type")
def _type(r: dict[str, Any]) -> tuple[str, Callable[[dict[str, Any]], bool]]:
    return (
        f"{S.VACANCY_TYPE}|dementia-nursing",
        lambda m: m["type"][0]["coding"][0]["code"] == "dementia-nursing",
    )


@sample("HealthcareService", "characteristic")
def _characteristic(r: dict[str, Any]) -> tuple[str, Callable[[dict[str, Any]], bool]]:
    return (
        "respite-care",
        lambda m: "respite-care" in {c["coding"][0]["code"] for c in m.get("characteristic", [])},
    )


@sample("HealthcareService", "active")
def _active(r: dict[str, Any]) -> tuple[str, Callable[[dict[str, Any]], bool]]:
    return "true", lambda m: m["active"] is True


@sample("HealthcareService", "admittable")
def _admittable(r: dict[str, Any]) -> tuple[str, Callable[[dict[str, Any]], bool]]:
    return "ge5", lambda m: _ext_value(m, "admittable") >= 5


@sample("HealthcareService", "weekly-price")
def _price(r: dict[str, Any]) -> tuple[str, Callable[[dict[str, Any]], bool]]:
    return "le800", lambda m: (_ext_value(m, "weeklyPriceFrom") or {"value": 1e9})["value"] <= 800


@sample("HealthcareService", "near")
def _service_near(r: dict[str, Any]) -> tuple[str, Callable[[dict[str, Any]], bool]]:
    return "53.48|-2.24|5|km", lambda m: True  # distances are checked on Location's near


@sample("Organization", "_id")
def _org_id(r: dict[str, Any]) -> tuple[str, Callable[[dict[str, Any]], bool]]:
    return r["id"], lambda m: m["id"] == r["id"]


@sample("Organization", "identifier")
def _org_identifier(r: dict[str, Any]) -> tuple[str, Callable[[dict[str, Any]], bool]]:
    return f"{S.CQC_PROVIDER_ID}|{r['id']}", lambda m: m["id"] == r["id"]


@sample("Organization", "name")
def _org_name(r: dict[str, Any]) -> tuple[str, Callable[[dict[str, Any]], bool]]:
    value = r["name"][:4]
    return value, lambda m: m["name"].lower().startswith(value.lower())


@sample("Organization", "active")
def _org_active(r: dict[str, Any]) -> tuple[str, Callable[[dict[str, Any]], bool]]:
    return "true", lambda m: m["active"] is True


def conformance_walk_calls_every_declared_search_parameter(
    client: TestClient,
    served: tuple[str, dict[str, dict[str, dict[str, Any]]]],
) -> None:
    token, resources = served
    statement = client.get("/fhir/metadata").json()
    called = 0
    for declared in statement["rest"][0]["resource"]:
        resource_type = declared["type"]
        if resource_type not in MODELS:
            continue
        first = next(iter(resources[resource_type].values()))
        for param in declared["searchParam"]:
            if param["name"] == "_sort":
                continue
            make = SAMPLES.get((resource_type, param["name"]))
            assert make is not None, f"{resource_type}.{param['name']} is declared but not exercised"
            value, holds = make(first)
            response = client.get(
                f"/fhir/{resource_type}", params={param["name"]: value, "_count": 200}, headers=bearer(token)
            )
            assert response.status_code == 200, f"{resource_type}?{param['name']}={value}: {response.text}"
            matches = [e["resource"] for e in response.json()["entry"] if e["search"]["mode"] == "match"]
            assert matches, f"{resource_type}?{param['name']}={value} found nothing"
            bad = [m["id"] for m in matches if not holds(m)]
            assert not bad, f"{resource_type}?{param['name']}={value} matched {bad[:3]}"
            called += 1
    assert called == len(SAMPLES)
