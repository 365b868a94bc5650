"""source link: which location each London home last fed, so a home that comes to name
another CQC location (an admin's link corrected by the tracker, a re-registration) leaves
the one it fed instead of leaving its beds counted there too. Filled as homes are synced.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.store.tables

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "source_link",
        sa.Column("source", sa.String(80), primary_key=True),
        sa.Column("source_ref", sa.String(80), primary_key=True),
        sa.Column("cqc_location_id", sa.String(20), nullable=False),
        sa.Column("linked_at", gateway.store.tables.UTCDateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("source_link")
