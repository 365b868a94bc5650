"""``gateway demo``: the whole stack on one machine with the national demo data.

1. the demo data set is generated (once) into ``var/demo-data``;
2. the upstream simulators start on loopback (London's tracker, the CQC API);
3. the gateway starts on SQLite with the simulators as its upstreams;
4. each non-London region pushes its batches through the real push API with its own token;
5. the gateway pulls London (and the CQC registry) on its schedule.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
from rich.console import Console

from gateway.demo_loading import ensure_demo_data, push_files
from gateway.settings import Settings

console = Console()
LONDON_PORT_OFFSET = 101
CQC_PORT_OFFSET = 102
DEMO_LONDON_CLIENT = ("gateway-demo", "demo-secret-not-for-production")
DEMO_CQC_KEY = "demo-subscription-key"


DEMO_LONDON_UPDATES_PER_MINUTE = 30


def _wait_until_up(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url} exited with code {process.returncode} before it was up")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.3)
    raise SystemExit(f"{url} did not come up within {timeout_s:.0f} s")


@contextmanager
def _process(args: list[str], url: str, env: dict[str, str] | None = None) -> Iterator[None]:
    process = subprocess.Popen(args, env={**os.environ, **(env or {})})
    try:
        _wait_until_up(url, process)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _mint(settings: Settings, name: str, scopes: list[str], regions: list[str]) -> str:
    from gateway.auth import create_token
    from gateway.store.db import create_engine, session_factory, transaction

    engine = create_engine(settings.database_url)
    try:
        with transaction(session_factory(engine)) as session:
            _, plain = create_token(session, name=name, scopes=scopes, regions=regions)
    finally:
        engine.dispose()
    return plain


def _check_free(ports: list[int]) -> None:
    """Refuse to start when a port the demo needs is taken (an earlier demo still
    running, say): its servers would answer in place of this demo's."""
    for port in ports:
        with socket.socket() as sock:
            # As the servers bind: connections a stopped demo closed a moment ago
            # (TIME_WAIT) hold the port for a minute, but only a listener takes it.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                raise SystemExit(
                    f"port {port} on 127.0.0.1 is in use: stop what runs there (an earlier demo?) "
                    "or choose another port with --port"
                ) from None


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # stop as on Ctrl-C: every server the demo started goes too


def run_demo(port: int, data_dir: Path) -> None:
    """Run the demo stack until Ctrl-C (or SIGTERM)."""
    from gateway.store.db import upgrade
    from simulators.push_trackers import push_region

    settings = Settings()
    if settings.environment.strip().lower() == "production":
        # The demo mints tokens (an admin's among them) and pushes made-up homes into the
        # database GATEWAY_DATABASE_URL names: never a production one.
        raise SystemExit(
            "the demo does not run with GATEWAY_ENVIRONMENT=production: it would mint demo tokens "
            "(an admin's among them) and push made-up care homes into that database"
        )
    _check_free([port, port + LONDON_PORT_OFFSET, port + CQC_PORT_OFFSET])
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    console.print(f"[bold]demo data[/] in {data_dir}")
    ensure_demo_data(data_dir, now=datetime.now(UTC).replace(minute=0, second=0, microsecond=0))
    upgrade(settings.database_url)
    gateway_url = f"http://127.0.0.1:{port}"
    env: dict[str, str] = {}
    with ExitStack() as stack:
        if _has("simulators.london_tracker"):
            london_url = f"http://127.0.0.1:{port + LONDON_PORT_OFFSET}"
            stack.enter_context(
                _process(
                    [
                        sys.executable,
                        "-m",
                        "simulators.london_tracker",
                        "--homes",
                        str(data_dir / "london" / "homes.json"),
                        "--port",
                        str(port + LONDON_PORT_OFFSET),
                        "--client-id",
                        DEMO_LONDON_CLIENT[0],
                        "--client-secret",
                        DEMO_LONDON_CLIENT[1],
                        # London's providers keep updating, so its data stays as fresh as
                        # the live tracker's would, sync after sync.
                        "--updates-per-minute",
                        str(DEMO_LONDON_UPDATES_PER_MINUTE),
                    ],
                    f"{london_url}/docs",
                )
            )
            env |= {
                "GATEWAY_LONDON_BASE_URL": london_url,
                "GATEWAY_LONDON_CLIENT_ID": DEMO_LONDON_CLIENT[0],
                "GATEWAY_LONDON_CLIENT_SECRET": DEMO_LONDON_CLIENT[1],
            }
            console.print(f"London tracker simulator on {london_url}")
        if _has("simulators.cqc_api"):
            cqc_url = f"http://127.0.0.1:{port + CQC_PORT_OFFSET}"
            stack.enter_context(
                _process(
                    [
                        sys.executable,
                        "-m",
                        "simulators.cqc_api",
                        "--locations",
                        str(data_dir / "cqc" / "locations.json"),
                        "--providers",
                        str(data_dir / "cqc" / "providers.json"),
                        "--port",
                        str(port + CQC_PORT_OFFSET),
                        "--subscription-key",
                        DEMO_CQC_KEY,
                    ],
                    f"{cqc_url}/docs",
                )
            )
            env |= {
                "GATEWAY_CQC_BASE_URL": f"{cqc_url}/public/v1",
                "GATEWAY_CQC_SUBSCRIPTION_KEY": DEMO_CQC_KEY,
                "GATEWAY_CQC_REQUESTS_PER_MINUTE": "20000",
            }
            console.print(f"CQC API simulator on {cqc_url}")

        stack.enter_context(
            _process(
                [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port), "--no-migrate"],
                f"{gateway_url}/healthz",
                env,
            )
        )

        for region, files in push_files(data_dir).items():
            token = _mint(settings, f"tracker-{region.value}", ["submit"], [region.value])
            for result in push_region(gateway_url, token, files):
                answer = (
                    f"HTTP {result.status_code} {orjson.dumps(result.summary).decode()}"
                    if result.status_code
                    else f"no answer ({result.error})"
                )
                tries = f" after {result.tries} tries" if result.tries > 1 else ""
                console.print(f"pushed {region.display:<26} {result.file}: {answer}{tries}")

        reader = _mint(settings, "demo-reader", ["read", "admin"], ["all"])
        console.print(f"\n[bold green]The gateway is up[/] on {gateway_url} (API docs: {gateway_url}/docs)")
        console.print(f"Read token (shown once): [bold]{reader}[/]")
        # One line however narrow the terminal, so it can be copied as a command.
        console.print(
            f'  curl -H "Authorization: Bearer {reader}" {gateway_url}/api/v1/sources', soft_wrap=True
        )
        console.print("Stop with Ctrl-C.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            console.print("stopping")
