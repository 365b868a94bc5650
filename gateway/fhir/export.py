"""FHIR Bulk Data 2.0 system-level ``$export`` of the national view.

Stateless, so several gateway processes can serve one job: a job row holds the types,
``_since`` and its ``transaction_time`` (a feed horizon: every version before it is
committed, none later can be stamped before it), and the export *is* the national view as
of that instant: each location's newest version recorded before it (with ``_since``, only
those recorded at or after ``_since``). Locations become ``Location`` resources, their
current vacancy lines ``HealthcareService`` resources, and each provider one
``Organization`` drawn from the newest of those versions naming it.

After kick-off a background worker counts the resources of each type and completes the
job; files are rendered from the database on demand, a partition at a time, so they are
the same whichever process serves them and whenever they are fetched, and their line
counts are the manifest's. Types without any resource are left out of the manifest's
``output`` (the specification lets a server omit empty files). A job in progress for far
longer than counting takes (its process died) is finished by the next poll.
"""

from __future__ import annotations

import logging
import re
import traceback
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from adapters.fhir.outbound import render
from gateway.auth import Principal, Scope
from gateway.errors import BadRequest, GatewayError, NotFound
from gateway.fhir import params as P
from gateway.fhir.bundles import operation_outcome
from gateway.store import fhir as fhir_store
from gateway.store import fhir_export as store
from gateway.store.db import transaction
from gateway.store.tables import BulkExport, utcnow

log = logging.getLogger(__name__)

EXPORT_TYPES = ("Location", "HealthcareService", "Organization")
NDJSON = "application/fhir+ndjson"
OUTPUT_FORMATS = {NDJSON, "application/ndjson", "ndjson"}
KICK_OFF_PARAMETERS = ("_type", "_since", "_outputFormat")
STALE_AFTER = timedelta(minutes=5)  # counting the national view takes seconds
RETRY_AFTER_S = 1
PARTITION = 200  # rows read, rendered and sent at a time (a chunk of about 1 MB)
_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


class ExportFailed(GatewayError):
    status_code = 500
    title = "Export failed"


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """A kick-off's parameters, checked."""

    types: tuple[str, ...]
    since: datetime | None
    ignored: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ExportStatus:
    """A poll's answer: the manifest when complete, else what is under way."""

    manifest: dict[str, Any] | None = None
    progress: str | None = None


def _prefer_tokens(prefer: str | None) -> set[str]:
    return {part.strip().lower() for part in re.split(r"[,;]", prefer or "") if part.strip()}


def parse_kick_off(items: Sequence[tuple[str, str]], prefer: str | None) -> ExportRequest:
    """Check a kick-off request's ``Prefer`` header and parameters (400 on anything else)."""
    tokens = _prefer_tokens(prefer)
    if "respond-async" not in tokens:
        raise BadRequest("$export runs asynchronously: send the header 'Prefer: respond-async'")
    lenient = "handling=lenient" in tokens
    types: list[str] = []
    since: datetime | None = None
    ignored: list[str] = []
    for key, value in items:
        if key == "_type":
            for name in (part.strip() for part in value.split(",")):
                if name not in EXPORT_TYPES:
                    raise P.bad("_type", f"{name!r} is not exported; choose from {', '.join(EXPORT_TYPES)}")
                if name not in types:
                    types.append(name)
        elif key == "_since":
            since = _parse_instant(value)
        elif key == "_outputFormat":
            # An unescaped '+' in a query string arrives as a space.
            if value.replace(" ", "+") not in OUTPUT_FORMATS:
                raise P.bad("_outputFormat", f"{value!r}: only {NDJSON} is produced")
        elif lenient:
            ignored.append(key)
        else:
            raise P.bad(
                key,
                f"not supported on $export; use {', '.join(KICK_OFF_PARAMETERS)} (Prefer: handling=lenient "
                "ignores others)",
            )
    return ExportRequest(tuple(types) or EXPORT_TYPES, since, tuple(ignored))


def _parse_instant(value: str) -> datetime:
    text = value.replace(" ", "+")
    if not _INSTANT.match(text):
        raise P.bad("_since", f"{value!r} is not a FHIR instant (e.g. 2026-11-20T09:00:00Z)")
    low = P.parse_date("_since", text).low
    assert isinstance(low, datetime)
    return low


