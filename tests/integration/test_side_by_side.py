"""Two real gateway processes side by side on one database, over real HTTP on loopback.

README: "point the gateway at PostgreSQL with one setting, migrate, and run as many
stateless gateway processes side by side as you like". What a user of several processes
relies on: whatever one process accepted, the other serves at once (native reads, search
from its own in-memory index, FHIR); an idempotent retry landing on the other process is
answered from the first answer, and one the gateway failed on is processed afresh (the
failure logged without the data); a revoked token stops working everywhere within
GATEWAY_AUTH_CACHE_S; pushes of one location racing to both never fail and the later
``updated_at`` wins; a bad record sent to one is named, and its good neighbour served by
the other. Each test starts its own two ``gateway serve`` processes on the suite's
database (SQLite, or PostgreSQL when GATEWAY_TEST_DATABASE_URL is set), emptied first."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

from gateway.auth import create_token
from gateway.store.db import create_engine, session_factory, transaction
from simulators.server import free_ports
from tests.conftest import GatewayCli, bearer
from tests.factories import batch, location, vacancy

AUTH_CACHE_S = 1.0
START_TIMEOUT_S = 60.0  # two processes importing the app at once, on a busy machine
SUBMISSIONS = "/api/v1/submissions"


@dataclass
class Gateway:
    """One gateway server process and an HTTP client for it."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    http: httpx.Client
    expected_failures: int = 0  # requests a test makes fail on purpose (500s)

    def get(self, path: str, token: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params, headers=bearer(token))

    def push(self, token: str, body: dict[str, Any], **headers: str) -> httpx.Response:
        return self.http.post(
            SUBMISSIONS,
            content=orjson.dumps(body),
            headers={**bearer(token), "Content-Type": "application/json", **headers},
        )


class PortTaken(Exception):
    """Another program took the port between its choice and the server's start."""


def _server_env(database_url: str) -> dict[str, str]:
    # Only this test's GATEWAY_* settings: none of the caller's may leak into the servers.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return env | {
        "GATEWAY_DATABASE_URL": database_url,
        "GATEWAY_ENVIRONMENT": "test",
        "GATEWAY_SCHEDULER_ENABLED": "false",  # no upstreams here; pushes only
        "GATEWAY_AUTH_CACHE_S": str(AUTH_CACHE_S),
    }


def _start(
    name: str, port: int, database_url: str, folder: Path, *extra: str
) -> tuple[subprocess.Popen[bytes], int, Path]:
    log = folder / f"gateway-{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-migrate",
                "--log-level",
                "warning",
                "--no-access-log",
                *extra,
            ],
            env=_server_env(database_url),
            cwd=folder,  # no .env file of the repository's is read
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, port, log


