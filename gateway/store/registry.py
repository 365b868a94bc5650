"""Registry rows: upserts from CQC syncs and look-ups for enrichment."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import AutoString, SQLModel, col

from gateway.store.repository import add_versions, bulk_insert, chunks, claim_change_clock, update_counter
from gateway.store.tables import (
    Location,
    LocationVersion,
    RegistryGeneration,
    RegistryLocation,
    RegistryProvider,
    table,
)

# The longest text the registry keeps in an indexed column that declares no length: a
# PostgreSQL B-tree entry must stay under about 2,700 bytes, and 500 characters are at most
# 2,000 bytes in UTF-8 (no local authority, brand or ICB code comes near it).
INDEXED_TEXT_MAX_CHARS = 500


@dataclass(frozen=True)
class TooLong:
    """A text value its registry column cannot hold: the record's key, the column, and how
    many characters the column holds; ``nul`` when the value holds a NUL character
    (U+0000), which PostgreSQL's text cannot store at any length."""

    key: str
    column: str
    limit: int
    nul: bool = False

    @property
    def why(self) -> str:
        if self.nul:
            return "holds a NUL character (U+0000), which the registry cannot store"
        return f"longer than the registry holds ({self.limit} characters)"


@dataclass
class FittedRows:
    """Registry rows ready to store: ``rows`` (each value set aside in ``set_aside`` is
    stored empty), and the rows ``refused`` because their key, or a value the row cannot
    be without, is too long (the registry keeps the row it held of them, if any)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    set_aside: list[TooLong] = field(default_factory=list)
    refused: list[TooLong] = field(default_factory=list)


def text_limits(model: type[SQLModel]) -> dict[str, int]:
    """The registry table's text columns that hold a limited length, and that length:
    those that declare one, and indexed ones (``INDEXED_TEXT_MAX_CHARS``)."""
    t = table(model)
    indexed = {c.name for index in t.indexes for c in index.columns}
    limits: dict[str, int] = {}
    for column in t.c:
        if not isinstance(column.type, sa.String | AutoString):
            continue
        length = getattr(column.type, "length", None)
        if length is None and (column.name in indexed or column.primary_key):
            length = INDEXED_TEXT_MAX_CHARS
        if length is not None:
            limits[column.name] = length
    return limits


def fit_registry_rows(model: type[SQLModel], rows: Sequence[dict[str, Any]]) -> FittedRows:
    """Fit upstream rows of ``model`` (a registry table) to its columns, so one bad value
    never fails the write of the rows beside it (PostgreSQL refuses a value longer than
    its column, or holding a NUL character; SQLite does not). Such a value in a column
    that may be empty is set aside (the row is kept with it empty: the raw record keeps
    it); a row whose key, or another value it cannot be without, is unfit is refused."""
    t = table(model)
    [key] = [c.name for c in t.primary_key.columns]
    limits = text_limits(model)
    texts = [c.name for c in t.c if isinstance(c.type, sa.String | AutoString)]
    out = FittedRows()
    for row in rows:
        ref = str(row.get(key)).replace("\x00", "")
        if len(ref) > limits[key]:
            ref = f"{ref[: limits[key]]}..."  # named in warnings: never the whole value
        too_long = [
            TooLong(ref, name, limit)
            for name, limit in limits.items()
            if isinstance(value := row.get(name), str) and len(value) > limit
        ]
        long = {f.column for f in too_long}
        too_long += [
            TooLong(ref, name, limits.get(name, 0), nul=True)
            for name in texts
            if name not in long and isinstance(value := row.get(name), str) and "\x00" in value
        ]
        required = [f for f in too_long if not t.c[f.column].nullable]
        if required:
            out.refused.append(required[0])
            continue
        out.set_aside.extend(too_long)
        out.rows.append({**row, **{f.column: None for f in too_long}})
    return out


def replace_registry_locations(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or replace registry location rows (keyed by CQC location ID). Each of them
    the national view holds gets a new version (what the view shows of it changed), so
    pass only rows that differ from those held (as :func:`sync_registry_locations` does)."""
    if not rows:
        return
    # The change clock before any row of the view is touched: pushes take it first too.
    stamp = claim_change_clock(session)
    t = table(RegistryLocation)
    ids = [row["cqc_location_id"] for row in rows]
    delete = sa.delete(t).where(t.c.cqc_location_id.in_(sa.bindparam("ids", expanding=True)))
    for chunk in chunks(ids):
        session.execute(delete, {"ids": chunk})
    generation = next_registry_generation(session)
    bulk_insert(session, t, [{**row, "generation": generation} for row in rows])
    # The national view places a location where the registry says it is.
    loc = table(Location)
    move = (
        sa.update(loc)
        .where(loc.c.cqc_location_id == sa.bindparam("b_id"))
        .values(latitude=sa.bindparam("b_lat"), longitude=sa.bindparam("b_lon"))
    )
    points = [
        {"b_id": r["cqc_location_id"], "b_lat": r["latitude"], "b_lon": r["longitude"]}
        for r in rows
        if r.get("latitude") is not None and r.get("longitude") is not None
    ]
    if points:
        session.execute(move, points)
    add_registry_versions(session, ids, stamp)


