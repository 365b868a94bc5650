"""Checks of a FHIR transaction (or batch) Bundle from a regional tracker: against
``schemas/fhir-transaction.schema.json``, with each problem named by entry and FHIRPath
(``Bundle.entry[3].resource.extension[0].extension[1].valueUnsignedInt``) and the schema's
terse messages (a ``contains`` rule never says what it wanted) said in the users' words."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import parse_qsl

from adapters.fhir import systems as S
from gateway.schemas import SchemaValidator, load_schema, validator

SCHEMA_NAME = "fhir-transaction.schema.json"
# The bed counts of a bed-availability extension, and those every service must give
# (reserved may be left out of a community rehabilitation service, as in a push).
COUNT_PARTS = ("maximumCapacity", "occupied", "reserved", "admittable", "unavailable")
REQUIRED_PARTS = tuple(part for part in COUNT_PARTS if part != "reserved")
CQC_ID_NEEDED = f"a Location needs its CQC location ID as its id or an identifier in {S.CQC_LOCATION_ID}"
_REQUEST_URL = re.compile(r"^(?:.*/)?(Location|HealthcareService)(?:/([^/?#]+))?(?:\?(.*))?$")


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem: which entry (None: the Bundle itself), where (FHIRPath) and why."""

    entry: int | None
    expression: str
    message: str


def fhirpath(pointer: str, root: str = "Bundle") -> str:
    """A JSON pointer as FHIRPath: /entry/3/resource/name -> Bundle.entry[3].resource.name."""
    out = root
    for part in pointer.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        out += f"[{part}]" if part.isdigit() else f".{part}"
    return out


@cache
def _envelope() -> SchemaValidator:
    """The Bundle without its entries' contents: entries are judged one by one."""
    schema = load_schema(SCHEMA_NAME)
    entries = {**schema["properties"]["entry"], "items": {"type": "object"}}
    return SchemaValidator({**schema, "properties": {**schema["properties"], "entry": entries}})


def value_at(document: Any, pointer: str) -> Any:
    """The value at a JSON pointer in ``document``, or None."""
    for part in pointer.split("/")[1:]:
        if isinstance(document, list) and part.isdigit() and int(part) < len(document):
            document = document[int(part)]
        elif isinstance(document, dict) and part in document:
            document = document[part]
        else:
            return None
    return document


_NOT_CONTAINED = " does not contain items matching the given schema"


def _from_contains(found: Any, message: str) -> bool:
    """Whether a schema problem is a ``contains`` rule's (its message, maybe cut short, quotes
    the whole array, or a short stand-in for a long one, and never says what was wanted)."""
    if message.startswith(("Too few items match", "Too many items match")):
        return True
    if not isinstance(found, list):
        return False
    if message.endswith(_NOT_CONTAINED):
        return True
    return f"{found!r}{_NOT_CONTAINED}".startswith(message.removesuffix("..."))


def _explain(document: Any, pointer: str, message: str) -> str:
    """Say what a ``contains`` rule wanted, which the schema's own message never does."""
    if pointer.endswith("/resource") and message == "'identifier' is a required property":
        return CQC_ID_NEEDED
    parts = value_at(document, pointer)
    if parts == [] and pointer.endswith("/extension"):
        owner = value_at(document, pointer.removesuffix("/extension"))
        if isinstance(owner, dict) and owner.get("url"):
            return f"{owner['url']} has no parts (leave the extension out where nothing is known)"
    if not _from_contains(parts, message):
        return message
    if pointer == "/entry":
        return "a Bundle holds at most 5,000 Locations (as a native batch); send the rest in another"
    if pointer.endswith("/resource/identifier"):
        return CQC_ID_NEEDED
    if pointer.endswith("/resource/type"):
        return f"a HealthcareService needs exactly one type with a coding in {S.VACANCY_TYPE}"
    if pointer.endswith("/resource/extension"):
        if message.startswith("Too many"):
            return f"{S.EXT_BED_AVAILABILITY} may appear once on a HealthcareService"
        return (
            f"an active HealthcareService needs the {S.EXT_BED_AVAILABILITY} extension "
            "(an inactive one without it withdraws its vacancy type)"
        )
    for element, system in (("characteristic", S.SHORT_STAY_SERVICE), ("program", S.FUNDING_SOURCE)):
        if re.search(rf"/resource/{element}/\d+/coding$", pointer):
            return f"each {element} needs a coding in {system}"
    parent = value_at(document, pointer.removesuffix("/extension"))
    if pointer.endswith("/extension") and isinstance(parts, list) and isinstance(parent, dict):
        names = [part.get("url") for part in parts if isinstance(part, dict)]
        required = REQUIRED_PARTS if parent.get("url") == S.EXT_BED_AVAILABILITY else ()
        missing = [name for name in required if name not in names]
        if missing:
            return f"{parent.get('url')} lacks {', '.join(missing)}"
        return f"{parent.get('url')} has a part twice that may appear once"
    return message


