"""The scheduler runs each source on its interval; a failing source shows 'failing' while
the others stay 'ok'."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from adapters.common.http import TransientUpstreamError
from gateway.api.app import create_app
from gateway.ingest.service import apply_updates
from gateway.model.capacity import LocationUpdate
from gateway.settings import Settings
from gateway.store.db import transaction
from gateway.store.tables import SyncRun, utcnow
from gateway.sync import sources as sources_module
from gateway.sync.runs import RunCounts, finish_run, start_run
from gateway.sync.sources import JobSpec, SourceSpec, SyncContext
from tests.conftest import TokenMaker, bearer
from tests.factories import location


async def _healthy(context: SyncContext) -> SyncRun:
    run_id = start_run(context.factory, "fake-healthy", "incremental")
    update = LocationUpdate.model_validate(location("1-500000001", updated_at=utcnow().isoformat()))
    with transaction(context.factory) as session:
        apply_updates(session, source="fake-healthy", updates=[(0, update)], received_at=utcnow())
    counts = RunCounts(pages=1, records_seen=1)
    return finish_run(context.factory, run_id, counts)


async def _broken(context: SyncContext) -> SyncRun:
    run_id = start_run(context.factory, "fake-broken", "incremental")
    return finish_run(
        context.factory, run_id, RunCounts(), TransientUpstreamError("GET /homes: HTTP 503", status_code=503)
    )


@pytest.fixture
def fake_sources(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    fakes = {
        "fake-healthy": SourceSpec(
            "fake-healthy",
            lambda s: True,
            lambda s: 3600.0,
            (JobSpec("incremental", lambda s: 0.2, _healthy),),
        ),
        "fake-broken": SourceSpec(
            "fake-broken", lambda s: True, lambda s: 3600.0, (JobSpec("incremental", lambda s: 0.2, _broken),)
        ),
    }
    monkeypatch.setattr(sources_module, "PULLED_SOURCES", fakes)
    from gateway.sync import health, scheduler

    monkeypatch.setattr(health, "PULLED_SOURCES", fakes)
    monkeypatch.setattr(scheduler, "PULLED_SOURCES", fakes)
    yield


def test_scheduled_syncs_run_and_failing_source_is_reported(
    fake_sources: None, settings: Settings, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    settings = settings.model_copy(update={"scheduler_enabled": True, "source_failing_after": 3})
    token = make_token(scopes=("read",))
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            body = client.get("/api/v1/sources", headers=bearer(token)).json()
            by_name = {s["source"]: s for s in body["sources"]}
            if by_name.get("fake-broken", {}).get("consecutive_failures", 0) >= 3:
                break
            time.sleep(0.2)
        runs = client.get("/api/v1/sources/fake-broken/runs", headers=bearer(token)).json()
    assert by_name["fake-broken"]["status"] == "failing"
    assert by_name["fake-broken"]["last_error_class"] == "transient"
    assert by_name["fake-broken"]["last_successful_sync"] is None
    assert by_name["fake-healthy"]["status"] == "ok"
    assert by_name["fake-healthy"]["consecutive_failures"] == 0
    assert by_name["fake-healthy"]["newest_data_age_seconds"] < 60
    assert all(run["status"] == "failed" and run["error_class"] == "transient" for run in runs)


def test_status_rules() -> None:
    from gateway.store.sources import SourceActivity
    from gateway.sync.health import status_of

    now = utcnow()
    fresh = now - timedelta(minutes=5)
    old = now - timedelta(hours=5)

    def activity(failures: int, newest: object) -> SourceActivity:
        return SourceActivity(now, now, failures, newest, None, None)  # type: ignore[arg-type]

    assert status_of(activity(0, fresh), 3600, 3, now) == "ok"
    assert status_of(activity(1, fresh), 3600, 3, now) == "degraded"
    assert status_of(activity(0, old), 3600, 3, now) == "stale"
    assert status_of(activity(0, None), 3600, 3, now) == "stale"
    assert status_of(activity(3, fresh), 3600, 3, now) == "failing"
    # Fresh rows from a first sync still under way: part of the source only, not ok.
    first = SourceActivity(now, None, 0, fresh, None, None)  # type: ignore[arg-type]
    assert status_of(first, 3600, 3, now) == "stale"


def test_unreachable_london_is_failing_while_a_pushing_tracker_stays_ok(
    settings: Settings, make_token: TokenMaker
) -> None:
    from pydantic import SecretStr

    from adapters.common.http import RetryPolicy

    settings = settings.model_copy(
        update={
            "scheduler_enabled": True,
            "source_failing_after": 2,
            "london_interval_s": 0.2,
            "london_base_url": "http://127.0.0.1:9",
            "london_client_id": "gw",
            "london_client_secret": SecretStr("s3cret"),
        }
    )
    token = make_token(name="tracker-north-west", scopes=("submit", "read"))
    fresh = location("1-500000009", updated_at=utcnow().isoformat())
    with pytest.MonkeyPatch.context() as patch:
        from gateway.sync import london

        patch.setattr(london, "RetryPolicy", lambda **_: RetryPolicy(max_attempts=1))
        with TestClient(create_app(settings)) as client:
            pushed = client.post("/api/v1/submissions", json={"locations": [fresh]}, headers=bearer(token))
            assert pushed.status_code == 200
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                sources = {
                    s["source"]: s
                    for s in client.get("/api/v1/sources", headers=bearer(token)).json()["sources"]
                }
                if sources.get("london", {}).get("status") == "failing":
                    break
                time.sleep(0.2)
    assert sources["london"]["status"] == "failing"
    assert sources["london"]["last_error_class"] == "transient"
    assert sources["tracker-north-west"]["status"] == "ok"
    assert sources["tracker-north-west"]["kind"] == "push"


def test_a_run_cut_short_by_shutdown_ends_quietly(
    settings: Settings, factory: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    """Stopping the gateway mid-run cancels the job: it says so at INFO, with no traceback."""
    import asyncio

    from gateway.sync.scheduler import SourceScheduler

    started = asyncio.Event()

    async def endless(context: SyncContext) -> SyncRun:
        started.set()
        await asyncio.sleep(3600)
        raise AssertionError("not reached")

    async def main() -> None:
        scheduler = SourceScheduler(factory, None, settings)  # type: ignore[arg-type]
        job = asyncio.create_task(
            scheduler.run_job("fake-endless", JobSpec("incremental", lambda s: 1.0, endless))
        )
        await started.wait()
        job.cancel()
        await job  # returns: the cancellation is the gateway stopping, not a failure

    caplog.set_level("INFO", logger="gateway.sync.scheduler")
    asyncio.run(main())
    assert "sync fake-endless:incremental stopped with the gateway" in caplog.text
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "WARNING")]


async def test_a_housekeeping_run_woken_late_still_runs(
    factory: sessionmaker[Session], settings: Settings
) -> None:
    """A busy event loop can wake the scheduler well after a job was due: the run is late,
    never skipped (APScheduler's default grace of one second skipped reconciliation)."""
    import asyncio
    from datetime import UTC, datetime

    import httpx

    from gateway.sync.scheduler import SourceScheduler

    ran = asyncio.Event()
    quiet = settings.model_copy(update={"push_body_retention_days": 30.0})
    async with httpx.AsyncClient() as http:
        scheduler = SourceScheduler(factory, http, quiet)

        async def reconciled() -> None:
            ran.set()

        scheduler.run_reconciliation = reconciled  # type: ignore[method-assign]
        scheduler.start()
        try:
            late = datetime.now(UTC) - timedelta(seconds=30)
            scheduler.scheduler.modify_job("reconcile", next_run_time=late)
            await asyncio.wait_for(ran.wait(), timeout=10)
        finally:
            scheduler.scheduler.shutdown(wait=False)


async def _slow(context: SyncContext) -> SyncRun:
    """A sync that goes on until it is stopped, calling its upstream through the gateway's
    HTTP client (which refuses once closed, as httpx does)."""
    import asyncio

    from gateway.sync.runs import recorded

    run_id = start_run(context.factory, "fake-slow", "incremental")

    async def work() -> None:
        while True:
            if context.http.is_closed:
                raise RuntimeError("Cannot send a request, as the client has been closed.")
            await asyncio.sleep(0.02)

    return await recorded(context.factory, run_id, RunCounts(), work())


async def test_stopping_the_scheduler_closes_a_sync_under_way_as_interrupted_first(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    """The gateway stops its scheduler, then closes its HTTP client: by the time ``stop``
    returns, a sync under way has been cancelled and closed its run as interrupted (it was
    left running, then failed on the closed client and was recorded as failed)."""
    import asyncio

    import httpx

    from gateway.sync.scheduler import SourceScheduler

    async with httpx.AsyncClient() as http:
        scheduler = SourceScheduler(factory, http, settings)
        job = JobSpec("incremental", lambda s: 3600.0, _slow)
        syncing = asyncio.create_task(scheduler.run_job("fake-slow", job))
        while not _runs_of(factory, "fake-slow"):
            await asyncio.sleep(0.01)
        await scheduler.stop()
        assert syncing.done()
        [run] = _runs_of(factory, "fake-slow")
    assert run.status == "interrupted", (run.status, run.error_message)
    assert run.error_class is None and run.finished_at is not None


def _runs_of(factory: sessionmaker[Session], source: str) -> list[SyncRun]:
    with factory() as session:
        return list(session.query(SyncRun).filter(SyncRun.source == source))


async def test_stopping_lets_a_housekeeping_run_end_before_its_lease_goes(
    settings: Settings, factory: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    """A reconciliation under way (one transaction on a thread, which cannot be stopped)
    ends before ``stop`` returns, and only then is its lease given up: another process
    taking the lease at once never reconciles beside it, and none waits for it to expire."""
    import asyncio
    import threading

    import httpx
    import sqlalchemy as sa

    from gateway.store.tables import SyncLease, table
    from gateway.sync.scheduler import SourceScheduler

    started, release = threading.Event(), threading.Event()
    ended: list[bool] = []

    def slow_work() -> None:
        started.set()
        release.wait(10)
        ended.append(True)

    def lease_holders() -> list[str]:
        with factory() as session:
            return list(session.scalars(sa.select(table(SyncLease).c.source)))

    caplog.set_level("INFO", logger="gateway.sync.scheduler")
    async with httpx.AsyncClient() as http:
        scheduler = SourceScheduler(factory, http, settings)
        housekeeping = asyncio.create_task(scheduler._run_leased("reconcile", "reconciliation", slow_work))
        await asyncio.to_thread(started.wait, 10)
        assert lease_holders() == ["reconcile"]
        stopping = asyncio.create_task(scheduler.stop())
        await asyncio.sleep(0.2)
        assert not stopping.done() and lease_holders() == ["reconcile"]  # the work goes on
        release.set()
        await asyncio.wait_for(stopping, timeout=10)
        assert ended == [True] and housekeeping.done()
        assert lease_holders() == []
    assert "reconciliation stopped with the gateway" in caplog.text
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "WARNING")]


def test_a_job_first_runs_one_interval_after_its_last_success() -> None:
    from datetime import UTC, datetime

    from gateway.sync.scheduler import first_run

    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    day = 86400.0
    assert first_run(None, day, now) == now  # never run
    assert first_run(("succeeded", now - timedelta(hours=2)), day, now) == now + timedelta(hours=22)
    assert first_run(("succeeded", now - timedelta(days=3)), day, now) == now  # overdue
    assert first_run(("failed", now - timedelta(hours=2)), day, now) == now  # tried again at once
    assert first_run(("interrupted", now - timedelta(minutes=1)), day, now) == now  # resumed


async def test_a_restarted_scheduler_carries_each_jobs_schedule_over(
    factory: sessionmaker[Session], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process (re)starting does not repeat a job that succeeded within its interval (a
    daily full sync of the registry, once per restart of each process, say); a job whose
    last run failed, or that never ran, runs at once."""
    from datetime import UTC, datetime

    import httpx

    from gateway.sync import scheduler as scheduler_module
    from gateway.sync.scheduler import SourceScheduler

    hourly = {
        name: SourceSpec(
            name, lambda s: True, lambda s: 3600.0, (JobSpec("incremental", lambda s: 3600.0, job),)
        )
        for name, job in (("fake-healthy", _healthy), ("fake-broken", _broken), ("fake-new", _healthy))
    }
    monkeypatch.setattr(scheduler_module, "PULLED_SOURCES", hourly)
    ok = start_run(factory, "fake-healthy", "incremental")
    finish_run(factory, ok, RunCounts())
    broken = start_run(factory, "fake-broken", "incremental")
    finish_run(factory, broken, RunCounts(), TransientUpstreamError("GET /homes: HTTP 503", status_code=503))
    async with httpx.AsyncClient() as http:
        scheduler = SourceScheduler(factory, http, settings)
        now = datetime.now(UTC)
        scheduler.start()
        try:
            due = {job.id: job.next_run_time - now for job in scheduler.scheduler.get_jobs()}
        finally:
            scheduler.scheduler.shutdown(wait=False)
    assert timedelta(minutes=59) < due["fake-healthy:incremental"] <= timedelta(hours=1)
    assert due["fake-broken:incremental"] < timedelta(seconds=5)
    assert due["fake-new:incremental"] < timedelta(seconds=5)
