"""Apply location updates from any source to the national view.

Every source ends here: pushes, London's pulled pages, FHIR transactions. For each update
the rule is the same:
- older than what the gateway holds (by the source's own timestamp), or as old as what
  another source gave it: ``stale``, ignored;
- the same content as held: ``unchanged``;
- a second state of a location at a time the batch already stated: ``rejected``;
- otherwise ``accepted``: a new version is written and the current view replaced.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy.orm import Session

from gateway.folding import fold
from gateway.model.capacity import LocationUpdate, above_registered
from gateway.model.vocab import QualityFlag
from gateway.places import District, district_of, load_districts
from gateway.schemas import Problem
from gateway.store import repository
from gateway.store.repository import HeldLocation, RegistryPlace

# How far ahead of the gateway's clock a source's own time may run.
MAX_CLOCK_SKEW = timedelta(minutes=10)


class RecordStatus(StrEnum):
    ACCEPTED = "accepted"
    UNCHANGED = "unchanged"
    STALE = "stale"
    REJECTED = "rejected"


@dataclass(slots=True)
class RecordResult:
    """What became of one record of a batch."""

    index: int
    cqc_location_id: str | None
    status: RecordStatus
    problems: list[Problem] = field(default_factory=list)
    version_id: int | None = None
    quality_flags: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "cqc_location_id": self.cqc_location_id,
            "status": self.status.value,
        }
        if self.version_id is not None:
            out["version_id"] = self.version_id
        if self.quality_flags:
            out["quality_flags"] = self.quality_flags
        if self.problems:
            out["errors"] = [{"pointer": p.pointer, "message": p.message} for p in self.problems]
        return out


def content_hash(record: dict[str, Any]) -> str:
    """A stable digest of a normalised record (the same content gives the same digest)."""
    return hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(slots=True)
class Prepared:
    """An update made ready to judge and store: everything that needs no database.

    Pure and picklable, so a source may prepare its updates in another process. The rows
    lack what only storing knows (source, receipt time, region, version id).
    """

    cqc_location_id: str
    updated_at: datetime
    digest: str
    record_json: bytes  # the record as stored
    location: dict[str, Any]
    lines: list[dict[str, Any]]
    flags: list[str]  # its lines' (the flags against the registry are judged when storing)
    district_region: str | None  # the NHS region of its postcode's district
    declared_region: str | None  # the NHS region its source declares


def prepare(update: LocationUpdate) -> Prepared:
    """The record, digest and rows of one update."""
    record = update.model_dump(mode="json")
    digest = content_hash(record)
    district = _district(update)
    cqc_id = update.cqc_location_id
    lines: list[dict[str, Any]] = []
    flags: set[str] = set()
    for line, line_record in zip(update.vacancies, record["vacancies"], strict=True):
        line_flags = [f._value_ for f in update.line_quality_flags(line)]  # ``.value`` is a slow descriptor
        flags.update(line_flags)
        row = line_record.copy()  # the record itself is stored as it is
        row.pop("parts_inconsistent", None)  # in the record (and ``consistent``), not a column
        row["cqc_location_id"] = cqc_id
        row["line_key"] = line.line_key
        row["consistent"] = line.is_consistent
        row["quality_flags"] = line_flags
        lines.append(row)
    address, provider = record["address"], record["provider"]
    sorted_flags = sorted(flags)
    location = dict(zip(_COLUMNS, _columns_of(record), strict=True))
    location.update(
        cqc_provider_id=provider["cqc_provider_id"],
        provider_name=provider["name"],
        address_line1=address["line1"],
        address_line2=address["line2"],
        town=address["town"],
        county=address["county"],
        postcode=address["postcode"],
        name_folded=fold(record["name"]),
        town_folded=fold(address["town"]) if address["town"] is not None else None,
        latitude=district.latitude if district else None,
        longitude=district.longitude if district else None,
        entered_capacity=update.entered_capacity,
        quality_flags=sorted_flags,
        source_updated_at=update.updated_at,
        content_hash=digest,
    )
    return Prepared(
        cqc_id,
        update.updated_at,
        digest,
        orjson.dumps(record),
        location,
        lines,
        sorted_flags,
        district.nhs_region.value if district else None,
        update.nhs_region.value if update.nhs_region else None,
    )


# Parts of a record that are not columns of ``location`` as they stand; the rest are.
_NESTED = frozenset({"address", "provider", "vacancies", "updated_at"})
_COLUMNS = tuple(name for name in LocationUpdate.model_fields if name not in _NESTED)
_columns_of = itemgetter(*_COLUMNS)


@dataclass(frozen=True, slots=True)
class Known:
    """What the store knows of a batch's locations before judging it: the versions it
    holds and where the CQC registry places them."""

    held: dict[str, HeldLocation]
    places: dict[str, RegistryPlace]

    def registered_region(self, cqc_id: str) -> str | None:
        place = self.places.get(cqc_id)
        return place.nhs_region if place is not None else None

    def registered_beds(self, cqc_id: str) -> int | None:
        """The beds the CQC registry registers the location for (None: not known)."""
        place = self.places.get(cqc_id)
        return place.registered_beds if place is not None else None


def known_locations(session: Session, ids: Sequence[str]) -> Known:
    """What the store knows of ``ids``; read it under the change clock's lock (see
    ``apply_prepared``), or a concurrent writer may change it before it is used."""
    return Known(repository.held_locations(session, ids), repository.registry_places(session, ids))


def resolve_region(update: LocationUpdate, known: Known) -> str | None:
    """Where a location is: as the CQC registry says, else as already held, else by its
    postcode's district, else as the source declares. A reporter's own region never moves
    a location (London's tracker also reports homes just over its border), and no reporter
    can place a registered location outside its region."""
    cqc_id = update.cqc_location_id
    district = _district(update)
    declared = update.nhs_region.value if update.nhs_region else None
    by_district = district.nhs_region.value if district else None
    return _region(known.registered_region(cqc_id), known.held.get(cqc_id), by_district, declared)


def _district(update: LocationUpdate) -> District | None:
    return load_districts().get(district_of(update.address.postcode) or "")


def _region(
    registered: str | None, held: HeldLocation | None, by_district: str | None, declared: str | None
) -> str | None:
    if registered:
        return registered
    if held is not None and held.nhs_region:
        return held.nhs_region
    return by_district or declared


def _placed(known: Known, cqc_id: str, current: HeldLocation | None, update: Prepared) -> str | None:
    """Where an update's location is (see ``resolve_region``)."""
    return _region(known.registered_region(cqc_id), current, update.district_region, update.declared_region)


_ABOVE_REGISTERED = QualityFlag.ENTERED_CAPACITY_ABOVE_REGISTERED.value


def _answer_flags(update: Prepared, registered_beds: int | None) -> list[str]:
    """The quality flags an accepted record carries, as the national view shows them: its
    lines', and its entered capacity against the registry's beds (``above_registered``,
    as every output judges it; the registry's beds are read with the batch's places)."""
    if above_registered(update.location["entered_capacity"], registered_beds):
        return sorted([*update.flags, _ABOVE_REGISTERED])
    return update.flags


UNPLACED = Problem("/nhs_region", "nhs_region is required for a location the gateway does not know yet")


def ahead_of_clock(updated_at: datetime, received_at: datetime) -> bool:
    """Whether a source's own time runs more than ``MAX_CLOCK_SKEW`` ahead of the
    gateway's (such a record is refused: see ``_from_the_future``)."""
    return updated_at - received_at > MAX_CLOCK_SKEW


def _from_the_future(update: Prepared, received_at: datetime) -> Problem | None:
    """A source's own time more than ``MAX_CLOCK_SKEW`` ahead of the gateway's: refused,
    or it would judge every later update of the location 'stale'."""
    if not ahead_of_clock(update.updated_at, received_at):
        return None
    ahead = update.updated_at - received_at
    return Problem(
        "/updated_at",
        f"is {ahead.total_seconds() / 60:.0f} minutes ahead of the gateway's clock; a source's "
        f"time may run at most {MAX_CLOCK_SKEW.total_seconds() / 60:.0f} minutes ahead",
    )


def _twin_problem(index: int) -> Problem:
    return Problem(
        "/updated_at",
        f"is the updated_at of record {index} of this batch, the same location with other content: "
        "which is the home's state then is not known; send one record per location and time",
    )


def apply_updates(
    session: Session,
    *,
    source: str,
    updates: Sequence[tuple[int, LocationUpdate]],
    received_at: datetime,
    submission_id: str | None = None,
    known: Known | None = None,
) -> list[RecordResult]:
    """Judge and apply ``updates`` (each with its index in the batch) in order.

    ``known`` may be passed when the caller already read it, after taking the change
    clock's lock (to check regions, say). Later updates of the same location in one batch
    are judged against earlier ones.
    """
    prepared = [(index, prepare(update)) for index, update in updates]
    return apply_prepared(
        session,
        source=source,
        updates=prepared,
        received_at=received_at,
        submission_id=submission_id,
        known=known,
    )


def apply_prepared(
    session: Session,
    *,
    source: str,
    updates: Sequence[tuple[int, Prepared]],
    received_at: datetime,
    submission_id: str | None = None,
    known: Known | None = None,
) -> list[RecordResult]:
    """``apply_updates`` for updates already prepared (each used once)."""
    # The change clock's lock first: writers of the national view take turns from here, so
    # what is held is read after the last writer committed and nobody writes before this
    # transaction ends (on SQLite the lock is the database's; reads before it would not
    # even be in the transaction).
    stamp = repository.claim_change_clock(session)
    known = known or known_locations(session, [p.cqc_location_id for _, p in updates])
    held, places = dict(known.held), known.places
    already_held = set(held)
    results: list[RecordResult] = []
    winners: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    versions: list[dict[str, Any]] = []
    accepted: list[RecordResult] = []
    # Each location and time the batch stated (accepted, or unchanged): the record's index.
    batch_times: dict[tuple[str, datetime], int] = {}
    for index, update in updates:
        cqc_id = update.cqc_location_id
        current = held.get(cqc_id)
        result = RecordResult(index, cqc_id, RecordStatus.ACCEPTED)
        if (problem := _from_the_future(update, received_at)) is not None:
            result.status, result.problems = RecordStatus.REJECTED, [problem]
        elif current is not None and update.updated_at < current.source_updated_at:
            result.status = RecordStatus.STALE
        elif current is not None and current.content_hash == update.digest:
            result.status = RecordStatus.UNCHANGED
            batch_times.setdefault((cqc_id, update.updated_at), index)
        elif (twin := batch_times.get((cqc_id, update.updated_at))) is not None:
            # Two states of one home at one time in one batch: which is true is not known,
            # and taking the last would write both again at every retry of the batch.
            result.status, result.problems = RecordStatus.REJECTED, [_twin_problem(twin)]
        elif (
            current is not None
            and update.updated_at == current.source_updated_at
            and current.source != source
        ):
            # As old as what another source holds: the first word stands, or two sources
            # reporting one home at one time would flip the view at each push.
            result.status = RecordStatus.STALE
        elif (region := _placed(known, cqc_id, current, update)) is None and current is None:
            # A location new to the gateway must be placed (a caller checks regions first,
            # but an earlier record of the batch that placed it may have been refused).
            result.status, result.problems = RecordStatus.REJECTED, [UNPLACED]
        else:
            location = update.location
            location.update(nhs_region=region, source=source, received_at=received_at)
            result.quality_flags = _answer_flags(update, known.registered_beds(cqc_id))
            winners[cqc_id] = (location, update.lines)
            versions.append(
                {
                    "cqc_location_id": cqc_id,
                    "cqc_provider_id": location["cqc_provider_id"],
                    "source": source,
                    "source_updated_at": update.updated_at,
                    "received_at": received_at,
                    "submission_id": submission_id,
                    "content_hash": update.digest,
                    "record": orjson.Fragment(update.record_json),
                }
            )
            accepted.append(result)
            held[cqc_id] = HeldLocation(region, source, update.updated_at, update.digest)
            batch_times[(cqc_id, update.updated_at)] = index
        results.append(result)

    version_ids = repository.add_versions(session, versions, stamp)
    for result, version_id in zip(accepted, version_ids, strict=True):
        result.version_id = version_id
        winners[result.cqc_location_id or ""][0]["version_id"] = version_id
    locations = [location for location, _ in winners.values()]
    lines = [line for _, location_lines in winners.values() for line in location_lines]
    # Where a location is: the registry's coordinates when it has them, else (set by
    # prepare) its postcode district's centroid. Registry syncs keep this up to date too.
    for cqc_id, (location, _) in winners.items():
        place = places.get(cqc_id)
        if place is not None and place.latitude is not None:
            location["latitude"], location["longitude"] = place.latitude, place.longitude
    existing = [cqc_id for cqc_id in winners if cqc_id in already_held]
    repository.replace_locations(session, locations, lines, existing)
    return results
