"""Commands that read or write the database say plainly when it cannot serve them (never
migrated, not answering, a SQLite file not there), exit status 2, instead of a traceback
quoting SQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlalchemy as sa

from tests.conftest import GatewayCli


def test_a_database_never_migrated_is_named_with_what_to_run(gateway_cli: GatewayCli, tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "empty.db").close()
    for command in (["sources"], ["token", "list"], ["token", "revoke", "--name", "x"]):
        done = gateway_cli(*command, GATEWAY_DATABASE_URL=f"sqlite:///{tmp_path / 'empty.db'}")
        assert done.exit_code == 2, (command, done.output)
        assert (
            "GATEWAY_DATABASE_URL: the database has no gateway schema: run gateway db upgrade" in done.output
        )
        assert "SELECT" not in done.output


def test_a_database_that_does_not_answer_is_said_without_its_password(gateway_cli: GatewayCli) -> None:
    done = gateway_cli(
        "sources", GATEWAY_DATABASE_URL="postgresql+psycopg://gw:not-shown@127.0.0.1:1/gateway"
    )
    assert done.exit_code == 2, done.output
    assert "GATEWAY_DATABASE_URL: the database does not answer (psycopg.OperationalError)" in done.output
    assert "not-shown" not in done.output


def test_a_migrated_database_is_read(gateway_cli: GatewayCli) -> None:
    assert gateway_cli("sources").exit_code == 0


def test_a_sqlite_file_that_is_not_there_is_named_not_created(
    gateway_cli: GatewayCli, tmp_path: Path
) -> None:
    """A mistyped path is not made an empty database said to want gateway db upgrade
    (which would make a second, empty gateway there)."""
    missing = tmp_path / "gatewya.db"
    for command in (["sources"], ["token", "list"], ["token", "revoke", "--name", "x"]):
        done = gateway_cli(*command, GATEWAY_DATABASE_URL=f"sqlite:///{missing}")
        assert done.exit_code == 2, (command, done.output)
        assert f"GATEWAY_DATABASE_URL: there is no database file at {missing}" in done.output
        assert not missing.exists()


CQC = {"GATEWAY_CQC_BASE_URL": "http://127.0.0.1:1", "GATEWAY_CQC_SUBSCRIPTION_KEY": "k"}


def test_commands_that_write_say_so_too_when_the_database_does_not_answer(gateway_cli: GatewayCli) -> None:
    """``reconcile`` and ``sync`` migrate first, then hold a lease (``serve`` and ``db
    upgrade`` migrate): a database down (or gone mid-run) is said in one line, exit status
    2, not a page of traceback."""
    url = "postgresql+psycopg://gw:not-shown@127.0.0.1:1/gateway"
    for command in (["reconcile"], ["sync", "cqc"], ["db", "upgrade"], ["serve"]):
        done = gateway_cli(*command, GATEWAY_DATABASE_URL=url, **CQC)
        assert done.exit_code == 2, (command, done.output)
        assert "GATEWAY_DATABASE_URL: the database does not answer (psycopg.OperationalError)" in done.output
        assert "Traceback" not in done.output and "not-shown" not in done.output


def test_a_command_says_what_went_wrong_on_stderr_not_in_its_output(gateway_cli: GatewayCli) -> None:
    """A script that takes a command's output (``TOKEN=$(gateway token create ...)``) gets
    nothing from a command that failed, never the error as if it were the token."""
    for command in (["token", "create", "--name", "t", "--scopes", "read"], ["sources", "--json"]):
        done = gateway_cli(*command, GATEWAY_DATABASE_URL="postgresql+psycopg://gw:x@127.0.0.1:1/gateway")
        assert done.exit_code == 2, (command, done.output)
        assert done.stdout == ""
        assert "GATEWAY_DATABASE_URL: the database does not answer" in done.stderr


def test_a_database_a_newer_release_migrated_is_left_as_it_is_and_served(
    gateway_cli: GatewayCli, engine: sa.Engine
) -> None:
    """A rolling deploy migrates first; the release before keeps serving (readyz says so).
    Its commands that migrate first leave such a database alone, saying so, where each had
    ended in a traceback on the revision it did not know."""
    version = sa.text("SELECT version_num FROM alembic_version")
    with engine.begin() as connection:
        ours = connection.scalar(version)
        connection.execute(sa.text("UPDATE alembic_version SET version_num = 'ffffffffffff'"))
    try:
        for command in (
            ["db", "upgrade"],
            ["token", "create", "--name", "after-the-deploy", "--scopes", "read"],
            ["reconcile"],
            ["discard-bodies", "--older-than-days", "30"],
        ):
            done = gateway_cli(*command)
            assert done.exit_code == 0, (command, done.output)
            assert "not migrated: the database schema is at revision ffffffffffff, newer than" in done.stderr
            assert "Traceback" not in done.output
        assert "after-the-deploy" in gateway_cli("token", "list").stdout
        with engine.connect() as connection:
            assert connection.scalar(version) == "ffffffffffff"
    finally:  # the suite's database is shared
        with engine.begin() as connection:
            connection.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": ours})
