"""``gateway bench london``: a full sync of the London demo homes from the simulator.

Measured: ``sync_london`` (OAuth, paging, mapping, validation, storing each page and the
cursor) against the simulator (its own process, on loopback) with faults off, into a
fresh SQLite database.
Floor, in the same run: the same pages fetched from the same simulator with a bare httpx
loop (token, then cursor after cursor) that does nothing with them.
"""

from __future__ import annotations

import socket
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
from gateway.sync.london import sync_london
from gateway.sync.sources import SyncContext

PAGE_SIZE = 200


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def _process(module_args: list[str], ready_url: str) -> Iterator[None]:
    """Run ``python -m <module_args>`` until the block ends, once ``ready_url`` answers."""
    process = subprocess.Popen([sys.executable, "-m", *module_args])
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


async def _bare_fetch(url: str) -> int:
    pages = 0
    async with httpx.AsyncClient(timeout=30) as http:
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


def bench_london() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        work = Path(tmp)
        homes = london_homes(ensure_demo_data(work / "demo-data"))
        url_db = f"sqlite:///{work / 'gateway.db'}"
        upgrade(url_db)
        engine = create_engine(url_db)
        port = _free_port()
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
            run_async(_bare_fetch(url))  # warm the simulator once
            settings = Settings(
                database_url=url_db,
                london_base_url=url,
                london_client_id="bench",
                london_client_secret=SecretStr("bench"),
                london_page_size=PAGE_SIZE,
            )

            async def sync() -> Any:
                async with httpx.AsyncClient(timeout=30) as http:
                    return await sync_london(SyncContext(session_factory(engine), http, settings))

            with stopwatch() as elapsed:
                run = run_async(sync())
                seconds = elapsed()
            with stopwatch() as elapsed:
                floor_pages = run_async(_bare_fetch(url))
                floor_s = elapsed()
        engine.dispose()
    if run.status != "succeeded":
        raise SystemExit(f"the sync failed: {run.error_message}")
    figures = {
        "bench": "london",
        "homes": len(homes),
        "pages": run.pages,
        "accepted": run.accepted,
        "seconds": round(seconds, 3),
        "pages_per_s": round(run.pages / seconds, 2),
        "floor_pages": floor_pages,
        "floor_s": round(floor_s, 3),
        "floor_pages_per_s": round(floor_pages / floor_s, 2),
        "ratio": round(seconds / floor_s, 2),
    }
    print_result(
        "london: full sync of the London demo homes from the simulator (faults off)",
        [
            ("homes / pages", f"{len(homes)} / {run.pages}"),
            ("accepted / rejected", f"{run.accepted} / {run.rejected}"),
            ("sync seconds", f"{seconds:.3f}"),
            ("pages per second", f"{run.pages / seconds:.2f}"),
            ("floor seconds (bare httpx page loop)", f"{floor_s:.3f}"),
            ("ratio (target at most 2)", f"{seconds / floor_s:.2f}"),
        ],
        figures,
    )
    return figures