def envelope_issues(document: Any) -> list[Issue]:
    """Why ``document`` is not a transaction or batch Bundle the gateway takes (empty: it is)."""
    return [
        Issue(None, fhirpath(p.pointer), _explain(document, p.pointer, p.message))
        for p in _envelope().problems(document)
    ]


def entry_issues(index: int, entry: Any) -> list[Issue]:
    """The problems of one entry (empty: it is a Location or HealthcareService in the
    gateway's profile with a request that fits it)."""
    problems = validator(SCHEMA_NAME, "entry").problems(entry)
    explained = (
        Issue(index, fhirpath(f"/entry/{index}{p.pointer}"), _explain(entry, p.pointer, p.message))
        for p in problems
    )
    issues = list(dict.fromkeys(explained))  # two missing parts are one problem
    if issues or not isinstance(entry, dict):
        return issues
    request, resource = entry["request"], entry["resource"]
    url = _REQUEST_URL.match(request["url"])
    resource_type, named = resource["resourceType"], resource_id(resource)
    where = f"Bundle.entry[{index}].request.url"
    if url is None or url.group(1) != resource_type:
        issues.append(Issue(index, where, f"request.url must be {resource_type}, or {resource_type}/[id]"))
        return issues
    target = url.group(2)
    if url.group(3) is not None:
        target, problem = _conditional_target(resource_type, request["method"], target, url.group(3))
        if problem is not None:
            issues.append(Issue(index, where, problem))
            return issues
    if request["method"] == "PUT" and target is None:
        issues.append(Issue(index, where, f"PUT needs {resource_type}/[id]"))
    elif target is not None and named is not None and target != named:
        issues.append(Issue(index, where, f"request.url names {target}, the resource is {named}"))
    return issues


def _conditional_target(
    resource_type: str, method: str, target: str | None, query: str
) -> tuple[str | None, str | None]:
    """(the id a conditional update's criteria name, or why they cannot be taken).

    Criteria are never ignored: the gateway takes those that name one resource by its id,
    ``_id`` or (a Location) its CQC identifier, and refuses any other, rather than update
    a resource the criteria did not select.
    """
    usage = f"use {resource_type}/[id]"
    if resource_type == "Location":
        usage += f", or {resource_type}?identifier={S.CQC_LOCATION_ID}|[id]"
    if method != "PUT" or target is not None:
        return None, f"search criteria in request.url are taken on PUT {resource_type}?... only; {usage}"
    named: set[str] = set()
    for key, value in parse_qsl(query, keep_blank_values=True):
        system, _, code = value.rpartition("|")
        if key == "_id" and value:
            named.add(value)
        elif key == "identifier" and resource_type == "Location" and system == S.CQC_LOCATION_ID and code:
            named.add(code)
        else:
            return None, f"conditional update criterion {key}={value!r} is not supported; {usage}"
    if len(named) != 1:
        return None, f"conditional update criteria must name one {resource_type}; {usage}"
    return named.pop(), None


def resource_id(resource: dict[str, Any]) -> str | None:
    """The id a resource is known by: its id, or for a Location its CQC identifier."""
    if isinstance(resource.get("id"), str):
        found: str = resource["id"]
        return found
    if resource.get("resourceType") == "Location":
        return cqc_identifier(resource)[0]
    return None


def cqc_identifier(resource: dict[str, Any]) -> tuple[str | None, int | None]:
    identifiers = resource.get("identifier")
    for k, identifier in enumerate(identifiers if isinstance(identifiers, list) else []):
        if isinstance(identifier, dict) and identifier.get("system") == S.CQC_LOCATION_ID:
            value = identifier.get("value")
            return (value, k) if isinstance(value, str) else (None, None)
    return None, None
