"""change feed: each version's recorded_at stamped under one change clock (so the FHIR
_history feed is in commit order), an index for it, and bulk-export jobs

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.store.tables

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("location_version") as batch_op:
        batch_op.add_column(
            sa.Column("recorded_at", gateway.store.tables.UTCDateTime(timezone=True), nullable=True)
        )
    op.execute("UPDATE location_version SET recorded_at = received_at")
    with op.batch_alter_table("location_version") as batch_op:
        batch_op.alter_column(
            "recorded_at", existing_type=gateway.store.tables.UTCDateTime(timezone=True), nullable=False
        )
        batch_op.create_index("ix_location_version_feed", ["recorded_at", "version_id"], unique=False)
        batch_op.create_index(
            "ix_location_version_location_version", ["cqc_location_id", "version_id"], unique=False
        )
    op.create_table(
        "change_clock",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last", gateway.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO change_clock (id, last) VALUES (1, '1970-01-01 00:00:00')")
    op.create_table(
        "bulk_export",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("token_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("request_url", sa.String(), nullable=False),
        sa.Column("types", sa.JSON(), nullable=False),
        sa.Column("since", gateway.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("transaction_time", gateway.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", gateway.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("completed_at", gateway.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("output", sa.JSON(), nullable=False),
        sa.Column("error", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("bulk_export")
    op.drop_table("change_clock")
    with op.batch_alter_table("location_version") as batch_op:
        batch_op.drop_index("ix_location_version_location_version")
        batch_op.drop_index("ix_location_version_feed")
        batch_op.drop_column("recorded_at")
