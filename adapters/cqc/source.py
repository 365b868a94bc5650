"""The CQC registry as a source: full and incremental syncs, in batches, resumable."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from adapters.cqc.client import CqcClient
from adapters.cqc.mapping import CqcRecordError, registry_row

BATCH = 200


@dataclass
class RegistryBatch:
    """Mapped registry rows, IDs the API no longer knows (404), and records refused."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)


OnBatch = Callable[[RegistryBatch], Awaitable[None]]
OnProgress = Callable[[int, int | None], None]


class CqcSource:
    """Fetches location details with bounded concurrency under the client's rate limit."""

    name = "cqc"

    def __init__(self, client: CqcClient, concurrency: int = 16) -> None:
        self.client = client
        self.concurrency = concurrency

    async def _fetch(self, ids: list[str], on_batch: OnBatch, progress: OnProgress | None,
                     total: int | None) -> int:
        """Fetch ``ids`` with ``concurrency`` workers; batches are stored while fetching goes on."""
        results: asyncio.Queue[tuple[str, dict[str, Any] | None]] = asyncio.Queue()
        todo = iter(ids)

        async def worker() -> None:
            for location_id in todo:  # one shared iterator: each ID is taken once
                await results.put((location_id, await self.client.get_location(location_id)))

        async def writer() -> None:
            batch = RegistryBatch()
            for done in range(1, len(ids) + 1):
                location_id, record = await results.get()
                if record is None:
                    batch.not_found.append(location_id)
                else:
                    try:
                        batch.rows.append(registry_row(record))
                    except CqcRecordError as error:
                        batch.rejected.append((location_id, str(error)))
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
        self, done_ids: Iterable[str], on_batch: OnBatch, progress: OnProgress | None = None
    ) -> int:
        """List every care home, then fetch the details of those not in ``done_ids``.

        The caller stores each batch and its progress together, so a restarted full sync
        passes what it already has and does not start from zero.
        """
        listed: list[str] = []
        async for ids in self.client.list_care_home_ids():
            listed.extend(ids)
        skip = set(done_ids)
        todo = [i for i in dict.fromkeys(listed) if i not in skip]
        return await self._fetch(todo, on_batch, progress, len(todo))

    async def incremental_sync(
        self, start: str, end: str, on_batch: OnBatch, progress: OnProgress | None = None
    ) -> int:
        """Fetch every location changed in [start, end)."""
        changed = list(dict.fromkeys(await self.client.changed_location_ids(start, end)))
        return await self._fetch(changed, on_batch, progress, len(changed))
