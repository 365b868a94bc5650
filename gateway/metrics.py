"""Prometheus metrics, served at ``GET /metrics`` (a token with the ``read`` scope).

Counted by each process: its HTTP requests (by route template, never by the path a
caller sent, so no location ID or parameter becomes a label), the pushed records it judged
and the sync runs it closed. Read from the database at each scrape, so the same from every
process: each source's health, as ``/api/v1/sources`` gives it.

``gateway serve --workers N`` runs N processes behind one port; it then points
``PROMETHEUS_MULTIPROC_DIR`` at a folder of its own, so that whichever process answers a
scrape reports the counts of all of them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.settings import Settings

STATUSES = ("ok", "degraded", "stale", "failing")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUESTS = Counter(
    "gateway_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
REQUEST_SECONDS = Histogram(
    "gateway_http_request_duration_seconds",
    "Time to answer an HTTP request (to the end of its body), by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
PUSHED_RECORDS = Counter(
    "gateway_pushed_records",
    "Records of pushed batches (native and FHIR), by source and what became of them.",
    ["source", "status"],
)
SYNC_RUNS = Counter("gateway_sync_runs", "Sync runs closed, by source and outcome.", ["source", "status"])


def count_pushed(source: str, summary: dict[str, int]) -> None:
    """Count a push's records by status (its summary)."""
    for status, count in summary.items():
        if count:
            PUSHED_RECORDS.labels(source, status).inc(count)


class HttpMetrics:
    """ASGI middleware counting and timing every HTTP request by its route template
    ('unmatched' for a path no route serves)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before any answer is answered 500 by the server

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            # A method no route serves is 'other': a caller's made-up methods never
            # become labels (each label value is a series kept for the process's life).
            method = scope["method"] if scope["method"] in _METHODS else "other"
            REQUESTS.labels(method, template, str(status)).inc()
            REQUEST_SECONDS.labels(method, template).observe(time.perf_counter() - started)


class SourceHealthCollector(Collector):
    """Each source's health, read from the database when scraped."""

    def __init__(self, factory: sessionmaker[Session], settings: Settings) -> None:
        self.factory, self.settings = factory, settings

    def collect(self) -> Iterator[Metric]:
        from gateway.sync.health import source_health  # the scheduler's module imports this one

        with self.factory() as session:
            sources = source_health(session, self.settings, every_pulled=True)
        status = GaugeMetricFamily(
            "gateway_source_status", "1 for each source's status.", labels=["source", "kind", "status"]
        )
        age = GaugeMetricFamily(
            "gateway_source_newest_data_age_seconds", "Age of each source's newest data.", labels=["source"]
        )
        failures = GaugeMetricFamily(
            "gateway_source_consecutive_failures", "Failed syncs in a row, by source.", labels=["source"]
        )
        for source in sources:
            for value in STATUSES:
                status.add_metric([source["source"], source["kind"], value], int(source["status"] == value))
            if source["newest_data_age_seconds"] is not None:
                age.add_metric([source["source"]], source["newest_data_age_seconds"])
            failures.add_metric([source["source"]], source["consecutive_failures"])
        yield from (status, age, failures)


def exposition(factory: sessionmaker[Session], settings: Settings) -> bytes:
    """The metrics page: this process's counts (every worker's, when several share a
    port) and the sources' health."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        for collector in (REQUESTS, REQUEST_SECONDS, PUSHED_RECORDS, SYNC_RUNS):
            registry.register(collector)
    registry.register(SourceHealthCollector(factory, settings))
    return generate_latest(registry)
