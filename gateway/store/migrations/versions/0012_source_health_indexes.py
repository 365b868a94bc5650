"""indexes for source health: each source's newest data, latest pushes and latest runs are
read from the top of an index on (source, time) instead of sorting all of a source's rows
(a week of pushes and runs made GET /api/v1/sources take 150 ms); the registry's newest
sync time likewise. The single-column indexes these replace go (an index led by the
source serves every look-up by source), and so does the unused one on
location.source_updated_at, one index fewer to keep on every write of the national view.
And one on (source, status): a new run finds its source's runs left running at once.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_location_source_updated", "location", ["source", "source_updated_at"])
    op.drop_index("ix_location_source", table_name="location")
    op.drop_index("ix_location_source_updated_at", table_name="location")
    # Covering: the health query reads received_at and status_code from the index alone
    # (in the table they sit after the push's body, which SQLite would have to walk).
    op.create_index("ix_submission_source_received", "submission", ["source", "received_at", "status_code"])
    op.drop_index("ix_submission_source", table_name="submission")
    op.create_index("ix_sync_run_source_started", "sync_run", ["source", "started_at", "id"])
    op.drop_index("ix_sync_run_source", table_name="sync_run")
    # A new run closes its source's runs left running: found without reading every run.
    op.create_index("ix_sync_run_source_status", "sync_run", ["source", "status"])
    op.create_index("ix_registry_location_synced_at", "registry_location", ["synced_at"])


def downgrade() -> None:
    op.drop_index("ix_registry_location_synced_at", table_name="registry_location")
    op.drop_index("ix_sync_run_source_status", table_name="sync_run")
    op.create_index("ix_sync_run_source", "sync_run", ["source"])
    op.drop_index("ix_sync_run_source_started", table_name="sync_run")
    op.create_index("ix_submission_source", "submission", ["source"])
    op.drop_index("ix_submission_source_received", table_name="submission")
    op.create_index("ix_location_source_updated_at", "location", ["source_updated_at"])
    op.create_index("ix_location_source", "location", ["source"])
    op.drop_index("ix_location_source_updated", table_name="location")
