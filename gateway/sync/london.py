"""Sync London's tracker into the national view.

Each page is stored in its own transaction together with the run's counters. The cursor
(the listing's ``as_of``, the upstream's clock) advances only with the listing's last page,
in the same transaction as that page's records: a run that fails half way leaves the
previous cursor, so the next run asks again for everything since then and nothing is
missed (homes already stored come back 'unchanged').
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from adapters.common.http import RetryPolicy
from adapters.london_tracker.client import HomesPage, LondonTrackerClient
from adapters.london_tracker.source import LondonTrackerSource, MappedPage, map_page
from gateway.gc_pause import gc_paused
from gateway.ingest import links
from gateway.ingest.service import RecordResult, RecordStatus, ahead_of_clock, apply_updates
from gateway.model.capacity import LocationUpdate
from gateway.store import reconciliation as held_queries
from gateway.store import repository
from gateway.store.db import transaction
from gateway.store.tables import SyncRun, utcnow
from gateway.sync.runs import HELD, RunCounts, recorded, start_run, write_counts
from gateway.sync.sources import SyncContext

SOURCE = "london"


def _map_and_store_page(
    context: SyncContext, run_id: int, counts: RunCounts, listed: HomesPage, held: set[str]
) -> None:
    """Map one listing page and store it (in the sync's store thread: one thread does
    both, as two threads contending for the GIL cost more CPU than they overlap)."""
    with gc_paused():
        _store_page(context, run_id, counts, map_page(listed), held)


def _store_page(
    context: SyncContext, run_id: int, counts: RunCounts, page: MappedPage, held: set[str]
) -> None:
    """Store one mapped page with the run's counters (and, on the listing's last page, the
    cursor). ``held``: the refs of the homes held for matching, kept up to date here."""
    now = utcnow()
    with counts.kept_if_stored(), transaction(context.factory) as session:
        # A held home that now reports its CQC ID goes straight in: its held copy goes.
        identified = [ref for ref, _ in page.updates if ref in held] if held else []
        if identified:
            held_queries.release_held_records(session, SOURCE, identified)
            held.difference_update(identified)
        held.update(home.home_ref for home in page.unmatched)
        refs = [ref for ref, _ in page.updates] + [home.home_ref for home in page.unmatched]
        updates = list(enumerate(update for _, update in page.updates))
        linked = _held_updates(session, page, now, start=len(updates))
        updates += linked
        # Kept aside, not in the view; but a home that closed without a CQC ID (and no
        # admin's link) is held no more: nothing of it is in the view, nor is to be.
        linked_refs = {refs[index] for index, _ in linked}
        gone = sum(
            1
            for home in page.unmatched
            if home.record.get("active") is False and home.home_ref not in linked_refs
        )
        counts.statuses[HELD] += len(page.unmatched) - len(linked) - gone
        counts.statuses[RecordStatus.UNCHANGED.value] += gone
        results = apply_updates(session, source=SOURCE, updates=updates, received_at=now)
        _leave_locations_left(session, counts, page, refs, updates, results, now)
        for result in results:
            if result.status is RecordStatus.REJECTED:  # refused by the store (its time, say)
                counts.reject(refs[result.index], [f"{p.pointer}: {p.message}" for p in result.problems])
                updated_at = updates[result.index][1].updated_at
                if ahead_of_clock(updated_at, now):
                    counts.ahead(updated_at)
            else:
                counts.add_results([result])
        counts.pages += 1
        counts.records_seen += page.homes_seen
        for skipped in page.skipped:
            counts.reject(skipped.home_ref, [f"{p.pointer}: {p.message}" for p in skipped.problems])
        counts.warnings.extend(page.warnings)
        if page.last:
            repository.set_sync_cursor(session, SOURCE, {"as_of": _next_cursor(counts, page.as_of)}, now)
        write_counts(session, run_id, counts)


def _next_cursor(counts: RunCounts, as_of: str) -> str:
    """Where the next run starts: the listing's ``as_of``, unless a home was refused as
    ahead of the gateway's clock (the tracker's clock running fast). The cursor then stays
    at that home's own time (``updated_since`` is 'at or after'), so the next runs ask for
    it again until the clocks agree, rather than passing it until it next changes."""
    ahead = counts.earliest_ahead
    if ahead is None:
        return as_of
    try:
        if ahead >= datetime.fromisoformat(as_of.upper()):
            return as_of
    except (ValueError, TypeError):  # an instant Python does not read (the gate checked it)
        pass
    held_at = ahead.astimezone(UTC).isoformat().replace("+00:00", "Z")
    counts.warnings.append(
        f"the cursor stays at {held_at}, not the listing's as_of {as_of}: homes stamped ahead "
        "of the gateway's clock are asked for again at the next run"
    )
    return held_at


def _leave_locations_left(
    session: Session,
    counts: RunCounts,
    page: MappedPage,
    refs: list[str],
    updates: list[tuple[int, LocationUpdate]],
    results: list[RecordResult],
    now: datetime,
) -> None:
    """Record where each home of the page now goes (a held home nowhere, unless an admin
    linked it; a CLOSED home nowhere: its tombstone retired the location it names); a
    location a home left, that no other home feeds, leaves London."""
    targets: dict[str, str | None] = {home.home_ref: None for home in page.unmatched}
    refused = {result.index for result in results if result.status is RecordStatus.REJECTED}
    closed: set[str] = set()
    for index, update in updates:
        if index in refused:  # what the home names now is not known: its link stays
            targets.pop(refs[index], None)
        elif update.active:
            targets[refs[index]] = update.cqc_location_id
        else:
            targets[refs[index]] = None
            closed.add(update.cqc_location_id)
    relinked = links.follow(session, SOURCE, targets, now)
    for cqc_id in relinked.left:
        if cqc_id not in closed:  # a closure says so itself
            counts.warnings.append(f"{cqc_id}: no London home names it any more; it leaves the London source")
    for cqc_id, refs in relinked.shared.items():
        counts.warnings.append(
            f"{cqc_id}: named by {len(refs)} London homes ({', '.join(refs)}); each report replaces "
            "the others' beds there (a shared-location finding of the next reconciliation)"
        )


def _held_updates(
    session: Session, page: MappedPage, now: datetime, start: int
) -> list[tuple[int, LocationUpdate]]:
    """Keep homes without a CQC ID for matching; those already linked go straight in."""
    linked = held_queries.hold_records(
        session,
        SOURCE,
        [
            {
                "source_ref": home.home_ref,
                "name": home.name,
                "postcode": home.postcode,
                "local_authority": home.local_authority,
                "record": home.record,
            }
            for home in page.unmatched
        ],
        now,
    )
    return [
        (start + offset, LocationUpdate.model_validate({**home.record, "cqc_location_id": cqc_id}))
        for offset, home in enumerate(page.unmatched)
        if (cqc_id := linked.get(home.home_ref)) is not None
    ]


def london_client(context: SyncContext) -> LondonTrackerClient:
    settings = context.settings
    assert settings.london_base_url and settings.london_client_id and settings.london_client_secret
    retry = context.options.get("retry") or RetryPolicy(max_attempts=6, base_delay_s=0.5, max_delay_s=30)
    return LondonTrackerClient(
        context.http,
        settings.london_base_url,
        settings.london_client_id,
        settings.london_client_secret.get_secret_value(),
        retry,
        page_size=settings.london_page_size,
    )


async def sync_london(context: SyncContext) -> SyncRun:
    """One incremental sync of London; the run is recorded whatever happens."""
    factory = context.factory
    run_id = await asyncio.to_thread(start_run, factory, SOURCE, "incremental")
    counts = RunCounts()
    # Pages are mapped and stored in order by one thread of their own while the next
    # pages are fetched. A page goes to it as soon as it arrives, so the thread starts
    # the next page the moment it finishes one, without waiting for the event loop to
    # hand it over (measured: 3 to 6 ms a page). At most two pages wait on it: the one
    # being stored and the next.
    stores = ThreadPoolExecutor(max_workers=1, thread_name_prefix="london-store")
    failed = threading.Event()
    held: set[str] = set()  # refs of the homes held for matching, read as the run starts

    def store(page: HomesPage) -> None:
        if failed.is_set():  # never store a page after one that failed
            return
        try:
            _map_and_store_page(context, run_id, counts, page, held)
        except BaseException:
            failed.set()
            raise

    async def work() -> None:
        with factory() as session:
            cursor = repository.get_sync_cursor(session, SOURCE) or {}
            held.update(held_queries.held_source_refs(session, SOURCE))
        source = LondonTrackerSource(london_client(context))
        loop = asyncio.get_running_loop()
        storing: deque[asyncio.Future[None]] = deque()
        seen = 0
        async with aclosing(source.listing(cursor.get("as_of"))) as pages:
            try:
                async for page in pages:
                    if len(storing) == 2:
                        await storing.popleft()
                    storing.append(loop.run_in_executor(stores, contextvars.copy_context().run, store, page))
                    seen += len(page.homes)
                    if context.progress is not None:
                        context.progress(seen, None)
            finally:
                if storing:
                    # Let pages already handed over finish (or fail) before the run is
                    # closed, whatever stopped the listing.
                    await asyncio.wait(storing)
        for stored in storing:
            await stored

    try:
        return await recorded(factory, run_id, counts, work())
    finally:
        stores.shutdown(wait=False)
