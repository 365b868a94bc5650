"""Reconciliation findings and the review queue of unmatched homes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from gateway.api.deps import Admin, Reader, SessionDep
from gateway.api.query_params import only_parameters
from gateway.model.capacity import CQC_ID_PATTERN, Text
from gateway.model.vocab import NhsRegion
from gateway.reconcile import api_service
from gateway.search.query import codes

router = APIRouter(prefix="/api/v1/reconciliation")
MAX_OFFSET = 100_000_000  # far past any findings there are; a larger one overflows the database's integer


@router.get(
    "/findings",
    summary="Reconciliation findings (JSON or CSV)",
    dependencies=[only_parameters("kind", "region", "source", "status", "format", "limit", "offset")],
)
def list_findings(
    session: SessionDep,
    _: Reader,
    kind: Annotated[list[str] | None, Query(description="one or more finding kinds")] = None,
    region: Annotated[list[str] | None, Query(description="NHS region codes or names")] = None,
    source: Annotated[list[str] | None, Query()] = None,
    status: Annotated[list[str] | None, Query(description="open (default) or closed")] = None,
    format: Literal["json", "csv"] = "json",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> Any:
    total, rows = api_service.find(
        session,
        kinds=kind,
        regions=codes("region", region, NhsRegion) if region else None,
        sources=source,
        statuses=status or ["open"],
        limit=None if format == "csv" else limit,
        offset=0 if format == "csv" else offset,
    )
    if format == "csv":
        return StreamingResponse(
            api_service.findings_csv(rows),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="reconciliation-findings.csv"'},
        )
    return {"total": total, "limit": limit, "offset": offset, "findings": rows}


@router.get("/matches", summary="Homes without a CQC ID and their match status")
def list_matches(
    session: SessionDep, _: Reader, status: Annotated[list[str] | None, Query()] = None
) -> list[dict[str, Any]]:
    return api_service.review_queue(session, status)


class MatchDecision(BaseModel):
    source: Text = Field(min_length=1, max_length=80)
    source_ref: Text = Field(min_length=1, max_length=80)
    decision: Literal["confirm", "reject"]
    cqc_location_id: str | None = Field(default=None, pattern=CQC_ID_PATTERN)


@router.post("/matches", summary="Confirm or reject a queued match (admin)")
def decide_match(body: MatchDecision, session: SessionDep, _: Admin) -> dict[str, Any]:
    return api_service.decide(
        session,
        source=body.source,
        source_ref=body.source_ref,
        decision=body.decision,
        cqc_location_id=body.cqc_location_id,
    )
