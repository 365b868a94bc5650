"""version provider: each location version keeps the CQC provider ID its record names
(``cqc_provider_id``, filled from the records already kept), with an index on
(cqc_provider_id, version_id), so an Organization's versions are found without reading
every record: the versions naming its provider, and those of the locations that once did
(a provider whose last location moves away becomes an inactive Organization, not a 404).
Adding a nullable column copies no table on either database.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("location_version", sa.Column("cqc_provider_id", sa.String(length=20), nullable=True))
    version = sa.table(
        "location_version", sa.column("cqc_provider_id", sa.String()), sa.column("record", sa.JSON())
    )
    named = version.c.record[("provider", "cqc_provider_id")].as_string()
    op.execute(version.update().values(cqc_provider_id=sa.func.nullif(named, "")))
    op.create_index("ix_location_version_provider", "location_version", ["cqc_provider_id", "version_id"])


def downgrade() -> None:
    # The records keep the provider: nothing is lost.
    op.drop_index("ix_location_version_provider", table_name="location_version")
    with op.batch_alter_table("location_version") as batch_op:
        batch_op.drop_column("cqc_provider_id")
