"""Turning a FHIR search request into criteria, and criteria into candidates per type.

``parse`` splits a request's query string into its search parameters (``Criteria``) and
its result parameters (``_count``, ``_sort``, ``_include``...). Each type's plan turns the
criteria into one SQL query over the current view (area, ids, statuses, ranges, a bounding
box for ``near``) and a way to make a ``Candidate`` of each row, applying the exact
great-circle distance; Organizations, drawn from the versions naming a provider, are found
by ``_organization_candidates``. Sorting, paging and rendering are in ``gateway.fhir.search``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapters.fhir import systems as S
from adapters.fhir.outbound import render
from gateway.fhir import params as P
from gateway.folding import fold
from gateway.model.vocab import COMMUNITY_REHAB_VACANCY_TYPES, ShortStayService, VacancyType
from gateway.places import bounding_box, haversine_km
from gateway.search.report_groups import COUNTED_LINES
from gateway.store import fhir as store
from gateway.store.tables import Location, LocationVersion, RegistryLocation, VacancyLine, table

LOC, VER, REG, LINE = table(Location), table(LocationVersion), table(RegistryLocation), table(VacancyLine)
REHAB = [v.value for v in COMMUNITY_REHAB_VACANCY_TYPES]
SERVICE_ID = re.compile(r"^(1-[0-9]{1,12})-([a-z-]+)$")


@dataclass(slots=True)
class Candidate:
    """One match before rendering, with what it sorts by."""

    id: str
    version_id: int
    recorded_at: float
    cqc_location_id: str
    vacancy_type: str | None = None
    distance_km: float | None = None
    admittable: int | None = None
    price: float | None = None
    name: str | None = None
    organization: store.OrganizationVersion | None = None  # a retired Organization's version


@dataclass(frozen=True)
class _Plan:
    """A search's SQL (every filter but the exact distance), the columns its ``_id``
    order is, and how a row becomes a candidate (None: beyond the ``near`` radius)."""

    query: sa.Select[Any]
    id_columns: tuple[Any, ...]
    candidate: Callable[[Sequence[Any]], Candidate | None]


@dataclass
class SearchRequest:
    resource_type: str
    items: list[tuple[str, str]]  # the query string's (key, value) pairs, in order
    base: str  # the FHIR base URL
    lenient: bool = False
    ignored: list[str] = field(default_factory=list)  # why each ignored item was (lenient)
    # The items the search uses (``parse`` and the include checks leave out those ignored):
    # what its links carry, as R4 asks of the self link, so a ``next`` link followed
    # without ``Prefer: handling=lenient`` is not refused for what page 1 ignored.
    used: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Criteria:
    """A search's parsed parameters: name -> list (AND) of value lists (OR), with modifier."""

    values: dict[str, list[tuple[str, list[str]]]] = field(default_factory=dict)
    near: P.Near | None = None

    def each(self, name: str) -> Iterable[tuple[str, list[str]]]:
        return self.values.get(name, [])


def parse(request: SearchRequest) -> tuple[Criteria, dict[str, str]]:
    """The request's search parameters as criteria, and its result parameters (``_count``,
    ``_sort``...; repeated ``_include`` and ``_revinclude`` joined with commas). An unknown
    parameter or modifier is refused, or noted in ``request.ignored`` when lenient; the
    others are kept in ``request.used``."""
    declared = P.SEARCH_PARAMETERS[request.resource_type]
    criteria, result = Criteria(), dict[str, str]()
    request.used = []
    for key, value in request.items:
        name, _, modifier = key.partition(":")
        if name in P.RESULT_PARAMETERS and not modifier:
            request.used.append((key, value))
            if name in ("_include", "_revinclude"):
                result[name] = ",".join(filter(None, (result.get(name), value)))
            else:
                result[name] = value
            continue
        param = declared.get(name)
        problem = None
        if param is None:
            problem = (
                f"unknown search parameter {key!r} for {request.resource_type}; supported: "
                f"{', '.join(sorted(declared))} and {', '.join(sorted(P.RESULT_PARAMETERS))}"
            )
        elif modifier and not (
            (param.type is P.ParamType.STRING and modifier in P.STRING_MODIFIERS)
            or (param.type is P.ParamType.REFERENCE and modifier == P.REFERENCE_TARGETS.get(name))
        ):
            problem = f"modifier {modifier!r} is not supported on {name}"
        if problem is not None:
            if request.lenient:
                request.ignored.append(problem)
                continue
            raise P.bad(key, problem)
        request.used.append((key, value))
        if name == "near":
            criteria.near = P.parse_near(key, value)
            continue
        values = [v for v in value.split(",") if v != ""]
        if not values:
            raise P.bad(key, "empty value")
        criteria.values.setdefault(name, []).append((modifier, values))
    return criteria, result


