"""drop the vacancy-type index: it led SQLite's planner to scan every line of a type for
each location in a search's EXISTS, where the (location, line) key finds them directly

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vacancy_line") as batch_op:
        batch_op.drop_index("ix_vacancy_line_vacancy_type")


def downgrade() -> None:
    with op.batch_alter_table("vacancy_line") as batch_op:
        batch_op.create_index("ix_vacancy_line_vacancy_type", ["vacancy_type"], unique=False)