def sync_registry_locations(
    session: Session, rows: Sequence[dict[str, Any]], synced_at: datetime
) -> tuple[list[str], list[str]]:
    """Store registry location rows fetched by a sync: those that differ from the row held
    (or are new) replace it, stamped with a new generation; those identical to it are only
    marked as synced at ``synced_at`` (no new generation, so readers that follow the
    registry see no change). Returns the IDs written and the IDs unchanged."""
    changed, unchanged = _split_unchanged(session, table(RegistryLocation), "cqc_location_id", rows)
    replace_registry_locations(session, [{**row, "synced_at": synced_at} for row in changed])
    _mark_synced(session, table(RegistryLocation), "cqc_location_id", unchanged, synced_at)
    return [row["cqc_location_id"] for row in changed], unchanged


def sync_registry_providers(
    session: Session, rows: Sequence[dict[str, Any]], synced_at: datetime
) -> tuple[list[str], list[str]]:
    """Store registry provider rows fetched by a sync, as :func:`sync_registry_locations`
    does locations. Returns the IDs written and the IDs unchanged."""
    changed, unchanged = _split_unchanged(session, table(RegistryProvider), "cqc_provider_id", rows)
    replace_registry_providers(session, [{**row, "synced_at": synced_at} for row in changed])
    _mark_synced(session, table(RegistryProvider), "cqc_provider_id", unchanged, synced_at)
    return [row["cqc_provider_id"] for row in changed], unchanged


