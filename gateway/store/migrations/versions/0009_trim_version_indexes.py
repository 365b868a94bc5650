"""drop two indexes of location_version every version insert paid for: by location, which
the (location, version) index already serves, and by received_at, which no query reads
any longer (the change feed reads recorded_at)

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("location_version") as batch_op:
        batch_op.drop_index("ix_location_version_cqc_location_id")
        batch_op.drop_index("ix_location_version_received_at")


def downgrade() -> None:
    with op.batch_alter_table("location_version") as batch_op:
        batch_op.create_index("ix_location_version_received_at", ["received_at"], unique=False)
        batch_op.create_index("ix_location_version_cqc_location_id", ["cqc_location_id"], unique=False)
