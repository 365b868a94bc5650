"""Search over the conformance resources the gateway publishes (CodeSystem, ValueSet,
ConceptMap, NamingSystem, StructureDefinition, SearchParameter): by ``_id`` and ``url``,
in ``_id`` order, paged by ``_count`` with ``next`` links as the directory's searches are.

They are few and fixed (built once per process), so matching and paging are done in
memory; a ``next`` link carries the id of the last entry shown.
"""

from __future__ import annotations

from typing import Any

from adapters.fhir.outbound.conformance import conformance_resources
from gateway.fhir import params as P
from gateway.fhir.bundles import bundle, decode_cursor, encode_cursor, entry, operation_outcome, page_url


def search_conformance(
    base: str, resource_type: str, items: list[tuple[str, str]], lenient: bool = False
) -> dict[str, Any]:
    """A searchset Bundle of the type's conformance resources matching ``items`` (the query
    string's pairs); anything but ``_id``, ``url`` and paging is refused (400) unless
    ``lenient``, when it is ignored and named in an outcome entry."""
    found = sorted(conformance_resources()[resource_type], key=lambda r: str(r["id"]))
    ignored: list[str] = []
    used: list[tuple[str, str]] = []  # the links carry only these (a lenient search's too)
    count, after = P.DEFAULT_COUNT, None
    for key, value in items:
        if key == "_id":
            found = [r for r in found if r["id"] in value.split(",")]
        elif key == "url":
            found = [r for r in found if r.get("url") in value.split(",")]
        elif key == "_count":
            count = P.parse_count(value)
        elif key == "_cursor":
            after = decode_cursor(value).get("after")
            if not isinstance(after, list) or len(after) != 1 or not isinstance(after[0], str):
                raise P.bad("_cursor", "not a paging cursor this gateway made; follow the Bundle's links")
        elif key == "_format":
            pass  # answered as JSON whatever (check_format refused any other)
        else:
            problem = f"not supported on {resource_type}; use _id, url or _count"
            if not lenient:
                raise P.bad(key, problem)
            ignored.append(f"{key}: {problem}")
            continue
        used.append((key, value))
    following = [r for r in found if [r["id"]] > after] if after else found
    page = following[:count]
    links = [("self", page_url(base, resource_type, used))]
    if len(following) > count and page:
        cursor = encode_cursor({"after": [page[-1]["id"]]})
        next_items = [(k, v) for k, v in used if k != "_cursor"] + [("_cursor", cursor)]
        links.append(("next", page_url(base, resource_type, next_items)))
    entries = [entry(base, resource, "match") for resource in page]
    if ignored:
        outcome = operation_outcome(200, "; ".join(ignored), severity="warning", code="not-supported")
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    return bundle("searchset", entries, links, total=len(found))
