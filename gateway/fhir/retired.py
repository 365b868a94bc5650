"""Retired HealthcareServices in search: the vacancy types locations stopped offering.

The current view holds only the lines a location offers now; a vacancy type it dropped
lives on in its versions, readable as an inactive HealthcareService drawn from the version
that dropped it (the first one after the last version offering it). ``active=false`` asks
for them, so they are found here from the version history: one query lists each
(location, vacancy type) some version offered and the current view does not, with the
version that retired it; the other filters are applied to them as a read renders them
(they have no bed counts, so ``admittable`` and ``weekly-price`` never match).

Without ``active`` a search finds the current view's services only, as Organization
search finds current providers only: mCSD consumers learn of retirements from the
change feed, and the history scan is kept to the searches that ask for them.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapters.fhir import systems as S
from adapters.fhir.outbound import render
from gateway.fhir import params as P
from gateway.fhir.criteria import (
    LINE,
    LOC,
    SERVICE_ID,
    VER,
    Candidate,
    Criteria,
    _booleans,
    _codes,
    _distance,
    _range_sql,
    _references,
    _stamp,
    _within,
)
from gateway.model.vocab import ShortStayService, VacancyType
from gateway.places import bounding_box
from gateway.search.report_groups import COUNTED_LINES
from gateway.store.fhir import offered_versions

# The HealthcareService search parameters applied to retired services here (in SQL's scope
# of locations, then ``_matcher``): one declared in ``params`` but missing here would be
# ignored for them, finding retired services it should exclude (a test holds the two equal).
FILTERS = frozenset(
    {
        "_id",
        "_lastUpdated",
        "active",
        "admittable",
        "characteristic",
        "location",
        "near",
        "organization",
        "service-category",
        "service-type",
        "weekly-price",
    }
)


def wanted(criteria: Criteria) -> bool:
    """Does the search ask for retired services (``active`` given, false among what every
    ``active`` parameter allows)?"""
    if not criteria.values.get("active"):
        return False
    allowed = {True, False}
    for _, values in criteria.each("active"):
        allowed &= set(_booleans("active", values))
    return False in allowed


def _location_scope(criteria: Criteria) -> list[sa.ColumnElement[bool]]:
    """Conditions on a version's location that the filters imply, so the history scanned
    is only that of the locations that may match."""
    conditions: list[sa.ColumnElement[bool]] = []
    for _, values in criteria.each("location"):
        conditions.append(VER.c.cqc_location_id.in_(_references("location", values, "Location")))
    for _, values in criteria.each("_id"):
        pairs = [m.groups() for v in values if (m := SERVICE_ID.match(v))]
        conditions.append(VER.c.cqc_location_id.in_([location_id for location_id, _ in pairs]))
    if criteria.near is not None:
        south, north, west, east = bounding_box(
            criteria.near.latitude, criteria.near.longitude, criteria.near.radius_km
        )
        conditions.append(
            VER.c.cqc_location_id.in_(
                sa.select(LOC.c.cqc_location_id).where(
                    LOC.c.latitude.between(south, north), LOC.c.longitude.between(west, east)
                )
            )
        )
    return conditions


def _retirements(session: Session, criteria: Criteria) -> sa.Select[Any]:
    """Every vacancy type a location stopped offering and offers no more (within the
    filters' locations), offering judged by the provider-type rule (``offered_versions`` in
    its versions, ``COUNTED_LINES`` now): location, vacancy type, the version that retired
    it (the first after the last one offering it) with when it was recorded, the provider
    and short-stay services it names, and the location's position now."""
    offered = offered_versions(session, *_location_scope(criteria))
    last = (
        sa.select(
            offered.c.cqc_location_id,
            offered.c.vacancy_type,
            sa.func.max(offered.c.version_id).label("last_offered"),
        )
        .where(offered.c.vacancy_type.is_not(None), offered.c.vacancy_type != "")
        .group_by(offered.c.cqc_location_id, offered.c.vacancy_type)
        .subquery("last")
    )
    later = VER.alias("later")
    # Offered now as the current view's search finds it: a line its kind of provider offers.
    offered_now = sa.exists().where(
        LINE.c.cqc_location_id == last.c.cqc_location_id,
        LINE.c.vacancy_type == last.c.vacancy_type,
        LOC.c.cqc_location_id == LINE.c.cqc_location_id,
        COUNTED_LINES,
    )
    retired = (
        sa.select(
            last.c.cqc_location_id,
            last.c.vacancy_type,
            sa.select(sa.func.min(later.c.version_id))
            .where(
                later.c.cqc_location_id == last.c.cqc_location_id, later.c.version_id > last.c.last_offered
            )
            .scalar_subquery()
            .label("version_id"),
        )
        .where(~offered_now)
        .subquery("retired")
    )
    by = VER.alias("retired_by")
    # When it was retired, by the same comparison the current view's search makes in SQL.
    updated = [
        sa.or_(*[_range_sql(by.c.recorded_at, P.parse_date("_lastUpdated", v)) for v in values])
        for _, values in criteria.each("_lastUpdated")
    ]
    return (
        sa.select(
            retired.c.cqc_location_id,
            retired.c.vacancy_type,
            retired.c.version_id,
            by.c.recorded_at,
            by.c.cqc_provider_id,
            by.c.record["short_stay_services"].label("short_stay_services"),
            LOC.c.latitude,
            LOC.c.longitude,
        )
        .select_from(
            retired.join(by, by.c.version_id == retired.c.version_id).outerjoin(
                LOC, LOC.c.cqc_location_id == retired.c.cqc_location_id
            )
        )
        .where(*updated)
    )


