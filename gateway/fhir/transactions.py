"""FHIR in: a regional tracker's transaction (or batch) Bundle down the native push path.

The Bundle is kept raw in the ``submission`` table first, idempotent retries are answered
as the first time, and each location of it, mapped onto a native record by
``adapters.fhir.inbound.transaction``, is validated, authorised and applied exactly as a
native push record is (``gateway.ingest.submissions``): the token's name is the source,
accepted locations become new versions, seen by the native API, FHIR reads and history.

Each location is judged on its own, as in a native push, not all-or-nothing (the
CapabilityStatement says so): the ``transaction-response`` (``batch-response``) has one
entry per request entry, in order, with a 4xx and an OperationOutcome for each failed one.
A location outside the token's regions refuses the whole Bundle with 403, as natively.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.orm import Session, sessionmaker

from adapters.fhir.inbound.transaction import Issue, MappedLocation, envelope_issues, map_bundle
from adapters.fhir.outbound.render import instant, national_lines, service_id
from gateway.auth import Principal
from gateway.errors import InvalidBody, Unprocessable
from gateway.ingest.service import RecordResult, RecordStatus
from gateway.ingest.submissions import SubmissionOutcome, apply_records, keep_and_process
from gateway.model.vocab import offers
from gateway.store import fhir as store

FHIR_JSON = "application/fhir+json"
OK = "200 OK"
CREATED = "201 Created"
UNPROCESSABLE = "422 Unprocessable Entity"
_NOTES = {
    RecordStatus.UNCHANGED: "unchanged: identical to what the gateway holds; no new version",
    RecordStatus.STALE: (
        "stale: meta.lastUpdated is older than what the gateway holds for this location; ignored"
    ),
}


def receive_transaction(
    factory: sessionmaker[Session], principal: Principal, body: bytes, *, idempotency_key: str | None = None
) -> SubmissionOutcome:
    """Keep, check and apply one transaction or batch Bundle; the answer is its response Bundle."""
    return keep_and_process(
        factory, principal, body, _process, content_type=FHIR_JSON, idempotency_key=idempotency_key
    )


def parse_bundle(body: bytes) -> dict[str, Any]:
    """The Bundle in ``body``, or InvalidBody (not JSON) / Unprocessable (not a transaction
    or batch Bundle the gateway takes) saying why, with the FHIRPath of the first problem."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidBody(f"the body is not JSON: {exc}") from exc
    issues = envelope_issues(document)
    if issues:
        said = "; ".join(f"{issue.expression}: {issue.message}" for issue in issues[:10])
        raise Unprocessable(
            f"the body is not a transaction or batch Bundle (schemas/fhir-transaction.schema.json): {said}",
            parameter=issues[0].expression,
        )
    bundle: dict[str, Any] = document
    return bundle


def _process(
    session: Session, principal: Principal, body: bytes, submission_id: str, received_at: datetime
) -> tuple[dict[str, Any], dict[str, int]]:
    mapped = map_bundle(parse_bundle(body))
    ready = [location for location in mapped.locations if location.record is not None]
    results = apply_records(
        session,
        principal,
        [location.record for location in ready],
        submission_id=submission_id,
        received_at=received_at,
    )
    current = store.current_version_ids(
        session, [r.cqc_location_id or "" for r in results if r.status in _NOTES]
    )
    judged = {ready[r.index].location_entry: r for r in results}
    created = _created(session, [(ready[r.index], r) for r in results])
    entries: list[dict[str, Any] | None] = [None] * mapped.size
    summary = {status.value: 0 for status in RecordStatus}
    for location in mapped.locations:
        result = judged.get(location.location_entry)
        status = result.status if result is not None else RecordStatus.REJECTED
        summary[status.value] += 1
        for index, response in _responses(location, result, current, created).items():
            entries[index] = {"response": response}
    for index, issues in mapped.strays.items():
        summary[RecordStatus.REJECTED.value] += 1
        entries[index] = {"response": {"status": UNPROCESSABLE, "outcome": _outcome(issues)}}
    answer = {
        "resourceType": "Bundle",
        "id": submission_id,
        "meta": {"lastUpdated": instant(received_at)},
        "type": f"{mapped.kind}-response",
        "entry": entries,
    }
    return answer, summary


