"""Everything the gateway puts on the wire under /fhir, checked against HL7's official FHIR R4
(4.0.1) artefacts (``tests/fixtures/fhir_r4``): the JSON schema, the invariants of the R4
StructureDefinitions (evaluated with fhirpathpy), and the rules R4 writes in prose (JSON
without nulls or empty elements, Bundle fullUrls and entry parts, instants, ETag and
Last-Modified agreeing with meta)."""

from __future__ import annotations

import time
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from httpx import Response

from adapters.fhir import systems as S
from adapters.fhir.outbound.conformance import conformance_resources
from tests.conftest import TokenMaker, bearer
from tests.factories import batch, location, vacancy
from tests.fhir.conftest import HENLEY
from tests.fhir.helpers import follow, get
from tests.fhir.official import (
    all_problems,
    capability_problems,
    invariant_problems,
    primitive_problems,
    schema_problems,
    structure_definition_problems,
    wire_problems,
)
from tests.fhir.test_transaction import post, resources, transaction, withdrawn_service

BASE = "http://testserver/fhir"
FHIR_JSON = "application/fhir+json"


def problems(response: Response, expected_status: int = 200) -> list[str]:
    """What is wrong with a served FHIR JSON response (status, media type, body)."""
    out: list[str] = []
    label = f"{response.request.method} {response.request.url}"
    if response.status_code != expected_status:
        out.append(f"{label}: status {response.status_code}, not {expected_status}: {response.text[:300]}")
        return out
    if not response.headers.get("content-type", "").startswith(FHIR_JSON):
        out.append(f"{label}: Content-Type {response.headers.get('content-type')!r}")
    return out + [f"{label}: {p}" for p in all_problems(response.json(), BASE)]


def read_headers(response: Response) -> list[str]:
    """http.html#read: ETag W/"<meta.versionId>", Last-Modified the instant of meta.lastUpdated."""
    body, out = response.json(), []
    meta = body.get("meta", {})
    if "versionId" in meta and response.headers.get("etag") != f'W/"{meta["versionId"]}"':
        out.append(f"{response.request.url}: ETag {response.headers.get('etag')!r} vs {meta}")
    if "lastUpdated" in meta:
        updated = datetime.fromisoformat(meta["lastUpdated"].replace("Z", "+00:00"))
        modified = parsedate_to_datetime(response.headers["last-modified"])
        if modified != updated.replace(microsecond=0):
            out.append(f"{response.request.url}: Last-Modified {modified} vs {updated}")
    return out


def test_the_checks_catch_what_they_are_for() -> None:
    """The vendored artefacts and the invariant engine do find breaches (a check that can
    find nothing would pass everything)."""
    bad_bundle = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "total": 1,  # bdl-1
        "entry": [{"fullUrl": f"{BASE}/Location/1/_history/1", "resource": {"resourceType": "Location"}}],
    }
    found = " | ".join(invariant_problems(bad_bundle))
    assert "bdl-1" in found and "bdl-4" in found and "bdl-8" in found
    assert "ext-1" in " ".join(
        invariant_problems(
            {
                "resourceType": "Location",
                "extension": [
                    {"url": "x", "valueString": "a", "extension": [{"url": "y", "valueString": "b"}]}
                ],
            }
        )
    )
    assert "ref-1" in " ".join(
        invariant_problems({"resourceType": "Location", "managingOrganization": {"reference": "#nowhere"}})
    )
    assert schema_problems({"resourceType": "Location", "status": "open"})
    assert schema_problems(
        {"resourceType": "OperationOutcome", "issue": [{"severity": "fatal", "code": "bogus"}]}
    )
    assert schema_problems(
        {"resourceType": "Bundle", "type": "searchset", "meta": {"lastUpdated": "2026-11-22"}}
    )
    assert primitive_problems({"resourceType": "Bundle", "type": "searchset", "total": -1}) == [
        "Bundle.total: -1 is not an R4 unsignedInt"
    ]
    assert wire_problems({"a": [], "b": None, "c": "", "d": {}}) == [
        ".a: empty array",
        ".b: null",
        ".c: empty string",
        ".d: empty object",
    ]


