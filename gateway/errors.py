"""Domain errors. Services raise them; the API turns each into problem+json (native API)
or an OperationOutcome (``/fhir``), with its status code."""

from __future__ import annotations

import logging
import traceback
from typing import Any


class GatewayError(Exception):
    """A request the gateway refuses, with an HTTP status and a plain explanation."""

    status_code = 500
    title = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class BadRequest(GatewayError):
    status_code = 400
    title = "Bad request"


class Gone(GatewayError):
    status_code = 410
    title = "Gone"


class NotAuthenticated(GatewayError):
    status_code = 401
    title = "Not authenticated"


class Forbidden(GatewayError):
    status_code = 403
    title = "Forbidden"


class NotFound(GatewayError):
    status_code = 404
    title = "Not found"


class InvalidBody(GatewayError):
    status_code = 400
    title = "Invalid body"


class Conflict(GatewayError):
    status_code = 409
    title = "Conflict"


class PayloadTooLarge(GatewayError):
    status_code = 413
    title = "Payload too large"


class UnsupportedMediaType(GatewayError):
    status_code = 415
    title = "Unsupported media type"


class Unprocessable(GatewayError):
    status_code = 422
    title = "Unprocessable request"


def log_unexpected(log: logging.Logger, what: str, error: BaseException) -> None:
    """Log an unexpected exception on ``log`` by type and stack only: its text may quote
    data (a payload, a record, SQL parameters), and this is health and care data."""
    stack = "".join(traceback.format_tb(error.__traceback__))
    log.error("%s: %s\n%s", what, type(error).__name__, stack)
