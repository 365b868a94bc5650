"""FHIR search over the national view: Location, HealthcareService, Organization.

A search finds its candidates with one SQL query over the current view (area, ids,
statuses, ranges, a bounding box for ``near``), applies the exact great-circle distance
and list-valued filters in Python, sorts, and pages with a keyset cursor: a ``next`` link
carries the sort key of the last entry it showed, so it keeps working (no entry shown
twice, none skipped) while the data changes between pages. Only the page is rendered.
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
from adapters.fhir.outbound.render import LocationSnapshot
from gateway.fhir import params as P
from gateway.fhir.bundles import bundle, decode_cursor, encode_cursor, entry, operation_outcome, page_url
from gateway.model.vocab import COMMUNITY_REHAB_VACANCY_TYPES, ShortStayService, VacancyType
from gateway.places import bounding_box, haversine_km
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
    ignored: list[str] = field(default_factory=list)


@dataclass
class _Criteria:
    """A search's parsed parameters: name -> list (AND) of value lists (OR), with modifier."""

    values: dict[str, list[tuple[str, list[str]]]] = field(default_factory=dict)
    near: P.Near | None = None

    def each(self, name: str) -> Iterable[tuple[str, list[str]]]:
        return self.values.get(name, [])


def _parse(request: SearchRequest) -> tuple[_Criteria, dict[str, str]]:
    declared = P.SEARCH_PARAMETERS[request.resource_type]
    criteria, result = _Criteria(), dict[str, str]()
    for key, value in request.items:
        name, _, modifier = key.partition(":")
        if name in P.RESULT_PARAMETERS and not modifier:
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
            or (param.type is P.ParamType.REFERENCE and modifier in ("Location", "Organization"))
        ):
            problem = f"modifier {modifier!r} is not supported on {name}"
        if problem is not None:
            if request.lenient:
                request.ignored.append(problem)
                continue
            raise P.bad(key, problem)
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


def _string_sql(column: Any, modifier: str, values: list[str]) -> sa.ColumnElement[bool]:
    if modifier == "exact":
        return column.in_(values)
    lowered = sa.func.lower(column)
    patterns = [P.like_prefix(v) for v in values]
    if modifier == "contains":
        patterns = ["%" + p for p in patterns]
    return sa.or_(*[lowered.like(p, escape="\\") for p in patterns])


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


def _apply_common(query: sa.Select[Any], criteria: _Criteria, id_column: Any | None) -> sa.Select[Any]:
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


def _location_plan(criteria: _Criteria) -> _Plan:
    query: sa.Select[Any] = sa.select(
        LOC.c.cqc_location_id, LOC.c.version_id, VER.c.recorded_at, LOC.c.latitude, LOC.c.longitude
    ).select_from(
        LOC.join(VER, VER.c.version_id == LOC.c.version_id).outerjoin(
            REG, REG.c.cqc_location_id == LOC.c.cqc_location_id
        )
    )
    query = _apply_near(_apply_common(query, criteria, LOC.c.cqc_location_id), criteria.near)
    for modifier, values in criteria.each("name"):
        query = query.where(_string_sql(LOC.c.name, modifier, values))
    for modifier, values in criteria.each("address-city"):
        query = query.where(_string_sql(LOC.c.town, modifier, values))
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


def _service_plan(criteria: _Criteria) -> _Plan:
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
        .where(LINE.c.vacancy_type.is_not(None))
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
        flags = _codes("active", values, "", ("true", "false"))
        query = query.where(LOC.c.active.in_([f == "true" for f in flags]))
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


def _organization_candidates(session: Session, criteria: _Criteria) -> list[Candidate]:
    newest = (
        sa.select(sa.func.max(LOC.c.version_id))
        .where(LOC.c.cqc_provider_id.is_not(None))
        .group_by(LOC.c.cqc_provider_id)
    )
    query: sa.Select[Any] = sa.select(
        LOC.c.cqc_provider_id, LOC.c.version_id, LOC.c.provider_name, LOC.c.cqc_location_id
    ).where(LOC.c.version_id.in_(newest))
    for _, values in criteria.each("_id"):
        query = query.where(LOC.c.cqc_provider_id.in_(values))
    for _, values in criteria.each("identifier"):
        provider_ids = _identifiers(values, S.CQC_PROVIDER_ID)
        if provider_ids is not None:  # None: any CQC provider ID, which every Organization has
            query = query.where(LOC.c.cqc_provider_id.in_(provider_ids))
    rows = session.execute(query).all()
    names = store.provider_names(session, [row[0] for row in rows])
    name_filters = list(criteria.each("name"))
    out = []
    for provider_id, version_id, tracker_name, cqc_id in rows:
        name = names.get(provider_id) or tracker_name or ""
        if not all(_string_matches(name, modifier, values) for modifier, values in name_filters):
            continue
        out.append(Candidate(provider_id, version_id, 0.0, cqc_id, name=name))
    return out


