"""Migration 0016 gives each sync run a count of the records it held for matching: runs
recorded before count 0; its downgrade drops the count and keeps every run."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from gateway.store.db import alembic_config, upgrade
from gateway.store.tables import UTCDateTime, utcnow


def test_runs_recorded_before_count_none_held_and_the_downgrade_keeps_them(
    database_url: str, engine: sa.Engine
) -> None:
    config = alembic_config(database_url)
    command.downgrade(config, "0015")
    try:
        at_0015 = sa.table(
            "sync_run",
            sa.column("source"),
            sa.column("kind"),
            sa.column("started_at", UTCDateTime()),
            sa.column("status"),
            *(
                sa.column(name)
                for name in ("pages", "records_seen", "accepted", "unchanged", "stale", "rejected")
            ),
            sa.column("rejections", sa.JSON()),
            sa.column("warnings", sa.JSON()),
        )
        with engine.begin() as connection:
            for n in range(3):
                connection.execute(
                    sa.insert(at_0015).values(
                        source="london",
                        kind="incremental",
                        started_at=utcnow(),
                        status="succeeded",
                        pages=1,
                        records_seen=n,
                        accepted=n,
                        unchanged=0,
                        stale=0,
                        rejected=0,
                        rejections=[],
                        warnings=[],
                    )
                )
        upgrade(database_url)
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT accepted, held FROM sync_run ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [(0, 0), (1, 0), (2, 0)]

        command.downgrade(config, "0015")
        with engine.connect() as connection:
            kept = connection.execute(sa.text("SELECT accepted FROM sync_run ORDER BY id")).all()
            columns = {c["name"] for c in sa.inspect(connection).get_columns("sync_run")}
        assert [r[0] for r in kept] == [0, 1, 2]
        assert "held" not in columns
    finally:
        upgrade(database_url)
