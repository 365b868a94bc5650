"""Source health and sync runs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from gateway.api.deps import Reader, SessionDep
from gateway.store.sources import recent_runs
from gateway.sync.health import source_health

router = APIRouter(prefix="/api/v1")


@router.get("/sources", summary="Each source's health: last sync, failures, data age, status")
def list_sources(request: Request, session: SessionDep, _: Reader) -> dict[str, Any]:
    return {
        "statuses": {
            "ok": "last sync succeeded and the newest data is within the freshness target",
            "degraded": "recent sync failures, but the data is still within the target",
            "stale": "the newest data is older than the freshness target, or there is none, or no "
            "sync of the source has finished yet (a first sync has stored only part of it)",
            "failing": "the last syncs failed in a row (see consecutive_failures)",
        },
        "sources": source_health(session, request.app.state.settings),
    }


@router.get("/sources/{source}/runs", summary="A source's recent sync runs, newest first")
def list_runs(source: str, session: SessionDep, _: Reader) -> list[dict[str, Any]]:
    return [run.model_dump(mode="json") for run in recent_runs(session, source)]
