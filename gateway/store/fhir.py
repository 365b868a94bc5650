"""Queries behind the FHIR API: versions as snapshots, the change feed and its horizon.

A FHIR resource is always drawn from one row of ``location_version`` (the record as
accepted) with the registry's facts about the place; the current view says which version
is current (``location.version_id``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from adapters.fhir.outbound.render import LocationSnapshot, RegistryFacts
from gateway.model.vocab import ProviderType
from gateway.store.db import transaction
from gateway.store.repository import chunks, claim_change_clock, offers_sql
from gateway.store.tables import (
    Location,
    LocationVersion,
    RegistryLocation,
    RegistryProvider,
    table,
)

LOC, VER, REG, PROV = (
    table(Location),
    table(LocationVersion),
    table(RegistryLocation),
    table(RegistryProvider),
)

VERSION_COLUMNS = (VER.c.version_id, VER.c.recorded_at, VER.c.source, VER.c.record, VER.c.cqc_location_id)
REGISTRY_COLUMNS = (
    REG.c.cqc_location_id,
    REG.c.ods_code,
    REG.c.latitude,
    REG.c.longitude,
    REG.c.registered_beds,
    REG.c.overall_rating,
    REG.c.rating_date,
    REG.c.nhs_region,
    REG.c.local_authority,
    REG.c.icb_code,
    REG.c.icb_name,
)


def feed_horizon(factory: sessionmaker[Session]) -> datetime:
    """An instant before which every version is already committed, and after which
    every later version will be recorded: the change feed's exclusive upper bound.

    Taking the change clock waits for writers that hold it, so no version still in
    flight can be stamped earlier than the instant returned.
    """
    with transaction(factory) as session:
        return claim_change_clock(session)


def registry_facts(session: Session, ids: Iterable[str]) -> dict[str, RegistryFacts]:
    """The registry's facts of those of ``ids`` it knows."""
    out: dict[str, RegistryFacts] = {}
    query = sa.select(*REGISTRY_COLUMNS).where(REG.c.cqc_location_id.in_(sa.bindparam("ids", expanding=True)))
    for chunk in chunks(sorted(set(ids))):
        for row in session.execute(query, {"ids": chunk}):
            out[row[0]] = RegistryFacts(*row[1:])
    return out


def current_regions(session: Session, ids: Iterable[str]) -> dict[str, str | None]:
    """Where the national view places each of ``ids`` (its NHS region)."""
    out: dict[str, str | None] = {}
    query = sa.select(LOC.c.cqc_location_id, LOC.c.nhs_region).where(
        LOC.c.cqc_location_id.in_(sa.bindparam("ids", expanding=True))
    )
    for chunk in chunks(sorted(set(ids))):
        out.update({row[0]: row[1] for row in session.execute(query, {"ids": chunk})})
    return out


def snapshots(session: Session, rows: Sequence[Sequence[Any]]) -> list[LocationSnapshot]:
    """Snapshots of version rows (``VERSION_COLUMNS``), enriched from the registry."""
    ids = {row[4] for row in rows}
    facts = registry_facts(session, ids)
    regions = current_regions(session, ids)
    return [
        LocationSnapshot(
            version_id=row[0],
            recorded_at=row[1],
            source=row[2],
            record=row[3],
            registry=facts.get(row[4]),
            nhs_region=regions.get(row[4]),
        )
        for row in rows
    ]


def versions_by_id(session: Session, version_ids: Iterable[int]) -> list[LocationSnapshot]:
    """Snapshots of the given versions, in the order of the ids given."""
    wanted = list(dict.fromkeys(version_ids))
    found: dict[int, Sequence[Any]] = {}
    query = sa.select(*VERSION_COLUMNS).where(VER.c.version_id.in_(sa.bindparam("ids", expanding=True)))
    for chunk in chunks(wanted):
        found.update({row[0]: row for row in session.execute(query, {"ids": chunk})})
    return snapshots(session, [found[v] for v in wanted if v in found])


