"""FHIR bulk export ($export): kick-off, poll, manifest, files, _type/_since, snapshot
semantics, cancelling, ownership and refusals."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from fhir.resources.R4B.healthcareservice import HealthcareService
from fhir.resources.R4B.location import Location
from fhir.resources.R4B.organization import Organization

from gateway.api.app import create_app
from gateway.fhir import export
from gateway.settings import Settings
from tests.conftest import TokenMaker, bearer
from tests.factories import batch, location, vacancy

ASYNC = {"Prefer": "respond-async"}
MODELS = {"Location": Location, "HealthcareService": HealthcareService, "Organization": Organization}


def push(client: TestClient, token: str, *records: dict[str, Any]) -> None:
    response = client.post("/api/v1/submissions", json=batch(*records), headers=bearer(token))
    assert response.status_code == 200, response.text
    assert {r["status"] for r in response.json()["records"]} == {"accepted"}


def homes(updated_at: str = "2026-11-20T09:00:00Z") -> list[dict[str, Any]]:
    """Three homes of two providers, with five vacancy lines between them."""
    other = {"cqc_provider_id": "1-200000002", "name": "Beech Care Ltd"}
    return [
        location("1-101", updated_at, vacancies=[vacancy("general-nursing"), vacancy("dementia-nursing")]),
        location("1-102", updated_at, provider=other, vacancies=[vacancy("general-residential")]),
        location("1-103", updated_at, provider=other, vacancies=[vacancy(), vacancy("dementia-residential")]),
    ]


def kick_off(client: TestClient, token: str, **params: str) -> str:
    response = client.get("/fhir/$export", params=params, headers={**bearer(token), **ASYNC})
    assert response.status_code == 202, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "information"
    url = response.headers["content-location"]
    assert url.startswith("http://testserver/fhir/$export-status/")
    return url


def manifest(client: TestClient, token: str, url: str) -> dict[str, Any]:
    """Poll until the export is complete."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = client.get(url, headers=bearer(token))
        if response.status_code == 200:
            assert response.headers["content-type"].startswith("application/json")
            found: dict[str, Any] = response.json()
            return found
        assert response.status_code == 202, response.text
        assert response.headers["x-progress"]
        assert int(response.headers["retry-after"]) >= 1
        time.sleep(0.02)
    raise AssertionError("the export did not complete")