def kick_off(
    factory: sessionmaker[Session], principal: Principal, request: ExportRequest, request_url: str
) -> str:
    """Record a job for the view as of now (a feed horizon); returns its id."""
    transaction_time = fhir_store.feed_horizon(factory)
    job_id = str(uuid.uuid4())
    with transaction(factory) as session:
        store.add_job(
            session,
            job_id=job_id,
            token_id=principal.token_id,
            request_url=request_url,
            types=request.types,
            since=request.since,
            transaction_time=transaction_time,
        )
    return job_id


def accepted_outcome(job_id: str, request: ExportRequest) -> dict[str, Any]:
    """The kick-off's answer body (information)."""
    text = f"export {job_id} accepted ({', '.join(request.types)}); poll the Content-Location"
    if request.ignored:
        text += f"; ignored (handling=lenient): {', '.join(request.ignored)}"
    return operation_outcome(202, text)


def status_url(base: str, job_id: str) -> str:
    return f"{base}/$export-status/{job_id}"


def file_url(base: str, job_id: str, resource_type: str) -> str:
    return f"{base}/$export-file/{job_id}/{resource_type}.ndjson"


# --- the job's work: counting ---------------------------------------------------------------


def service_types(record: dict[str, Any]) -> set[str]:
    """The vacancy types of a record's HealthcareServices (``render_services``'s, one each)."""
    return {line["vacancy_type"] for line in render.national_lines(record)}


def count_resources(
    session: Session, transaction_time: datetime, since: datetime | None, types: Iterable[str]
) -> dict[str, int]:
    """How many resources of each type the files hold, in one pass over the records."""
    wanted = set(types)
    locations = services = 0
    providers: set[str] = set()
    for record in store.records(session, transaction_time, since, PARTITION):
        locations += 1
        if "HealthcareService" in wanted:
            services += len(service_types(record))
        if "Organization" in wanted:
            provider_id = (record.get("provider") or {}).get("cqc_provider_id")
            if provider_id:
                providers.add(provider_id)
    counts = {"Location": locations, "HealthcareService": services, "Organization": len(providers)}
    return {name: counts[name] for name in EXPORT_TYPES if name in wanted}


def run_job(factory: sessionmaker[Session], job_id: str, base: str) -> None:
    """Count an in-progress job's resources and complete it (a no-op for any other job)."""
    with factory() as session:
        job = store.get_job(session, job_id)
        if job is None or job.status != store.IN_PROGRESS:
            return
        counts = count_resources(session, job.transaction_time, job.since, job.types)
    output = [
        {"type": name, "url": file_url(base, job_id, name), "count": count}
        for name, count in counts.items()
        if count
    ]
    with transaction(factory) as session:
        store.complete_job(session, job_id, output)


_WORKERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fhir-export")
_COUNTING: set[Future[None]] = set()  # this process's jobs still being counted


def start_counting(factory: sessionmaker[Session], job_id: str, base: str) -> None:
    """Run the job's work in the background of this process."""
    future = _WORKERS.submit(_count_in_background, factory, job_id, base)
    _COUNTING.add(future)
    future.add_done_callback(_report)
    future.add_done_callback(_COUNTING.discard)


def settle(timeout_s: float) -> None:
    """Let the jobs being counted finish, for up to ``timeout_s``, before the process lets
    its database connections go (a job cut short stays in progress: a later poll counts
    it again). Without it a worker still counting held a connection of a pool already
    disposed, never closed."""
    wait(list(_COUNTING), timeout=timeout_s)


def _count_in_background(factory: sessionmaker[Session], job_id: str, base: str) -> None:
    try:
        run_job(factory, job_id, base)
    except SQLAlchemyError as exc:
        # Left in progress: a poll after STALE_AFTER runs it again.
        log.warning("bulk export %s: counting failed (%s); a later poll retries", job_id, type(exc).__name__)


def _report(future: Future[None]) -> None:
    exc = future.exception()
    if exc is not None:
        # Type and stack only: an exception's text may quote data.
        stack = "".join(traceback.format_tb(exc.__traceback__))
        log.error("bulk export worker failed: %s\n%s", type(exc).__name__, stack)


# --- polling, cancelling, files -------------------------------------------------------------