def _wait_until_up(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            if "address already in use" in log.read_text():
                raise PortTaken(url)
            raise AssertionError(f"{url} exited ({process.returncode}) before it was up:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not come up within {START_TIMEOUT_S:.0f} s:\n{log.read_text()}")
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _clear(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for t in reversed(SQLModel.metadata.sorted_tables):
            conn.execute(t.delete())


@pytest.fixture
def empty_database(database_url: str) -> Iterator[sa.Engine]:
    """The suite's migrated database, emptied before the test (and after it)."""
    engine = create_engine(database_url)
    _clear(engine)
    try:
        yield engine
    finally:
        _clear(engine)
        engine.dispose()


@pytest.fixture
def gateways(
    database_url: str, empty_database: sa.Engine, tmp_path: Path
) -> Iterator[tuple[Gateway, Gateway]]:
    """Gateways A and B, two server processes on the one (empty) database; both stopped at
    the end, whatever happened."""
    started: list[tuple[subprocess.Popen[bytes], int, Path]] = []
    clients: list[httpx.Client] = []
    found: list[Gateway] = []
    try:
        for attempt in range(3):
            # Both start at once: each takes seconds of start-up.
            pair = [
                _start(name, port, database_url, tmp_path)
                for name, port in zip(("a", "b"), free_ports(2), strict=True)
            ]
            started += pair
            try:
                for process, port, log in pair:
                    _wait_until_up(process, f"http://127.0.0.1:{port}", log)
            except PortTaken:
                if attempt == 2:
                    raise
                for process, _, _ in pair:
                    _stop(process)
                continue
            break
        for name, (process, port, log) in zip(("A", "B"), started[-2:], strict=True):
            url = f"http://127.0.0.1:{port}"
            http = httpx.Client(base_url=url, timeout=30.0)
            clients.append(http)
            found.append(Gateway(name, url, process, log, http))
        yield found[0], found[1]
        for gateway in found:
            assert gateway.process.poll() is None, f"gateway {gateway.name} died:\n{gateway.log.read_text()}"
    finally:
        for http in clients:
            http.close()
        for process, _, _ in started:
            _stop(process)
    # Every request a gateway failed on is logged (by type and stack): none but those the
    # test caused.
    for gateway in found:
        failures = gateway.log.read_text().count("unexpected error on ")
        assert failures == gateway.expected_failures, gateway.log.read_text()


TokenMaker = Callable[..., str]


@pytest.fixture
def mint_token(empty_database: sa.Engine) -> TokenMaker:
    def make(
        name: str, scopes: tuple[str, ...] = ("submit", "read"), regions: tuple[str, ...] = ("all",)
    ) -> str:
        with transaction(session_factory(empty_database)) as session:
            _, plain = create_token(session, name=name, scopes=scopes, regions=regions)
        return plain

    return make


def _ago(minutes: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _statuses(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["status"] for r in response.json()["records"]]


def _found(response: httpx.Response) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.text
    return {r["cqc_location_id"]: r for r in response.json()["results"]}


def _admittable(result: dict[str, Any], vacancy_type: str = "general-nursing") -> int:
    return next(
        int(line["admittable"]) for line in result["vacancies"] if line["vacancy_type"] == vacancy_type
    )


def _bed_figure(service: dict[str, Any], name: str) -> Any:
    """One figure of a HealthcareService's bed-availability extension."""
    extension = next(e for e in service["extension"] if e["url"].endswith("/bed-availability"))
    part = next(e for e in extension["extension"] if e["url"] == name)
    return next(v for k, v in part.items() if k.startswith("value"))


# Each server pair costs several seconds of start-up (importing the app), so each test
# covers one theme with one pair on its own empty database.


def test_what_one_process_accepts_the_other_serves_at_once(
    gateways: tuple[Gateway, Gateway], mint_token: TokenMaker
) -> None:
    a, b = gateways
    token = mint_token("tracker-north-west")
    # B has answered a search before the push, so its index holds the state before it.
    assert _found(b.get("/api/v1/vacancies", token, local_authority="Manchester")) == {}
    assert b.get("/api/v1/locations/1-100000001", token).status_code == 404

    first = a.push(token, batch(location("1-100000001", updated_at=_ago(30))))
    assert _statuses(first) == ["accepted"]

    # No waiting: the next request to B reads the committed state.
    results = _found(b.get("/api/v1/vacancies", token, local_authority="Manchester"))
    assert list(results) == ["1-100000001"]
    assert _admittable(results["1-100000001"]) == 2
    detail = b.get("/api/v1/locations/1-100000001", token)
    assert detail.status_code == 200
    assert detail.json()["source"] == "tracker-north-west"
    fhir = b.get("/fhir/Location/1-100000001", token)
    assert fhir.status_code == 200
    assert fhir.json()["resourceType"] == "Location"
    first_version = fhir.json()["meta"]["versionId"]

    # An update through A: B's index moves on from the snapshot it already holds.
    changed = vacancy(occupied=14, admittable=4)
    second = a.push(token, batch(location("1-100000001", updated_at=_ago(20), vacancies=[changed])))
    assert _statuses(second) == ["accepted"]
    results = _found(b.get("/api/v1/vacancies", token, local_authority="Manchester"))
    assert _admittable(results["1-100000001"]) == 4
    detail = b.get("/api/v1/locations/1-100000001", token)
    assert [line["admittable"] for line in detail.json()["vacancies"]] == [4]
    fhir = b.get("/fhir/Location/1-100000001", token)
    assert fhir.json()["meta"]["versionId"] != first_version
    service = b.get("/fhir/HealthcareService/1-100000001-general-nursing", token)
    assert service.status_code == 200
    assert service.json()["meta"]["versionId"] == fhir.json()["meta"]["versionId"]
    assert _bed_figure(service.json(), "admittable") == 4

    # A batch to B with a bad record: 200, the bad one named by record and field, and
    # its good neighbour served by A (native, search, FHIR); the bad one nowhere.
    bad = location("1-100000002", updated_at=_ago(30), vacancies=[vacancy(occupied=-3)])
    good = location("1-100000003", updated_at=_ago(30))
    mixed = b.push(token, batch(bad, good))
    assert _statuses(mixed) == ["rejected", "accepted"]
    errors = mixed.json()["records"][0]["errors"]
    assert [e["pointer"] for e in errors] == ["/locations/0/vacancies/0/occupied"]
    assert mixed.json()["summary"] == {"accepted": 1, "unchanged": 0, "stale": 0, "rejected": 1}
    assert a.get("/api/v1/locations/1-100000003", token).status_code == 200
    assert a.get("/api/v1/locations/1-100000002", token).status_code == 404
    found = _found(a.get("/api/v1/vacancies", token, local_authority="Manchester"))
    assert sorted(found) == ["1-100000001", "1-100000003"]
    assert a.get("/fhir/Location/1-100000003", token).status_code == 200
    assert a.get("/fhir/Location/1-100000002", token).status_code == 404
    # The push's log, read on A, has the answer B gave, rejection included.
    newest = _pushes(a.get(SUBMISSIONS, token).json())[0]
    assert newest["summary"] == mixed.json()["summary"]
    kept = a.get(f"{SUBMISSIONS}/{newest['id']}", token).json()
    assert kept["answer"] == mixed.json()


def test_retries_and_races_across_processes_are_processed_once_and_the_later_update_wins(
    gateways: tuple[Gateway, Gateway], mint_token: TokenMaker, empty_database: sa.Engine
) -> None:
    a, b = gateways
    token = mint_token("tracker-north-west")

    # A retry with the same Idempotency-Key to B, after A answered: A's answer.
    body = batch(location("1-100000001", updated_at=_ago(30)))
    first = a.push(token, body, **{"Idempotency-Key": "retry-1"})
    assert _statuses(first) == ["accepted"]
    assert "Idempotent-Replayed" not in first.headers
    again = b.push(token, body, **{"Idempotency-Key": "retry-1"})
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()  # A's submission id and "accepted", not "unchanged"
    assert [p["idempotency_key"] for p in _pushes(b.get(SUBMISSIONS, token).json())] == ["retry-1"]
    assert len(_versions(b.get("/api/v1/locations/1-100000001/history", token).json())) == 1
    other = b.push(token, batch(location("1-100000001", name="Another")), **{"Idempotency-Key": "retry-1"})
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json()["detail"]

    # The same key sent to both at once: processed once, never a 500.
    racing = batch(location("1-100000002", updated_at=_ago(30)))
    answers = _at_once(
        lambda: a.push(token, racing, **{"Idempotency-Key": "race-1"}),
        lambda: b.push(token, racing, **{"Idempotency-Key": "race-1"}),
    )
    assert sorted(r.status_code for r in answers) in ([200, 200], [200, 409]), [r.text for r in answers]
    fresh = [r for r in answers if r.status_code == 200 and "Idempotent-Replayed" not in r.headers]
    assert len(fresh) == 1
    assert _statuses(fresh[0]) == ["accepted"]
    for replayed in (r for r in answers if r.headers.get("Idempotent-Replayed") == "true"):
        assert replayed.json() == fresh[0].json()
    # One told 409 (the other still at it) that retries now gets the answer.
    late = b.push(token, racing, **{"Idempotency-Key": "race-1"})
    assert late.headers["Idempotent-Replayed"] == "true"
    assert late.json() == fresh[0].json()
    keys = sorted(p["idempotency_key"] for p in _pushes(a.get(SUBMISSIONS, token).json()))
    assert keys == ["race-1", "retry-1"]
    assert len(_versions(a.get("/api/v1/locations/1-100000002/history", token).json())) == 1

    # Two updates of one location racing to A and B: both answered, the later one held.
    for n in range(6):
        cqc_id = f"1-10000001{n}"
        earlier = location(cqc_id, updated_at=_ago(20), vacancies=[vacancy(occupied=16, admittable=2)])
        later = location(cqc_id, updated_at=_ago(10), vacancies=[vacancy(occupied=13, admittable=5)])
        to_a, to_b = (later, earlier) if n % 2 else (earlier, later)  # each gets the later in turn
        answers = _at_once(partial(a.push, token, batch(to_a)), partial(b.push, token, batch(to_b)))
        assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
        status_of = {
            record["updated_at"]: _statuses(response)[0]
            for record, response in zip((to_a, to_b), answers, strict=True)
        }
        assert status_of[later["updated_at"]] == "accepted"
        assert status_of[earlier["updated_at"]] in ("accepted", "stale")  # as it came first or not
        for gateway in (a, b):
            detail = gateway.get(f"/api/v1/locations/{cqc_id}", token).json()
            assert _as_instant(detail["source_updated_at"]) == _as_instant(later["updated_at"])
            assert [line["admittable"] for line in detail["vacancies"]] == [5]
            found = _found(gateway.get("/api/v1/vacancies", token, local_authority="Manchester"))
            assert _admittable(found[cqc_id]) == 5
        versions = _versions(a.get(f"/api/v1/locations/{cqc_id}/history", token).json())
        assert _as_instant(versions[-1]["source_updated_at"]) == _as_instant(later["updated_at"])
        assert len(versions) == (2 if status_of[earlier["updated_at"]] == "accepted" else 1)

    # A retry after the gateway failed: processed afresh by the other process.
    body = batch(location("1-100000009", updated_at=_ago(30), name="Sentinel Lodge 7731"))
    # The database refuses A's writes of versions (a table gone for the moment): a 500 on
    # either database (SQLite's missing table is no database down, to be retried), nothing
    # of the batch applied, and the key let go.
    with _table_away(empty_database, "location_version"):
        failed = a.push(token, body, **{"Idempotency-Key": "failed-1"})
    assert failed.status_code == 500, failed.text
    a.expected_failures += 1
    assert failed.headers["content-type"] == "application/problem+json"
    assert "1-100000009" not in failed.text
    assert b.get("/api/v1/locations/1-100000009", token).status_code == 404

    retried = b.push(token, body, **{"Idempotency-Key": "failed-1"})
    assert "Idempotent-Replayed" not in retried.headers
    assert _statuses(retried) == ["accepted"]
    assert a.get("/api/v1/locations/1-100000009", token).json()["name"] == "Sentinel Lodge 7731"
    pushes = _pushes(a.get(SUBMISSIONS, token, limit=200).json())
    assert [p["idempotency_key"] for p in pushes if p["status_code"] == 500] == [None]  # let go
    assert [p["status_code"] for p in pushes if p["idempotency_key"] == "failed-1"] == [200]

    # A's log says what failed and where, by type and stack: never the database's message,
    # which quotes the statement's parameters (the pushed record).
    text = a.log.read_text()
    assert " on POST /api/v1/submissions: " in text
    for quoted in ("Sentinel Lodge", "1-100000009", "no such table", "does not exist", "[SQL:"):
        assert quoted not in text, f"A's log quotes {quoted!r}"


def test_a_revoked_token_is_refused_by_both_processes_once_the_cache_lapses(
    gateways: tuple[Gateway, Gateway], mint_token: TokenMaker, gateway_cli: GatewayCli
) -> None:
    a, b = gateways
    token = mint_token("discharge-hub", scopes=("read",))
    keeper = mint_token("ward-team", scopes=("read",))
    for gateway in (a, b):  # each process has checked it, and trusts it for a while
        assert gateway.get("/api/v1/sources", token).status_code == 200

    result = gateway_cli("token", "revoke", "--name", "discharge-hub")
    assert result.exit_code == 0, result.output
    revoked_at = time.monotonic()

    # Polled, not slept: each process must refuse it within the cache time (and slack).
    limit_s = AUTH_CACHE_S + 3.0
    refused_after: dict[str, float] = {}
    while len(refused_after) < 2 and time.monotonic() < revoked_at + limit_s:
        for gateway in (a, b):
            if gateway.name not in refused_after and gateway.get("/api/v1/sources", token).status_code == 401:
                refused_after[gateway.name] = time.monotonic() - revoked_at
        time.sleep(0.05)
    assert set(refused_after) == {"A", "B"}, f"still accepted {limit_s} s after revoking: {refused_after}"
    for gateway in (a, b):  # it stays refused, on every route; another token still works
        refused = gateway.get("/api/v1/vacancies", token)
        assert refused.status_code == 401
        assert "revoked" in refused.json()["detail"]
        assert gateway.get("/fhir/Location", token).status_code == 401
        assert gateway.get("/api/v1/sources", keeper).status_code == 200


@contextmanager
def _table_away(engine: sa.Engine, name: str) -> Iterator[None]:
    """``name`` renamed for the block, so statements on it fail; put back whatever happens."""
    with engine.begin() as conn:
        conn.execute(sa.text(f"ALTER TABLE {name} RENAME TO {name}_away"))
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE {name}_away RENAME TO {name}"))


def _at_once(*calls: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Run ``calls`` on threads released together; their answers in order."""
    start = threading.Barrier(len(calls))
    answers: list[httpx.Response | BaseException | None] = [None] * len(calls)

    def run(i: int) -> None:
        start.wait()
        try:
            answers[i] = calls[i]()
        except BaseException as error:  # noqa: BLE001 - re-raised below, on the test's thread
            answers[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    done: list[httpx.Response] = []
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
        assert answer is not None, "a request did not finish"
        done.append(answer)
    return done


def _pushes(log: dict[str, Any]) -> list[dict[str, Any]]:
    pushes: list[dict[str, Any]] = log["submissions"]
    return pushes


def _versions(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    assert isinstance(history, list), history
    return history


def _as_instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_workers_behind_one_port_report_the_metrics_of_all(
    database_url: str, mint_token: TokenMaker, tmp_path: Path
) -> None:
    """``gateway serve --workers 2``: whichever worker answers a scrape reports the pushes
    both took (each connection is new, so the kernel hands them to either)."""
    token = mint_token("tracker-workers")
    process, port, log = _start("workers", free_ports(1)[0], database_url, tmp_path, "--workers", "2")
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(process, url, log)
        for n in range(8):
            body = batch(location(f"1-1000000{n:02d}", updated_at=_ago(1)))
            pushed = httpx.post(
                f"{url}{SUBMISSIONS}",
                content=orjson.dumps(body),
                headers={**bearer(token), "Content-Type": "application/json"},
                timeout=30,
            )
            assert _statuses(pushed) == ["accepted"]
        accepted = 'gateway_pushed_records_total{source="tracker-workers",status="accepted"} 8.0'
        for _ in range(8):
            page = httpx.get(f"{url}/metrics", headers=bearer(token), timeout=30)
            assert page.status_code == 200
            assert accepted in page.text.splitlines(), log.read_text()
    finally:
        _stop(process)
    assert "unexpected error on " not in log.read_text()
