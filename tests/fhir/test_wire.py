"""R4 rules about what goes on the wire: no empty arrays, conditional reads, history order."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import bearer
from tests.factories import location
from tests.fhir.conftest import push
from tests.fhir.helpers import get


def empty_arrays(value: Any, path: str = "") -> Iterator[str]:
    """The paths of every empty list in a JSON value."""
    if isinstance(value, list):
        if not value:
            yield path
        for i, item in enumerate(value):
            yield from empty_arrays(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from empty_arrays(item, f"{path}.{key}")


def test_empty_arrays_are_found() -> None:
    assert list(empty_arrays({"a": [], "b": [{"c": []}, 1], "d": {"e": [2]}})) == [".a", ".b[0].c"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/fhir/Location", {"name": "nothing like this"}),
        ("/fhir/HealthcareService", {"near": "50.0|-5.5|1|km", "_sort": "_id"}),
        ("/fhir/Organization", {"name": "nothing like this"}),
        ("/fhir/CodeSystem", {"url": "http://example.org/none"}),
        ("/fhir/Location/_history", {"_since": "2099-01-01"}),
        ("/fhir/metadata", {}),
    ],
)
def test_no_empty_array_in_empty_bundles_or_the_capability_statement(
    client: TestClient, read_token: str, national: list[dict[str, Any]], path: str, params: dict[str, str]
) -> None:
    served = get(client, read_token, path, **params)
    assert list(empty_arrays(served)) == []
    if served["resourceType"] == "Bundle":
        assert "entry" not in served and [ln["relation"] for ln in served["link"]] == ["self"]


def test_no_empty_extension_array_on_a_bare_location_or_a_withdrawn_service(
    client: TestClient, tracker: str, read_token: str
) -> None:
    # A source that says nothing about admissions, names no local authority or region
    # outside the registry, and speaks only languages with a tag: no extension to carry.
    bare = {
        "accepting_admissions": None,
        "out_of_hours_admissions": None,
        "local_authority": None,
        "languages": ["English"],
    }
    push(client, tracker, location("1-101", region=None, **bare))
    push(client, tracker, location("1-101", "2026-11-21T09:00:00Z", region=None, vacancies=[], **bare))
    withdrawn = get(client, read_token, "/fhir/HealthcareService/1-101-general-nursing")
    assert withdrawn["active"] is False
    served = [
        withdrawn,
        get(client, read_token, "/fhir/Location/1-101"),
        get(client, read_token, "/fhir/HealthcareService/1-101-general-nursing/_history"),
        get(client, read_token, "/fhir/HealthcareService/_history"),
    ]
    assert [list(empty_arrays(item)) for item in served] == [[], [], [], []]


def test_capability_statement_leaves_out_includes_a_type_does_not_have(client: TestClient) -> None:
    by_type = {r["type"]: r for r in client.get("/fhir/metadata").json()["rest"][0]["resource"]}
    assert "searchRevInclude" not in by_type["HealthcareService"]
    assert "searchInclude" not in by_type["Organization"]
    assert by_type["Organization"]["searchRevInclude"] == [
        "HealthcareService:organization",
        "Location:organization",
    ]


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ('W/"{v}"', 304),
        ('"{v}"', 304),  # the strong form, compared weakly
        ('W/"99999", "{v}"', 304),
        ('"99999",W/"{v}"', 304),
        ("*", 304),
        ('W/"99999"', 200),
        ('"99999", W/"99998"', 200),
        ("{v}", 200),  # not an entity tag: no quotes
        ('W/"{v}0"', 200),
        ("", 200),
    ],
)
def test_if_none_match_on_reads(
    client: TestClient, read_token: str, national: list[dict[str, Any]], header: str, status: int
) -> None:
    current = client.get("/fhir/Location/1-101", headers=bearer(read_token))
    version = current.json()["meta"]["versionId"]
    for path in ("/fhir/Location/1-101", f"/fhir/Location/1-101/_history/{version}"):
        response = client.get(path, headers={**bearer(read_token), "If-None-Match": header.format(v=version)})
        assert response.status_code == status
        assert response.headers["etag"] == current.headers["etag"]
        if status == 304:
            assert response.content == b""
        else:
            assert response.json()["meta"]["versionId"] == version


def test_if_none_match_star_on_a_resource_that_does_not_exist_is_404(
    client: TestClient, read_token: str, national: list[dict[str, Any]]
) -> None:
    response = client.get("/fhir/Location/1-999", headers={**bearer(read_token), "If-None-Match": "*"})
    assert response.status_code == 404 and response.json()["resourceType"] == "OperationOutcome"


# One resource of each versioned type, all of location 1-101.
VERSIONED_PATHS = ["Location/1-101", "HealthcareService/1-101-general-nursing", "Organization/1-200000001"]


def versions(bundle: dict[str, Any]) -> list[int]:
    return [int(e["resource"]["meta"]["versionId"]) for e in bundle["entry"]]


@pytest.mark.parametrize("path", VERSIONED_PATHS)
def test_instance_history_is_newest_first_and_the_change_feed_oldest_first(
    client: TestClient, tracker: str, read_token: str, national: list[dict[str, Any]], path: str
) -> None:
    for hour in ("10", "11"):
        push(client, tracker, location("1-101", updated_at=f"2026-11-21T{hour}:00:00Z", notes=f"at {hour}"))
    history = get(client, read_token, f"/fhir/{path}/_history")
    assert len(history["entry"]) == history["total"] == 3
    assert versions(history) == sorted(versions(history), reverse=True)
    assert history["entry"][0]["resource"] == get(client, read_token, f"/fhir/{path}")
    assert [e["request"]["method"] for e in history["entry"]] == ["PUT", "PUT", "POST"]
    feed = get(client, read_token, f"/fhir/{path.split('/')[0]}/_history")
    assert versions(feed) == sorted(versions(feed))


def test_capability_statement_says_which_way_each_history_runs(client: TestClient) -> None:
    statement = client.get("/fhir/metadata").json()
    for resource in statement["rest"][0]["resource"][:3]:
        docs = {i["code"]: i.get("documentation", "") for i in resource["interaction"]}
        assert "newest first" in docs["history-instance"]
        assert "oldest first" in docs["history-type"] and "_since" in docs["history-type"]
        assert "documentation" not in next(i for i in resource["interaction"] if i["code"] == "read")


@pytest.mark.parametrize("path", VERSIONED_PATHS)
def test_instance_history_honours_since_and_pages_by_count(
    client: TestClient, tracker: str, read_token: str, national: list[dict[str, Any]], path: str
) -> None:
    first = get(client, read_token, f"/fhir/{path}")
    for hour in ("10", "11", "12"):
        push(client, tracker, location("1-101", updated_at=f"2026-11-21T{hour}:00:00Z", notes=f"at {hour}"))
    every = versions(get(client, read_token, f"/fhir/{path}/_history"))
    assert len(every) == 4 and every[-1] == int(first["meta"]["versionId"])
    # _since: the versions recorded at or after it, not every version.
    second = get(client, read_token, f"/fhir/{path}/_history/{every[-2]}")
    since = get(client, read_token, f"/fhir/{path}/_history", _since=second["meta"]["lastUpdated"])
    assert versions(since) == every[:3] and since["total"] == 3
    later = get(client, read_token, f"/fhir/{path}/_history", _since="2099-01-01")
    assert "entry" not in later and later["total"] == 0
    # _count: pages of that size, newest first, by next links, with a version recorded
    # between pages neither shown on the next page nor pushing one out.
    pages = [get(client, read_token, f"/fhir/{path}/_history", _count=3)]
    assert versions(pages[0]) == every[:3] and pages[0]["total"] == 4
    push(client, tracker, location("1-101", updated_at="2026-11-21T13:00:00Z", notes="at 13"))
    while url := next((ln["url"] for ln in pages[-1]["link"] if ln["relation"] == "next"), None):
        response = client.get(url, headers=bearer(read_token))
        assert response.status_code == 200, response.text
        pages.append(response.json())
    assert [versions(p) for p in pages] == [every[:3], every[3:]]


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"_at": "2026-11-21"}, "_at"),
        ({"_list": "x"}, "_list"),
        ({"_since": "yesterday"}, "not a FHIR date"),
        ({"_count": "many"}, "_count"),
        ({"_cursor": "garbage"}, "cursor"),
    ],
)
def test_instance_history_refuses_what_it_does_not_support(
    client: TestClient, read_token: str, national: list[dict[str, Any]], params: dict[str, str], needle: str
) -> None:
    response = client.get("/fhir/Location/1-101/_history", params=params, headers=bearer(read_token))
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome" and needle in outcome["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    "query",
    [
        "_format=application/fhir+json",  # '+' unescaped, as FHIR's own examples write it
        "_format=application/fhir%2Bjson;%20fhirVersion=4.0",
        "_format=application/json+fhir",
    ],
)
def test_format_names_fhir_json_as_clients_write_it(
    client: TestClient, read_token: str, national: list[dict[str, Any]], query: str
) -> None:
    for path in ("/fhir/Location", "/fhir/Location/1-101", "/fhir/metadata"):
        response = client.get(f"{path}?{query}", headers=bearer(read_token))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/fhir+json")
    refused = client.get("/fhir/Location?_format=application/fhir+xml", headers=bearer(read_token))
    assert refused.status_code == 406 and refused.json()["resourceType"] == "OperationOutcome"
