"""The store's tables (SQLModel). The schema itself is built by the Alembic migrations.

- ``location`` and ``vacancy_line``: the current national view, one row per location and
  one per (location, vacancy type).
- ``location_version``: every accepted change, in order, with its source, the source's
  own timestamp, the time received and the normalised record as accepted.
- ``submission``: the raw body of every push, kept before it is parsed, with the answer.
- ``sync_state``: per-source cursors; ``api_token``: hashed bearer tokens.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC instant on every backend (SQLite keeps no offset of its own)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def table(model: type[SQLModel]) -> sa.Table:
    """The Core table of a SQLModel table class (for bulk statements)."""
    found: sa.Table = model.__table__  # type: ignore[attr-defined]
    return found


def utcnow() -> datetime:
    return datetime.now(UTC)


def _json(default: Any = None) -> Any:
    return Field(default=default, sa_type=sa.JSON)


class Location(SQLModel, table=True):
    """A location in the current national view (keyed by CQC location ID)."""

    # Led by the source: serves look-ups by source and each source's newest data.
    __table_args__ = (sa.Index("ix_location_source_updated", "source", "source_updated_at"),)

    cqc_location_id: str = Field(primary_key=True, max_length=20)
    name: str
    cqc_provider_id: str | None = Field(default=None, index=True, max_length=20)
    provider_name: str | None = None
    nhs_region: str | None = Field(default=None, index=True, max_length=40)
    local_authority: str | None = Field(default=None, index=True)
    address_line1: str | None = None
    address_line2: str | None = None
    town: str | None = None
    county: str | None = None
    postcode: str | None = Field(default=None, max_length=10)
    # ``name`` and ``town`` as string searches compare them (``gateway.folding.fold``).
    name_folded: str | None = None
    town_folded: str | None = None
    latitude: float | None = Field(default=None, index=True)  # the postcode district's centroid
    longitude: float | None = None
    phone: str | None = None
    provider_type: str = Field(max_length=20)
    short_stay_services: list[str] = _json([])
    languages: list[str] = _json([])
    notes: str | None = None
    funding_sources: list[str] = _json([])
    contracts_with_local_authorities: list[str] = _json([])
    contracts_with_sub_icbs: list[str] = _json([])
    short_stay_weekly_cost: float | None = None
    accepting_admissions: bool | None = None  # None: the source did not say
    out_of_hours_admissions: bool | None = None
    active: bool = True  # no index: true for nearly every row, it only misled planners
    entered_capacity: int = 0
    quality_flags: list[str] = _json([])
    source: str = Field(max_length=80)
    source_updated_at: datetime = Field(sa_type=UTCDateTime)
    received_at: datetime = Field(sa_type=UTCDateTime)
    version_id: int
    content_hash: str = Field(max_length=64)


class VacancyLine(SQLModel, table=True):
    """One vacancy line of a location in the current national view."""

    __tablename__ = "vacancy_line"

    cqc_location_id: str = Field(primary_key=True, foreign_key="location.cqc_location_id", max_length=20)
    line_key: str = Field(primary_key=True, max_length=80)
    vacancy_type: str | None = Field(default=None, max_length=60)
    source_code: str | None = Field(default=None, max_length=60)
    weekly_price_from: float | None = None
    maximum_capacity: int
    occupied: int
    reserved: int
    admittable: int
    unavailable: int
    unavailable_reasons: list[str] = _json([])
    flexible: bool = False
    consistent: bool = True
    quality_flags: list[str] = _json([])


class LocationVersion(SQLModel, table=True):
    """One accepted change of one location, in the order the gateway accepted it."""

    __tablename__ = "location_version"
    __table_args__ = (
        sa.Index("ix_location_version_location_version", "cqc_location_id", "version_id"),
        sa.Index("ix_location_version_feed", "recorded_at", "version_id"),
        # An Organization's versions: those naming its provider, newest last.
        sa.Index("ix_location_version_provider", "cqc_provider_id", "version_id"),
    )

    version_id: int | None = Field(default=None, primary_key=True)
    cqc_location_id: str = Field(max_length=20)
    cqc_provider_id: str | None = Field(default=None, max_length=20)  # the provider the record names
    source: str = Field(max_length=80)
    source_updated_at: datetime = Field(sa_type=UTCDateTime)
    received_at: datetime = Field(sa_type=UTCDateTime)
    # When the gateway recorded this version, stamped under the change clock: versions
    # are recorded in commit order, which the FHIR change feed (_history) relies on.
    recorded_at: datetime = Field(sa_type=UTCDateTime)
    submission_id: str | None = Field(default=None, index=True, max_length=36)
    content_hash: str = Field(max_length=64)
    record: dict[str, Any] = _json({})


class Submission(SQLModel, table=True):
    """The raw body of one push, kept before parsing, and the answer the gateway gave.

    With a retention period set (``GATEWAY_PUSH_BODY_RETENTION_DAYS``) the body is
    discarded once older than that (``body`` None, ``body_discarded_at`` set); the push's
    record, answer and counts stay.
    """

    __table_args__ = (
        sa.UniqueConstraint("token_id", "idempotency_key"),
        # Covering for source health (in the table these sit after the body).
        sa.Index("ix_submission_source_received", "source", "received_at", "status_code"),
        # The bodies still kept, oldest first: found without walking those discarded.
        sa.Index("ix_submission_kept_body", "body_discarded_at", "received_at"),
    )

    id: str = Field(primary_key=True, max_length=36)
    source: str = Field(max_length=80)
    token_id: str = Field(max_length=36)
    idempotency_key: str | None = Field(default=None, max_length=200)
    request_hash: str = Field(max_length=64)
    content_type: str | None = None
    body: bytes | None = Field(default=None, sa_type=sa.LargeBinary)
    received_at: datetime = Field(sa_type=UTCDateTime, index=True)
    status_code: int | None = None
    response: dict[str, Any] | None = _json(None)
    accepted: int = 0
    unchanged: int = 0
    stale: int = 0
    rejected: int = 0
    body_discarded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SyncState(SQLModel, table=True):
    """Where each source's incremental sync stands (its cursor)."""

    __tablename__ = "sync_state"

    source: str = Field(primary_key=True, max_length=80)
    cursor: dict[str, Any] = _json({})
    updated_at: datetime = Field(sa_type=UTCDateTime)