def _split_unchanged(
    session: Session, t: sa.Table, key: str, rows: Sequence[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """``rows`` that differ from the rows held (or are new), and the keys of those that
    are identical to them in every column but when they were synced and their generation."""
    compared = [c for c in t.c if c.name not in ("synced_at", "generation")]
    query = sa.select(*compared).where(t.c[key].in_(sa.bindparam("ids", expanding=True)))
    keys = [row[key] for row in rows]
    held: dict[str, dict[str, Any]] = {}
    for chunk in chunks(keys):
        for found in session.execute(query, {"ids": chunk}).mappings():
            held[found[key]] = dict(found)
    changed, unchanged = [], []
    for row in rows:
        before = held.get(row[key])
        same = before is not None and all(name in before and before[name] == v for name, v in row.items())
        if same:
            unchanged.append(row[key])
        else:
            changed.append(row)
    return changed, unchanged


def _mark_synced(session: Session, t: sa.Table, key: str, keys: Sequence[str], synced_at: datetime) -> None:
    touch = sa.update(t).where(t.c[key].in_(sa.bindparam("ids", expanding=True))).values(synced_at=synced_at)
    for chunk in chunks(keys):
        session.execute(touch, {"ids": chunk})


def next_registry_generation(session: Session) -> int:
    """Take the registry generation counter (its row lock holds to the end of the
    transaction, so generations commit in order) and return its next value."""
    return int(update_counter(session, _NEXT_GENERATION, {}, generation=0))


_GEN = table(RegistryGeneration)
_NEXT_GENERATION = (
    sa.update(_GEN)
    .where(_GEN.c.id == 1)
    .values(generation=_GEN.c.generation + 1)
    .returning(_GEN.c.generation)
)


def replace_registry_providers(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or replace registry provider rows (keyed by CQC provider ID). The
    Organization of each of them the national view names gets a new version, so pass only
    rows that differ from those held (as :func:`sync_registry_providers` does)."""
    if not rows:
        return
    stamp = claim_change_clock(session)
    t = table(RegistryProvider)
    ids = [row["cqc_provider_id"] for row in rows]
    for chunk in chunks(ids):
        session.execute(sa.delete(t).where(t.c.cqc_provider_id.in_(chunk)))
    session.execute(sa.insert(t), list(rows))
    add_registry_versions(session, _newest_naming_locations(session, ids), stamp)


_LOC, _VER = table(Location), table(LocationVersion)
_CURRENT_VERSIONS = (
    sa.select(
        _VER.c.cqc_location_id,
        _VER.c.cqc_provider_id,
        _VER.c.source,
        _VER.c.source_updated_at,
        _VER.c.received_at,
        _VER.c.content_hash,
        sa.cast(_VER.c.record, sa.Text),
    )
    .select_from(_VER.join(_LOC, _LOC.c.version_id == _VER.c.version_id))
    .where(_LOC.c.cqc_location_id.in_(sa.bindparam("ids", expanding=True)))
)
_SET_VERSION = (
    sa.update(_LOC)
    .where(_LOC.c.cqc_location_id == sa.bindparam("b_id"))
    .values(version_id=sa.bindparam("b_version"))
)


def add_registry_versions(session: Session, location_ids: Iterable[str], stamp: datetime) -> int:
    """Give each of ``location_ids`` the national view holds a new version, recorded at
    ``stamp`` (claimed from the change clock before the view was touched): a copy of its
    current one (record, source, the source's time and content digest), because what the
    registry says of it changed. Versions are what ETags, the FHIR change feed and the
    search index follow; the copy leaves how pushes are judged (stale, unchanged) as it
    was. A few statements per 900 locations, none per location. Returns how many got one."""
    versions: list[dict[str, Any]] = []
    for chunk in chunks(sorted(set(location_ids))):
        for cqc_id, provider_id, source, updated_at, received_at, digest, record in session.execute(
            _CURRENT_VERSIONS, {"ids": chunk}
        ):
            versions.append(
                {
                    "cqc_location_id": cqc_id,
                    "cqc_provider_id": provider_id,
                    "source": source,
                    "source_updated_at": updated_at,
                    "received_at": received_at,
                    "submission_id": None,  # no push made it
                    "content_hash": digest,
                    "record": orjson.Fragment(record),
                }
            )
    version_ids = add_versions(session, versions, stamp)
    pointers = [
        {"b_id": v["cqc_location_id"], "b_version": i} for v, i in zip(versions, version_ids, strict=True)
    ]
    if pointers:
        session.execute(_SET_VERSION, pointers)
    return len(version_ids)


def _newest_naming_locations(session: Session, provider_ids: Sequence[str]) -> list[str]:
    """For each of ``provider_ids`` the national view names, the location naming it whose
    current version is the newest: a new version of it is a new version of the provider's
    Organization (whose version is the newest version naming it)."""
    query = sa.select(_LOC.c.cqc_provider_id, _LOC.c.cqc_location_id, _LOC.c.version_id).where(
        _LOC.c.cqc_provider_id.in_(sa.bindparam("ids", expanding=True))
    )
    newest: dict[str, tuple[int, str]] = {}
    for chunk in chunks(sorted(set(provider_ids))):
        for provider_id, cqc_id, version_id in session.execute(query, {"ids": chunk}):
            if provider_id not in newest or version_id > newest[provider_id][0]:
                newest[provider_id] = (version_id, cqc_id)
    return [cqc_id for _, cqc_id in newest.values()]


def registry_ids_synced_since(session: Session, since: datetime) -> set[str]:
    """Locations written by syncs since ``since`` (a resumed full sync skips them)."""
    query = sa.select(col(RegistryLocation.cqc_location_id)).where(col(RegistryLocation.synced_at) >= since)
    return set(session.scalars(query))


def providers_to_fetch_since(session: Session, since: datetime) -> set[str]:
    """Providers of the locations synced since ``since`` that have not been synced since
    then themselves (a full sync fetches them once its locations are in; resumed, it
    does not fetch again those it has)."""
    rl, rp = table(RegistryLocation), table(RegistryProvider)
    named = sa.select(rl.c.cqc_provider_id).where(rl.c.synced_at >= since, rl.c.cqc_provider_id.is_not(None))
    done = sa.select(rp.c.cqc_provider_id).where(rp.c.synced_at >= since)
    return set(session.scalars(named.distinct())) - set(session.scalars(done))


def held_provider_ids(session: Session, provider_ids: Iterable[str]) -> set[str]:
    """Those of ``provider_ids`` the registry holds."""
    key = table(RegistryProvider).c.cqc_provider_id
    query = sa.select(key).where(key.in_(sa.bindparam("ids", expanding=True)))
    wanted = sorted(set(provider_ids))
    out: set[str] = set()
    for chunk in chunks(wanted):
        out.update(session.scalars(query, {"ids": chunk}))
    return out


def tracked_provider_ids(session: Session, provider_ids: Iterable[str]) -> set[str]:
    """Those of ``provider_ids`` the registry holds or some registry location names (an
    incremental sync fetches a changed provider only then: the registry keeps care homes'
    providers, not every provider the CQC lists)."""
    rl, rp = table(RegistryLocation), table(RegistryProvider)
    ids: sa.BindParameter[Any] = sa.bindparam("ids", expanding=True)
    held = sa.select(rp.c.cqc_provider_id).where(rp.c.cqc_provider_id.in_(ids))
    named = sa.select(rl.c.cqc_provider_id).where(rl.c.cqc_provider_id.in_(ids)).distinct()
    out: set[str] = set()
    for chunk in chunks(sorted(set(provider_ids))):
        out.update(session.scalars(held, {"ids": chunk}))
        out.update(p for p in session.scalars(named, {"ids": chunk}) if p is not None)
    return out


def reported_location_ids(session: Session) -> set[str]:
    """CQC IDs of the national view's active locations (what trackers report): a full sync
    also fetches those the CQC's care-home listing leaves out, such as community
    rehabilitation providers."""
    query = sa.select(col(Location.cqc_location_id)).where(col(Location.active).is_(True))
    return set(session.scalars(query))


def registry_authorities(session: Session) -> list[str]:
    """Every local authority the CQC registry names (of the homes it lists)."""
    t = table(RegistryLocation)
    return list(
        session.scalars(sa.select(t.c.local_authority).where(t.c.local_authority.is_not(None)).distinct())
    )


# The registry's columns of what the search filters on, by the search's name for it.
# Those holding JSON lists are read as their text (few distinct lists), then parsed.
_LISTED_VALUES = {
    "specialism": ("specialisms",),
    "service_type": ("service_types",),
    "regulated_activity": ("regulated_activities",),
}
_PLAIN_VALUES = {
    "brand": ("brand_name", "brand_id"),
    "icb": ("icb_code",),
    "sub_icb": ("sub_icb_code",),
    # A contract with a sub-ICB names it by its code or its name.
    "contract_sub_icb": ("sub_icb_code", "sub_icb_name"),
}
REGISTRY_VALUE_KINDS = frozenset(_LISTED_VALUES) | frozenset(_PLAIN_VALUES)


def registry_values(session: Session, kind: str) -> set[str]:
    """Every value of ``kind`` (one of ``REGISTRY_VALUE_KINDS``: a specialism, service type,
    regulated activity, brand name or id, ICB or sub-ICB code, sub-ICB code or name) the
    CQC registry gives, as it writes them."""
    if kind not in REGISTRY_VALUE_KINDS:
        raise ValueError(f"the registry keeps no values of {kind!r}")
    t = table(RegistryLocation)
    out: set[str] = set()
    for name in _LISTED_VALUES.get(kind, ()):
        text = sa.cast(t.c[name], sa.Text)  # PostgreSQL's json has no equality: DISTINCT on its text
        for listed in session.scalars(sa.select(text).where(t.c[name].is_not(None)).distinct()):
            out.update(v for v in (orjson.loads(listed) if listed else None) or () if isinstance(v, str))
    for name in _PLAIN_VALUES.get(kind, ()):
        column = t.c[name]
        out.update(session.scalars(sa.select(column).where(column.is_not(None)).distinct()))
    return out


def reported_ids_not_in_registry(session: Session) -> list[str]:
    """CQC IDs of the national view's active locations the registry does not hold, in
    order (an incremental sync fetches them: a tracker may start reporting a location the
    care-home listing leaves out)."""
    loc, reg = table(Location), table(RegistryLocation)
    query = (
        sa.select(loc.c.cqc_location_id)
        .outerjoin(reg, reg.c.cqc_location_id == loc.c.cqc_location_id)
        .where(loc.c.active.is_(True), reg.c.cqc_location_id.is_(None))
        .order_by(loc.c.cqc_location_id)
    )
    return list(session.scalars(query))


def registry_snapshot(session: Session) -> dict[str, dict[str, Any]]:
    """Every registry location as a plain dict, by CQC location ID (for comparisons)."""
    out = {}
    for row in session.scalars(sa.select(RegistryLocation)):
        data = row.model_dump()
        data.pop("synced_at", None)
        data.pop("generation", None)
        out[row.cqc_location_id] = data
    return out


def get_registry_location(session: Session, cqc_location_id: str) -> RegistryLocation | None:
    return session.get(RegistryLocation, cqc_location_id)


def count_registry(session: Session) -> int:
    return int(session.scalar(sa.select(sa.func.count()).select_from(RegistryLocation)) or 0)


def count_registry_providers(session: Session) -> int:
    return int(session.scalar(sa.select(sa.func.count()).select_from(RegistryProvider)) or 0)
