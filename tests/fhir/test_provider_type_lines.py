"""FHIR draws the model's rules from the stored record as the native API does: a line of a
type its kind of provider does not offer is flagged on its Location and, as a line of an
unmapped code, is no HealthcareService; entered capacity above the registered beds is
judged by ``above_registered`` (no registered beds, the CQC's 0, bound nothing)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.fhir import systems as S
from adapters.fhir.outbound import render
from adapters.fhir.outbound.render import LocationSnapshot, RegistryFacts
from tests.conftest import bearer
from tests.factories import location, vacancy
from tests.fhir.conftest import push
from tests.fhir.helpers import get, ids

NOT_OFFERED = "type-not-offered-by-provider"
ABOVE = "entered-capacity-above-registered"


def _flags(resource: dict[str, Any]) -> list[str]:
    return [e["valueCoding"]["code"] for e in resource.get("extension", []) if e["url"] == S.EXT_DATA_QUALITY]


def _rehab_line(**over: Any) -> dict[str, Any]:
    figures = dict(
        maximum_capacity=30, occupied=25, reserved=0, admittable=5, unavailable=0, unavailable_reasons=[]
    )
    return vacancy("community-rehab-nhs-la", **{**figures, **over})


@pytest.fixture
def mixed(client: TestClient, tracker: str) -> None:
    answer = push(
        client,
        tracker,
        location("1-2", vacancies=[vacancy("general-residential"), _rehab_line()]),
        location("1-3", provider_type="community-rehab", vacancies=[vacancy("dementia-nursing")]),
    )
    assert [r["status"] for r in answer["records"]] == ["accepted", "accepted"]


def test_the_location_is_flagged_and_the_line_is_no_service(
    client: TestClient, read_token: str, mixed: None
) -> None:
    assert NOT_OFFERED in _flags(get(client, read_token, "/fhir/Location/1-2"))
    assert NOT_OFFERED in _flags(get(client, read_token, "/fhir/Location/1-3"))
    kept = get(client, read_token, "/fhir/HealthcareService/1-2-general-residential")
    assert kept["active"] is True and NOT_OFFERED not in _flags(kept)
    for service in ("1-2-community-rehab-nhs-la", "1-3-dementia-nursing"):
        response = client.get(f"/fhir/HealthcareService/{service}", headers=bearer(read_token))
        assert response.status_code == 404, service


def test_a_service_whose_provider_stops_offering_its_type_is_retired(
    client: TestClient, tracker: str, read_token: str
) -> None:
    """A care home's general nursing, once the location says it is a community
    rehabilitation provider, is a type it no longer offers: inactive, no bed counts."""
    push(client, tracker, location("1-5", vacancies=[vacancy("general-nursing")]))
    assert get(client, read_token, "/fhir/HealthcareService/1-5-general-nursing")["active"] is True
    moved = location(
        "1-5",
        provider_type="community-rehab",
        updated_at="2026-11-20T10:00:00Z",
        vacancies=[vacancy("general-nursing")],
    )
    push(client, tracker, moved)
    service = get(client, read_token, "/fhir/HealthcareService/1-5-general-nursing")
    assert service["active"] is False
    assert S.EXT_BED_AVAILABILITY not in [e["url"] for e in service.get("extension", [])]


def _snapshot(record: dict[str, Any], registered_beds: int | None) -> LocationSnapshot:
    return LocationSnapshot(
        version_id=1,
        recorded_at=datetime(2026, 11, 20, tzinfo=UTC),
        source="tracker",
        record=record,
        registry=RegistryFacts(registered_beds=registered_beds),
    )


@pytest.mark.parametrize(("registered_beds", "flagged"), [(None, False), (0, False), (29, True), (30, False)])
def test_the_location_judges_entered_capacity_by_the_models_rule(
    registered_beds: int | None, flagged: bool
) -> None:
    """The CQC's 0 registered beds (a community rehabilitation provider) bound nothing, as in
    the native API, the search and reconciliation."""
    record = location("1-9", provider_type="community-rehab", vacancies=[_rehab_line()])
    assert (ABOVE in render.location_flags(_snapshot(record, registered_beds))) is flagged


def test_lines_not_offered_count_in_no_entered_capacity_and_no_service() -> None:
    record = location("1-9", vacancies=[vacancy("general-nursing", maximum_capacity=20), _rehab_line()])
    assert [line["vacancy_type"] for line in render.national_lines(record)] == ["general-nursing"]
    # 50 entered, but 20 counted: within 25 registered beds, above 15.
    assert render.location_flags(_snapshot(record, 25)) == [NOT_OFFERED]
    assert render.location_flags(_snapshot(record, 15)) == [ABOVE, NOT_OFFERED]
    assert [r["id"] for r in render.render_services(_snapshot(record, 25))] == ["1-9-general-nursing"]
    assert render.line_flags(_rehab_line(), "care-home") == [NOT_OFFERED]
    assert render.line_flags(_rehab_line(), "community-rehab") == []
    assert render.line_flags({**_rehab_line(), "vacancy_type": None}, "care-home") == [
        "unmapped-vacancy-type"
    ]


def test_a_search_finds_only_the_services_a_read_gives(
    client: TestClient, read_token: str, mixed: None
) -> None:
    found = get(client, read_token, "/fhir/HealthcareService", location="Location/1-2")
    assert ids(found) == ["1-2-general-residential"]
    assert (
        ids(get(client, read_token, "/fhir/HealthcareService", **{"service-category": "community-rehab"}))
        == []
    )
    assert (
        ids(get(client, read_token, "/fhir/HealthcareService", **{"service-type": "dementia-nursing"})) == []
    )
