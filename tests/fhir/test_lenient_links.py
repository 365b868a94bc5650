"""A lenient search's links carry only the parameters it used (R4: the self link reports
what the search did), so a client following ``next`` without ``Prefer: handling=lenient``
is not refused for what page 1 ignored; a strict search's links are as before."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi.testclient import TestClient

from tests.conftest import bearer
from tests.fhir.helpers import follow, ids

LENIENT = {"Prefer": "handling=lenient"}


def _links(bundle: dict[str, Any]) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle["link"]}


def _query(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def test_lenient_links_drop_ignored_parameters_and_next_is_followed_without_prefer(
    client: TestClient, read_token: str, national: list[dict[str, Any]]
) -> None:
    params = [
        ("_count", "1"),
        ("address-state", "Foo"),  # unknown parameter
        ("name:missing", "false"),  # unsupported modifier
        ("_summary", "count"),  # unknown result parameter
        ("_include", "Location:partof"),  # unsupported include, alone in its item
        ("_include", "Location:organization:Organization,Location:partof"),  # one of two unsupported
        ("_revinclude", "Foo:bar"),
    ]
    response = client.get("/fhir/Location", params=params, headers={**bearer(read_token), **LENIENT})
    assert response.status_code == 200, response.text
    first = response.json()
    outcome = [e["resource"] for e in first["entry"] if e["search"]["mode"] == "outcome"]
    diagnostics = outcome[0]["issue"][0]["diagnostics"]
    assert all(
        name in diagnostics for name in ("address-state", "missing", "_summary", "Location:partof", "Foo:bar")
    )
    used = [("_count", "1"), ("_include", "Location:organization:Organization")]
    links = _links(first)
    assert _query(links["self"]) == used
    assert [(k, v) for k, v in _query(links["next"]) if k != "_cursor"] == used
    # A client following next without Prefer (as fhirpy and HAPI do): every page answers.
    pages = follow(client, read_token, first)
    assert [i for page in pages for i in ids(page)] == ["1-10000302982", "1-101", "1-102"]
    for page in pages[1:]:
        assert "outcome" not in {e["search"]["mode"] for e in page["entry"]}
        assert ids(page, "include")  # the include used still applies on later pages
        assert [(k, v) for k, v in _query(_links(page)["self"]) if k != "_cursor"] == used


def test_lenient_search_ignoring_nothing_keeps_its_links(
    client: TestClient, read_token: str, national: list[dict[str, Any]]
) -> None:
    params = [("_count", "2"), ("_include", "Location:organization"), ("name", "beech,ash")]
    response = client.get("/fhir/Location", params=params, headers={**bearer(read_token), **LENIENT})
    assert response.status_code == 200
    assert _query(_links(response.json())["self"]) == params


def test_strict_search_is_unchanged(
    client: TestClient, read_token: str, national: list[dict[str, Any]]
) -> None:
    refused = client.get(
        "/fhir/Location", params={"_count": "1", "address-state": "Foo"}, headers=bearer(read_token)
    )
    assert refused.status_code == 400
    assert "address-state" in refused.json()["issue"][0]["diagnostics"]
    include = client.get(
        "/fhir/Location", params={"_count": "1", "_include": "Location:partof"}, headers=bearer(read_token)
    )
    assert include.status_code == 400
    params = [("_count", "1"), ("_include", "Location:organization:Organization"), ("_sort", "_id")]
    response = client.get("/fhir/Location", params=params, headers=bearer(read_token))
    assert response.status_code == 200
    first = response.json()
    assert _query(_links(first)["self"]) == params
    assert [(k, v) for k, v in _query(_links(first)["next"]) if k != "_cursor"] == params
    pages = follow(client, read_token, first)
    assert len(pages) == 3
    second = _links(pages[1])["self"]
    assert second == _links(first)["next"]  # a page's self link names its cursor too
