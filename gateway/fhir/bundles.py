"""Bundles (searchset, history) and OperationOutcomes as plain R4 dicts."""

from __future__ import annotations

import base64
import re
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import orjson

from adapters.fhir import systems as S
from adapters.fhir.outbound.render import instant
from gateway.fhir.params import bad
from gateway.store.tables import utcnow

# HTTP status -> OperationOutcome.issue.code (http://hl7.org/fhir/issue-type).
ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "processing",
}


# OperationOutcome.issue.expression: "a simple subset of FHIRPath limited to element names,
# repetition indicators and the default child accessor", from the resource's type down.
_ELEMENT_PATH = re.compile(r"^[A-Z][A-Za-z]*(\.[A-Za-z_][A-Za-z0-9_]*(\[[0-9]+\])?)*$")


def element_expressions(expressions: list[str] | None) -> list[str]:
    """The ``expressions`` that name elements of a resource (``Bundle.entry[3].resource``).
    A request's query parameter or header (``_count``, ``organization:Organization``) is
    no element: R4 has no place for it but ``diagnostics``, which names it already."""
    return [e for e in expressions or () if _ELEMENT_PATH.match(e)]


def operation_outcome(
    status: int,
    diagnostics: str,
    *,
    severity: str | None = None,
    code: str | None = None,
    expression: list[str] | None = None,
) -> dict[str, Any]:
    issue: dict[str, Any] = {
        "severity": severity or ("error" if status >= 400 else "information"),
        "code": code or ISSUE_CODES.get(status, "exception" if status >= 500 else "informational"),
        "diagnostics": diagnostics,
    }
    elements = element_expressions(expression)
    if elements:
        issue["expression"] = elements
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def encode_cursor(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


def decode_cursor(text: str) -> dict[str, Any]:
    try:
        found = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise bad("_cursor", "not a paging cursor this gateway made; follow the Bundle's links") from None
    if not isinstance(found, dict):
        raise bad("_cursor", "not a paging cursor this gateway made; follow the Bundle's links")
    return found


def page_url(base: str, path: str, items: list[tuple[str, str]]) -> str:
    """A link to ``path`` under ``base`` with the query ``items`` (``|``, ``,`` and ``:``
    left readable, as FHIR clients write them)."""
    query = urlencode(items, safe="|,:")
    return f"{base}/{path}" + (f"?{query}" if query else "")


def entry(
    base: str, resource: dict[str, Any], mode: str | None = None, distance_km: float | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
        "resource": resource,
    }
    if mode is not None:
        search: dict[str, Any] = {"mode": mode}
        if distance_km is not None:
            search["extension"] = [
                {
                    "url": S.LOCATION_DISTANCE,
                    "valueDistance": {
                        "value": round(distance_km, 3),
                        "unit": "km",
                        "system": S.UCUM,
                        "code": "km",
                    },
                }
            ]
        out["search"] = search
    return out


def bundle(
    kind: str,
    entries: list[dict[str, Any]],
    links: list[tuple[str, str]],
    total: int | None = None,
    last_updated: datetime | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": instant(last_updated or utcnow())},
        "type": kind,
    }
    if total is not None:
        out["total"] = total
    out["link"] = [{"relation": relation, "url": url} for relation, url in links]
    if entries:  # R4 forbids empty arrays: a Bundle without entries has no entry element
        out["entry"] = entries
    return out


def history_entry(base: str, resource: dict[str, Any], first: bool) -> dict[str, Any]:
    """An entry of a history Bundle: the version, how it came to be, and its outcome."""
    path = f"{resource['resourceType']}/{resource['id']}"
    return {
        "fullUrl": f"{base}/{path}",
        "resource": resource,
        "request": {"method": "POST" if first else "PUT", "url": resource["resourceType"] if first else path},
        "response": {
            "status": "201 Created" if first else "200 OK",
            "etag": f'W/"{resource["meta"]["versionId"]}"',
            "lastModified": resource["meta"]["lastUpdated"],
        },
    }
