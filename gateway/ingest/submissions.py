"""Push submissions from regional trackers: keep the raw body, validate, authorise, apply.

The raw body is committed in its own transaction before anything else looks at it, so
nothing sent to the gateway is lost even when parsing or applying fails; a bad mapping
can then be replayed from the ``submission`` table.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import orjson
from pydantic import ValidationError as ModelError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from gateway.auth import Principal, Scope
from gateway.errors import Conflict, Forbidden, InvalidBody, Unprocessable
from gateway.gc_pause import gc_paused
from gateway.ingest.service import (
    UNPLACED,
    Known,
    RecordResult,
    RecordStatus,
    apply_updates,
    known_locations,
    resolve_region,
)
from gateway.metrics import count_pushed
from gateway.model.capacity import LocationUpdate
from gateway.schemas import Problem, SchemaValidator, load_schema, validator
from gateway.store import repository
from gateway.store.db import transaction
from gateway.store.tables import Submission, utcnow

SCHEMA_NAME = "tracker-submission.schema.json"


@cache
def _envelope() -> SchemaValidator:
    """The batch without its records: records are judged one by one, so one bad record
    never sinks the batch."""
    schema = load_schema(SCHEMA_NAME)
    locations = {**schema["properties"]["locations"], "items": {"type": "object"}}
    return SchemaValidator({**schema, "properties": {**schema["properties"], "locations": locations}})


@dataclass(frozen=True, slots=True)
class SubmissionOutcome:
    status_code: int
    body: dict[str, Any]
    replayed: bool = False


def parse_batch(body: bytes) -> list[Any]:
    """The batch's ``locations`` array, or InvalidBody / Unprocessable saying why not."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidBody(f"the body is not JSON: {exc}") from exc
    problems = _envelope().problems(document)
    if problems:
        raise Unprocessable(
            f"the body is not a tracker submission batch (schemas/{SCHEMA_NAME})",
            errors=[{"pointer": p.pointer, "message": p.message} for p in problems[:50]],
        )
    locations: list[Any] = document["locations"]
    return locations


def validate_records(records: list[Any]) -> tuple[list[tuple[int, LocationUpdate]], list[RecordResult]]:
    """Split a batch into valid updates and rejected records (each problem with a pointer)."""
    item_validator = validator(SCHEMA_NAME, "location_update")
    valid: list[tuple[int, LocationUpdate]] = []
    rejected: list[RecordResult] = []
    for index, record in enumerate(records):
        prefix = f"/locations/{index}"
        cqc_id = record.get("cqc_location_id") if isinstance(record, dict) else None
        cqc_id = cqc_id if isinstance(cqc_id, str) else None
        problems = item_validator.problems(record, prefix)
        if problems:
            rejected.append(RecordResult(index, cqc_id, RecordStatus.REJECTED, problems))
            continue
        try:
            valid.append((index, LocationUpdate.model_validate(record)))
        except ModelError as exc:
            problems = [
                Problem(prefix + "".join(f"/{p}" for p in err["loc"]), err["msg"]) for err in exc.errors()
            ]
            rejected.append(RecordResult(index, cqc_id, RecordStatus.REJECTED, problems))
    return valid, rejected


def _authorise_regions(
    session: Session, principal: Principal, valid: list[tuple[int, LocationUpdate]]
) -> tuple[list[tuple[int, LocationUpdate]], list[RecordResult], Known]:
    """Drop records with no known region; refuse the batch if any lies outside the token's.
    A location's region is the registry's where it knows the location (see
    ``resolve_region``)."""
    known = known_locations(session, [u.cqc_location_id for _, u in valid])
    kept: list[tuple[int, LocationUpdate]] = []
    rejected: list[RecordResult] = []
    outside: list[str] = []
    placed: dict[str, str] = {}  # a location new to the gateway, placed by an earlier record
    for index, update in valid:
        region = resolve_region(update, known) or placed.get(update.cqc_location_id)
        if region is not None and update.cqc_location_id not in known.held:
            placed.setdefault(update.cqc_location_id, region)
        if region is None:
            problem = Problem(f"/locations/{index}{UNPLACED.pointer}", UNPLACED.message)
            rejected.append(RecordResult(index, update.cqc_location_id, RecordStatus.REJECTED, [problem]))
        elif not principal.may_write(region):
            outside.append(f"{update.cqc_location_id} ({region})")
        else:
            kept.append((index, update))
    if outside:
        raise Forbidden(
            f"this token may not write locations outside its regions "
            f"({', '.join(sorted(principal.regions)) or 'none'}): {', '.join(outside[:20])}"
            + (f" and {len(outside) - 20} more" if len(outside) > 20 else ""),
            locations=outside,
        )
    return kept, rejected, known


