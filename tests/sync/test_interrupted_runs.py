"""A run cut short (the gateway stopping, or its process dying) is closed as interrupted,
never left 'running', and says nothing of its source's health."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from adapters.common.http import TransientUpstreamError
from gateway.settings import Settings
from gateway.store import repository
from gateway.store.db import transaction
from gateway.store.sources import acquire_lease, pulled_source_activity
from gateway.store.tables import Location, SyncRun, utcnow
from gateway.sync import london
from gateway.sync.runs import RunCounts, finish_run, start_run
from gateway.sync.sources import SyncContext
from simulators.london_tracker import LondonSimulatorSettings, LondonTrackerSimulator, create_app
from simulators.server import run_in_thread
from tests.adapters.london_tracker.homes import home
from tests.conftest import GatewayCli


def run_of(factory: sessionmaker[Session], run_id: int) -> SyncRun:
    with factory() as session:
        run = session.get(SyncRun, run_id)
        assert run is not None
        return run


def test_a_new_run_closes_its_source_runs_left_running(factory: sessionmaker[Session]) -> None:
    """A process that died mid-run left its run 'running'; the next run of that source
    (which holds the lease, so nothing else runs it) closes it as interrupted."""
    dead = start_run(factory, "london", "incremental")
    other = start_run(factory, "cqc", "full")
    fresh = start_run(factory, "london", "incremental")

    closed = run_of(factory, dead)
    assert closed.status == "interrupted"
    assert closed.finished_at is not None
    assert closed.error_message and "stopped before it ended" in closed.error_message
    assert closed.error_class is None  # not a failure of the source
    assert run_of(factory, other).status == "running"  # another source's run is left alone
    assert run_of(factory, fresh).status == "running"


def test_interrupted_runs_say_nothing_of_health(factory: sessionmaker[Session]) -> None:
    """An interrupted run neither counts as a failure nor ends a run of failures."""
    error = TransientUpstreamError("GET /api/v2/homes: HTTP 503", status_code=503)
    ok = start_run(factory, "london", "incremental")
    finish_run(factory, ok, RunCounts())
    for _ in range(2):
        failed = start_run(factory, "london", "incremental")
        finish_run(factory, failed, RunCounts(), error)
        cut = start_run(factory, "london", "incremental")
        finish_run(factory, cut, RunCounts(), asyncio.CancelledError())
    assert run_of(factory, cut).status == "interrupted"
    with factory() as session:
        activity = pulled_source_activity(session, "london")
    assert activity.consecutive_failures == 2
    assert activity.last_error_class == "transient"
    assert activity.last_attempt == run_of(factory, failed).started_at
    assert activity.last_success == run_of(factory, ok).finished_at


def test_a_long_outage_still_shows_the_last_success_and_every_failure(factory: sessionmaker[Session]) -> None:
    """Past the last 50 runs, health still finds the last success and counts every failure
    since it (it showed no success at all, and at most 50 failures, during a long outage)."""
    error = TransientUpstreamError("GET /api/v2/homes: HTTP 503", status_code=503)
    ok = start_run(factory, "london", "incremental")
    finish_run(factory, ok, RunCounts())
    for n in range(60):
        failed = start_run(factory, "london", "incremental")
        finish_run(factory, failed, RunCounts(), error)
        if n % 10 == 0:
            cut = start_run(factory, "london", "incremental")
            finish_run(factory, cut, RunCounts(), asyncio.CancelledError())
    with factory() as session:
        activity = pulled_source_activity(session, "london")
        never = pulled_source_activity(session, "never-succeeded")
    assert activity.last_success == run_of(factory, ok).finished_at
    assert activity.consecutive_failures == 60
    assert activity.last_attempt == run_of(factory, failed).started_at
    assert activity.last_error_class == "transient"
    assert never.last_success is None and never.consecutive_failures == 0


HOMES = 200


@pytest.fixture
def tracker() -> Iterator[tuple[str, LondonTrackerSimulator]]:
    homes = [
        home(home_ref=f"LDN-{n:06d}", cqc_location_id=f"1-{710000000 + n}", name=f"Home {n}")
        for n in range(HOMES)
    ]
    app = create_app(homes, LondonSimulatorSettings(client_id="gw", client_secret="s3cret"))
    with run_in_thread(app) as url:
        yield url, app.state.simulator


def london_settings(settings: Settings, url: str) -> Settings:
    return settings.model_copy(
        update={
            "london_base_url": url,
            "london_client_id": "gw",
            "london_client_secret": SecretStr("s3cret"),
            "london_page_size": 20,
        }
    )


def test_a_sync_stopped_mid_listing_is_closed_as_interrupted(
    settings: Settings,
    factory: sessionmaker[Session],
    tracker: tuple[str, LondonTrackerSimulator],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, simulator = tracker
    settings = london_settings(settings, url)
    first_stored = threading.Event()
    store_page = london._store_page

    def store_then_stall(*args: Any) -> None:
        store_page(*args)
        # From now on the tracker answers slowly: the sync is stopped while it waits.
        simulator.settings.slow_rate, simulator.settings.slow_seconds = 1.0, 30.0
        first_stored.set()

    monkeypatch.setattr(london, "_store_page", store_then_stall)

    async def main() -> None:
        async with httpx.AsyncClient(timeout=60) as http:
            sync = asyncio.create_task(london.sync_london(SyncContext(factory, http, settings)))
            await asyncio.to_thread(first_stored.wait, 30)
            sync.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sync

    asyncio.run(main())

    with factory() as session:
        run = session.scalars(sa.select(SyncRun).where(SyncRun.source == "london")).one()
        stored = session.scalar(sa.select(sa.func.count()).select_from(Location))
        cursor = repository.get_sync_cursor(session, "london")
    assert run.status == "interrupted"
    assert run.finished_at is not None
    assert run.error_class is None
    # What was stored before the stop is kept, and the run's counters say so; the cursor
    # did not move, so the next run asks again for everything.
    assert 1 <= run.pages < HOMES // 20
    assert stored == run.accepted == run.pages * 20
    assert cursor is None


def test_cli_sync_refuses_while_another_process_holds_the_lease(
    factory: sessionmaker[Session], gateway_cli: GatewayCli
) -> None:
    """``gateway sync london`` takes the source's lease as the scheduler does: while a
    gateway process runs London, the command says so and fails, and stores nothing."""
    with transaction(factory) as session:
        assert acquire_lease(session, "london", "another-process", utcnow(), timedelta(minutes=5))
    result = gateway_cli(
        "sync",
        "london",
        GATEWAY_LONDON_BASE_URL="http://127.0.0.1:9",  # never called
        GATEWAY_LONDON_CLIENT_ID="gw",
        GATEWAY_LONDON_CLIENT_SECRET="s3cret",
    )
    assert result.exit_code == 1
    assert "running in another gateway process" in result.output
    with factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(SyncRun)) == 0
