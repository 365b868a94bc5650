"""token expiry: a token may be minted to stop working at a given instant (a tracker's
token renewed every few months, a contractor's for the length of the work). Existing
tokens never expire.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.store.tables

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "api_token", sa.Column("expires_at", gateway.store.tables.UTCDateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("api_token") as batch_op:
        batch_op.drop_column("expires_at")