# --- SQL conditions shared by the types ---------------------------------------------------


def _range_sql(column: Any, r: P.Range) -> sa.ColumnElement[bool]:
    match r.prefix:
        case "eq":
            return sa.and_(column >= r.low, column < r.high)
        case "ne":
            return sa.or_(column < r.low, column >= r.high)
        case "gt" | "sa":
            return column >= r.high
        case "ge":
            return column >= r.low
        case "lt" | "eb":
            return column < r.low
        case _:
            return column < r.high


def _string_sql(
    column: Any, modifier: str, values: list[str], folded: Any | None = None
) -> sa.ColumnElement[bool]:
    """A string parameter's condition on ``column``: ``exact`` as written, otherwise
    ignoring case and accents, on ``folded`` (the column as ``fold`` stores it) when there
    is one, else on the column in lower case (text with no accents: a postcode)."""
    if modifier == "exact":
        return column.in_(values)
    compared = folded if folded is not None else sa.func.lower(column)
    patterns = [P.like_prefix(v) for v in values]
    if modifier == "contains":
        patterns = ["%" + p for p in patterns]
    return sa.or_(*[compared.like(p, escape="\\") for p in patterns])


def _codes(parameter: str, values: list[str], system: str, allowed: Iterable[str]) -> list[str]:
    """Codes of tokens in ``system`` (or with no system given), ``system|`` standing for
    every code allowed; unknown codes refused."""
    out: list[str] = []
    known = list(allowed)
    for value in values:
        token = P.parse_token(parameter, value)
        if token.system not in (None, system):
            continue
        if token.code is None:
            out.extend(known)
        elif token.code in known:
            out.append(token.code)
        else:
            raise P.bad(parameter, f"unknown code {token.code!r}; allowed: {', '.join(sorted(known))}")
    return out


def _booleans(parameter: str, values: list[str]) -> list[bool]:
    """The values of a boolean token parameter (``true``, ``false``, ``|true``...)."""
    return [code == "true" for code in _codes(parameter, values, "", ("true", "false"))]


def _identifiers(values: list[str], system: str) -> list[str] | None:
    """The identifier values tokens ask for in ``system`` (or with no system given); None
    when one asks for any value in it (``system|``): every resource has one."""
    out: list[str] = []
    for value in values:
        token = P.parse_token("identifier", value)
        if token.system not in (None, system):
            continue
        if token.code is None:
            return None
        out.append(token.code)
    return out


def _apply_common(query: sa.Select[Any], criteria: Criteria, id_column: Any | None) -> sa.Select[Any]:
    for _, values in criteria.each("_id"):
        if id_column is not None:
            query = query.where(id_column.in_(values))
    for _, values in criteria.each("_lastUpdated"):
        ranges = [P.parse_date("_lastUpdated", v) for v in values]
        query = query.where(sa.or_(*[_range_sql(VER.c.recorded_at, r) for r in ranges]))
    return query


def _apply_near(query: sa.Select[Any], near: P.Near | None) -> sa.Select[Any]:
    if near is None:
        return query
    south, north, west, east = bounding_box(near.latitude, near.longitude, near.radius_km)
    return query.where(LOC.c.latitude.between(south, north), LOC.c.longitude.between(west, east))


