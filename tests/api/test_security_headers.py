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


def test_an_unexpected_error_carries_the_security_headers_too(
    client: TestClient, make_token: TokenMaker
) -> None:
    """Starlette answers a 500 outside every middleware: its handler adds them itself, so a
    shared cache never keeps an authenticated 500 either."""

    @client.app.get("/api/v1/test-fault")  # type: ignore[attr-defined,misc]
    def fault() -> None:
        raise RuntimeError("a bug")

    @client.app.get("/fhir/test-fault")  # type: ignore[attr-defined,misc]
    def fhir_fault() -> None:
        raise RuntimeError("a bug")

    routes = client.app.router.routes  # type: ignore[attr-defined]
    routes.insert(0, routes.pop())  # before /fhir/{type}, which would answer it 404

    answering = TestClient(client.app, raise_server_exceptions=False)  # as a server answers a 500
    for path in ("/api/v1/test-fault", "/fhir/test-fault"):
        with_token = answering.get(path, headers=bearer(make_token(scopes=("read",))))
        assert with_token.status_code == 500
        assert with_token.headers["x-content-type-options"] == "nosniff"
        assert with_token.headers["cache-control"] == "private, no-cache"
        anonymous = answering.get(path)
        assert anonymous.headers["x-content-type-options"] == "nosniff"
        assert "cache-control" not in anonymous.headers


def test_a_nul_in_the_path_or_query_is_a_400_naming_where(client: TestClient, make_token: TokenMaker) -> None:
    """PostgreSQL's text cannot hold U+0000: a look-up by such a value had failed there as
    a 500. It is bad input on either database, answered in the shape of its API."""
    token = bearer(make_token(scopes=("read", "submit")))
    for path, where in (
        ("/api/v1/submissions/ab%00cd", "path"),
        ("/api/v1/sources/ab%00cd/runs", "path"),
        ("/api/v1/reconciliation/findings?source=a%00b", "query"),
        ("/api/v1/vacancies?local_authority=E09%2500%00", "query"),
    ):
        refused = client.get(path, headers=token)
        assert refused.status_code == 400, path
        assert refused.headers["content-type"] == "application/problem+json"
        assert f"the request's {where} holds a NUL character" in refused.json()["detail"]
        assert refused.headers["x-content-type-options"] == "nosniff"
    fhir = client.get("/fhir/Location/1-1%00", headers=token)
    assert fhir.status_code == 400 and fhir.json()["resourceType"] == "OperationOutcome"
    assert "NUL" in fhir.json()["issue"][0]["diagnostics"]
    # A percent sign followed by 00 is still a value (%2500 is '%00' as text, no NUL).
    assert client.get("/api/v1/reconciliation/findings?source=london%2500", headers=token).status_code != 400


def test_head_is_answered_as_get_without_the_body(client: TestClient, make_token: TokenMaker) -> None:
    """A client checking a resource (its ETag, its size) without fetching it: HEAD had been a
    405 everywhere. It takes the token GET takes."""
    token = bearer(make_token(scopes=("read",)))
    for path in ("/fhir/metadata", "/api/v1/sources", "/fhir/Location", "/api/v1/vacancies?format=csv"):
        got, head = client.get(path, headers=token), client.head(path, headers=token)
        assert (head.status_code, head.content) == (200, b""), path
        assert head.headers["content-type"] == got.headers["content-type"], path
        assert head.headers["x-content-type-options"] == "nosniff", path
    assert client.head("/api/v1/sources").status_code == 401
    assert client.head("/api/v1/locations/1-999999999", headers=token).status_code == 404
    assert client.head("/healthz").status_code == 200
