"""The change clock: one instant per writing transaction, never running backwards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session, sessionmaker

from gateway.store.db import transaction
from gateway.store.repository import _sqlite_instant, claim_change_clock
from gateway.store.tables import ChangeClock, table
from tests.conftest import TokenMaker
from tests.fhir.test_export import homes, kick_off, manifest, push


def test_the_clock_row_is_made_when_missing_and_moves_forward(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        session.execute(sa.delete(table(ChangeClock)))
    before = datetime.now(UTC)
    with transaction(factory) as session:
        first = claim_change_clock(session)
    with transaction(factory) as session:
        second = claim_change_clock(session)
    assert before <= first < second <= datetime.now(UTC)


def test_the_clock_never_runs_backwards(factory: sessionmaker[Session]) -> None:
    ahead = datetime.now(UTC) + timedelta(hours=1)
    with transaction(factory) as session:
        claim_change_clock(session)
        session.execute(sa.update(table(ChangeClock)).values(last=ahead))
    with transaction(factory) as session:
        first = claim_change_clock(session)
    with transaction(factory) as session:
        second = claim_change_clock(session)
        assert session.scalar(sa.select(table(ChangeClock).c.last)) == second
    # Ahead of this host's clock, each claim is still later than the one before: no two
    # transactions share an instant, so a horizon splits them cleanly.
    assert ahead < first < second < ahead + timedelta(milliseconds=1)


def test_bulk_rows_store_instants_as_sqlalchemy_reads_them_back_whatever_the_year() -> None:
    """``strftime`` leaves a year before 1000 unpadded on glibc: text no reader parsed."""
    for instant in (datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC), datetime(2026, 12, 7, 8, 9, 10, tzinfo=UTC)):
        text = _sqlite_instant(instant)
        assert text is not None and text[:4] == f"{instant.year:04d}"
        parsed = sa.DateTime().dialect_impl(sqlite.dialect()).result_processor(sqlite.dialect(), None)(text)
        assert parsed == instant.replace(tzinfo=None)


def test_a_full_export_holds_every_version_committed_before_its_kick_off_with_the_clock_ahead(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    """With the clock ahead of this host's (another host's clock ran fast), the kick-off had
    been handed the very instant of the versions before it, and ``recorded_at <
    transactionTime`` left them all out of the export."""
    with transaction(factory) as session:
        claim_change_clock(session)
        session.execute(sa.update(table(ChangeClock)).values(last=datetime.now(UTC) + timedelta(seconds=5)))
    token = make_token(scopes=("submit", "read"))
    push(client, token, *homes())
    files = {f["type"]: f["count"] for f in manifest(client, token, kick_off(client, token))["output"]}
    assert files["Location"] == 3
