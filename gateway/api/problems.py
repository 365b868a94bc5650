"""Domain errors and request-validation errors as RFC 9457 problem+json."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from gateway.api.head import is_head
from gateway.api.headers import secure
from gateway.errors import GatewayError, log_unexpected
from gateway.fhir.bundles import operation_outcome
from gateway.store.db import database_fault, database_unavailable

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
FHIR_JSON = "application/fhir+json"


def _is_fhir(request: Request) -> bool:
    return _fhir_path(request.url.path)


def _fhir_path(path: str) -> bool:
    return path == "/fhir" or path.startswith("/fhir/")


def outcome(status: int, diagnostics: str, expression: list[str] | None = None) -> JSONResponse:
    """An error under /fhir: an OperationOutcome with the HTTP status."""
    headers = {"WWW-Authenticate": 'Bearer realm="gateway"'} if status == 401 else None
    return JSONResponse(
        operation_outcome(status, diagnostics, expression=expression),
        status_code=status,
        media_type=FHIR_JSON,
        headers=headers,
    )


def problem(status: int, title: str, detail: str, instance: str, **extra: Any) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        **extra,
    }
    headers = {"WWW-Authenticate": 'Bearer realm="gateway"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def bad_request_answer(path: str, detail: str) -> JSONResponse:
    """A 400 for a request refused before routing: an OperationOutcome under /fhir."""
    if _fhir_path(path):
        return outcome(400, detail)
    return problem(400, "Bad request", detail, path)


async def _gateway_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    if _is_fhir(request):
        parameter = exc.extra.get("parameter")
        response = outcome(exc.status_code, exc.detail, [parameter] if isinstance(parameter, str) else None)
    else:
        response = problem(exc.status_code, exc.title, exc.detail, request.url.path, **exc.extra)
    if exc.extra.get("replayed") is True:  # a push's refusal answered again for its key
        response.headers["Idempotent-Replayed"] = "true"
    return response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if _is_fhir(request):
        response = outcome(exc.status_code, detail)
    else:
        response = problem(exc.status_code, detail, detail, request.url.path)
    # What the error carries stays with it: a 405's Allow (the methods the path takes, HEAD
    # with GET: HeadAsGet answers it, unless this was a HEAD the route refused).
    response.headers.update(exc.headers or {})
    methods = [m.strip() for m in response.headers.get("allow", "").split(",") if m.strip()]
    if "GET" in methods and "HEAD" not in methods and not is_head(request):
        response.headers["allow"] = ", ".join([*methods, "HEAD"])
    return response


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "parameter": ".".join(str(p) for p in err["loc"][1:]) or str(err["loc"][0]),
            "in": str(err["loc"][0]),
            "message": err["msg"],
        }
        for err in exc.errors()
    ]
    detail = "; ".join(f"{e['parameter']}: {e['message']}" for e in errors)
    if _is_fhir(request):
        return outcome(400, detail, [e["parameter"] for e in errors])
    return problem(422, "Invalid request", detail, request.url.path, errors=errors)


# How long a client is asked to wait before trying again when the database is unavailable.
RETRY_AFTER_S = 5
UNAVAILABLE = "the gateway's database is unavailable; nothing was written, try again shortly"


def unavailable(request: Request, detail: str = UNAVAILABLE) -> JSONResponse:
    """503 with Retry-After: a fault that passes (the database restarting, every pooled
    connection busy), not the caller's nor a bug; an OperationOutcome under /fhir."""
    headers = {"Retry-After": str(RETRY_AFTER_S)}
    if _is_fhir(request):
        body = operation_outcome(503, detail, code="transient")
        return JSONResponse(body, status_code=503, media_type=FHIR_JSON, headers=headers)
    response = problem(503, "Service unavailable", detail, request.url.path)
    response.headers.update(headers)
    return response


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, sa.exc.OperationalError | sa.exc.TimeoutError)
    if not database_unavailable(exc):  # a fault in the SQL: a 500 on either database, never "try again"
        return await _unexpected_error(request, exc)
    log.error("database unavailable on %s %s: %s", request.method, request.url.path, database_fault(exc))
    return unavailable(request)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log_unexpected(log, f"unexpected error on {request.method} {request.url.path}", exc)
    detail = "the gateway failed unexpectedly; the error is logged, nothing was half-written"
    if _is_fhir(request):
        response = outcome(500, detail)
    else:
        response = problem(500, "Internal error", detail, request.url.path)
    secure(response.headers, "authorization" in request.headers)
    return response


def install(app: FastAPI) -> None:
    """Register the handlers that turn errors into problem+json (OperationOutcome under /fhir)."""
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(sa.exc.OperationalError, _database_error)
    app.add_exception_handler(sa.exc.TimeoutError, _database_error)
    app.add_exception_handler(Exception, _unexpected_error)
