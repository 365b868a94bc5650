"""The FHIR R4 API under ``/fhir``: metadata, read, vread, search, history.

Thin routes: the work is in ``gateway.fhir``. Every error under ``/fhir`` is an
OperationOutcome (see ``gateway.api.problems``). JSON only (``application/fhir+json``).
"""

from __future__ import annotations

from datetime import datetime
from email.utils import format_datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Request, Response

from adapters.fhir.outbound.conformance import conformance_resources, find_conformance
from gateway.api.deps import FactoryDep, Reader, SessionDep
from gateway.errors import BadRequest, GatewayError, NotFound
from gateway.fhir import history
from gateway.fhir.capability import DIRECTORY_TYPES, capability_statement
from gateway.fhir.conformance import search_conformance
from gateway.fhir.criteria import SearchRequest
from gateway.fhir.search import search

FHIR_JSON = "application/fhir+json"
JSON_FORMATS = {"json", "application/json", "application/fhir+json", "application/json+fhir"}


class NotAcceptable(GatewayError):
    status_code = 406
    title = "Not acceptable"


class FhirResponse(Response):
    media_type = FHIR_JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def check_format(request: Request) -> None:
    """``_format`` overrides ``Accept``; only JSON is served. A ``+`` left unescaped in a
    query string (``_format=application/fhir+json``, as FHIR's own examples write it)
    arrives as a space, and a MIME type may carry parameters (``; fhirVersion=4.0``)."""
    wanted = request.query_params.get("_format")
    if wanted is not None:
        if wanted.split(";")[0].strip().replace(" ", "+").lower() not in JSON_FORMATS:
            raise NotAcceptable(
                f"_format: {wanted!r} is not served; this server speaks application/fhir+json"
            )
        return
    accept = request.headers.get("accept", "")
    if accept and not any(
        part.split(";")[0].strip().lower() in JSON_FORMATS | {"*/*", "application/*"}
        for part in accept.split(",")  # media types are case-insensitive
    ):
        raise NotAcceptable(f"Accept: {accept!r} is not served; ask for application/fhir+json")


router = APIRouter(prefix="/fhir", tags=["FHIR"], dependencies=[Depends(check_format)])


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


def lenient(prefer: str | None) -> bool:
    return prefer is not None and "handling=lenient" in prefer.replace(" ", "")


def _known_type(resource_type: str) -> None:
    if resource_type not in DIRECTORY_TYPES and resource_type not in conformance_resources():
        raise NotFound(f"resource type {resource_type!r} is not served here; see /fhir/metadata")


def _versioned(resource_type: str) -> None:
    """Versions and history are kept for the directory's resources, not conformance ones."""
    if resource_type not in DIRECTORY_TYPES:
        _known_type(resource_type)
        raise BadRequest(f"versions and history are kept for {', '.join(DIRECTORY_TYPES)} only")


def not_modified(if_none_match: str | None, version_id: str | None) -> bool:
    """Does an ``If-None-Match`` header match the resource (RFC 9110 13.1.2)? ``*`` matches
    any resource there is; otherwise any tag of the comma-separated list matching the
    version, compared weakly (``W/"3"`` and ``"3"`` both match version 3)."""
    if if_none_match is None:
        return False
    tags = [tag.strip() for tag in if_none_match.split(",")]
    if "*" in tags:
        return True
    opaque = [tag.removeprefix("W/") for tag in tags]
    return version_id is not None and f'"{version_id}"' in opaque


def _read_response(request: Request, resource: dict[str, Any]) -> Response:
    meta = resource.get("meta", {})
    headers = {}
    if "versionId" in meta:
        headers["ETag"] = f'W/"{meta["versionId"]}"'
    if not_modified(", ".join(request.headers.getlist("if-none-match")) or None, meta.get("versionId")):
        return Response(status_code=304, headers=headers)
    if "lastUpdated" in meta:
        updated = datetime.fromisoformat(meta["lastUpdated"].replace("Z", "+00:00"))
        headers["Last-Modified"] = format_datetime(updated, usegmt=True)
    return FhirResponse(resource, headers=headers)


@router.get("/metadata", summary="The CapabilityStatement")
def metadata(request: Request) -> Response:
    return FhirResponse(capability_statement(base_url(request)))


@router.get("/{resource_type}/_history", summary="The type's change feed (mCSD ITI-91)")
def read_type_history(
    resource_type: str, request: Request, session: SessionDep, factory: FactoryDep, _: Reader
) -> Response:
    _versioned(resource_type)
    items = list(request.query_params.multi_items())
    return FhirResponse(history.type_history(session, factory, base_url(request), resource_type, items))


@router.get("/{resource_type}", summary="Search")
def search_type(
    resource_type: str,
    request: Request,
    session: SessionDep,
    _: Reader,
    prefer: Annotated[str | None, Header()] = None,
) -> Response:
    _known_type(resource_type)
    items = list(request.query_params.multi_items())
    base = base_url(request)
    if resource_type not in DIRECTORY_TYPES:
        return FhirResponse(search_conformance(base, resource_type, items, lenient(prefer)))
    return FhirResponse(search(session, SearchRequest(resource_type, items, base, lenient(prefer))))


@router.get("/{resource_type}/{resource_id}", summary="Read")
def read(resource_type: str, resource_id: str, request: Request, session: SessionDep, _: Reader) -> Response:
    _known_type(resource_type)
    if resource_type not in DIRECTORY_TYPES:
        found = find_conformance(resource_type, resource_id)
        if found is None:
            raise NotFound(f"{resource_type}/{resource_id} is not known to the gateway")
        return _read_response(request, found)
    return _read_response(request, history.read(session, resource_type, resource_id))


@router.get("/{resource_type}/{resource_id}/_history", summary="Instance history")
def read_instance_history(
    resource_type: str, resource_id: str, request: Request, session: SessionDep, _: Reader
) -> Response:
    _versioned(resource_type)
    items = list(request.query_params.multi_items())
    return FhirResponse(
        history.instance_history(session, base_url(request), resource_type, resource_id, items)
    )


@router.get("/{resource_type}/{resource_id}/_history/{version_id}", summary="Version read")
def read_version(
    resource_type: str, resource_id: str, version_id: str, request: Request, session: SessionDep, _: Reader
) -> Response:
    _versioned(resource_type)
    return _read_response(request, history.vread(session, resource_type, resource_id, version_id))
