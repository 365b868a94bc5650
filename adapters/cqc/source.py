"""The CQC registry as a source: full and incremental syncs of locations, and the detail
of their providers, in batches, resumable."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from adapters.common.http import UpstreamError
from adapters.cqc.client import CqcClient
from adapters.cqc.mapping import CqcRecordError, provider_row, registry_row

BATCH = 200
# Detail calls that may fail (after retries) before the run decides the API itself is
# failing rather than a few of its records: at least this many, or this share of the IDs.
MIN_FAILURES_TOLERATED = 10
SHARE_OF_FAILURES_TOLERATED = 0.01


@dataclass
class RegistryBatch:
    """Mapped registry rows (of locations, or of providers), IDs the API no longer knows
    (404), records refused, and IDs whose detail call kept failing (each with the error)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


OnBatch = Callable[[RegistryBatch], Awaitable[None]]
OnProgress = Callable[[int, int | None], None]
Outcome = dict[str, Any] | UpstreamError | None
Detail = Callable[[str], Awaitable[dict[str, Any] | None]]
RowOf = Callable[[dict[str, Any]], dict[str, Any]]


def about_one_location(error: UpstreamError) -> bool:
    """Whether a detail call's final error concerns that location (or provider) only: the
    API answered it with a 5xx (after retries), a 400, or a body that is not JSON. Refused
    access (401/403), throttling (429) and failures to reach the API at all concern every
    call."""
    status = error.status_code
    return status is not None and status not in (401, 403, 429)


def failures_tolerated(asked: int) -> int:
    """How many locations' detail calls may fail before the run fails."""
    return max(MIN_FAILURES_TOLERATED, int(asked * SHARE_OF_FAILURES_TOLERATED))


class CqcSource:
    """Fetches location (and provider) details with bounded concurrency under the client's
    rate limit."""

    name = "cqc"

    def __init__(self, client: CqcClient, concurrency: int = 16) -> None:
        self.client = client
        self.concurrency = concurrency

    async def _detail(self, get: Detail, key: str) -> Outcome:
        """A record, None (404), or the error that ended its retries when it concerns that
        record only (any other error ends the run, as does an answer asking to wait longer
        than a run waits: the API, not the record, is unavailable for that long)."""
        try:
            return await get(key)
        except UpstreamError as error:
            if not about_one_location(error) or self.client.retry.waits_too_long(error):
                raise
            return error

    async def _fetch(
        self,
        ids: list[str],
        on_batch: OnBatch,
        progress: OnProgress | None,
        total: int | None,
        get: Detail | None = None,
        row_of: RowOf = registry_row,
    ) -> int:
        """Fetch ``ids`` (locations, unless ``get`` says otherwise) with ``concurrency``
        workers; batches are stored while fetching goes on."""
        results: asyncio.Queue[tuple[str, Outcome]] = asyncio.Queue()
        todo = iter(ids)
        tolerated = failures_tolerated(len(ids))
        fetch = get or self.client.get_location

        async def worker() -> None:
            for key in todo:  # one shared iterator: each ID is taken once
                await results.put((key, await self._detail(fetch, key)))

        async def writer() -> None:
            batch = RegistryBatch()
            failures = 0
            for done in range(1, len(ids) + 1):
                key, outcome = await results.get()
                if isinstance(outcome, UpstreamError):
                    failures += 1
                    if failures > tolerated:
                        raise outcome  # so many fail that the API, not its records, is failing
                    batch.failed.append((key, str(outcome)))
                else:
                    _add(batch, key, outcome, row_of)
                if done % BATCH == 0 or done == len(ids):
                    await on_batch(batch)
                    batch = RegistryBatch()
                    if progress is not None:
                        progress(done, total)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.concurrency, max(len(ids), 1))):
                    group.create_task(worker())
                group.create_task(writer())
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None  # keep its failure class
        return len(ids)

    async def full_sync(
        self,
        done_ids: Iterable[str],
        on_batch: OnBatch,
        progress: OnProgress | None = None,
        also: Iterable[str] = (),
    ) -> int:
        """List every care home, then fetch the details of those not in ``done_ids``, and of
        the locations in ``also`` (those trackers report) that the care-home listing left
        out, such as community rehabilitation providers.

        The caller stores each batch and its progress together, so a restarted full sync
        passes what it already has and does not start from zero.
        """
        listed: list[str] = []
        async for ids in self.client.list_care_home_ids():
            listed.extend(ids)
        skip = set(done_ids)
        todo = [i for i in dict.fromkeys([*listed, *sorted(also)]) if i not in skip]
        return await self._fetch(todo, on_batch, progress, len(todo))

    async def fetch_locations(
        self, location_ids: Iterable[str], on_batch: OnBatch, progress: OnProgress | None = None
    ) -> int:
        """Fetch the details of ``location_ids``, each once (locations trackers began to
        report while a full sync listed the registry, say)."""
        todo = list(dict.fromkeys(location_ids))
        return await self._fetch(todo, on_batch, progress, len(todo))

    async def incremental_sync(
        self,
        start: str,
        end: str,
        on_batch: OnBatch,
        progress: OnProgress | None = None,
        retry_ids: Iterable[str] = (),
        also: Iterable[str] = (),
    ) -> int:
        """Fetch every location changed in [start, end), ``retry_ids`` (those whose detail
        call failed in an earlier run), and ``also`` (locations trackers report that the
        registry does not hold yet), each once."""
        changed = await self.client.changed_location_ids(start, end)
        todo = list(dict.fromkeys([*changed, *retry_ids, *also]))
        return await self._fetch(todo, on_batch, progress, len(todo))

    async def changed_provider_ids(self, start: str, end: str) -> list[str]:
        """Providers changed in [start, end) (``/changes/provider``, every page): a provider
        renamed while none of its locations changes is listed there only."""
        return await self.client.changed_provider_ids(start, end)

    async def fetch_providers(
        self, provider_ids: Iterable[str], on_batch: OnBatch, progress: OnProgress | None = None
    ) -> int:
        """Fetch each provider's record (``/providers/{id}``: name, ownership, Companies
        House number, locations) as locations are fetched: same rate limit, concurrency and
        handling of a provider whose call keeps failing (skipped, in ``failed``)."""
        todo = list(dict.fromkeys(provider_ids))
        return await self._fetch(todo, on_batch, progress, len(todo), self.client.get_provider, provider_row)


def _add(batch: RegistryBatch, key: str, record: dict[str, Any] | None, row_of: RowOf) -> None:
    if record is None:
        batch.not_found.append(key)
        return
    try:
        batch.rows.append(row_of(record))
    except CqcRecordError as error:
        batch.rejected.append((key, str(error)))
