"""APScheduler (3.x) inside the gateway process: one job per source job, each on its own
interval, never two runs of one source at once, one source's failure never another's.

Several gateway processes may run the scheduler side by side: a run first takes its
source's lease in the database (renewed while it runs, given up when it ends; a dead
process's lease expires after ``GATEWAY_SYNC_LEASE_S``), and a process that finds the lease
held by another skips that run.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.orm import Session, sessionmaker

from gateway.errors import log_unexpected
from gateway.settings import Settings
from gateway.store.db import database_fault, transaction
from gateway.store.sources import acquire_lease, latest_runs, release_lease
from gateway.store.tables import SUCCEEDED, utcnow
from gateway.sync.sources import PULLED_SOURCES, JobSpec, SyncContext

log = logging.getLogger(__name__)
_heap_frozen = False


def freeze_startup_heap() -> None:
    """Take what the process holds once it has started up (modules, classes, the app,
    settings) out of the cyclic garbage collector's sight, once per process.

    A sync allocates a few hundred thousand short-lived objects, which sets off full
    collections; each of those otherwise walks the whole start-up heap (about 0.12 s on a
    2-core machine, holding the GIL: the event loop and the sync stall). A collection
    first, so no garbage is frozen.
    """
    global _heap_frozen
    if _heap_frozen:
        return
    gc.collect()
    gc.freeze()
    _heap_frozen = True


def lease_holder() -> str:
    """A name for this process as a lease holder: host, process id and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def source_lease(
    factory: sessionmaker[Session], name: str, holder: str, ttl: timedelta
) -> AsyncIterator[bool]:
    """Hold ``name``'s lease for the block (True), or not at all (False: another process
    holds it). Renewed every third of its length while the block runs."""

    def take() -> bool:
        with transaction(factory) as session:
            return acquire_lease(session, name, holder, utcnow(), ttl)

    def give_up() -> None:
        with transaction(factory) as session:
            release_lease(session, name, holder)

    if not await asyncio.to_thread(take):
        yield False
        return

    async def renew() -> None:
        # A renewal that fails (the database not answering for a moment) is tried again
        # at the next third: the lease still has two thirds to run.
        while True:
            await asyncio.sleep(ttl.total_seconds() / 3)
            try:
                renewed = await asyncio.to_thread(take)
            except Exception as error:  # noqa: BLE001 (logged by class, tried again)
                log.warning("%s: renewing the lease failed (%s); trying again", name, _fault(error))
                continue
            if not renewed:
                log.warning("%s: the lease passed to another process during a run", name)

    renewing = asyncio.create_task(renew())
    try:
        yield True
    finally:
        renewing.cancel()
        with suppress(asyncio.CancelledError):
            await renewing
        try:
            await asyncio.to_thread(give_up)
        except Exception as error:  # noqa: BLE001 (the lease expires by itself)
            log.warning("%s: giving the lease up failed (%s); it expires by itself", name, _fault(error))


def _fault(error: BaseException) -> str:
    """What went wrong, safe to log: a database error's class and code, never its text
    (it may quote SQL parameters); otherwise the exception's class."""
    if isinstance(error, sa.exc.DBAPIError | sa.exc.TimeoutError):
        return database_fault(error)
    return type(error).__name__


def first_run(latest: tuple[str, datetime] | None, interval_s: float, now: datetime) -> datetime:
    """When a job first runs in a process starting ``now``: one interval after its latest
    run began if that run succeeded (a restart, or each of several processes starting,
    does not repeat a daily full sync of the CQC registry), else at once (never run, or
    its last run failed or was cut short: an interrupted run resumes)."""
    if latest is None:
        return now
    status, started_at = latest
    if status != SUCCEEDED:
        return now
    return max(now, started_at + timedelta(seconds=interval_s))