def _distance(near: P.Near | None, lat: float | None, lon: float | None) -> float | None:
    if near is None or lat is None or lon is None:
        return None
    return haversine_km(near.latitude, near.longitude, lat, lon)


def _within(near: P.Near | None, distance: float | None) -> bool:
    return near is None or (distance is not None and distance <= near.radius_km)


def _references(parameter: str, values: list[str], resource_type: str) -> list[str]:
    return [P.parse_reference(parameter, v, resource_type) for v in values]


def _stamp(value: Any) -> float:
    return float(value.timestamp())


# --- candidates per type ------------------------------------------------------------------


def _location_identifier_sql(values: list[str]) -> sa.ColumnElement[bool]:
    """Locations with any of the identifiers: a CQC location ID (every location has one)
    or an ODS site code (those the registry knows)."""
    cqc_ids = _identifiers(values, S.CQC_LOCATION_ID)
    ods_codes = _identifiers(values, S.ODS_SITE_CODE)
    return sa.or_(
        sa.true() if cqc_ids is None else LOC.c.cqc_location_id.in_(cqc_ids),
        REG.c.ods_code > "" if ods_codes is None else REG.c.ods_code.in_(ods_codes),  # published if not empty
    )


def _location_plan(criteria: Criteria) -> _Plan:
    query: sa.Select[Any] = sa.select(
        LOC.c.cqc_location_id, LOC.c.version_id, VER.c.recorded_at, LOC.c.latitude, LOC.c.longitude
    ).select_from(
        LOC.join(VER, VER.c.version_id == LOC.c.version_id).outerjoin(
            REG, REG.c.cqc_location_id == LOC.c.cqc_location_id
        )
    )
    query = _apply_near(_apply_common(query, criteria, LOC.c.cqc_location_id), criteria.near)
    for modifier, values in criteria.each("name"):
        query = query.where(_string_sql(LOC.c.name, modifier, values, LOC.c.name_folded))
    for modifier, values in criteria.each("address-city"):
        query = query.where(_string_sql(LOC.c.town, modifier, values, LOC.c.town_folded))
    for modifier, values in criteria.each("address-postalcode"):
        compact = sa.func.replace(LOC.c.postcode, " ", "")
        query = query.where(_string_sql(compact, modifier, [v.replace(" ", "") for v in values]))
    for _, values in criteria.each("identifier"):
        query = query.where(_location_identifier_sql(values))
    for _, values in criteria.each("organization"):
        query = query.where(LOC.c.cqc_provider_id.in_(_references("organization", values, "Organization")))
    for _, values in criteria.each("status"):
        codes = _codes(
            "status", values, "http://hl7.org/fhir/location-status", ("active", "inactive", "suspended")
        )
        query = query.where(LOC.c.active.in_([c == "active" for c in codes if c != "suspended"]))

    def candidate(row: Sequence[Any]) -> Candidate | None:
        cqc_id, version_id, recorded_at, lat, lon = row
        distance = _distance(criteria.near, lat, lon)
        if not _within(criteria.near, distance):
            return None
        return Candidate(cqc_id, version_id, _stamp(recorded_at), cqc_id, distance_km=distance)

    return _Plan(query, (LOC.c.cqc_location_id,), candidate)


