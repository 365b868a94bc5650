#!/usr/bin/env python
"""Soak test of the gateway: several real processes, mixed realistic load, both databases.

A developer tool, not part of the test suite (CI never runs it; pytest does not collect
``tools/``). It starts, on loopback:

- the London tracker simulator with its faults switched on (5xx, HTML and non-JSON
  pages, throttling, slow pages, malformed homes) and its providers updating homes;
- the CQC API simulator with soft/hard 429s and 5xx, and registry changes (beds of a
  location, a provider renamed) made while it runs;
- two ``gateway serve`` processes on one database, each running the scheduler, so the
  London/CQC syncs, reconciliation and body retention race for their leases.

It loads the national demo data through the push API, then for ``--duration`` seconds
runs ``--clients`` concurrent clients doing a weighted mix of: native pushes (good and
deliberately bad records side by side, Idempotency-Key replays to the other process,
the same key raced to both, a key reused with another body, racing pushes of one
location to both processes, batches refused with 403), FHIR transaction pushes, dry
runs, native reads and history, vacancy searches with varied filters, CSV/Excel exports,
occupancy/unavailable reports, FHIR searches (paged by ``next``), reads (ETag/304),
instance ``_history``, reconciliation findings, ``/api/v1/sources`` and runs, the push
log. Beside them: a change-feed consumer polling ``Location/_history`` as mCSD says,
``$export`` bulk jobs (kick-off, poll, download, cancel), and a few CLI runs
(``gateway sync london``, ``gateway reconcile``, ``gateway sources``).

Every response is recorded; any 5xx, unexpected 4xx, time-out, dead process, ERROR /
CRITICAL / Traceback line in a gateway's stderr, "database is locked", deadlock or
serialization failure is a finding. At the end the data is checked against oracles
the harness keeps itself (see ``final_checks``). It prints a summary and exits 1 when
anything was found (2 when the stack could not be started).

Usage (from the repository's folder):

    .venv/bin/python tools/soak.py --db sqlite --duration 300
    .venv/bin/python tools/soak.py --db postgres --pg-url postgresql+psycopg://gateway@127.0.0.1:55433/gw_d
    .venv/bin/python tools/soak.py --db both --duration 120 --clients 10 --report /tmp/soak.json

PostgreSQL: the database's ``public`` schema is DROPPED and recreated, then migrated.

``--chaos`` (opt-in) adds faults the default soak does not make, at random moments of the
load: SIGKILL of a gateway (mid-push, mid-London-sync, mid-reconciliation, just after a
``$export`` kick-off, or anywhere) and SIGTERM of one under load, each started again on its
port a few seconds later; on PostgreSQL, restarts of the database server (``pg_ctl restart
-m fast``; ``stop -m immediate`` and start again: give ``--pg-data`` of a cluster of your
own), on SQLite a write lock held 40 s from another connection (past the 30 s busy
timeout); a tracker's token rotated (``gateway token create``, then ``revoke`` by id), one
expired (an expiry in the past written to the database) and one minted to expire in
seconds; broken bodies (truncated gzip, over the size limit as sent and decompressed, wrong
Content-Type, invalid JSON, a Bundle of the wrong type). The servers' 503s and error lines
and a CLI command's exit 2 ("the database does not answer") during a fault, or up to 90 s
after it, are listed apart, not failed. Clients then behave as trackers
do: 503/429 retried after Retry-After, transport errors and time-outs retried with the same
body and Idempotency-Key, 409 "still being processed" asked again for a while. Pushes some
attempt of which went unanswered are judged by the log of pushes (their body's digest): all
of a push's records or none, a key applied once. At the end, besides the usual oracles:
``/readyz`` ready on every process, no sync run left ``running``, every push kept but never
answered near a kill or database fault, and its key released by the documented 10-minute
rule (checked by moving the push's ``received_at`` back 11 minutes: there is no setting),
a ``$export`` whose process was killed completed by a later poll.

    runuser -u postgres -- /usr/lib/postgresql/15/bin/initdb -D /tmp/chaospg -U gateway --auth=trust
    runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D /tmp/chaospg -w -l /tmp/chaospg/server.log \
        -o "-c listen_addresses=127.0.0.1 -p 55444 -k /tmp/chaospg -c fsync=off" start
    psql -h 127.0.0.1 -p 55444 -U gateway -d postgres -c "CREATE DATABASE chaos"
    .venv/bin/python tools/soak.py --db postgres --chaos --duration 280 --clients 8 \
        --pg-url postgresql+psycopg://gateway@127.0.0.1:55444/chaos --pg-data /tmp/chaospg
    .venv/bin/python tools/soak.py --db sqlite --chaos --duration 280 --clients 8
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import csv
import gzip
import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LONDON_CLIENT = ("soak-gateway", "soak-secret")
CQC_KEY = "soak-subscription-key"
FHIR_JSON = "application/fhir+json"
EPOCH = "2000-01-01T00:00:00Z"
VACANCY_TYPES = ["general-nursing", "dementia-nursing", "general-residential", "dementia-residential"]
# --chaos: what a gateway may log while its database is restarting or locked
CHAOS_EXPECTED = re.compile(
    r"database unavailable on |(retention|reconciliation) failed: OperationalError$"
    r"|sync \S+ failed outside its run record: OperationalError$"
)
PG_STATS = "SELECT deadlocks, conflicts FROM pg_stat_database WHERE datname = current_database()"


# ----------------------------------------------------------------------------------------
# Simulator launchers (run as subprocesses: ``soak.py _london-sim`` / ``_cqc-sim``)
# ----------------------------------------------------------------------------------------


def london_sim_main(argv: list[str]) -> None:
    import orjson
    import uvicorn
    from fastapi.responses import Response

    from simulators.london_tracker import LondonSimulatorSettings, create_app

    p = argparse.ArgumentParser()
    p.add_argument("--homes", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--updates-per-minute", type=float, default=60.0)
    p.add_argument("--faults", action="store_true")
    a = p.parse_args(argv)
    homes = orjson.loads(Path(a.homes).read_bytes())
    settings = LondonSimulatorSettings(client_id=LONDON_CLIENT[0], client_secret=LONDON_CLIENT[1], seed=7)
    if a.faults:
        settings = settings.model_copy(
            update={
                "error_rate": 0.06,
                "slow_rate": 0.03,
                "slow_seconds": 3.0,
                "non_json_rate": 0.03,
                "malformed_rate": 0.02,
                "throttle_rate": 0.03,
                "retry_after_s": 1,
            }
        )
    app = create_app(homes, settings)
    sim = app.state.simulator
    stop = threading.Event()

    @app.get("/_soak/truth")
    def truth() -> Response:
        return Response(
            orjson.dumps({"homes": sim.truth(), "malformed": sorted(sim.malformed_refs())}),
            media_type="application/json",
        )

    @app.post("/_soak/calm")
    def calm() -> dict[str, Any]:
        """Faults off (malformed homes stay so: they are fixed by ref) and updates stop."""
        stop.set()
        sim.settings = sim.settings.model_copy(
            update={"error_rate": 0.0, "slow_rate": 0.0, "non_json_rate": 0.0, "throttle_rate": 0.0}
        )
        return {"calm": True}

    if a.updates_per_minute > 0:
        threading.Thread(target=sim.live, args=(a.updates_per_minute, stop), daemon=True).start()
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning")


def cqc_sim_main(argv: list[str]) -> None:
    import orjson
    import uvicorn

    from simulators.cqc_api import CqcSimulatorSettings, create_app

    p = argparse.ArgumentParser()
    p.add_argument("--locations", required=True)
    p.add_argument("--providers", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--faults", action="store_true")
    p.add_argument("--changes-per-minute", type=float, default=12.0)
    a = p.parse_args(argv)
    locations = orjson.loads(Path(a.locations).read_bytes())
    providers = orjson.loads(Path(a.providers).read_bytes())
    settings = CqcSimulatorSettings(subscription_key=CQC_KEY, seed=11)
    if a.faults:
        settings = settings.model_copy(
            update={"soft_429_rate": 0.003, "hard_429_rate": 0.003, "error_rate": 0.005, "retry_after_s": 1}
        )
    app = create_app(locations, providers, settings)
    sim = app.state.simulator
    stop = threading.Event()

    @app.post("/_soak/calm")
    def calm() -> dict[str, Any]:
        stop.set()
        sim.settings = sim.settings.model_copy(
            update={"soft_429_rate": 0.0, "hard_429_rate": 0.0, "error_rate": 0.0}
        )
        return {"calm": True}

    def registry_changes() -> None:
        rnd = random.Random(5)
        ids = sorted(i for i, r in sim.locations.items() if r.get("registrationStatus") == "Registered")
        pids = sorted(sim.providers)
        n = 0
        while not stop.wait(60.0 / a.changes_per_minute):
            n += 1
            if n % 5 == 0 and pids:
                pid = rnd.choice(pids)
                base = sim.providers[pid]["name"].split(" (soak ")[0]
                sim.change_provider(pid, {"name": f"{base} (soak {n})"})
            else:
                lid = rnd.choice(ids)
                beds = sim.locations[lid].get("numberOfBeds") or 10
                sim.change_location(lid, {"numberOfBeds": max(1, beds + rnd.choice((-1, 1)))})

    if a.changes_per_minute > 0:
        threading.Thread(target=registry_changes, daemon=True).start()
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning")


# ----------------------------------------------------------------------------------------
# Recording
# ----------------------------------------------------------------------------------------


@dataclass
class Finding:
    kind: str  # e.g. "5xx", "unexpected-4xx", "timeout", "consistency", "log"
    what: str
    detail: str = ""


@dataclass
class Recorder:
    counts: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    findings: list[Finding] = field(default_factory=list)
    finding_counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def add(self, kind: str, what: str, detail: str = "", cap: int = 5) -> None:
        key = (kind, what)
        self.finding_counts[key] += 1
        if self.finding_counts[key] <= cap:
            self.findings.append(Finding(kind, what, detail[:600]))

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  . {text}", flush=True)


def short(text: str, n: int = 300) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= n else text[:n] + "..."


def problem_title(body: bytes) -> str:
    """What an error answer says, without its payload: a problem document's title (a fixed
    string from the gateway's catalogue) or else the body's size."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("title"), str):
        return short(doc["title"], 80)
    return f"{len(body)} bytes"


def next_link(doc: dict[str, Any]) -> str | None:
    """A FHIR Bundle's ``next`` link, if any."""
    nxt = [link["url"] for link in doc.get("link", []) if link.get("relation") == "next"]
    return nxt[0] if nxt else None