def _string_matches(text: str, modifier: str, values: list[str]) -> bool:
    folded = text.casefold()
    if modifier == "exact":
        return text in values
    if modifier == "contains":
        return any(v.casefold() in folded for v in values)
    return any(folded.startswith(v.casefold()) for v in values)


PLANS: dict[str, Callable[[_Criteria], _Plan]] = {
    "Location": _location_plan,
    "HealthcareService": _service_plan,
}


def _candidates(session: Session, resource_type: str, criteria: _Criteria) -> list[Candidate]:
    """Every match (for sorts SQL cannot page: near, computed keys)."""
    if resource_type == "Organization":
        return _organization_candidates(session, criteria)
    plan = PLANS[resource_type](criteria)
    found = (plan.candidate(row) for row in session.execute(plan.query))
    return [c for c in found if c is not None]


def _pages_in_sql(resource_type: str, sort: str, criteria: _Criteria) -> bool:
    """Can SQL count and page this search? Only when every filter is in its query: the
    exact ``near`` distance is applied in Python, after SQL's bounding box, so a near
    search counted or limited in SQL would count and fill pages with rows beyond the radius."""
    return sort == "_id" and resource_type in PLANS and criteria.near is None


def _sql_page(
    session: Session, resource_type: str, criteria: _Criteria, after: str | None, count: int, with_total: bool
) -> tuple[list[Candidate], int | None, bool]:
    """A page in ``_id`` order, paged in SQL: (page, total, more after it). Only for
    searches whose every filter is in SQL (see ``_pages_in_sql``)."""
    plan = PLANS[resource_type](criteria)
    total = None
    if with_total:
        total = int(session.scalar(sa.select(sa.func.count()).select_from(plan.query.subquery())) or 0)
    query = plan.query
    if after is not None:
        key: tuple[str, ...] = (after,)
        if len(plan.id_columns) == 2:
            found = SERVICE_ID.match(after)
            key = found.groups() if found else (after, "")
        query = query.where(sa.tuple_(*plan.id_columns) > sa.tuple_(*key))
    rows = session.execute(query.order_by(*plan.id_columns).limit(count + 1)).all()
    page = [c for c in (plan.candidate(row) for row in rows) if c is not None]
    return page[:count], total, len(page) > count


# --- sorting and paging -------------------------------------------------------------------


def _sort_key(
    resource_type: str, sort: str | None, criteria: _Criteria
) -> tuple[str, Callable[[Candidate], list[Any]]]:
    if sort is None:
        sort = "near" if criteria.near is not None and resource_type != "Organization" else "_id"
    descending = sort.startswith("-")
    name = sort.lstrip("-")
    if "," in sort:
        raise P.bad("_sort", "one sort key at a time")
    if name not in P.SORTS[resource_type]:
        raise P.bad(
            "_sort",
            f"{sort!r} is not supported for {resource_type}; use {', '.join(sorted(P.SORTS[resource_type]))}",
        )
    if name == "near" and criteria.near is None:
        raise P.bad("_sort", "_sort=near needs a near parameter")
    if descending and name in ("_id", "name", "near"):
        raise P.bad("_sort", f"{name} sorts ascending only")
    sign = -1.0 if descending else 1.0

    def number(value: float | int | None) -> list[Any]:
        return [1, 0.0] if value is None else [0, sign * float(value)]

    keys: dict[str, Callable[[Candidate], list[Any]]] = {
        "near": lambda c: [*number(c.distance_km), c.id],
        "_lastUpdated": lambda c: [*number(c.recorded_at), c.id],
        "admittable": lambda c: [*number(c.admittable), c.id],
        "weekly-price": lambda c: [*number(c.price), c.id],
        "name": lambda c: [(c.name or "").casefold(), c.id],
    }
    return sort, keys.get(name, lambda c: [c.id])


def search(session: Session, request: SearchRequest) -> dict[str, Any]:
    """Run one search; the answer is a searchset Bundle with links and includes."""
    criteria, result = _parse(request)
    count = P.parse_count(result.get("_count"))
    total_mode = result.get("_total", result.get("_totalMethod", "accurate"))
    if total_mode == "count":
        total_mode = "accurate"
    if total_mode not in ("none", "estimate", "accurate"):
        raise P.bad("_total", f"{total_mode!r}: use none, estimate or accurate")
    includes = _split_set(result.get("_include"))
    revincludes = _split_set(result.get("_revinclude"))
    _check_includes("_include", includes, P.INCLUDES[request.resource_type], request)
    _check_includes("_revinclude", revincludes, P.REVINCLUDES[request.resource_type], request)
    sort, key = _sort_key(request.resource_type, result.get("_sort"), criteria)
    after = None
    if "_cursor" in result:
        after = decode_cursor(result["_cursor"]).get("after")
        if not isinstance(after, list) or not after or not isinstance(after[-1], str):
            raise P.bad("_cursor", "not a paging cursor this gateway made; follow the Bundle's links")
    if _pages_in_sql(request.resource_type, sort, criteria):
        page, total, more = _sql_page(
            session, request.resource_type, criteria, after[0] if after else None, count, total_mode != "none"
        )
    else:
        candidates = sorted(_candidates(session, request.resource_type, criteria), key=key)
        candidates_after = [c for c in candidates if key(c) > after] if after else candidates
        page, total, more = candidates_after[:count], len(candidates), len(candidates_after) > count

    self_items = [(k, v) for k, v in request.items if k != "_cursor"]
    links = [("self", page_url(request.base, request.resource_type, request.items))]
    if more and page:
        cursor = encode_cursor({"after": key(page[-1])})
        links.append(
            ("next", page_url(request.base, request.resource_type, [*self_items, ("_cursor", cursor)]))
        )
    entries = _render_page(session, request, page, includes, revincludes)
    if request.ignored:
        outcome = operation_outcome(200, "; ".join(request.ignored), severity="warning", code="not-supported")
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    return bundle("searchset", entries, links, total=None if total_mode == "none" else total)


