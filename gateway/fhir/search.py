"""FHIR search over the national view: Location, HealthcareService, Organization.

A search finds its candidates with one SQL query over the current view (area, ids,
statuses, ranges, a bounding box for ``near``), applies the exact great-circle distance
and list-valued filters in Python, sorts, and pages with a keyset cursor: a ``next`` link
carries the sort key of the last entry it showed, so it keeps working (no entry shown
twice, none skipped) while the data changes between pages. Only the page is rendered.

This module runs a search (sorting, paging, includes and the Bundle); the parsing of a
request and each type's query are in ``gateway.fhir.criteria``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapters.fhir.outbound import render
from adapters.fhir.outbound.render import LocationSnapshot
from gateway.fhir import params as P
from gateway.fhir import retired
from gateway.fhir.bundles import bundle, decode_cursor, encode_cursor, entry, operation_outcome, page_url
from gateway.fhir.criteria import (
    LOC,
    PLANS,
    SERVICE_ID,
    Candidate,
    Criteria,
    SearchRequest,
    all_candidates,
    parse,
)
from gateway.store import fhir as store
from gateway.store.fhir import OrganizationVersion

# --- sorting and paging -------------------------------------------------------------------


def _pages_in_sql(resource_type: str, sort: str, criteria: Criteria) -> bool:
    """Can SQL count and page this search? Only when every filter is in its query: the
    exact ``near`` distance is applied in Python, after SQL's bounding box, so a near
    search counted or limited in SQL would count and fill pages with rows beyond the radius;
    retired services (``active=false``) come from the version history, not the plan's query."""
    return (
        sort == "_id"
        and resource_type in PLANS
        and criteria.near is None
        and not (resource_type == "HealthcareService" and retired.wanted(criteria))
    )


