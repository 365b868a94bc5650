"""POST /api/v1/submissions/check: a tracker tries a batch and is told what a push of it
would do to each record (the same checks, regions and precedence), and nothing is
written: no kept body, no version, no change to the national view or its feed."""

from __future__ import annotations

import gzip

import orjson
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from gateway.store.tables import Location, LocationVersion, Submission, table
from tests.conftest import TokenMaker, bearer
from tests.factories import batch, location, vacancy

CHECK = "/api/v1/submissions/check"
PUSH = "/api/v1/submissions"


def _post(client: TestClient, url: str, token: str, body: object, **headers: str):  # type: ignore[no-untyped-def]
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(
        url, content=data, headers={**bearer(token), "Content-Type": "application/json", **headers}
    )


def _rows(factory: sessionmaker[Session]) -> tuple[int, int, int]:
    with factory() as session:
        return tuple(  # type: ignore[return-value]
            session.execute(sa.select(sa.func.count()).select_from(table(model))).scalar_one()
            for model in (Location, LocationVersion, Submission)
        )


def test_a_check_answers_as_the_push_would_and_writes_nothing(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    token = make_token(name="tracker-north-west", regions=("north-west",))
    broken = vacancy(occupied=30)  # past its capacity: kept, and flagged
    body = batch(
        location("1-100000001"),
        location("1-100000002", vacancies=[vacancy(occupied=-3)]),
        location("1-100000003", vacancies=[broken]),
    )
    checked = _post(client, CHECK, token, body)
    assert checked.status_code == 200, checked.text
    answer = checked.json()
    assert answer["dry_run"] is True and answer["source"] == "tracker-north-west"
    assert answer["summary"] == {"accepted": 2, "unchanged": 0, "stale": 0, "rejected": 1}
    records = answer["records"]
    assert [r["status"] for r in records] == ["accepted", "rejected", "accepted"]
    assert records[1]["errors"][0]["pointer"] == "/locations/1/vacancies/0/occupied"
    assert "capacity-invariant-broken" in records[2]["quality_flags"]
    assert all("version_id" not in r for r in records)  # none was kept
    assert _rows(factory) == (0, 0, 0)
    assert client.get("/api/v1/locations/1-100000001", headers=bearer(token)).status_code == 404
    feed = client.get("/fhir/Location/_history", headers=bearer(token)).json()
    assert feed.get("total", 0) == 0 and not feed.get("entry")
    assert client.get(PUSH, headers=bearer(token)).json()["submissions"] == []  # not in the log

    pushed = _post(client, PUSH, token, body).json()  # the push does what the check said
    assert pushed["summary"] == answer["summary"]
    assert [r["status"] for r in pushed["records"]] == [r["status"] for r in records]
    again = _post(client, CHECK, token, body).json()  # and a check now sees what is held
    assert [r["status"] for r in again["records"]] == ["unchanged", "rejected", "unchanged"]
    older = _post(client, CHECK, token, batch(location("1-100000001", updated_at="2026-11-19T09:00:00Z")))
    assert older.json()["records"][0]["status"] == "stale"
    assert _rows(factory) == (2, 2, 1)


def test_a_check_is_refused_as_the_push_would_be(client: TestClient, make_token: TokenMaker) -> None:
    tracker = make_token(name="tracker-north-west", regions=("north-west",))
    in_london = location("1-100000001", region="london", address={"town": "London", "postcode": "SW1A 1AA"})
    outside = _post(client, CHECK, tracker, batch(in_london))
    assert outside.status_code == 403
    assert "1-100000001 (london)" in outside.json()["detail"]
    not_json = _post(client, CHECK, tracker, b"{not json")
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["detail"]
    not_a_batch = _post(client, CHECK, tracker, {"records": []})
    assert not_a_batch.status_code == 422
    reader = make_token(name="reader", scopes=("read",))
    assert _post(client, CHECK, reader, batch(location())).status_code == 403
    assert client.post(CHECK, content=orjson.dumps(batch(location()))).status_code == 401


def test_a_check_takes_a_compressed_body_as_a_push_does(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    token = make_token()
    compressed = gzip.compress(orjson.dumps(batch(location())))
    checked = _post(client, CHECK, token, compressed, **{"Content-Encoding": "gzip"})
    assert checked.status_code == 200 and checked.json()["summary"]["accepted"] == 1
    assert _rows(factory) == (0, 0, 0)