def _split_set(value: str | None) -> set[str]:
    return {part for part in (value or "").split(",") if part}


def _check_includes(parameter: str, wanted: set[str], allowed: set[str], request: SearchRequest) -> None:
    unknown = wanted - allowed
    if not unknown:
        return
    problem = f"{', '.join(sorted(unknown))} not supported on {request.resource_type}; supported: " + (
        ", ".join(sorted(allowed)) or "none"
    )
    if request.lenient:
        request.ignored.append(f"{parameter}: {problem}")
        wanted -= unknown
        return
    raise P.bad(parameter, problem)


# --- rendering a page with its includes -------------------------------------------------


def _render_page(
    session: Session, request: SearchRequest, page: list[Candidate], includes: set[str], revincludes: set[str]
) -> list[dict[str, Any]]:
    base = request.base
    snapshots = {s.version_id: s for s in store.versions_by_id(session, [c.version_id for c in page])}
    entries: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()

    def add(resource: dict[str, Any] | None, mode: str, distance: float | None = None) -> None:
        if resource is None:
            return
        ident = (resource["resourceType"], resource["id"])
        if ident in seen:
            return
        seen.add(ident)
        entries.append(entry(base, resource, mode, distance))

    matched: list[LocationSnapshot] = []
    for c in page:
        snapshot = snapshots.get(c.version_id)
        if snapshot is None:
            continue
        matched.append(snapshot)
        if request.resource_type == "Location":
            add(render.render_location(snapshot), "match", c.distance_km)
        elif request.resource_type == "HealthcareService":
            line = next(
                (
                    ln
                    for ln in snapshot.record.get("vacancies", ())
                    if ln.get("vacancy_type") == c.vacancy_type
                ),
                None,
            )
            add(render.render_service(snapshot, line, c.vacancy_type or ""), "match", c.distance_km)
    if request.resource_type == "Organization":
        names = store.provider_names(session, [c.id for c in page])
        for c in page:
            if c.version_id in snapshots:
                add(render.render_organization(snapshots[c.version_id], names.get(c.id)), "match")

    if "Location:organization" in includes or "HealthcareService:organization" in includes:
        for resource in organizations(session, {s.provider_id for s in matched if s.provider_id}):
            add(resource, "include")
    if "HealthcareService:location" in includes:
        for snapshot in matched:
            add(render.render_location(snapshot), "include")
    if "HealthcareService:location" in revincludes:
        for snapshot in matched:
            for resource in render.render_services(snapshot):
                add(resource, "include")
    if revincludes & {"Location:organization", "HealthcareService:organization"}:
        located = _provider_locations(session, [c.id for c in page])
        for snapshot in located:
            if "Location:organization" in revincludes:
                add(render.render_location(snapshot), "include")
            if "HealthcareService:organization" in revincludes:
                for resource in render.render_services(snapshot):
                    add(resource, "include")
    return entries


def organizations(session: Session, provider_ids: Iterable[str]) -> list[dict[str, Any]]:
    """The current Organization of each provider (as its newest current location names it)."""
    versions = store.current_provider_versions(session, provider_ids)
    names = store.provider_names(session, versions)
    snapshots = store.versions_by_id(session, sorted(versions.values()))
    out = []
    for snapshot in snapshots:
        provider_id = snapshot.provider_id
        if provider_id and versions.get(provider_id) == snapshot.version_id:
            resource = render.render_organization(snapshot, names.get(provider_id))
            if resource is not None:
                out.append(resource)
    return out


def _provider_locations(session: Session, provider_ids: list[str]) -> list[LocationSnapshot]:
    if not provider_ids:
        return []
    version_ids = session.scalars(
        sa.select(LOC.c.version_id)
        .where(LOC.c.cqc_provider_id.in_(provider_ids))
        .order_by(LOC.c.cqc_location_id)
    ).all()
    return store.versions_by_id(session, version_ids)
