"""The provider-type rule in the version history: a line is a HealthcareService only while its
location's kind of provider offers its vacancy type (``gateway.model.vocab.offers``), so
the retired-services search (``active=false``) and the change feed's first versions judge
past and present lines by it, as a read and instance history do."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import bearer
from tests.factories import location, vacancy
from tests.fhir.conftest import push
from tests.fhir.helpers import follow, get, ids


def _rehab_line() -> dict[str, Any]:
    return vacancy(
        "community-rehab-nhs-la",
        maximum_capacity=30,
        occupied=25,
        reserved=0,
        admittable=5,
        unavailable=0,
        unavailable_reasons=[],
    )


def _accepted(client: TestClient, tracker: str, record: dict[str, Any]) -> None:
    answer = push(client, tracker, record)
    assert answer["records"][0]["status"] == "accepted", answer


def test_a_line_never_offered_is_not_a_retired_service_once_dropped(
    client: TestClient, tracker: str, read_token: str
) -> None:
    """A care home's community-rehab line was never a service: dropping it retires nothing."""
    sid = "1-2-community-rehab-nhs-la"
    _accepted(client, tracker, location("1-2", vacancies=[vacancy("general-residential"), _rehab_line()]))
    later = location("1-2", updated_at="2026-11-20T10:00:00Z", vacancies=[vacancy("general-residential")])
    _accepted(client, tracker, later)
    assert client.get(f"/fhir/HealthcareService/{sid}", headers=bearer(read_token)).status_code == 404
    for query in ({"active": "false"}, {"active": "false", "location": "Location/1-2"}):
        assert sid not in ids(get(client, read_token, "/fhir/HealthcareService", **query)), query


def test_a_service_retired_by_a_change_of_provider_type_is_found_by_active_false(
    client: TestClient, tracker: str, read_token: str
) -> None:
    """A care home's general-nursing service, its location now a community-rehab provider
    keeping the line, reads inactive: ``active=false`` finds it, at the version a read gives."""
    sid = "1-5-general-nursing"
    _accepted(client, tracker, location("1-5", vacancies=[vacancy("general-nursing")]))
    changed = location(
        "1-5",
        provider_type="community-rehab",
        updated_at="2026-11-20T10:00:00Z",
        vacancies=[vacancy("general-nursing")],
    )
    _accepted(client, tracker, changed)
    read = get(client, read_token, f"/fhir/HealthcareService/{sid}")
    assert read["active"] is False
    for query in ({"active": "false"}, {"active": "false", "location": "Location/1-5"}):
        found = get(client, read_token, "/fhir/HealthcareService", **query)
        entries = [e["resource"] for e in found.get("entry", []) if e["resource"]["id"] == sid]
        assert [r["meta"]["versionId"] for r in entries] == [read["meta"]["versionId"]], query
    assert sid not in ids(get(client, read_token, "/fhir/HealthcareService", location="Location/1-5"))


def test_the_feed_creates_a_service_when_its_provider_first_offers_it(
    client: TestClient, tracker: str, read_token: str
) -> None:
    """A care home's community-rehab line (no service), then the location is a community-rehab
    provider: the service is created then, in the change feed as in instance history."""
    sid = "1-8-community-rehab-nhs-la"
    _accepted(client, tracker, location("1-8", vacancies=[vacancy("general-nursing"), _rehab_line()]))
    changed = location(
        "1-8", provider_type="community-rehab", updated_at="2026-11-20T10:00:00Z", vacancies=[_rehab_line()]
    )
    _accepted(client, tracker, changed)

    def how(entry: dict[str, Any]) -> tuple[str, str]:
        return entry["request"]["method"], entry["response"]["status"]

    history = get(client, read_token, f"/fhir/HealthcareService/{sid}/_history")
    instance = {e["resource"]["meta"]["versionId"]: how(e) for e in history["entry"]}
    assert len(instance) == 1 and next(iter(instance.values()))[0] == "POST", instance
    first = get(client, read_token, "/fhir/HealthcareService/_history", _count=50)
    feed = {
        e["resource"]["meta"]["versionId"]: how(e)
        for page in follow(client, read_token, first)
        for e in page.get("entry", [])
        if e["resource"]["id"] == sid
    }
    assert feed == instance
