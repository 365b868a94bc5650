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

    async def _fetch(
        self, ids: list[str], on_batch: OnBatch, progress: OnProgress | None, total: int | None
    ) -> int:
        semaphore = asyncio.Semaphore(self.concurrency)
        done = 0

        async def one(location_id: str) -> tuple[str, dict[str, Any] | None]:
            async with semaphore:
                return location_id, await self.client.get_location(location_id)

        for start in range(0, len(ids), BATCH):
            chunk = ids[start : start + BATCH]
            batch = RegistryBatch()
            # A task group cancels the batch's other calls as soon as one fails for good.
            try:
                async with asyncio.TaskGroup() as group:
                    tasks = [group.create_task(one(i)) for i in chunk]
            except ExceptionGroup as failed:
                raise failed.exceptions[0] from None  # keep its failure class
            for location_id, record in (task.result() for task in tasks):
                if record is None:
                    batch.not_found.append(location_id)
                    continue
                try:
                    batch.rows.append(registry_row(record))
                except CqcRecordError as error:
                    batch.rejected.append((location_id, str(error)))
            await on_batch(batch)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
        return done

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
