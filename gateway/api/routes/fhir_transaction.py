"""``POST /fhir``: a regional tracker's transaction (or batch) Bundle (FHIR in).

Thin: the work is in ``gateway.fhir.transactions``. Scope ``submit``, the same body size
limit, content codings (gzip, deflate) and ``Idempotency-Key`` as the native push; every
error is an OperationOutcome.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.concurrency import run_in_threadpool

from gateway.api.bodies import read_body
from gateway.api.deps import FactoryDep, Submitter
from gateway.api.routes.fhir import FhirResponse, check_format
from gateway.errors import UnsupportedMediaType
from gateway.fhir.transactions import receive_transaction

CONTENT_TYPES = {"application/fhir+json", "application/json", "application/json+fhir"}


router = APIRouter(prefix="/fhir", tags=["FHIR"], dependencies=[Depends(check_format)])


@router.post(
    "",
    summary="Transaction or batch Bundle of Locations and HealthcareServices from a regional tracker",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/fhir+json": {"schema": {"type": "object"}}},
            "description": "schemas/fhir-transaction.schema.json",
        }
    },
)
async def post_transaction(
    request: Request,
    principal: Submitter,
    factory: FactoryDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() not in CONTENT_TYPES:
        raise UnsupportedMediaType(f"Content-Type {content_type!r} is not taken; send application/fhir+json")
    body = await read_body(request, request.app.state.settings.max_submission_bytes)
    outcome = await run_in_threadpool(
        receive_transaction, factory, principal, body, idempotency_key=idempotency_key
    )
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    return FhirResponse(outcome.body, status_code=outcome.status_code, headers=headers)
