"""The occupancy report and the unavailable-for-admission report.

Lines are counted as the provider sent them (an inconsistent line once, with its own
figures); the totals derived here never go negative: vacancies total is
``max(capacity - occupied, 0)`` per line. Lines of unmapped source codes and inactive
locations are left out. The report says how many lines broke the capacity invariant.
Reports count care homes unless asked otherwise (``counted_provider_types``).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from gateway.errors import Unprocessable
from gateway.model.vocab import (
    COMMUNITY_REHAB_VACANCY_TYPES,
    LONG_TERM_VACANCY_TYPES,
    ProviderType,
    UnavailableReason,
)
from gateway.search.query import stay_types
from gateway.search.report_groups import (
    COUNTED_LINES,
    GROUPS,
    LINE,
    LOC,
    REG,
    REGISTRY_GROUPS,
    display,
    group_key,
    group_name,
    in_group,
    registered_homes,
)
from gateway.store.db import read_snapshot
from gateway.store.tables import utcnow

# A line's vacancies total, never below zero (an inconsistent line can be over-occupied).
VACANCIES = sa.case(
    (LINE.c.maximum_capacity > LINE.c.occupied, LINE.c.maximum_capacity - LINE.c.occupied), else_=0
)
NOT_GIVEN = "not-given"  # the reason unavailable beds given none are counted under
COUNTS = ("maximum_capacity", "occupied", "reserved", "admittable", "unavailable")
ROW_COLUMNS = [
    *COUNTS,
    "vacancies_total",
    "admittable_pct",
    "unavailable_pct",
    "reserved_pct",
    "occupied_pct",
]
# The columns of the occupancy report's rows, and of its drill-down's locations.
GROUP_COLUMNS = [
    "group",
    "group_display",
    *ROW_COLUMNS,
    "locations_with_vacancy_data",
    "locations_updated_last_7_days",
    "cqc_registered_care_homes",
]
LOCATION_COLUMNS = ["cqc_location_id", "name", "source", "last_updated", *ROW_COLUMNS]
LOCATION_COUNTS = {
    "locations_with_vacancy_data": "locations in the group with vacancy lines in the national view",
    "locations_updated_last_7_days": "of those, locations whose provider updated in the last 7 days",
    "cqc_registered_care_homes": "care homes the CQC registry lists as registered in the group "
    "(whether or not any tracker reports them; not given by vacancy type)",
}


def counted_provider_types(provider_types: list[str], vacancy_types: list[str]) -> list[str]:
    """The provider types a report counts: those asked for; else care homes, as the
    national tracker's reports count (its published figures, which the gateway's are
    compared with, are care homes'; community rehabilitation providers are "other
    providers"), unless a community rehabilitation vacancy type is asked for (then every
    provider type: the vacancy types choose the lines)."""
    if provider_types:
        return sorted(provider_types)
    rehab = {v.value for v in COMMUNITY_REHAB_VACANCY_TYPES}
    if rehab & set(vacancy_types):
        return [p.value for p in ProviderType]
    return [ProviderType.CARE_HOME.value]


def _filters(
    stay: str | None,
    vacancy_types: list[str],
    out_of_hours: bool | None,
    accepting: bool | None,
    provider_types: list[str],
) -> list[sa.ColumnElement[bool]]:
    # Lines of a national type the location's provider type offers (an unmapped line, or a
    # care home's community-rehab line, is kept and flagged, never counted).
    conditions: list[sa.ColumnElement[bool]] = [
        LOC.c.active.is_(True),
        LINE.c.vacancy_type.is_not(None),
        COUNTED_LINES,
    ]
    # As in the search: short stays are filled from a location's long-term vacancies, so
    # either stay counts long-term lines only (a short stay, of locations offering one).
    stay, vacancy_types = stay_types(stay, vacancy_types)
    if stay is not None:
        conditions.append(LINE.c.vacancy_type.in_([v.value for v in LONG_TERM_VACANCY_TYPES]))
    if stay == "short-stay":
        conditions.append(sa.func.length(sa.cast(LOC.c.short_stay_services, sa.String)) > 2)
    if vacancy_types:
        conditions.append(LINE.c.vacancy_type.in_(vacancy_types))
    if out_of_hours is not None:
        conditions.append(LOC.c.out_of_hours_admissions.is_(out_of_hours))
    if accepting is not None:
        conditions.append(LOC.c.accepting_admissions.is_(accepting))
    conditions.append(LOC.c.provider_type.in_(provider_types))
    return conditions


def _row(values: dict[str, int]) -> dict[str, Any]:
    """A report row's counts and percentages; a count missing (a report no line matched)
    is 0."""
    values = {k: values.get(k, 0) for k in (*COUNTS, "vacancies_total")}
    capacity = values["maximum_capacity"]

    def pct(part: int) -> float:
        return round(100.0 * part / capacity, 1) if capacity else 0.0

    return {
        **{k: values[k] for k in COUNTS},
        "vacancies_total": values["vacancies_total"],
        "admittable_pct": pct(values["admittable"]),
        "unavailable_pct": pct(values["unavailable"]),
        "reserved_pct": pct(values["reserved"]),
        "occupied_pct": pct(values["occupied"]),
    }


def occupancy(
    session: Session,
    *,
    group_by: str = "nhs_region",
    stay: str | None = None,
    vacancy_types: list[str] | None = None,
    out_of_hours: bool | None = None,
    accepting: bool | None = None,
    provider_types: list[str] | None = None,
    group: str | None = None,
) -> dict[str, Any]:
    """The occupancy report; with ``group``, the locations of that group instead. Read
    from one snapshot: its rows add up to its total while trackers push."""
    read_snapshot(session)
    if group_by not in GROUPS:
        raise Unprocessable(
            f"group_by: one of {', '.join(GROUPS)}",
            errors=[{"parameter": "group_by", "message": f"unknown value {group_by!r}"}],
        )
    key = GROUPS[group_by]
    counted = counted_provider_types(provider_types or [], vacancy_types or [])
    conditions = _filters(stay, vacancy_types or [], out_of_hours, accepting, counted)
    joined = LINE.join(LOC, LOC.c.cqc_location_id == LINE.c.cqc_location_id).outerjoin(
        REG, REG.c.cqc_location_id == LOC.c.cqc_location_id
    )
    if group is not None:
        return {**_drill_down(session, joined, key, group, conditions, group_by), "provider_types": counted}
    fresh = sa.case((LOC.c.source_updated_at >= utcnow() - timedelta(days=7), LOC.c.cqc_location_id))
    stmt = (
        sa.select(
            key.label("grp"),
            *[sa.func.sum(LINE.c[c]) for c in COUNTS],
            sa.func.sum(VACANCIES),
            sa.func.count(sa.distinct(LOC.c.cqc_location_id)),
            sa.func.count(sa.distinct(fresh)),
            sa.func.sum(sa.case((LINE.c.consistent.is_(False), 1), else_=0)),
        )
        .select_from(joined)
        .where(*conditions)
        .group_by(key)
        .order_by(key.asc().nulls_last())  # an area not known (no registry record) last, on every database
    )
    totals: defaultdict[str, int] = defaultdict(int)
    inconsistent = 0
    registered, written = registered_homes(session, group_by)
    groups: dict[Any, dict[str, Any]] = {}
    for record in session.execute(stmt):
        values = {c: int(record[i + 1] or 0) for i, c in enumerate(COUNTS)}
        values["vacancies_total"] = int(record[6] or 0)
        for k, v in values.items():
            totals[k] += v
        inconsistent += int(record[9] or 0)
        # One local authority written in several ways ('Manchester', 'MANCHESTER ') is one
        # group: its spellings' rows are merged (a location has one spelling, so its
        # location counts add up too), named as the registry writes it where it can.
        same = group_key(group_by, record[0])
        found = groups.get(same)
        if found is None:
            found = groups[same] = {"spellings": set(), "values": defaultdict(int), "seen": [0, 0]}
        found["spellings"].add(record[0])
        for k, v in values.items():
            found["values"][k] += v
        found["seen"][0] += record[7]
        found["seen"][1] += record[8]
    # Every area with registered care homes has a row, of zeros where no line matches, so
    # the rows add up to the national total, registered care homes too, under any filter.
    for same in registered or {}:
        groups.setdefault(same, {"spellings": set(), "values": defaultdict(int), "seen": [0, 0]})
    for same, found in groups.items():
        found["group"] = group_name(group_by, same, found["spellings"], written)
    ordered = sorted(groups.items(), key=lambda item: (item[0] is None, str(item[0])))
    rows = [
        {
            "group": found["group"],
            "group_display": display(group_by, found["group"]),
            **_row(dict(found["values"])),
            "locations_with_vacancy_data": found["seen"][0],
            "locations_updated_last_7_days": found["seen"][1],
            "cqc_registered_care_homes": registered.get(same, 0) if registered is not None else None,
        }
        for same, found in ordered
    ]
    national = session.execute(
        sa.select(sa.func.count(sa.distinct(LOC.c.cqc_location_id)), sa.func.count(sa.distinct(fresh)))
        .select_from(joined)
        .where(*conditions)
    ).one()
    return {
        "group_by": group_by,
        "provider_types": counted,
        "columns": list(COUNTS) + ["vacancies_total"],
        "location_counts": LOCATION_COUNTS,
        "inconsistent_lines": inconsistent,
        "note": "Lines are counted as providers sent them; vacancies total is capacity minus occupied "
        "(never below zero); percentages are of maximum capacity.",
        "rows": rows,
        "total": {
            "group": "England",
            **_row(dict(totals)),
            "locations_with_vacancy_data": national[0],
            "locations_updated_last_7_days": national[1],
            "cqc_registered_care_homes": sum(registered.values()) if registered is not None else None,
        },
    }


def _drill_down(
    session: Session, joined: Any, key: Any, group: str, conditions: list[Any], group_by: str
) -> dict[str, Any]:
    """The locations of one group, each row the sum of its lines (as the group's row is)."""
    group, selected = in_group(session, joined, key, group_by, group)
    stmt = (
        sa.select(
            LOC.c.cqc_location_id,
            LOC.c.name,
            LOC.c.source,
            LOC.c.source_updated_at,
            *[sa.func.sum(LINE.c[c]) for c in COUNTS],
            sa.func.sum(VACANCIES),
        )
        .select_from(joined)
        .where(*conditions, selected)
        .group_by(LOC.c.cqc_location_id, LOC.c.name, LOC.c.source, LOC.c.source_updated_at)
        .order_by(LOC.c.name, LOC.c.cqc_location_id)  # homes of one name ("The Willows") in a stable order
    )
    locations = []
    for record in session.execute(stmt):
        values = {c: int(record[i + 4] or 0) for i, c in enumerate(COUNTS)}
        values["vacancies_total"] = int(record[9] or 0)
        locations.append(
            {
                "cqc_location_id": record[0],
                "name": record[1],
                "source": record[2],
                "last_updated": record[3].isoformat() if record[3] else None,
                **_row(values),
            }
        )
    return {"group_by": group_by, "group": group, "locations": locations}


def unavailable(
    session: Session, *, group_by: str = "nhs_region", provider_types: list[str] | None = None
) -> dict[str, Any]:
    """Vacancies not available for admission, by reason and by area.

    A line with several reasons counts its unavailable beds under each reason given
    (``by_reason``) and once in ``unavailable_beds``; beds with no reason are counted
    under 'not given'. Read from one snapshot, as the occupancy report is.
    """
    read_snapshot(session)
    if group_by not in REGISTRY_GROUPS:
        raise Unprocessable(
            f"group_by: one of {', '.join(REGISTRY_GROUPS)}",
            errors=[{"parameter": "group_by", "message": f"unknown value {group_by!r}"}],
        )
    key = GROUPS[group_by]
    counted = counted_provider_types(provider_types or [], [])
    conditions = _filters(None, [], None, None, counted)
    joined = LINE.join(LOC, LOC.c.cqc_location_id == LINE.c.cqc_location_id).outerjoin(
        REG, REG.c.cqc_location_id == LOC.c.cqc_location_id
    )
    stmt = (
        sa.select(key, LINE.c.unavailable, LINE.c.unavailable_reasons)
        .select_from(joined)
        .where(*conditions, LINE.c.unavailable > 0)
    )
    _, written = registered_homes(session, group_by)
    areas: dict[Any, dict[str, Any]] = {}
    national: dict[str, int] = defaultdict(int)
    total = 0
    spellings: defaultdict[Any, set[Any]] = defaultdict(set)
    for area, beds, reasons in session.execute(stmt):
        same = group_key(group_by, area)  # one authority's spellings are one area, as in occupancy
        spellings[same].add(area)
        row = areas.get(same)
        if row is None:
            row = areas[same] = {"unavailable_beds": 0, "by_reason": defaultdict(int)}
        row["unavailable_beds"] += beds
        total += beds
        for reason in reasons or [NOT_GIVEN]:
            row["by_reason"][reason] += beds
            national[reason] += beds
    # Every line the filters match that breaks the invariant, as the occupancy report
    # counts them: most often beds not available that the provider left out (its line says
    # none unavailable), which the rows above cannot show.
    inconsistent = session.scalar(
        sa.select(sa.func.count()).select_from(joined).where(*conditions, LINE.c.consistent.is_(False))
    )
    rows = []
    for same, row in sorted(areas.items(), key=lambda item: (item[0] is None, str(item[0]))):
        name = group_name(group_by, same, spellings[same], written)
        rows.append(
            {
                "group": name,
                "group_display": display(group_by, name),
                "unavailable_beds": row["unavailable_beds"],
                "by_reason": dict(sorted(row["by_reason"].items())),
            }
        )
    return {
        "group_by": group_by,
        "provider_types": counted,
        "inconsistent_lines": inconsistent,
        "rows": rows,
        "total": {"group": "England", "unavailable_beds": total, "by_reason": dict(sorted(national.items()))},
        "note": "beds of a line with several reasons count under each of its reasons; lines are counted "
        "as providers sent them; inconsistent_lines of the lines these filters match break the capacity "
        "invariant (beds not available may be missing from them)",
    }


def reason_display(code: str) -> str:
    """A reason's users' wording (a code outside the vocabulary as it is)."""
    if code == NOT_GIVEN:
        return "Not given"
    try:
        return UnavailableReason(code).display
    except ValueError:
        return code


def unavailable_table(report: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """The unavailable report as a file's table: its rows (the areas, then England), the
    keys of its columns, and their headers. A column for every reason given anywhere (the
    national row has them all), each area's count under it or 0, headed by the reason's
    users' wording (``Staffing Levels (Absence)``; JSON keeps the codes)."""
    reasons = list(report["total"]["by_reason"])
    rows = [
        {
            "group": row["group"],
            "unavailable_beds": row["unavailable_beds"],
            **{reason: row["by_reason"].get(reason, 0) for reason in reasons},
        }
        for row in [*report["rows"], report["total"]]
    ]
    columns = ["group", "unavailable_beds", *reasons]
    return rows, columns, ["group", "unavailable_beds", *map(reason_display, reasons)]
