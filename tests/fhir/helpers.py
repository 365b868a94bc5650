"""What the FHIR tests do again and again: read a search or resource, the ids a Bundle
matched, every page of a search."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import bearer


def get(client: TestClient, token: str, path: str, **params: Any) -> Any:
    """The JSON of a read that must succeed."""
    response = client.get(path, params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    return response.json()


def ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    """The ids of a Bundle's entries of search ``mode``, in order."""
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def follow(client: TestClient, token: str, first: dict[str, Any]) -> list[dict[str, Any]]:
    """Every page of a search, from its first, by the next links."""
    pages = [first]
    while url := next((ln["url"] for ln in pages[-1]["link"] if ln["relation"] == "next"), None):
        response = client.get(url, headers=bearer(token))
        assert response.status_code == 200, response.text
        pages.append(response.json())
    return pages
