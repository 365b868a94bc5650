"""lines not offered: a vacancy line of a type its location's kind of provider does not
offer (a care home's community-rehabilitation line, a community-rehabilitation provider's
long-term one) is flagged ``type-not-offered-by-provider`` and counted in no total. The
locations already held are brought to the rule here: such a line gains the flag, its
location the flag too and an entered capacity without it. Their records and digests are
unchanged (the rule reads the record), so a source sending the same record again still
finds it 'unchanged'.

Only locations with such a line are read and written; the rule is written out here as it
stood when this revision was made, so a later change to the vocabularies leaves it be.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

FLAG = "type-not-offered-by-provider"
REHAB_PROVIDER = "community-rehab"
REHAB_TYPES = ("community-rehab-nhs-la", "community-rehab-private")

_LOCATION = sa.table(
    "location",
    sa.column("cqc_location_id", sa.String()),
    sa.column("provider_type", sa.String()),
    sa.column("entered_capacity", sa.Integer()),
    sa.column("quality_flags", sa.JSON()),
)
_LINE = sa.table(
    "vacancy_line",
    sa.column("cqc_location_id", sa.String()),
    sa.column("line_key", sa.String()),
    sa.column("vacancy_type", sa.String()),
    sa.column("maximum_capacity", sa.Integer()),
    sa.column("quality_flags", sa.JSON()),
)


def _offered(provider_type: str | None, vacancy_type: str | None) -> bool:
    if vacancy_type is None:
        return False
    return (provider_type == REHAB_PROVIDER) == (vacancy_type in REHAB_TYPES)


def upgrade() -> None:
    bind = op.get_bind()
    rehab_line = _LINE.c.vacancy_type.in_(REHAB_TYPES)
    not_offered = sa.and_(
        _LINE.c.vacancy_type.is_not(None),
        sa.or_(
            sa.and_(_LOCATION.c.provider_type == REHAB_PROVIDER, sa.not_(rehab_line)),
            sa.and_(_LOCATION.c.provider_type != REHAB_PROVIDER, rehab_line),
        ),
    )
    joined = _LINE.join(_LOCATION, _LOCATION.c.cqc_location_id == _LINE.c.cqc_location_id)
    affected = sorted(
        set(bind.scalars(sa.select(_LINE.c.cqc_location_id).select_from(joined).where(not_offered)))
    )
    for start in range(0, len(affected), 500):
        _bring_to_the_rule(bind, affected[start : start + 500])


def _bring_to_the_rule(bind: sa.Connection, ids: list[str]) -> None:
    locations = {
        row.cqc_location_id: row
        for row in bind.execute(
            sa.select(_LOCATION.c.cqc_location_id, _LOCATION.c.provider_type, _LOCATION.c.quality_flags).where(
                _LOCATION.c.cqc_location_id.in_(ids)
            )
        )
    }
    entered: dict[str, int] = defaultdict(int)
    for line in bind.execute(
        sa.select(
            _LINE.c.cqc_location_id,
            _LINE.c.line_key,
            _LINE.c.vacancy_type,
            _LINE.c.maximum_capacity,
            _LINE.c.quality_flags,
        ).where(_LINE.c.cqc_location_id.in_(ids))
    ):
        provider_type = locations[line.cqc_location_id].provider_type
        if _offered(provider_type, line.vacancy_type):
            entered[line.cqc_location_id] += line.maximum_capacity
        elif line.vacancy_type is not None and FLAG not in (line.quality_flags or []):
            bind.execute(
                _LINE.update()
                .where(_LINE.c.cqc_location_id == line.cqc_location_id, _LINE.c.line_key == line.line_key)
                .values(quality_flags=[*(line.quality_flags or []), FLAG])
            )
    for cqc_id, location in locations.items():
        flags: list[Any] = list(location.quality_flags or [])
        bind.execute(
            _LOCATION.update()
            .where(_LOCATION.c.cqc_location_id == cqc_id)
            .values(entered_capacity=entered[cqc_id], quality_flags=sorted({*flags, FLAG}))
        )


def downgrade() -> None:
    # The code before this revision neither writes nor reads the flag; the entered
    # capacities it would have stored are not kept (the next report of each location
    # writes them again).
    pass
