"""What the search index keeps of each active location: the values its filters and sorts
read, and the result as shown (every field but the distance and the matching lines)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from gateway.model.capacity import above_registered
from gateway.model.vocab import QualityFlag, offers
from gateway.search.query import area_code, authority_key, text_key
from gateway.store.repository import chunks
from gateway.store.tables import Location, RegistryLocation, VacancyLine, table

LOC, REG, LINE = table(Location), table(RegistryLocation), table(VacancyLine)

# The list-valued attributes the filters read (as ``text_key`` writes them: compared in
# any case and spacing), in this order in ``Entry.sets``.
SETS = (
    "languages",
    "funding",
    "short_stay_services",
    "specialisms",
    "service_types",
    "regulated_activities",
    "contract_las",
    "contract_sub_icbs",
)
_SET_COLUMNS = (
    LOC.c.languages,
    LOC.c.funding_sources,
    LOC.c.short_stay_services,
    REG.c.specialisms,
    REG.c.service_types,
    REG.c.regulated_activities,
    LOC.c.contracts_with_local_authorities,
    LOC.c.contracts_with_sub_icbs,
)
_COLUMNS = (
    LOC.c.cqc_location_id,
    LOC.c.latitude,
    LOC.c.longitude,
    sa.func.coalesce(REG.c.nhs_region, LOC.c.nhs_region),
    sa.func.coalesce(REG.c.local_authority, LOC.c.local_authority),
    REG.c.icb_code,
    REG.c.sub_icb_code,
    REG.c.overall_rating,
    REG.c.brand_name,
    REG.c.brand_id,
    LOC.c.provider_type,
    LOC.c.accepting_admissions,
    LOC.c.out_of_hours_admissions,
    LOC.c.source_updated_at,
    LOC.c.notes,
    LOC.c.name,
    LOC.c.cqc_provider_id,
    LOC.c.provider_name,
    LOC.c.address_line1,
    LOC.c.town,
    LOC.c.postcode,
    LOC.c.phone,
    LOC.c.short_stay_weekly_cost,
    LOC.c.source,
    LOC.c.entered_capacity,
    REG.c.registered_beds,
    # JSON lists as their text: few distinct values, each parsed once (``_list``).
    sa.cast(LOC.c.quality_flags, sa.Text),
    *(sa.cast(column, sa.Text) for column in _SET_COLUMNS),
)
_ROWS = (
    sa.select(*_COLUMNS)
    .select_from(LOC.outerjoin(REG, REG.c.cqc_location_id == LOC.c.cqc_location_id))
    .where(LOC.c.active.is_(True))
)
# A searched postcode's exact point: where the registry places a location with that
# postcode (the first by CQC location ID when several).
_POINTS = (
    sa.select(REG.c.postcode, REG.c.latitude, REG.c.longitude)
    .where(REG.c.postcode.is_not(None), REG.c.latitude.is_not(None), REG.c.longitude.is_not(None))
    .order_by(REG.c.cqc_location_id)
)
_LINES = (
    sa.select(
        LINE.c.cqc_location_id,
        LINE.c.vacancy_type,
        LINE.c.weekly_price_from,
        LINE.c.maximum_capacity,
        LINE.c.occupied,
        LINE.c.reserved,
        LINE.c.admittable,
        LINE.c.unavailable,
        sa.cast(LINE.c.unavailable_reasons, sa.Text),
        LINE.c.flexible,
        LINE.c.consistent,
        sa.cast(LINE.c.quality_flags, sa.Text),
    )
    .where(LINE.c.vacancy_type.is_not(None))
    .order_by(LINE.c.cqc_location_id, LINE.c.line_key)
)


@lru_cache(maxsize=65536)
def _list(text: str | None) -> list[Any]:
    """A JSON list column's value (shared: never changed once read)."""
    return list(orjson.loads(text)) if text else []


@lru_cache(maxsize=65536)
def _lower(text: str | None) -> frozenset[str]:
    """A JSON list of strings as a set of its values as compared (``text_key``)."""
    return frozenset(text_key(v) for v in _list(text))


@dataclass(frozen=True, slots=True)
class Line:
    """A vacancy line: what its filters read, and the line as shown."""

    vacancy_type: str
    price: float | None
    admittable: int
    shown: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Entry:
    """What the search keeps of one active location."""

    cqc_location_id: str
    latitude: float | None
    longitude: float | None
    nhs_region: str | None
    local_authority: str | None  # as compared: lower case, spacing made single (``authority_key``)
    icb: str | None
    sub_icb: str | None
    rating: str  # the registry's overall rating, else 'not-rated'
    brand_name: str | None  # as compared (``text_key``)
    brand_id: str | None  # as compared
    provider_type: str
    accepting: bool | None  # None: the source did not say
    out_of_hours: bool | None
    updated: float  # the provider's last update, as a POSIX timestamp
    sets: tuple[frozenset[str], ...]  # in the order of SETS
    notes: str  # lower case, spacing made single (as keywords are)
    short_stay_cost: float | None  # the short-stay weekly cost (GBP), if the provider gave one
    lines: tuple[Line, ...]  # in line-key order
    shown: dict[str, Any]  # the result without distance_km and vacancies