def test_reads_and_version_reads_conform(
    client: TestClient, read_token: str, national: list[dict[str, Any]]
) -> None:
    found: list[str] = []
    headers = bearer(read_token)
    paths = [f"/fhir/Location/{record['cqc_location_id']}" for record in national]
    paths += [f"/fhir/HealthcareService/{r['id']}" for r in _all(client, read_token, "HealthcareService")]
    paths += [f"/fhir/Organization/{r['id']}" for r in _all(client, read_token, "Organization")]
    for path in paths:
        response = client.get(path, headers=headers)
        found += problems(response) + read_headers(response)
        version = response.json()["meta"]["versionId"]
        versioned = client.get(f"{path}/_history/{version}", headers=headers)
        found += problems(versioned) + read_headers(versioned)
    assert found == []
    assert len(paths) == 3 + 4 + 3


def test_conformance_resources_and_the_capability_statement_conform(
    client: TestClient, read_token: str
) -> None:
    metadata = client.get("/fhir/metadata")
    found = problems(metadata)
    published = conformance_resources()
    found += capability_problems(metadata.json(), {sp["url"] for sp in published["SearchParameter"]})
    value_sets = {vs["url"] for vs in published["ValueSet"]}
    for resource_type, items in published.items():
        for resource in items:
            response = client.get(f"/fhir/{resource_type}/{resource['id']}", headers=bearer(read_token))
            found += problems(response)
            if resource_type == "StructureDefinition":
                found += structure_definition_problems(response.json(), value_sets)
    assert found == []


def test_the_structure_and_capability_checks_catch_what_they_are_for() -> None:
    sd = conformance_resources()["StructureDefinition"][0]
    broken = {
        **sd,
        "context": [{"type": "element", "expression": "Locaton"}],
        "differential": {
            "element": [
                {"id": "Extension.valueFoo", "path": "Extension.valueFoo"},
                {"id": "Extension.value[x]", "path": "Extension.value[x]", "type": [{"code": "Widget"}]},
                {"id": "Extension.url", "path": "Extension.url", "fixedString": 3},
            ]
        },
    }
    found = structure_definition_problems(broken, set())
    assert len(found) == 5, found
    statement = {
        "rest": [
            {
                "resource": [
                    {
                        "type": "Location",
                        "searchInclude": ["Location:name"],
                        "searchParam": [
                            {"name": "near", "type": "token"},
                            {"name": "name", "type": "string", "definition": "http://x/SP/name"},
                        ],
                    }
                ]
            }
        ]
    }
    assert len(capability_problems(statement, set())) == 4


def _all(client: TestClient, token: str, resource_type: str) -> list[dict[str, Any]]:
    pages = follow(client, token, get(client, token, f"/fhir/{resource_type}", _count="50"))
    return [e["resource"] for page in pages for e in page.get("entry", ())]


SEARCHES = [
    ("Location", {}),
    ("Location", {"_count": "1"}),
    ("Location", {"address-postalcode": "LS1", "_revinclude": "HealthcareService:location"}),
    ("Location", {"_include": "Location:organization", "_total": "accurate"}),
    ("Location", {"_total": "none", "_count": "2"}),
    ("Location", {"near": "53.48|-2.24|500|km", "_sort": "near", "_count": "2"}),
    ("Location", {"name": "nothing like this"}),
    ("HealthcareService", {"_include": "HealthcareService:location", "_count": "2"}),
    ("HealthcareService", {"_include": "HealthcareService:organization", "admittable": "ge1"}),
    ("HealthcareService", {"near": "53.48|-2.24|500|km", "_sort": "near"}),
    ("HealthcareService", {"active": "false"}),
    ("Organization", {"_revinclude": "Location:organization", "_count": "1"}),
    ("Organization", {"active": "true", "_total": "estimate"}),
    ("CodeSystem", {"_count": "2"}),
    ("StructureDefinition", {}),
    ("SearchParameter", {}),
    ("ConceptMap", {}),
    ("ValueSet", {"_count": "3"}),
    ("NamingSystem", {}),
]


