"""Push body retention: raw bodies older than the retention period are discarded, by the
scheduler or the command line, while each push's record, answer and counts, the data it
carried and the answers to idempotent retries stay."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import Result

from gateway.api.app import create_app
from gateway.ingest.retention import discard_old_bodies
from gateway.settings import Settings
from gateway.store.db import alembic_config, create_engine, session_factory, transaction, upgrade
from gateway.store.sources import acquire_lease
from gateway.store.tables import LocationVersion, Submission, UTCDateTime, utcnow
from tests.conftest import GatewayCli, TokenMaker, bearer, sqlite_plan, statements_run
from tests.factories import batch, location

URL = "/api/v1/submissions"


def _push(client: TestClient, token: str, cqc_id: str, key: str | None = None) -> dict[str, object]:
    headers = {**bearer(token), "Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    response = client.post(URL, content=orjson.dumps(batch(location(cqc_id))), headers=headers)
    assert response.status_code == 200
    answer: dict[str, object] = response.json()
    return answer


def _age(factory: sessionmaker[Session], submission_id: object, days: float) -> None:
    """Make a push look as if it had been received ``days`` ago."""
    with transaction(factory) as session:
        pushed = session.get(Submission, submission_id)
        assert pushed is not None
        pushed.received_at = utcnow() - timedelta(days=days)


def _pushes(factory: sessionmaker[Session]) -> dict[str, Submission]:
    with factory() as session:
        return {s.id: s for s in session.scalars(sa.select(Submission))}


def test_old_bodies_go_and_everything_else_stays(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    token = make_token(name="tracker-north-west")
    old_keyed = _push(client, token, "1-100000001", key="push-1")
    old = _push(client, token, "1-100000002")
    recent = _push(client, token, "1-100000003")
    _age(factory, old_keyed["submission_id"], days=10)
    _age(factory, old["submission_id"], days=8)
    _age(factory, recent["submission_id"], days=6)
    before = _pushes(factory)

    totals: list[int] = []
    assert discard_old_bodies(factory, timedelta(days=7), batch=1, progress=totals.append) == 2
    assert totals == [1, 2]  # a batch at a time, oldest first

    after = _pushes(factory)
    for answer in (old_keyed, old):
        pushed = after[str(answer["submission_id"])]
        assert pushed.body is None
        assert pushed.body_discarded_at is not None
        kept = before[pushed.id]
        # The push's record stays: who, when, its digest, the answer and the counts.
        assert (pushed.source, pushed.request_hash, pushed.received_at) == (
            kept.source,
            kept.request_hash,
            kept.received_at,
        )
        assert (pushed.status_code, pushed.response, pushed.accepted) == (200, answer, 1)
    kept_recent = after[str(recent["submission_id"])]
    assert kept_recent.body == before[kept_recent.id].body
    assert kept_recent.body_discarded_at is None
    # The data the pushes carried is still in the national view and its history.
    with factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(LocationVersion)) == 3
    for cqc_id in ("1-100000001", "1-100000002", "1-100000003"):
        assert client.get(f"/api/v1/locations/{cqc_id}", headers=bearer(token)).status_code == 200
    # A retry of the old push is answered as the first time, its body long gone; a new body
    # under the same key is still refused, by the digest kept.
    retry = client.post(
        URL,
        content=orjson.dumps(batch(location("1-100000001"))),
        headers={**bearer(token), "Content-Type": "application/json", "Idempotency-Key": "push-1"},
    )
    assert retry.status_code == 200
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == old_keyed
    reused = client.post(
        URL,
        content=orjson.dumps(batch(location("1-100000009"))),
        headers={**bearer(token), "Content-Type": "application/json", "Idempotency-Key": "push-1"},
    )
    assert reused.status_code == 422
    # The pushing source's health still reads its pushes.
    sources = client.get("/api/v1/sources", headers=bearer(token)).json()["sources"]
    (health,) = [s for s in sources if s["source"] == "tracker-north-west"]
    assert health["last_successful_sync"] == kept_recent.received_at.isoformat()
    # Nothing older is left: a second pass discards nothing and touches nothing.
    assert discard_old_bodies(factory, timedelta(days=7)) == 0
    assert {s.id: s.body_discarded_at for s in _pushes(factory).values()} == {
        s.id: s.body_discarded_at for s in after.values()
    }


def test_a_negative_retention_is_refused(factory: sessionmaker[Session]) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        discard_old_bodies(factory, timedelta(days=-1))
    with pytest.raises(ValidationError, match="push_body_retention_days"):
        Settings(push_body_retention_days=-1)


def test_the_scheduler_discards_old_bodies_only_when_retention_is_set(
    settings: Settings, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    token = make_token()
    with TestClient(create_app(settings)) as client:  # the scheduler off: push first
        pushed = _push(client, token, "1-100000001")
    _age(factory, pushed["submission_id"], days=3)

    # Without a retention period the scheduler has no such job, and the body stays.
    keep = settings.model_copy(update={"scheduler_enabled": True})
    with TestClient(create_app(keep)) as client:
        scheduler = client.app.state.scheduler  # type: ignore[attr-defined]
        assert scheduler.scheduler.get_job("push-body-retention") is None
    assert _pushes(factory)[str(pushed["submission_id"])].body is not None

    retain = keep.model_copy(update={"push_body_retention_days": 2.0, "housekeeping_interval_s": 3600.0})
    with TestClient(create_app(retain)):
        deadline = time.monotonic() + 20  # the job runs once as the gateway starts
        while _pushes(factory)[str(pushed["submission_id"])].body is not None:
            assert time.monotonic() < deadline, "the scheduler never discarded the old body"
            time.sleep(0.1)


def test_the_command_discards_by_option_or_setting_and_refuses_when_it_cannot(
    client: TestClient,
    make_token: TokenMaker,
    factory: sessionmaker[Session],
    gateway_cli: GatewayCli,
) -> None:
    token = make_token()
    pushes = [_push(client, token, f"1-10000000{n}") for n in range(1, 4)]
    for answer, days in zip(pushes, (30, 10, 1), strict=True):
        _age(factory, answer["submission_id"], days=days)

    def discard(*args: str, days: str | None = None) -> Result:
        return gateway_cli("discard-bodies", *args, GATEWAY_PUSH_BODY_RETENTION_DAYS=days)

    no_period = discard()
    assert no_period.exit_code == 2
    assert "GATEWAY_PUSH_BODY_RETENTION_DAYS" in no_period.output
    negative = discard("--older-than-days", "-1")
    assert negative.exit_code == 2

    # The setting, then the option over the setting.
    by_setting = discard(days="20")
    assert by_setting.exit_code == 0, by_setting.output
    assert "discarded the raw bodies of 1 pushes received more than 20 days ago" in by_setting.output
    by_option = discard("--older-than-days", "5", days="20")
    assert by_option.exit_code == 0, by_option.output
    assert "of 1 pushes" in by_option.output
    kept = _pushes(factory)
    assert [kept[str(p["submission_id"])].body is None for p in pushes] == [True, True, False]

    # While a gateway process runs the job, the command says so and discards nothing.
    with transaction(factory) as session:
        assert acquire_lease(
            session, "push-body-retention", "another-process", utcnow(), timedelta(minutes=5)
        )
    held = discard("--older-than-days", "0")
    assert held.exit_code == 1
    assert "running in another gateway process" in held.output
    assert _pushes(factory)[str(pushes[2]["submission_id"])].body is not None


def test_the_migration_keeps_bodies_and_its_downgrade_leaves_discarded_ones_empty(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    upgrade(url, "0012")
    engine = create_engine(url)
    try:
        now = utcnow()
        # The table as revision 0012 had it (the model is the next revision's).
        names = ("id", "source", "token_id", "request_hash", "accepted", "unchanged", "stale", "rejected")
        at_0012 = sa.table(
            "submission",
            *map(sa.column, names),
            sa.column("body", sa.LargeBinary()),
            sa.column("received_at", UTCDateTime()),
        )
        with engine.begin() as connection:
            for n, body in enumerate((b'{"locations": []}', b"x" * 100_000)):
                row = dict(zip(names, (f"push-{n}", "s", "t", "h", 0, 0, 0, 0), strict=True))
                received = now - timedelta(days=n * 10)
                connection.execute(sa.insert(at_0012).values(**row, body=body, received_at=received))
        upgrade(url)
        factory = session_factory(engine)
        assert {s.id: s.body for s in _pushes(factory).values()} == {
            "push-0": b'{"locations": []}',
            "push-1": b"x" * 100_000,
        }
        assert discard_old_bodies(factory, timedelta(days=5)) == 1
        engine.dispose()
        command.downgrade(alembic_config(url), "0012")
        with engine.connect() as connection:
            rows = dict(connection.execute(sa.text("SELECT id, body FROM submission")).all())
            columns = {row[1]: row[3] for row in connection.execute(sa.text("PRAGMA table_info(submission)"))}
        assert rows == {"push-0": b'{"locations": []}', "push-1": b""}
        assert "body_discarded_at" not in columns
        assert columns["body"] == 1  # NOT NULL again
    finally:
        engine.dispose()


def test_the_bodies_still_kept_are_found_from_an_index(
    engine: sa.Engine, factory: sessionmaker[Session]
) -> None:
    """Each pass finds the oldest bodies still kept without walking the pushes whose bodies
    went before (they grow by thousands a day) or sorting."""
    if engine.dialect.name != "sqlite":
        pytest.skip("query plans are read from SQLite")
    with statements_run(engine, "SELECT") as selects:
        discard_old_bodies(factory, timedelta(days=1))
    assert len(selects) == 1
    plan = sqlite_plan(engine, selects[0])
    assert plan == [
        "SEARCH submission USING INDEX ix_submission_kept_body (body_discarded_at=? AND received_at<?)"
    ], plan


def test_a_stopped_discard_begins_no_further_batch(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    token = make_token(name="tracker-north-west")
    for n in range(3):
        _age(factory, _push(client, token, f"1-10000000{n}")["submission_id"], days=10)
    stop = threading.Event()
    # Ctrl-C while the first batch is under way: it ends, and no other begins.
    assert (
        discard_old_bodies(factory, timedelta(days=7), batch=1, progress=lambda _: stop.set(), stop=stop) == 1
    )
    assert discard_old_bodies(factory, timedelta(days=7), batch=1) == 2  # the rest, next time


def test_work_in_a_thread_stopped_holds_on_until_the_thread_ends() -> None:
    """Ctrl-C on ``gateway reconcile`` or ``discard-bodies``: the lease around the work
    is given up only once the thread has ended (it had gone at once, so a gateway process
    could take it and run the same work beside the thread), and the work is told to stop."""
    from gateway.cli import _thread_to_its_end

    started, release, stop = threading.Event(), threading.Event(), threading.Event()

    def work() -> int:
        started.set()
        release.wait(10)
        return 7

    async def main() -> None:
        task = asyncio.ensure_future(_thread_to_its_end(work, stop))
        await asyncio.to_thread(started.wait, 10)
        task.cancel()
        await asyncio.sleep(0.1)
        assert not task.done() and stop.is_set()  # still waiting for the thread
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
