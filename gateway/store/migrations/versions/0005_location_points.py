"""location points (postcode district centroids) for radius search

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("location") as batch_op:
        batch_op.add_column(sa.Column("latitude", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("longitude", sa.Float(), nullable=True))
        batch_op.create_index("ix_location_latitude", ["latitude"], unique=False)
    with op.batch_alter_table("registry_location") as batch_op:
        batch_op.create_index("ix_registry_location_latitude", ["latitude"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("registry_location") as batch_op:
        batch_op.drop_index("ix_registry_location_latitude")
    with op.batch_alter_table("location") as batch_op:
        batch_op.drop_index("ix_location_latitude")
        batch_op.drop_column("longitude")
        batch_op.drop_column("latitude")
