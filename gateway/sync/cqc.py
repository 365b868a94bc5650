"""Sync the CQC registry: a daily full sync (resumable) and an hourly incremental one.

The cursor (``sync_state`` of source 'cqc') holds when the current full sync started and
when it completed, where the incremental window ends, and the locations whose detail call
kept failing (``retry_ids``: the next incremental run fetches them again). A full sync
interrupted half way resumes: the locations it stored since it started are not fetched
again. Each incremental window starts where the previous one ended. Registry writes
replace rows, so fetching a location twice is harmless.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from adapters.common.http import RetryPolicy
from adapters.cqc.client import CqcClient
from adapters.cqc.source import CqcSource, OnBatch, RegistryBatch
from gateway.store import registry as registry_queries
from gateway.store import repository
from gateway.store.db import transaction
from gateway.store.tables import SyncRun, utcnow
from gateway.sync.runs import RunCounts, recorded, start_run, write_counts
from gateway.sync.sources import SyncContext

SOURCE = "cqc"


def cqc_client(context: SyncContext) -> CqcClient:
    given = context.options.get("client")
    if isinstance(given, CqcClient):
        return given
    settings = context.settings
    assert settings.cqc_base_url and settings.cqc_subscription_key
    retry = context.options.get("retry") or RetryPolicy(max_attempts=6, base_delay_s=1.0, max_delay_s=60)
    return CqcClient(
        context.http,
        settings.cqc_base_url,
        settings.cqc_subscription_key.get_secret_value(),
        retry,
        requests_per_minute=settings.cqc_requests_per_minute,
    )


def _cursor(context: SyncContext) -> dict[str, Any]:
    with context.factory() as session:
        return repository.get_sync_cursor(session, SOURCE) or {}


def _set_cursor(context: SyncContext, changes: dict[str, Any], run_id: int, counts: RunCounts) -> None:
    with transaction(context.factory) as session:
        cursor = repository.get_sync_cursor(session, SOURCE) or {}
        repository.set_sync_cursor(session, SOURCE, {**cursor, **changes}, utcnow())
        write_counts(session, run_id, counts)


def _store(context: SyncContext, run_id: int, counts: RunCounts, batch: RegistryBatch) -> None:
    now = utcnow()
    with transaction(context.factory) as session:
        registry_queries.replace_registry_locations(
            session, [{**row, "synced_at": now} for row in batch.rows]
        )
        counts.pages += 1
        counts.records_seen += len(batch.rows) + len(batch.not_found) + len(batch.rejected)
        counts.statuses["accepted"] += len(batch.rows)
        for location_id, reason in batch.rejected:
            counts.reject(location_id, [reason])
        counts.warnings.extend(f"{i}: not found (404) on detail; skipped" for i in batch.not_found)
        counts.warnings.extend(f"{i}: detail call failed ({why}); skipped" for i, why in batch.failed)
        write_counts(session, run_id, counts)


async def _run(context: SyncContext, kind: str, window: bool) -> SyncRun:
    run_id = await asyncio.to_thread(start_run, context.factory, SOURCE, kind)
    counts = RunCounts()
    failed: list[str] = []

    async def on_batch(batch: RegistryBatch) -> None:
        failed.extend(i for i, _ in batch.failed)
        await asyncio.to_thread(_store, context, run_id, counts, batch)

    async def work() -> None:
        source = CqcSource(cqc_client(context), concurrency=context.options.get("concurrency", 16))
        cursor = await asyncio.to_thread(_cursor, context)
        if window:
            changes = await _incremental(context, source, cursor, on_batch, failed)
        else:
            changes = await _full(context, source, cursor, on_batch, failed, run_id, counts)
        await asyncio.to_thread(_set_cursor, context, changes, run_id, counts)

    return await recorded(context.factory, run_id, counts, work())


async def _incremental(
    context: SyncContext, source: CqcSource, cursor: dict[str, Any], on_batch: OnBatch, failed: list[str]
) -> dict[str, Any]:
    """Fetch the window since the previous one ended and the locations queued for retry;
    the cursor changes to commit (this window's end, what failed in it)."""
    now = utcnow().replace(microsecond=0)
    start = cursor.get("incremental_end") or cursor.get("full_started_at") or _iso(now - timedelta(days=1))
    end = _iso(now)
    await source.incremental_sync(start, end, on_batch, context.progress, cursor.get("retry_ids", []))
    return {"incremental_end": end, "retry_ids": sorted(set(failed))}


async def _full(
    context: SyncContext,
    source: CqcSource,
    cursor: dict[str, Any],
    on_batch: OnBatch,
    failed: list[str],
    run_id: int,
    counts: RunCounts,
) -> dict[str, Any]:
    """Fetch every care home and every tracked location the listing leaves out (resuming
    an interrupted full sync); the cursor changes to commit."""
    started = cursor.get("full_started_at")
    if started is None or (cursor.get("full_completed_at") or "") >= started:
        started = _iso(utcnow())  # a new full sync (to the microsecond: resume compares)
        await asyncio.to_thread(_set_cursor, context, {"full_started_at": started}, run_id, counts)
    with context.factory() as session:
        done = registry_queries.registry_ids_synced_since(session, datetime.fromisoformat(started))
        reported = registry_queries.reported_location_ids(session)
    await source.full_sync(done, on_batch, context.progress, also=reported)
    changes = {
        "full_completed_at": _iso(utcnow()),
        "retry_ids": sorted(set(cursor.get("retry_ids", [])) | set(failed)),
    }
    if "incremental_end" not in cursor:
        changes["incremental_end"] = started[:19] + "Z"  # the API takes whole seconds
    return changes


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def sync_cqc_full(context: SyncContext) -> SyncRun:
    """List every care home and fetch each one's record (resuming an interrupted run)."""
    return await _run(context, "full", window=False)


async def sync_cqc_incremental(context: SyncContext) -> SyncRun:
    """Fetch the locations changed since the previous window ended."""
    return await _run(context, "incremental", window=True)