def _service_plan(criteria: Criteria) -> _Plan:
    query: sa.Select[Any] = (
        sa.select(
            LINE.c.cqc_location_id,
            LINE.c.vacancy_type,
            LOC.c.version_id,
            VER.c.recorded_at,
            LOC.c.latitude,
            LOC.c.longitude,
            LINE.c.admittable,
            LINE.c.weekly_price_from,
        )
        .select_from(
            LINE.join(LOC, LOC.c.cqc_location_id == LINE.c.cqc_location_id).join(
                VER, VER.c.version_id == LOC.c.version_id
            )
        )
        .where(LINE.c.vacancy_type.is_not(None), COUNTED_LINES)  # as a read serves them
    )
    query = _apply_common(query, criteria, None)  # a service's _id is matched below
    query = _apply_near(query, criteria.near)
    for _, values in criteria.each("_id"):
        pairs = [m.groups() for v in values if (m := SERVICE_ID.match(v))]
        query = query.where(
            sa.or_(
                sa.false(),
                *[sa.and_(LINE.c.cqc_location_id == a, LINE.c.vacancy_type == b) for a, b in pairs],
            )
        )
    for _, values in criteria.each("location"):
        query = query.where(LINE.c.cqc_location_id.in_(_references("location", values, "Location")))
    for _, values in criteria.each("organization"):
        query = query.where(LOC.c.cqc_provider_id.in_(_references("organization", values, "Organization")))
    for _, values in criteria.each("service-type"):
        types = _codes("service-type", values, S.VACANCY_TYPE, [v.value for v in VacancyType])
        query = query.where(LINE.c.vacancy_type.in_(types))
    for _, values in criteria.each("active"):
        query = query.where(LOC.c.active.in_(_booleans("active", values)))
    # Short-stay services are a JSON list of codes on the location; matched on its text.
    services = sa.cast(LOC.c.short_stay_services, sa.Text)
    for _, values in criteria.each("service-category"):
        wanted = _codes("service-category", values, S.SERVICE_CATEGORY, [c.value for c in S.ServiceCategory])
        conditions: list[sa.ColumnElement[bool]] = []
        if S.ServiceCategory.COMMUNITY_REHAB.value in wanted:
            conditions.append(LINE.c.vacancy_type.in_(REHAB))
        if S.ServiceCategory.LONG_TERM.value in wanted:
            conditions.append(LINE.c.vacancy_type.not_in(REHAB))
        if S.ServiceCategory.SHORT_STAY.value in wanted:
            conditions.append(sa.and_(LINE.c.vacancy_type.not_in(REHAB), services.not_in(["[]", ""])))
        query = query.where(sa.or_(sa.false(), *conditions))
    for _, values in criteria.each("characteristic"):
        wanted = _codes("characteristic", values, S.SHORT_STAY_SERVICE, [v.value for v in ShortStayService])
        query = query.where(sa.or_(sa.false(), *[services.like(f'%"{code}"%') for code in wanted]))
    for name, column in (("admittable", LINE.c.admittable), ("weekly-price", LINE.c.weekly_price_from)):
        for _, values in criteria.each(name):
            ranges = [P.parse_number(name, v) for v in values]
            query = query.where(sa.or_(*[_number_sql(column, r) for r in ranges]))

    def candidate(row: Sequence[Any]) -> Candidate | None:
        cqc_id, vacancy_type, version_id, recorded_at, lat, lon, beds, weekly = row
        distance = _distance(criteria.near, lat, lon)
        if not _within(criteria.near, distance):
            return None
        return Candidate(
            render.service_id(cqc_id, vacancy_type),
            version_id,
            _stamp(recorded_at),
            cqc_id,
            vacancy_type=vacancy_type,
            distance_km=distance,
            admittable=beds,
            price=weekly,
        )

    return _Plan(query, (LINE.c.cqc_location_id, LINE.c.vacancy_type), candidate)


def _number_sql(column: Any, r: P.Range) -> sa.ColumnElement[bool]:
    """A number comparison in SQL; eq/ne use the value's implied precision."""
    assert isinstance(r.low, Decimal) and isinstance(r.high, Decimal)
    low, high = float(r.low), float(r.high)
    match r.prefix:
        case "eq":
            return sa.and_(column >= low, column < high)
        case "ne":
            return sa.or_(column < low, column >= high)
        case "gt" | "sa":
            return column > low
        case "ge":
            return column >= low
        case "lt" | "eb":
            return column < low
        case _:
            return column <= low


def _organization_activity(criteria: Criteria) -> set[bool]:
    """Which Organizations ``active`` asks for: current ones (named by a location now)
    when it is not given, as before the parameter was supported."""
    wanted = {True, False}
    for _, values in criteria.each("active"):
        wanted &= set(_booleans("active", values))
    return wanted if criteria.values.get("active") else {True}


