"""admission status may be unknown: ``location.accepting_admissions`` becomes nullable, so
a location whose source did not say whether it is accepting admissions is held as not
known (NULL) instead of as accepting. Rows already stored keep what they hold.

The downgrade cannot hold "not known": such locations become not accepting (false), the
safe reading for a discharge team. On SQLite the column change copies the table once.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("location") as batch_op:
        batch_op.alter_column("accepting_admissions", existing_type=sa.Boolean(), nullable=True)


def downgrade() -> None:
    location = sa.table("location", sa.column("accepting_admissions", sa.Boolean()))
    op.execute(
        location.update().where(location.c.accepting_admissions.is_(None)).values(accepting_admissions=False)
    )
    with op.batch_alter_table("location") as batch_op:
        batch_op.alter_column("accepting_admissions", existing_type=sa.Boolean(), nullable=False)