def download(client: TestClient, token: str, item: dict[str, Any]) -> list[dict[str, Any]]:
    """A file's resources, each checked against the R4B model of its type."""
    response = client.get(item["url"], headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+ndjson")
    lines = response.content.split(b"\n")
    assert lines[-1] == b""  # every line ends with a newline
    resources = [orjson.loads(line) for line in lines[:-1]]
    assert len(resources) == item["count"]
    for resource in resources:
        assert resource["resourceType"] == item["type"]
        MODELS[item["type"]].model_validate(resource)
    return resources


def files(client: TestClient, token: str, found: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {item["type"]: download(client, token, item) for item in found["output"]}


@pytest.fixture
def reader(make_token: TokenMaker) -> str:
    return make_token(name="planner", scopes=("read",))


@pytest.fixture
def tracker(make_token: TokenMaker) -> str:
    return make_token(name="tracker-national", scopes=("submit", "read"))


@pytest.fixture
def no_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs stay in progress after kick-off, as if their process died."""
    monkeypatch.setattr(export, "start_counting", lambda *args: None)


def test_round_trip_counts_equal_lines_and_resources_match_reads(
    client: TestClient, tracker: str, reader: str
) -> None:
    push(client, tracker, *homes())
    url = kick_off(client, reader)
    found = manifest(client, reader, url)
    assert found["requiresAccessToken"] is True
    assert found["error"] == []
    assert found["request"] == "http://testserver/fhir/$export"
    assert found["transactionTime"].endswith("Z")
    assert [(i["type"], i["count"]) for i in found["output"]] == [
        ("Location", 3),
        ("HealthcareService", 5),
        ("Organization", 2),
    ]
    job_id = url.rsplit("/", 1)[1]
    for item in found["output"]:
        assert item["url"] == f"http://testserver/fhir/$export-file/{job_id}/{item['type']}.ndjson"
    exported = files(client, reader, found)
    assert sorted(r["id"] for r in exported["Location"]) == ["1-101", "1-102", "1-103"]
    assert sorted(r["id"] for r in exported["HealthcareService"]) == [
        "1-101-dementia-nursing",
        "1-101-general-nursing",
        "1-102-general-residential",
        "1-103-dementia-residential",
        "1-103-general-nursing",
    ]
    assert sorted(r["id"] for r in exported["Organization"]) == ["1-200000001", "1-200000002"]
    # Each provider's Organization comes from the newest version naming it.
    newest: dict[str, int] = {}
    for resource in exported["Location"]:
        provider_id = resource["managingOrganization"]["reference"].removeprefix("Organization/")
        newest[provider_id] = max(newest.get(provider_id, 0), int(resource["meta"]["versionId"]))
    assert {r["id"]: int(r["meta"]["versionId"]) for r in exported["Organization"]} == newest
    assert {r["id"]: r["name"] for r in exported["Organization"]} == {
        "1-200000001": "Test Care Ltd",
        "1-200000002": "Beech Care Ltd",
    }
    # The files hold what the read API serves.
    for resource in exported["Location"] + exported["HealthcareService"]:
        read = client.get(f"/fhir/{resource['resourceType']}/{resource['id']}", headers=bearer(reader))
        assert read.json() == resource
    # Polling again gives the same manifest; files can be fetched again, identical.
    assert manifest(client, reader, url) == found
    assert files(client, reader, found) == exported


def test_type_and_since_are_honoured(client: TestClient, tracker: str, reader: str) -> None:
    push(client, tracker, *homes())
    first = manifest(client, reader, kick_off(client, reader))
    since = first["transactionTime"]
    changed = homes("2026-11-21T09:00:00Z")[1]
    changed["vacancies"][0]["occupied"] = 10
    push(client, tracker, changed)

    later = manifest(
        client, reader, kick_off(client, reader, _type="Location,HealthcareService", _since=since)
    )
    assert [(i["type"], i["count"]) for i in later["output"]] == [("Location", 1), ("HealthcareService", 1)]
    exported = files(client, reader, later)
    assert [r["id"] for r in exported["Location"]] == ["1-102"]
    assert [r["id"] for r in exported["HealthcareService"]] == ["1-102-general-residential"]
    assert exported["Location"][0]["meta"]["lastUpdated"] >= since

    providers = manifest(client, reader, kick_off(client, reader, _type="Organization", _since=since))
    assert [r["id"] for r in files(client, reader, providers)["Organization"]] == ["1-200000002"]

    # Nothing changed since the last export: no files (empty types are left out).
    quiet = manifest(client, reader, kick_off(client, reader, _since=later["transactionTime"]))
    assert quiet["output"] == []


def test_a_change_after_kick_off_is_not_in_the_files(
    client: TestClient, tracker: str, reader: str, no_worker: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    push(client, tracker, *homes())
    url = kick_off(client, reader)
    changed = homes("2026-11-21T09:00:00Z")[0]
    changed["vacancies"] = [vacancy("general-nursing", occupied=3)]  # dementia line dropped
    push(client, tracker, changed, location("1-104", "2026-11-21T09:00:00Z"))

    pending = client.get(url, headers=bearer(reader))
    assert pending.status_code == 202
    assert pending.headers["retry-after"] == str(export.RETRY_AFTER_S)
    # No worker finished it: after STALE_AFTER, a poll does the work itself.
    monkeypatch.setattr(export, "STALE_AFTER", timedelta(0))
    exported = files(client, reader, manifest(client, reader, url))
    locations = {r["id"]: r for r in exported["Location"]}
    assert sorted(locations) == ["1-101", "1-102", "1-103"]
    assert "1-101-dementia-nursing" in {r["id"] for r in exported["HealthcareService"]}
    now = client.get("/fhir/Location/1-101", headers=bearer(reader)).json()
    assert locations["1-101"]["meta"]["versionId"] != now["meta"]["versionId"]
    assert locations["1-101"]["meta"]["lastUpdated"] < now["meta"]["lastUpdated"]


def test_cancel_then_polls_and_downloads_are_404(
    client: TestClient, tracker: str, reader: str, no_worker: None
) -> None:
    push(client, tracker, *homes())
    url = kick_off(client, reader)
    job_id = url.rsplit("/", 1)[1]
    cancelled = client.delete(url, headers=bearer(reader))
    assert cancelled.status_code == 202
    assert cancelled.json()["resourceType"] == "OperationOutcome"
    for response in (
        client.get(url, headers=bearer(reader)),
        client.get(f"/fhir/$export-file/{job_id}/Location.ndjson", headers=bearer(reader)),
        client.delete(url, headers=bearer(reader)),
    ):
        assert response.status_code == 404
        assert response.json()["resourceType"] == "OperationOutcome"
    export.run_job(client.app.state.session_factory, job_id, "http://testserver/fhir")  # type: ignore[attr-defined]
    assert client.get(url, headers=bearer(reader)).status_code == 404  # a late worker changes nothing


def test_a_complete_export_can_be_deleted(client: TestClient, tracker: str, reader: str) -> None:
    push(client, tracker, *homes())
    url = kick_off(client, reader)
    item = manifest(client, reader, url)["output"][0]
    assert client.delete(url, headers=bearer(reader)).status_code == 202
    assert client.get(item["url"], headers=bearer(reader)).status_code == 404


def test_only_the_token_that_asked_or_an_admin_sees_the_job(
    client: TestClient, tracker: str, reader: str, make_token: TokenMaker
) -> None:
    push(client, tracker, *homes())
    url = kick_off(client, reader)
    item = manifest(client, reader, url)["output"][0]
    other = make_token(name="someone-else", scopes=("read",))
    for response in (
        client.get(url, headers=bearer(other)),
        client.get(item["url"], headers=bearer(other)),
        client.delete(url, headers=bearer(other)),
    ):
        assert response.status_code in (403, 404)
        assert response.json()["resourceType"] == "OperationOutcome"
    admin = make_token(name="admin", scopes=("admin",))
    assert manifest(client, admin, url)["output"][0] == item
    assert len(download(client, admin, item)) == item["count"]


def test_unknown_files_and_types_outside_the_job_are_404(
    client: TestClient, tracker: str, reader: str
) -> None:
    push(client, tracker, *homes())
    url = kick_off(client, reader, _type="Organization")
    job_id = url.rsplit("/", 1)[1]
    manifest(client, reader, url)
    for name in ("Location.ndjson", "Organization.json", "Patient.ndjson"):
        response = client.get(f"/fhir/$export-file/{job_id}/{name}", headers=bearer(reader))
        assert response.status_code == 404, name
    assert client.get("/fhir/$export-status/no-such-job", headers=bearer(reader)).status_code == 404


@pytest.mark.parametrize(
    ("query", "headers", "needle"),
    [
        ("_type=Location,Patient", ASYNC, "'Patient' is not exported"),
        ("", {}, "Prefer: respond-async"),
        ("", {"Prefer": "handling=lenient"}, "Prefer: respond-async"),
        ("_typeFilter=Location%3Fname%3Dx", ASYNC, "_typeFilter: not supported"),
        ("_elements=id", ASYNC, "_elements: not supported"),
        ("_outputFormat=application/fhir%2Bjson", ASYNC, "only application/fhir+ndjson"),
        ("_since=2026-11-20", ASYNC, "not a FHIR instant"),
        ("_since=yesterday", ASYNC, "not a FHIR instant"),
        ("_since=0001-01-01T00:00:00%2B14:00", ASYNC, "out of range"),  # was a 500
        ("_since=9999-12-31T23:59:59-14:00", ASYNC, "out of range"),
    ],
)
def test_bad_kick_offs_are_400_operation_outcomes(
    client: TestClient, reader: str, query: str, headers: dict[str, str], needle: str
) -> None:
    response = client.get(f"/fhir/$export?{query}", headers={**bearer(reader), **headers})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["severity"] == "error"
    assert needle in body["issue"][0]["diagnostics"]


def test_accepted_spellings_and_lenient_handling(client: TestClient, tracker: str, reader: str) -> None:
    push(client, tracker, *homes())
    # An unescaped '+' (in the format, or in an offset) arrives as a space.
    expected = {
        "_outputFormat=application/fhir+ndjson": ["Location", "HealthcareService", "Organization"],
        "_outputFormat=ndjson&_type=Location&_type=Organization": ["Location", "Organization"],
        "_since=2026-11-20T10:00:00.5+01:00": ["Location", "HealthcareService", "Organization"],
        "_since=2999-01-01T00:00:00Z": [],
    }
    for query, types in expected.items():
        response = client.get(f"/fhir/$export?{query}", headers={**bearer(reader), **ASYNC})
        assert response.status_code == 202, (query, response.text)
        found = manifest(client, reader, response.headers["content-location"])
        assert [i["type"] for i in found["output"]] == types, query
    lenient = client.get(
        "/fhir/$export?_elements=id&_type=Location",
        headers={**bearer(reader), "Prefer": "respond-async, handling=lenient"},
    )
    assert lenient.status_code == 202
    assert "_elements" in lenient.json()["issue"][0]["diagnostics"]
    found = manifest(client, reader, lenient.headers["content-location"])
    assert [i["type"] for i in found["output"]] == ["Location"]


def test_tokens_are_required(client: TestClient, make_token: TokenMaker) -> None:
    anonymous = client.get("/fhir/$export", headers=ASYNC)
    assert anonymous.status_code == 401
    assert anonymous.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/$export-status/x").status_code == 401
    assert client.get("/fhir/$export-file/x/Location.ndjson").status_code == 401
    submitter = make_token(name="tracker-only", scopes=("submit",))
    assert client.get("/fhir/$export", headers={**bearer(submitter), **ASYNC}).status_code == 403


def test_a_stopping_gateway_lets_exports_being_counted_finish(
    settings: Settings, engine: sa.Engine, make_token: TokenMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gateway that stops lets the exports it is counting finish (for a while) before it
    lets its database connections go: a worker still counting held a connection of a pool
    already disposed, never closed."""
    counted = threading.Event()
    run_job = export.run_job

    def slow(*args: Any) -> None:
        time.sleep(0.5)
        run_job(*args)
        counted.set()

    monkeypatch.setattr(export, "run_job", slow)
    reader = make_token(name="planner", scopes=("read",))
    with TestClient(create_app(settings)) as client:
        kick_off(client, reader)
        assert not counted.is_set()
    assert counted.is_set()  # the stop waited for it


def test_head_on_the_kick_off_is_refused_and_starts_no_export(
    client: TestClient, make_token: TokenMaker, engine: sa.Engine
) -> None:
    """HEAD asks without acting (RFC 9110): answered as the GET it stands for, it had started
    a job counting the whole national view."""
    token = make_token(scopes=("read",))
    refused = client.head("/fhir/$export", headers={**bearer(token), **ASYNC})
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET"
    with engine.connect() as connection:
        assert connection.scalar(sa.text("SELECT count(*) FROM bulk_export")) == 0
    assert client.head("/fhir/$export", headers=ASYNC).status_code == 401  # the token first
    url = kick_off(client, token)  # GET still starts one, and its status may be checked by HEAD
    assert client.head(url, headers=bearer(token)).status_code in (200, 202)
