"""The pulled sources, registered in one explicit dict, each with its jobs and targets."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from gateway.settings import Settings
from gateway.store.tables import SyncRun

ProgressCallback = Callable[[int, int | None], None]


@dataclass
class SyncContext:
    """What a sync job needs: the store, the shared HTTP client, settings, progress."""

    factory: sessionmaker[Session]
    http: httpx.AsyncClient
    settings: Settings
    progress: ProgressCallback | None = None
    options: dict[str, Any] = field(default_factory=dict)


SyncJob = Callable[[SyncContext], Awaitable[SyncRun]]


@dataclass(frozen=True)
class JobSpec:
    kind: str
    interval_s: Callable[[Settings], float]
    run: SyncJob


@dataclass(frozen=True)
class SourceSpec:
    """A pulled source: its jobs, whether it is configured, how fresh its data should be."""

    name: str
    configured: Callable[[Settings], bool]
    freshness_target_s: Callable[[Settings], float]
    jobs: tuple[JobSpec, ...]


def _london_job(context: SyncContext) -> Awaitable[SyncRun]:
    from gateway.sync.london import sync_london

    return sync_london(context)


def _cqc_full(context: SyncContext) -> Awaitable[SyncRun]:
    from gateway.sync.cqc import sync_cqc_full

    return sync_cqc_full(context)


def _cqc_incremental(context: SyncContext) -> Awaitable[SyncRun]:
    from gateway.sync.cqc import sync_cqc_incremental

    return sync_cqc_incremental(context)


PULLED_SOURCES: dict[str, SourceSpec] = {
    "london": SourceSpec(
        name="london",
        configured=lambda s: bool(s.london_base_url and s.london_client_id and s.london_client_secret),
        freshness_target_s=lambda s: s.london_freshness_target_s,
        jobs=(JobSpec("incremental", lambda s: s.london_interval_s, _london_job),),
    ),
    "cqc": SourceSpec(
        name="cqc",
        configured=lambda s: bool(s.cqc_base_url and s.cqc_subscription_key),
        freshness_target_s=lambda s: s.cqc_freshness_target_s,
        jobs=(
            JobSpec("full", lambda s: s.cqc_full_sync_interval_s, _cqc_full),
            JobSpec("incremental", lambda s: s.cqc_incremental_interval_s, _cqc_incremental),
        ),
    ),
}
