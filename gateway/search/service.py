"""The federated vacancy search over the national view (every source at once).

One SQL query narrows by everything SQL does well (area, region, ratings, brands, admission
status, freshness, a bounding box around the searched point, and vacancy lines through
EXISTS); list-valued filters (languages, funding, services, specialisms...) and the exact
great-circle distance are applied to the survivors in Python. A location's point is the
registry's coordinates, else its postcode district's centroid (kept on the location row).

The narrowing query reads only what the Python filters and the sort need (a wide radius
keeps thousands of candidates, and decoding every JSON column of each would cost more than
the query); the full rows are read for the page shown (or a chunk of an export) only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from gateway.errors import Unprocessable
from gateway.model.vocab import LONG_TERM_VACANCY_TYPES, QualityFlag
from gateway.places import EARTH_RADIUS_KM, district_centroid, haversine_km, normalise_postcode
from gateway.search.query import SearchQuery, Sort
from gateway.store.tables import Location, RegistryLocation, VacancyLine, table, utcnow

LOC, REG, LINE = table(Location), table(RegistryLocation), table(VacancyLine)
# A location's point: kept on the location row (the registry's coordinates when it has
# them, else its postcode district's centroid), so the bounding box can use an index.
LAT = LOC.c.latitude
LON = LOC.c.longitude
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
    LAT.label("latitude"),
    LON.label("longitude"),
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


def _line_condition(q: SearchQuery) -> sa.ColumnElement[bool] | None:
    conditions: list[sa.ColumnElement[bool]] = []
    if q.vacancy_types:
        conditions.append(LINE.c.vacancy_type.in_(q.vacancy_types))
    elif q.stay is not None:
        conditions.append(LINE.c.vacancy_type.in_([v.value for v in LONG_TERM_VACANCY_TYPES]))
    if q.max_weekly_price is not None:
        conditions.append(LINE.c.weekly_price_from <= q.max_weekly_price)
    if q.accepting_today:
        conditions.append(LINE.c.admittable > 0)
    if not conditions:
        return None
    return sa.and_(LINE.c.vacancy_type.is_not(None), *conditions)


def bounding_box(lat: float, lon: float, radius_km: float) -> tuple[float, float, float, float]:
    # Degrees of latitude are ~111 km; longitude shrinks with the cosine of latitude. The
    # box is widened slightly so that homes at the edge are never cut off before the exact
    # distance is computed.
    dlat = math.degrees(radius_km / EARTH_RADIUS_KM) * 1.01
    cos = max(math.cos(math.radians(abs(lat) + dlat)), 0.01)
    dlon = math.degrees(radius_km / (EARTH_RADIUS_KM * cos)) * 1.01
    return lat - dlat, lat + dlat, lon - dlon, lon + dlon


_FROM = LOC.outerjoin(REG, REG.c.cqc_location_id == LOC.c.cqc_location_id)
# What the Python-side filters read, by the query field that asks for it.
_FILTER_COLUMNS: dict[str, sa.ColumnElement[Any]] = {
    "languages": LOC.c.languages,
    "funding": LOC.c.funding_sources,
    "short_stay_services": LOC.c.short_stay_services,
    "specialisms": REG.c.specialisms,
    "service_types": REG.c.service_types,
    "regulated_activities": REG.c.regulated_activities,
    "contract_las": LOC.c.contracts_with_local_authorities,
    "contract_sub_icbs": LOC.c.contracts_with_sub_icbs,
    "notes": LOC.c.notes,
}


def narrowing_columns(q: SearchQuery) -> list[sa.ColumnElement[Any]]:
    """The columns a query's candidates need: identity, point, what its Python filters
    read, and its sort key."""
    columns: list[sa.ColumnElement[Any]] = [
        LOC.c.cqc_location_id,
        LAT.label("latitude"),
        LON.label("longitude"),
    ]
    wanted = {name for name in _FILTER_COLUMNS if getattr(q, name)}
    if q.stay == "short-stay":
        wanted.add("short_stay_services")
    columns += [column for name, column in _FILTER_COLUMNS.items() if name in wanted]
    if q.sort is Sort.FRESHNESS:
        columns.append(LOC.c.source_updated_at)
    return columns


def base_query(
    q: SearchQuery,
    point: tuple[float, float] | None,
    now: datetime,
    columns: list[sa.ColumnElement[Any]] | None = None,
) -> sa.Select[Any]:
    """The narrowing query (every result column unless ``columns`` says otherwise)."""
    stmt = (
        sa.select(*(COLUMNS if columns is None else columns)).select_from(_FROM).where(LOC.c.active.is_(True))
    )
    if q.regions:
        stmt = stmt.where(sa.func.coalesce(REG.c.nhs_region, LOC.c.nhs_region).in_(q.regions))
    if q.local_authorities:
        wanted = [a.lower() for a in q.local_authorities]
        stmt = stmt.where(
            sa.func.lower(sa.func.coalesce(REG.c.local_authority, LOC.c.local_authority)).in_(wanted)
        )
    if q.icbs:
        stmt = stmt.where(REG.c.icb_code.in_(q.icbs))
    if q.sub_icbs:
        stmt = stmt.where(REG.c.sub_icb_code.in_(q.sub_icbs))
    if q.ratings:
        rating = sa.func.coalesce(REG.c.overall_rating, "not-rated")
        stmt = stmt.where(rating.in_(q.ratings))
    if q.brands:
        wanted = [b.lower() for b in q.brands]
        stmt = stmt.where(
            sa.or_(sa.func.lower(REG.c.brand_name).in_(wanted), sa.func.lower(REG.c.brand_id).in_(wanted))
        )
    if q.provider_types:
        stmt = stmt.where(LOC.c.provider_type.in_(q.provider_types))
    if q.accepting_today is not None:
        stmt = stmt.where(LOC.c.accepting_admissions.is_(q.accepting_today))
    if q.out_of_hours is not None:
        stmt = stmt.where(LOC.c.out_of_hours_admissions.is_(q.out_of_hours))
    if q.updated_within is not None:
        stmt = stmt.where(LOC.c.source_updated_at >= now - q.updated_within)
    if point is not None and q.radius_km is not None:
        south, north, west, east = bounding_box(point[0], point[1], q.radius_km)
        stmt = stmt.where(LAT.between(south, north), LON.between(west, east))
    condition = _line_condition(q)
    if condition is not None:
        stmt = stmt.where(sa.exists().where(LINE.c.cqc_location_id == LOC.c.cqc_location_id, condition))
    return stmt


def _has_any(values: list[str] | None, wanted: list[str]) -> bool:
    have = {v.lower() for v in values or []}
    return any(w.lower() in have for w in wanted)


def _keeps(row: sa.Row[Any], q: SearchQuery) -> bool:
    """The list-valued filters, applied to one candidate."""
    if q.languages and not {w.lower() for w in q.languages} <= {v.lower() for v in row.languages or []}:
        return False
    if q.funding and not _has_any(row.funding_sources, q.funding):
        return False
    if q.short_stay_services and not _has_any(row.short_stay_services, q.short_stay_services):
        return False
    if q.stay == "short-stay" and not q.short_stay_services and not row.short_stay_services:
        return False
    if q.specialisms and not _has_any(row.specialisms, q.specialisms):
        return False
    if q.service_types and not _has_any(row.service_types, q.service_types):
        return False
    if q.regulated_activities and not _has_any(row.regulated_activities, q.regulated_activities):
        return False
    if q.contract_las and not _has_any(row.contracts_with_local_authorities, q.contract_las):
        return False
    if q.contract_sub_icbs and not _has_any(row.contracts_with_sub_icbs, q.contract_sub_icbs):
        return False
    if not q.notes:
        return True
    notes = (row.notes or "").lower()
    return all(keyword.lower() in notes for keyword in q.notes)


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
) -> tuple[list[tuple[sa.Row[Any], float | None]], dict[str, Any] | None]:
    """Every matching location with its distance, sorted as asked; and the searched point.

    The rows carry ``narrowing_columns`` only; ``full_rows`` reads the rest."""
    now = now or utcnow()
    point = origin = None
    if q.postcode is not None:
        lat, lon, how = resolve_point(session, q.postcode)
        point, origin = (
            (lat, lon),
            {"postcode": q.postcode, "latitude": lat, "longitude": lon, "found_by": how},
        )
    rows = []
    for row in session.execute(base_query(q, point, now, narrowing_columns(q))):
        if not _keeps(row, q):
            continue
        distance = None
        if point is not None and row.latitude is not None:
            distance = haversine_km(point[0], point[1], row.latitude, row.longitude)
            if q.radius_km is not None and distance > q.radius_km:
                continue
        elif point is not None and q.radius_km is not None:
            continue  # no known place: cannot be within the radius
        rows.append((row, distance))
    rows.sort(key=_sort_key(q, session))
    return rows, origin


def _sort_key(q: SearchQuery, session: Session) -> Any:
    if q.sort is Sort.FRESHNESS:
        return lambda item: (-item[0].source_updated_at.timestamp(), item[0].cqc_location_id)
    if q.sort in (Sort.ADMITTABLE, Sort.PRICE):
        return lambda item: (item[0].cqc_location_id,)  # refined after the lines are read
    return lambda item: (item[1] if item[1] is not None else math.inf, item[0].cqc_location_id)


def search(session: Session, q: SearchQuery, now: datetime | None = None) -> dict[str, Any]:
    """One page of results with the total."""
    rows, origin = candidates(session, q, now)
    if q.sort in (Sort.ADMITTABLE, Sort.PRICE):
        lines = _lines(session, [r.cqc_location_id for r, _ in rows], q)
        rows = sort_by_lines(rows, lines, q.sort)
    start = (q.page - 1) * q.page_size
    return {
        "total": len(rows),
        "page": q.page,
        "page_size": q.page_size,
        "sort": q.sort.value,
        "origin": origin,
        "results": list(_results(session, rows[start : start + q.page_size], q)),
    }


_FULL_ROWS = (
    sa.select(*COLUMNS)
    .select_from(_FROM)
    .where(LOC.c.cqc_location_id.in_(sa.bindparam("ids", expanding=True)))
)


def full_rows(session: Session, ids: list[str]) -> dict[str, sa.Row[Any]]:
    """Every result column of the locations ``ids``."""
    if not ids:
        return {}
    return {row.cqc_location_id: row for row in session.execute(_FULL_ROWS, {"ids": ids})}


def _results(
    session: Session, part: list[tuple[sa.Row[Any], float | None]], q: SearchQuery
) -> Iterator[dict[str, Any]]:
    """The results of some candidates, in their order, with their vacancy lines."""
    ids = [r.cqc_location_id for r, _ in part]
    rows, lines = full_rows(session, ids), _lines(session, ids, q)
    for candidate, distance in part:
        row = rows.get(candidate.cqc_location_id)
        if row is not None:  # else gone since it was found (a concurrent write)
            yield result(row, distance, lines[candidate.cqc_location_id])


def sort_by_lines(
    rows: list[tuple[sa.Row[Any], float | None]], lines: dict[str, list[dict[str, Any]]], sort: Sort
) -> list[tuple[sa.Row[Any], float | None]]:
    def admittable(item: tuple[sa.Row[Any], float | None]) -> tuple[int, str]:
        return (-sum(ln["admittable"] for ln in lines[item[0].cqc_location_id]), item[0].cqc_location_id)

    def price(item: tuple[sa.Row[Any], float | None]) -> tuple[float, str]:
        prices = [ln["weekly_price_from"] for ln in lines[item[0].cqc_location_id] if ln["weekly_price_from"]]
        return (min(prices) if prices else math.inf, item[0].cqc_location_id)

    return sorted(rows, key=admittable if sort is Sort.ADMITTABLE else price)


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
    """Every result of a query in order, reading vacancy lines a chunk at a time (exports)."""
    rows, _ = candidates(session, q)
    if q.sort in (Sort.ADMITTABLE, Sort.PRICE):
        rows = sort_by_lines(rows, _lines(session, [r.cqc_location_id for r, _ in rows], q), q.sort)
    for start in range(0, len(rows), chunk):
        yield from _results(session, rows[start : start + chunk], q)
