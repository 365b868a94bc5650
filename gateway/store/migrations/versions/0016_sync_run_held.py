"""sync run held: each run counts the records it kept aside for matching (London homes
without a CQC ID), so a run's counts add up to the records it saw. Existing runs count 0.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sync_run", sa.Column("held", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("sync_run") as batch_op:
        batch_op.drop_column("held")