def current_version_ids(session: Session, ids: Iterable[str]) -> dict[str, int]:
    """The current version of each of ``ids`` the national view holds."""
    out: dict[str, int] = {}
    query = sa.select(LOC.c.cqc_location_id, LOC.c.version_id).where(
        LOC.c.cqc_location_id.in_(sa.bindparam("ids", expanding=True))
    )
    for chunk in chunks(sorted(set(ids))):
        out.update({row[0]: row[1] for row in session.execute(query, {"ids": chunk})})
    return out


def location_versions(session: Session, cqc_location_id: str) -> list[LocationSnapshot]:
    """Every version of one location, oldest first."""
    rows = session.execute(
        sa.select(*VERSION_COLUMNS).where(VER.c.cqc_location_id == cqc_location_id).order_by(VER.c.version_id)
    ).all()
    return snapshots(session, rows)


def previous_records(session: Session, keys: Iterable[tuple[str, int]]) -> dict[int, dict[str, Any]]:
    """For each (location, version id), the record of the version before it (if any),
    keyed by the later version's id: one query for them all."""
    later, earlier = VER.alias("later"), VER.alias("earlier")
    before = (
        sa.select(sa.func.max(earlier.c.version_id))
        .where(
            earlier.c.cqc_location_id == later.c.cqc_location_id, earlier.c.version_id < later.c.version_id
        )
        .scalar_subquery()
    )
    query = (
        sa.select(later.c.version_id, VER.c.record)
        .select_from(later.join(VER, VER.c.version_id == before))
        .where(later.c.version_id.in_(sa.bindparam("ids", expanding=True)))
    )
    out: dict[int, dict[str, Any]] = {}
    for chunk in chunks(sorted({version_id for _, version_id in keys})):
        out.update({row[0]: row[1] for row in session.execute(query, {"ids": chunk})})
    return out


def feed_versions(
    session: Session,
    *,
    since: datetime | None,
    horizon: datetime,
    after: tuple[datetime, int] | None,
    limit: int,
    inclusive: bool = False,
) -> list[LocationSnapshot]:
    """Versions recorded in [since, horizon), after the ``after`` key (or from it, when
    ``inclusive``), in feed order."""
    query = sa.select(*VERSION_COLUMNS).where(VER.c.recorded_at < horizon)
    if since is not None:
        query = query.where(VER.c.recorded_at >= since)
    if after is not None:
        query = query.where(
            sa.or_(
                VER.c.recorded_at > after[0],
                sa.and_(
                    VER.c.recorded_at == after[0],
                    VER.c.version_id >= after[1] if inclusive else VER.c.version_id > after[1],
                ),
            )
        )
    rows = session.execute(query.order_by(VER.c.recorded_at, VER.c.version_id).limit(limit)).all()
    return snapshots(session, rows)


def provider_names(session: Session, provider_ids: Iterable[str]) -> dict[str, str]:
    """The registry's names of those providers it knows."""
    out: dict[str, str] = {}
    query = sa.select(PROV.c.cqc_provider_id, PROV.c.name).where(
        PROV.c.cqc_provider_id.in_(sa.bindparam("ids", expanding=True))
    )
    for chunk in chunks(sorted(set(provider_ids))):
        out.update({row[0]: row[1] for row in session.execute(query, {"ids": chunk})})
    return out


def recorded_provider_names(session: Session, version_ids: Iterable[int]) -> dict[int, str | None]:
    """The name each of the versions gives its provider (the tracker's record)."""
    out: dict[int, str | None] = {}
    query = sa.select(VER.c.version_id, VER.c.record[("provider", "name")].as_string()).where(
        VER.c.version_id.in_(sa.bindparam("ids", expanding=True))
    )
    for chunk in chunks(sorted(set(version_ids))):
        out.update({row[0]: row[1] for row in session.execute(query, {"ids": chunk})})
    return out


def named_provider_versions(session: Session, provider_ids: Iterable[str]) -> dict[str, int]:
    """The Organization version of each of ``provider_ids`` that the current view names:
    the newest version naming it (of any location, even one that has since moved to
    another provider). Providers no location names now are left out (retired)."""
    wanted = sorted(set(provider_ids))
    named: set[str] = set()
    named_query = (
        sa.select(LOC.c.cqc_provider_id)
        .where(LOC.c.cqc_provider_id.in_(sa.bindparam("ids", expanding=True)))
        .distinct()
    )
    for chunk in chunks(wanted):
        named.update(session.scalars(named_query, {"ids": chunk}))
    out: dict[str, int] = {}
    newest = (
        sa.select(VER.c.cqc_provider_id, sa.func.max(VER.c.version_id))
        .where(VER.c.cqc_provider_id.in_(sa.bindparam("ids", expanding=True)))
        .group_by(VER.c.cqc_provider_id)
    )
    for chunk in chunks(sorted(named)):
        out.update({row[0]: row[1] for row in session.execute(newest, {"ids": chunk})})
    return out


def first_naming_versions(session: Session, provider_ids: Iterable[str]) -> dict[str, int]:
    """The first version (of any location) naming each of ``provider_ids`` ever named: the
    first of its Organization's versions (``organization_versions`` begins there), one
    query per chunk of providers."""
    out: dict[str, int] = {}
    query = (
        sa.select(VER.c.cqc_provider_id, sa.func.min(VER.c.version_id))
        .where(VER.c.cqc_provider_id.in_(sa.bindparam("ids", expanding=True)))
        .group_by(VER.c.cqc_provider_id)
    )
    for chunk in chunks(sorted(set(provider_ids))):
        out.update({row[0]: row[1] for row in session.execute(query, {"ids": chunk})})
    return out


def offered_versions(session: Session, *where: sa.ColumnElement[bool]) -> sa.Subquery:
    """(location, vacancy type, version id) of every version line that was a service: of a
    national type the version's kind of provider offered (its record's ``provider_type``,
    absent or blank: a care home), as ``gateway.model.vocab.offers`` judges a record's line.
    The record's JSON array is taken apart by the database's own JSON functions; ``where``
    narrows the versions read. A subquery, so a caller groups by its plain columns
    (PostgreSQL takes a JSON path in SELECT and in GROUP BY, each with its own bound key,
    for two different expressions)."""
    value = sa.column("value", sa.JSON)
    if session.get_bind().dialect.name == "postgresql":
        lines = sa.func.json_array_elements(VER.c.record["vacancies"])
    else:
        lines = sa.func.json_each(VER.c.record, "$.vacancies")
    elements = lines.table_valued(value, joins_implicitly=True).alias("offered_line")
    vacancy_type = elements.c.value["vacancy_type"].as_string()
    provider_type = sa.func.coalesce(
        sa.func.nullif(VER.c.record["provider_type"].as_string(), ""), ProviderType.CARE_HOME.value
    )
    return (
        sa.select(
            VER.c.cqc_location_id.label("cqc_location_id"),
            vacancy_type.label("vacancy_type"),
            VER.c.version_id.label("version_id"),
        )
        .select_from(VER)
        .join(elements, sa.true())
        .where(offers_sql(provider_type, vacancy_type), *where)
        .subquery("offered")
    )


def offered_before(session: Session, wanted: Iterable[tuple[str, str, int]]) -> set[tuple[str, str, int]]:
    """Those of the (location, vacancy type, version id) given whose type some earlier
    version of the location offered (a national line of it its kind of provider then
    offered: ``offered_versions``): a service offered, withdrawn and offered again was not
    created again. One query per chunk of locations, reading only their versions before
    the newest version asked about."""
    asked = list(wanted)
    if not asked:
        return set()
    offered = offered_versions(
        session,
        VER.c.cqc_location_id.in_(sa.bindparam("ids", expanding=True)),
        VER.c.version_id < max(version_id for _, _, version_id in asked),
    )
    query = (
        sa.select(offered.c.cqc_location_id, offered.c.vacancy_type, sa.func.min(offered.c.version_id))
        .where(offered.c.vacancy_type.in_(sorted({t for _, t, _ in asked})))
        .group_by(offered.c.cqc_location_id, offered.c.vacancy_type)
    )
    first: dict[tuple[str, str], int] = {}
    for chunk in chunks(sorted({location for location, _, _ in asked})):
        first.update({(row[0], row[1]): row[2] for row in session.execute(query, {"ids": chunk})})
    return {(loc, t, v) for loc, t, v in asked if first.get((loc, t), v) < v}


def provider_timeline(session: Session, provider_id: str) -> list[tuple[int, str, str | None]]:
    """(version id, location, provider it names) of every version of every location that
    ever named the provider, in version order (the change feed's): what its
    Organization's versions are worked out from."""
    return provider_timelines(session, [provider_id]).get(provider_id, [])


def provider_timelines(
    session: Session, provider_ids: Iterable[str]
) -> dict[str, list[tuple[int, str, str | None]]]:
    """``provider_timeline`` of each of ``provider_ids`` ever named, a few queries for them all."""
    ever = sa.select(VER.c.cqc_location_id).where(
        VER.c.cqc_provider_id.in_(sa.bindparam("ids", expanding=True))
    )
    query = sa.select(VER.c.version_id, VER.c.cqc_location_id, VER.c.cqc_provider_id).where(
        VER.c.cqc_location_id.in_(ever)
    )
    out: dict[str, list[tuple[int, str, str | None]]] = {}
    for chunk in chunks(sorted(set(provider_ids))):
        wanted = set(chunk)
        versions: dict[str, list[tuple[int, str, str | None]]] = {}  # location -> its versions
        locations: dict[str, set[str]] = {}  # provider -> the locations that ever named it
        for version_id, cqc_location_id, provider_id in session.execute(query, {"ids": chunk}):
            versions.setdefault(cqc_location_id, []).append((version_id, cqc_location_id, provider_id))
            if provider_id in wanted:
                locations.setdefault(provider_id, set()).add(cqc_location_id)
        # Sorted here: ordered in SQL, the planner may walk the whole table in version order.
        for provider_id, named_by in locations.items():
            out[provider_id] = sorted(row for location in named_by for row in versions[location])
    return out


@dataclass(frozen=True, slots=True)
class OrganizationVersion:
    """One version of an Organization: the location version that made it, and the version
    naming the provider it is drawn from (itself, unless the provider was retired by it)."""

    version_id: int
    named_by: int
    active: bool


def organization_versions(
    provider_id: str, timeline: list[tuple[int, str, str | None]]
) -> list[OrganizationVersion]:
    """The provider's Organization versions, oldest first, from its timeline (every
    version of every location that ever named it, in version order): one per version
    naming it, and an inactive one where the last location naming it stopped."""
    naming: dict[str, int] = {}  # location -> its newest version, while that names the provider
    out: list[OrganizationVersion] = []
    for version_id, cqc_location_id, named in timeline:
        if named == provider_id:
            naming[cqc_location_id] = version_id
            out.append(OrganizationVersion(version_id, version_id, active=True))
        elif cqc_location_id in naming:
            left = naming.pop(cqc_location_id)
            if not naming:
                out.append(OrganizationVersion(version_id, left, active=False))
    return out


def retired_organization_versions(
    session: Session, provider_ids: Iterable[str]
) -> dict[str, OrganizationVersion]:
    """The Organization version a read gives of each of ``provider_ids`` that is retired
    (ever named, named by no location now): the inactive one its last location made."""
    out: dict[str, OrganizationVersion] = {}
    for provider_id, timeline in provider_timelines(session, provider_ids).items():
        versions = organization_versions(provider_id, timeline)
        if versions and not versions[-1].active:
            out[provider_id] = versions[-1]
    return out


def still_named(session: Session, provider_id: str, version_id: int) -> bool:
    """Does any location's newest version up to ``version_id`` (inclusive) name the
    provider? False once its last location has stopped naming it."""
    named, later = VER.alias("named"), VER.alias("later")
    superseded = sa.exists().where(
        later.c.cqc_location_id == named.c.cqc_location_id,
        later.c.version_id > named.c.version_id,
        later.c.version_id <= version_id,
    )
    # Newest first: a location still naming the provider holds one of its latest versions.
    query = (
        sa.select(named.c.version_id)
        .where(named.c.cqc_provider_id == provider_id, named.c.version_id <= version_id, ~superseded)
        .order_by(named.c.version_id.desc())
        .limit(1)
    )
    return session.scalar(query) is not None
