"""A push kept but never answered (its process killed, or its database failing before
the failure could be recorded) does not hold its Idempotency-Key for ever: once
ABANDONED_AFTER has passed, a retry with the same key and body is processed afresh and the
abandoned push says so; before that, or with another body, the retry is answered as
before (409, 422)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

import orjson
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from gateway.ingest.submissions import ABANDONED_AFTER
from gateway.store import repository
from gateway.store.db import transaction
from gateway.store.tables import ApiToken, Submission, utcnow
from tests.conftest import TokenMaker, bearer
from tests.factories import batch, location

URL = "/api/v1/submissions"


def _kept_unanswered(
    factory: sessionmaker[Session], token: str, body: bytes, key: str, age: timedelta
) -> str:
    """A push kept ``age`` ago with ``key`` whose answer was never recorded."""
    with transaction(factory) as session:
        token_id = repository.token_by_hash(session, hashlib.sha256(token.encode()).hexdigest())
        assert isinstance(token_id, ApiToken)
        submission = Submission(
            id=str(uuid.uuid4()),
            source=token_id.name,
            token_id=token_id.id,
            idempotency_key=key,
            request_hash=hashlib.sha256(body).hexdigest(),
            content_type="application/json",
            body=body,
            received_at=utcnow() - age,
        )
        repository.add_submission(session, submission)
        return submission.id


def _push(client: TestClient, token: str, body: bytes, key: str):  # type: ignore[no-untyped-def]
    headers = {**bearer(token), "Content-Type": "application/json", "Idempotency-Key": key}
    return client.post(URL, content=body, headers=headers)


def test_a_retry_of_an_abandoned_push_is_processed_afresh(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    token = make_token()
    body = orjson.dumps(batch(location()))
    abandoned = _kept_unanswered(factory, token, body, "k-1", ABANDONED_AFTER + timedelta(minutes=1))
    retried = _push(client, token, body, "k-1")
    assert retried.status_code == 200, retried.text
    assert "Idempotent-Replayed" not in retried.headers
    assert [r["status"] for r in retried.json()["records"]] == ["accepted"]
    old = client.get(f"{URL}/{abandoned}", headers=bearer(token)).json()
    assert old["status_code"] == 500 and old["idempotency_key"] is None
    assert "stopped before answering this push and applied none of it" in old["answer"]["detail"]
    again = _push(client, token, body, "k-1")  # the key now names the retry's answer
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["submission_id"] == retried.json()["submission_id"]


def test_a_push_not_yet_abandoned_or_retried_with_another_body_is_answered_as_before(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    token = make_token()
    body = orjson.dumps(batch(location()))
    _kept_unanswered(factory, token, body, "recent", timedelta(minutes=1))
    assert _push(client, token, body, "recent").status_code == 409  # still being processed
    _kept_unanswered(factory, token, body, "old", ABANDONED_AFTER + timedelta(minutes=1))
    other = orjson.dumps(batch(location("1-100000002")))
    refused = _push(client, token, other, "old")
    assert refused.status_code == 422 and "different body" in refused.json()["detail"]