def apply_records(
    session: Session,
    principal: Principal,
    records: list[Any],
    *,
    submission_id: str | None,
    received_at: datetime,
) -> list[RecordResult]:
    """Validate, authorise and apply already-parsed native records (any push format mapped
    onto ``location_update``), each judged on its own; one result per record, in order.
    Raises Forbidden, naming them, when any valid record lies outside the token's regions."""
    valid, rejected = validate_records(records)
    # Writers take turns from here (the change clock's lock, as ``apply_updates`` takes
    # it): the regions and held versions read next are the last writer's.
    repository.claim_change_clock(session)
    valid, region_rejected, known = _authorise_regions(session, principal, valid)
    applied = apply_updates(
        session,
        source=principal.name,
        updates=valid,
        received_at=received_at,
        submission_id=submission_id,
        known=known,
    )
    for result in applied:  # the store's objections, at the record's place in the batch
        result.problems = [
            Problem(f"/locations/{result.index}{p.pointer}", p.message) for p in result.problems
        ]
    return sorted(applied + rejected + region_rejected, key=lambda r: r.index)


def summarise(results: list[RecordResult]) -> dict[str, int]:
    """How many records became of each status."""
    summary = {status.value: 0 for status in RecordStatus}
    for result in results:
        summary[result.status.value] += 1
    return summary


# Parses and applies one kept body: (session, principal, body, submission id, received at)
# -> (the answer, its summary). Raises InvalidBody, Unprocessable or Forbidden to refuse it.
Processor = Callable[[Session, Principal, bytes, str, datetime], tuple[dict[str, Any], dict[str, int]]]


def _process(
    session: Session, principal: Principal, body: bytes, submission_id: str, received_at: datetime
) -> tuple[dict[str, Any], dict[str, int]]:
    results = apply_records(
        session, principal, parse_batch(body), submission_id=submission_id, received_at=received_at
    )
    summary = summarise(results)
    answer = {
        "submission_id": submission_id,
        "source": principal.name,
        "received_at": received_at.isoformat(),
        "summary": summary,
        "records": [r.as_dict() for r in results],
    }
    return answer, summary


def check_submission(factory: sessionmaker[Session], principal: Principal, body: bytes) -> dict[str, Any]:
    """Judge a batch exactly as a push would be (the same checks, regions and precedence
    against what the gateway holds now) and answer what would become of each record,
    writing nothing: no kept body, no version, no change. For a tracker trying its
    records before it pushes them. Raises as a push would refuse the batch."""
    principal.require(Scope.SUBMIT)
    records = parse_batch(body)
    checked_at = utcnow()
    with gc_paused(), factory() as session:
        session.begin()
        try:
            results = apply_records(session, principal, records, submission_id=None, received_at=checked_at)
        finally:
            session.rollback()  # whatever was judged, nothing stays
    for result in results:
        result.version_id = None  # none was kept
    return {
        "dry_run": True,
        "source": principal.name,
        "checked_at": checked_at.isoformat(),
        "summary": summarise(results),
        "records": [r.as_dict() for r in results],
    }


def receive_submission(
    factory: sessionmaker[Session],
    principal: Principal,
    body: bytes,
    *,
    content_type: str | None = None,
    idempotency_key: str | None = None,
) -> SubmissionOutcome:
    """Keep, check and apply one pushed batch; the answer reports every record."""
    return keep_and_process(
        factory, principal, body, _process, content_type=content_type, idempotency_key=idempotency_key
    )