def _sql_page(
    session: Session, resource_type: str, criteria: Criteria, after: str | None, count: int, with_total: bool
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


def _sort_key(
    resource_type: str, sort: str | None, criteria: Criteria
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
    criteria, result = parse(request)
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
    after = _cursor_after(result["_cursor"], sort) if "_cursor" in result else None
    if _pages_in_sql(request.resource_type, sort, criteria):
        page, total, more = _sql_page(
            session, request.resource_type, criteria, after[0] if after else None, count, total_mode != "none"
        )
    else:
        found = all_candidates(session, request.resource_type, criteria)
        if request.resource_type == "HealthcareService" and retired.wanted(criteria):
            found.extend(retired.service_candidates(session, criteria))
        candidates = sorted(found, key=key)
        candidates_after = [c for c in candidates if key(c) > after] if after else candidates
        page, total, more = candidates_after[:count], len(candidates), len(candidates_after) > count

    # The parameters used, not those a lenient search ignored: R4's self link reports what
    # the search did, and a next link must not replay what a client without Prefer is refused.
    next_items = [(k, v) for k, v in request.used if k != "_cursor"]
    links = [("self", page_url(request.base, request.resource_type, request.used))]
    if more and page:
        cursor = encode_cursor({"sort": sort, "after": key(page[-1])})
        links.append(
            ("next", page_url(request.base, request.resource_type, [*next_items, ("_cursor", cursor)]))
        )
    entries = _render_page(session, request, page, includes, revincludes)
    if request.ignored:
        outcome = operation_outcome(200, "; ".join(request.ignored), severity="warning", code="not-supported")
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    return bundle("searchset", entries, links, total=None if total_mode == "none" else total)


def _cursor_after(text: str, sort: str) -> list[Any]:
    """The sort key a ``next`` link's cursor resumes after. The cursor names the ``_sort``
    it was made for: keys of different sorts do not compare (a cursor kept while ``_sort``
    changed would otherwise fail the search). Links made before cursors named their sort
    are still followed when their key has the sort's shape."""
    cursor = decode_cursor(text)
    after = cursor.get("after")
    if cursor.get("sort", sort) != sort:
        raise P.bad("_cursor", f"this cursor pages another _sort than {sort!r}; follow the Bundle's links")
    name = sort.lstrip("-")
    if name == "_id":
        shape: tuple[type | tuple[type, ...], ...] = (str,)
    elif name == "name":
        shape = (str, str)
    else:
        shape = (int, (int, float), str)
    if (
        not isinstance(after, list)
        or len(after) != len(shape)
        or not all(
            isinstance(part, kind) and not isinstance(part, bool)
            for part, kind in zip(after, shape, strict=True)
        )
    ):
        raise P.bad("_cursor", "not a paging cursor this gateway made; follow the Bundle's links")
    return after


def _split_set(value: str | None) -> set[str]:
    """The ``_include`` (``_revinclude``) values, each as ``Type:parameter``: a third part
    naming the parameter's own target type (``Location:organization:Organization``) says
    nothing more; any other is left whole, to be refused as unsupported."""
    return {name for part in (value or "").split(",") if (name := _include_name(part))}


def _include_name(part: str) -> str:
    """One ``_include`` (``_revinclude``) value as ``Type:parameter`` (see ``_split_set``)."""
    source, _, target = part.partition(":")
    name, _, target_type = target.partition(":")
    if target_type and target_type == P.REFERENCE_TARGETS.get(name):
        return f"{source}:{name}"
    return part


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
        request.used = _without_values(request.used, parameter, unknown)
        return
    raise P.bad(parameter, problem)


def _without_values(items: list[tuple[str, str]], parameter: str, unknown: set[str]) -> list[tuple[str, str]]:
    """``items`` without the ``unknown`` values of ``parameter`` (an ``_include`` or
    ``_revinclude``), and without an item of it left with no value."""
    out = []
    for key, value in items:
        if key == parameter:
            value = ",".join(p for p in value.split(",") if p and _include_name(p) not in unknown)
            if not value:
                continue
        out.append((key, value))
    return out


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
        versions = [
            (c.id, c.organization or OrganizationVersion(c.version_id, c.version_id, True)) for c in page
        ]
        for resource in organization_resources(session, versions):
            add(resource, "match")

    if "Location:organization" in includes or "HealthcareService:organization" in includes:
        for resource in organizations(session, {s.provider_id for s in matched if s.provider_id}):
            add(resource, "include")
    if "HealthcareService:location" in includes:
        # The Location as it is now: a retired service is drawn from an older version.
        current = store.current_version_ids(session, {s.cqc_location_id for s in matched})
        stale = sorted(set(current.values()) - {s.version_id for s in matched})
        by_version = {s.version_id: s for s in [*matched, *store.versions_by_id(session, stale)]}
        for snapshot in matched:
            location = by_version.get(current.get(snapshot.cqc_location_id, -1))
            if location is not None:
                add(render.render_location(location), "include")
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
    """The current Organization of each provider the current view names (drawn from the
    newest version naming it); retired providers are left out."""
    versions = store.named_provider_versions(session, provider_ids)
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


def organization_resources(
    session: Session, versions: list[tuple[str, OrganizationVersion]]
) -> list[dict[str, Any]]:
    """The Organization resources of the given (provider, version) pairs, in their order:
    an active one drawn from the version naming the provider, a retired one (inactive) from
    the version that retired it, with the provider as the last version naming it recorded it."""
    snapshots = {
        s.version_id: s
        for s in store.versions_by_id(
            session, sorted({v.version_id for _, v in versions} | {v.named_by for _, v in versions})
        )
    }
    names = store.provider_names(session, [provider_id for provider_id, _ in versions])
    out = []
    for provider_id, version in versions:
        snapshot = snapshots[version.version_id]
        if version.active:
            resource = render.render_organization(snapshot, names.get(provider_id))
        else:
            provider = snapshots[version.named_by].record.get("provider") or {}
            resource = render.render_retired_organization(snapshot, provider, names.get(provider_id))
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