def _visible_job(session: Session, principal: Principal, job_id: str) -> BulkExport:
    job = store.get_job(session, job_id)
    owner = job is not None and (job.token_id == principal.token_id or Scope.ADMIN.value in principal.scopes)
    if job is None or not owner or job.status == store.CANCELLED:
        raise NotFound(f"no export {job_id} for this token (unknown, cancelled, or another token's)")
    return job


def status(factory: sessionmaker[Session], principal: Principal, job_id: str, base: str) -> ExportStatus:
    """A poll: the manifest, or progress; finishes a job whose worker is long gone."""
    with factory() as session:
        job = _visible_job(session, principal, job_id)
    if job.status == store.IN_PROGRESS and utcnow() - job.created_at > STALE_AFTER:
        try:
            run_job(factory, job_id, base)
        except SQLAlchemyError as exc:
            with transaction(factory) as session:
                store.fail_job(session, job_id, f"counting failed ({type(exc).__name__})")
        with factory() as session:
            job = _visible_job(session, principal, job_id)
    if job.status == store.IN_PROGRESS:
        seconds = (utcnow() - job.created_at).total_seconds()
        return ExportStatus(progress=f"counting resources, started {seconds:.1f} s ago")
    if job.status == store.FAILED:
        raise ExportFailed(f"export {job_id} failed: {job.error}; kick off a new one")
    return ExportStatus(
        manifest={
            "transactionTime": render.instant(job.transaction_time),
            "request": job.request_url,
            "requiresAccessToken": True,
            "output": job.output,
            "error": [],
        }
    )


def cancel(factory: sessionmaker[Session], principal: Principal, job_id: str) -> None:
    """Cancel (or delete, once complete) a job: later polls and downloads are 404."""
    with transaction(factory) as session:
        _visible_job(session, principal, job_id)
        store.cancel_job(session, job_id)


def open_file(
    factory: sessionmaker[Session], principal: Principal, job_id: str, file_name: str
) -> Iterator[bytes]:
    """Check a download and return its NDJSON body, rendered lazily in partitions."""
    resource_type = file_name.removesuffix(".ndjson")
    with factory() as session:
        job = _visible_job(session, principal, job_id)
    listed = {item["type"] for item in job.output}
    if job.status != store.COMPLETE or not file_name.endswith(".ndjson") or resource_type not in listed:
        raise NotFound(f"export {job_id} has no file {file_name!r}; see its manifest")
    return ndjson(factory, resource_type, job.transaction_time, job.since)


def ndjson(
    factory: sessionmaker[Session], resource_type: str, transaction_time: datetime, since: datetime | None
) -> Iterator[bytes]:
    """One resource a line, as of ``transaction_time``, a partition at a time."""
    with factory() as session:
        for batch in resources(session, resource_type, transaction_time, since):
            yield b"".join(orjson.dumps(resource, option=orjson.OPT_APPEND_NEWLINE) for resource in batch)


def resources(
    session: Session, resource_type: str, transaction_time: datetime, since: datetime | None
) -> Iterator[Iterator[dict[str, Any]]]:
    """The type's resources of the view as of ``transaction_time``, a partition at a time.

    Each partition is rendered as it is consumed (consume it before asking for the next):
    a resource lives only until it is serialised.
    """
    if resource_type == "Organization":
        yield from _organizations(session, transaction_time, since)
        return
    query = store.snapshot_query(transaction_time, since, enriched=True)
    for rows in store.stream(session, query, PARTITION):
        if resource_type == "Location":
            yield (render.render_location(store.enriched_snapshot(row)) for row in rows)
        else:
            yield (
                service for row in rows for service in render.render_services(store.enriched_snapshot(row))
            )


def _organizations(
    session: Session, transaction_time: datetime, since: datetime | None
) -> Iterator[Iterator[dict[str, Any]]]:
    """One Organization per provider, from the newest version naming it."""
    query = store.provider_query(transaction_time, since)
    for rows in store.stream(session, query, PARTITION):
        snapshots = [store.plain_snapshot(row) for row in rows]
        names = fhir_store.provider_names(session, [s.provider_id for s in snapshots if s.provider_id])
        batch = (render.render_organization(s, names.get(s.provider_id or "")) for s in snapshots)
        yield (resource for resource in batch if resource is not None)
