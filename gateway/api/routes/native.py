"""The native API: tracker pushes and reads of the national view."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime

from gateway.api.bodies import read_body
from gateway.api.deps import FactoryDep, Reader, SessionDep, Submitter
from gateway.ingest.submission_log import MAX_LIMIT, list_submissions, submission_detail
from gateway.ingest.submissions import check_submission, receive_submission
from gateway.locations import get_location_detail, get_location_history
from gateway.model.capacity import CQC_ID_PATTERN

router = APIRouter(prefix="/api/v1")
# A push's body, as the OpenAPI document describes it (a push and its dry run take one).
_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TrackerSubmission"}}},
    }
}
CqcId = Annotated[str, Path(pattern=CQC_ID_PATTERN, description="CQC location ID, e.g. 1-10000302982")]


@router.post(
    "/submissions",
    summary="Push a batch of location updates (schemas/tracker-submission.schema.json)",
    openapi_extra=_BATCH_BODY,
)
async def post_submission(
    request: Request,
    principal: Submitter,
    factory: FactoryDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JSONResponse:
    body = await read_body(request, request.app.state.settings.max_submission_bytes)
    outcome = await run_in_threadpool(
        receive_submission,
        factory,
        principal,
        body,
        content_type=request.headers.get("content-type"),
        idempotency_key=idempotency_key,
    )
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    return JSONResponse(outcome.body, status_code=outcome.status_code, headers=headers)


@router.post(
    "/submissions/check",
    summary="Try a batch: what a push of it would do to each record, writing nothing",
    openapi_extra=_BATCH_BODY,
)
async def check_submission_route(request: Request, principal: Submitter, factory: FactoryDep) -> JSONResponse:
    body = await read_body(request, request.app.state.settings.max_submission_bytes)
    return JSONResponse(await run_in_threadpool(check_submission, factory, principal, body))


@router.get(
    "/submissions", summary="Pushes and their answers, newest first (a tracker's own; an admin's all)"
)
def read_submissions(
    session: SessionDep,
    principal: Submitter,
    source: Annotated[str | None, Query(max_length=80, description="Admin: one source's pushes")] = None,
    since: Annotated[
        AwareDatetime | None, Query(description="Received at or after (with a UTC offset)")
    ] = None,
    status_code: Annotated[int | None, Query(ge=100, le=599, description="Only pushes answered so")] = None,
    with_rejections: Annotated[
        bool, Query(description="Only pushes refused or with rejected records")
    ] = False,
    before: Annotated[str | None, Query(max_length=36, description="The previous page's next_before")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> dict[str, Any]:
    return list_submissions(
        session,
        principal,
        source=source,
        since=since,
        status_code=status_code,
        with_rejections=with_rejections,
        before=before,
        limit=limit,
    )


@router.get("/submissions/{submission_id}", summary="One push and the answer it was given")
def read_submission(
    submission_id: Annotated[str, Path(max_length=36)], session: SessionDep, principal: Submitter
) -> dict[str, Any]:
    return submission_detail(session, principal, submission_id)


@router.get("/locations/{cqc_location_id}", summary="One location of the national view")
def read_location(cqc_location_id: CqcId, session: SessionDep, _: Reader) -> dict[str, Any]:
    return get_location_detail(session, cqc_location_id)


@router.get("/locations/{cqc_location_id}/history", summary="Every accepted version of a location")
def read_location_history(cqc_location_id: CqcId, session: SessionDep, _: Reader) -> list[dict[str, Any]]:
    return get_location_history(session, cqc_location_id)
