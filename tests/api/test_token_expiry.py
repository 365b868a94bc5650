"""Tokens minted to expire: they work until their expiry and are refused after it, saying
so; no process trusts a cached token past its expiry; the command line mints and lists
them."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from gateway.api.app import create_app
from gateway.auth import Principal, PrincipalCache, create_token
from gateway.settings import Settings
from gateway.store.db import transaction
from gateway.store.tables import ApiToken, utcnow
from tests.conftest import GatewayCli, bearer

SOURCES = "/api/v1/sources"


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")


def test_a_token_works_until_its_expiry_then_is_refused_saying_so(
    factory: sessionmaker[Session], settings: Settings
) -> None:
    with transaction(factory) as session:
        token, plain = create_token(
            session, name="contractor", scopes=["read"], expires_at=utcnow() + timedelta(days=1)
        )
    with TestClient(create_app(settings.model_copy(update={"auth_cache_s": 0}))) as client:
        assert client.get(SOURCES, headers=bearer(plain)).status_code == 200
        expired_at = utcnow() - timedelta(minutes=1)
        with transaction(factory) as session:
            session.execute(
                sa.update(ApiToken).where(col(ApiToken.id) == token.id).values(expires_at=expired_at)
            )
        refused = client.get(SOURCES, headers=bearer(plain))
    assert refused.status_code == 401
    assert refused.json()["detail"] == (
        f"this token expired at {expired_at.isoformat(timespec='seconds')}; ask for a new one"
    )


def test_a_token_cannot_be_minted_already_expired(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session, pytest.raises(ValueError, match="must lie in the future"):
        create_token(session, name="late", scopes=["read"], expires_at=utcnow())


def test_no_process_trusts_a_cached_token_past_its_expiry() -> None:
    cache = PrincipalCache(ttl_s=60)
    soon = Principal("t1", "soon", frozenset({"read"}), frozenset(), utcnow() + timedelta(seconds=0.3))
    never = Principal("t2", "never", frozenset({"read"}), frozenset())
    cache.put("Bearer soon", soon)
    cache.put("Bearer never", never)
    assert cache.get("Bearer soon") == soon
    time.sleep(0.4)
    assert cache.get("Bearer soon") is None  # read again, and refused, from the database
    assert cache.get("Bearer never") == never  # trusted for the cache's whole time


def test_the_command_line_mints_a_token_with_an_expiry_and_lists_it(
    gateway_cli: GatewayCli, factory: sessionmaker[Session]
) -> None:
    made = gateway_cli(
        "token", "create", "--name", "contractor", "--scopes", "read", "--expires-in-days", "30"
    )
    assert made.exit_code == 0, made.output
    with factory() as session:
        token = session.scalars(sa.select(ApiToken)).one()
    assert token.expires_at is not None
    assert abs((token.expires_at - utcnow()) - timedelta(days=30)) < timedelta(minutes=1)
    assert f"expires {token.expires_at.isoformat(timespec='seconds')}" in made.output
    assert f"expires {token.expires_at.strftime('%Y-%m-%dT%H:%MZ')}; in use" in _details(
        gateway_cli, "contractor"
    )
    refused = gateway_cli("token", "create", "--name", "x", "--scopes", "read", "--expires-in-days", "0")
    assert refused.exit_code == 2 and "a token's expiry must lie in the future" in refused.output
    never = gateway_cli("token", "create", "--name", "keeper", "--scopes", "read")
    assert never.exit_code == 0 and "expires" not in never.output
    assert "expires never; in use" in _details(gateway_cli, "keeper")


def _details(gateway_cli: GatewayCli, name: str) -> str:
    """What `token list` says of the token ``name`` (on the line below its id and name)."""
    listed = gateway_cli("token", "list").output.splitlines()
    return listed[next(i for i, line in enumerate(listed) if line.endswith(f"  {name}")) + 1]
