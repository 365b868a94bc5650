"""drop the index on location.active: nearly every location is active, yet SQLite's
planner (without statistics) took the index for every search and read the whole national
view, where the bounding box's latitude index reads a band of it

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("location") as batch_op:
        batch_op.drop_index("ix_location_active")


def downgrade() -> None:
    with op.batch_alter_table("location") as batch_op:
        batch_op.create_index("ix_location_active", ["active"], unique=False)
