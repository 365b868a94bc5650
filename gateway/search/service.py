"""The federated vacancy search over the national view (every source at once).

The search index (``gateway.search.index``) finds and orders the matching locations; the
rows of the page shown (or of a chunk of an export) are then read from the database with
their matching vacancy lines. A location's point is the registry's coordinates, else its
postcode district's centroid (kept on the location row).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from gateway.errors import Unprocessable
from gateway.model.vocab import LONG_TERM_VACANCY_TYPES, QualityFlag
from gateway.places import district_centroid, normalise_postcode
from gateway.search.index import index_for
from gateway.search.query import SearchQuery
from gateway.store.tables import Location, RegistryLocation, VacancyLine, table, utcnow

LOC, REG, LINE = table(Location), table(RegistryLocation), table(VacancyLine)
COLUMNS = [
    LOC.c.cqc_location_id,
    LOC.c.name,
    LOC.c.cqc_provider_id,
    LOC.c.provider_name,
    LOC.c.provider_type,
    sa.func.coalesce(REG.c.nhs_region, LOC.c.nhs_region).label("nhs_region"),
    sa.func.coalesce(REG.c.local_authority, LOC.c.local_authority).label("local_authority"),
    LOC.c.address_line1,
    LOC.c.town,
    LOC.c.postcode,
    LOC.c.phone,
    LOC.c.short_stay_services,
    LOC.c.languages,
    LOC.c.notes,
    LOC.c.funding_sources,
    LOC.c.contracts_with_local_authorities,
    LOC.c.contracts_with_sub_icbs,
    LOC.c.short_stay_weekly_cost,
    LOC.c.accepting_admissions,
    LOC.c.out_of_hours_admissions,
    LOC.c.quality_flags,
    LOC.c.source,
    LOC.c.source_updated_at,
    LOC.c.entered_capacity,
    REG.c.icb_code,
    REG.c.icb_name,
    REG.c.sub_icb_code,
    REG.c.overall_rating,
    REG.c.brand_id,
    REG.c.brand_name,
    REG.c.registered_beds,
    REG.c.regulated_activities,
    REG.c.specialisms,
    REG.c.service_types,
    LOC.c.latitude,
    LOC.c.longitude,
]


_POSTCODE_POINT = (
    sa.select(REG.c.latitude, REG.c.longitude)
    .where(REG.c.postcode == sa.bindparam("postcode"), REG.c.latitude.is_not(None))
    .limit(1)
)


def resolve_point(session: Session, postcode: str) -> tuple[float, float, str]:
    """A searched postcode as a point: the exact postcode where the registry knows it,
    else its district's centroid; (latitude, longitude, how it was found)."""
    normal = normalise_postcode(postcode)
    if normal is not None:
        row = session.execute(_POSTCODE_POINT, {"postcode": normal}).first()
        if row is not None:
            return float(row[0]), float(row[1]), "postcode"
    centroid = district_centroid(normal or f"{postcode.strip().upper()} 1AA")
    if centroid is None:
        raise Unprocessable(
            f"postcode: {postcode!r} is not a postcode of England the gateway knows",
            errors=[{"parameter": "postcode", "message": "unknown in England"}],
        )
    return centroid[0], centroid[1], "district"


_LINE_FIELDS = (
    "vacancy_type",
    "weekly_price_from",
    "maximum_capacity",
    "occupied",
    "reserved",
    "admittable",
    "unavailable",
    "unavailable_reasons",
    "flexible",
    "consistent",
    "quality_flags",
)


@lru_cache(maxsize=16)
def _lines_query(types: bool, price: bool, admittable: bool) -> sa.Select[Any]:
    """The vacancy lines of some locations that meet a query's line filters (the same
    conditions as ``_line_condition``, with the values bound at execution)."""
    conditions: list[sa.ColumnElement[bool]] = [
        LINE.c.cqc_location_id.in_(sa.bindparam("ids", expanding=True)),
        LINE.c.vacancy_type.is_not(None),
    ]
    if types:
        conditions.append(LINE.c.vacancy_type.in_(sa.bindparam("types", expanding=True)))
    if price:
        conditions.append(LINE.c.weekly_price_from <= sa.bindparam("price"))
    if admittable:
        conditions.append(LINE.c.admittable > 0)
    return (
        sa.select(*(LINE.c[name] for name in _LINE_FIELDS), LINE.c.cqc_location_id)
        .where(*conditions)
        .order_by(LINE.c.cqc_location_id, LINE.c.line_key)
    )


