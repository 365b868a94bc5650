"""Migration 0019 brings the locations already held to the rule that a line of a type its
kind of provider does not offer is flagged and counted in no total: the rule is read from
the records by some outputs and from the stored columns by others, which had disagreed
after an upgrade until each location next changed (its same record again is 'unchanged')."""

from __future__ import annotations

import orjson
import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient

from gateway.store.db import alembic_config, upgrade
from tests.conftest import TokenMaker, bearer
from tests.factories import batch, location, vacancy

FLAG = "type-not-offered-by-provider"


def _json(value: object) -> object:
    """A JSON column as read by plain SQL: text on SQLite, already parsed on PostgreSQL."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def test_the_migration_flags_lines_not_offered_and_takes_them_out_of_entered_capacity(
    database_url: str, engine: sa.Engine, client: TestClient, make_token: TokenMaker
) -> None:
    token = make_token()
    mixed = location("1-1", vacancies=[vacancy("general-nursing"), vacancy("community-rehab-nhs-la")])
    plain = location("1-2", vacancies=[vacancy("general-nursing")])
    pushed = client.post(
        "/api/v1/submissions", content=orjson.dumps(batch(mixed, plain)), headers=bearer(token)
    )
    assert pushed.status_code == 200, pushed.text
    with engine.connect() as connection:
        want = connection.execute(
            sa.text("SELECT cqc_location_id, entered_capacity, quality_flags FROM location ORDER BY 1")
        ).all()
        want_lines = connection.execute(
            sa.text("SELECT cqc_location_id, line_key, quality_flags FROM vacancy_line ORDER BY 1, 2")
        ).all()
    assert FLAG in _json(want[0][2]) and FLAG not in _json(want[1][2])

    command.downgrade(alembic_config(database_url), "0018")
    try:
        # As the code before it stored them: no flag, every mapped line in entered capacity.
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "UPDATE location SET entered_capacity = entered_capacity + 10, quality_flags = '[]' "
                    "WHERE cqc_location_id = '1-1'"
                )
            )
            connection.execute(
                sa.text("UPDATE vacancy_line SET quality_flags = '[]' WHERE cqc_location_id = '1-1'")
            )
    finally:
        upgrade(database_url)

    with engine.connect() as connection:
        got = connection.execute(
            sa.text("SELECT cqc_location_id, entered_capacity, quality_flags FROM location ORDER BY 1")
        ).all()
        got_lines = connection.execute(
            sa.text("SELECT cqc_location_id, line_key, quality_flags FROM vacancy_line ORDER BY 1, 2")
        ).all()
    assert [(i, c, _json(f)) for i, c, f in got] == [(i, c, _json(f)) for i, c, f in want]
    assert [(i, k, _json(f)) for i, k, f in got_lines] == [(i, k, _json(f)) for i, k, f in want_lines]
    # The same record again is unchanged: its digest did not move.
    again = client.post("/api/v1/submissions", content=orjson.dumps(batch(mixed)), headers=bearer(token))
    assert [r["status"] for r in again.json()["records"]] == ["unchanged"]
