"""Sync runs: every run of every pulled source is recorded, whatever its outcome."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from adapters.common.http import FailureClass, UpstreamError
from gateway.errors import log_unexpected
from gateway.ingest.service import RecordResult, RecordStatus
from gateway.metrics import SYNC_RUNS
from gateway.store.db import database_fault, database_unavailable, transaction
from gateway.store.sources import update_run_counts
from gateway.store.tables import FAILED, INTERRUPTED, RUNNING, SUCCEEDED, SyncRun, table, utcnow

log = logging.getLogger(__name__)
MAX_REJECTIONS_KEPT = 500
HELD = "held"  # a record kept aside for matching (no CQC ID yet): in no other count
_INTERRUPTED_MESSAGE = "stopped before it ended (its gateway process stopped)"


@dataclass
class RunCounts:
    """What a run has seen so far; written to its ``sync_run`` row with each page."""

    pages: int = 0
    records_seen: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    rejections: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # The earliest own time of a record refused as ahead of the gateway's clock: the
    # cursor must not pass it, so the record is asked for again once the clocks agree.
    earliest_ahead: datetime | None = None
    _rejected: set[str] = field(default_factory=set)

    def add_results(self, results: list[RecordResult]) -> None:
        for result in results:
            self.statuses[result.status.value] += 1

    def ahead(self, updated_at: datetime) -> None:
        """Note a record refused as ahead of the gateway's clock (see ``earliest_ahead``)."""
        if self.earliest_ahead is None or updated_at < self.earliest_ahead:
            self.earliest_ahead = updated_at

    def reject(self, ref: str | None, reasons: list[str]) -> None:
        """Count a rejected copy of a record, as every copy the upstream sent counts in
        one status (so the statuses add up to the records seen, a home sent twice by a
        restarted listing included); its reasons are listed once per run, however often
        it came. A record without a readable ref ("?") cannot be told from another: each
        is listed."""
        self.statuses[RecordStatus.REJECTED.value] += 1
        if ref is not None:
            if ref in self._rejected:
                return
            self._rejected.add(ref)
        if len(self.rejections) < MAX_REJECTIONS_KEPT:
            self.rejections.append({"ref": ref or "?", "reasons": reasons})

    @contextmanager
    def kept_if_stored(self) -> Iterator[None]:
        """Counts made in the block stand only if the block ends well: wrap a page's
        transaction in it, so a page rolled back is not reported as stored."""
        before = (
            self.pages,
            self.records_seen,
            self.statuses.copy(),
            len(self.rejections),
            len(self.warnings),
            self.earliest_ahead,
            self._rejected.copy(),
        )
        try:
            yield
        except BaseException:
            (
                self.pages,
                self.records_seen,
                self.statuses,
                kept,
                warned,
                self.earliest_ahead,
                self._rejected,
            ) = before
            del self.rejections[kept:], self.warnings[warned:]
            raise

    def as_row(self) -> dict[str, Any]:
        return {
            "pages": self.pages,
            "records_seen": self.records_seen,
            "accepted": self.statuses[RecordStatus.ACCEPTED.value],
            "unchanged": self.statuses[RecordStatus.UNCHANGED.value],
            "stale": self.statuses[RecordStatus.STALE.value],
            "rejected": self.statuses[RecordStatus.REJECTED.value],
            "held": self.statuses[HELD],
            "rejections": list(self.rejections),
            "warnings": list(self.warnings[:MAX_REJECTIONS_KEPT]),
        }


def classify(error: BaseException) -> FailureClass:
    """The failure class recorded on a run that ended with ``error``."""
    if isinstance(error, UpstreamError):
        return error.failure_class
    if database_unavailable(error):  # the gateway's own database went away: it comes back
        return FailureClass.TRANSIENT
    return FailureClass.INTERNAL


def error_text(error: BaseException) -> str:
    """What a run that ended with ``error`` records (and the API serves) of it. An upstream
    error's message is the adapter's own (the call and its status, never a body); any other
    exception's text may quote data or SQL parameters (records, payloads), so only its type
    is recorded: its stack is logged, without its text."""
    if isinstance(error, UpstreamError):
        return f"{type(error).__name__}: {error}"[:500]
    if database_unavailable(error):
        return f"the gateway's database was unavailable ({database_fault(error)})"
    return f"{type(error).__name__} (an internal fault; its stack is in the gateway's log)"


