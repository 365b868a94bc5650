"""``gateway token``: mint, list and revoke; a revoked token is refused."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from gateway.api.app import create_app
from gateway.settings import Settings
from gateway.store.tables import ApiToken
from tests.conftest import GatewayCli, bearer

SOURCES = "/api/v1/sources"


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wide enough that tables and error boxes keep each line whole."""
    monkeypatch.setenv("COLUMNS", "250")


def mint(gateway_cli: GatewayCli, name: str) -> str:
    result = gateway_cli("token", "create", "--name", name, "--scopes", "read")
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def ids_named(factory: sessionmaker[Session], name: str) -> list[str]:
    with factory() as session:
        return list(session.scalars(sa.select(col(ApiToken.id)).where(col(ApiToken.name) == name)))


def revoked(factory: sessionmaker[Session]) -> set[str]:
    with factory() as session:
        return set(
            session.scalars(sa.select(col(ApiToken.name)).where(col(ApiToken.revoked_at).is_not(None)))
        )


def test_a_token_revoked_by_id_is_refused_and_listed_as_revoked(
    gateway_cli: GatewayCli, factory: sessionmaker[Session], settings: Settings
) -> None:
    plain = mint(gateway_cli, "discharge-hub")
    kept = mint(gateway_cli, "planner")
    [token_id] = ids_named(factory, "discharge-hub")
    with TestClient(create_app(settings.model_copy(update={"auth_cache_s": 0}))) as client:
        assert client.get(SOURCES, headers=bearer(plain)).status_code == 200
        result = gateway_cli("token", "revoke", token_id)
        assert result.exit_code == 0, result.output
        assert f"revoked {token_id} (discharge-hub)" in result.output
        refused = client.get(SOURCES, headers=bearer(plain))
        assert refused.status_code == 401
        assert refused.json()["detail"] == "unknown or revoked token"
        assert client.get(SOURCES, headers=bearer(kept)).status_code == 200
    listing = gateway_cli("token", "list").output.splitlines()
    # Each token's id and name, then the rest on the line below.
    rows = {
        name: listing[i + 1]
        for i, line in enumerate(listing)
        for name in ("discharge-hub", "planner")
        if line.endswith(f"  {name}")
    }
    # Created and revoked for the one, created only for the other.
    assert re.search(
        r"created \d{4}-\d\d-\d\dT\d\d:\d\dZ; expires never; revoked \d{4}-\d\d-\d\dT\d\d:\d\dZ$",
        rows["discharge-hub"],
    )
    assert re.search(r"created \d{4}-\d\d-\d\dT\d\d:\d\dZ; expires never; in use$", rows["planner"])
    assert revoked(factory) == {"discharge-hub"}


def test_revoking_by_name_revokes_every_token_of_that_name_still_in_use(
    gateway_cli: GatewayCli, factory: sessionmaker[Session]
) -> None:
    for _ in range(2):
        mint(gateway_cli, "tracker-london")
    mint(gateway_cli, "tracker-midlands")
    result = gateway_cli("token", "revoke", "--name", "tracker-london")
    assert result.exit_code == 0, result.output
    assert result.output.count("(tracker-london)") == 2
    assert revoked(factory) == {"tracker-london"}
    again = gateway_cli("token", "revoke", "--name", "tracker-london")
    assert again.exit_code == 2
    assert "no token named 'tracker-london' is still in use" in again.output


def test_a_mistyped_or_already_revoked_id_is_an_error_not_a_silent_success(
    gateway_cli: GatewayCli, factory: sessionmaker[Session]
) -> None:
    mint(gateway_cli, "discharge-hub")
    [token_id] = ids_named(factory, "discharge-hub")
    unknown = gateway_cli("token", "revoke", "no-such-id")
    assert unknown.exit_code == 2
    assert "no token has the id 'no-such-id'" in unknown.output
    assert gateway_cli("token", "revoke", token_id).exit_code == 0
    twice = gateway_cli("token", "revoke", token_id)
    assert twice.exit_code == 2
    assert "already revoked" in twice.output
    neither = gateway_cli("token", "revoke")
    assert neither.exit_code == 2
    assert "by its id or by its name" in neither.output


def test_token_list_shows_every_id_whole_in_an_80_column_terminal(
    gateway_cli: GatewayCli, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`token revoke` takes the id `token list` shows, so the listing never cuts it short."""
    from rich.console import Console

    from gateway import cli

    monkeypatch.setattr(cli, "console", Console(width=80))
    mint(gateway_cli, "tracker-north-east-and-yorkshire")
    [token_id] = ids_named(factory, "tracker-north-east-and-yorkshire")
    listing = gateway_cli("token", "list")
    assert listing.exit_code == 0, listing.output
    assert token_id in listing.output
    assert max(len(line) for line in listing.output.splitlines()) <= 80
    assert "…" not in listing.output


def test_a_name_no_push_could_be_recorded_under_or_a_span_past_the_calendar_is_refused(
    gateway_cli: GatewayCli, factory: sessionmaker[Session]
) -> None:
    """A token's name is its pushes' source (80 characters at most): a longer one was
    minted, then every push it made failed on PostgreSQL. A span of days past the last
    date Python holds was a traceback."""
    too_long = gateway_cli("token", "create", "--name", "t" * 81, "--scopes", "submit")
    assert too_long.exit_code != 0 and "1 to 80 characters" in too_long.output
    assert ids_named(factory, "t" * 81) == []
    assert mint(gateway_cli, "t" * 80).startswith("ccg_")
    forever = gateway_cli(
        "token", "create", "--name", "x", "--scopes", "read", "--expires-in-days", "3000000"
    )
    assert forever.exit_code == 2 and "Traceback" not in forever.output
    assert ids_named(factory, "x") == []
    discard = gateway_cli("discard-bodies", "--older-than-days", "1000000")
    assert discard.exit_code == 2 and "Traceback" not in discard.output