@pytest.mark.parametrize(("resource_type", "params"), SEARCHES)
def test_search_bundles_conform_on_every_page(
    client: TestClient,
    read_token: str,
    national: list[dict[str, Any]],
    resource_type: str,
    params: dict[str, str],
) -> None:
    first = client.get(f"/fhir/{resource_type}", params=params, headers=bearer(read_token))
    found = problems(first)
    for page in follow(client, read_token, first.json())[1:]:
        found += [f"page: {p}" for p in all_problems(page, BASE)]
    assert found == []


def test_a_lenient_search_outcome_entry_conforms(
    client: TestClient, read_token: str, national: list[dict[str, Any]]
) -> None:
    headers = {**bearer(read_token), "Prefer": "handling=lenient"}
    found = problems(client.get("/fhir/Location", params={"bogus": "1"}, headers=headers))
    found += problems(client.get("/fhir/CodeSystem", params={"bogus": "1"}, headers=headers))
    assert found == []


def test_history_bundles_conform(
    client: TestClient, read_token: str, tracker: str, national: list[dict[str, Any]]
) -> None:
    from tests.fhir.conftest import push

    # A second version: a line withdrawn (an inactive service), a provider left (retired).
    push(
        client,
        tracker,
        location(
            "1-102",
            "2026-11-21T09:00:00Z",
            name="Beech Lodge",
            region="north-east-and-yorkshire",
            provider={"cqc_provider_id": "1-200000009", "name": "New Owner Ltd"},
            address={"line1": "2 Park Row", "town": "Leeds", "postcode": "LS1 4AP"},
            vacancies=[vacancy("general-residential")],
        ),
    )
    found: list[str] = []
    for path, params in [
        ("/fhir/Location/_history", {}),
        ("/fhir/HealthcareService/_history", {}),
        ("/fhir/Organization/_history", {}),
        ("/fhir/Location/_history", {"_count": "1"}),
        ("/fhir/HealthcareService/_history", {"_since": "2026-01-01T00:00:00Z", "_count": "2"}),
        ("/fhir/Location/1-102/_history", {}),
        ("/fhir/Location/1-102/_history", {"_count": "1"}),
        ("/fhir/HealthcareService/1-102-community-rehab-nhs-la/_history", {}),
        ("/fhir/Organization/1-200000002/_history", {}),
        (f"/fhir/Organization/{national[2]['provider']['cqc_provider_id']}/_history", {}),
        (f"/fhir/Location/{HENLEY}/_history", {"_since": "2026-01-01"}),
    ]:
        first = client.get(path, params=params, headers=bearer(read_token))
        found += problems(first)
        for page in follow(client, read_token, first.json())[1:]:
            found += [f"page: {p}" for p in all_problems(page, BASE)]
    assert found == []


def test_transaction_and_batch_responses_conform_with_failures(
    client: TestClient, make_token: TokenMaker
) -> None:
    token = make_token(name="tracker-fhir", scopes=("submit", "read"))
    good = location("1-301", vacancies=[vacancy("general-nursing", admittable=1)])
    flagged = location(
        "1-302", vacancies=[vacancy("general-nursing", admittable=1, unavailable=2, unavailable_reasons=[])]
    )
    bad = resources(location("1-303"))
    bad[0]["name"] = " "  # a name that is only blank
    stray = withdrawn_service("1-999", "general-nursing")
    found: list[str] = []
    for kind in ("transaction", "batch"):
        body = transaction(*resources(good), *resources(flagged), *bad, stray, kind=kind)
        found += problems(post(client, token, body))
        # Again: unchanged, with an informational outcome per entry.
        found += problems(post(client, token, transaction(*resources(good), kind=kind)))
    assert found == []