def _created(session: Session, applied: list[tuple[MappedLocation, RecordResult]]) -> set[int]:
    """The entries whose resource this Bundle brought into being (answered ``201 Created``):
    the Location and services of a location the gateway held no version of, and services
    of a vacancy type no earlier version of their location offered (a type offered once
    and withdrawn is still there, inactive: offering it again updates it)."""
    accepted = [
        (location, result.version_id)
        for location, result in applied
        if result.status == RecordStatus.ACCEPTED and result.version_id is not None
    ]
    before = store.previous_records(session, [(loc.cqc_location_id or "", v) for loc, v in accepted])
    out: set[int] = set()
    for location, version_id in accepted:
        offered = {line["vacancy_type"] for line in national_lines(location.record or {})}
        services = {i for i, vacancy_type in location.service_types.items() if vacancy_type in offered}
        previous = before.get(version_id)
        if previous is None:
            out.update({location.location_entry, *services})
            continue
        held = {line["vacancy_type"] for line in national_lines(previous)}
        new = {i for i in services if location.service_types[i] not in held}
        if new:
            # Rare (a type new since the last version): was it offered in an older one?
            for older in store.location_versions(session, location.cqc_location_id or ""):
                if older.version_id < version_id:
                    held.update(line["vacancy_type"] for line in national_lines(older.record))
            out.update(i for i in new if location.service_types[i] not in held)
    return out


def _responses(
    location: MappedLocation,
    result: RecordResult | None,
    current: dict[str, int],
    created: set[int],
) -> dict[int, dict[str, Any]]:
    """The response of each entry of one location (``current``: the version held of each
    location that is unchanged or stale; ``created``: the entries whose resource is new)."""
    issues = list(location.issues)
    if result is not None and result.status == RecordStatus.REJECTED:
        prefix = f"/locations/{result.index}"
        for problem in result.problems:
            entry, expression = location.place(problem.pointer.removeprefix(prefix))
            issues.append(Issue(entry, expression, problem.message))
    if result is None or result.status == RecordStatus.REJECTED:
        return _rejected(location, issues)
    cqc_id = location.cqc_location_id or ""
    version = result.version_id if result.status == RecordStatus.ACCEPTED else current.get(cqc_id)
    provider_type = (location.record or {}).get("provider_type")
    out: dict[int, dict[str, Any]] = {}
    for index in location.entries:
        response: dict[str, Any] = {"status": CREATED if index in created else OK}
        if index in location.service_types and not offers(provider_type, location.service_types[index]):
            # Kept as a line of its Location, flagged, but no service is published for it:
            # no link that a read would answer 404.
            response["outcome"] = _information(
                f"kept as a line of Location/{cqc_id}, flagged type-not-offered-by-provider: its kind "
                "of provider does not offer this vacancy type, so no HealthcareService is published for it",
                f"Bundle.entry[{index}]",
                "warning",
            )
            out[index] = response
            continue
        if version is not None:
            response["location"] = f"{_path(location, index)}/_history/{version}"
            response["etag"] = f'W/"{version}"'
        if result.status in _NOTES:
            response["outcome"] = _information(_NOTES[result.status], f"Bundle.entry[{index}]")
        elif result.quality_flags:
            flags = ", ".join(result.quality_flags)
            response["outcome"] = _information(
                f"accepted with data-quality flags: {flags}", f"Bundle.entry[{index}]", "warning"
            )
        out[index] = response
    return out


def _rejected(location: MappedLocation, issues: list[Issue]) -> dict[int, dict[str, Any]]:
    """Every entry of a rejected location fails: with its own issues, or with a pointer to
    the entries that sank the location."""
    failed = sorted({issue.entry for issue in issues if issue.entry is not None})
    named = ", ".join(f"Bundle.entry[{index}]" for index in failed)
    out: dict[int, dict[str, Any]] = {}
    for index in location.entries:
        own = [issue for issue in issues if issue.entry == index]
        if not own:
            message = f"not applied: location {location.cqc_location_id or '?'} was rejected (see {named})"
            own = [Issue(index, f"Bundle.entry[{index}]", message)]
        out[index] = {"status": UNPROCESSABLE, "outcome": _outcome(own)}
    return out


def _path(location: MappedLocation, index: int) -> str:
    """``Location/<id>`` or ``HealthcareService/<id>`` of one entry of an applied location."""
    cqc_id = location.cqc_location_id or ""
    if index == location.location_entry:
        return f"Location/{cqc_id}"
    return f"HealthcareService/{service_id(cqc_id, location.service_types[index])}"


def _outcome(issues: list[Issue]) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "invalid",
                "diagnostics": issue.message,
                "expression": [issue.expression],
            }
            for issue in issues
        ],
    }


def _information(message: str, expression: str, severity: str = "information") -> dict[str, Any]:
    issue = {
        "severity": severity,
        "code": "informational",
        "diagnostics": message,
        "expression": [expression],
    }
    return {"resourceType": "OperationOutcome", "issue": [issue]}
