"""The CapabilityStatement: generated from the search declarations the API enforces, so it
lists exactly what is supported."""

from __future__ import annotations

from functools import cache
from typing import Any

from adapters.fhir import systems as S
from adapters.fhir.outbound.conformance import conformance_resources
from gateway.fhir import params as P

DIRECTORY_TYPES = ("Location", "HealthcareService", "Organization")
CONFORMANCE_SEARCH = {
    "_id": P.SearchParam(
        "_id", P.ParamType.TOKEN, "Logical id", "http://hl7.org/fhir/SearchParameter/Resource-id"
    ),
    "url": P.SearchParam("url", P.ParamType.URI, "Canonical URL", None),
}
DOCUMENTATION = {
    "Location": "Care homes and community-rehabilitation providers (id: CQC location ID).",
    "HealthcareService": (
        "One per location and vacancy type (id: <CQC location ID>-<vacancy type>), bed counts in the "
        f"{S.EXT_BED_AVAILABILITY} extension. A vacancy type a location stopped offering stays, inactive "
        "(readable and in history; search finds it with active=false, and without active finds only the "
        "services of the current view: those locations offer now, a closed location's inactive)."
    ),
    "Organization": (
        "Providers (id: CQC provider ID), named by the locations they run. A provider no location names "
        "any more stays, inactive (readable and in history; search finds only active ones unless "
        "active=false asks for the retired ones)."
    ),
}
TYPE_HISTORY_DOC = (
    "The change feed (IHE mCSD ITI-91): versions recorded in [_since, Bundle.meta.lastUpdated), "
    "oldest first (unlike instance history: a feed is read forwards), paged with next links; poll "
    "again with _since = the previous Bundle's meta.lastUpdated to see every change exactly once."
)
INTERACTION_DOC = {
    "history-instance": (
        "Every version of the resource, newest first; _since keeps those recorded at or after it, "
        "_count pages them with next links."
    ),
    "history-type": TYPE_HISTORY_DOC,
}


def _search_params(params: dict[str, P.SearchParam]) -> list[dict[str, Any]]:
    out = []
    for param in params.values():
        entry: dict[str, Any] = {
            "name": param.name,
            "type": param.type.value,
            "documentation": param.documentation,
        }
        if param.definition:
            entry["definition"] = param.definition
        out.append(entry)
    return out


def _interaction(code: str) -> dict[str, str]:
    """A resource interaction, with what a client needs to know about it (history order)."""
    documentation = INTERACTION_DOC.get(code)
    return {"code": code, "documentation": documentation} if documentation else {"code": code}


def _non_empty(**lists: list[str]) -> dict[str, list[str]]:
    """The given elements that have something in them (R4 forbids empty arrays)."""
    return {name: values for name, values in lists.items() if values}


@cache
def capability_statement(base: str) -> dict[str, Any]:
    """What the gateway's FHIR API supports (R4 4.0.1, JSON only)."""
    resources: list[dict[str, Any]] = []
    for resource_type in DIRECTORY_TYPES:
        resources.append(
            {
                "type": resource_type,
                "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
                "supportedProfile": [f"https://fhir.hl7.org.uk/StructureDefinition/UKCore-{resource_type}"],
                "documentation": DOCUMENTATION[resource_type],
                "interaction": [
                    _interaction(code)
                    for code in ("read", "vread", "search-type", "history-instance", "history-type")
                ],
                "versioning": "versioned",
                "readHistory": True,
                "updateCreate": False,
                **_non_empty(
                    searchInclude=sorted(P.INCLUDES[resource_type]),
                    searchRevInclude=sorted(P.REVINCLUDES[resource_type]),
                ),
                "searchParam": _search_params(P.SEARCH_PARAMETERS[resource_type])
                + [
                    {
                        "name": "_sort",
                        "type": "special",
                        "documentation": "One of: "
                        + ", ".join(sorted(P.SORTS[resource_type]))
                        + " (numeric and _lastUpdated keys may be descending with '-')",
                    }
                ],
            }
        )
    for resource_type in sorted(conformance_resources()):
        resources.append(
            {
                "type": resource_type,
                "interaction": [{"code": "read"}, {"code": "search-type"}],
                "searchParam": _search_params(CONFORMANCE_SEARCH),
            }
        )
    return {
        "resourceType": "CapabilityStatement",
        "id": "gateway",
        "url": f"{S.CANONICAL}/CapabilityStatement/gateway",
        "version": "0.1.0",
        "name": "NationalCareCapacityGateway",
        "title": "National Care Capacity Gateway FHIR API",
        "status": "active",
        "date": "2026-11-22",
        "publisher": "National Care Capacity Gateway",
        "description": (
            "Care-home and community-rehabilitation bed capacity across England as Location, "
            "HealthcareService and Organization (IHE mCSD directory), with the change feed, bulk export "
            "and FHIR transactions from regional trackers."
        ),
        "kind": "instance",
        "software": {"name": "National Care Capacity Gateway", "version": "0.1.0"},
        "implementation": {"description": "National Care Capacity Gateway", "url": base},
        "fhirVersion": S.FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Unknown search parameters are refused with 400 unless the request carries "
                    "'Prefer: handling=lenient'. Every error is an OperationOutcome."
                ),
                "security": {
                    "cors": False,
                    "description": (
                        "Bearer tokens (Authorization: Bearer <token>) issued by the gateway: scope read "
                        "for reads, searches, history and export; scope submit (and the NHS regions the "
                        "token may write) for transactions."
                    ),
                },
                "resource": resources,
                "interaction": [
                    {"code": "transaction", "documentation": TRANSACTION_DOC},
                    {"code": "batch", "documentation": TRANSACTION_DOC},
                ],
                "operation": [
                    {
                        "name": "export",
                        "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
                        "documentation": (
                            "System-level bulk export (HL7 Bulk Data 2.0): _type and _since; kick-off with "
                            "'Prefer: respond-async', poll the Content-Location, DELETE it to cancel."
                        ),
                    }
                ],
            }
        ],
    }


TRANSACTION_DOC = (
    "A regional tracker syncs by POST [base] with a transaction (or batch) Bundle of Location and "
    "HealthcareService resources in the gateway's profile, each entry a PUT (an update, which creates the "
    "resource when the gateway does not hold it yet: its id is the CQC's, not the gateway's) or a POST: the "
    "same validation, authorisation, provenance and history as a native push. Each location is judged on its "
    "own: good ones are kept beside bad ones, and the transaction-response carries an OperationOutcome for "
    "each failed entry. Writes are served only as entries of such a Bundle: no resource lists create or "
    "update, since a PUT or POST to [type] or [type]/[id] of its own is not served (405)."
)
