"""The log of pushes: a tracker reads its own pushes and their answers after the fact;
an admin reads everyone's; nobody reads another tracker's."""

from __future__ import annotations

import hashlib
import re

import orjson
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from gateway.auth import Principal
from gateway.ingest.submission_log import list_submissions
from tests.conftest import TokenMaker, bearer, statements_run
from tests.factories import batch, location, vacancy

URL = "/api/v1/submissions"


def push(client: TestClient, token: str, body: object) -> dict[str, object]:
    response = client.post(
        URL, content=orjson.dumps(body), headers={**bearer(token), "Content-Type": "application/json"}
    )
    assert response.status_code in (200, 422), response.text
    answer: dict[str, object] = response.json()
    return answer


def listed(client: TestClient, token: str, **params: str | int) -> list[str]:
    response = client.get(URL, params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["submissions"]]


def test_a_tracker_reads_its_own_pushes_and_the_answers_it_got(
    client: TestClient, make_token: TokenMaker
) -> None:
    north = make_token(name="tracker-north-west")
    other = make_token(name="tracker-midlands")
    first = push(client, north, batch(location("1-100000001")))
    second = push(
        client,
        north,
        batch(location("1-100000002"), location("1-100000003", vacancies=[vacancy(occupied=-1)])),
    )
    theirs = push(client, other, batch(location("1-100000004", region="midlands")))

    body = client.get(URL, headers=bearer(north)).json()
    assert [s["id"] for s in body["submissions"]] == [second["submission_id"], first["submission_id"]]
    newest = body["submissions"][0]
    assert newest["source"] == "tracker-north-west"
    assert newest["status_code"] == 200
    assert newest["summary"] == {"accepted": 1, "unchanged": 0, "stale": 0, "rejected": 1}
    sent = orjson.dumps(
        batch(location("1-100000002"), location("1-100000003", vacancies=[vacancy(occupied=-1)]))
    )
    assert newest["body_sha256"] == hashlib.sha256(sent).hexdigest()
    assert newest["body_kept"] is True and "answer" not in newest
    assert body["next_before"] is None

    detail = client.get(f"{URL}/{second['submission_id']}", headers=bearer(north)).json()
    assert detail["answer"] == second  # the answer exactly as the tracker got it
    # Another tracker's push is not found, as if it did not exist.
    hidden = client.get(f"{URL}/{theirs['submission_id']}", headers=bearer(north))
    assert hidden.status_code == 404
    assert hidden.headers["content-type"] == "application/problem+json"
    refused = client.get(URL, params={"source": "tracker-midlands"}, headers=bearer(north))
    assert refused.status_code == 403
    assert "only its own pushes" in refused.json()["detail"]


def test_a_new_token_of_the_same_tracker_sees_the_pushes_of_the_old(
    client: TestClient, make_token: TokenMaker
) -> None:
    old = make_token(name="tracker-north-west")
    pushed = push(client, old, batch(location("1-100000001")))
    new = make_token(name="tracker-north-west")
    assert listed(client, new) == [pushed["submission_id"]]


def test_an_admin_reads_everyone_and_a_reader_nobody(client: TestClient, make_token: TokenMaker) -> None:
    north = make_token(name="tracker-north-west")
    midlands = make_token(name="tracker-midlands")
    a = push(client, north, batch(location("1-100000001")))
    b = push(client, midlands, batch(location("1-100000004", region="midlands")))
    admin = make_token(name="ops", scopes=("admin",))
    assert listed(client, admin) == [b["submission_id"], a["submission_id"]]
    assert listed(client, admin, source="tracker-north-west") == [a["submission_id"]]
    assert client.get(f"{URL}/{b['submission_id']}", headers=bearer(admin)).json()["answer"] == b
    reader = make_token(name="discharge-hub", scopes=("read",))
    assert client.get(URL, headers=bearer(reader)).status_code == 403
    assert client.get(URL).status_code == 401


def test_filters_find_the_pushes_that_went_wrong(client: TestClient, make_token: TokenMaker) -> None:
    token = make_token()
    clean = push(client, token, batch(location("1-100000001")))
    partly = push(client, token, batch(location("1-100000002", vacancies=[vacancy("sea-view")])))
    refused = push(client, token, {"locations": []})
    assert refused["status"] == 422
    [refused_id] = listed(client, token, status_code=422)
    assert listed(client, token, with_rejections="true") == [refused_id, partly["submission_id"]]
    assert listed(client, token, status_code=200) == [partly["submission_id"], clean["submission_id"]]
    detail = client.get(f"{URL}/{refused_id}", headers=bearer(token)).json()
    assert (
        detail["answer"]["status"] == 422
        and "[] should be non-empty" in orjson.dumps(detail["answer"]).decode()
    )
    assert listed(client, token, since="2999-01-01T00:00:00Z") == []
    assert len(listed(client, token, since="2000-01-01T00:00:00+01:00")) == 3


def test_paging_walks_every_push_once_newest_first(client: TestClient, make_token: TokenMaker) -> None:
    token = make_token()
    pushed = [push(client, token, batch(location(f"1-10000000{i}")))["submission_id"] for i in range(1, 6)]
    seen: list[str] = []
    before: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 2, **({"before": before} if before else {})}
        body = client.get(URL, params=params, headers=bearer(token)).json()
        seen += [item["id"] for item in body["submissions"]]
        before = body["next_before"]
        if before is None:
            break
    assert seen == pushed[::-1]


def test_bad_parameters_are_422s_naming_them(client: TestClient, make_token: TokenMaker) -> None:
    token = make_token()
    cases: list[tuple[dict[str, str | int], str]] = [
        ({"before": "no-such-push"}, "before"),
        ({"since": "2026-11-20T09:00:00"}, "since"),  # no UTC offset: ambiguous
        ({"since": "0001-01-01T00:00:00+14:00"}, "since"),  # before the calendar in UTC (was a 500)
        ({"since": "9999-12-31T23:59:59-14:00"}, "since"),  # after it
        ({"limit": 0}, "limit"),
        ({"limit": 1000}, "limit"),
        ({"status_code": "ok"}, "status_code"),
    ]
    for params, name in cases:
        response = client.get(URL, params=params, headers=bearer(token))
        assert response.status_code == 422, params
        assert response.json()["errors"][0]["parameter"] == name


def test_the_log_never_reads_the_raw_bodies(
    client: TestClient, make_token: TokenMaker, engine: sa.Engine, factory: sessionmaker[Session]
) -> None:
    token = make_token(name="tracker-north-west")
    push(client, token, batch(location("1-100000001")))
    principal = Principal("t", "tracker-north-west", frozenset({"submit"}), frozenset({"*"}))
    with statements_run(engine, "SELECT") as selects, factory() as session:
        assert len(list_submissions(session, principal)["submissions"]) == 1
    assert selects and not any(re.search(r"submission\.body\b", sql) for sql, _ in selects)
