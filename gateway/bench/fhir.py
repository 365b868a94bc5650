"""``gateway bench fhir``: FHIR search and a full bulk export on the national demo data.

(a) 100 ``near`` searches (fixed seed: real postcode districts of registered homes, 5-50 km)
for a page of 50 HealthcareServices closest first with their Locations and Organizations
included, over in-process HTTP (the ASGI app through Starlette's TestClient): p50, p95.

(b) A full ``$export`` over in-process HTTP (httpx's ASGITransport; the files through the
ASGI app directly, as that transport would hold a whole body): kick-off, poll until
complete (every 50 ms, sooner than ``Retry-After`` asks), then every file downloaded,
counting bytes and lines and keeping neither. It runs in a child process, so its peak
memory is its own: reported as the child's peak RSS less its RSS once the app is up.

Floor, in the same run: the same snapshot rows (as of the export's transaction time) read
in one query, rendered with the same plain-dict renderers and ``orjson.dumps`` each: no
HTTP, no job, no streaming.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import orjson
import sqlalchemy as sa

from gateway.bench import peak_rss_mb, print_result, run_async, stopwatch

SEARCHES = 100
RADII_KM = (5, 10, 20, 30, 50)
POLL_S = 0.05


def _points(factory: Any, count: int = SEARCHES, seed: int = 7) -> list[tuple[float, float, int]]:
    """Seeded (latitude, longitude, radius km) at the centroids of districts with homes."""
    from gateway.places import district_centroid

    with factory() as session:
        postcodes = session.scalars(sa.text("SELECT DISTINCT postcode FROM registry_location")).all()
    centroids = sorted({c for c in (district_centroid(p) for p in postcodes) if c is not None})
    rng = random.Random(seed)
    return [(*rng.choice(centroids), rng.choice(RADII_KM)) for _ in range(count)]


def _pct(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _search(client: Any, token: str, points: list[tuple[float, float, int]]) -> tuple[list[float], int]:
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    entries = 0
    for lat, lon, radius in [*points[:5], *points]:  # the first five again, to warm up
        params = [
            ("near", f"{lat}|{lon}|{radius}|km"),
            ("_sort", "near"),
            ("_count", "50"),
            ("_include", "HealthcareService:location"),
            ("_include", "HealthcareService:organization"),
        ]
        with stopwatch() as elapsed:
            response = client.get("/fhir/HealthcareService", params=params, headers=headers)
            latency = elapsed() * 1000
        response.raise_for_status()
        latencies.append(latency)
        entries += len(response.json().get("entry", []))
    return latencies[5:], entries


async def _download(app: Any, url: str, headers: dict[str, str]) -> tuple[int, int]:
    """GET ``url`` through the ASGI app itself, counting bytes and lines as they are sent
    (the test clients' transports would hold the whole body)."""
    parts = urlsplit(url)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(parts.path),
        "raw_path": parts.path.encode(),
        "query_string": parts.query.encode(),
        "root_path": "",
        "headers": [(b"host", b"testserver")]
        + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    status, size, lines = 0, 0, 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, size, lines
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            size += len(message.get("body", b""))
            lines += message.get("body", b"").count(b"\n")

    await app(scope, receive, send)
    if status != 200:
        raise SystemExit(f"{url}: {status}")
    return size, lines


async def _export(app: Any, token: str) -> dict[str, Any]:
    """One whole export over in-process HTTP; figures only (bodies counted and dropped)."""
    headers = {"Authorization": f"Bearer {token}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=headers
    ) as client:
        with stopwatch() as elapsed:
            kick = await client.get("/fhir/$export", headers={"Prefer": "respond-async"})
            if kick.status_code != 202:
                raise SystemExit(f"kick-off: {kick.status_code} {kick.text}")
            status_url = kick.headers["content-location"]
            while (poll := await client.get(status_url)).status_code == 202:
                await asyncio.sleep(POLL_S)
            poll.raise_for_status()
            manifest = poll.json()
            counted_s = elapsed()
            size = lines = 0
            for item in manifest["output"]:
                got = await _download(app, item["url"], headers)
                size, lines = size + got[0], lines + got[1]
            seconds = elapsed()
    resources = sum(item["count"] for item in manifest["output"])
    if lines != resources:
        raise SystemExit(f"the files hold {lines} lines, the manifest counts {resources}")
    return {
        "seconds": seconds,
        "counting_s": counted_s,
        "resources": resources,
        "bytes": size,
        "counts": {item["type"]: item["count"] for item in manifest["output"]},
        "transaction_time": manifest["transactionTime"],
    }


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc (Linux): VmRSS now, VmHWM its peak.

    Not ``getrusage``: a child started with vfork (as subprocess does) inherits its
    parent's peak in ``ru_maxrss``, while VmHWM belongs to the process's own memory.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return peak_rss_mb()


def export_child(database_url: str, token: str) -> None:
    """The child process: an app on the database, one export, its figures as JSON."""
    from gateway.api.app import create_app
    from gateway.settings import Settings

    app = create_app(Settings(database_url=database_url, scheduler_enabled=False))

    async def main() -> dict[str, Any]:
        async with app.router.lifespan_context(app):
            # Up means its start-up work done too (the search index is built in the
            # background): the export's own memory is what comes after.
            await asyncio.to_thread(app.state.index_warming.join)
            baseline = _status_mb("VmRSS")
            figures = await _export(app, token)
        figures["peak_mb"] = _status_mb("VmHWM") - baseline
        figures["baseline_mb"] = baseline
        return figures

    print(json.dumps(run_async(main())), flush=True)


def _floor(factory: Any, transaction_time: datetime) -> tuple[float, int, int]:
    """The same snapshot rendered and serialised with no HTTP and no job machinery."""
    from adapters.fhir.outbound import render
    from gateway.store import fhir as fhir_store
    from gateway.store import fhir_export as export_store

    with factory() as session, stopwatch() as elapsed:
        query = export_store.snapshot_query(transaction_time, None, enriched=True)
        snapshots = [export_store.enriched_snapshot(row) for row in session.execute(query)]
        newest: dict[str, Any] = {}
        for snapshot in snapshots:
            provider_id = snapshot.provider_id
            key = (snapshot.recorded_at, snapshot.version_id)
            if provider_id and (provider_id not in newest or key > newest[provider_id][0]):
                newest[provider_id] = (key, snapshot)
        names = fhir_store.provider_names(session, newest)
        size = count = 0
        for snapshot in snapshots:
            for resource in [render.render_location(snapshot), *render.render_services(snapshot)]:
                size += len(orjson.dumps(resource))
                count += 1
        for provider_id, (_, snapshot) in newest.items():
            organization = render.render_organization(snapshot, names.get(provider_id))
            if organization is not None:
                size += len(orjson.dumps(organization))
                count += 1
        return elapsed(), count, size


def bench_fhir() -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from gateway.api.app import create_app
    from gateway.auth import create_token
    from gateway.demo_loading import ensure_demo_data, load_national_demo
    from gateway.settings import Settings
    from gateway.store.db import create_engine, session_factory, transaction, upgrade

    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        work = Path(tmp)
        database_url = f"sqlite:///{work / 'gateway.db'}"
        upgrade(database_url)
        engine = create_engine(database_url)
        factory = session_factory(engine)
        load_national_demo(ensure_demo_data(work / "demo-data"), factory)
        with transaction(factory) as session:
            _, token = create_token(session, name="bench-reader", scopes=["read"])
        points = _points(factory)

        app = create_app(Settings(database_url=database_url, scheduler_enabled=False))
        with TestClient(app) as client:
            app.state.index_warming.join()  # a running gateway: its start-up work done
            latencies, entries = _search(client, token, points)

        child = subprocess.run(
            [sys.executable, "-m", "gateway.bench.fhir", database_url, token],
            check=True,
            capture_output=True,
            text=True,
        )
        exported = json.loads(child.stdout.strip().splitlines()[-1])
        transaction_time = datetime.fromisoformat(exported["transaction_time"].replace("Z", "+00:00"))
        floor_s, floor_count, floor_bytes = _floor(factory, transaction_time)
        engine.dispose()

    if floor_count != exported["resources"]:
        raise SystemExit(f"floor rendered {floor_count} resources, the export {exported['resources']}")
    p50, p95 = statistics.median(latencies), _pct(latencies, 0.95)
    export_s = exported["seconds"]
    figures = {
        "bench": "fhir",
        "search_p50_ms": round(p50, 1),
        "search_p95_ms": round(p95, 1),
        "export_s": round(export_s, 2),
        "resources": exported["resources"],
        "resources_per_s": round(exported["resources"] / export_s),
        "export_peak_mb": round(exported["peak_mb"], 1),
        "floor_s": round(floor_s, 2),
        "ratio": round(export_s / floor_s, 2),
    }
    counts = ", ".join(f"{n:,} {t}" for t, n in exported["counts"].items())
    print_result(
        "fhir: near search and a full bulk export on the national demo data",
        [
            (
                f"{SEARCHES} near searches, 50 HealthcareServices + includes: p50 / p95 (ms)",
                f"{p50:.1f} / {p95:.1f} ({entries / SEARCHES:.0f} entries a page on average)",
            ),
            (
                "$export: kick-off to last byte (s)",
                f"{export_s:.2f} (complete after {exported['counting_s']:.2f})",
            ),
            ("resources", counts),
            ("resources per second", f"{figures['resources_per_s']:,}"),
            ("NDJSON", f"{exported['bytes'] / 1e6:.1f} MB (floor: {floor_bytes / 1e6:.1f} MB)"),
            (
                "export's own peak memory (MB)",
                f"{exported['peak_mb']:.1f} over {exported['baseline_mb']:.0f}",
            ),
            ("floor: one query, same renderers, orjson (s)", f"{floor_s:.2f}"),
            ("ratio (target at most 3)", f"{figures['ratio']:.2f}"),
        ],
        figures,
    )
    return figures


if __name__ == "__main__":
    export_child(sys.argv[1], sys.argv[2])
