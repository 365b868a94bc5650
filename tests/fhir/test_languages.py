"""Languages on HealthcareService: ``communication`` (bound, required, to all languages)
carries only languages with a BCP-47 tag; the others stay readable in the gateway's
other-language extension, and come back from it when a tracker sends them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from fhir.resources.R4B.healthcareservice import HealthcareService

from adapters.fhir import systems as S
from adapters.fhir.inbound.transaction import map_bundle
from adapters.fhir.outbound.render import LocationSnapshot, render_location, render_services
from tests.conftest import bearer
from tests.factories import location, vacancy
from tests.fhir.conftest import push

LANGUAGES = ["English", "Klingon", "polish", "Sindarin"]


def others(resource: dict[str, Any]) -> list[Any]:
    return [e.get("valueString") for e in resource.get("extension", []) if e["url"] == S.EXT_OTHER_LANGUAGE]


def test_a_language_without_a_code_is_not_in_communication_but_in_the_extension(
    client: TestClient, tracker: str, read_token: str
) -> None:
    push(
        client,
        tracker,
        location("1-300", languages=LANGUAGES, vacancies=[vacancy(), vacancy("dementia-nursing")]),
    )
    for vacancy_type in ("general-nursing", "dementia-nursing"):
        response = client.get(f"/fhir/HealthcareService/1-300-{vacancy_type}", headers=bearer(read_token))
        assert response.status_code == 200
        service = response.json()
        HealthcareService.model_validate(service)
        assert [c["coding"] for c in service["communication"]] == [
            [{"system": S.BCP47, "code": "en", "display": "English"}],
            [{"system": S.BCP47, "code": "pl", "display": "Polish"}],
        ]
        assert [c["text"] for c in service["communication"]] == ["English", "polish"]
        assert others(service) == ["Klingon", "Sindarin"]


def test_only_unknown_languages_leave_no_communication_and_known_ones_no_extension(
    client: TestClient, tracker: str, read_token: str
) -> None:
    push(client, tracker, location("1-301", languages=["Klingon"]), location("1-302", languages=["Welsh"]))
    unknown = client.get("/fhir/HealthcareService/1-301-general-nursing", headers=bearer(read_token)).json()
    assert "communication" not in unknown and others(unknown) == ["Klingon"]
    known = client.get("/fhir/HealthcareService/1-302-general-nursing", headers=bearer(read_token)).json()
    assert known["communication"][0]["coding"][0]["code"] == "cy" and others(known) == []


def test_the_extension_is_published_as_a_structure_definition(client: TestClient, read_token: str) -> None:
    response = client.get("/fhir/StructureDefinition/other-language", headers=bearer(read_token))
    assert response.status_code == 200
    definition = response.json()
    assert definition["url"] == S.EXT_OTHER_LANGUAGE
    assert definition["context"] == [{"type": "element", "expression": "HealthcareService"}]
    value = next(e for e in definition["differential"]["element"] if e["id"] == "Extension.value[x]")
    assert value["type"] == [{"code": "string"}]


def _sent_back(record: dict[str, Any]) -> dict[str, Any]:
    """The gateway's rendering of ``record`` as a tracker's transaction Bundle."""
    snapshot = LocationSnapshot(1, datetime(2026, 11, 22, tzinfo=UTC), "x", record)
    entries = []
    for resource in (render_location(snapshot), *render_services(snapshot)):
        resource["meta"] = {"lastUpdated": record["updated_at"]}
        entries.append(
            {
                "resource": resource,
                "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def test_languages_without_a_code_come_back_from_the_extension() -> None:
    record = location(languages=["English", "polish", "Klingon"])
    bundle = _sent_back(record)
    [mapped] = map_bundle(bundle).locations
    assert mapped.issues == [] and mapped.record is not None
    assert mapped.record["languages"] == ["English", "polish", "Klingon"]
    service = bundle["entry"][1]["resource"]
    k = next(k for k, e in enumerate(service["extension"]) if e["url"] == S.EXT_OTHER_LANGUAGE)
    assert mapped.sources["/languages/2"] == (1, f"Bundle.entry[1].resource.extension[{k}].valueString")


def test_an_other_language_extension_without_a_name_is_an_issue() -> None:
    bundle = _sent_back(location(languages=["Klingon"]))
    service = bundle["entry"][1]["resource"]
    service["extension"] = [*service["extension"], {"url": S.EXT_OTHER_LANGUAGE, "valueInteger": 3}]
    service["extension"].append({"url": S.EXT_OTHER_LANGUAGE, "valueString": " "})
    [mapped] = map_bundle(bundle).locations
    assert mapped.record is None
    assert [(i.expression, i.message) for i in mapped.issues] == [
        (
            f"Bundle.entry[1].resource.extension[{k}].valueString",
            "an other-language extension names a language",
        )
        for k in (len(service["extension"]) - 2, len(service["extension"]) - 1)
    ]
