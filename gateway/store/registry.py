"""Registry rows: upserts from CQC syncs and look-ups for enrichment."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col

from gateway.store.repository import bulk_insert, update_counter
from gateway.store.tables import Location, RegistryGeneration, RegistryLocation, RegistryProvider, table

_CHUNK = 900


def replace_registry_locations(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or replace registry location rows (keyed by CQC location ID)."""
    if not rows:
        return
    t = table(RegistryLocation)
    ids = [row["cqc_location_id"] for row in rows]
    delete = sa.delete(t).where(t.c.cqc_location_id.in_(sa.bindparam("ids", expanding=True)))
    for start in range(0, len(ids), _CHUNK):
        session.execute(delete, {"ids": ids[start : start + _CHUNK]})
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
    if not rows:
        return
    t = table(RegistryProvider)
    ids = [row["cqc_provider_id"] for row in rows]
    for start in range(0, len(ids), _CHUNK):
        session.execute(sa.delete(t).where(t.c.cqc_provider_id.in_(ids[start : start + _CHUNK])))
    session.execute(sa.insert(t), list(rows))


def registry_ids_synced_since(session: Session, since: datetime) -> set[str]:
    """Locations written by syncs since ``since`` (a resumed full sync skips them)."""
    query = sa.select(col(RegistryLocation.cqc_location_id)).where(col(RegistryLocation.synced_at) >= since)
    return set(session.scalars(query))


def reported_location_ids(session: Session) -> set[str]:
    """CQC IDs of the national view's active locations (what trackers report): a full sync
    also fetches those the CQC's care-home listing leaves out, such as community
    rehabilitation providers."""
    query = sa.select(col(Location.cqc_location_id)).where(col(Location.active).is_(True))
    return set(session.scalars(query))


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
