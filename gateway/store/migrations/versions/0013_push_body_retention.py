"""push body retention: a push's raw body may be discarded once older than the retention
period (``body`` becomes nullable, ``body_discarded_at`` says when), and the bodies still
kept are found oldest first through an index on (body_discarded_at, received_at), without
walking those already discarded. On SQLite, making ``body`` nullable copies the table once.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.store.tables

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("submission") as batch_op:
        batch_op.alter_column("body", existing_type=sa.LargeBinary(), nullable=True)
        batch_op.add_column(
            sa.Column("body_discarded_at", gateway.store.tables.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index("ix_submission_kept_body", ["body_discarded_at", "received_at"], unique=False)


def downgrade() -> None:
    # A discarded body cannot come back: such pushes keep an empty body.
    submission = sa.table("submission", sa.column("body", sa.LargeBinary()))
    op.execute(submission.update().where(submission.c.body.is_(None)).values(body=b""))
    with op.batch_alter_table("submission") as batch_op:
        batch_op.drop_index("ix_submission_kept_body")
        batch_op.drop_column("body_discarded_at")
        batch_op.alter_column("body", existing_type=sa.LargeBinary(), nullable=False)