def keep_and_process(
    factory: sessionmaker[Session],
    principal: Principal,
    body: bytes,
    process: Processor,
    *,
    content_type: str | None = None,
    idempotency_key: str | None = None,
) -> SubmissionOutcome:
    """The push path of every format: keep the raw body first (its own transaction), answer
    a retry with the same ``idempotency_key`` as the first time, else ``process`` the body
    and record the answer (or the refusal) with the kept body."""
    principal.require(Scope.SUBMIT)
    if idempotency_key is not None and not idempotency_key.strip():
        idempotency_key = None  # a blank key (an unfilled template) is no key: never shared
    request_hash = hashlib.sha256(body).hexdigest()
    submission_id = str(uuid.uuid4())
    received_at = utcnow()
    try:
        with transaction(factory) as session:
            if idempotency_key:
                previous = repository.submission_by_idempotency_key(
                    session, principal.token_id, idempotency_key
                )
                if previous is not None and _abandoned(previous, request_hash, received_at):
                    _finish(session, previous.id, 500, _ABANDONED, released_key=True)
                elif previous is not None:
                    return _replay(previous, request_hash)
            repository.add_submission(
                session,
                Submission(
                    id=submission_id,
                    source=principal.name,
                    token_id=principal.token_id,
                    idempotency_key=idempotency_key,
                    request_hash=request_hash,
                    content_type=content_type,
                    body=body,
                    received_at=received_at,
                ),
            )
    except IntegrityError:
        # The same key raced in from a concurrent retry: answer as that one did.
        with transaction(factory) as session:
            previous = repository.submission_by_idempotency_key(
                session, principal.token_id, idempotency_key or ""
            )
            if previous is None:
                raise
            return _replay(previous, request_hash)

    try:
        with gc_paused(), transaction(factory) as session:
            answer, summary = process(session, principal, body, submission_id, received_at)
            _finish(session, submission_id, 200, answer, summary)
        count_pushed(principal.name, summary)
        return SubmissionOutcome(200, answer)
    except (InvalidBody, Unprocessable, Forbidden) as refused:
        with transaction(factory) as session:
            _finish(session, submission_id, refused.status_code, _problem_record(refused))
        raise
    except Exception:
        # Nothing of the batch was applied (its transaction rolled back). The kept body
        # records the failure and lets go of its Idempotency-Key, so a retry with the same
        # key is processed afresh rather than answered 'still being processed' for ever.
        with transaction(factory) as session:
            failed = {
                "error": "InternalError",
                "status": 500,
                "detail": "the gateway failed while applying this batch and applied none of it",
                "idempotency_key": idempotency_key,
            }
            _finish(session, submission_id, 500, failed, released_key=True)
        raise


# A push kept but never answered this long ago was abandoned: the process handling it
# stopped (killed, or its database failed before the failure could be recorded). Its batch
# was applied in the same transaction as its answer, so none of it was; a retry with its
# Idempotency-Key is processed afresh instead of answered 409 for ever.
ABANDONED_AFTER = timedelta(minutes=10)
_ABANDONED = {
    "error": "Abandoned",
    "status": 500,
    "detail": "the gateway stopped before answering this push and applied none of it; "
    "a retry with its Idempotency-Key was processed afresh",
}


def _abandoned(previous: Submission, request_hash: str, now: datetime) -> bool:
    """Is ``previous`` (a push with the same key) one never answered and long gone, whose
    retry (the same body) is to be processed afresh?"""
    return (
        previous.status_code is None
        and previous.request_hash == request_hash
        and previous.received_at < now - ABANDONED_AFTER
    )


def _problem_record(error: InvalidBody | Unprocessable | Forbidden) -> dict[str, Any]:
    return {"error": type(error).__name__, "status": error.status_code, "detail": error.detail, **error.extra}


def _finish(
    session: Session,
    submission_id: str,
    status: int,
    answer: dict[str, Any],
    summary: dict[str, int] | None = None,
    *,
    released_key: bool = False,
) -> None:
    counts = summary or {}
    values: dict[str, Any] = {
        "status_code": status,
        "response": answer,
        **{key: counts.get(key, 0) for key in ("accepted", "unchanged", "stale", "rejected")},
    }
    if released_key:
        values["idempotency_key"] = None
    repository.finish_submission(session, submission_id, values)


def _replay(previous: Submission, request_hash: str) -> SubmissionOutcome:
    if previous.request_hash != request_hash:
        raise Unprocessable("this Idempotency-Key was already used with a different body; use a new key")
    if previous.status_code is None or previous.response is None:
        raise Conflict("a submission with this Idempotency-Key is still being processed")
    if previous.status_code != 200:
        error = {403: Forbidden, 400: InvalidBody}.get(previous.status_code, Unprocessable)
        extra = {k: v for k, v in previous.response.items() if k not in ("error", "status", "detail")}
        raise error(previous.response.get("detail", ""), replayed=True, **extra)
    return SubmissionOutcome(previous.status_code, previous.response, replayed=True)
