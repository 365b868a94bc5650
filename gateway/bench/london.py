"""``gateway bench london``: a full sync of the London demo homes from the simulator.

Measured: ``sync_london`` (OAuth, paging, mapping, validation, storing each page and the
cursor) against the simulator (its own process, on loopback) with faults off, each time
into a fresh, empty SQLite database.
Floor, in the same run: the same pages fetched from the same simulator with a bare httpx
loop (token, then cursor after cursor) that does nothing with them.

Each side's HTTP client is made before its clock starts, as a running gateway holds one
(making one costs about 20 ms, its TLS context, which had flattered the ratio by adding
to both sides). Both sides are warmed first, as in a running gateway: the simulator by
one bare fetch, the gateway by one full sync into a scratch database (its time is
reported as the cold first sync, the cost a freshly started process pays once: ORM
set-up, compiled schemas and statements, the postcode table). The start-up heap is then
frozen, as the gateway's scheduler does when it starts (``freeze_startup_heap``). Then
three full syncs and three floors, interleaved; the figures are medians and the ratio is
median over median.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from gateway.bench import print_result, run_async, stopwatch
from gateway.demo_loading import ensure_demo_data, london_homes
from gateway.settings import Settings
from gateway.store.db import create_engine, session_factory, upgrade
from gateway.store.tables import SUCCEEDED, SyncRun
from gateway.sync.london import sync_london
from gateway.sync.scheduler import freeze_startup_heap
from gateway.sync.sources import SyncContext
from simulators.server import free_ports

PAGE_SIZE = 200
REPEATS = 3


@contextmanager
def _process(module_args: list[str], ready_url: str, *, quiet: bool = False) -> Iterator[None]:
    """Run ``python -m <module_args>`` until the block ends, once ``ready_url`` answers;
    ``quiet`` sends its output (an access log, say) nowhere."""
    output = subprocess.DEVNULL if quiet else None
    process = subprocess.Popen([sys.executable, "-m", *module_args], stdout=output, stderr=output)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(ready_url, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit(f"{module_args[0]} did not start") from None
                time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


async def _bare_fetch(url: str, http: httpx.AsyncClient) -> int:
    """The token, then cursor after cursor, doing nothing with the pages: how many."""
    pages = 0
    token = (
        await http.post(
            f"{url}/oauth/token",
            data={"grant_type": "client_credentials", "client_id": "bench", "client_secret": "bench"},
        )
    ).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    params: dict[str, Any] = {"page_size": PAGE_SIZE}
    while True:
        body = (await http.get(f"{url}/api/v2/homes", params=params, headers=headers)).json()
        pages += 1
        if not body["next_cursor"]:
            return pages
        params = {"page_size": PAGE_SIZE, "cursor": body["next_cursor"]}


def _timed_sync(url: str, database: Path) -> tuple[float, SyncRun]:
    """One full sync of the simulator at ``url`` into a new database: seconds and run."""
    url_db = f"sqlite:///{database}"
    upgrade(url_db)
    engine = create_engine(url_db)
    settings = Settings(
        database_url=url_db,
        london_base_url=url,
        london_client_id="bench",
        london_client_secret=SecretStr("bench"),
        london_page_size=PAGE_SIZE,
    )

    async def sync() -> tuple[float, SyncRun]:
        # The HTTP client is made first, as a running gateway holds one (making one
        # costs about 20 ms: its TLS context).
        async with httpx.AsyncClient(timeout=30) as http:
            with stopwatch() as elapsed:
                run = await sync_london(SyncContext(session_factory(engine), http, settings))
                return elapsed(), run

    try:
        seconds, run = run_async(sync())
    finally:
        engine.dispose()
    if run.status != SUCCEEDED:
        raise SystemExit(f"the sync failed: {run.error_message}")
    return seconds, run


def _timed_floor(url: str) -> tuple[float, int]:
    async def floor() -> tuple[float, int]:
        async with httpx.AsyncClient(timeout=30) as http:  # made first, as for the sync
            with stopwatch() as elapsed:
                pages = await _bare_fetch(url, http)
                return elapsed(), pages

    return run_async(floor())


def bench_london() -> dict[str, Any]:
    syncs: list[float] = []
    floors: list[float] = []
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        work = Path(tmp)
        homes = london_homes(ensure_demo_data(work / "demo-data"))
        [port] = free_ports(1)
        url = f"http://127.0.0.1:{port}"
        # The simulator runs in its own process, as the real tracker would be elsewhere.
        homes_file = work / "demo-data" / "london" / "homes.json"
        with _process(
            [
                "simulators.london_tracker",
                "--homes",
                str(homes_file),
                "--port",
                str(port),
                "--client-id",
                "bench",
                "--client-secret",
                "bench",
            ],
            f"{url}/docs",
        ):
            _timed_floor(url)  # warm the simulator once
            first_s, _ = _timed_sync(url, work / "first.db")  # warm the gateway once
            freeze_startup_heap()
            for repeat in range(REPEATS):
                seconds, run = _timed_sync(url, work / f"sync-{repeat}.db")
                syncs.append(seconds)
                floor_s, floor_pages = _timed_floor(url)
                floors.append(floor_s)
    seconds, floor_s = statistics.median(syncs), statistics.median(floors)
    figures = {
        "bench": "london",
        "homes": len(homes),
        "pages": run.pages,
        "accepted": run.accepted,
        "seconds": round(seconds, 3),
        "pages_per_s": round(run.pages / seconds, 2),
        "sync_runs_s": [round(s, 3) for s in syncs],
        "first_sync_s": round(first_s, 3),
        "floor_pages": floor_pages,
        "floor_s": round(floor_s, 3),
        "floor_runs_s": [round(s, 3) for s in floors],
        "floor_pages_per_s": round(floor_pages / floor_s, 2),
        "ratio": round(seconds / floor_s, 2),
    }
    print_result(
        "london: full sync of the London demo homes from the simulator (faults off)",
        [
            ("homes / pages", f"{len(homes)} / {run.pages}"),
            ("accepted / rejected", f"{run.accepted} / {run.rejected}"),
            (
                f"sync seconds (warm, heap frozen; median of {REPEATS})",
                f"{seconds:.3f}  ({', '.join(f'{s:.3f}' for s in syncs)})",
            ),
            ("pages per second", f"{run.pages / seconds:.2f}"),
            ("cold first sync in this process (seconds)", f"{first_s:.3f}"),
            (
                f"floor seconds (bare httpx page loop, median of {REPEATS})",
                f"{floor_s:.3f}  ({', '.join(f'{s:.3f}' for s in floors)})",
            ),
            ("ratio (target at most 2)", f"{seconds / floor_s:.2f}"),
        ],
        figures,
    )
    return figures