class ApiToken(SQLModel, table=True):
    """A bearer token, stored as its SHA-256 digest, with scopes and writable regions."""

    __tablename__ = "api_token"

    id: str = Field(primary_key=True, max_length=36)
    name: str = Field(index=True, max_length=120)
    token_hash: str = Field(unique=True, max_length=64)
    scopes: list[str] = _json([])
    regions: list[str] = _json([])
    created_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # None: never


class RegistryLocation(SQLModel, table=True):
    """A location as the CQC registry describes it (the authority on what exists)."""

    __tablename__ = "registry_location"

    cqc_location_id: str = Field(primary_key=True, max_length=20)
    cqc_provider_id: str | None = Field(default=None, index=True, max_length=20)
    name: str
    care_home: bool = True
    registration_status: str = Field(max_length=20)
    registration_date: str | None = None
    deregistration_date: str | None = None
    dormant: bool | None = None
    registered_beds: int | None = None
    brand_id: str | None = None
    brand_name: str | None = Field(default=None, index=True)
    address_line1: str | None = None
    address_line2: str | None = None
    town: str | None = None
    county: str | None = None
    postcode: str | None = Field(default=None, index=True, max_length=10)
    latitude: float | None = Field(default=None, index=True)
    longitude: float | None = None
    cqc_region: str | None = None
    nhs_region: str | None = Field(default=None, index=True, max_length=40)
    local_authority: str | None = Field(default=None, index=True)
    icb_code: str | None = Field(default=None, index=True)
    icb_name: str | None = None
    sub_icb_code: str | None = None
    sub_icb_name: str | None = None
    ods_code: str | None = None
    phone: str | None = None
    website: str | None = None
    regulated_activities: list[str] = _json([])
    service_types: list[str] = _json([])
    specialisms: list[str] = _json([])
    overall_rating: str | None = Field(default=None, index=True, max_length=30)
    rating_date: str | None = None
    last_inspection_date: str | None = None
    record: dict[str, Any] = _json({})
    synced_at: datetime = Field(sa_type=UTCDateTime, index=True)  # the registry's newest sync
    # The registry generation that wrote the row (see RegistryGeneration).
    generation: int = Field(default=0, index=True)


class RegistryGeneration(SQLModel, table=True):
    """One row: a counter every write of registry locations takes (under its row lock, so
    generations commit in order) and stamps its rows with. A reader that remembers the
    last generation it saw finds exactly the rows written since (the search index does)."""

    __tablename__ = "registry_generation"

    id: int = Field(default=1, primary_key=True)
    generation: int = 0


class RegistryProvider(SQLModel, table=True):
    """A provider (the company) as the CQC registry describes it."""

    __tablename__ = "registry_provider"

    cqc_provider_id: str = Field(primary_key=True, max_length=20)
    name: str
    ownership_type: str | None = None
    companies_house_number: str | None = None
    location_ids: list[str] = _json([])
    record: dict[str, Any] = _json({})
    synced_at: datetime = Field(sa_type=UTCDateTime)


