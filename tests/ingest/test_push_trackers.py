"""The pushing regional trackers' simulator against a real gateway over loopback HTTP:
compressed pushes, idempotent retries, a tracker refused outside its region."""

from __future__ import annotations

from pathlib import Path

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from gateway.api.app import create_app
from gateway.settings import Settings
from gateway.store.tables import Location, Submission
from simulators.push_trackers import main, push_region
from simulators.server import run_in_thread
from tests.conftest import TokenMaker
from tests.factories import batch, location


def write(path: Path, body: dict[str, object]) -> Path:
    path.write_bytes(orjson.dumps(body))
    return path


def test_a_tracker_pushes_its_batches_over_http_and_a_retry_is_a_replay(
    settings: Settings, make_token: TokenMaker, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    first = write(tmp_path / "north-west-1.json", batch(location("1-100000001"), location("1-100000002")))
    second = write(tmp_path / "north-west-2.json", batch(location("1-100000003")))
    token = make_token(name="tracker-north-west", regions=("north-west",))
    with run_in_thread(create_app(settings)) as url:
        results = push_region(url, token, [first, second, first])
    assert [(r.file, r.status_code) for r in results] == [
        ("north-west-1.json", 200),
        ("north-west-2.json", 200),
        ("north-west-1.json", 200),
    ]
    assert results[0].summary["accepted"] == 2 and results[1].summary["accepted"] == 1
    assert results[2].summary == results[0].summary  # replayed, not judged again
    with factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Location)) == 3
        kept = list(session.scalars(sa.select(col(Submission.body)).order_by(col(Submission.received_at))))
    # Sent compressed, kept as the tracker's JSON; the retry made no second submission.
    assert kept == [first.read_bytes(), second.read_bytes()]


def test_the_command_reports_a_refused_push_and_fails(
    settings: Settings,
    make_token: TokenMaker,
    tmp_path: Path,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    elsewhere = write(
        tmp_path / "london.json",
        batch(
            location(
                "1-100000001",
                region="london",
                local_authority="Westminster",
                address={"line1": "1 Whitehall", "town": "London", "postcode": "SW1A 2AA"},
            )
        ),
    )
    token = make_token(name="tracker-north-west", regions=("north-west",))
    with run_in_thread(create_app(settings)) as url:
        status = main(["--gateway", url, "--token", token, str(elsewhere)])
    assert status == 1
    assert "london.json: HTTP 403" in capsys.readouterr().out
