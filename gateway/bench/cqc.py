"""``gateway bench cqc``: a full sync of the demo registry under a client-side rate limit.

The simulator runs in its own process with its own limit raised to the client's
(20,000 requests a minute); the figure is the achieved request rate as a share of the
limit: at 90% or more, the limit, not the gateway's own code, sets the pace.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from gateway.bench import print_result, run_async, stopwatch
from gateway.bench.london import _process
from gateway.demo_loading import ensure_demo_data
from gateway.settings import Settings
from gateway.store.db import create_engine, session_factory, upgrade
from gateway.store.registry import count_registry, count_registry_providers
from gateway.store.tables import SUCCEEDED
from gateway.sync.cqc import cqc_client, sync_cqc_full
from gateway.sync.sources import SyncContext
from simulators.server import free_ports

LIMIT_PER_MINUTE = 20_000.0


def bench_cqc() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        work = Path(tmp)
        data = ensure_demo_data(work / "demo-data")
        url_db = f"sqlite:///{work / 'gateway.db'}"
        upgrade(url_db)
        engine = create_engine(url_db)
        [port] = free_ports(1)
        args = [
            "simulators.cqc_api",
            "--locations",
            str(data / "cqc" / "locations.json"),
            "--providers",
            str(data / "cqc" / "providers.json"),
            "--port",
            str(port),
            "--subscription-key",
            "bench",
            "--requests-per-minute",
            str(LIMIT_PER_MINUTE),
        ]
        with _process(args, f"http://127.0.0.1:{port}/docs"):
            settings = Settings(
                database_url=url_db,
                cqc_base_url=f"http://127.0.0.1:{port}/public/v1",
                cqc_subscription_key=SecretStr("bench"),
                cqc_requests_per_minute=LIMIT_PER_MINUTE,
            )
            counted: dict[str, int] = {}

            async def sync() -> Any:
                async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as http:
                    context = SyncContext(
                        session_factory(engine), http, settings, options={"concurrency": 32}
                    )
                    client = cqc_client(context)
                    context.options["client"] = client  # so its requests can be counted
                    try:
                        return await sync_cqc_full(context)
                    finally:
                        counted["requests"] = client.requests

            time.sleep(1.0)  # let the simulator's token bucket fill as a fresh client would find it
            with stopwatch() as elapsed:
                run = run_async(sync())
                seconds = elapsed()
        with session_factory(engine)() as session:  # the run's records are providers too
            stored = count_registry(session), count_registry_providers(session)
        engine.dispose()
    if run.status != SUCCEEDED:
        raise SystemExit(f"the sync failed: {run.error_message}")
    requests = counted["requests"]
    rate = requests / seconds * 60
    share = rate / LIMIT_PER_MINUTE
    figures = {
        "bench": "cqc",
        "locations": stored[0],
        "providers": stored[1],
        "requests": requests,
        "seconds": round(seconds, 2),
        "requests_per_minute": round(rate),
        "limit_per_minute": LIMIT_PER_MINUTE,
        "share_of_limit": round(share, 3),
        "floor_s": round(requests / (LIMIT_PER_MINUTE / 60), 2),
        "ratio": round(seconds / (requests / (LIMIT_PER_MINUTE / 60)), 3),
    }
    print_result(
        "cqc: full sync of the demo registry under a 20,000/min client limit",
        [
            ("locations stored", str(stored[0])),
            ("providers stored", str(stored[1])),
            ("requests", str(requests)),
            ("wall seconds", f"{seconds:.2f}"),
            ("requests per minute", f"{rate:,.0f}"),
            ("floor: seconds the limit itself needs", f"{requests / (LIMIT_PER_MINUTE / 60):.2f}"),
            ("share of limit (target at least 0.9)", f"{share:.3f}"),
        ],
        figures,
    )
    return figures
