"""Search over the published conformance resources: ``_id`` and ``url``, in ``_id`` order,
paged by ``_count`` with ``next`` links; anything else refused unless lenient."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle

from adapters.fhir.outbound.conformance import conformance_resources
from tests.conftest import bearer
from tests.fhir.helpers import get


def next_url(bundle: dict[str, Any]) -> str | None:
    return next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)


@pytest.mark.parametrize("resource_type", sorted(conformance_resources()))
def test_count_pages_every_resource_once_in_id_order(
    client: TestClient, read_token: str, resource_type: str
) -> None:
    every = sorted(r["id"] for r in conformance_resources()[resource_type])
    page = get(client, read_token, f"/fhir/{resource_type}", _count=1)
    Bundle.model_validate(page)
    assert page["total"] == len(every)
    assert page["link"][0] == {"relation": "self", "url": f"http://testserver/fhir/{resource_type}?_count=1"}
    seen = []
    while True:
        assert len(page.get("entry", [])) == 1
        seen += [e["resource"]["id"] for e in page["entry"]]
        url = next_url(page)
        if url is None:
            break
        assert "_count=1" in url
        response = client.get(url, headers=bearer(read_token))
        assert response.status_code == 200, response.text
        page = response.json()
    assert seen == every


def test_count_with_filters_and_the_default_page(client: TestClient, read_token: str) -> None:
    every = sorted(r["id"] for r in conformance_resources()["StructureDefinition"])
    wanted = ",".join(every[:3])
    first = get(client, read_token, "/fhir/StructureDefinition", _id=wanted, _count=2)
    assert first["total"] == 3 and [e["resource"]["id"] for e in first["entry"]] == every[:2]
    url = next_url(first)
    assert url is not None
    rest = client.get(url, headers=bearer(read_token)).json()
    assert [e["resource"]["id"] for e in rest["entry"]] == every[2:3] and next_url(rest) is None
    # Without _count: a page of up to 20, all of them here, and no next link.
    whole = get(client, read_token, "/fhir/StructureDefinition")
    assert [e["resource"]["id"] for e in whole["entry"]] == every and next_url(whole) is None
    # _count=0: the total only.
    counted = get(client, read_token, "/fhir/StructureDefinition", _count=0)
    assert counted["total"] == len(every) and "entry" not in counted and next_url(counted) is None


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"_count": "ten"}, "_count"),
        ({"_count": "-1"}, "_count"),
        ({"_cursor": "not-a-cursor"}, "_cursor"),
        ({"_cursor": "eyJhZnRlciI6IDF9"}, "_cursor"),  # {"after": 1}
        ({"_sort": "url"}, "_sort"),
        ({"name": "x"}, "name"),
    ],
)
def test_bad_parameters_are_400_operation_outcomes(
    client: TestClient, read_token: str, params: dict[str, str], parameter: str
) -> None:
    response = client.get("/fhir/CodeSystem", params=params, headers=bearer(read_token))
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert issue["code"] == "invalid" and issue["diagnostics"].startswith(f"{parameter}:")


def test_lenient_handling_ignores_unknown_parameters_and_says_so(client: TestClient, read_token: str) -> None:
    response = client.get(
        "/fhir/ValueSet",
        params={"name": "x", "_count": "2"},
        headers={**bearer(read_token), "Prefer": "handling=lenient"},
    )
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert [e["search"]["mode"] for e in entries] == ["match", "match", "outcome"]
    assert "name" in entries[-1]["resource"]["issue"][0]["diagnostics"]
    # Its links carry only what it used: next is followed without Prefer.
    links = {link["relation"]: link["url"] for link in response.json()["link"]}
    assert "name=" not in links["self"] and "_count=2" in links["self"]
    assert "name=" not in links["next"]
    following = client.get(links["next"], headers=bearer(read_token))
    assert following.status_code == 200, following.text
    assert all(e["search"]["mode"] == "match" for e in following.json()["entry"])
