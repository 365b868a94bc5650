"""Several gateway processes may run the scheduler: a source's run takes its lease in the
database, so one process at a time runs it, and a dead process's lease expires."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from gateway.settings import Settings
from gateway.store.db import transaction
from gateway.store.sources import acquire_lease, release_lease
from gateway.store.tables import utcnow
from gateway.sync import scheduler
from gateway.sync.scheduler import SourceScheduler
from gateway.sync.sources import JobSpec

TTL = timedelta(seconds=60)


def take(factory: sessionmaker[Session], holder: str, at: Any = None) -> bool:
    with transaction(factory) as session:
        return acquire_lease(session, "london", holder, at or utcnow(), TTL)


def test_one_holder_at_a_time_until_release_or_expiry(factory: sessionmaker[Session]) -> None:
    assert take(factory, "a")
    assert not take(factory, "b")
    assert take(factory, "a")  # renewal
    with transaction(factory) as session:
        release_lease(session, "london", "b")  # not b's to give up
    assert not take(factory, "b")
    assert take(factory, "b", at=utcnow() + TTL + timedelta(seconds=1))  # a's lease expired
    assert not take(factory, "a")
    with transaction(factory) as session:
        release_lease(session, "london", "b")
    assert take(factory, "a")


async def test_two_schedulers_never_run_one_source_at_once(
    factory: sessionmaker[Session], settings: Settings
) -> None:
    runs: list[str] = []
    started = asyncio.Event()

    async def slow_sync(context: Any) -> Any:
        runs.append("run")
        started.set()
        await asyncio.sleep(0.3)
        return SimpleNamespace(status="succeeded", id=len(runs))

    job = JobSpec(kind="incremental", interval_s=lambda s: 60.0, run=slow_sync)
    async with httpx.AsyncClient() as http:
        first, second = SourceScheduler(factory, http, settings), SourceScheduler(factory, http, settings)
        assert first.holder != second.holder
        running = asyncio.create_task(first.run_job("london", job))
        await started.wait()
        await second.run_job("london", job)  # finds the lease held: skips
        await running
        assert runs == ["run"]
        await second.run_job("london", job)  # released when the first run ended
        assert runs == ["run", "run"]


async def test_a_long_run_renews_its_lease(factory: sessionmaker[Session], settings: Settings) -> None:
    settings = settings.model_copy(update={"sync_lease_s": 0.3})
    async with httpx.AsyncClient() as http:
        first, second = SourceScheduler(factory, http, settings), SourceScheduler(factory, http, settings)
        async with first.leased("cqc") as held:
            assert held
            await asyncio.sleep(0.7)  # longer than the lease: renewed meanwhile
            async with second.leased("cqc") as other:
                assert not other
        async with second.leased("cqc") as other:
            assert other


async def test_a_renewal_that_fails_is_tried_again_and_the_lease_given_up_at_the_end(
    factory: sessionmaker[Session],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings.model_copy(update={"sync_lease_s": 0.3})  # renewed every 0.1 s
    calls = 0

    def blip_on_first_renewal(*args: Any, **kwargs: Any) -> bool:
        nonlocal calls
        calls += 1
        if calls == 2:  # the database does not answer this once
            raise sa.exc.OperationalError("UPDATE sync_lease ...", {}, sqlite3.OperationalError("locked"))
        return acquire_lease(*args, **kwargs)

    monkeypatch.setattr(scheduler, "acquire_lease", blip_on_first_renewal)
    async with httpx.AsyncClient() as http:
        first, second = SourceScheduler(factory, http, settings), SourceScheduler(factory, http, settings)
        with caplog.at_level(logging.WARNING, logger="gateway.sync.scheduler"):
            async with first.leased("london") as held:
                assert held
                await asyncio.sleep(0.7)  # past two lease lengths: renewed after the blip
                async with second.leased("london") as other:
                    assert not other
        assert calls >= 5
        async with second.leased("london") as other:  # given up when the run ended
            assert other
    assert "london: renewing the lease failed (sqlite3.OperationalError); trying again" in caplog.messages
    assert not any("UPDATE" in message for message in caplog.messages)  # no SQL in the log


async def test_a_lease_that_cannot_be_given_up_is_left_to_expire(
    factory: sessionmaker[Session],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def unavailable(*args: Any, **kwargs: Any) -> None:
        raise sa.exc.OperationalError("DELETE FROM sync_lease ...", {}, sqlite3.OperationalError("locked"))

    monkeypatch.setattr(scheduler, "release_lease", unavailable)
    async with httpx.AsyncClient() as http:
        first = SourceScheduler(factory, http, settings)
        with caplog.at_level(logging.WARNING, logger="gateway.sync.scheduler"):
            async with first.leased("london") as held:  # the block's own end is not replaced
                assert held
    said = "london: giving the lease up failed (sqlite3.OperationalError); it expires by itself"
    assert said in caplog.messages
