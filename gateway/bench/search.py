"""``gateway bench search``: 200 realistic searches on the national demo data.

Queries (fixed seed): a postcode the registry knows, a radius of 5-50 km, and 1-3 other
filters. Measured in-process (``search`` on one session) and over HTTP (the gateway on
loopback as it would be deployed on this machine: one stateless process per core, here
``gateway serve --workers 2``; 8 concurrent aiohttp clients). Floor, in the same run: the
same filters as one hand-written SQL query (sqlite3, bounding box and filters in SQL) on the
same database. Also what a process pays once for its search index (seconds, memory), and
what a search pays just after a write (its index reads the changed locations again and
makes its next snapshot): 10 rounds of 20 locations updated, then one search.
Then a national CSV export: its seconds (untraced), then its peak memory (tracemalloc, in
a second, traced pass: tracing slows allocation several times over).
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import sqlite3
import statistics
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa

from gateway.auth import create_token
from gateway.bench import print_result, stopwatch
from gateway.bench.london import _process
from gateway.demo_loading import ensure_demo_data, load_national_demo
from gateway.places import bounding_box
from gateway.search import exports
from gateway.search.index import SearchIndex, index_for
from gateway.search.query import SearchQuery
from gateway.search.service import resolve_point, search
from gateway.store.db import create_engine, session_factory, transaction, upgrade
from simulators.server import free_ports

TYPES = ["general-nursing", "dementia-nursing", "general-residential", "dementia-residential"]
FILTERS = [
    "vacancy_type",
    "max_weekly_price",
    "accepting_today",
    "language",
    "funding",
    "rating",
    "out_of_hours",
]


def _queries(postcodes: list[str], count: int = 200, seed: int = 42) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        q: dict[str, Any] = {"postcode": rng.choice(postcodes), "radius_km": rng.choice([5, 10, 20, 30, 50])}
        for name in rng.sample(FILTERS, rng.randint(1, 3)):
            q[name] = {
                "vacancy_type": lambda: rng.choice(TYPES),
                "max_weekly_price": lambda: rng.choice([1000, 1300, 1800]),
                "accepting_today": lambda: True,
                "language": lambda: rng.choice(["Polish", "Urdu", "Spanish"]),
                "funding": lambda: rng.choice(["local-authority", "private", "phb"]),
                "rating": lambda: rng.choice(["good", "outstanding"]),
                "out_of_hours": lambda: True,
            }[name]()
        out.append(q)
    return out


def _to_query(params: dict[str, Any]) -> SearchQuery:
    return SearchQuery(
        postcode=params["postcode"],
        radius_km=params["radius_km"],
        vacancy_types=[params["vacancy_type"]] if "vacancy_type" in params else [],
        max_weekly_price=params.get("max_weekly_price"),
        accepting_today=params.get("accepting_today"),
        languages=[params["language"]] if "language" in params else [],
        funding=[params["funding"]] if "funding" in params else [],
        ratings=[params["rating"]] if "rating" in params else [],
        out_of_hours=params.get("out_of_hours"),
    )


def _floor_query(connection: sqlite3.Connection, params: dict[str, Any], point: tuple[float, float]) -> int:
    south, north, west, east = bounding_box(point[0], point[1], params["radius_km"])
    sql = [
        "SELECT l.cqc_location_id, l.name, l.latitude, l.longitude"
        " FROM location l LEFT JOIN registry_location r ON r.cqc_location_id = l.cqc_location_id"
        " WHERE l.active = 1 AND l.latitude BETWEEN ? AND ? AND l.longitude BETWEEN ? AND ?"
    ]
    args: list[Any] = [south, north, west, east]
    line = []
    if "vacancy_type" in params:
        line.append("v.vacancy_type = ?")
        args.append(params["vacancy_type"])
    if "max_weekly_price" in params:
        line.append("v.weekly_price_from <= ?")
        args.append(params["max_weekly_price"])
    if params.get("accepting_today"):
        sql.append(" AND l.accepting_admissions = 1")
        line.append("v.admittable > 0")
    if line:
        sql.append(
            " AND EXISTS (SELECT 1 FROM vacancy_line v WHERE v.cqc_location_id = l.cqc_location_id AND "
            + " AND ".join(line)
            + ")"
        )
    if "language" in params:
        sql.append(" AND l.languages LIKE ?")
        args.append(f'%"{params["language"]}"%')
    if "funding" in params:
        sql.append(" AND l.funding_sources LIKE ?")
        args.append(f'%"{params["funding"]}"%')
    if "rating" in params:
        sql.append(" AND r.overall_rating = ?")
        args.append(params["rating"])
    if params.get("out_of_hours"):
        sql.append(" AND l.out_of_hours_admissions = 1")
    return len(connection.execute("".join(sql), args).fetchall())


def _pct(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def _http(url: str, token: str, queries: list[dict[str, Any]]) -> tuple[list[float], float]:
    """The queries from 8 concurrent keep-alive clients: latencies (ms) and seconds.

    The clients are aiohttp's: they share the machine's two cores with the server, and
    aiohttp's client costs about a sixth of httpx's CPU a request (0.3 against 1.7 ms).
    """
    latencies: list[float] = []
    todo = iter(queries)
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=8)
    async with aiohttp.ClientSession(url, headers=headers, connector=connector) as http:

        async def client() -> None:
            for params in todo:
                wire = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()}
                with stopwatch() as elapsed:
                    async with http.get("/api/v1/vacancies", params=wire) as response:
                        await response.read()
                        latencies.append(elapsed() * 1000)
                response.raise_for_status()

        with stopwatch() as elapsed:
            await asyncio.gather(*(client() for _ in range(8)))
            return latencies, elapsed()


def _searches_after_writes(factory: Any, queries: list[dict[str, Any]], rounds: int = 10) -> list[float]:
    """Milliseconds of a search made just after 20 locations were updated, each round."""
    from datetime import timedelta

    from gateway.ingest.service import apply_updates
    from gateway.model.capacity import LocationUpdate
    from gateway.store.tables import Location, LocationVersion, table, utcnow

    loc, ver = table(Location), table(LocationVersion)

    rng = random.Random(3)
    with factory() as session:
        ids = sorted(session.scalars(sa.select(loc.c.cqc_location_id)))
    out = []
    for n in range(rounds):
        chosen = rng.sample(ids, 20)
        with transaction(factory) as session:
            rows = session.execute(
                sa.select(loc.c.source, ver.c.record)
                .join(ver, ver.c.version_id == loc.c.version_id)
                .where(loc.c.cqc_location_id.in_(chosen))
            ).all()
            now = utcnow()
            for source, record in rows:
                moved = {**record, "updated_at": (now + timedelta(seconds=n)).isoformat()}
                moved["accepting_admissions"] = not record["accepting_admissions"]
                update = LocationUpdate.model_validate(moved)
                apply_updates(session, source=source, updates=[(0, update)], received_at=now)
        with factory() as session, stopwatch() as elapsed:
            search(session, _to_query(queries[n]))
            out.append(elapsed() * 1000)
    return out


def bench_search() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        work = Path(tmp)
        db_path = work / "gateway.db"
        url_db = f"sqlite:///{db_path}"
        upgrade(url_db)
        engine = create_engine(url_db)
        factory = session_factory(engine)
        load_national_demo(ensure_demo_data(work / "demo-data"), factory)
        with factory() as session:
            postcodes = sorted(
                set(
                    session.scalars(
                        sa.text("SELECT postcode FROM registry_location WHERE latitude IS NOT NULL")
                    )
                )
            )
        queries = _queries(postcodes)
        with factory() as session:
            # What each process pays once for its index: seconds, then (traced) memory.
            with stopwatch() as elapsed:
                SearchIndex().current(session)
                index_seconds = elapsed()
            tracemalloc.start()
            kept = SearchIndex().current(session)
            index_mb = tracemalloc.get_traced_memory()[0] / 1e6
            tracemalloc.stop()
            del kept
            snapshot = index_for(session).current(session)
            points = [resolve_point(snapshot, q["postcode"])[:2] for q in queries]
            for q in queries[:10]:
                search(session, _to_query(q))  # warm caches
            in_process = []
            for q in queries:
                with stopwatch() as elapsed:
                    search(session, _to_query(q))
                    in_process.append(elapsed() * 1000)
        after_write = _searches_after_writes(factory, queries)
        connection = sqlite3.connect(db_path)
        floor = []
        for q, point in zip(queries, points, strict=True):
            with stopwatch() as elapsed:
                _floor_query(connection, q, point)
                floor.append(elapsed() * 1000)
        connection.close()

        with transaction(factory) as session:
            _, token = create_token(session, name="bench-reader", scopes=["read"])
        [port] = free_ports(1)
        workers = str(max(os.cpu_count() or 1, 1))
        env_args = ["gateway.cli", "serve", "--port", str(port), "--no-migrate", "--workers", workers]
        os.environ["GATEWAY_DATABASE_URL"] = url_db
        os.environ["GATEWAY_SCHEDULER_ENABLED"] = "false"
        # The clients run in this process, whose heap holds the whole demo build: frozen,
        # so the clients' own garbage collections are not timed as the server's latency.
        gc.collect()
        gc.freeze()
        with _process(env_args, f"http://127.0.0.1:{port}/healthz", quiet=True):
            asyncio.run(_http(f"http://127.0.0.1:{port}", token, queries[:16]))  # warm up
            http_latencies, http_seconds = asyncio.run(_http(f"http://127.0.0.1:{port}", token, queries))
        gc.unfreeze()

        with stopwatch() as elapsed:
            size = sum(
                len(chunk) for chunk in exports.csv_stream(exports.results_of(factory, SearchQuery()), [])
            )
            export_seconds = elapsed()
        tracemalloc.start()
        sum(len(chunk) for chunk in exports.csv_stream(exports.results_of(factory, SearchQuery()), []))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        engine.dispose()

    p50, floor_p50 = statistics.median(in_process), statistics.median(floor)
    figures = {
        "bench": "search",
        "queries": len(queries),
        "p50_ms": round(p50, 2),
        "p95_ms": round(_pct(in_process, 0.95), 2),
        "http_p50_ms": round(statistics.median(http_latencies), 2),
        "http_p95_ms": round(_pct(http_latencies, 0.95), 2),
        "http_rps": round(len(queries) / http_seconds, 1),
        "http_workers": int(workers),
        "index_build_s": round(index_seconds, 2),
        "index_mb": round(index_mb, 1),
        "after_write_p50_ms": round(statistics.median(after_write), 2),
        "after_write_max_ms": round(max(after_write), 2),
        "export_seconds": round(export_seconds, 2),
        "export_mb": round(size / 1e6, 1),
        "export_peak_mb": round(peak / 1e6, 1),
        "floor_p50_ms": round(floor_p50, 2),
        "floor_s": round(floor_p50 / 1000, 5),
        "ratio": round(p50 / floor_p50, 2),
    }
    print_result(
        "search: 200 realistic queries on the national demo data",
        [
            ("in-process p50 / p95 (ms)", f"{p50:.2f} / {_pct(in_process, 0.95):.2f}"),
            ("floor: one hand-written SQL query, p50 (ms)", f"{floor_p50:.2f}"),
            ("ratio (target at most 2)", f"{p50 / floor_p50:.2f}"),
            (
                f"HTTP, 8 clients, {figures['http_workers']} worker(s): p50 / p95 (ms)",
                f"{figures['http_p50_ms']} / {figures['http_p95_ms']} (target p95 < 50)",
            ),
            ("HTTP requests per second", str(figures["http_rps"])),
            ("search index, built once per process", f"{index_seconds:.2f} s, {index_mb:.0f} MB traced"),
            (
                "a search just after 20 locations changed: p50 / max (ms)",
                f"{figures['after_write_p50_ms']} / {figures['after_write_max_ms']}",
            ),
            (
                "national CSV export",
                f"{export_seconds:.2f} s, {size / 1e6:.1f} MB; peak {peak / 1e6:.1f} MB traced (second pass)",
            ),
        ],
        figures,
    )
    return figures
