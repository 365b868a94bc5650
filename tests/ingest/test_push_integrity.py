"""What no push can do: place a registered location in its own region, pin a location
with a time from the future, lose a record to a concurrent push, or leave its retries
answered 'still being processed' after the gateway failed it."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from gateway.auth import ALL_REGIONS, Principal
from gateway.errors import Conflict
from gateway.ingest import service, submissions
from gateway.store import repository
from gateway.store.db import transaction
from gateway.store.tables import Location, Submission, utcnow
from tests.conftest import TokenMaker, bearer
from tests.factories import batch, location
from tests.reconcile.test_reconcile import registry

URL = "/api/v1/submissions"


def _push(client: TestClient, token: str, *records: dict[str, Any], key: str | None = None) -> Any:
    headers = {**bearer(token), "Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    return client.post(URL, content=orjson.dumps(batch(*records)), headers=headers)


def test_a_registered_location_is_in_the_registrys_region_whoever_pushes_it_first(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    with transaction(factory) as session:
        session.add(registry("1-500", nhs_region="south-west", postcode="BS1 4DJ"))
    north_west = make_token(name="tracker-north-west", regions=("north-west",))
    south_west = make_token(name="tracker-south-west", regions=("south-west",))
    # A Manchester postcode and a declared north-west do not move it out of the South West.
    refused = _push(client, north_west, location("1-500"))
    assert refused.status_code == 403
    assert "1-500 (south-west)" in refused.json()["detail"]
    accepted = _push(client, south_west, location("1-500", region="south-west"))
    assert accepted.status_code == 200 and accepted.json()["records"][0]["status"] == "accepted"
    with factory() as session:
        stored = session.get(Location, "1-500")
        assert stored is not None and (stored.nhs_region, stored.source) == (
            "south-west",
            "tracker-south-west",
        )
    # A location the registry does not know still goes by its postcode.
    assert _push(client, north_west, location("1-501")).json()["records"][0]["status"] == "accepted"


def test_a_time_from_the_future_is_refused_and_never_pins_the_location(
    client: TestClient, make_token: TokenMaker
) -> None:
    token = make_token()
    answer = _push(
        client, token, location("1-100000001", updated_at="2099-01-01T00:00:00Z"), location("1-102")
    )
    assert answer.status_code == 200
    first, second = answer.json()["records"]
    assert first["status"] == "rejected" and second["status"] == "accepted"
    (error,) = first["errors"]
    assert error["pointer"] == "/locations/0/updated_at"
    assert "minutes ahead of the gateway's clock" in error["message"]
    # A few minutes' skew is allowed; the location then takes later, true updates.
    assert _push(client, token, location("1-100000001")).json()["records"][0]["status"] == "accepted"


def _principal(factory: sessionmaker[Session]) -> Principal:
    with factory() as session:
        token = repository.list_tokens(session)[0]
    return Principal(token.id, token.name, frozenset({"submit"}), frozenset({ALL_REGIONS}))


def test_concurrent_pushes_of_one_new_location_take_turns_and_the_newer_wins(
    make_token: TokenMaker, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_token()
    principal = _principal(factory)
    real = repository.held_locations

    def slow(session: Session, ids: Any) -> Any:
        found = real(session, ids)
        time.sleep(0.3)  # between reading what is held and writing
        return found

    monkeypatch.setattr(repository, "held_locations", slow)
    outcomes: dict[str, Any] = {}

    def push(name: str, updated_at: str) -> None:
        body = orjson.dumps(batch(location(updated_at=updated_at, name=name)))
        try:
            outcomes[name] = submissions.receive_submission(factory, principal, body).body["records"][0][
                "status"
            ]
        except Exception as error:  # noqa: BLE001 - the test reports what failed
            outcomes[name] = repr(error)

    newer = threading.Thread(target=push, args=("Newer", "2026-11-21T09:00:00Z"))
    older = threading.Thread(target=push, args=("Older", "2026-11-20T09:00:00Z"))
    newer.start()
    time.sleep(0.1)
    older.start()
    newer.join()
    older.join()
    assert outcomes == {"Newer": "accepted", "Older": "stale"}
    with factory() as session:
        stored = session.get(Location, "1-100000001")
        assert stored is not None and stored.name == "Newer"


def test_a_push_the_gateway_failed_is_processed_again_when_retried_with_its_key(
    make_token: TokenMaker, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_token()
    principal = _principal(factory)
    body = orjson.dumps(batch(location()))
    real = service.apply_prepared

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the store went away")

    monkeypatch.setattr(service, "apply_prepared", broken)
    with pytest.raises(RuntimeError):
        submissions.receive_submission(factory, principal, body, idempotency_key="push-7")
    with factory() as session:
        (failed,) = session.scalars(sa.select(Submission)).all()
    assert (failed.status_code, failed.idempotency_key, failed.accepted) == (500, None, 0)
    assert failed.response is not None and failed.response["idempotency_key"] == "push-7"
    assert failed.body == body  # kept, as every body is

    monkeypatch.setattr(service, "apply_prepared", real)
    retried = submissions.receive_submission(factory, principal, body, idempotency_key="push-7")
    assert retried.status_code == 200 and not retried.replayed
    assert retried.body["records"][0]["status"] == "accepted"
    again = submissions.receive_submission(factory, principal, body, idempotency_key="push-7")
    assert again.replayed and again.body == retried.body


def test_a_push_still_in_progress_is_answered_409_to_a_retry(
    make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    """A retry while the first is being applied is told so (the first has not failed)."""
    make_token()
    principal = _principal(factory)
    with transaction(factory) as session:
        session.add(
            Submission(
                id="in-flight",
                source=principal.name,
                token_id=principal.token_id,
                idempotency_key="push-8",
                request_hash=hashlib.sha256(b"{}").hexdigest(),
                body=b"{}",
                received_at=utcnow(),
            )
        )
    with pytest.raises(Conflict, match="still being processed"):
        submissions.receive_submission(factory, principal, b"{}", idempotency_key="push-8")
