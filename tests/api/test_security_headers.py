"""Answers carry security headers: no content sniffing anywhere, and nothing a token
read is kept by a cache. No CORS unless configured."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import TokenMaker, bearer


def test_authenticated_answers_are_not_cached_nor_sniffed(client: TestClient, make_token: TokenMaker) -> None:
    token = make_token(scopes=("read",))
    for path in (
        "/api/v1/sources",
        "/api/v1/vacancies?format=csv",
        "/api/v1/reconciliation/findings?format=csv",
        "/api/v1/reports/occupancy?format=xlsx",
        "/fhir/Location",
        "/api/v1/locations/1-999999999",  # a 404 too
    ):
        response = client.get(path, headers=bearer(token))
        assert response.status_code in (200, 404), (path, response.text)
        assert response.headers["cache-control"] == "private, no-cache", path
        assert response.headers["x-content-type-options"] == "nosniff", path
    csv_answer = client.get("/api/v1/vacancies?format=csv", headers=bearer(token))
    assert csv_answer.headers["content-type"] == "text/csv; charset=utf-8"


def test_a_refused_token_is_not_cached_and_public_answers_are_cacheable(client: TestClient) -> None:
    refused = client.get("/api/v1/sources", headers=bearer("ccg_not-a-token"))
    assert refused.status_code == 401
    assert refused.headers["cache-control"] == "private, no-cache"
    assert refused.headers["x-content-type-options"] == "nosniff"
    public = client.get("/fhir/metadata")
    assert public.status_code == 200
    assert "cache-control" not in public.headers
    assert public.headers["x-content-type-options"] == "nosniff"


def test_no_cors_headers_by_default(client: TestClient, make_token: TokenMaker) -> None:
    token = make_token(scopes=("read",))
    response = client.get("/api/v1/sources", headers={**bearer(token), "Origin": "https://elsewhere.example"})
    assert response.status_code == 200
    assert not any(name.lower().startswith("access-control-") for name in response.headers)
    preflight = client.options(
        "/api/v1/sources",
        headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers
