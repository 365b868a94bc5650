"""A report's areas: how its rows are grouped (NHS region, local authority, ICB, vacancy
type), what each group is named, how many registered care homes each holds, and which
group a drill-down names.

One local authority written several ways ('Manchester', 'MANCHESTER ') is one group,
named as the registry writes it; a region or vacancy type is taken by its code or its
display name, as the search takes them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from gateway.model.vocab import NhsRegion, VacancyType
from gateway.search.query import area_code, area_codes, authority_key, codes
from gateway.search.service import check_area_codes, check_local_authorities, reference_authorities
from gateway.store.registry import registry_authorities, registry_values
from gateway.store.repository import offers_sql
from gateway.store.tables import Location, RegistryLocation, VacancyLine, table

LOC, REG, LINE = table(Location), table(RegistryLocation), table(VacancyLine)
GROUPS = {
    "nhs_region": sa.func.coalesce(REG.c.nhs_region, LOC.c.nhs_region),
    "local_authority": sa.func.coalesce(REG.c.local_authority, LOC.c.local_authority),
    "icb": REG.c.icb_code,
    "vacancy_type": LINE.c.vacancy_type,
}
REGISTRY_GROUPS = {
    "nhs_region": REG.c.nhs_region,
    "local_authority": REG.c.local_authority,
    "icb": REG.c.icb_code,
}
# The groups named by a vocabulary: their codes, or display names (as the search takes them).
VOCABULARY_GROUPS = {"nhs_region": NhsRegion, "vacancy_type": VacancyType}
# The lines a report counts (with its location joined): of a vacancy type their location's
# kind of provider offers (``gateway.model.vocab.offers``), as the model counts them. A
# care home's community rehabilitation line, or a provider's long-term line, is kept and
# flagged ``type-not-offered-by-provider`` but counted nowhere, as an unmapped line.
COUNTED_LINES: sa.ColumnElement[bool] = offers_sql(LOC.c.provider_type, LINE.c.vacancy_type)


def group_key(group_by: str, value: Any) -> Any:
    """The key by which a report's rows are one group: a local authority's name as the
    search compares it (any case and spacing; a blank one, held before blanks were taken
    as not given, is the area not known, None), any other group's value as it is."""
    if group_by == "local_authority" and isinstance(value, str):
        return authority_key(value) or None
    return value


def group_name(group_by: str, same: Any, spellings: set[Any], written: dict[Any, str]) -> Any:
    """A group's name in a report (its row, its drill-down): a local authority as the
    registry writes it, else as the postcode districts do, else its first spelling in the
    view (in one order on every database); any other group as it is."""
    if group_by != "local_authority" or same is None:
        return same
    known = written.get(same) or reference_authorities().get(same)
    return known or min((s.strip() for s in spellings if s), default=same)


def registered_homes(session: Session, group_by: str) -> tuple[dict[Any, int] | None, dict[Any, str]]:
    """The registry's registered care homes per group (None: not given for ``group_by``),
    each in the group its report rows place it (the registry's area, else the national
    view's, as ``GROUPS`` reads it), and each group's name as the registry writes it
    (local authorities)."""
    column = REGISTRY_GROUPS.get(group_by)
    if column is None:
        return None, {}
    grouped = GROUPS[group_by]
    stmt = (
        sa.select(grouped, column, sa.func.count())
        .select_from(REG.outerjoin(LOC, LOC.c.cqc_location_id == REG.c.cqc_location_id))
        .where(REG.c.care_home.is_(True), REG.c.registration_status == "Registered")
        .group_by(grouped, column)
        .order_by(column)
    )
    counts: defaultdict[Any, int] = defaultdict(int)
    written: dict[Any, str] = {}
    for value, registry_value, count in session.execute(stmt):
        same = group_key(group_by, value)
        counts[same] += int(count)
        if group_by == "local_authority" and registry_value is not None:
            written.setdefault(group_key(group_by, registry_value), registry_value.strip())
    return dict(counts), written


def display(group_by: str, value: Any) -> str | None:
    vocabulary = VOCABULARY_GROUPS.get(group_by)
    if vocabulary is None or value is None:
        return value
    try:
        return vocabulary(value).display  # type: ignore[no-any-return]
    except ValueError:
        return str(value)


def in_group(
    session: Session, joined: Any, key: Any, group_by: str, group: str
) -> tuple[str, sa.ColumnElement[bool]]:
    """The drill-down's group as its rows name it, and the condition selecting it: a region
    or vacancy type by its code or display name (anything else is refused, naming the
    allowed values), a local authority in any case and spacing (as the search takes it;
    every spelling the view holds of it, as its group's row counts them all), an ICB by
    its code in any case (an unknown one refused, as in the search)."""
    vocabulary = VOCABULARY_GROUPS.get(group_by)
    if vocabulary is not None:
        code = codes("group", [group], vocabulary)[0]
        return code, key == code
    if group_by == "local_authority":
        held = list(session.scalars(sa.select(key).select_from(joined).where(key.is_not(None)).distinct()))
        check_local_authorities([group], lambda: [*held, *registry_authorities(session)], "group")
        wanted = authority_key(group)
        spellings = {name for name in held if authority_key(name) == wanted}
        # Named as its group's row names it (the registry's spelling), not as typed.
        name = group_name(group_by, wanted, spellings, registered_homes(session, group_by)[1])
        return name, key.in_(sorted(spellings))
    # An ICB by its code in any case; one neither the view nor the registry has is refused.
    code = area_codes([group])[0]
    held_codes = {area_code(c) for c in session.scalars(sa.select(key).select_from(joined).distinct()) if c}
    check_area_codes("group", [code], held_codes, lambda: registry_values(session, "icb"))
    return code, sa.func.upper(key) == code
