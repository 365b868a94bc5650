"""FHIR Bulk Data 2.0 ``$export`` under ``/fhir``: kick-off, status (poll, cancel), files.

Included before the FHIR router, whose ``/fhir/{resource_type}`` would otherwise take
``$export``. The work is in ``gateway.fhir.export``; errors are OperationOutcomes.
"""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Header, HTTPException, Request, Response
from fastapi.responses import StreamingResponse

from gateway.api.deps import FactoryDep, Reader
from gateway.api.head import is_head
from gateway.api.routes.fhir import FhirResponse, base_url
from gateway.fhir import export
from gateway.fhir.bundles import operation_outcome

router = APIRouter(prefix="/fhir", tags=["FHIR bulk export"])


@router.get(
    "/$export", summary="Kick off a system-level bulk export (Prefer: respond-async)", status_code=202
)
def kick_off(
    request: Request,
    factory: FactoryDep,
    principal: Reader,
    prefer: Annotated[str | None, Header()] = None,
) -> Response:
    if is_head(request):  # HEAD asks without acting; this GET starts a job
        raise HTTPException(405, "a HEAD would start a bulk export: kick one off with GET", {"Allow": "GET"})
    wanted = export.parse_kick_off(list(request.query_params.multi_items()), prefer)
    job_id = export.kick_off(factory, principal, wanted, str(request.url))
    base = base_url(request)
    export.start_counting(factory, job_id, base)
    return FhirResponse(
        export.accepted_outcome(job_id, wanted),
        status_code=202,
        headers={"Content-Location": export.status_url(base, job_id)},
    )


@router.get("/$export-status/{job_id}", summary="Poll a bulk export: 202 in progress, 200 manifest")
def poll(job_id: str, request: Request, factory: FactoryDep, principal: Reader) -> Response:
    found = export.status(factory, principal, job_id, base_url(request))
    if found.manifest is None:
        headers = {"X-Progress": found.progress or "in progress", "Retry-After": str(export.RETRY_AFTER_S)}
        return Response(status_code=202, headers=headers)
    return Response(orjson.dumps(found.manifest), media_type="application/json")


@router.delete("/$export-status/{job_id}", summary="Cancel a bulk export", status_code=202)
def cancel(job_id: str, factory: FactoryDep, principal: Reader) -> Response:
    export.cancel(factory, principal, job_id)
    return FhirResponse(operation_outcome(202, f"export {job_id} cancelled"), status_code=202)


@router.get("/$export-file/{job_id}/{file_name}", summary="One file of a complete bulk export (NDJSON)")
def download(job_id: str, file_name: str, factory: FactoryDep, principal: Reader) -> StreamingResponse:
    return StreamingResponse(
        export.open_file(factory, principal, job_id, file_name), media_type=export.NDJSON
    )