def _lines(session: Session, ids: list[str], q: SearchQuery) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    if not ids:
        return out
    types = q.vacancy_types or ([v.value for v in LONG_TERM_VACANCY_TYPES] if q.stay is not None else [])
    query = _lines_query(bool(types), q.max_weekly_price is not None, bool(q.accepting_today))
    params: dict[str, Any] = {"ids": ids, "types": types, "price": q.max_weekly_price}
    for row in session.execute(query, params):
        vacancy_type, price, capacity, occupied, reserved, admittable, unavailable, *rest = row
        reasons, flexible, consistent, flags, cqc_location_id = rest
        out[cqc_location_id].append(
            {
                "vacancy_type": vacancy_type,
                "weekly_price_from": price,
                "maximum_capacity": capacity,
                "occupied": occupied,
                "reserved": reserved,
                "admittable": admittable,
                "unavailable": unavailable,
                "vacancies_total": max(capacity - occupied, 0),
                "unavailable_reasons": reasons,
                "flexible": flexible,
                "consistent": consistent,
                "quality_flags": flags,
            }
        )
    return out


def candidates(
    session: Session, q: SearchQuery, now: datetime | None = None
) -> tuple[list[tuple[str, float | None]], dict[str, Any] | None]:
    """Every matching location (its id and distance), sorted as asked; and the searched
    point. The search index narrows and orders; the rows are read for what is shown."""
    now = now or utcnow()
    point = origin = None
    if q.postcode is not None:
        lat, lon, how = resolve_point(session, q.postcode)
        point, origin = (
            (lat, lon),
            {"postcode": q.postcode, "latitude": lat, "longitude": lon, "found_by": how},
        )
    ids, distances = index_for(session).current(session).find(q, point, now)
    return list(zip(ids, distances, strict=True)), origin


def search(session: Session, q: SearchQuery, now: datetime | None = None) -> dict[str, Any]:
    """One page of results with the total."""
    found, origin = candidates(session, q, now)
    start = (q.page - 1) * q.page_size
    return {
        "total": len(found),
        "page": q.page,
        "page_size": q.page_size,
        "sort": q.sort.value,
        "origin": origin,
        "results": list(_results(session, found[start : start + q.page_size], q)),
    }


_FULL_ROWS = (
    sa.select(*COLUMNS)
    .select_from(LOC.outerjoin(REG, REG.c.cqc_location_id == LOC.c.cqc_location_id))
    .where(LOC.c.cqc_location_id.in_(sa.bindparam("ids", expanding=True)))
)


def full_rows(session: Session, ids: list[str]) -> dict[str, sa.Row[Any]]:
    """Every result column of the locations ``ids``."""
    if not ids:
        return {}
    return {row.cqc_location_id: row for row in session.execute(_FULL_ROWS, {"ids": ids})}


def _results(
    session: Session, part: list[tuple[str, float | None]], q: SearchQuery
) -> Iterator[dict[str, Any]]:
    """The results of some candidates, in their order, with their vacancy lines."""
    ids = [cqc_id for cqc_id, _ in part]
    rows, lines = full_rows(session, ids), _lines(session, ids, q)
    for cqc_id, distance in part:
        row = rows.get(cqc_id)
        if row is not None:  # else gone since it was found (a concurrent write)
            yield result(row, distance, lines[cqc_id])


def result(row: sa.Row[Any], distance: float | None, lines: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "cqc_location_id": row.cqc_location_id,
        "name": row.name,
        "provider": {"cqc_provider_id": row.cqc_provider_id, "name": row.provider_name},
        "provider_type": row.provider_type,
        "nhs_region": row.nhs_region,
        "local_authority": row.local_authority,
        "icb": row.icb_code,
        "sub_icb": row.sub_icb_code,
        "address": {"line1": row.address_line1, "town": row.town, "postcode": row.postcode},
        "phone": row.phone,
        "distance_km": round(distance, 2) if distance is not None else None,
        "overall_rating": row.overall_rating,
        "brand": row.brand_name,
        "accepting_admissions": row.accepting_admissions,
        "out_of_hours_admissions": row.out_of_hours_admissions,
        "short_stay_services": row.short_stay_services,
        "languages": row.languages,
        "notes": row.notes,
        "funding_sources": row.funding_sources,
        "short_stay_weekly_cost": row.short_stay_weekly_cost,
        "source": row.source,
        "provider_last_updated": row.source_updated_at.isoformat(),
        "quality_flags": sorted(
            set(row.quality_flags or [])
            | (
                {QualityFlag.ENTERED_CAPACITY_ABOVE_REGISTERED.value}
                if row.registered_beds is not None and row.entered_capacity > row.registered_beds
                else set()
            )
        ),
        "vacancies": lines,
    }


def iterate_all(session: Session, q: SearchQuery, chunk: int = 500) -> Iterator[dict[str, Any]]:
    """Every result of a query in order, reading rows a chunk at a time (exports)."""
    found, _ = candidates(session, q)
    for start in range(0, len(found), chunk):
        yield from _results(session, found[start : start + chunk], q)