@pytest.fixture
def outcomes(client: TestClient, make_token: TokenMaker, national: list[dict[str, Any]]) -> list[Response]:
    reader = make_token(name="reader", scopes=("read",))
    submitter_only = make_token(name="tracker-x", scopes=("submit",))
    return [
        client.get("/fhir/Location", params={"bogus": "1"}, headers=bearer(reader)),  # 400
        client.get("/fhir/Location", params={"_count": "-1"}, headers=bearer(reader)),  # 400
        client.get("/fhir/Location", params={"organization:Patient": "1-1"}, headers=bearer(reader)),  # 400
        client.get("/fhir/Location/1-101/_history", params={"_since": "x"}, headers=bearer(reader)),  # 400
        client.post(
            "/fhir",
            content=b"{}",
            headers={**bearer(submitter_only), "Content-Type": FHIR_JSON, "Idempotency-Key": "k" * 201},
        ),  # 400: a header FastAPI refuses
        client.get("/fhir/Location"),  # 401
        client.get("/fhir/Location", headers=bearer("not-a-token")),  # 401
        client.get("/fhir/Location", headers=bearer(submitter_only)),  # 403
        client.get("/fhir/Location/1-999", headers=bearer(reader)),  # 404
        client.get("/fhir/Patient", headers=bearer(reader)),  # 404
        client.get("/fhir/Location/1-101/_history/999", headers=bearer(reader)),  # 404
        client.put("/fhir/Location/1-101", json={}, headers=bearer(reader)),  # 405
        client.get("/fhir/Location", params={"_format": "xml"}, headers=bearer(reader)),  # 406
        client.post("/fhir", content=b"{}", headers={**bearer(submitter_only), "Content-Type": "text/plain"}),
        client.post("/fhir", content=b"{", headers={**bearer(submitter_only), "Content-Type": FHIR_JSON}),
        client.post(
            "/fhir",
            content=orjson.dumps({"resourceType": "Bundle", "type": "collection"}),
            headers={**bearer(submitter_only), "Content-Type": FHIR_JSON},
        ),  # 422
        client.get("/fhir/$export-status/nothing", headers=bearer(reader)),  # 404
    ]


def test_error_operation_outcomes_conform(outcomes: list[Response]) -> None:
    """Each is an OperationOutcome by the schema and invariants, and any issue.expression
    is an element path: a query parameter or header is named in diagnostics (it is no
    element of a resource, and ``organization:Patient`` is not even FHIRPath)."""
    statuses = [r.status_code for r in outcomes]
    assert statuses == [400, 400, 400, 400, 400, 401, 401, 403, 404, 404, 404, 405, 406, 415, 400, 422, 404]
    found = [p for r in outcomes for p in problems(r, r.status_code)]
    assert found == []


