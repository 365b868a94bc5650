"""APScheduler (3.x) inside the gateway process: one job per source job, each on its own
interval, never two runs of one source at once, one source's failure never another's.

With several gateway processes side by side, enable the scheduler in one of them only
(``GATEWAY_SCHEDULER_ENABLED=false`` on the others).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from datetime import UTC, datetime

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.orm import Session, sessionmaker

from gateway.settings import Settings
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


class SourceScheduler:
    """Runs every configured source's jobs on their intervals."""

    def __init__(self, factory: sessionmaker[Session], http: httpx.AsyncClient, settings: Settings) -> None:
        self._factory = factory
        self._http = http
        self._settings = settings
        self._locks: dict[str, asyncio.Lock] = {}
        self.scheduler = AsyncIOScheduler(timezone=UTC)

    def start(self) -> None:
        now = datetime.now(UTC)
        for spec in PULLED_SOURCES.values():
            if not spec.configured(self._settings):
                continue
            self._locks[spec.name] = asyncio.Lock()
            for job in spec.jobs:
                self.scheduler.add_job(
                    self.run_job,
                    "interval",
                    seconds=job.interval_s(self._settings),
                    id=f"{spec.name}:{job.kind}",
                    args=[spec.name, job],
                    max_instances=1,
                    coalesce=True,
                    next_run_time=now,
                    misfire_grace_time=None,
                )
        self.scheduler.add_job(
            self.run_reconciliation,
            "interval",
            seconds=self._settings.reconcile_interval_s,
            id="reconcile",
            max_instances=1,
            coalesce=True,
        )
        self.scheduler.start()
        freeze_startup_heap()  # the gateway has started up; its jobs begin from here

    async def run_reconciliation(self) -> None:
        from gateway.reconcile.service import reconcile
        from gateway.store.db import transaction

        def work() -> None:
            with transaction(self._factory) as session:
                summary = reconcile(session)
            log.info("reconciliation: %s open findings", sum(summary.open_by_kind.values()))

        try:
            await asyncio.to_thread(work)
        except Exception:  # a failed reconciliation must not stop the scheduler
            log.exception("reconciliation failed")

    async def run_job(self, source: str, job: JobSpec) -> None:
        lock = self._locks.setdefault(source, asyncio.Lock())
        if lock.locked():
            log.info("sync %s:%s skipped: a run of %s is in progress", source, job.kind, source)
            return
        async with lock:
            context = SyncContext(self._factory, self._http, self._settings)
            try:
                run = await job.run(context)
            except Exception:  # recorded by the job; never let it stop the scheduler
                log.exception("sync %s:%s failed outside its run record", source, job.kind)
                return
            log.info("sync %s:%s %s (run %s)", source, job.kind, run.status, run.id)

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
