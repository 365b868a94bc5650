"""Migration 0015 keeps on each location version the CQC provider ID its record names (what
an Organization's versions are found by), filled from the records already kept; its
downgrade drops the column and keeps every version."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from gateway.store import fhir as store
from gateway.store.db import alembic_config, upgrade
from gateway.store.tables import UTCDateTime, utcnow
from tests.conftest import TokenMaker, bearer
from tests.factories import batch, location


def test_the_migration_fills_the_provider_of_kept_versions_and_its_downgrade_keeps_them(
    database_url: str, engine: sa.Engine, factory: sessionmaker[Session]
) -> None:
    config = alembic_config(database_url)
    command.downgrade(config, "0014")
    try:
        now = utcnow()
        # The table as revision 0014 had it (the model is the next revision's).
        at_0014 = sa.table(
            "location_version",
            sa.column("cqc_location_id"),
            sa.column("source"),
            sa.column("source_updated_at", UTCDateTime()),
            sa.column("received_at", UTCDateTime()),
            sa.column("recorded_at", UTCDateTime()),
            sa.column("content_hash"),
            sa.column("record", sa.JSON()),
        )
        providers: list[dict[str, Any] | None] = [
            {"cqc_provider_id": "1-900", "name": "Nine Care"},
            {"cqc_provider_id": None, "name": "Not registered"},
            {"cqc_provider_id": ""},
            None,
            {"cqc_provider_id": "1-900", "name": "Nine Care"},
        ]
        with engine.begin() as connection:
            for n, provider in enumerate(providers):
                record = {"cqc_location_id": f"1-{n % 4}", "name": f"Home {n}"}
                if provider is not None:
                    record["provider"] = provider
                connection.execute(
                    sa.insert(at_0014).values(
                        cqc_location_id=record["cqc_location_id"],
                        source="tracker-north-west",
                        source_updated_at=now,
                        received_at=now,
                        recorded_at=now,
                        content_hash=f"h{n}",
                        record=record,
                    )
                )
            before = connection.execute(
                sa.text("SELECT version_id, cqc_location_id FROM location_version ORDER BY version_id")
            ).all()
        upgrade(database_url)

        with engine.connect() as connection:
            filled = connection.execute(
                sa.text("SELECT version_id, cqc_provider_id FROM location_version ORDER BY version_id")
            ).all()
        assert [provider for _, provider in filled] == ["1-900", None, None, None, "1-900"]
        with factory() as session:
            # Found by the filled column: both versions of 1-0, the one location naming it.
            timeline = store.provider_timeline(session, "1-900")
        assert [(cqc_id, provider) for _, cqc_id, provider in timeline] == [
            ("1-0", "1-900"),
            ("1-0", "1-900"),
        ]

        command.downgrade(config, "0014")
        with engine.connect() as connection:
            kept = connection.execute(
                sa.text("SELECT version_id, cqc_location_id FROM location_version ORDER BY version_id")
            ).all()
            columns = {column["name"] for column in sa.inspect(connection).get_columns("location_version")}
            indexes = {index["name"] for index in sa.inspect(connection).get_indexes("location_version")}
        assert kept == before
        assert "cqc_provider_id" not in columns
        assert "ix_location_version_provider" not in indexes
        assert {"ix_location_version_feed", "ix_location_version_location_version"} <= indexes
    finally:
        upgrade(database_url)


def test_every_accepted_version_keeps_the_provider_it_names(
    factory: sessionmaker[Session], make_token: TokenMaker, client: TestClient
) -> None:
    token = make_token()
    unnamed = {"cqc_provider_id": None, "name": "Unregistered Care"}
    body = batch(location("1-101"), location("1-102", provider=unnamed))
    response = client.post("/api/v1/submissions", json=body, headers=bearer(token))
    assert response.status_code == 200, response.text
    with factory() as session:
        assert [
            (cqc_id, provider) for _, cqc_id, provider in store.provider_timeline(session, "1-200000001")
        ] == [("1-101", "1-200000001")]
        rows = session.execute(
            sa.text("SELECT cqc_location_id, cqc_provider_id FROM location_version ORDER BY cqc_location_id")
        ).all()
    assert [tuple(row) for row in rows] == [("1-101", "1-200000001"), ("1-102", None)]
