"""Each process trusts a token it has checked for a few seconds (GATEWAY_AUTH_CACHE_S),
then reads it again: a revoked token stops working within that time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from gateway.api.app import create_app
from gateway.auth import Principal, PrincipalCache
from gateway.settings import Settings
from gateway.store.db import transaction
from gateway.store.tables import ApiToken, utcnow
from tests.conftest import TokenMaker, bearer

SOURCES = "/api/v1/sources"


def revoke(factory: sessionmaker[Session], name: str) -> None:
    with transaction(factory) as session:
        session.execute(sa.update(ApiToken).where(ApiToken.name == name).values(revoked_at=utcnow()))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    now = [1000.0]
    monkeypatch.setattr("gateway.auth.time.monotonic", lambda: now[0])
    yield now


def test_a_revoked_token_stops_working_once_the_cache_lapses(
    settings: Settings,
    engine: sa.Engine,
    factory: sessionmaker[Session],
    make_token: TokenMaker,
    clock: list[float],
) -> None:
    token = make_token(name="ward-team", scopes=("read",))
    with TestClient(create_app(settings.model_copy(update={"auth_cache_s": 5.0}))) as client:
        assert client.get(SOURCES, headers=bearer(token)).status_code == 200
        revoke(factory, "ward-team")
        clock[0] += 4.9
        assert client.get(SOURCES, headers=bearer(token)).status_code == 200
        clock[0] += 0.2
        response = client.get(SOURCES, headers=bearer(token))
        assert response.status_code == 401
        assert "revoked" in response.json()["detail"]


def test_without_the_cache_every_request_reads_the_token(
    settings: Settings, engine: sa.Engine, factory: sessionmaker[Session], make_token: TokenMaker
) -> None:
    token = make_token(name="ward-team", scopes=("read",))
    with TestClient(create_app(settings.model_copy(update={"auth_cache_s": 0.0}))) as client:
        assert client.get(SOURCES, headers=bearer(token)).status_code == 200
        revoke(factory, "ward-team")
        assert client.get(SOURCES, headers=bearer(token)).status_code == 401


def test_unknown_tokens_are_not_cached_and_the_cache_stays_bounded(clock: list[float]) -> None:
    cache = PrincipalCache(ttl_s=5.0, max_size=3)
    assert cache.get("Bearer nobody") is None
    for n in range(5):
        cache.put(f"Bearer t{n}", Principal(f"id{n}", f"t{n}", frozenset({"read"}), frozenset()))
    assert cache.get("Bearer t4") is not None
    assert sum(cache.get(f"Bearer t{n}") is not None for n in range(5)) <= 3