def _entry(row: Sequence[Any], lines: list[Line]) -> Entry:
    cqc_id, lat, lon, region, la, icb, sub_icb, rating, brand, brand_id = row[:10]
    ptype, accepting, ooh, updated, notes, name, provider_id, provider_name = row[10:18]
    line1, town, postcode, phone, short_stay_cost, source, entered, registered = row[18:26]
    flags_text, sets_text = row[26], row[27:]
    if la is not None and not la.strip():
        la = None  # a blank authority (held before blanks were taken as not given) is not known
    # Lines of a type this kind of provider does not offer count nowhere, as unmapped
    # lines (never loaded) do not: no line filter, sort or result shows them.
    lines = [line for line in lines if offers(ptype, line.vacancy_type)]
    flags = set(_list(flags_text))
    if above_registered(entered, registered):
        flags.add(QualityFlag.ENTERED_CAPACITY_ABOVE_REGISTERED.value)
    shown = {
        "cqc_location_id": cqc_id,
        "name": name,
        "provider": {"cqc_provider_id": provider_id, "name": provider_name},
        "provider_type": ptype,
        "nhs_region": region,
        "local_authority": la,
        "icb": icb,
        "sub_icb": sub_icb,
        "address": {"line1": line1, "town": town, "postcode": postcode},
        "phone": phone,
        "distance_km": None,
        "overall_rating": rating,
        "brand": brand,
        "accepting_admissions": accepting,
        "out_of_hours_admissions": ooh,
        "short_stay_services": _list(sets_text[2]),
        "languages": _list(sets_text[0]),
        "notes": notes,
        "funding_sources": _list(sets_text[1]),
        "short_stay_weekly_cost": short_stay_cost,
        "source": source,
        "provider_last_updated": updated.isoformat(),
        "quality_flags": sorted(flags),
    }
    return Entry(
        cqc_id,
        lat,
        lon,
        region,
        authority_key(la) if la else None,
        area_code(icb) if icb else None,
        area_code(sub_icb) if sub_icb else None,
        rating or "not-rated",
        text_key(brand) if brand else None,
        text_key(brand_id) if brand_id else None,
        ptype,
        accepting,
        ooh,
        updated.timestamp(),
        tuple(_lower(text) for text in sets_text),
        " ".join((notes or "").lower().split()),
        short_stay_cost,
        tuple(lines),
        shown,
    )


def _line(row: Sequence[Any]) -> Line:
    _, vacancy_type, price, capacity, occupied, reserved, admittable, unavailable = row[:8]
    reasons, flexible, consistent, flags = row[8:]
    shown = {
        "vacancy_type": vacancy_type,
        "weekly_price_from": price,
        "maximum_capacity": capacity,
        "occupied": occupied,
        "reserved": reserved,
        "admittable": admittable,
        "unavailable": unavailable,
        "vacancies_total": max(capacity - occupied, 0),
        "unavailable_reasons": _list(reasons),
        "flexible": flexible,
        "consistent": consistent,
        "quality_flags": _list(flags),
    }
    return Line(vacancy_type, price, admittable, shown)


def load(session: Session, ids: Iterable[str] | None) -> dict[str, Entry]:
    """The entries of the active locations among ``ids`` (all of them when None)."""
    if ids is None:
        rows = list(session.execute(_ROWS))
        line_rows = list(session.execute(_LINES))
    else:
        rows, line_rows = [], []
        for chunk in chunks(sorted(set(ids))):
            rows += session.execute(_ROWS.where(LOC.c.cqc_location_id.in_(chunk)))
            line_rows += session.execute(_LINES.where(LINE.c.cqc_location_id.in_(chunk)))
    lines: dict[str, list[Line]] = {}
    for row in line_rows:
        lines.setdefault(row[0], []).append(_line(row))
    return {row[0]: _entry(row, lines.get(row[0], [])) for row in rows}


def load_points(session: Session) -> dict[str, tuple[float, float]]:
    """Every postcode the registry knows a point for, with that point."""
    points: dict[str, tuple[float, float]] = {}
    for postcode, lat, lon in session.execute(_POINTS):
        points.setdefault(postcode, (float(lat), float(lon)))
    return points