async def run_gateway_cli(
    args: Sequence[str], env: dict[str, str], cwd: Path, timeout_s: float | None = None
) -> tuple[int | None, bytes, bytes]:
    """Run ``gateway <args>``: its exit status (None: killed after ``timeout_s``), stdout
    and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        *args,
        env=env,
        cwd=str(cwd),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None, b"", b""
    return await proc.wait(), out, err


def output_gist(text: str) -> str:
    """What a command's output says, without the data it may echo: its size, how many
    records it reports rejected, and the exception classes it names."""
    rejected = len(re.findall(r"^rejected ", text, re.M))
    raised = sorted(set(re.findall(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit))\b", text, re.M)))
    gist = f"{len(text.splitlines())} lines of output, {rejected} rejected"
    return gist + (f"; raised {', '.join(raised)}" if raised else "")


Answer = tuple[int, dict[str, str], bytes]
STATUS_NAMES: dict[int, str] = {-1: "timeout", -2: "conn"}  # recorded in place of an HTTP status
REFUSED = (400, 403, 413, 415, 422)  # refused outright: nothing in the batch applied


# ----------------------------------------------------------------------------------------
# Processes
# ----------------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    url: str
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


class Stack:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[Proc] = []

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env["PYTHONPATH"] = str(ROOT)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self, name: str, args: list[str], url: str, env: dict[str, str]) -> Proc:
        log = self.folder / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                args, env=env, cwd=self.folder, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        proc = Proc(name, process, log, url, list(args), dict(env))
        self.procs.append(proc)
        return proc

    def restart(self, old: Proc) -> Proc:
        """Start ``old``'s command again (same port, same log, appended), in its place."""
        with old.log.open("ab") as out:
            process = subprocess.Popen(
                old.args,
                env=old.env,
                cwd=self.folder,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(old.name, process, old.log, old.url, old.args, old.env)
        self.procs[self.procs.index(old)] = proc
        return proc

    def wait_up(self, proc: Proc, path: str, timeout: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.process.poll() is not None:
                raise RuntimeError(
                    f"{proc.name} exited ({proc.process.returncode}):\n{proc.log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(proc.url + path, timeout=2.0).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{proc.name} did not come up in {timeout:.0f} s")

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.process.poll() is None:
                proc.process.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.process.kill()
                proc.process.wait(timeout=10)


# ----------------------------------------------------------------------------------------
# Test data
# ----------------------------------------------------------------------------------------


def utc_stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def as_instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def figures(record: dict[str, Any]) -> tuple[Any, ...]:
    """What the oracle compares: activity, admission flag, and each line's figures."""
    lines = sorted(
        (
            ln["vacancy_type"],
            ln["maximum_capacity"],
            ln["occupied"],
            ln.get("reserved") or 0,
            ln["admittable"],
            ln["unavailable"],
        )
        for ln in record.get("vacancies", [])
        if ln.get("vacancy_type")
    )
    return (record.get("active", True), record.get("accepting_admissions"), tuple(lines))


@dataclass
class Sent:
    updated_at: str
    figures: tuple[Any, ...]
    status: str  # accepted / unchanged / stale / rejected / refused (never applied) / unknown
    via: str
    key: str | None = None
    digest: str | None = None  # --chaos: the push's body digest, to find it in the push log
    index: int | None = None  # --chaos: the record's place in its push (FHIR: its first entry)


class Pool:
    """The locations the load pushes, per region, with the newest record made for each."""

    def __init__(self, data: Path, rnd: random.Random) -> None:
        import orjson

        self.rnd = rnd
        london = orjson.loads((data / "london" / "homes.json").read_bytes())
        london_ids = {h.get("cqc_location_id") for h in london if h.get("cqc_location_id")}
        seen: Counter[str] = Counter()
        per_region: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.files: dict[str, list[Path]] = defaultdict(list)
        for path in sorted((data / "push").glob("*.json")):
            stem = path.stem
            region = stem.rsplit("-", 1)[0] if stem.rsplit("-", 1)[-1].isdigit() else stem
            self.files[region].append(path)
            for rec in orjson.loads(path.read_bytes())["locations"]:
                seen[rec["cqc_location_id"]] += 1
                per_region[region].append(rec)
        self.region_ids: dict[str, set[str]] = {
            r: {rec["cqc_location_id"] for rec in recs} for r, recs in per_region.items()
        }
        # Locations two trackers (or London) report: left out, so one source's updates
        # decide each location the load pushes.
        self.records: dict[str, dict[str, Any]] = {}
        self.by_region: dict[str, list[str]] = {}
        for region, recs in per_region.items():
            ids = []
            for rec in recs:
                cid = rec["cqc_location_id"]
                if seen[cid] == 1 and cid not in london_ids and rec.get("nhs_region") == region:
                    self.records[cid] = rec
                    ids.append(cid)
            self.by_region[region] = sorted(ids)
        self.hot = {r: rnd.sample(ids, min(40, len(ids))) for r, ids in self.by_region.items()}
        self.used: dict[str, set[str]] = defaultdict(set)  # updated_at values used per location
        self.sent: dict[str, list[Sent]] = defaultdict(list)
        self.never: dict[str, set[str]] = defaultdict(set)  # updated_at values never to be applied
        self.lock = threading.Lock()
        self.postcodes = sorted(
            {
                rec["address"]["postcode"]
                for rec in self.records.values()
                if rec.get("address", {}).get("postcode")
            }
        )
        self.local_authorities = sorted(
            {rec["local_authority"] for rec in self.records.values() if rec.get("local_authority")}
        )

    def regions(self) -> list[str]:
        return sorted(self.by_region)

    def pick(self, region: str, n: int) -> list[str]:
        ids: set[str] = set()
        while len(ids) < n:
            src = self.hot[region] if self.rnd.random() < 0.8 else self.by_region[region]
            ids.add(self.rnd.choice(src))
        return sorted(ids)

    def stamp(self, cid: str, back_s: float) -> str:
        """A provider's update time, about ``back_s`` ago, never used before for ``cid``."""
        with self.lock:
            moment = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=int(back_s))
            while (text := utc_stamp(moment)) in self.used[cid]:
                moment -= timedelta(seconds=1)
            self.used[cid].add(text)
            return text

    def mutate(self, cid: str, back_s: float | None = None) -> dict[str, Any]:
        rnd = self.rnd
        rec = copy.deepcopy(self.records[cid])
        for line in rec["vacancies"]:
            free = line["occupied"] + line["admittable"]
            if free > 0:
                line["occupied"] = rnd.randint(0, free)
                line["admittable"] = free - line["occupied"]
        r = rnd.random()
        if r < 0.05:
            rec["accepting_admissions"] = not rec.get("accepting_admissions", True)
        elif r < 0.07:
            rec["active"] = False
        else:
            rec["active"] = True
        rec["updated_at"] = self.stamp(cid, rnd.uniform(0, 90) if back_s is None else back_s)
        return rec

    def record_sent(self, cid: str, sent: Sent) -> None:
        with self.lock:
            self.sent[cid].append(sent)

    def record_never(self, cid: str, updated_at: str) -> None:
        with self.lock:
            self.never[cid].add(updated_at)


def bad_record(pool: Pool, cid: str, rnd: random.Random) -> dict[str, Any]:
    """A new record for ``cid`` that the gateway must reject."""
    rec = pool.mutate(cid)
    kind = rnd.choice(["negative", "type", "future", "reason"])
    if kind == "negative" and rec["vacancies"]:
        rec["vacancies"][0]["occupied"] = -3
    elif kind == "type" and rec["vacancies"]:
        rec["vacancies"][0]["vacancy_type"] = "bogus-beds"
    elif kind == "reason" and rec["vacancies"]:
        rec["vacancies"][0]["unavailable_reasons"] = ["not-a-reason"]
        rec["vacancies"][0]["unavailable"] = max(1, rec["vacancies"][0]["unavailable"])
    else:
        rec["updated_at"] = utc_stamp(datetime.now(UTC) + timedelta(days=1))
    return rec


def matches_search(detail: dict[str, Any], region: str, extra: list[tuple[str, str]]) -> bool:
    """Whether a location's native detail matches a region search with ``extra``'s filter."""
    if not detail.get("active", True) or detail.get("nhs_region") != region:
        return False
    lines = [ln for ln in detail.get("vacancies", []) if ln.get("vacancy_type")]
    if not lines:
        return False
    if extra and extra[0][0] == "vacancy_type":
        return any(ln["vacancy_type"] == "general-nursing" for ln in lines)
    if extra and extra[0][0] == "accepting_today":
        # accepting, with a bed admittable now (README: accepting_today)
        return detail.get("accepting_admissions") is True and any(ln["admittable"] > 0 for ln in lines)
    return True


def fhir_entry_status(resp: dict[str, Any]) -> str:
    """What became of a location, from its first entry's ``response`` in a transaction-response."""
    status = resp.get("status", "")
    diag = " ".join(i.get("diagnostics", "") for i in (resp.get("outcome") or {}).get("issue", []))
    if status.startswith("422"):
        return "rejected"
    if diag.lower().startswith("unchanged"):
        return "unchanged"
    if diag.lower().startswith("stale"):
        return "stale"
    if status.startswith(("200", "201")):
        return "accepted"
    return "unknown"


@dataclass
class ChaosEvent:
    """One fault the chaos made, with when (UTC) it began and ended."""

    kind: str
    detail: str
    start: datetime
    end: datetime | None = None


@dataclass
class Batch:
    """One native push as sent, to judge its answers by."""

    token: str
    records: list[dict[str, Any]]
    bad: set[int]  # indexes of the records the gateway must reject
    body: bytes  # as sent (perhaps gzipped)
    headers: dict[str, str]
    key: str | None


# ----------------------------------------------------------------------------------------
# The load
# ----------------------------------------------------------------------------------------


class Soak:
    def __init__(self, args: argparse.Namespace, db_label: str, url: str, folder: Path, data: Path) -> None:
        self.args = args
        self.db_label = db_label
        self.database_url = url
        self.folder = folder
        self.data = data
        self.rec = Recorder()
        self.rnd = random.Random(args.seed)
        self.stack = Stack(folder)
        self.gateways: list[str] = []
        self.tokens: dict[str, str] = {}
        self.stop = asyncio.Event()
        self.feed_seen: list[tuple[str, str]] = []
        self.feed_since: str | None = None
        self.keys_used: dict[str, str] = {}  # idempotency key -> source
        self._pool: Pool | None = None
        self.pg_before: tuple[int, int] | None = None
        self.t0 = 0.0
        # --chaos
        self.gw_procs: list[Proc] = []
        self.token_ids: dict[str, str] = {}  # token name -> id of the token minted for it
        self.down: set[str] = set()  # processes the chaos has stopped on purpose
        self.replaced: dict[str, str] = {}  # a revoked or expired token -> the one minted after it
        self.retired: set[str] = set()
        self.unsure: set[str] = set()  # digests of pushes some attempt of which went unanswered
        self.keyed_requests: dict[str, tuple[str, str, bytes, dict[str, str]]] = {}
        self.events: list[ChaosEvent] = []
        self.chaos_counts: Counter[str] = Counter()
        self.killed_exports: list[tuple[str, float]] = []

    @property
    def pool(self) -> Pool:
        """The locations the load pushes (set up before any load runs)."""
        assert self._pool is not None
        return self._pool

    # --- setup --------------------------------------------------------------------------
    def server_env(self) -> dict[str, str]:
        a = self.args
        return self.stack.base_env() | {
            "GATEWAY_DATABASE_URL": self.database_url,
            "GATEWAY_ENVIRONMENT": "test",
            "GATEWAY_SCHEDULER_ENABLED": "true",
            "GATEWAY_LONDON_BASE_URL": self.london_url,
            "GATEWAY_LONDON_CLIENT_ID": LONDON_CLIENT[0],
            "GATEWAY_LONDON_CLIENT_SECRET": LONDON_CLIENT[1],
            "GATEWAY_LONDON_INTERVAL_S": str(a.london_interval),
            "GATEWAY_LONDON_PAGE_SIZE": "100",
            "GATEWAY_CQC_BASE_URL": f"{self.cqc_url}/public/v1",
            "GATEWAY_CQC_SUBSCRIPTION_KEY": CQC_KEY,
            "GATEWAY_CQC_REQUESTS_PER_MINUTE": "20000",
            "GATEWAY_CQC_FULL_SYNC_INTERVAL_S": "86400",
            "GATEWAY_CQC_INCREMENTAL_INTERVAL_S": str(a.cqc_interval),
            "GATEWAY_CQC_CHANGES_OVERLAP_S": "300",
            "GATEWAY_RECONCILE_INTERVAL_S": str(a.reconcile_interval),
            "GATEWAY_SYNC_LEASE_S": "30",
            "GATEWAY_AUTH_CACHE_S": "5",
            "GATEWAY_DATABASE_POOL_SIZE": "8",
            **(
                {"GATEWAY_PUSH_BODY_RETENTION_DAYS": "0.0002", "GATEWAY_HOUSEKEEPING_INTERVAL_S": "20"}
                if a.retention
                else {}
            ),
        }

    def reset_database(self) -> None:
        if self.db_label == "postgres":
            import psycopg

            plain = self.database_url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(plain, autocommit=True) as conn:
                conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
                conn.execute("CREATE SCHEMA public")
                row = conn.execute(PG_STATS).fetchone()
                self.pg_before = (int(row[0]), int(row[1])) if row else None
        env = self.stack.base_env() | {"GATEWAY_DATABASE_URL": self.database_url}
        out = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "db", "upgrade"],
            env=env,
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if out.returncode != 0:
            raise RuntimeError(f"db upgrade failed: {out.stdout[-2000:]} {out.stderr[-2000:]}")

    def mint(self, name: str, scopes: list[str], regions: list[str]) -> str:
        from gateway.auth import create_token
        from gateway.store.db import create_engine, session_factory, transaction

        engine = create_engine(self.database_url)
        try:
            with transaction(session_factory(engine)) as session:
                made, plain = create_token(session, name=name, scopes=scopes, regions=regions)
                self.token_ids[name] = made.id
        finally:
            engine.dispose()
        return plain

    def start_simulator(self, name: str, url: str, args: list[str]) -> Proc:
        """Start this file as simulator ``name`` (``_london-sim`` / ``_cqc-sim``) on ``url``."""
        port = urlsplit(url).port
        cmd = [sys.executable, str(Path(__file__).resolve()), f"_{name}", *args, "--port", str(port)]
        faults = ["--faults"] if self.args.faults else []
        return self.stack.start(name, cmd + faults, url, self.stack.base_env())

    def start_stack(self) -> None:
        from simulators.server import free_ports

        ports = free_ports(2 + self.args.gateways)
        self.london_url = f"http://127.0.0.1:{ports[0]}"
        self.cqc_url = f"http://127.0.0.1:{ports[1]}"
        data = self.data
        london = self.start_simulator(
            "london-sim", self.london_url, ["--homes", str(data / "london" / "homes.json")]
        )
        cqc = self.start_simulator(
            "cqc-sim",
            self.cqc_url,
            [
                "--locations",
                str(data / "cqc" / "locations.json"),
                "--providers",
                str(data / "cqc" / "providers.json"),
            ],
        )
        self.stack.wait_up(london, "/docs")
        self.stack.wait_up(cqc, "/docs")
        py = sys.executable
        senv = self.server_env()
        gws = []
        for i in range(self.args.gateways):
            url = f"http://127.0.0.1:{ports[2 + i]}"
            gws.append(
                self.stack.start(
                    f"gateway-{chr(ord('a') + i)}",
                    [
                        py,
                        "-m",
                        "gateway.cli",
                        "serve",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(ports[2 + i]),
                        "--no-migrate",
                        "--log-level",
                        "info",
                        "--no-access-log",
                    ],
                    url,
                    senv,
                )
            )
        for gw in gws:
            self.stack.wait_up(gw, "/readyz", timeout=180)
        self.gateways = [gw.url for gw in gws]
        self.gw_procs = gws

    # --- HTTP ---------------------------------------------------------------------------
    async def req(
        self,
        kind: str,
        method: str,
        url: str,
        *,
        token: str | None,
        ok: tuple[int, ...] = (200,),
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Answer | None:
        import aiohttp

        if self.args.chaos:
            return await self.chaos_req(
                kind, method, url, token=token, ok=ok, data=data, headers=headers, timeout=timeout
            )
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        self.rec.counts[kind] += 1
        started = time.monotonic()
        try:
            async with self.http.request(
                method, url, data=data, headers=h, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp:
                body = await resp.read()
                status = resp.status
                rh = {k.lower(): v for k, v in resp.headers.items()}
        except TimeoutError:
            self.rec.statuses[kind][-1] += 1
            self.rec.add("timeout", f"{kind}: no answer in {timeout:.0f} s", f"{method} {self._path(url)}")
            return None
        except aiohttp.ClientError as exc:
            self.rec.statuses[kind][-2] += 1
            if not self.stop.is_set() or kind != "feed":
                self.rec.add(
                    "transport", f"{kind}: {type(exc).__name__}", f"{method} {self._path(url)}: {exc}"
                )
            return None
        self.rec.latency[kind].append(time.monotonic() - started)
        self.rec.statuses[kind][status] += 1
        if status not in ok:
            # A 503 with Retry-After (the database busy) and a 429 are the gateway's
            # documented answers, counted apart in the summary rather than as defects.
            if status == 429 or (status == 503 and "retry-after" in rh):
                cls = "retryable"
            elif status >= 500:
                cls = "5xx"
            else:
                cls = "unexpected-4xx"
            self.rec.add(cls, f"{kind}: HTTP {status}", f"{method} {self._path(url)}: {problem_title(body)}")
        return status, rh, body

    async def submit(
        self,
        kind: str,
        gateway: str,
        token: str,
        body: bytes,
        *,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
        timeout: float = 60.0,
        path: str = "/api/v1/submissions",
    ) -> Answer | None:
        """POST a batch (JSON unless ``headers`` say otherwise) to one gateway."""
        return await self.req(
            kind,
            "POST",
            f"{gateway}{path}",
            token=token,
            ok=ok,
            data=body,
            headers=headers or {"Content-Type": "application/json"},
            timeout=timeout,
        )

    async def pause(self, seconds: float) -> None:
        """Sleep up to ``seconds``; wake early when the load stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)

    async def read(
        self,
        kind: str,
        url: str,
        *,
        token: str | None = None,
        ok: tuple[int, ...] = (200,),
        headers: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Answer | None:
        """GET, with the reader's token unless another is given."""
        return await self.req(
            kind, "GET", url, token=token or self.tokens["reader"], ok=ok, headers=headers, timeout=timeout
        )

    @staticmethod
    def _path(url: str) -> str:
        parts = urlsplit(url)
        return parts.path + (("?" + parts.query) if parts.query else "")

    def gw(self) -> str:
        return self.rnd.choice(self.gateways)

    def other(self, url: str) -> str:
        rest = [g for g in self.gateways if g != url]
        return self.rnd.choice(rest) if rest else url

    # --- pushes -------------------------------------------------------------------------
    async def push_native(self) -> None:
        batch, plain, mode = self._native_batch()
        target = self.gw()
        if batch.key and mode < 0.12:
            await self._push_key_raced(batch, target)
            return
        first = await self.submit(
            "push-native", target, batch.token, batch.body, headers=batch.headers, timeout=120
        )
        self._judge_push(batch.records, batch.bad, first, batch.key, "native", self.digest(batch))
        if batch.key and mode < 0.30 and first is not None:
            await self._push_replayed(batch, target, first)
        elif batch.key and first is not None and first[0] == 200:
            await self._push_key_reused(batch, target, plain)

    def _native_batch(self) -> tuple[Batch, bytes, float]:
        """A batch of one region's locations, some deliberately bad, maybe gzipped, maybe
        with an Idempotency-Key; with its plain body and the draw that picks its fate."""
        pool, rnd = self.pool, self.rnd
        region = rnd.choice(pool.regions())
        source = f"tracker-{region}"
        records: list[dict[str, Any]] = []
        bad: set[int] = set()
        for cid in pool.pick(region, rnd.randint(1, 12)):
            if rnd.random() < 0.12:
                bad.add(len(records))
                records.append(bad_record(pool, cid, rnd))
            else:
                records.append(pool.mutate(cid))
        plain = json.dumps({"sent_at": utc_stamp(datetime.now(UTC)), "locations": records}).encode()
        mode = rnd.random()
        headers = {"Content-Type": "application/json"}
        body = plain
        if rnd.random() < 0.5:
            body = gzip.compress(plain)
            headers["Content-Encoding"] = "gzip"
        key = None
        if mode < 0.35:
            key = f"soak-{uuid.uuid4().hex}"
            headers["Idempotency-Key"] = key
            self.keys_used[key] = source
        return Batch(self.tokens[source], records, bad, body, headers, key), plain, mode

    async def _push_key_raced(self, batch: Batch, target: str) -> None:
        """The same key raced to both processes at once: one is processed, the other
        replays it or answers 409 (still being processed)."""
        key = batch.key
        answers = await asyncio.gather(
            self.submit("push-native", target, batch.token, batch.body, headers=batch.headers, ok=(200, 409)),
            self.submit(
                "push-native-idem-race",
                self.other(target),
                batch.token,
                batch.body,
                headers=batch.headers,
                ok=(200, 409),
            ),
        )
        ok = [a for a in answers if a and a[0] == 200]
        fresh = [a for a in ok if a[1].get("idempotent-replayed") != "true"]
        replays = [a for a in ok if a[1].get("idempotent-replayed") == "true"]
        if len(fresh) > 1:
            self.rec.add("consistency", "one Idempotency-Key processed twice (raced to both)", f"key={key}")
        if fresh and replays and json.loads(fresh[0][2]) != json.loads(replays[0][2]):
            self.rec.add("consistency", "replayed answer differs from the first", f"key={key}")
        if not fresh and not replays and all(a and a[0] == 409 for a in answers):
            self.rec.add("consistency", "same key raced: both answered 409", f"key={key}")
        answer = fresh[0] if fresh else (replays[0] if replays else None)
        self._judge_push(batch.records, batch.bad, answer, key, "native", self.digest(batch))
        if answer is not None:
            return
        # Ask again until the first answer is given (409: still being processed).
        for _ in range(20):
            await asyncio.sleep(0.5)
            again = await self.submit(
                "push-native-retry", target, batch.token, batch.body, headers=batch.headers, ok=(200, 409)
            )
            if again and again[0] == 200:
                self._judge_push(batch.records, batch.bad, again, key, "native-retry", self.digest(batch))
                return

    async def _push_replayed(self, batch: Batch, target: str, first: Answer) -> None:
        """A retry with the key, to the other process: the first answer, replayed."""
        again = await self.submit(
            "push-native-replay", self.other(target), batch.token, batch.body, headers=batch.headers
        )
        if not (again and first[0] == 200 and again[0] == 200):
            return
        if again[1].get("idempotent-replayed") != "true":
            self.rec.add(
                "consistency", "retry with an answered Idempotency-Key not replayed", f"key={batch.key}"
            )
        elif json.loads(again[2]) != json.loads(first[2]):
            self.rec.add("consistency", "replayed answer differs from the first", f"key={batch.key}")

    async def _push_key_reused(self, batch: Batch, target: str, plain: bytes) -> None:
        """The same key with another body: 422, nothing written."""
        assert batch.key is not None
        other_body = dict(json.loads(plain))
        other_body["sent_at"] = utc_stamp(datetime.now(UTC) + timedelta(seconds=1))
        changed = [self.pool.mutate(r["cqc_location_id"]) for r in batch.records[:1]]
        other_body["locations"] = changed
        for r in changed:
            self.pool.record_never(r["cqc_location_id"], r["updated_at"])
        await self.submit(
            "push-native-key-reuse",
            self.other(target),
            batch.token,
            json.dumps(other_body).encode(),
            headers={"Content-Type": "application/json", "Idempotency-Key": batch.key},
            ok=(422,),
        )

    def _record_unapplied(
        self,
        records: list[dict[str, Any]],
        answer: Answer | None,
        via: str,
        key: str | None,
        digest: str | None = None,
        indexes: list[int] | None = None,
    ) -> None:
        """A batch not answered 200: refused outright, or its fate unknown."""
        status = "refused" if answer is not None and answer[0] in REFUSED else "unknown"
        for i, rec in enumerate(records):
            index = indexes[i] if indexes else i
            self.pool.record_sent(
                rec["cqc_location_id"], Sent(rec["updated_at"], figures(rec), status, via, key, digest, index)
            )

    def _judge_push(
        self,
        records: list[dict[str, Any]],
        bad: set[int],
        answer: Answer | None,
        key: str | None,
        via: str,
        digest: str | None = None,
    ) -> None:
        if answer is None or answer[0] != 200:
            self._record_unapplied(records, answer, via, key, digest)
            return
        try:
            doc = json.loads(answer[2])
            results = doc["records"]
        except (ValueError, KeyError) as exc:
            self.rec.add("contract", f"push answer unreadable ({via})", repr(exc))
            return
        if len(results) != len(records):
            self.rec.add(
                "contract", "push answer has another number of records", f"{len(results)} != {len(records)}"
            )
        summary = Counter(r["status"] for r in results)
        if doc.get("summary") and any(
            doc["summary"].get(k, 0) != summary.get(k, 0)
            for k in ("accepted", "unchanged", "stale", "rejected")
        ):
            self.rec.add(
                "contract", "push summary disagrees with its records", short(json.dumps(doc["summary"]))
            )
        for i, (rec, res) in enumerate(zip(records, results, strict=False)):
            st = res["status"]
            cid = rec["cqc_location_id"]
            if i in bad and st != "rejected":
                self.rec.add("consistency", f"a bad record was answered {st}", f"{via} record {i}")
            if i not in bad and st == "rejected":
                pointers = [e.get("pointer") for e in res.get("errors") or [] if isinstance(e, dict)]
                self.rec.add("consistency", "a good record was rejected", f"{via} {cid}: at {pointers}")
            if st == "accepted" and not res.get("version_id"):
                self.rec.add("contract", "accepted record without version_id", via)
            self.pool.record_sent(cid, Sent(rec["updated_at"], figures(rec), st, via, key, digest, i))

    async def push_race(self) -> None:
        """Two updates of one location racing to two processes: the later must win."""
        pool = self.pool
        region = self.rnd.choice(pool.regions())
        token = self.tokens[f"tracker-{region}"]
        cid = pool.pick(region, 1)[0]
        earlier = pool.mutate(cid, back_s=self.rnd.uniform(20, 40))
        later = pool.mutate(cid, back_s=self.rnd.uniform(0, 10))
        pair = [earlier, later]
        self.rnd.shuffle(pair)
        a, b = self.gateways[0], self.gateways[-1]
        bodies = [json.dumps({"locations": [r]}).encode() for r in pair]
        answers = await asyncio.gather(
            *(self.submit("push-race", g, token, body) for g, body in zip((a, b), bodies, strict=True))
        )
        for rec, ans, body in zip(pair, answers, bodies, strict=True):
            self._judge_push([rec], set(), ans, None, "race", self.body_digest(body, {}))

    async def push_forbidden(self) -> None:
        """A batch naming a location outside the token's regions: 403, nothing applied."""
        pool = self.pool
        region, foreign = self.rnd.sample(pool.regions(), 2)
        good = pool.mutate(pool.pick(region, 1)[0])
        alien = pool.mutate(pool.pick(foreign, 1)[0])
        body = json.dumps({"locations": [good, alien]}).encode()
        await self.submit("push-forbidden", self.gw(), self.tokens[f"tracker-{region}"], body, ok=(403,))
        for rec in (good, alien):
            pool.record_never(rec["cqc_location_id"], rec["updated_at"])

    async def push_check(self) -> None:
        pool = self.pool
        region = self.rnd.choice(pool.regions())
        recs = [pool.mutate(cid) for cid in pool.pick(region, self.rnd.randint(1, 5))]
        res = await self.submit(
            "push-dry-run",
            self.gw(),
            self.tokens[f"tracker-{region}"],
            json.dumps({"locations": recs}).encode(),
            path="/api/v1/submissions/check",
        )
        for rec in recs:
            pool.record_never(rec["cqc_location_id"], rec["updated_at"])
        if res and res[0] == 200:
            doc = json.loads(res[2])
            if doc.get("dry_run") is not True or any(r.get("version_id") for r in doc.get("records", [])):
                self.rec.add("contract", "dry run answer without dry_run or with version ids", "")

    async def push_fhir(self) -> None:
        region = self.rnd.choice(self.pool.regions())
        token = self.tokens[f"fhir-{region}"]
        entries, owners = self._fhir_entries(region)
        bundle = {
            "resourceType": "Bundle",
            "type": self.rnd.choice(["transaction", "batch"]),
            "entry": entries,
        }
        headers = {"Content-Type": FHIR_JSON}
        key = None
        if self.rnd.random() < 0.2:
            key = f"soak-fhir-{uuid.uuid4().hex}"
            headers["Idempotency-Key"] = key
            self.keys_used[key] = f"fhir-{region}"
        target = self.gw()
        body = json.dumps(bundle).encode()
        ans = await self.submit("push-fhir", target, token, body, headers=headers, timeout=120, path="/fhir")
        if key and ans and ans[0] == 200:
            again = await self.submit(
                "push-fhir-replay", self.other(target), token, body, headers=headers, path="/fhir"
            )
            if (
                again
                and again[0] == 200
                and (
                    again[1].get("idempotent-replayed") != "true"
                    or json.loads(again[2]) != json.loads(ans[2])
                )
            ):
                self.rec.add(
                    "consistency",
                    "FHIR retry with its Idempotency-Key not replayed as first answered",
                    f"key={key}",
                )
        digest = self.body_digest(body, headers)
        if ans is None or ans[0] != 200:
            self._record_unapplied(
                [rec for _, rec, _ in owners], ans, "fhir", key, digest, [first for first, _, _ in owners]
            )
            return
        self._judge_fhir(json.loads(ans[2]).get("entry", []), len(entries), owners, key, digest)

    def _fhir_entries(
        self, region: str
    ) -> tuple[list[dict[str, Any]], list[tuple[int, dict[str, Any], bool]]]:
        """PUT entries for a few locations and their services; and per location: its first
        entry's index, its record, and whether it was made bad."""
        from adapters.fhir.outbound.render import LocationSnapshot, render_location, render_services

        rnd = self.rnd
        entries: list[dict[str, Any]] = []
        owners: list[tuple[int, dict[str, Any], bool]] = []
        for cid in self.pool.pick(region, rnd.randint(1, 4)):
            rec = self.pool.mutate(cid)
            rec["active"] = True  # a closed Location's services: as published; keep it simple
            snap = LocationSnapshot(1, datetime.now(UTC), "x", rec)
            resources = [render_location(snap), *render_services(snap)]
            is_bad = len(resources) > 1 and rnd.random() < 0.1
            if is_bad:
                resources[1]["active"] = False  # an inactive service that still has bed counts
            owners.append((len(entries), rec, is_bad))
            for res in resources:
                res["meta"] = {"lastUpdated": rec["updated_at"]}
                request = {"method": "PUT", "url": f"{res['resourceType']}/{res['id']}"}
                entries.append({"resource": res, "request": request})
        return entries, owners

    def _judge_fhir(
        self,
        out: list[dict[str, Any]],
        sent: int,
        owners: list[tuple[int, dict[str, Any], bool]],
        key: str | None,
        digest: str | None = None,
    ) -> None:
        if len(out) != sent:
            self.rec.add(
                "contract", "transaction-response has another number of entries", f"{len(out)} != {sent}"
            )
            return
        for first, rec, is_bad in owners:
            cid = rec["cqc_location_id"]
            resp = out[first]["response"]
            status = resp.get("status", "")
            st = fhir_entry_status(resp)
            if st == "unknown":
                self.rec.add("contract", f"transaction entry status {status}", cid)
            if is_bad and st != "rejected":
                self.rec.add(
                    "consistency",
                    f"FHIR location with an inactive service carrying counts answered {st}",
                    f"{cid}: {status}",
                )
            if not is_bad and st == "rejected":
                self.rec.add("consistency", "a good FHIR location was refused", f"{cid}: {status}")
            self.pool.record_sent(cid, Sent(rec["updated_at"], figures(rec), st, "fhir", key, digest, first))

    # --- reads --------------------------------------------------------------------------
    def any_id(self) -> str:
        pool = self.pool
        region = self.rnd.choice(pool.regions())
        return pool.pick(region, 1)[0]

    async def read_location(self) -> None:
        cid = self.any_id()
        g = self.gw()
        await self.read("read-location", f"{g}/api/v1/locations/{cid}", ok=(200, 404))
        if self.rnd.random() < 0.5:
            await self.read("read-history", f"{g}/api/v1/locations/{cid}/history", ok=(200, 404))

    def search_params(self) -> list[tuple[str, str]]:
        pool = self.pool
        rnd = self.rnd
        q: list[tuple[str, str]] = []
        if rnd.random() < 0.5:
            q += [("postcode", rnd.choice(pool.postcodes)), ("radius_km", str(rnd.choice([5, 10, 25, 50])))]
            if rnd.random() < 0.5:
                q.append(("sort", "distance"))
        elif rnd.random() < 0.5:
            q.append(("region", rnd.choice(pool.regions())))
        else:
            q.append(("local_authority", rnd.choice(pool.local_authorities)))
        for _ in range(rnd.randint(0, 3)):
            q.append(
                rnd.choice(
                    [
                        (
                            "vacancy_type",
                            rnd.choice(VACANCY_TYPES),
                        ),
                        ("accepting_today", rnd.choice(["true", "false"])),
                        ("stay", rnd.choice(["long-term", "short-stay"])),
                        ("max_weekly_price", str(rnd.choice([900, 1100, 1500]))),
                        ("funding", rnd.choice(["private", "local-authority"])),
                        ("updated_within", rnd.choice(["24h", "7d", "any"])),
                        ("out_of_hours", rnd.choice(["true", "false"])),
                        ("sort", rnd.choice(["admittable", "price", "freshness"])),
                        ("provider_type", rnd.choice(["care-home", "community-rehab"])),
                        ("language", "English"),
                        ("notes", "Hoist"),
                    ]
                )
            )
        if not any(k == "sort" for k, _ in q) and rnd.random() < 0.3:
            q.append(("sort", "admittable"))
        q.append(("page_size", str(rnd.choice([10, 50, 100]))))
        q.append(("page", str(rnd.choice([1, 1, 2, 3]))))
        return q

    async def search(self) -> None:
        q = self.search_params()
        res = await self.read("search", f"{self.gw()}/api/v1/vacancies?{urlencode(q)}")
        if res and res[0] == 200:
            doc = json.loads(res[2])
            page_size = int(dict(q)["page_size"])
            results = doc.get("results", [])
            if len(results) > page_size or (doc.get("total") is not None and doc["total"] < len(results)):
                self.rec.add("consistency", "search page larger than page_size or total", urlencode(q))
            if dict(q).get("sort") == "distance":
                d = [r.get("distance_km") for r in results]
                if any(x is None for x in d) or d != sorted(d):
                    self.rec.add("consistency", "sort=distance not in distance order", urlencode(q))
            ids = [r["cqc_location_id"] for r in results]
            if len(ids) != len(set(ids)):
                self.rec.add("consistency", "search page repeats a location", urlencode(q))

    async def export(self) -> None:
        pool = self.pool
        fmt = self.rnd.choice(["csv", "xlsx"])
        q = [("region", self.rnd.choice(pool.regions())), ("format", fmt)]
        if self.rnd.random() < 0.5:
            q.append(("vacancy_type", "general-nursing"))
        res = await self.read("export-" + fmt, f"{self.gw()}/api/v1/vacancies?{urlencode(q)}", timeout=120)
        if res and res[0] == 200:
            if fmt == "csv" and not res[2].startswith(b"\xef\xbb\xbf"):
                self.rec.add("contract", "CSV export without a byte-order mark", urlencode(q))
            if fmt == "csv":
                try:
                    list(csv.reader(io.StringIO(res[2].decode("utf-8-sig"))))
                except (csv.Error, UnicodeDecodeError) as exc:
                    self.rec.add("contract", "CSV export unreadable", repr(exc))
            if fmt == "xlsx" and not res[2].startswith(b"PK"):
                self.rec.add("contract", "xlsx export is not a zip file", urlencode(q))

    async def report(self) -> None:
        rnd = self.rnd
        which = rnd.choice(["occupancy", "occupancy", "unavailable"])
        group_by = rnd.choice(
            ["nhs_region", "local_authority", "icb"] + (["vacancy_type"] if which == "occupancy" else [])
        )
        q = [("group_by", group_by)]
        if which == "occupancy" and rnd.random() < 0.4:
            q.append(
                rnd.choice(
                    [
                        ("stay", "short-stay"),
                        ("accepting_admissions", "true"),
                        ("out_of_hours", "true"),
                        ("provider_type", "community-rehab"),
                    ]
                )
            )
        fmt = rnd.choice(["json", "json", "json", "csv", "xlsx"])
        if fmt != "json":
            q.append(("format", fmt))
        res = await self.read(
            f"report-{which}-{fmt}", f"{self.gw()}/api/v1/reports/{which}?{urlencode(q)}", timeout=120
        )
        if res and res[0] == 200 and fmt == "json":
            doc = json.loads(res[2])
            rows, total = doc.get("rows", []), doc.get("total", {})
            for col, val in total.items():
                if (
                    isinstance(val, int)
                    and not isinstance(val, bool)
                    and rows
                    and all(isinstance(r.get(col), int) for r in rows)
                    and sum(r[col] for r in rows) != val
                    and group_by != "vacancy_type"
                ):
                    self.rec.add(
                        "consistency",
                        f"{which} report rows do not add up to the total ({col})",
                        urlencode(q),
                    )

    async def fhir_search(self) -> None:
        pool = self.pool
        rnd = self.rnd
        rec = pool.records[self.any_id()]
        pc = rec["address"]["postcode"]
        choices = [
            f"Location?address-postalcode={pc.split()[0]}&_count=20",
            f"Location?address-postalcode={pc.split()[0]}&_revinclude=HealthcareService:location&_count=10",
            "HealthcareService?admittable=ge1&_count=50&_include=HealthcareService:location",
            f"HealthcareService?location=Location/{rec['cqc_location_id']}",
            "Organization?_count=50&name=care",
            f"Location?_lastUpdated=ge{utc_stamp(datetime.now(UTC) - timedelta(minutes=5))}&_count=25",
            "HealthcareService?service-type=general-nursing&_count=40&_total=accurate",
            "HealthcareService?active=false&_count=20",
        ]
        path = rnd.choice(choices)
        url = f"{self.gw()}/fhir/{path}"
        seen: set[str] = set()
        for page in range(3):
            res = await self.read("fhir-search", url, timeout=60)
            if not res or res[0] != 200:
                return
            doc = json.loads(res[2])
            for e in doc.get("entry", []):
                if e.get("search", {}).get("mode", "match") != "match":
                    continue
                rid = f"{e['resource']['resourceType']}/{e['resource']['id']}"
                if rid in seen:
                    self.rec.add(
                        "consistency", "FHIR search paging repeated an entry", f"{path} page {page + 1}"
                    )
                seen.add(rid)
            nxt = next_link(doc)
            if not nxt:
                return
            url = nxt
            if not url.startswith("http"):
                url = self.gw() + url
            elif not any(url.startswith(g) for g in self.gateways):
                self.rec.add("contract", "next link names another host", short(url, 120))
                return

    async def fhir_read(self) -> None:
        cid = self.any_id()
        g = self.gw()
        kind = self.rnd.choice(["Location", "HealthcareService", "history"])
        if kind == "Location":
            res = await self.read("fhir-read", f"{g}/fhir/Location/{cid}", ok=(200, 404))
            if res and res[0] == 200 and (etag := res[1].get("etag")):
                again = await self.read(
                    "fhir-read-304",
                    f"{self.other(g)}/fhir/Location/{cid}",
                    ok=(200, 304),
                    headers={"If-None-Match": etag},
                )
                if again and again[0] == 200:
                    newer = json.loads(again[2])["meta"]["versionId"]
                    if f'W/"{newer}"' == etag:
                        self.rec.add("contract", "If-None-Match with the current ETag answered 200", cid)
        elif kind == "HealthcareService":
            vt = self.rnd.choice(VACANCY_TYPES)
            await self.read("fhir-read", f"{g}/fhir/HealthcareService/{cid}-{vt}", ok=(200, 404))
        else:
            await self.read(
                "fhir-instance-history", f"{g}/fhir/Location/{cid}/_history?_count=10", ok=(200, 404)
            )

    async def findings(self) -> None:
        rnd = self.rnd
        q = [
            (
                "kind",
                rnd.choice(
                    [
                        "unknown-to-cqc",
                        "capacity-above-registered",
                        "conflicting-reports",
                        "not-reported",
                        "name-mismatch",
                        "dormant-reporting",
                    ]
                ),
            )
        ]
        if rnd.random() < 0.3:
            q.append(("region", rnd.choice(self.pool.regions())))
        if rnd.random() < 0.2:
            q.append(("format", "csv"))
        await self.read("findings", f"{self.gw()}/api/v1/reconciliation/findings?{urlencode(q)}")

    async def sources(self) -> None:
        g = self.gw()
        await self.read("sources", f"{g}/api/v1/sources")
        if self.rnd.random() < 0.3:
            await self.read("source-runs", f"{g}/api/v1/sources/{self.rnd.choice(['london', 'cqc'])}/runs")

    async def push_log(self) -> None:
        pool = self.pool
        region = self.rnd.choice(pool.regions())
        token = self.tokens[f"tracker-{region}"]
        g = self.gw()
        res = await self.read("push-log", f"{g}/api/v1/submissions?limit=20", token=token)
        if res and res[0] == 200:
            subs = json.loads(res[2]).get("submissions", [])
            if subs:
                await self.read(
                    "push-log-one",
                    f"{self.other(g)}/api/v1/submissions/{self.rnd.choice(subs)['id']}",
                    token=token,
                )

    # --- background tasks ---------------------------------------------------------------
    async def feed_pages(
        self, kind: str, url: str, timeout: float
    ) -> tuple[list[tuple[str, str]], str | None, bool]:
        """Page a ``_history`` feed to its end: the (id, versionId) pairs read, the first
        page's ``meta.lastUpdated`` (the horizon) and whether every page was read."""
        seen: list[tuple[str, str]] = []
        horizon: str | None = None
        next_url: str | None = url
        while next_url:
            res = await self.read(kind, next_url, timeout=timeout)
            if not res or res[0] != 200:
                return seen, horizon, False
            doc = json.loads(res[2])
            horizon = horizon or doc.get("meta", {}).get("lastUpdated")
            seen += [
                (e["resource"]["id"], e["resource"]["meta"]["versionId"])
                for e in doc.get("entry", [])
                if e.get("resource")
            ]
            next_url = next_link(doc)
            if next_url and not next_url.startswith("http"):
                next_url = self.gw() + next_url
        return seen, horizon, True

    async def feed_consumer(self) -> None:
        """mCSD consumer: page Location/_history from the start, then poll with _since set
        to the previous Bundle's meta.lastUpdated. Every version must come exactly once."""
        since = EPOCH
        while True:
            stopping = self.stop.is_set()
            url = f"{self.gw()}/fhir/Location/_history?{urlencode({'_since': since, '_count': 500})}"
            seen, horizon, complete = await self.feed_pages("feed", url, timeout=120)
            self.feed_seen += seen
            if not complete:
                await asyncio.sleep(2)
            elif horizon:
                since = horizon
                self.feed_since = since
            if stopping:
                return
            await self.pause(3)

    async def exporter(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            params: list[tuple[str, str]] = []
            if n % 3 == 0:
                params.append(("_type", "Location"))
            else:
                minutes = self.rnd.choice([1, 3, 10])
                params.append(("_since", utc_stamp(datetime.now(UTC) - timedelta(minutes=minutes))))
                if self.rnd.random() < 0.5:
                    params.append(("_type", "Location,HealthcareService"))
            res = await self.read(
                "export-kickoff",
                f"{self.gw()}/fhir/$export?{urlencode(params)}",
                ok=(202,),
                headers={"Prefer": "respond-async"},
            )
            if res and res[0] == 202:
                await self.export_job(self._path(res[1].get("content-location", "")))
            await self.pause(self.rnd.uniform(15, 30))

    async def export_job(self, status_path: str) -> None:
        """Poll a bulk export to its manifest and check its files, or cancel it."""
        cancel = self.rnd.random() < 0.1
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not self.stop.is_set():
            poll_gw = self.gw()
            poll = await self.read("export-poll", poll_gw + status_path, ok=(200, 202))
            if cancel:
                await self.req(
                    "export-cancel", "DELETE", poll_gw + status_path, token=self.tokens["reader"], ok=(202,)
                )
                await self.read("export-poll-cancelled", self.gw() + status_path, ok=(404,))
                return
            if poll is None or poll[0] not in (200, 202):
                return
            if poll[0] == 200:
                for out in json.loads(poll[2]).get("output", []):
                    await self.check_export_file(out)
                return
            await asyncio.sleep(1.5)

    async def check_export_file(self, out: dict[str, Any]) -> None:
        f = await self.read("export-file", self.gw() + self._path(out["url"]), timeout=300)
        if not f or f[0] != 200:
            return
        lines = [ln for ln in f[2].split(b"\n") if ln.strip()]
        if len(lines) != out.get("count"):
            self.rec.add(
                "consistency",
                "$export file line count differs from the manifest",
                f"{out['type']}: {len(lines)} != {out.get('count')}",
            )
        ids = [json.loads(ln)["id"] for ln in lines]
        if len(ids) != len(set(ids)):
            self.rec.add("consistency", "$export file repeats a resource", out["type"])

    async def cli_runs(self) -> None:
        """A few CLI commands against the same database while the servers run."""
        env = self.server_env()
        plan = [("sync", "london"), ("sources", "--json"), ("reconcile",), ("sync", "cqc")]
        await asyncio.sleep(20)
        for cmd in plan:
            if self.stop.is_set():
                return
            await self.cli_run(cmd, env)
            await asyncio.sleep(self.args.duration / (len(plan) + 1))

    async def cli_run(self, cmd: tuple[str, ...], env: dict[str, str]) -> None:
        what = f"gateway {' '.join(cmd)}"
        self.rec.counts["cli-" + cmd[0]] += 1
        started = datetime.now(UTC)
        code, out, err = await run_gateway_cli(cmd, env, self.folder, timeout_s=240)
        if code is None:
            self.rec.add("timeout", f"cli {' '.join(cmd)} took over 240 s")
            return
        text = (out + err).decode("utf-8", "replace")
        ok = {0, 1} if cmd[0] in ("sync", "reconcile", "sources") else {0}
        self.rec.statuses["cli-" + cmd[0]][code] += 1
        if (
            code == 2
            and "the database does not answer" in text
            and self.args.chaos
            and (self.in_chaos(started) or self.in_chaos(datetime.now(UTC)))
        ):
            # --chaos: a command that found the database locked or restarting says so, as
            # it should, and exits 2 (counted apart, as the servers' 503s are)
            self.rec.add("chaos-cli", f"{what} exit 2 (the database did not answer)", output_gist(text))
        elif code not in ok or "Traceback" in text:
            self.rec.add("cli", f"{what} exit {code}", output_gist(text))
        elif code == 1 and cmd[0] in ("sync", "reconcile") and "another gateway process" not in text:
            # A sync that ran and failed (London faults) is allowed; note it.
            self.rec.note(f"{what} exit 1: {output_gist(text)}")

    async def watchdog(self) -> None:
        while not self.stop.is_set():
            for proc in self.stack.procs:
                if proc.name not in self.down and proc.process.poll() is not None:
                    self.rec.add("crash", f"{proc.name} exited with {proc.process.returncode}")
            await self.pause(2)

    async def worker(self, ops: Sequence[tuple[Callable[[], Awaitable[None]], float]]) -> None:
        funcs = [f for f, _ in ops]
        weights = [w for _, w in ops]
        while not self.stop.is_set():
            op = self.rnd.choices(funcs, weights)[0]
            try:
                await op()
            except Exception as exc:  # noqa: BLE001 - a harness bug: recorded as a finding, the load goes on
                self.rec.add("harness", f"{op.__name__}: {type(exc).__name__}", traceback.format_exc()[-800:])

    # --- chaos (--chaos) ----------------------------------------------------------------
    def body_digest(self, body: bytes, headers: dict[str, str]) -> str | None:
        """With --chaos: the SHA-256 of a push's body as the gateway keeps it (decompressed),
        to find the push in its log; None otherwise or when it does not decompress."""
        if not self.args.chaos:
            return None
        if headers.get("Content-Encoding") == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError):
                return None
        return hashlib.sha256(body).hexdigest()

    def digest(self, batch: Batch) -> str | None:
        return self.body_digest(batch.body, batch.headers)

    async def _attempt(
        self, method: str, url: str, data: bytes | None, headers: dict[str, str], timeout: float
    ) -> Answer | str:
        """One HTTP exchange: the answer, or what stopped it (``timeout``, an exception's name)."""
        import aiohttp

        try:
            async with self.http.request(
                method, url, data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp:
                body = await resp.read()
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, body
        except TimeoutError:
            return "timeout"
        except aiohttp.ClientError as exc:
            return type(exc).__name__

    async def chaos_req(
        self,
        kind: str,
        method: str,
        url: str,
        *,
        token: str | None,
        ok: tuple[int, ...],
        data: bytes | None,
        headers: dict[str, str] | None,
        timeout: float,
    ) -> Answer | None:
        """A request as a real tracker or client makes it while things fail: 503 and 429
        retried after their Retry-After, transport errors and time-outs retried with the
        same body and headers (so the same Idempotency-Key), a push answered 409 "still
        being processed" asked again for a while, a revoked token swapped for its successor.
        Only the final outcome is judged; every retry is counted."""
        h = dict(headers or {})
        key = h.get("Idempotency-Key")
        is_push = method == "POST" and urlsplit(url).path in ("/api/v1/submissions", "/fhir")
        self.rec.counts[kind] += 1
        deadline = time.monotonic() + 180
        conflict_deadline = time.monotonic() + 45
        unanswered = False
        last: Answer | str = "timeout"
        while True:
            if token:
                while token in self.replaced:
                    token = self.replaced[token]
                h["Authorization"] = f"Bearer {token}"
            started = time.monotonic()
            last = await self._attempt(method, url, data, h, timeout)
            wait = 0.0
            if isinstance(last, str):
                unanswered = True
                self.rec.statuses[kind][-1 if last == "timeout" else -2] += 1
                self.chaos_counts[f"retried {last}"] += 1
                wait = 1.5
            else:
                status, rh, body = last
                self.rec.latency[kind].append(time.monotonic() - started)
                self.rec.statuses[kind][status] += 1
                if status in ok:
                    break
                if status == 429 or (status == 503 and "retry-after" in rh):
                    self.chaos_counts[f"retried {status}"] += 1
                    wait = min(float(rh.get("retry-after", "5") or 5), 15.0)
                elif status == 409 and key and time.monotonic() < conflict_deadline:
                    self.chaos_counts["retried 409 (still being processed)"] += 1
                    wait = 2.0
                elif status == 401 and token and (token in self.retired or token in self.replaced):
                    self.chaos_counts["401 for a retired token (swapped)"] += 1
                    if token not in self.replaced:
                        wait = 1.0
                else:
                    break
            if time.monotonic() + wait > deadline:
                break
            await asyncio.sleep(wait)
        conflicted = not isinstance(last, str) and last[0] == 409
        if is_push and data is not None and (unanswered or conflicted):
            digest = self.body_digest(data, h)
            if digest:
                self.unsure.add(digest)
        if is_push and key and token and (unanswered or (not isinstance(last, str) and last[0] == 409)):
            self.keyed_requests[key] = (url, token, data or b"", dict(headers or {}))
        if isinstance(last, str):
            self.rec.add(
                "timeout", f"{kind}: no answer after retrying 180 s ({last})", f"{method} {self._path(url)}"
            )
            return None
        status, rh, body = last
        if status not in ok:
            if status == 409 and key:
                cls = "chaos-409"  # judged at the end (abandoned pushes)
            elif status == 429 or (status == 503 and "retry-after" in rh):
                cls = "retryable"
            elif status >= 500:
                cls = "5xx"
            else:
                cls = "unexpected-4xx"
            self.rec.add(cls, f"{kind}: HTTP {status}", f"{method} {self._path(url)}: {problem_title(body)}")
        return last

    def event(self, kind: str, detail: str = "") -> ChaosEvent:
        ev = ChaosEvent(kind, detail, datetime.now(UTC))
        self.events.append(ev)
        self.chaos_counts[f"event {kind}"] += 1
        self.rec.note(f"chaos [{time.monotonic() - self.t0:4.0f} s] {kind} {detail}")
        return ev

    def db_exec(self, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
        """Run one statement on the gateway's database from the harness (its own engine)."""
        from sqlalchemy import text

        from gateway.store.db import create_engine

        engine = create_engine(self.database_url)
        try:
            with engine.begin() as conn:
                result = conn.execute(text(sql), params or {})
                return list(result.all()) if result.returns_rows else []
        finally:
            engine.dispose()

    def gw_pid_holding(self, lease: str) -> int | None:
        """The pid of the gateway process holding ``lease`` now, if any."""
        from sqlalchemy import select

        from gateway.store.db import create_engine
        from gateway.store.tables import SyncLease, table

        t = table(SyncLease)
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                row = conn.execute(select(t.c.holder, t.c.expires_at).where(t.c.source == lease)).first()
        finally:
            engine.dispose()
        if row is None:
            return None
        expires = row[1] if row[1].tzinfo else row[1].replace(tzinfo=UTC)
        if expires < datetime.now(UTC):
            return None
        try:
            return int(str(row[0]).split(":")[1])
        except (IndexError, ValueError):
            return None

    async def bounce(self, proc: Proc, sig: signal.Signals, ev: ChaosEvent) -> None:
        """Stop a gateway with ``sig``, wait a few seconds, start it again on its port."""
        self.down.add(proc.name)
        began = time.monotonic()
        proc.process.send_signal(sig)
        try:
            code = await asyncio.to_thread(proc.process.wait, 90)
        except subprocess.TimeoutExpired:
            self.rec.add("chaos", f"{proc.name} did not stop within 90 s of {sig.name}")
            proc.process.kill()
            code = await asyncio.to_thread(proc.process.wait, 30)
        took = time.monotonic() - began
        ev.detail += f"; exited {code} after {took:.1f} s"
        # uvicorn re-raises the SIGTERM it caught once it has shut down gracefully: -15
        if sig == signal.SIGTERM and code not in (0, -signal.SIGTERM):
            self.rec.add("chaos", f"{proc.name} exited {code} on SIGTERM (expected 0 or -15)")
        await asyncio.sleep(self.rnd.uniform(2, 6))
        new = self.stack.restart(proc)
        self.gw_procs[self.gw_procs.index(proc)] = new
        try:
            await asyncio.to_thread(self.stack.wait_up, new, "/readyz", 180)
        except RuntimeError as exc:
            self.rec.add("chaos", f"{proc.name} did not come back after {sig.name}", str(exc)[-500:])
        self.down.discard(proc.name)
        ev.end = datetime.now(UTC)
        ev.detail += f"; back after {time.monotonic() - began:.0f} s"

    async def chaos_kill(self, mode: str) -> None:
        target: Proc | None = None
        what = mode
        pending: asyncio.Task[None] | None = None
        if mode in ("london", "reconcile"):
            lease = "london" if mode == "london" else "reconcile"
            deadline = time.monotonic() + (40 if mode == "london" else 90)
            while time.monotonic() < deadline and target is None:
                pid = await asyncio.to_thread(self.gw_pid_holding, lease)
                target = next((p for p in self.gw_procs if p.process.pid == pid), None)
                await asyncio.sleep(0.2)
            if target is None:
                what = f"{mode} (no run caught; a random process instead)"
        elif mode == "export":
            target = self.rnd.choice(self.gw_procs)
            res = await self.read(
                "chaos-export-kickoff",
                f"{target.url}/fhir/$export",
                ok=(202,),
                headers={"Prefer": "respond-async"},
            )
            if res and res[0] == 202:
                self.killed_exports.append((self._path(res[1].get("content-location", "")), time.time()))
            await asyncio.sleep(self.rnd.uniform(0.05, 0.5))
        elif mode == "push":
            target = self.rnd.choice(self.gw_procs)
            pending = asyncio.create_task(self.big_push(target.url))
            await asyncio.sleep(self.rnd.uniform(0.3, 1.5))
        if target is None:
            target = self.rnd.choice(self.gw_procs)
        ev = self.event("SIGKILL", f"{target.name} ({what})")
        await self.bounce(target, signal.SIGKILL, ev)
        if pending is not None:
            await pending

    async def big_push(self, gateway: str) -> None:
        """A national-sized batch (a few hundred locations of one region, gzip, with a key)."""
        pool, rnd = self.pool, self.rnd
        region = rnd.choice(pool.regions())
        source = f"tracker-{region}"
        ids = rnd.sample(pool.by_region[region], min(400, len(pool.by_region[region])))
        records = [pool.mutate(cid) for cid in sorted(ids)]
        plain = json.dumps({"sent_at": utc_stamp(datetime.now(UTC)), "locations": records}).encode()
        key = f"soak-chaos-{uuid.uuid4().hex}"
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip", "Idempotency-Key": key}
        self.keys_used[key] = source
        batch = Batch(self.tokens[source], records, set(), gzip.compress(plain), headers, key)
        ans = await self.submit(
            "chaos-big-push", gateway, batch.token, batch.body, headers=headers, timeout=120
        )
        self._judge_push(records, set(), ans, key, "chaos-big", self.digest(batch))

    async def chaos_term(self) -> None:
        target = self.rnd.choice(self.gw_procs)
        pending = asyncio.create_task(self.big_push(target.url))
        await asyncio.sleep(self.rnd.uniform(0.2, 1.0))
        ev = self.event("SIGTERM", target.name)
        await self.bounce(target, signal.SIGTERM, ev)
        await pending

    def pg_ctl(self, *args: str) -> None:
        a = self.args
        cmd = ["runuser", "-u", a.pg_os_user, "--", f"{a.pg_bin}/pg_ctl", "-D", a.pg_data, *args]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            self.rec.add("chaos", f"pg_ctl {args[0]} failed ({out.returncode})", short(out.stderr, 300))

    async def chaos_database(self, mode: str) -> None:
        a = self.args
        if self.db_label == "postgres":
            if mode == "fast":
                ev = self.event("pg-restart-fast")
                await asyncio.to_thread(
                    self.pg_ctl, "restart", "-m", "fast", "-w", "-l", f"{a.pg_data}/server.log"
                )
            else:
                ev = self.event("pg-stop-immediate")
                await asyncio.to_thread(self.pg_ctl, "stop", "-m", "immediate", "-w")
                await asyncio.sleep(self.rnd.uniform(4, 10))
                await asyncio.to_thread(
                    self.pg_ctl, "start", "-w", "-l", f"{a.pg_data}/server.log", "-o", a.pg_opts
                )
            ev.end = datetime.now(UTC)
            return
        ev = self.event("sqlite-write-lock", "BEGIN IMMEDIATE held 40 s")
        await asyncio.to_thread(self.hold_sqlite_lock, 40.0)
        ev.end = datetime.now(UTC)

    def hold_sqlite_lock(self, seconds: float) -> None:
        import sqlite3

        path = self.database_url.removeprefix("sqlite:///")
        conn = sqlite3.connect(path, timeout=120, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            time.sleep(seconds)
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    async def gateway_cli(self, *args: str) -> str:
        env = self.stack.base_env() | {"GATEWAY_DATABASE_URL": self.database_url}
        code, out, err = await run_gateway_cli(args, env, self.folder)
        if code != 0:
            self.rec.add("chaos", f"gateway {args[0]} {args[1]} exit {code}", output_gist(err.decode()))
            return ""  # nothing to take from a command that failed (a token, say)
        return out.decode()

    async def chaos_token(self, mode: str) -> None:
        """Rotate a tracker's token in use (mint, hand over, revoke the old by id), or
        expire one (an expiry in the past written to the database); then check the old
        one is refused everywhere once the auth cache has passed."""
        region = self.rnd.choice(self.pool.regions())
        name = f"tracker-{region}" if mode == "revoke" else f"fhir-{region}"
        old = self.tokens[name]
        old_id = self.token_ids[name]
        ev = self.event(f"token-{mode}", name)
        extra = ["--expires-in-days", "30"] if mode == "expire" else []
        out = await self.gateway_cli(
            "token", "create", "--name", name, "--scopes", "submit", "--regions", region, *extra
        )
        lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
        if not lines:
            return
        new = lines[-1]
        self.tokens[name] = new
        self.retired.add(old)
        if mode == "revoke":
            await self.gateway_cli("token", "revoke", old_id)
        else:
            from gateway.store.tables import utcnow

            self.db_exec(
                "UPDATE api_token SET expires_at = :t WHERE id = :id",
                {"t": self.sql_time(utcnow() - timedelta(minutes=1)), "id": old_id},
            )
        self.replaced[old] = new
        self.token_ids[name] = ""
        await asyncio.sleep(6.5)  # GATEWAY_AUTH_CACHE_S (5) has passed
        for proc in list(self.gw_procs):
            for label, tok, want in (("old", old, 401), ("new", new, 200)):
                r = await self._attempt(
                    "GET",
                    f"{proc.url}/api/v1/submissions?limit=1",
                    None,
                    {"Authorization": f"Bearer {tok}"},
                    30,
                )
                got = r if isinstance(r, str) else r[0]
                if got != want and got != 503:
                    self.rec.add(
                        "chaos", f"{mode}d token: the {label} one answered {got} at {proc.name}, not {want}"
                    )
                elif (
                    label == "old" and mode == "expire" and not isinstance(r, str) and b"expired" not in r[2]
                ):
                    self.rec.add("chaos", "an expired token's 401 does not say it expired", proc.name)
        ev.end = datetime.now(UTC)

    def sql_time(self, moment: datetime) -> Any:
        """A UTC instant as the store writes it (naive UTC on SQLite)."""
        return moment.replace(tzinfo=None) if self.db_label == "sqlite" else moment

    async def chaos_short_token(self) -> None:
        """A token minted to expire in a few seconds: refused from its expiry on, by every
        process, although each trusted it moments before (no cache past the expiry)."""
        ev = self.event("token-short-expiry", "read token, --expires-in-days 0.0001 (8.6 s)")
        out = await self.gateway_cli(
            "token", "create", "--name", "soak-short", "--scopes", "read", "--expires-in-days", "0.0001"
        )
        lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
        if not lines:
            return
        tok = lines[-1]
        minted = time.monotonic()
        late: Counter[str] = Counter()
        while time.monotonic() - minted < 14:
            for proc in list(self.gw_procs):
                r = await self._attempt(
                    "GET", f"{proc.url}/api/v1/sources", None, {"Authorization": f"Bearer {tok}"}, 10
                )
                age = time.monotonic() - minted
                if not isinstance(r, str) and r[0] == 200 and age > 8.64 + 0.5:
                    late[proc.name] += 1
            await asyncio.sleep(0.5)
        for name, n in late.items():
            self.rec.add(
                "chaos", f"a token was taken after its expiry at {name}", f"{n} answers 200 past expiry"
            )
        ev.end = datetime.now(UTC)

    async def chaos_bad_bodies(self) -> None:
        """Broken bodies, each sent twice with one Idempotency-Key: truncated gzip, a body
        over the size limit (as sent, and once decompressed), a wrong Content-Type, invalid
        JSON, a FHIR Bundle of the wrong type. Each is refused (never a 5xx), and the retry
        is refused the same way (never a 409: no key is left held)."""
        ev = self.event("bad-bodies")
        pool, rnd = self.pool, self.rnd
        region = rnd.choice(pool.regions())
        tok, ftok = self.tokens[f"tracker-{region}"], self.tokens[f"fhir-{region}"]
        recs = [pool.mutate(cid) for cid in pool.pick(region, 3)]
        for made in recs:
            pool.record_never(made["cqc_location_id"], made["updated_at"])
        good = json.dumps({"locations": recs}).encode()
        limit = 32 * 1024 * 1024
        bomb = gzip.compress(b"{" + b" " * (limit + 1024) + b"}", compresslevel=9)
        entries, owners = self._fhir_entries(region)
        for _first, rec, _bad in owners:
            pool.record_never(rec["cqc_location_id"], rec["updated_at"])
        wrong_type = json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}).encode()
        bundle = json.dumps({"resourceType": "Bundle", "type": "batch", "entry": entries}).encode()
        cases: list[tuple[str, str, str, bytes, dict[str, str], tuple[int, ...]]] = [
            (
                "truncated-gzip",
                "/api/v1/submissions",
                tok,
                gzip.compress(good)[:-25],
                {"Content-Encoding": "gzip"},
                (400,),
            ),
            ("gzip-over-limit", "/api/v1/submissions", tok, bomb, {"Content-Encoding": "gzip"}, (413,)),
            ("invalid-json", "/api/v1/submissions", tok, good[:-7] + b"}{,", {}, (400,)),
            ("fhir-wrong-content-type", "/fhir", ftok, bundle, {"Content-Type": "text/plain"}, (415,)),
            ("fhir-wrong-bundle-type", "/fhir", ftok, wrong_type, {"Content-Type": FHIR_JSON}, (400, 422)),
            ("fhir-invalid-json", "/fhir", ftok, bundle[:-3], {"Content-Type": FHIR_JSON}, (400,)),
        ]
        for name, path, token, body, extra, want in cases:
            g = self.gw()
            headers = {
                "Content-Type": "application/json",
                **extra,
                "Idempotency-Key": f"soak-bad-{uuid.uuid4().hex}",
            }
            for attempt in ("first", "retry"):
                r = await self._attempt(
                    "POST", g + path, body, headers | {"Authorization": f"Bearer {token}"}, 60
                )
                self.rec.counts[f"bad-{name}"] += 1
                got = r if isinstance(r, str) else r[0]
                if not isinstance(r, str):
                    self.rec.statuses[f"bad-{name}"][r[0]] += 1
                if got not in want and got != 503:
                    detail = problem_title(r[2]) if not isinstance(r, str) else ""
                    self.rec.add(
                        "chaos", f"bad body {name} ({attempt}) answered {got}, expected {want}", detail
                    )
        # A body over the limit as sent, with its Content-Length: refused before reading.
        over = b"[" + b" " * (limit + 16) + b"]"
        r = await self._attempt(
            "POST",
            self.gw() + "/api/v1/submissions",
            over,
            {"Content-Type": "application/json", "Authorization": f"Bearer {tok}"},
            120,
        )
        self.rec.counts["bad-over-limit"] += 1
        got = r if isinstance(r, str) else r[0]
        if got != 413:
            self.rec.add("chaos", f"bad body over-limit answered {got}, expected 413")
        # A native push with a wrong Content-Type: the README names none for the native API.
        wrong = [pool.mutate(cid) for cid in pool.pick(region, 2)]
        body = json.dumps({"locations": wrong}).encode()
        ans = await self.submit(
            "bad-native-text-plain",
            self.gw(),
            tok,
            body,
            headers={"Content-Type": "text/plain"},
            ok=(200, 415),
        )
        self._judge_push(wrong, set(), ans, None, "text/plain", self.body_digest(body, {}))
        ev.end = datetime.now(UTC)

    async def chaos_loop(self) -> None:
        """The chaos events, spread over the load at random moments."""
        plan: list[Callable[[], Awaitable[None]]] = [
            lambda: self.chaos_kill("push"),
            lambda: self.chaos_kill("london"),
            lambda: self.chaos_kill("reconcile"),
            lambda: self.chaos_kill("random"),
            self.chaos_term,
            self.chaos_term,
            lambda: self.chaos_token("revoke"),
            lambda: self.chaos_token("expire"),
            self.chaos_short_token,
            self.chaos_bad_bodies,
            self.chaos_bad_bodies,
        ]
        plan += (
            [lambda: self.chaos_database("fast"), lambda: self.chaos_database("immediate")]
            if (self.db_label == "postgres")
            else [lambda: self.chaos_database("lock")]
        )
        self.rnd.shuffle(plan)
        plan.insert(0, lambda: self.chaos_kill("export"))  # first: its job is finished by a poll 5 min on
        end = self.t0 + self.args.duration * 0.85  # every step begins before then
        await self.pause(10)
        for n, step in enumerate(plan):
            if self.stop.is_set():
                break
            try:
                await step()
            except Exception:  # noqa: BLE001 - a harness bug: recorded, the chaos goes on
                self.rec.add("harness", "chaos step failed", traceback.format_exc()[-800:])
            slot = (end - time.monotonic()) / max(1, len(plan) - n - 1)
            await self.pause(max(1.0, slot * self.rnd.uniform(0.5, 1.2)))
        self.rec.note(f"chaos: {len(self.events)} events")

    # --- chaos: end checks --------------------------------------------------------------
    async def chaos_checks(self) -> None:
        """After the chaos, with every process back and the load stopped."""
        await self.check_ready()
        await self.check_abandoned()
        self.resolve_unsure()
        self.check_runs_closed()
        await self.check_killed_exports()

    async def check_ready(self) -> None:
        for proc in self.gw_procs:
            r = await self._attempt("GET", f"{proc.url}/readyz", None, {}, 30)
            ready = not isinstance(r, str) and r[0] == 200 and json.loads(r[2]).get("status") == "ready"
            if not ready:
                self.rec.add(
                    "chaos",
                    f"/readyz not ready at {proc.name} after the chaos",
                    str(r if isinstance(r, str) else r[0]),
                )
        self.rec.note(f"/readyz checked on {len(self.gw_procs)} processes")

    def near_fault(self, moment: datetime) -> str | None:
        """The kill or database fault a push received at ``moment`` may have been cut by."""
        for ev in self.events:
            if ev.kind in ("SIGKILL", "pg-restart-fast", "pg-stop-immediate", "sqlite-write-lock"):
                end = ev.end or ev.start
                if ev.start - timedelta(seconds=150) <= moment <= end + timedelta(seconds=5):
                    return ev.kind
        return None

    async def check_abandoned(self) -> None:
        """Pushes kept but never answered: each must come from a kill or a database fault,
        and (README, abandoned pushes) its key answers 409 until 10 minutes have passed,
        then a retry is processed afresh. The gateway offers no setting for the 10 minutes,
        so the rule is checked by moving the kept push's ``received_at`` back 11 minutes."""
        rows = await asyncio.to_thread(
            self.db_exec,
            "SELECT id, source, idempotency_key, request_hash, received_at FROM submission"
            " WHERE status_code IS NULL",
        )
        self.rec.note(f"abandoned pushes (kept, never answered): {len(rows)}")
        for sid, source, key, _digest, received in rows:
            at = datetime.fromisoformat(received) if isinstance(received, str) else received
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            cause = self.near_fault(at)
            self.rec.note(
                f"  push {sid} of {source} at {utc_stamp(at)}: key {'yes' if key else 'no'}, near {cause}"
            )
            if cause is None:
                self.rec.add(
                    "chaos",
                    "a push was kept and never answered, with no kill or database fault near",
                    f"{sid} of {source} at {at}",
                )
        tried = 0
        for sid, source, key, _digest, _received in rows:
            if not key or key not in self.keyed_requests or tried >= 4:
                continue
            url, token, body, headers = self.keyed_requests[key]
            if token in self.retired:
                self.rec.note(f"  abandoned key of {source}: its token was retired; not retried")
                continue
            tried += 1
            before = await self._attempt(
                "POST", url, body, headers | {"Authorization": f"Bearer {token}"}, 120
            )
            got = before if isinstance(before, str) else before[0]
            if got != 409:
                self.rec.add(
                    "chaos",
                    f"a held key (push never answered) answered {got} before 10 minutes, not 409",
                    f"{sid}",
                )
            await asyncio.to_thread(
                self.db_exec,
                "UPDATE submission SET received_at = :t WHERE id = :id",
                {"t": self.sql_time(at - timedelta(minutes=11)), "id": sid},
            )
            parts = urlsplit(url)
            after = await self.submit(
                "chaos-abandoned-retry",
                f"{parts.scheme}://{parts.netloc}",
                token,
                body,
                headers=headers,
                timeout=120,
                path=parts.path,
            )
            if after and after[0] == 200 and after[1].get("idempotent-replayed") == "true":
                self.rec.add(
                    "chaos",
                    "retry of an abandoned push (received 11 min ago) was replayed, not processed afresh",
                    sid,
                )
            old = await asyncio.to_thread(
                self.db_exec,
                "SELECT status_code, idempotency_key, response FROM submission WHERE id = :id",
                {"id": sid},
            )
            if old:
                status_code, still_key, response = old[0]
                doc = json.loads(response) if isinstance(response, str) else (response or {})
                if status_code != 500 or still_key is not None or doc.get("error") != "Abandoned":
                    self.rec.add(
                        "chaos",
                        "an abandoned push's log entry does not say so",
                        f"{sid}: status {status_code}, key kept {still_key is not None}, {doc.get('error')}",
                    )
            again = await self._attempt(
                "POST", url, body, headers | {"Authorization": f"Bearer {token}"}, 120
            )
            if isinstance(again, str) or again[0] != 200 or again[1].get("idempotent-replayed") != "true":
                self.rec.add(
                    "chaos", "retry after an abandoned push was processed afresh is not replayed", f"{sid}"
                )
            self.rec.note(
                f"  abandoned key of {source} retried: before {got}, after {after[0] if after else None}"
            )

    def resolve_unsure(self) -> None:
        """Every push some attempt of which went unanswered (killed, time-out, connection
        lost) is judged by the gateway's log of pushes (all kept pushes with its body's
        digest): a record is applied if a push answered 200 accepted it, and none of a push
        that no 200 answered may be held (all its records or none; a key applied once)."""
        sents = [s for lst in self.pool.sent.values() for s in lst if s.digest and s.digest in self.unsure]
        digests = sorted({s.digest for s in sents if s.digest})
        rows: dict[str, list[tuple[int | None, dict[str, Any]]]] = defaultdict(list)
        for i in range(0, len(digests), 200):
            part = digests[i : i + 200]
            names = ", ".join(f":d{j}" for j in range(len(part)))
            for digest, status_code, response in self.db_exec(
                f"SELECT request_hash, status_code, response FROM submission WHERE request_hash IN ({names})",
                {f"d{j}": d for j, d in enumerate(part)},
            ):
                doc = json.loads(response) if isinstance(response, str) else (response or {})
                rows[digest].append((status_code, doc))
        changed: Counter[str] = Counter()
        for s in sents:
            assert s.digest is not None and s.index is not None
            answered = [doc for code, doc in rows.get(s.digest, []) if code == 200]
            statuses = []
            for doc in answered:
                if "records" in doc:
                    recs = doc["records"]
                    statuses.append(recs[s.index]["status"] if s.index < len(recs) else "unknown")
                else:
                    entries = doc.get("entry", [])
                    statuses.append(
                        fhir_entry_status(entries[s.index]["response"])
                        if s.index < len(entries)
                        else "unknown"
                    )
            if statuses.count("accepted") > 1:
                self.rec.add(
                    "consistency", "a record was accepted by two pushes of one body", f"{s.via} key={s.key}"
                )
            new = "accepted" if "accepted" in statuses else (statuses[0] if statuses else "refused")
            changed[f"{s.status}->{new}"] += 1
            s.status = new
        kept = Counter(len(rows.get(d, [])) for d in digests)
        self.rec.note(
            f"unsure pushes: {len(digests)} (kept rows per push: {dict(kept)}); "
            f"records resolved: {dict(changed)}"
        )

    def check_runs_closed(self) -> None:
        rows = self.db_exec("SELECT source, status, COUNT(*) FROM sync_run GROUP BY source, status")
        self.rec.note("sync runs: " + ", ".join(f"{s}:{st}={n}" for s, st, n in sorted(rows)))
        for source, status, n in rows:
            if status == "running":
                self.rec.add("chaos", f"{n} {source} run(s) still running after the chaos and the quiet")

    async def check_killed_exports(self) -> None:
        for path, started in self.killed_exports:
            deadline = started + 6.5 * 60
            last: Answer | str = "none"
            while True:
                last = await self._attempt(
                    "GET", self.gw() + path, None, {"Authorization": f"Bearer {self.tokens['reader']}"}, 60
                )
                if isinstance(last, str) or last[0] != 202 or time.time() > deadline:
                    break
                await asyncio.sleep(5)
            got = last if isinstance(last, str) else last[0]
            self.rec.note(f"$export whose process was killed: {got}")
            if got != 200:
                self.rec.add(
                    "chaos", f"$export whose process was killed while counting answered {got} at the end"
                )

    def log_in_chaos(self, stamp: str | None) -> bool:
        if not stamp:
            return False
        try:
            at = as_instant(stamp)
        except ValueError:
            return False
        return self.in_chaos(at)

    def in_chaos(self, at: datetime) -> bool:
        """Whether ``at`` falls in a fault, or up to 90 s after it."""
        for ev in self.events:
            end = ev.end or ev.start
            if ev.start - timedelta(seconds=3) <= at <= end + timedelta(seconds=90):
                return True
        return False

    # --- phases -------------------------------------------------------------------------
    async def load_demo(self) -> None:
        """Push every region's demo batches through the push API (gzip, Idempotency-Key),
        alternating processes, two regions at a time."""
        pool = self.pool
        sem = asyncio.Semaphore(2)

        async def region_push(i: int, region: str) -> None:
            async with sem:
                for path in pool.files[region]:
                    raw = path.read_bytes()
                    res = await self.submit(
                        "load-demo",
                        self.gateways[i % len(self.gateways)],
                        self.tokens[f"tracker-{region}"],
                        gzip.compress(raw),
                        headers={
                            "Content-Type": "application/json",
                            "Content-Encoding": "gzip",
                            "Idempotency-Key": hashlib.sha256(raw).hexdigest(),
                        },
                        timeout=600,
                    )
                    if res and res[0] == 200:
                        s = json.loads(res[2])["summary"]
                        self.rec.note(f"demo {path.name}: {s}")

        await asyncio.gather(*(region_push(i, r) for i, r in enumerate(pool.regions())))

    async def run_load(self) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=connector) as http:
            self.http = http
            t = time.monotonic()
            await self.load_demo()
            self.rec.note(f"demo data pushed in {time.monotonic() - t:.0f} s")
            ops = [
                (self.push_native, 22),
                (self.push_race, 5),
                (self.push_fhir, 8),
                (self.push_forbidden, 1),
                (self.push_check, 2),
                (self.read_location, 12),
                (self.search, 18),
                (self.export, 2),
                (self.report, 5),
                (self.fhir_search, 8),
                (self.fhir_read, 8),
                (self.findings, 3),
                (self.sources, 3),
                (self.push_log, 2),
            ]
            self.t0 = time.monotonic()
            background = [
                asyncio.create_task(self.feed_consumer()),
                asyncio.create_task(self.exporter()),
                asyncio.create_task(self.cli_runs()),
                asyncio.create_task(self.watchdog()),
            ]
            if self.args.chaos:
                background.append(asyncio.create_task(self.chaos_loop()))
            workers = [asyncio.create_task(self.worker(ops)) for _ in range(self.args.clients)]
            last = time.monotonic()
            while time.monotonic() - self.t0 < self.args.duration:
                await asyncio.sleep(1)
                if time.monotonic() - last >= 30:
                    last = time.monotonic()
                    total = sum(self.rec.counts.values())
                    bad = sum(self.rec.finding_counts.values())
                    print(
                        f"  [{time.monotonic() - self.t0:4.0f} s] {total} requests, {bad} findings",
                        flush=True,
                    )
            self.stop.set()
            await asyncio.gather(*workers)
            for task in background:
                try:
                    await asyncio.wait_for(task, timeout=300)
                except TimeoutError:
                    task.cancel()
                    self.rec.add("harness", "a background task did not stop in time")
            self.rec.note(f"load stopped after {time.monotonic() - self.t0:.0f} s")
            await self.final_checks()

    # --- oracles ------------------------------------------------------------------------
    async def wait_quiet(self) -> None:
        """Faults off, London's providers and the registry stop changing; then wait for a
        London run and a CQC run that started after that to succeed, and no run under way:
        the oracles compare a store nobody writes any more."""
        import httpx

        httpx.post(f"{self.london_url}/_soak/calm", timeout=10)
        httpx.post(f"{self.cqc_url}/_soak/calm", timeout=10)
        calm = datetime.now(UTC)
        self.rec.note("simulators calmed; waiting for London and CQC runs after it")
        deadline = time.monotonic() + 900
        done: dict[str, bool] = {"london": False, "cqc": False}
        while time.monotonic() < deadline:
            running = False
            for source in done:
                res = await self.read("final-runs", f"{self.gw()}/api/v1/sources/{source}/runs")
                if not res or res[0] != 200:
                    continue
                runs = json.loads(res[2])
                running |= any(r.get("status") == "running" for r in runs)
                for run in runs:
                    started = run.get("started_at")
                    if (
                        run.get("status") == "succeeded"
                        and started
                        and as_instant(started) > calm + timedelta(seconds=1)
                    ):
                        if not done[source]:
                            self.rec.note(
                                f"{source} run {run.get('id')} ({run.get('kind')}) after calm: "
                                f"succeeded, accepted {run.get('accepted')}"
                            )
                        done[source] = True
            if all(done.values()) and not running:
                return
            await asyncio.sleep(3)
        self.rec.add(
            "consistency", f"syncs after the simulators calmed did not all succeed within 900 s: {done}"
        )

    async def final_checks(self) -> None:
        print("  final checks...", flush=True)
        await self.wait_quiet()
        if self.args.chaos:
            # every process back, /readyz, abandoned pushes and their keys, unanswered
            # pushes judged by the log of pushes, no run left running, killed $export jobs
            await self.chaos_checks()
        # 1. every accepted push readable with the figures sent, latest wins by updated_at
        histories = await self.check_pushes()
        # 2. native history and FHIR _history agree in version count
        await self.check_histories(histories)
        # 3. the change feed: the live consumer and a fresh paging from the start
        await self.check_change_feed()
        # 4. London equals the simulator's truth, malformed homes aside
        await self.check_london()
        # 5. search totals agree with a recount from native reads
        await self.check_search_totals()
        # 6. nothing pushed twice under one key was applied twice: the push log lists each
        #    key once
        await self.check_keys()
        # 7. sources at the end
        await self.note_sources()

    async def check_pushes(self) -> dict[str, list[dict[str, Any]]]:
        """Check every location the load touched; answer their native histories."""
        sem = asyncio.Semaphore(8)
        details: dict[str, dict[str, Any] | None] = {}
        histories: dict[str, list[dict[str, Any]]] = {}

        async def fetch(cid: str) -> None:
            async with sem:
                g = self.gw()
                d = await self.read("final-read", f"{g}/api/v1/locations/{cid}", ok=(200, 404))
                details[cid] = json.loads(d[2]) if d and d[0] == 200 else None
                h = await self.read(
                    "final-history", f"{self.other(g)}/api/v1/locations/{cid}/history", ok=(200, 404)
                )
                histories[cid] = json.loads(h[2]) if h and h[0] == 200 else []

        pool = self.pool
        touched = sorted(set(pool.sent) | set(pool.never))
        await asyncio.gather(*(fetch(c) for c in touched))
        checked = mism = 0
        for cid in touched:
            outcome = self.check_location(cid, details.get(cid), histories.get(cid, []))
            checked += outcome is not None
            mism += outcome is False
        self.rec.note(f"push oracle: {checked} locations checked, {mism} mismatched")
        return histories

    def check_location(
        self, cid: str, detail: dict[str, Any] | None, history: list[dict[str, Any]]
    ) -> bool | None:
        """Whether ``cid`` holds its latest accepted update (None: none was accepted)."""
        sent = self.pool.sent.get(cid, [])
        hist_stamps = Counter(
            utc_stamp(as_instant(v["source_updated_at"]))
            for v in history
            if v.get("prompted_by", "source") == "source"
        )
        for stamp in self.pool.never.get(cid, set()):
            if hist_stamps.get(stamp):
                self.rec.add(
                    "consistency",
                    "an update that must never be applied (dry run / 403 / key reuse) is in the history",
                    f"{cid} {stamp}",
                )
        applied = [s for s in sent if s.status == "accepted"]
        for s in applied:
            n = hist_stamps.get(s.updated_at, 0)
            if n != 1:
                self.rec.add(
                    "consistency",
                    f"an accepted update appears {n} times in the history",
                    f"{cid} {s.updated_at} via {s.via} key={s.key}",
                )
        for s in sent:
            if s.status in ("rejected", "refused") and hist_stamps.get(s.updated_at):
                self.rec.add(
                    "consistency",
                    f"a {s.status} update is in the history",
                    f"{cid} {s.updated_at} via {s.via}",
                )
        if not applied:
            return None
        best = max(applied, key=lambda s: s.updated_at)
        candidates = [best] + [
            s
            for s in sent
            if s.status in ("unknown", "unchanged", "stale") and s.updated_at > best.updated_at
        ]
        if detail is None:
            self.rec.add("consistency", "an accepted location is not readable", cid)
            return False
        held = utc_stamp(as_instant(detail["source_updated_at"])) if detail.get("source_updated_at") else None
        got = figures(detail)
        if any(c.updated_at == held and c.figures == got for c in candidates):
            return True
        self.rec.add(
            "consistency",
            "a location does not hold its latest accepted update",
            f"{cid}: holds {held} (figures {'as' if got == best.figures else 'unlike'} expected); "
            f"expected {best.updated_at} (via {best.via})",
        )
        return False

    async def check_histories(self, histories: dict[str, list[dict[str, Any]]]) -> None:
        sample = [c for c in sorted(histories) if histories[c]]
        self.rnd.shuffle(sample)
        sample = sample[:300]
        sem = asyncio.Semaphore(8)
        disagree = 0

        async def fhir_count(cid: str) -> None:
            nonlocal disagree
            async with sem:
                url = f"{self.gw()}/fhir/Location/{cid}/_history?_count=100"
                seen, _, complete = await self.feed_pages("final-fhir-history", url, timeout=60)
                if not complete:
                    return
                ids = [vid for _, vid in seen]
                again = await self.read("final-history", f"{self.gw()}/api/v1/locations/{cid}/history")
                native = len(json.loads(again[2])) if again and again[0] == 200 else -1
                if native != len(histories[cid]):
                    return  # a version came between the reads: not comparable
                if len(ids) != native or len(set(ids)) != len(ids):
                    disagree += 1
                    self.rec.add(
                        "consistency",
                        "native history and FHIR _history disagree in version count",
                        f"{cid}: native {native}, FHIR {len(ids)} ({len(set(ids))} distinct)",
                    )

        await asyncio.gather(*(fhir_count(c) for c in sample))
        self.rec.note(f"history agreement: {len(sample)} locations compared, {disagree} disagree")

    def store_versions(self) -> list[tuple[str, str, datetime]]:
        """Every version the store holds, with when it was recorded; on PostgreSQL, also
        the deadlocks counted since the start."""
        from sqlalchemy import text

        from gateway.store.db import create_engine

        def recorded(v: Any) -> datetime:
            if isinstance(v, str):
                v = datetime.fromisoformat(v)
            return v if v.tzinfo else v.replace(tzinfo=UTC)

        engine = create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    text("SELECT cqc_location_id, version_id, recorded_at FROM location_version")
                ).all()
                if self.db_label == "postgres":
                    row = conn.execute(text(PG_STATS)).fetchone()
                    if row and self.pg_before:
                        dl = int(row[0]) - self.pg_before[0]
                        if dl:
                            self.rec.add("database", f"PostgreSQL counted {dl} deadlocks during the run")
                        conflicts = int(row[1]) - self.pg_before[1]
                        self.rec.note(f"pg_stat_database: deadlocks +{dl}, conflicts +{conflicts}")
        finally:
            engine.dispose()
        return [(r[0], str(r[1]), recorded(r[2])) for r in rows]

    async def check_change_feed(self) -> None:
        url = f"{self.gw()}/fhir/Location/_history?_since={EPOCH}&_count=1000"
        fresh, fresh_horizon, _ = await self.feed_pages("final-feed", url, timeout=300)
        store = self.store_versions()
        for label, seen, horizon in (
            ("fresh paging", fresh, fresh_horizon),
            ("live consumer", self.feed_seen, self.feed_since),
        ):
            if horizon is None:
                self.rec.add("consistency", f"change feed ({label}) gave no horizon")
                continue
            h = as_instant(horizon)
            db = {(c, v) for c, v, at in store if at < h}
            dup = [k for k, n in Counter(seen).items() if n > 1]
            missing = db - set(seen)
            extra = set(seen) - db
            feed = f"change feed ({label})"
            if dup:
                self.rec.add(
                    "consistency",
                    f"{feed} lists a version more than once",
                    f"{len(dup)} duplicated, e.g. {dup[:3]}",
                )
            if missing:
                self.rec.add(
                    "consistency",
                    f"{feed} misses versions recorded before its horizon",
                    f"{len(missing)} missing, e.g. {sorted(missing)[:3]}",
                )
            if extra:
                self.rec.add(
                    "consistency",
                    f"{feed} lists versions not recorded before its horizon",
                    f"{len(extra)}, e.g. {sorted(extra)[:3]}",
                )
            self.rec.note(
                f"{feed}: {len(seen)} entries, {len(set(seen))} distinct; "
                f"store before horizon {len(db)} (all {len(store)}); "
                f"missing {len(missing)}, dup {len(dup)}, extra {len(extra)}"
            )
        if fresh:
            vids = [int(v) for _, v in fresh]
            if vids != sorted(vids):
                self.rec.add("consistency", "change feed is not in version order", "")

    async def note_sources(self) -> None:
        res = await self.read("final-sources", f"{self.gw()}/api/v1/sources")
        if res and res[0] == 200:
            doc = json.loads(res[2])
            srcs = doc.get("sources", doc if isinstance(doc, list) else [])
            summary = ", ".join(
                f"{s.get('source') or s.get('name')}={s.get('status')}" for s in srcs if isinstance(s, dict)
            )
            self.rec.note(f"sources at the end: {short(summary, 500)}")

    async def check_london(self) -> None:
        import httpx

        from adapters.london_tracker.mapping import map_home

        truth = httpx.get(f"{self.london_url}/_soak/truth", timeout=60).json()
        malformed = set(truth["malformed"])
        pool = self.pool
        pushed_ids = set(pool.records) | {c for ids in pool.region_ids.values() for c in ids}
        sem = asyncio.Semaphore(8)
        compared = wrong = 0
        examples: list[str] = []

        async def one(home: dict[str, Any]) -> None:
            nonlocal compared, wrong
            update = map_home(home).update
            if update is None:
                return
            rec = update.model_dump(mode="json")
            cid = rec["cqc_location_id"]
            if cid in pushed_ids:
                return
            async with sem:
                r = await self.read("final-london-read", f"{self.gw()}/api/v1/locations/{cid}", ok=(200, 404))
            if not r:
                return
            compared += 1
            if r[0] != 200:
                wrong += 1
                examples.append(f"{home['home_ref']}/{cid}: 404")
                return
            detail = json.loads(r[2])
            held = utc_stamp(as_instant(detail["source_updated_at"]))
            same = figures(detail) == figures(rec)
            if held != rec["updated_at"] or not same:
                wrong += 1
                examples.append(
                    f"{home['home_ref']}/{cid}: holds {held}, truth {rec['updated_at']}, "
                    f"figures {'equal' if same else 'differ'}"
                )

        homes = [h for ref, h in truth["homes"].items() if ref not in malformed]
        await asyncio.gather(*(one(h) for h in homes))
        if wrong:
            self.rec.add(
                "consistency",
                f"London data differs from the simulator's truth for {wrong} homes",
                "; ".join(examples[:4]),
            )
        self.rec.note(
            f"London: {compared} homes compared ({len(malformed)} malformed left out), {wrong} differ"
        )

    async def check_search_totals(self) -> None:
        pool = self.pool
        regions = self.rnd.sample(pool.regions(), min(2, len(pool.regions())))
        for region in regions:
            for extra in ([], [("vacancy_type", "general-nursing")], [("accepting_today", "true")]):
                listed = await self.search_all([("region", region), *extra])
                if listed is None:
                    return
                total, found = listed
                details = await self.read_all(pool.region_ids[region] | set(found), "final-recount-read")
                recount = {c for c, d in details.items() if matches_search(d, region, extra)}
                label = f"region={region}" + "".join(f"&{k}={v}" for k, v in extra)
                if total != len(found) or set(found) != recount:
                    only_search = sorted(set(found) - recount)[:3]
                    only_recount = sorted(recount - set(found))[:3]
                    self.rec.add(
                        "consistency",
                        "search total disagrees with a recount from native reads",
                        f"{label}: total {total}, listed {len(found)}, recount {len(recount)}; "
                        f"only in search {only_search}, only in recount {only_recount}",
                    )
                self.rec.note(f"search {label}: total {total}, recount {len(recount)}")

    async def search_all(self, query: list[tuple[str, str]]) -> tuple[int, list[str]] | None:
        """A vacancy search's total and every location it lists, page by page (None: a
        page could not be read)."""
        found: list[str] = []
        page = 1
        while True:
            q = [*query, ("page_size", "500"), ("page", str(page))]
            r = await self.read("final-search", f"{self.gw()}/api/v1/vacancies?{urlencode(q)}")
            if not r or r[0] != 200:
                return None
            doc = json.loads(r[2])
            total = int(doc["total"])
            found += [x["cqc_location_id"] for x in doc["results"]]
            if len(found) >= total or not doc["results"]:
                return total, found
            page += 1

    async def read_all(self, ids: set[str], kind: str) -> dict[str, dict[str, Any]]:
        """The native detail of each location that can be read, eight at a time."""
        sem = asyncio.Semaphore(8)
        details: dict[str, dict[str, Any]] = {}

        async def get(cid: str) -> None:
            async with sem:
                d = await self.read(kind, f"{self.gw()}/api/v1/locations/{cid}", ok=(200, 404))
            if d and d[0] == 200:
                details[cid] = json.loads(d[2])

        await asyncio.gather(*(get(c) for c in ids))
        return details

    async def check_keys(self) -> None:
        per_key: Counter[str] = Counter()
        for source in sorted(set(self.keys_used.values())):
            before = None
            while True:
                q = [("source", source), ("limit", "200")] + ([("before", before)] if before else [])
                r = await self.read("final-push-log", f"{self.gw()}/api/v1/submissions?{urlencode(q)}")
                if not r or r[0] != 200:
                    break
                doc = json.loads(r[2])
                for s in doc.get("submissions", []):
                    if s.get("idempotency_key") in self.keys_used:
                        per_key[s["idempotency_key"]] += 1
                before = doc.get("next_before")
                if not before:
                    break
        twice = [k for k, n in per_key.items() if n > 1]
        if twice:
            self.rec.add(
                "consistency",
                "an Idempotency-Key appears on more than one push in the log",
                f"{len(twice)} keys, e.g. {twice[:2]}",
            )
        self.rec.note(
            f"idempotency: {len(self.keys_used)} keys used, {len(per_key)} in the push log, "
            f"{len(twice)} twice"
        )

    # --- logs ---------------------------------------------------------------------------
    PATTERNS = [
        (re.compile(r"\b(ERROR|CRITICAL)\b"), "ERROR/CRITICAL line"),
        (re.compile(r"Traceback"), "traceback"),
        (re.compile(r"database is locked", re.I), "database is locked"),
        (re.compile(r"deadlock", re.I), "deadlock"),
        (re.compile(r"could not serialize|SerializationFailure|40001|40P01", re.I), "serialization failure"),
        (re.compile(r"unexpected error on", re.I), "unexpected error"),
    ]

    def scan_logs(self) -> None:
        for proc in self.stack.procs:
            if not proc.name.startswith("gateway"):
                if proc.log.exists() and "Traceback" in proc.log.read_text(errors="replace"):
                    self.rec.note(f"{proc.name} log has a traceback (simulator)")
                continue
            text = proc.log.read_text(errors="replace")
            lines = text.splitlines()
            stamp: str | None = None
            for line in lines:
                m = re.match(r"(\d{4}-\d\d-\d\dT[\d:.]+Z) ", line)
                stamp = m.group(1) if m else stamp
                label = next((label for pattern, label in self.PATTERNS if pattern.search(line)), None)
                if label:
                    # --chaos: the database's unavailability reported during a fault (or 90 s
                    # after it) is counted apart; any other error line stays a finding
                    expected = self.args.chaos and self.log_in_chaos(stamp) and CHAOS_EXPECTED.search(line)
                    kind = "log-chaos" if expected else "log"
                    self.rec.add(kind, f"{proc.name}: {label}", short(line.strip(), 400), cap=3)
            warn: Counter[str] = Counter()
            for line in lines:
                m = re.match(r"\S+ WARNING (\S+): (.{0,70})", line)
                if m:
                    warn[f"{m.group(1)}: {re.sub(r'[0-9]+', 'N', m.group(2))}"] += 1
            for msg, n in warn.most_common(8):
                self.rec.note(f"{proc.name} WARNING x{n}: {msg}")

    # --- run ----------------------------------------------------------------------------
    def run(self) -> int:
        print(f"== soak on {self.db_label}: {self.folder}", flush=True)
        try:
            self.reset_database()
            self._pool = Pool(self.data, self.rnd)
            self.start_stack()
            for region in self.pool.regions():
                self.tokens[f"tracker-{region}"] = self.mint(f"tracker-{region}", ["submit"], [region])
                self.tokens[f"fhir-{region}"] = self.mint(f"fhir-{region}", ["submit"], [region])
            self.tokens["reader"] = self.mint("soak-reader", ["read", "admin"], ["all"])
        except Exception as exc:  # noqa: BLE001 - whatever stops the start is reported: exit 2
            print(f"could not start the stack: {exc}", file=sys.stderr)
            self.stack.stop_all()
            return 2
        try:
            asyncio.run(self.run_load())
        except Exception:  # noqa: BLE001 - a harness crash is a finding; the stack is still stopped
            self.rec.add("harness", "the load crashed", traceback.format_exc()[-1500:])
        finally:
            for proc in self.stack.procs:
                if proc.process.poll() is not None:
                    self.rec.add("crash", f"{proc.name} had exited ({proc.process.returncode}) by the end")
            self.stack.stop_all()
            self.scan_logs()
        return self.summary()

    def summary(self) -> int:
        r = self.rec
        print(
            f"\n==== soak summary: {self.db_label} ({self.args.duration:.0f} s load, "
            f"{self.args.clients} clients, {len(self.gateways)} gateways)"
        )
        print(f"{'kind':<28}{'count':>8}  {'p50 ms':>8}{'p95 ms':>8}  statuses")
        for kind in sorted(r.counts):
            lat = sorted(r.latency.get(kind, []))
            p50 = f"{lat[len(lat) // 2] * 1000:.0f}" if lat else "-"
            p95 = f"{lat[int(len(lat) * 0.95)] * 1000:.0f}" if lat else "-"
            st = " ".join(
                f"{STATUS_NAMES.get(k, k)}:{v}" for k, v in sorted(r.statuses.get(kind, {}).items())
            )
            print(f"{kind:<28}{r.counts[kind]:>8}  {p50:>8}{p95:>8}  {st}")
        print(f"total requests: {sum(r.counts.values())}")
        print("\nnotes:")
        for note in r.notes:
            print(f"  {note}")
        if self.args.chaos:
            print("\nchaos:")
            for what, n in sorted(self.chaos_counts.items()):
                print(f"  {what}: {n}")
        # --chaos: logs during a fault and keys left held by a killed push are listed, not failed
        benign = ("retryable", "log-chaos", "chaos-409", "chaos-cli")
        serious = {k: n for k, n in r.finding_counts.items() if k[0] not in benign}
        retryable = sum(n for k, n in r.finding_counts.items() if k[0] == "retryable")
        print(f"\nfindings ({sum(serious.values())}; retryable 503/429 answers: {retryable}):")
        for (kind, what), n in sorted(r.finding_counts.items(), key=lambda x: (-x[1], x[0])):
            print(f"  [{kind}] {what}  x{n}")
            for f in r.findings:
                if f.kind == kind and f.what == what and f.detail:
                    print(f"      - {f.detail}")
        if self.args.report:
            self.write_report(Path(self.args.report))
        return 1 if serious else 0

    def write_report(self, path: Path) -> None:
        """Add this run's counts and findings to the JSON report at ``path``."""
        r = self.rec
        existing = json.loads(path.read_text()) if path.exists() else {}
        existing[self.db_label] = {
            "counts": dict(r.counts),
            "statuses": {k: dict(v) for k, v in r.statuses.items()},
            "findings": [f.__dict__ for f in r.findings],
            "finding_counts": {f"{k[0]}: {k[1]}": n for k, n in r.finding_counts.items()},
            "notes": r.notes,
            "chaos": dict(self.chaos_counts),
        }
        path.write_text(json.dumps(existing, indent=1))


def demo_data(args: argparse.Namespace) -> Path:
    if args.data:
        return Path(args.data)
    default = ROOT / "var" / "demo-data"
    if (default / "manifest.json").exists():
        return default
    from gateway.demo_loading import ensure_demo_data

    target = Path(tempfile.gettempdir()) / "soak-demo-data"
    ensure_demo_data(target, now=datetime.now(UTC).replace(minute=0, second=0, microsecond=0))
    return target


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_london-sim":
        london_sim_main(argv[1:])
        return 0
    if argv and argv[0] == "_cqc-sim":
        cqc_sim_main(argv[1:])
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="sqlite")
    p.add_argument("--pg-url", default="postgresql+psycopg://gateway@127.0.0.1:55433/gw_d")
    p.add_argument("--duration", type=float, default=300.0, help="seconds of mixed load (default 300)")
    p.add_argument("--clients", type=int, default=12, help="concurrent clients (default 12)")
    p.add_argument("--gateways", type=int, default=2)
    p.add_argument("--seed", type=int, default=20261123)
    p.add_argument("--data", help="demo data folder (default var/demo-data, else generated)")
    p.add_argument("--london-interval", type=float, default=20.0)
    p.add_argument("--cqc-interval", type=float, default=45.0)
    p.add_argument("--reconcile-interval", type=float, default=60.0)
    p.add_argument("--no-faults", dest="faults", action="store_false")
    p.add_argument("--no-retention", dest="retention", action="store_false", help="keep raw push bodies")
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs, SQLite file)")
    p.add_argument("--report", help="write counts and findings as JSON here")
    p.add_argument(
        "--chaos",
        action="store_true",
        help="kill (SIGKILL) and stop (SIGTERM) gateways, restart the database (PostgreSQL: "
        "needs --pg-data) or hold SQLite's write lock, rotate and expire tokens, send broken "
        "bodies, all during the load; clients retry as trackers do; extra end checks",
    )
    p.add_argument("--pg-data", default="/tmp/chaospg", help="--chaos: the PostgreSQL cluster to restart")
    p.add_argument("--pg-bin", default="/usr/lib/postgresql/15/bin")
    p.add_argument("--pg-os-user", default="postgres")
    p.add_argument(
        "--pg-opts",
        default="-c listen_addresses=127.0.0.1 -p 55444 -k /tmp/chaospg -c fsync=off",
        help="--chaos: the server options to start it again with after an immediate stop",
    )
    args = p.parse_args(argv)
    data = demo_data(args)
    codes = []
    for label in ["sqlite", "postgres"] if args.db == "both" else [args.db]:
        folder = Path(tempfile.mkdtemp(prefix=f"soak-{label}-"))
        url = f"sqlite:///{folder / 'soak.db'}" if label == "sqlite" else args.pg_url
        try:
            codes.append(Soak(args, label, url, folder, data).run())
        finally:
            if args.keep:
                print(f"work folder kept: {folder}")
            else:
                shutil.rmtree(folder, ignore_errors=True)
    return max(codes) if codes else 0


if __name__ == "__main__":
    sys.exit(main())