def start_run(factory: sessionmaker[Session], source: str, kind: str) -> int:
    """Record a new run of ``source``.

    Its caller holds the source's lease (one run of a source at a time), so an earlier run
    of the source still marked running was cut short by its process stopping (a crash, a
    kill): it is closed here as interrupted. Its pages so far were kept, and the cursor
    never passed them.
    """
    now = utcnow()
    with transaction(factory) as session:
        t = table(SyncRun)
        session.execute(
            sa.update(t)
            .where(t.c.source == source, t.c.status == RUNNING)
            .values(status=INTERRUPTED, finished_at=now, error_message=_INTERRUPTED_MESSAGE)
        )
        run = SyncRun(source=source, kind=kind, started_at=now)
        session.add(run)
        session.flush()
        assert run.id is not None
        return run.id


def write_counts(session: Session, run_id: int, counts: RunCounts) -> None:
    """Store a run's counters, in the caller's transaction (the one holding the page)."""
    update_run_counts(session, run_id, counts.as_row())


def finish_run(
    factory: sessionmaker[Session], run_id: int, counts: RunCounts, error: BaseException | None = None
) -> SyncRun:
    """Close a run as succeeded, or as failed with its failure class and a short message,
    or (``error`` a cancellation: the gateway is stopping) as interrupted."""
    with transaction(factory) as session:
        write_counts(session, run_id, counts)
        run = session.get(SyncRun, run_id)
        assert run is not None
        run.finished_at = utcnow()
        if isinstance(error, asyncio.CancelledError):
            run.status, run.error_message = INTERRUPTED, _INTERRUPTED_MESSAGE
        elif error is None:
            run.status = SUCCEEDED
        else:
            run.status, run.error_class = FAILED, classify(error).value
            # The message names the call and status only; bodies are never recorded.
            run.error_message = error_text(error)
    # Said once the run is recorded (a close tried again while the database does not
    # answer says it once).
    if run.status == FAILED and error is not None:
        if database_unavailable(error):
            log.warning("sync run %s of %s failed: %s", run_id, run.source, run.error_message)
        elif not isinstance(error, UpstreamError):
            log_unexpected(log, f"sync run {run_id} of {run.source} failed", error)
    SYNC_RUNS.labels(run.source, run.status).inc()
    return run


async def recorded(
    factory: sessionmaker[Session], run_id: int, counts: RunCounts, work: Awaitable[None]
) -> SyncRun:
    """Await a run's ``work`` and close the run with its outcome: succeeded, failed with
    its failure class, or interrupted when the gateway stops it (the cancellation then
    goes on; the run is closed without awaiting, as its task is being cancelled)."""
    try:
        await work
    except asyncio.CancelledError as cancelled:
        finish_run(factory, run_id, counts, cancelled)
        raise
    except Exception as error:  # noqa: BLE001 - recorded on the run with its failure class
        return await _closed(factory, run_id, counts, error)
    return await _closed(factory, run_id, counts)


# How long a run's record is tried again while the database does not answer (then it is
# left for the source's next run to close as interrupted), and the first wait between tries.
CLOSE_TRIES_S = 60.0
CLOSE_FIRST_WAIT_S = 0.5


async def _closed(
    factory: sessionmaker[Session], run_id: int, counts: RunCounts, error: Exception | None = None
) -> SyncRun:
    """``finish_run``, tried again while the database does not answer: a run that failed
    because its database went away is closed as failed (transient) once it answers again,
    rather than left running for the next run to close as interrupted."""
    wait, give_up = CLOSE_FIRST_WAIT_S, time.monotonic() + CLOSE_TRIES_S
    while True:
        try:
            return await asyncio.to_thread(finish_run, factory, run_id, counts, error)
        except Exception as fault:
            if not database_unavailable(fault) or time.monotonic() + wait > give_up:
                raise
            log.warning(
                "sync run %s: its record could not be closed (%s); trying again in %.1f s",
                run_id,
                database_fault(fault),
                wait,
            )
            await asyncio.sleep(wait)
            wait = min(wait * 2, 10.0)