def test_an_unexpected_failure_is_a_conformant_outcome(
    settings: Any, read_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.api.app import create_app
    from gateway.fhir import history

    def broken(*_: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(history, "read", broken)
    with TestClient(create_app(settings), raise_server_exceptions=False) as failing:
        response = failing.get("/fhir/Location/1-101", headers=bearer(read_token))
    assert problems(response, 500) == []


def test_bulk_export_outcomes_manifest_and_ndjson_conform(
    client: TestClient, read_token: str, national: list[dict[str, Any]]
) -> None:
    headers = {**bearer(read_token), "Prefer": "respond-async"}
    kick = client.get("/fhir/$export", headers=headers)
    found = problems(kick, 202)
    deadline = time.monotonic() + 30
    while (
        status := client.get(kick.headers["content-location"], headers=bearer(read_token))
    ).status_code == 202:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    manifest = status.json()
    # Bulk Data 2.0 manifest: not a FHIR resource, but its instant is FHIR's.
    assert set(manifest) >= {"transactionTime", "request", "requiresAccessToken", "output", "error"}
    assert (
        schema_problems(
            {"resourceType": "Bundle", "type": "collection", "timestamp": manifest["transactionTime"]}
        )
        == []
    )
    for item in manifest["output"]:
        lines = client.get(item["url"], headers=bearer(read_token)).content.splitlines()
        assert len(lines) == item["count"] > 0
        for line in lines:
            found += [f"{item['type']}: {p}" for p in all_problems(orjson.loads(line), BASE)]
    # Deleting the complete export (no worker left running past the test).
    deleted = client.delete(kick.headers["content-location"], headers=bearer(read_token))
    found += problems(deleted, 202)
    assert found == []


def test_bed_availability_provider_updated_is_an_r4_date_time(
    client: TestClient, read_token: str, tracker: str
) -> None:
    from tests.fhir.conftest import push

    push(client, tracker, location("1-401", "2026-11-21T09:00:00Z", vacancies=[vacancy("general-nursing")]))
    service = get(client, read_token, "/fhir/HealthcareService/1-401-general-nursing")
    beds = next(e for e in service["extension"] if e["url"] == S.EXT_BED_AVAILABILITY)
    updated = next(p["valueDateTime"] for p in beds["extension"] if p["url"] == "providerUpdated")
    assert all_problems(service, BASE) == [] and updated.endswith("Z")


def test_a_source_named_with_spaces_is_a_valid_meta_source_uri(
    client: TestClient, make_token: TokenMaker
) -> None:
    """meta.source is a uri (R4: no whitespace); a token's name may have spaces."""
    token = make_token(name="Leeds Tracker", scopes=("submit", "read"))
    push_native(client, token, location("1-601", vacancies=[vacancy("general-nursing")]))
    found: list[str] = []
    for path in ("/fhir/Location/1-601", "/fhir/HealthcareService/1-601-general-nursing"):
        resource = get(client, token, path)
        assert resource["meta"]["source"] == f"{S.CANONICAL}/source/Leeds%20Tracker"
        found += all_problems(resource, BASE)
    found += all_problems(get(client, token, "/fhir/Location/_history"), BASE)
    assert found == []


def test_blank_texts_a_source_sent_are_left_out_not_published_blank(
    client: TestClient, make_token: TokenMaker
) -> None:
    """R4 strings SHOULD have non-whitespace content (a blank one, trimmed, is an empty
    value): what a source sent as only spaces is published as unsaid."""
    token = make_token(name="tracker-blank", scopes=("submit", "read"))
    record = location(
        "1-602",
        notes="  ",
        local_authority=" ",
        phone=" ",
        contracts_with_local_authorities=[" ", "Leeds"],
        address={"line1": " ", "line2": "Park Row", "town": " ", "postcode": "LS1 4AP"},
        provider={"cqc_provider_id": "1-200000602", "name": " "},
        vacancies=[vacancy("general-nursing")],
    )
    push_native(client, token, record)
    served = [
        get(client, token, "/fhir/Location/1-602"),
        get(client, token, "/fhir/HealthcareService/1-602-general-nursing"),
        get(client, token, "/fhir/Organization/1-200000602"),
    ]
    assert [p for resource in served for p in all_problems(resource, BASE)] == []
    location_resource, service, organization = served
    assert location_resource["address"]["line"] == ["Park Row"] and "city" not in location_resource["address"]
    contracts = [
        e["valueString"] for e in location_resource["extension"] if e["url"] == S.EXT_CONTRACT_LOCAL_AUTHORITY
    ]
    assert contracts == ["Leeds"]
    assert "display" not in location_resource["managingOrganization"] and "name" not in organization
    assert "extraDetails" not in service and "telecom" not in service


def push_native(client: TestClient, token: str, record: dict[str, Any]) -> None:
    response = client.post("/api/v1/submissions", json=batch(record), headers=bearer(token))
    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["records"]] == ["accepted"], response.text
