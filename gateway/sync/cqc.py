"""Sync the CQC registry: a daily full sync (resumable) and an hourly incremental one.

The cursor (``sync_state`` of source 'cqc') holds when the current full sync started and
when it completed, where the incremental window ends, and the locations and providers
whose detail call kept failing (``retry_ids``, ``retry_provider_ids``: the next
incremental run fetches them again), and the locations trackers report that the API did
not know when last asked (``reported_unknown_ids``: incremental runs leave them to the
next full sync, unless the registry lists them as changed). Each incremental run also
fetches up to ``UNKNOWN_PER_RUN`` reported locations the registry does not hold yet, so a
location the care-home listing leaves out is known within the hour, not the day. A full
sync interrupted half way resumes: the locations and providers it stored since it
started are not fetched again. Each incremental window starts ``cqc_changes_overlap_s``
before the previous one ended: the registry lists some changes late (stamped inside a
window already asked for), and only a window that reaches back over them finds them. A
record fetched again that the registry has not changed is ``unchanged``: its row is only
marked as synced.

Providers' details follow their locations': a full sync fetches the provider of every
location it synced, an incremental run those of the locations that changed (or whose
provider the registry does not hold yet) and those ``/changes/provider`` lists over the
same window that the registry holds or that a registry location names, so the registry
names the Organizations, and a provider renamed while none of its locations changes is
seen by the next incremental run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.common.http import RetryPolicy
from adapters.cqc.client import CqcClient
from adapters.cqc.source import CqcSource, RegistryBatch
from gateway.store import registry as registry_queries
from gateway.store import repository
from gateway.store.db import transaction
from gateway.store.registry import FittedRows
from gateway.store.tables import RegistryLocation, RegistryProvider, SyncRun, utcnow
from gateway.sync.runs import RunCounts, recorded, start_run, write_counts
from gateway.sync.sources import SyncContext

SOURCE = "cqc"
# Reported locations the registry does not hold that one incremental run fetches at most
# (a minute of calls at the default rate limit); those beyond wait for the next run.
UNKNOWN_PER_RUN = 500


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


class _Stored:
    """A run's batches, each stored in its own transaction with the run's counts, and
    what they leave to do: locations and providers whose detail call kept failing, and
    the providers to fetch once the locations are in."""

    def __init__(self, context: SyncContext, run_id: int, counts: RunCounts) -> None:
        self.context, self.run_id, self.counts = context, run_id, counts
        self.failed: list[str] = []
        self.failed_providers: list[str] = []
        # Providers of the locations written, and of those fetched whose provider the
        # registry does not hold yet (an incremental run fetches these).
        self.providers: set[str] = set()
        # Locations fetched that the registry still cannot hold: the API answered 404, or
        # their record was refused.
        self.unresolved: set[str] = set()

    async def locations(self, batch: RegistryBatch) -> None:
        self.failed.extend(i for i, _ in batch.failed)
        self.providers.update(await asyncio.to_thread(self._locations, batch))

    async def provider_details(self, batch: RegistryBatch) -> None:
        self.failed_providers.extend(i for i, _ in batch.failed)
        await asyncio.to_thread(self._providers, batch)

    def _locations(self, batch: RegistryBatch) -> set[str]:
        counts = self.counts
        fitted = registry_queries.fit_registry_rows(RegistryLocation, batch.rows)
        # A batch's counts stand only once it is stored (batches are stored one at a time).
        with counts.kept_if_stored(), transaction(self.context.factory) as session:
            written, unchanged = registry_queries.sync_registry_locations(session, fitted.rows, utcnow())
            provider_of = {r["cqc_location_id"]: r.get("cqc_provider_id") for r in fitted.rows}
            wanted = {p for i in written if (p := provider_of[i])}
            known = {p for i in unchanged if (p := provider_of[i])}
            wanted |= known - registry_queries.held_provider_ids(session, known)
            self._count(batch, fitted, len(written), len(unchanged))
            write_counts(session, self.run_id, counts)
        self.unresolved.update(batch.not_found)
        self.unresolved.update(key for key, _ in batch.rejected)
        self.unresolved.update(f.key for f in fitted.refused)
        return wanted

    def _providers(self, batch: RegistryBatch) -> None:
        fitted = registry_queries.fit_registry_rows(RegistryProvider, batch.rows)
        with self.counts.kept_if_stored(), transaction(self.context.factory) as session:
            written, unchanged = registry_queries.sync_registry_providers(session, fitted.rows, utcnow())
            self._count(batch, fitted, len(written), len(unchanged), "provider ")
            write_counts(session, self.run_id, self.counts)

    def _count(
        self, batch: RegistryBatch, fitted: FittedRows, written: int, unchanged: int, prefix: str = ""
    ) -> None:
        """Count a batch's records (a provider's named so in rejections and warnings)."""
        counts = self.counts
        counts.pages += 1
        # The records the API sent, each counted in one status: an ID it answered 404 for
        # (a record it no longer has) is in the warnings only, as a call that kept failing is.
        counts.records_seen += len(batch.rows) + len(batch.rejected)
        counts.statuses["accepted"] += written
        counts.statuses["unchanged"] += unchanged
        for key, reason in batch.rejected:
            counts.reject(f"{prefix}{key}", [reason])
        for too_long in fitted.refused:
            counts.reject(f"{prefix}{too_long.key}", [f"{too_long.column}: {too_long.why}"])
        counts.warnings.extend(f"{prefix}{f.key}: {f.column} {f.why}; stored empty" for f in fitted.set_aside)
        counts.warnings.extend(f"{prefix}{i}: not found (404) on detail; skipped" for i in batch.not_found)
        counts.warnings.extend(f"{prefix}{i}: detail call failed ({why}); skipped" for i, why in batch.failed)


async def _run(context: SyncContext, kind: str, window: bool) -> SyncRun:
    run_id = await asyncio.to_thread(start_run, context.factory, SOURCE, kind)
    counts = RunCounts()
    stored = _Stored(context, run_id, counts)

    async def work() -> None:
        source = CqcSource(cqc_client(context), concurrency=context.options.get("concurrency", 16))
        cursor = await asyncio.to_thread(_cursor, context)
        if window:
            changes = await _incremental(context, source, cursor, stored)
        else:
            changes = await _full(context, source, cursor, stored, run_id, counts)
        await asyncio.to_thread(_set_cursor, context, changes, run_id, counts)

    return await recorded(context.factory, run_id, counts, work())


async def _incremental(
    context: SyncContext, source: CqcSource, cursor: dict[str, Any], stored: _Stored
) -> dict[str, Any]:
    """Fetch the window from the overlap before the previous one's end until now, the
    locations queued for retry and reported locations the registry does not hold, then the
    providers of the locations that changed (or that
    the registry does not hold), the providers changed in the window that the registry
    tracks, and those queued for retry; the cursor changes to commit (this window's end,
    what failed in it)."""
    now = utcnow().replace(microsecond=0)
    previous = cursor.get("incremental_end") or cursor.get("full_started_at")
    since = _moment(previous) if previous else now - timedelta(days=1)
    # The API takes whole seconds: rounding down only widens the window.
    start = (since - timedelta(seconds=context.settings.cqc_changes_overlap_s)).replace(microsecond=0)
    end = _iso(now)
    # Listed first: a failing listing then ends the run before any detail call.
    changed_providers = await source.changed_provider_ids(_iso(start), end)
    retry_ids = cursor.get("retry_ids", [])
    limit = int(context.options.get("unknown_per_run", UNKNOWN_PER_RUN))
    missing, unknown = await asyncio.to_thread(
        _missing_reported, context, set(cursor.get("reported_unknown_ids", [])), set(retry_ids), limit
    )
    asked = await source.incremental_sync(
        _iso(start), end, stored.locations, context.progress, retry_ids, also=missing
    )
    tracked = await asyncio.to_thread(_tracked_providers, context, changed_providers)
    providers = stored.providers | tracked | set(cursor.get("retry_provider_ids", []))
    await _providers(context, source, providers, stored, asked)
    unknown = await asyncio.to_thread(_still_missing, context, unknown | (stored.unresolved & set(missing)))
    return {
        "incremental_end": end,
        "retry_ids": sorted(set(stored.failed)),
        "retry_provider_ids": sorted(set(stored.failed_providers)),
        "reported_unknown_ids": sorted(unknown),
    }


def _missing_reported(
    context: SyncContext, unknown: set[str], retry_ids: set[str], limit: int
) -> tuple[list[str], set[str]]:
    """The reported locations the registry does not hold that this incremental run fetches
    (at most ``limit``, in ID order: those beyond wait for the next run), and those of
    ``unknown`` (the API did not know them when last asked) still reported and missing:
    they are left to the next full sync. Those queued for retry are fetched as such."""
    with context.factory() as session:
        missing = registry_queries.reported_ids_not_in_registry(session)
    still_unknown = unknown & set(missing)
    todo = [i for i in missing if i not in still_unknown and i not in retry_ids]
    return todo[:limit], still_unknown


def _still_missing(context: SyncContext, location_ids: set[str]) -> set[str]:
    """Those of ``location_ids`` still reported that the registry does not hold (one the
    registry listed as changed since may have been fetched by this run)."""
    if not location_ids:
        return set()
    with context.factory() as session:
        return location_ids & set(registry_queries.reported_ids_not_in_registry(session))


def _tracked_providers(context: SyncContext, provider_ids: list[str]) -> set[str]:
    """Those of ``provider_ids`` the registry holds or a registry location names (the
    others are not care homes' providers: the gateway has no use for them)."""
    if not provider_ids:
        return set()
    with context.factory() as session:
        return registry_queries.tracked_provider_ids(session, provider_ids)


async def _full(
    context: SyncContext,
    source: CqcSource,
    cursor: dict[str, Any],
    stored: _Stored,
    run_id: int,
    counts: RunCounts,
) -> dict[str, Any]:
    """Fetch every care home and every tracked location the listing leaves out (resuming
    an interrupted full sync), then the provider of each; the cursor changes to commit."""
    started = cursor.get("full_started_at")
    if started is None or (cursor.get("full_completed_at") or "") >= started:
        started = _iso(utcnow())  # a new full sync (to the microsecond: resume compares)
        await asyncio.to_thread(_set_cursor, context, {"full_started_at": started}, run_id, counts)
    with context.factory() as session:
        done = registry_queries.registry_ids_synced_since(session, datetime.fromisoformat(started))
        reported = registry_queries.reported_location_ids(session)
    asked = await source.full_sync(done, stored.locations, context.progress, also=reported)
    # Locations trackers began to report while the registry was listed and fetched (a full
    # sync takes half an hour at the CQC's rate): fetched now, not left to the next run.
    with context.factory() as session:
        late = set(registry_queries.reported_ids_not_in_registry(session)) - reported
    if late:
        asked += await source.fetch_locations(sorted(late), stored.locations, _after(context, asked))
        reported |= late
    with context.factory() as session:
        providers = registry_queries.providers_to_fetch_since(session, datetime.fromisoformat(started))
    await _providers(context, source, providers | set(cursor.get("retry_provider_ids", [])), stored, asked)
    changes = {
        "full_completed_at": _iso(utcnow()),
        "retry_ids": sorted(set(cursor.get("retry_ids", [])) | set(stored.failed)),
        "retry_provider_ids": sorted(set(stored.failed_providers)),
        # Asked for again by this full sync: those the API still does not know wait for the
        # next one (incremental runs do not ask again).
        "reported_unknown_ids": sorted(stored.unresolved & reported),
    }
    if "incremental_end" not in cursor:
        changes["incremental_end"] = started[:19] + "Z"  # the API takes whole seconds
    return changes


async def _providers(
    context: SyncContext, source: CqcSource, provider_ids: set[str], stored: _Stored, asked: int
) -> None:
    """Fetch the providers' details once the run's ``asked`` locations are in (progress
    goes on counting from there)."""
    await source.fetch_providers(sorted(provider_ids), stored.provider_details, _after(context, asked))


def _after(context: SyncContext, asked: int) -> Callable[[int, int | None], None]:
    """The run's progress for a later part of it, counted on from the ``asked`` calls
    before it."""
    progress = context.progress

    def shifted(done: int, total: int | None) -> None:
        if progress is not None:
            progress(asked + done, None if total is None else asked + total)

    return shifted


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _moment(text: str) -> datetime:
    """A time the cursor holds (UTC when it names no offset)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def sync_cqc_full(context: SyncContext) -> SyncRun:
    """List every care home and fetch each one's record (resuming an interrupted run)."""
    return await _run(context, "full", window=False)


async def sync_cqc_incremental(context: SyncContext) -> SyncRun:
    """Fetch the locations and providers changed since the previous window ended."""
    return await _run(context, "incremental", window=True)
