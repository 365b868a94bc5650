"""folded names: each location's name and town are stored as FHIR string search compares
them too, in lower case without accents, so 'elan' finds 'Élan' on either database
(SQLite's own lower() folds ASCII only, and neither database leaves accents out). The
locations already held are folded here.

The folding is written out as it stood when this revision was made, so a later change to
``gateway.folding`` leaves this revision be.

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

_LOCATION = sa.table(
    "location",
    sa.column("cqc_location_id", sa.String()),
    sa.column("name", sa.String()),
    sa.column("town", sa.String()),
    sa.column("name_folded", sa.String()),
    sa.column("town_folded", sa.String()),
)
_BATCH = 1000


def _fold(text: str | None) -> str | None:
    if text is None:
        return None
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def upgrade() -> None:
    op.add_column("location", sa.Column("name_folded", sa.String(), nullable=True))
    op.add_column("location", sa.Column("town_folded", sa.String(), nullable=True))
    bind = op.get_bind()
    update = (
        sa.update(_LOCATION)
        .where(_LOCATION.c.cqc_location_id == sa.bindparam("id"))
        .values(name_folded=sa.bindparam("name_f"), town_folded=sa.bindparam("town_f"))
    )
    after = ""
    while True:
        rows = bind.execute(
            sa.select(_LOCATION.c.cqc_location_id, _LOCATION.c.name, _LOCATION.c.town)
            .where(_LOCATION.c.cqc_location_id > after)
            .order_by(_LOCATION.c.cqc_location_id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        bind.execute(update, [{"id": i, "name_f": _fold(name), "town_f": _fold(town)} for i, name, town in rows])
        after = rows[-1][0]


def downgrade() -> None:
    with op.batch_alter_table("location") as batch:
        batch.drop_column("town_folded")
        batch.drop_column("name_folded")
