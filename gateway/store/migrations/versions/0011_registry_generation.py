"""registry generations: every write of registry locations stamps its rows with the next
generation of a one-row counter, so a reader (the search index) finds what changed since
the generation it last saw

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_generation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO registry_generation (id, generation) VALUES (1, 0)")
    with op.batch_alter_table("registry_location") as batch_op:
        batch_op.add_column(sa.Column("generation", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_index("ix_registry_location_generation", ["generation"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("registry_location") as batch_op:
        batch_op.drop_index("ix_registry_location_generation")
        batch_op.drop_column("generation")
    op.drop_table("registry_generation")