def _provider_filters(column: Any, criteria: Criteria) -> list[sa.ColumnElement[bool]]:
    """``_id`` and ``identifier`` as conditions on a provider ID column."""
    conditions = [column.in_(values) for _, values in criteria.each("_id")]
    for _, values in criteria.each("identifier"):
        provider_ids = _identifiers(values, S.CQC_PROVIDER_ID)
        if provider_ids is not None:  # None: any CQC provider ID, which every Organization has
            conditions.append(column.in_(provider_ids))
    return conditions


def _organization_candidates(session: Session, criteria: Criteria) -> list[Candidate]:
    """The Organizations ``active`` asks for, each at the version a read gives: a provider
    the current view names at the newest version naming it; a retired one (ever named,
    named by no location now) at the inactive version its last location made."""
    activity = _organization_activity(criteria)
    out = _named_organizations(session, criteria) if True in activity else []
    if False in activity:
        out.extend(_retired_organizations(session, criteria))
    name_filters = list(criteria.each("name"))
    return [
        c
        for c in out
        if all(_string_matches(c.name or "", modifier, values) for modifier, values in name_filters)
    ]


def _named_organizations(session: Session, criteria: Criteria) -> list[Candidate]:
    """Providers some location names now."""
    named: sa.Select[Any] = sa.select(LOC.c.cqc_provider_id).where(
        LOC.c.cqc_provider_id.is_not(None), *_provider_filters(LOC.c.cqc_provider_id, criteria)
    )
    newest = (
        sa.select(VER.c.cqc_provider_id, sa.func.max(VER.c.version_id).label("version_id"))
        .where(VER.c.cqc_provider_id.in_(named))
        .group_by(VER.c.cqc_provider_id)
        .subquery("newest")
    )
    query = sa.select(
        newest.c.cqc_provider_id,
        newest.c.version_id,
        VER.c.record[("provider", "name")].as_string(),
        VER.c.cqc_location_id,
    ).select_from(newest.join(VER, VER.c.version_id == newest.c.version_id))
    rows = session.execute(query).all()
    names = store.provider_names(session, [row[0] for row in rows])
    return [
        Candidate(provider_id, version_id, 0.0, cqc_id, name=names.get(provider_id) or tracker_name or "")
        for provider_id, version_id, tracker_name, cqc_id in rows
    ]


def _retired_organizations(session: Session, criteria: Criteria) -> list[Candidate]:
    """Providers some location version ever named and no location names now."""
    named_now = sa.exists().where(LOC.c.cqc_provider_id == VER.c.cqc_provider_id)
    ever_named = (
        sa.select(VER.c.cqc_provider_id)
        .where(
            VER.c.cqc_provider_id.is_not(None),
            ~named_now,
            *_provider_filters(VER.c.cqc_provider_id, criteria),
        )
        .distinct()
    )
    versions = store.retired_organization_versions(session, session.scalars(ever_named))
    # Named as a read names them: by the registry, else as the last version naming them did.
    names = store.provider_names(session, versions)
    tracker_names = store.recorded_provider_names(session, [v.named_by for v in versions.values()])
    return [
        Candidate(
            provider_id,
            version.version_id,
            0.0,
            "",
            name=names.get(provider_id) or tracker_names.get(version.named_by) or "",
            organization=version,
        )
        for provider_id, version in versions.items()
    ]


def _string_matches(text: str, modifier: str, values: list[str]) -> bool:
    """``_string_sql`` for a text in hand."""
    if modifier == "exact":
        return text in values
    folded = fold(text)
    if modifier == "contains":
        return any(fold(v) in folded for v in values)
    return any(folded.startswith(fold(v)) for v in values)


PLANS: dict[str, Callable[[Criteria], _Plan]] = {
    "Location": _location_plan,
    "HealthcareService": _service_plan,
}


def all_candidates(session: Session, resource_type: str, criteria: Criteria) -> list[Candidate]:
    """Every match (for sorts SQL cannot page: near, computed keys)."""
    if resource_type == "Organization":
        return _organization_candidates(session, criteria)
    plan = PLANS[resource_type](criteria)
    found = (plan.candidate(row) for row in session.execute(plan.query))
    return [c for c in found if c is not None]