def service_candidates(session: Session, criteria: Criteria) -> list[Candidate]:
    """The retired services that match every filter, each at the version a read gives."""
    if any(criteria.each("admittable")) or any(criteria.each("weekly-price")):
        return []  # no bed counts: nothing to compare
    matches = _matcher(criteria)
    out = []
    for row in session.execute(_retirements(session, criteria)):
        distance = _distance(criteria.near, row.latitude, row.longitude)
        if not _within(criteria.near, distance):
            continue
        candidate = Candidate(
            render.service_id(row.cqc_location_id, row.vacancy_type),
            row.version_id,
            _stamp(row.recorded_at),
            row.cqc_location_id,
            vacancy_type=row.vacancy_type,
            distance_km=distance,
        )
        record = {"short_stay_services": row.short_stay_services or []}
        if matches(candidate, row.cqc_provider_id, record):
            out.append(candidate)
    return out


def _matcher(criteria: Criteria) -> Any:
    """A test of a retired service (candidate, its provider, the parts of its record the
    filters read) against the filters SQL did not apply (``_lastUpdated`` it did, as for
    the current view's services)."""
    ids = [set(values) for _, values in criteria.each("_id")]
    locations = [set(_references("location", v, "Location")) for _, v in criteria.each("location")]
    providers = [
        set(_references("organization", v, "Organization")) for _, v in criteria.each("organization")
    ]
    types = [
        set(_codes("service-type", v, S.VACANCY_TYPE, [t.value for t in VacancyType]))
        for _, v in criteria.each("service-type")
    ]
    categories = [
        set(_codes("service-category", v, S.SERVICE_CATEGORY, [c.value for c in S.ServiceCategory]))
        for _, v in criteria.each("service-category")
    ]
    characteristics = [
        set(_codes("characteristic", v, S.SHORT_STAY_SERVICE, [s.value for s in ShortStayService]))
        for _, v in criteria.each("characteristic")
    ]

    def matches(candidate: Candidate, provider_id: str | None, record: dict[str, Any]) -> bool:
        vacancy_type = candidate.vacancy_type or ""
        return (
            all(candidate.id in wanted for wanted in ids)
            and all(candidate.cqc_location_id in wanted for wanted in locations)
            and all(provider_id in wanted for wanted in providers)
            and all(vacancy_type in wanted for wanted in types)
            and all(
                {c.value for c in render.service_categories(record, vacancy_type)} & wanted
                for wanted in categories
            )
            and all(set(record["short_stay_services"]) & wanted for wanted in characteristics)
        )

    return matches
