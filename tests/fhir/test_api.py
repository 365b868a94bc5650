"""The FHIR API over HTTP: read, vread, search, includes, paging, errors, history."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.location import Location

from adapters.fhir import systems as S
from tests.conftest import TokenMaker, bearer
from tests.factories import location, vacancy
from tests.fhir.conftest import HENLEY, push


def get(client: TestClient, token: str, path: str, **params: Any) -> Any:
    response = client.get(path, params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    return response.json()


def ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == mode]


def ext(resource: dict[str, Any], url: str) -> list[dict[str, Any]]:
    return [e for e in resource.get("extension", []) if e["url"] == url]


def part(extension: dict[str, Any], name: str) -> Any:
    found = [p for p in extension["extension"] if p["url"] == name]
    return next(iter(v for k, v in found[0].items() if k.startswith("value"))) if found else None


def test_read_has_etag_last_modified_and_registry_facts(
    client: TestClient, read_token: str, national: list[dict[str, Any]]
) -> None:
    response = client.get(f"/fhir/Location/{HENLEY}", headers=bearer(read_token))
    assert response.status_code == 200
    resource = response.json()
    Location.model_validate(resource)
    assert response.headers["etag"] == f'W/"{resource["meta"]["versionId"]}"'
    assert response.headers["last-modified"].endswith("GMT")
    assert resource["meta"]["source"] == S.source_uri("tracker-national")
    assert {"system": S.ODS_SITE_CODE, "value": "VNH4N"} in resource["identifier"]
    assert resource["position"]["latitude"] == pytest.approx(52.088033)
    assert ext(resource, S.EXT_REGISTERED_BEDS)[0]["valueUnsignedInt"] > 0
    assert resource["managingOrganization"]["reference"] == "Organization/1-102642938"
    again = client.get(
        f"/fhir/Location/{HENLEY}", headers={**bearer(read_token), "If-None-Match": response.headers["etag"]}
    )
    assert again.status_code == 304


def test_service_carries_the_line_figures_and_flags(
    client: TestClient, read_token: str, national: list[dict[str, Any]]
) -> None:
    service = get(client, read_token, f"/fhir/HealthcareService/{HENLEY}-general-residential")
    beds = ext(service, S.EXT_BED_AVAILABILITY)[0]
    assert [
        part(beds, k) for k in ("maximumCapacity", "occupied", "reserved", "admittable", "unavailable")
    ] == [20, 16, 1, 1, 1]
    assert part(beds, "consistent") is False
    assert part(beds, "weeklyPriceFrom") == {"value": 750.0, "currency": "GBP"}
    flags = {e["valueCoding"]["code"] for e in ext(service, S.EXT_DATA_QUALITY)}
    assert "capacity-invariant-broken" in flags
    assert service["providedBy"]["reference"] == "Organization/1-102642938"
    assert {c["coding"][0]["code"] for c in service["category"]} == {"long-term", "short-stay"}
    assert service["characteristic"][0]["coding"][0]["code"] == "respite-care"


def test_unknown_ids_and_missing_or_wrong_tokens_are_operation_outcomes(
    client: TestClient, make_token: TokenMaker, national: list[dict[str, Any]]
) -> None:
    submit_only = make_token(name="pusher", scopes=("submit",))
    reader = make_token(name="r", scopes=("read",))
    cases = [
        (client.get("/fhir/Location/1-999", headers=bearer(reader)), 404, "not-found"),
        (client.get("/fhir/HealthcareService/nonsense", headers=bearer(reader)), 404, "not-found"),
        (client.get("/fhir/Patient", headers=bearer(reader)), 404, "not-found"),
        (client.get("/fhir/Location/1-101"), 401, "login"),
        (client.get("/fhir/Location/1-101", headers=bearer("ccg_wrong")), 401, "login"),
        (client.get("/fhir/Location/1-101", headers=bearer(submit_only)), 403, "forbidden"),
        (client.put("/fhir/Location/1-101", json={}, headers=bearer(reader)), 405, "not-supported"),
    ]
    for response, status, code in cases:
        assert response.status_code == status
        body = response.json()
        assert body["resourceType"] == "OperationOutcome"
        assert body["issue"][0]["code"] == code and body["issue"][0]["diagnostics"]
    # A 405 says which methods the path takes, as HTTP asks of it.
    assert cases[-1][0].headers["Allow"] == "GET, HEAD"
    assert client.post("/fhir/Location", json={}, headers=bearer(reader)).headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "accept", ["Application/FHIR+JSON", "APPLICATION/JSON", "application/fhir+json; charset=UTF-8"]
)
def test_accept_is_read_without_regard_to_case(
    client: TestClient, read_token: str, national: list[dict[str, Any]], accept: str
) -> None:
    response = client.get("/fhir/Location", headers={**bearer(read_token), "Accept": accept})
    assert response.status_code == 200 and response.json()["resourceType"] == "Bundle"


def test_every_version_is_readable_and_history_is_in_order(
    client: TestClient, tracker: str, read_token: str, national: list[dict[str, Any]]
) -> None:
    first = get(client, read_token, "/fhir/Location/1-101")
    push(
        client,
        tracker,
        location(
            "1-101",
            updated_at="2026-11-21T09:00:00Z",
            name="Ashgrove House Nursing",
            vacancies=[vacancy("general-nursing", admittable=2)],
        ),
    )
    current = get(client, read_token, "/fhir/Location/1-101")
    assert (
        current["name"] == "Ashgrove House Nursing"
        and current["meta"]["versionId"] != first["meta"]["versionId"]
    )
    old = get(client, read_token, f"/fhir/Location/1-101/_history/{first['meta']['versionId']}")
    assert old["name"] == "Ashgrove House"
    history = get(client, read_token, "/fhir/Location/1-101/_history")
    Bundle.model_validate(history)
    assert history["type"] == "history"
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == [  # newest first
        current["meta"]["versionId"],
        first["meta"]["versionId"],
    ]
    assert [e["response"]["status"] for e in history["entry"]] == ["200 OK", "201 Created"]
    # The dementia line was dropped: its service becomes inactive, never deleted.
    dropped = get(client, read_token, "/fhir/HealthcareService/1-101-dementia-nursing")
    assert dropped["active"] is False and not ext(dropped, S.EXT_BED_AVAILABILITY)
    dropped_history = get(client, read_token, "/fhir/HealthcareService/1-101-dementia-nursing/_history")
    assert [e["resource"]["active"] for e in dropped_history["entry"]] == [False, True]
    missing = client.get("/fhir/Location/1-101/_history/999999", headers=bearer(read_token))
    assert missing.status_code == 404


def test_near_search_is_closest_first_with_distances(
    client: TestClient, read_token: str, national: list[dict[str, Any]]
) -> None:
    # From Manchester: Manchester, then Leeds (~58 km); Ipswich (~290 km) is beyond 100 km.
    found = get(client, read_token, "/fhir/Location", near="53.48|-2.24|100|km", _sort="near")
    assert ids(found) == ["1-101", "1-102"]
    distances = [e["search"]["extension"][0]["valueDistance"]["value"] for e in found["entry"]]
    assert distances == sorted(distances) and distances[1] == pytest.approx(58, abs=8)
    assert found["entry"][0]["search"]["extension"][0]["url"] == S.LOCATION_DISTANCE
    miles = get(client, read_token, "/fhir/Location", near="53.48%7C-2.24%7C10%7C[mi_us]")
    assert ids(miles) == ["1-101"]
    services = get(client, read_token, "/fhir/HealthcareService", near="52.06|1.15|20|km", _sort="near")
    assert ids(services) == [f"{HENLEY}-general-residential"]


@pytest.mark.parametrize(
    ("path", "params", "expected"),
    [
        ("Location", {"address-postalcode": "ls1"}, ["1-102"]),
        ("Location", {"address-postalcode": "IP16TB"}, [HENLEY]),
        ("Location", {"address-city": "manch"}, ["1-101"]),
        ("Location", {"identifier": f"{S.CQC_LOCATION_ID}|1-102"}, ["1-102"]),
        ("Location", {"identifier": f"{S.ODS_SITE_CODE}|VNH4N"}, [HENLEY]),
        ("Location", {"identifier": "http://other.example|1-102"}, []),
        ("Location", {"name": "beech"}, ["1-102"]),
        ("Location", {"name:contains": "house"}, ["1-101", HENLEY]),
        ("Location", {"name:exact": "Beech"}, []),
        ("Location", {"organization": "Organization/1-200000002"}, ["1-102"]),
        ("Location", {"status": "active"}, ["1-101", "1-102", HENLEY]),
        ("Location", {"status": "inactive"}, []),
        ("Location", {"_id": "1-101,1-102"}, ["1-101", "1-102"]),
        (
            "HealthcareService",
            {"location": "Location/1-101"},
            ["1-101-dementia-nursing", "1-101-general-nursing"],
        ),
        ("HealthcareService", {"organization": "1-200000002"}, ["1-102-community-rehab-nhs-la"]),
        ("HealthcareService", {"service-category": "community-rehab"}, ["1-102-community-rehab-nhs-la"]),
        (
            "HealthcareService",
            {"service-category": f"{S.SERVICE_CATEGORY}|short-stay"},
            [f"{HENLEY}-general-residential"],
        ),
        (
            "HealthcareService",
            {"service-type": f"{S.VACANCY_TYPE}|dementia-nursing"},
            ["1-101-dementia-nursing"],
        ),
        ("HealthcareService", {"characteristic": "discharge-to-assess"}, ["1-102-community-rehab-nhs-la"]),
        ("HealthcareService", {"active": "false"}, []),
        (
            "HealthcareService",
            {"admittable": "ge2"},
            ["1-101-general-nursing", "1-102-community-rehab-nhs-la"],
        ),
        (
            "HealthcareService",
            {"weekly-price": "le900"},
            ["1-101-general-nursing", f"{HENLEY}-general-residential"],
        ),
        ("HealthcareService", {"weekly-price": "900"}, ["1-101-general-nursing"]),
        ("HealthcareService", {"_id": "1-102-community-rehab-nhs-la"}, ["1-102-community-rehab-nhs-la"]),
        ("Organization", {"identifier": f"{S.CQC_PROVIDER_ID}|1-200000002"}, ["1-200000002"]),
        ("Organization", {"name": "henley"}, ["1-102642938"]),
        ("Organization", {"_id": "1-200000001"}, ["1-200000001"]),
    ],
)
def test_search_parameters(
    client: TestClient,
    read_token: str,
    national: list[dict[str, Any]],
    path: str,
    params: dict[str, str],
    expected: list[str],
) -> None:
    found = get(client, read_token, f"/fhir/{path}", **params)
    assert sorted(ids(found)) == sorted(expected)
    assert found["total"] == len(expected)


def test_last_updated_prefixes(
    client: TestClient, tracker: str, read_token: str, national: list[dict[str, Any]]
) -> None:
    before = get(client, read_token, "/fhir/Location/1-101")["meta"]["lastUpdated"]
    push(
        client,
        tracker,
        location(
            "1-102",
            updated_at="2026-11-21T09:00:00Z",
            name="Beech Lodge Two",
            region="north-east-and-yorkshire",
            address={"line1": "2 Park Row", "town": "Leeds", "postcode": "LS1 4AP"},
        ),
    )
    assert ids(get(client, read_token, "/fhir/Location", _lastUpdated=f"gt{before}")) == ["1-102"]
    assert sorted(ids(get(client, read_token, "/fhir/Location", _lastUpdated=f"le{before}"))) == sorted(
        ["1-101", HENLEY]
    )
    assert len(ids(get(client, read_token, "/fhir/Location", _lastUpdated=f"eq{before[:10]}"))) == 3
    assert ids(get(client, read_token, "/fhir/Location", _lastUpdated="lt2020-01")) == []


def test_includes_and_revincludes(
    client: TestClient, read_token: str, national: list[dict[str, Any]]
) -> None:
    found = get(
        client,
        read_token,
        "/fhir/Location",
        _id="1-101",
        _include="Location:organization",
        _revinclude="HealthcareService:location",
    )
    assert ids(found) == ["1-101"]
    assert sorted(ids(found, "include")) == ["1-101-dementia-nursing", "1-101-general-nursing", "1-200000001"]
    services = get(
        client,
        read_token,
        "/fhir/HealthcareService",
        location="1-102",
        _include=["HealthcareService:location", "HealthcareService:organization"],
    )
    assert sorted(ids(services, "include")) == ["1-102", "1-200000002"]
    orgs = get(
        client,
        read_token,
        "/fhir/Organization",
        _id="1-102642938",
        _revinclude=["Location:organization", "HealthcareService:organization"],
    )
    assert sorted(ids(orgs, "include")) == [HENLEY, f"{HENLEY}-general-residential"]
    Bundle.model_validate(orgs)


def test_next_links_keep_working_while_data_changes(
    client: TestClient, tracker: str, read_token: str, national: list[dict[str, Any]]
) -> None:
    first = get(client, read_token, "/fhir/Location", _count=1, _sort="_id")
    assert ids(first) == [HENLEY] and first["total"] == 3  # ids sort as text
    # A new location sorting before the cursor, and a change to one not shown yet.
    push(client, tracker, location("1-100"), location("1-101", updated_at="2026-11-21T10:00:00Z"))
    seen = ids(first)
    url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    while url:
        page = client.get(url, headers=bearer(read_token)).json()
        seen += ids(page)
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert seen == [HENLEY, "1-101", "1-102"]


@pytest.mark.parametrize(
    ("params", "headers", "status", "needle"),
    [
        ({"colour": "blue"}, {}, 400, "unknown search parameter 'colour'"),
        ({"name:fuzzy": "x"}, {}, 400, "modifier 'fuzzy'"),
        ({"near": "53.4|-2.2|-5|km"}, {}, 400, "greater than 0"),
        ({"near": "-2.2"}, {}, 400, "latitude|longitude"),
        ({"near": "53.4|-2.2|5|furlongs"}, {}, 400, "units"),
        ({"_sort": "near"}, {}, 400, "needs a near"),
        ({"_sort": "colour"}, {}, 400, "not supported"),
        ({"_lastUpdated": "yesterday"}, {}, 400, "not a FHIR date"),
        ({"_include": "Location:partof"}, {}, 400, "not supported"),
        ({"status": "closed"}, {}, 400, "unknown code"),
        ({"_count": "many"}, {}, 400, "_count"),
        ({"_count": "\u00b2"}, {}, 400, "not a whole number"),  # a digit to Python, not to int()
        ({"near": "52.08|1.16|nan|km"}, {}, 400, "finite"),
        ({"near": "nan|1.16|5|km"}, {}, 400, "finite"),
        ({"_cursor": "garbage"}, {}, 400, "cursor"),
        ({"_format": "xml"}, {}, 406, "application/fhir+json"),
        ({}, {"Accept": "application/fhir+xml"}, 406, "application/fhir+json"),
    ],
)
def test_bad_searches_are_refused_with_operation_outcomes(
    client: TestClient,
    read_token: str,
    national: list[dict[str, Any]],
    params: dict[str, str],
    headers: dict[str, str],
    status: int,
    needle: str,
) -> None:
    response = client.get("/fhir/Location", params=params, headers={**bearer(read_token), **headers})
    assert response.status_code == status
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert needle in outcome["issue"][0]["diagnostics"]


def test_lenient_handling_ignores_unknown_parameters_and_says_so(
    client: TestClient, read_token: str, national: list[dict[str, Any]]
) -> None:
    response = client.get(
        "/fhir/Location",
        params={"colour": "blue", "name": "beech"},
        headers={**bearer(read_token), "Prefer": "handling=lenient"},
    )
    assert response.status_code == 200
    bundle = response.json()
    assert ids(bundle) == ["1-102"]
    outcome = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert "colour" in outcome[0]["issue"][0]["diagnostics"]
    assert get(client, read_token, "/fhir/Location", _format="json", _total="none").get("total") is None


def test_capability_statement_lists_exactly_what_is_served(client: TestClient) -> None:
    response = client.get("/fhir/metadata")
    assert response.status_code == 200
    statement = response.json()
    CapabilityStatement.model_validate(statement)
    assert statement["fhirVersion"] == "4.0.1" and "application/fhir+json" in statement["format"]
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert {"Location", "HealthcareService", "Organization", "CodeSystem", "ConceptMap"} <= set(by_type)
    names = {p["name"] for p in by_type["Location"]["searchParam"]}
    assert {
        "near",
        "address-postalcode",
        "address-city",
        "identifier",
        "name",
        "organization",
        "status",
        "_id",
        "_lastUpdated",
    } <= names
    assert by_type["Location"]["searchRevInclude"] == ["HealthcareService:location"]


def test_conformance_resources_are_read_and_searched(client: TestClient, read_token: str) -> None:
    code_system = get(client, read_token, "/fhir/CodeSystem/vacancy-type")
    assert code_system["url"] == S.VACANCY_TYPE
    found = get(client, read_token, "/fhir/CodeSystem", url=S.VACANCY_TYPE)
    assert ids(found) == ["vacancy-type"]
    assert client.get("/fhir/CodeSystem/nope", headers=bearer(read_token)).status_code == 404
    for path in ("/fhir/CodeSystem/_history", "/fhir/CodeSystem/vacancy-type/_history/1"):
        refused = client.get(path, headers=bearer(read_token))
        assert (
            refused.status_code == 400 and "history are kept for" in refused.json()["issue"][0]["diagnostics"]
        )


def test_a_native_push_shows_in_search_read_and_history_with_the_same_figures(
    client: TestClient, tracker: str, read_token: str, factory: Any
) -> None:
    line = vacancy(
        "mental-health-nursing",
        maximum_capacity=12,
        occupied=7,
        reserved=2,
        admittable=2,
        unavailable=1,
        unavailable_reasons=["refurbishment"],
        weekly_price_from=1325.5,
        flexible=True,
    )
    answer = push(client, tracker, location("1-555", vacancies=[line], updated_at="2026-11-22T07:30:00Z"))
    version = str(answer["records"][0]["version_id"])
    native = client.get("/api/v1/locations/1-555", headers=bearer(tracker)).json()["vacancies"][0]
    service_id = "1-555-mental-health-nursing"
    read = get(client, read_token, f"/fhir/HealthcareService/{service_id}")
    found = get(client, read_token, "/fhir/HealthcareService", **{"service-type": "mental-health-nursing"})
    history = get(client, read_token, "/fhir/HealthcareService/_history")
    searched = next(e["resource"] for e in found["entry"] if e["resource"]["id"] == service_id)
    fed = next(e["resource"] for e in history["entry"] if e["resource"]["id"] == service_id)
    for resource in (read, searched, fed):
        assert resource["meta"]["versionId"] == version
        beds = ext(resource, S.EXT_BED_AVAILABILITY)[0]
        figures = {
            k: part(beds, k)
            for k in ("maximumCapacity", "occupied", "reserved", "admittable", "unavailable", "flexible")
        }
        assert figures == {
            "maximumCapacity": native["maximum_capacity"],
            "occupied": native["occupied"],
            "reserved": native["reserved"],
            "admittable": native["admittable"],
            "unavailable": native["unavailable"],
            "flexible": native["flexible"],
        }
        assert part(beds, "weeklyPriceFrom")["value"] == native["weekly_price_from"] == 1325.5
        assert part(beds, "unavailableReason")["code"] == "refurbishment"
        assert part(beds, "providerUpdated") == "2026-11-22T07:30:00Z"


def test_an_unexpected_failure_is_an_operation_outcome_without_details(
    settings: Any, read_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.api.app import create_app
    from gateway.fhir import history

    def broken(*_: Any) -> Any:
        raise RuntimeError("secret payload text")

    monkeypatch.setattr(history, "read", broken)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        response = client.get("/fhir/Location/1-101", headers=bearer(read_token))
    assert response.status_code == 500
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "exception"
    assert "secret" not in response.text
