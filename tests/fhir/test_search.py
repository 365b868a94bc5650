"""FHIR search semantics the API tests do not cover: near searches paged in ``_id`` order,
and tokens naming a system without a code."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.fhir import systems as S
from gateway.places import bounding_box, haversine_km
from tests.conftest import bearer
from tests.factories import location
from tests.fhir.conftest import HENLEY, push
from tests.fhir.helpers import follow, get

LEEDS = {"line1": "3 Park Row", "town": "Leeds", "postcode": "LS1 4AP"}
RADIUS_KM = 75.0


def ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


@pytest.fixture
def corner_search(client: TestClient, tracker: str, read_token: str, national: list[dict[str, Any]]) -> str:
    """A ``near`` value whose bounding box holds Manchester (1-101) in its corner, beyond the
    radius, and two Leeds homes (1-102, 1-103) within it."""
    push(
        client, tracker, location("1-103", name="Leeds Two", region="north-east-and-yorkshire", address=LEEDS)
    )
    manchester = get(client, read_token, "/fhir/Location/1-101")["position"]
    leeds = get(client, read_token, "/fhir/Location/1-102")["position"]
    lat, lon = manchester["latitude"] + 0.6, manchester["longitude"] + 1.0
    south, north, west, east = bounding_box(lat, lon, RADIUS_KM)
    assert south <= manchester["latitude"] <= north and west <= manchester["longitude"] <= east
    assert haversine_km(lat, lon, manchester["latitude"], manchester["longitude"]) > RADIUS_KM
    assert haversine_km(lat, lon, leeds["latitude"], leeds["longitude"]) < RADIUS_KM
    return f"{lat}|{lon}|{RADIUS_KM:g}|km"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("Location", ["1-102", "1-103"]),
        ("HealthcareService", ["1-102-community-rehab-nhs-la", "1-103-general-nursing"]),
    ],
)
def test_near_in_id_order_counts_and_pages_only_matches_within_the_radius(
    client: TestClient, read_token: str, corner_search: str, path: str, expected: list[str]
) -> None:
    for count in (1, 2, 3):
        first = get(client, read_token, f"/fhir/{path}", near=corner_search, _sort="_id", _count=count)
        pages = follow(client, read_token, first)
        assert [p["total"] for p in pages] == [len(expected)] * len(pages)
        assert [len(ids(p)) for p in pages[:-1]] == [count] * (len(pages) - 1)  # every page but the last full
        assert [i for p in pages for i in ids(p)] == expected
        assert len(pages) == -(-len(expected) // count)  # no empty page after the last match
    closest_first = get(client, read_token, f"/fhir/{path}", near=corner_search)
    assert sorted(ids(closest_first)) == expected and closest_first["total"] == len(expected)


def test_near_in_id_order_whose_box_holds_only_a_home_beyond_the_radius_finds_nothing(
    client: TestClient, read_token: str, corner_search: str
) -> None:
    found = get(
        client, read_token, "/fhir/Location", near=corner_search, name="Ashgrove", _sort="_id", _count=1
    )
    assert found["total"] == 0 and ids(found) == []
    assert [ln["relation"] for ln in found["link"]] == ["self"]


ALL_SERVICES = [
    "1-101-dementia-nursing",
    "1-101-general-nursing",
    "1-102-community-rehab-nhs-la",
    f"{HENLEY}-general-residential",
]


@pytest.mark.parametrize(
    ("path", "params", "expected"),
    [
        ("Location", {"identifier": f"{S.CQC_LOCATION_ID}|"}, ["1-101", "1-102", HENLEY]),
        ("Location", {"identifier": f"{S.ODS_SITE_CODE}|"}, [HENLEY]),  # only Henley has an ODS code
        ("Location", {"identifier": f"{S.ODS_SITE_CODE}|,{S.CQC_LOCATION_ID}|1-102"}, ["1-102", HENLEY]),
        ("Location", {"identifier": "http://other.example/ids|"}, []),
        ("Location", {"identifier": f"{S.CQC_PROVIDER_ID}|"}, []),  # a system Location ids are not in
        ("Location", {"identifier": f"{S.CQC_LOCATION_ID}|", "name": "beech"}, ["1-102"]),
        (
            "Organization",
            {"identifier": f"{S.CQC_PROVIDER_ID}|"},
            ["1-102642938", "1-200000001", "1-200000002"],
        ),
        ("Organization", {"identifier": "http://other.example/ids|"}, []),
        ("HealthcareService", {"service-type": f"{S.VACANCY_TYPE}|"}, ALL_SERVICES),
        ("HealthcareService", {"service-type": f"{S.SHORT_STAY_SERVICE}|"}, []),
        ("HealthcareService", {"characteristic": f"{S.SHORT_STAY_SERVICE}|"}, ALL_SERVICES[2:]),
        ("HealthcareService", {"service-category": f"{S.SERVICE_CATEGORY}|"}, ALL_SERVICES),
        ("Location", {"status": "http://hl7.org/fhir/location-status|"}, ["1-101", "1-102", HENLEY]),
    ],
)
def test_a_system_without_a_code_matches_any_code_in_that_system(
    client: TestClient,
    read_token: str,
    national: list[dict[str, Any]],
    path: str,
    params: dict[str, str],
    expected: list[str],
) -> None:
    found = get(client, read_token, f"/fhir/{path}", **params)
    assert sorted(ids(found)) == sorted(expected) and found["total"] == len(expected)


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"identifier": "|"}, "a system or a code is needed"),
        ({"status": "|"}, "a system or a code is needed"),
        ({"status": "http://hl7.org/fhir/location-status|closed"}, "unknown code 'closed'"),
    ],
)
def test_tokens_with_neither_system_nor_code_or_an_unknown_code_are_refused(
    client: TestClient, read_token: str, national: list[dict[str, Any]], params: dict[str, str], needle: str
) -> None:
    response = client.get("/fhir/Location", params=params, headers=bearer(read_token))
    assert response.status_code == 400
    assert needle in response.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    "value",
    ["lt9999-12-31T23:59:59Z", "ge0001-01-01T00:00:00+14:00", "lt9999-12-31", "gt9999", "9999-12"],
)
def test_dates_at_the_edge_of_the_calendar_are_400s_not_server_errors(
    client: TestClient, read_token: str, value: str
) -> None:
    for path in ("/fhir/Location", "/fhir/HealthcareService"):
        response = client.get(path, params={"_lastUpdated": value}, headers=bearer(read_token))
        assert response.status_code == 400, (path, value, response.text)
        assert "_lastUpdated" in response.json()["issue"][0]["diagnostics"]
    history = client.get(
        "/fhir/Location/_history", params={"_since": value.lstrip("lgte")}, headers=bearer(read_token)
    )
    assert history.status_code == 400, (value, history.text)
    assert "_since" in history.json()["issue"][0]["diagnostics"]


def test_a_cursor_kept_while_the_sort_changes_is_refused_not_a_server_error(
    client: TestClient, read_token: str, national: list[dict[str, Any]]
) -> None:
    by_id = get(client, read_token, "/fhir/HealthcareService", _count=1)
    cursor = next(ln["url"] for ln in by_id["link"] if ln["relation"] == "next").split("_cursor=")[1]
    for sort in ("admittable", "-weekly-price", "_lastUpdated"):
        response = client.get(
            "/fhir/HealthcareService",
            params={"_count": "1", "_sort": sort, "_cursor": cursor},
            headers=bearer(read_token),
        )
        assert response.status_code == 400, response.text
        assert "_cursor" in response.json()["issue"][0]["diagnostics"]
    by_price = get(client, read_token, "/fhir/HealthcareService", _count=1, _sort="weekly-price")
    url = next(ln["url"] for ln in by_price["link"] if ln["relation"] == "next")
    response = client.get(url.replace("weekly-price", "_id"), headers=bearer(read_token))
    assert response.status_code == 400 and "_cursor" in response.json()["issue"][0]["diagnostics"]
    followed = client.get(url, headers=bearer(read_token))  # the link as given still pages
    assert followed.status_code == 200 and ids(followed.json()) == ["1-101-general-nursing"]


@pytest.mark.parametrize(
    ("path", "parameter", "value", "expected"),
    [
        ("Location", "_include", "Location:organization:Organization", ["1-200000002"]),
        ("Location", "_revinclude", "HealthcareService:location:Location", ["1-102-community-rehab-nhs-la"]),
    ],
)
def test_an_include_naming_its_target_type_is_the_include(
    client: TestClient,
    read_token: str,
    national: list[dict[str, Any]],
    path: str,
    parameter: str,
    value: str,
    expected: list[str],
) -> None:
    found = get(client, read_token, f"/fhir/{path}", _id="1-102", **{parameter: value})
    included = [e["resource"]["id"] for e in found["entry"] if e["search"]["mode"] == "include"]
    assert ids(found) == ["1-102"] and included == expected
    wrong = client.get(
        f"/fhir/{path}",
        params={"_id": "1-102", parameter: value.rsplit(":", 1)[0] + ":Patient"},
        headers=bearer(read_token),
    )
    assert wrong.status_code == 400 and parameter in wrong.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    ("path", "key", "value", "status", "expected"),
    [
        ("Location", "organization:Organization", "1-200000002", 200, ["1-102"]),
        ("Location", "organization:Location", "1-200000002", 400, None),
        ("HealthcareService", "location:Location", "1-102", 200, ["1-102-community-rehab-nhs-la"]),
        ("HealthcareService", "location:Organization", "1-102", 400, None),
        ("HealthcareService", "organization:Location", "1-200000002", 400, None),
    ],
)
def test_a_reference_type_modifier_must_name_the_parameters_target(
    client: TestClient,
    read_token: str,
    national: list[dict[str, Any]],
    path: str,
    key: str,
    value: str,
    status: int,
    expected: list[str] | None,
) -> None:
    response = client.get(f"/fhir/{path}", params={key: value}, headers=bearer(read_token))
    assert response.status_code == status, response.text
    if expected is None:
        assert f"modifier {key.split(':')[1]!r}" in response.json()["issue"][0]["diagnostics"]
    else:
        assert ids(response.json()) == expected