# A sync run's status: running, then succeeded or failed, or interrupted (cut short by its
# process stopping: it says nothing of the source's health).
RUNNING, SUCCEEDED, FAILED, INTERRUPTED = "running", "succeeded", "failed", "interrupted"


class SyncRun(SQLModel, table=True):
    """One run of one source's sync, whatever its outcome."""

    __tablename__ = "sync_run"
    __table_args__ = (
        # A source's runs, newest first, from the top of the index.
        sa.Index("ix_sync_run_source_started", "source", "started_at", "id"),
        # Its runs left running (closed by its next run) without reading every run.
        sa.Index("ix_sync_run_source_status", "source", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=80)
    kind: str = Field(default="incremental", max_length=20)
    started_at: datetime = Field(sa_type=UTCDateTime, index=True)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    status: str = Field(default=RUNNING, max_length=20)
    pages: int = 0
    records_seen: int = 0
    accepted: int = 0
    unchanged: int = 0
    stale: int = 0
    rejected: int = 0
    # Records kept aside for matching (London homes without a CQC ID), not in the view yet.
    held: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    rejections: list[dict[str, Any]] = _json([])
    warnings: list[str] = _json([])
    error_class: str | None = Field(default=None, max_length=20)
    error_message: str | None = None


class HeldRecord(SQLModel, table=True):
    """A source record the national view cannot place yet (e.g. a London home without a
    CQC ID), held until it is matched to the registry."""

    __tablename__ = "held_record"

    source: str = Field(primary_key=True, max_length=80)
    source_ref: str = Field(primary_key=True, max_length=80)
    name: str
    postcode: str | None = None
    local_authority: str | None = None
    record: dict[str, Any] = _json({})
    first_seen: datetime = Field(sa_type=UTCDateTime)
    last_seen: datetime = Field(sa_type=UTCDateTime)
    status: str = Field(default="unmatched", max_length=20)  # unmatched, linked, review, rejected
    matched_cqc_location_id: str | None = Field(default=None, max_length=20)
    match_score: float | None = None


class SourceLink(SQLModel, table=True):
    """Which location a source's own record (a London home, by its ref) last fed. A home
    that comes to name another CQC location, or none, leaves the one it fed."""

    __tablename__ = "source_link"

    source: str = Field(primary_key=True, max_length=80)
    source_ref: str = Field(primary_key=True, max_length=80)
    cqc_location_id: str = Field(max_length=20)
    linked_at: datetime = Field(sa_type=UTCDateTime)


class Finding(SQLModel, table=True):
    """A reconciliation finding: a discrepancy between a tracker and the CQC registry.

    Its id is stable (derived from kind, location and source), so a finding that persists
    across runs keeps its id, ``first_seen`` and history; it closes itself when the
    condition goes away.
    """

    id: str = Field(primary_key=True, max_length=40)
    kind: str = Field(index=True, max_length=40)
    severity: str = Field(max_length=10)
    cqc_location_id: str | None = Field(default=None, index=True, max_length=20)
    source: str | None = Field(default=None, index=True, max_length=80)
    source_ref: str | None = Field(default=None, max_length=80)
    nhs_region: str | None = Field(default=None, index=True, max_length=40)
    local_authority: str | None = None
    evidence: dict[str, Any] = _json({})
    status: str = Field(default="open", index=True, max_length=10)
    first_seen: datetime = Field(sa_type=UTCDateTime)
    last_seen: datetime = Field(sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ChangeClock(SQLModel, table=True):
    """One row: the last instant a version was recorded at. Writers of versions and readers
    of the change feed take its row lock, so every version's ``recorded_at`` is later than
    any feed horizon already handed out."""

    __tablename__ = "change_clock"

    id: int = Field(default=1, primary_key=True)
    last: datetime = Field(sa_type=UTCDateTime)


class BulkExport(SQLModel, table=True):
    """A FHIR bulk-data export job (kick-off, poll, manifest, cancel)."""

    __tablename__ = "bulk_export"

    id: str = Field(primary_key=True, max_length=36)
    token_id: str = Field(max_length=36)
    status: str = Field(max_length=20)  # in-progress, complete, cancelled, failed
    request_url: str
    types: list[str] = _json([])
    since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    transaction_time: datetime = Field(sa_type=UTCDateTime)
    created_at: datetime = Field(sa_type=UTCDateTime)
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    output: list[dict[str, Any]] = _json([])
    error: str | None = None


class SyncLease(SQLModel, table=True):
    """Which gateway process runs a source's sync now, until when (renewed while it runs)."""

    __tablename__ = "sync_lease"

    source: str = Field(primary_key=True, max_length=80)
    holder: str = Field(max_length=120)
    expires_at: datetime = Field(sa_type=UTCDateTime)