class SourceScheduler:
    """Runs every configured source's jobs on their intervals."""

    def __init__(self, factory: sessionmaker[Session], http: httpx.AsyncClient, settings: Settings) -> None:
        self._factory = factory
        self._http = http
        self._settings = settings
        self._locks: dict[str, asyncio.Lock] = {}
        self._running: set[asyncio.Task[Any]] = set()  # source syncs under way
        self.holder = lease_holder()
        self.scheduler = AsyncIOScheduler(timezone=UTC)

    def leased(self, name: str) -> AbstractAsyncContextManager[bool]:
        """``source_lease`` of ``name`` for this process."""
        return source_lease(self._factory, name, self.holder, timedelta(seconds=self._settings.sync_lease_s))

    def start(self) -> None:
        now = datetime.now(UTC)
        latest = self._latest_runs()
        for spec in PULLED_SOURCES.values():
            if not spec.configured(self._settings):
                continue
            self._locks[spec.name] = asyncio.Lock()
            for job in spec.jobs:
                interval = job.interval_s(self._settings)
                self.scheduler.add_job(
                    self.run_job,
                    "interval",
                    seconds=interval,
                    id=f"{spec.name}:{job.kind}",
                    args=[spec.name, job],
                    max_instances=1,
                    coalesce=True,
                    next_run_time=first_run(latest.get((spec.name, job.kind)), interval, now),
                    misfire_grace_time=None,
                )
        # Reconciliation first runs after one interval (the sources' first syncs come before
        # it); body retention as the gateway starts.
        self._add_housekeeping("reconcile", self.run_reconciliation, self._settings.reconcile_interval_s)
        if self._settings.push_body_retention_days is not None:
            self._add_housekeeping(
                "push-body-retention",
                self.run_body_retention,
                self._settings.housekeeping_interval_s,
                next_run_time=now,
            )
        self.scheduler.start()
        log.info(
            "scheduled: %s",
            ", ".join(
                f"{job.id} every {job.trigger.interval.total_seconds():g} s"
                for job in self.scheduler.get_jobs()
            )
            or "nothing",
        )
        freeze_startup_heap()  # the gateway has started up; its jobs begin from here

    def _latest_runs(self) -> dict[tuple[str, str], tuple[str, datetime]]:
        """Each job's latest ended run, to carry its schedule over a restart; none when the
        database does not answer (every job then runs at once, as on a first start)."""
        try:
            with self._factory() as session:
                return latest_runs(session)
        except (sa.exc.DBAPIError, sa.exc.TimeoutError) as error:
            log.warning("the jobs' last runs could not be read (%s): each runs now", database_fault(error))
            return {}

    def _add_housekeeping(
        self, job_id: str, run: Callable[[], Awaitable[None]], seconds: float, **first: Any
    ) -> None:
        """A job that is not a source's: at most one run at a time, missed runs coalesced
        into one that still runs however late (as a source's: APScheduler's default grace of
        one second would skip a run the busy event loop woke to late)."""
        self.scheduler.add_job(
            run,
            "interval",
            seconds=seconds,
            id=job_id,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            **first,
        )

    async def run_reconciliation(self) -> None:
        from gateway.reconcile.service import reconcile

        recent = timedelta(seconds=self._settings.push_freshness_target_s)

        def work() -> None:
            with transaction(self._factory) as session:
                summary = reconcile(session, recent=recent)
            log.info("reconciliation: %s open findings", sum(summary.open_by_kind.values()))

        await self._run_leased("reconcile", "reconciliation", work)

    async def run_body_retention(self) -> None:
        from gateway.ingest.retention import discard_old_bodies

        days = self._settings.push_body_retention_days
        assert days is not None
        await self._run_leased(
            "push-body-retention",
            "push body retention",
            lambda: discard_old_bodies(self._factory, timedelta(days=days)),
        )

    async def _run_leased(self, lease: str, label: str, work: Callable[[], object]) -> None:
        """Run ``work`` (blocking) in a thread while holding ``lease``; skip it when another
        process holds the lease; log, never raise, its failure.

        Stopping the gateway lets the work under way end first (a thread cannot be
        stopped, and the work is one transaction): its lease goes only then, so another
        process that takes it at once never runs the work beside this one."""
        self._track_current_task()
        try:
            async with self.leased(lease) as held:
                if not held:
                    log.info("%s skipped: another gateway process is running it", label)
                    return
                working = asyncio.ensure_future(asyncio.to_thread(work))
                try:
                    await asyncio.shield(working)
                except asyncio.CancelledError:
                    await working
                    raise
        except asyncio.CancelledError:
            log.info("%s stopped with the gateway", label)
        except Exception as error:  # noqa: BLE001 - a failed job must not stop the scheduler
            log_unexpected(log, f"{label} failed", error)

    async def run_job(self, source: str, job: JobSpec) -> None:
        lock = self._locks.setdefault(source, asyncio.Lock())
        if lock.locked():
            log.info("sync %s:%s skipped: a run of %s is in progress", source, job.kind, source)
            return
        self._track_current_task()
        async with lock:
            context = SyncContext(self._factory, self._http, self._settings)
            try:
                async with self.leased(source) as held:
                    if not held:
                        log.info(
                            "sync %s:%s skipped: another gateway process is running it", source, job.kind
                        )
                        return
                    run = await job.run(context)
            except asyncio.CancelledError:
                # The gateway is stopping: the run ends here (its pages so far are kept,
                # and the next run asks again from the last cursor).
                log.info("sync %s:%s stopped with the gateway", source, job.kind)
                return
            except Exception as error:  # noqa: BLE001 - recorded by the job; never stop the scheduler
                log_unexpected(log, f"sync {source}:{job.kind} failed outside its run record", error)
                return
            log.info("sync %s:%s %s (run %s)", source, job.kind, run.status, run.id)

    def _track_current_task(self) -> None:
        """Count the calling task among the runs ``stop`` cancels and waits for."""
        running = asyncio.current_task()
        if running is not None:
            self._running.add(running)
            running.add_done_callback(self._running.discard)

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Stop scheduling, and stop the syncs still running: each is cancelled and closes
        its run as ``interrupted`` before this returns, so the gateway's HTTP client and
        database are closed only after (a run cut short by a closed client was recorded
        as failed). Housekeeping under way (reconciliation, say) ends its work first."""
        self.shutdown()
        running = [task for task in self._running if not task.done()]
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=timeout_s)
