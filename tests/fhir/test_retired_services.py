"""Retired entries in FHIR search, as read gives them: a vacancy type a location stops
offering stays as an inactive HealthcareService, found by ``active=false`` (alone or with
other filters, paged, counted, with its includes); a closed location by ``status=inactive``.
Without ``active``, search finds the services of the current view only, as before."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.fhir import params as P
from gateway.fhir import retired as retired_services
from tests.conftest import bearer
from tests.factories import location, vacancy
from tests.fhir.conftest import push
from tests.fhir.helpers import follow, get, ids

RETIRED = "1-101-dementia-nursing"


@pytest.fixture
def retired(client: TestClient, tracker: str, national: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ashgrove House (1-101) stops offering dementia nursing."""
    ashgrove = {**national[0], "updated_at": "2026-11-21T10:00:00Z"}
    ashgrove["vacancies"] = [v for v in ashgrove["vacancies"] if v["vacancy_type"] != "dementia-nursing"]
    answer = push(client, tracker, ashgrove)
    assert answer["records"][0]["status"] == "accepted", answer
    return national


def test_a_retired_service_is_found_by_active_false_as_a_read_gives_it(
    client: TestClient, read_token: str, retired: list[dict[str, Any]]
) -> None:
    read = get(client, read_token, f"/fhir/HealthcareService/{RETIRED}")
    assert read["active"] is False
    for query in ({"active": "false"}, {"location": "Location/1-101", "active": "false"}):
        found = get(client, read_token, "/fhir/HealthcareService", **query)
        assert ids(found) == [RETIRED] and found["total"] == 1, query
        assert found["entry"][0]["resource"] == read
    assert "entry" not in get(client, read_token, "/fhir/HealthcareService", location="1-102", active="false")
    # Other filters apply to it as to any service; it has no bed counts to match.
    for query, expected in [
        ({"service-type": "dementia-nursing"}, [RETIRED]),
        ({"service-type": "general-nursing"}, []),
        ({"service-category": "long-term"}, [RETIRED]),
        ({"service-category": "community-rehab"}, []),
        ({"organization": "Organization/1-200000001"}, [RETIRED]),
        ({"organization": "Organization/1-200000002"}, []),
        ({"_id": RETIRED}, [RETIRED]),
        ({"_lastUpdated": f"ge{read['meta']['lastUpdated']}"}, [RETIRED]),
        ({"_lastUpdated": f"lt{read['meta']['lastUpdated']}"}, []),
        ({"near": "53.48|-2.24|10|km"}, [RETIRED]),
        ({"near": "51.05|1.15|10|km"}, []),
        ({"admittable": "ge0"}, []),
        ({"weekly-price": "ge0"}, []),
    ]:
        assert ids(get(client, read_token, "/fhir/HealthcareService", active="false", **query)) == expected, (
            query
        )


def test_without_active_search_finds_the_current_services_only(
    client: TestClient, read_token: str, retired: list[dict[str, Any]]
) -> None:
    current = ids(get(client, read_token, "/fhir/HealthcareService", _count=100))
    assert RETIRED not in current and "1-101-general-nursing" in current
    assert ids(get(client, read_token, "/fhir/HealthcareService", active="true", _count=100)) == current
    both = get(client, read_token, "/fhir/HealthcareService", active="true,false", _count=100)
    assert ids(both) == sorted([*current, RETIRED]) and both["total"] == len(current) + 1
    response = client.get("/fhir/HealthcareService?active=true&active=false", headers=bearer(read_token))
    anded = response.json()
    assert "entry" not in anded and anded["total"] == 0


def test_retired_services_page_count_and_include_like_any_other(
    client: TestClient, read_token: str, retired: list[dict[str, Any]]
) -> None:
    every = ids(get(client, read_token, "/fhir/HealthcareService", active="true,false", _count=100))
    for sort in ("_id", "_lastUpdated", "-_lastUpdated", "admittable"):
        first = get(client, read_token, "/fhir/HealthcareService", active="true,false", _count=1, _sort=sort)
        pages = follow(client, read_token, first)
        shown = [i for page in pages for i in ids(page)]
        assert sorted(shown) == every and len(pages) == len(every), sort
        assert all(page["total"] == len(every) for page in pages)
    assert "total" not in get(client, read_token, "/fhir/HealthcareService", active="false", _total="none")
    # _include gives the Location as it is now, not as the version that retired the service.
    included = get(
        client,
        read_token,
        "/fhir/HealthcareService",
        active="false",
        _include="HealthcareService:location,HealthcareService:organization",
    )
    assert ids(included) == [RETIRED]
    by_id = {
        e["resource"]["id"]: e["resource"] for e in included["entry"] if e["search"]["mode"] == "include"
    }
    assert by_id["1-101"] == get(client, read_token, "/fhir/Location/1-101")
    assert by_id["1-200000001"] == get(client, read_token, "/fhir/Organization/1-200000001")


def test_a_service_offered_again_is_current_again(
    client: TestClient, tracker: str, read_token: str, retired: list[dict[str, Any]]
) -> None:
    again = {**retired[0], "updated_at": "2026-11-21T11:00:00Z"}
    push(client, tracker, again)
    assert "entry" not in get(client, read_token, "/fhir/HealthcareService", active="false")
    assert RETIRED in ids(get(client, read_token, "/fhir/HealthcareService", active="true"))


def test_a_closed_location_and_its_services_are_found_as_inactive(
    client: TestClient, tracker: str, read_token: str, retired: list[dict[str, Any]]
) -> None:
    closed = location(
        "1-102",
        name="Beech Lodge",
        region="north-east-and-yorkshire",
        provider={"cqc_provider_id": "1-200000002", "name": "Beech Care Ltd"},
        address={"line1": "2 Park Row", "town": "Leeds", "postcode": "LS1 4AP"},
        updated_at="2026-11-21T10:00:00Z",
        active=False,
        vacancies=[vacancy("general-residential")],
    )
    push(client, tracker, closed)
    read = get(client, read_token, "/fhir/Location/1-102")
    assert read["status"] == "inactive"
    inactive = get(client, read_token, "/fhir/Location", status="inactive")
    assert ids(inactive) == ["1-102"] and inactive["entry"][0]["resource"] == read
    assert "1-102" not in ids(get(client, read_token, "/fhir/Location", status="active"))
    assert ids(get(client, read_token, "/fhir/Location", status="inactive", name="Beech")) == ["1-102"]
    # Its services (the one it offers now and the one it stopped offering when it closed)
    # are inactive: both are found by active=false, with the retired service of 1-101.
    services = get(client, read_token, "/fhir/HealthcareService", active="false")
    assert ids(services) == [RETIRED, "1-102-community-rehab-nhs-la", "1-102-general-residential"]
    for found in services["entry"]:
        assert found["resource"]["active"] is False
        assert found["resource"] == get(
            client, read_token, f"/fhir/HealthcareService/{found['resource']['id']}"
        )
    assert not {i for i in ids(get(client, read_token, "/fhir/HealthcareService", active="true"))} & {
        "1-102-general-residential",
        "1-102-community-rehab-nhs-la",
    }


def test_every_healthcareservice_parameter_is_applied_to_retired_services() -> None:
    """Retired services are filtered apart from the current view's SQL: a parameter added
    to HealthcareService search must be applied there too, or it would find them all."""
    assert set(P.SEARCH_PARAMETERS["HealthcareService"]) == retired_services.FILTERS
