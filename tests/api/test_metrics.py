"""GET /metrics: Prometheus metrics of the process (requests by route template, pushed
records, sync runs) and of every source's health, for a token with the read scope."""

from __future__ import annotations

import orjson
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker

from adapters.common.http import TransientUpstreamError
from gateway.store.tables import FAILED, utcnow
from gateway.sync.runs import RunCounts, finish_run, start_run
from tests.conftest import TokenMaker, bearer
from tests.factories import batch, location, vacancy

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient, token: str) -> Samples:
    response = client.get("/metrics", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_requests_by_route_and_pushed_records_by_status(
    client: TestClient, make_token: TokenMaker
) -> None:
    token = make_token(name="tracker-metrics")
    before = scrape(client, token)
    fresh = location("1-100000001", updated_at=utcnow().isoformat())
    body = batch(fresh, location("1-100000002", vacancies=[vacancy(occupied=-3)]))
    pushed = client.post(
        "/api/v1/submissions",
        content=orjson.dumps(body),
        headers={**bearer(token), "Content-Type": "application/json"},
    )
    assert pushed.status_code == 200
    assert client.get("/api/v1/locations/1-100000001", headers=bearer(token)).status_code == 200
    assert client.get("/api/v1/locations/1-999999999", headers=bearer(token)).status_code == 404
    after = scrape(client, token)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("gateway_pushed_records_total", source="tracker-metrics", status="accepted") == 1
    assert grew("gateway_pushed_records_total", source="tracker-metrics", status="rejected") == 1
    read = {"method": "GET", "route": "/api/v1/locations/{cqc_location_id}"}
    assert grew("gateway_http_requests_total", **read, status="200") == 1
    assert grew("gateway_http_requests_total", **read, status="404") == 1
    assert grew("gateway_http_request_duration_seconds_count", **read) == 2
    # Labels are route templates: no location ID a caller sent is a label, nor a method
    # a caller made up.
    assert client.request("BREW", "/api/v1/locations/1-100000001", headers=bearer(token)).status_code == 405
    page = client.get("/metrics", headers=bearer(token)).text
    assert "1-999999999" not in page and "1-100000001" not in page and "BREW" not in page
    assert 'method="other"' in page
    # The push's source is healthy (its data is fresh), read from the database.
    assert value(after, "gateway_source_status", source="tracker-metrics", kind="push", status="ok") == 1
    assert value(after, "gateway_source_status", source="tracker-metrics", kind="push", status="stale") == 0
    assert value(after, "gateway_source_consecutive_failures", source="tracker-metrics") == 0


def test_metrics_count_sync_runs_and_a_failing_source(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    token = make_token(scopes=("read",))
    before = scrape(client, token)
    for _ in range(3):
        run_id = start_run(factory, "london", "incremental")
        finish_run(factory, run_id, RunCounts(), TransientUpstreamError("London tracker unreachable"))
    after = scrape(client, token)
    grew = value(after, "gateway_sync_runs_total", source="london", status=FAILED) - value(
        before, "gateway_sync_runs_total", source="london", status=FAILED
    )
    assert grew == 3
    assert value(after, "gateway_source_consecutive_failures", source="london") == 3
    assert value(after, "gateway_source_status", source="london", kind="pulled", status="failing") == 1


def test_metrics_need_a_token_with_the_read_scope(client: TestClient, make_token: TokenMaker) -> None:
    assert client.get("/metrics").status_code == 401
    submit_only = make_token(scopes=("submit",))
    refused = client.get("/metrics", headers=bearer(submit_only))
    assert refused.status_code == 403 and "read" in refused.json()["detail"]
