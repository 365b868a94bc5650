"""The push API: per-record results, precedence, idempotency, authorisation, raw keeping."""

from __future__ import annotations

import orjson
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from gateway.store.tables import LocationVersion, Submission
from tests.conftest import TokenMaker, bearer
from tests.factories import batch, location, vacancy

URL = "/api/v1/submissions"


def post(client: TestClient, token: str, body: object, **headers: str):  # type: ignore[no-untyped-def]
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(
        URL, content=data, headers={**bearer(token), **headers, "Content-Type": "application/json"}
    )


def statuses(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [r["status"] for r in response.json()["records"]]


def test_mixed_batch_keeps_good_records_and_reports_each_bad_one(
    client: TestClient, make_token: TokenMaker
) -> None:
    token = make_token()
    bad_count = location("1-100000002", vacancies=[vacancy(occupied=-3)])
    bad_type = location("1-100000003", vacancies=[vacancy("sea-view")])
    missing_name = location("1-100000004")
    del missing_name["name"]
    response = post(
        client,
        token,
        batch(location("1-100000001"), bad_count, bad_type, missing_name, location("1-100000005")),
    )
    assert response.status_code == 200
    body = response.json()
    assert statuses(response) == ["accepted", "rejected", "rejected", "rejected", "accepted"]
    assert body["summary"] == {"accepted": 2, "unchanged": 0, "stale": 0, "rejected": 3}
    errors = {r["index"]: r["errors"] for r in body["records"] if r["status"] == "rejected"}
    assert errors[1][0]["pointer"] == "/locations/1/vacancies/0/occupied"
    assert "minimum" in errors[1][0]["message"]
    assert errors[2][0]["pointer"] == "/locations/2/vacancies/0/vacancy_type"
    assert errors[3][0]["pointer"] == "/locations/3"
    assert "'name' is a required property" in errors[3][0]["message"]
    # The good ones are in the national view, the bad ones are not.
    assert client.get("/api/v1/locations/1-100000005", headers=bearer(token)).status_code == 200
    assert client.get("/api/v1/locations/1-100000002", headers=bearer(token)).status_code == 404


def test_location_read_shows_lines_source_timestamp_and_flags(
    client: TestClient, make_token: TokenMaker
) -> None:
    token = make_token(name="tracker-north-west")
    broken = vacancy(
        "dementia-nursing",
        maximum_capacity=10,
        occupied=9,
        admittable=4,
        reserved=0,
        unavailable=0,
        unavailable_reasons=[],
    )
    post(client, token, batch(location(vacancies=[vacancy(), broken])))
    body = client.get("/api/v1/locations/1-100000001", headers=bearer(token)).json()
    assert body["source"] == "tracker-north-west"
    assert body["source_updated_at"] == "2026-11-20T09:00:00+00:00"
    lines = {line["vacancy_type"]: line for line in body["vacancies"]}
    assert lines["general-nursing"]["consistent"] is True
    assert lines["general-nursing"]["quality_flags"] == []
    dementia = lines["dementia-nursing"]
    # Kept as the provider sent it, flagged, and no derived count is negative.
    assert (dementia["maximum_capacity"], dementia["occupied"], dementia["admittable"]) == (10, 9, 4)
    assert dementia["consistent"] is False
    assert [f["code"] for f in dementia["quality_flags"]] == ["capacity-invariant-broken"]
    assert dementia["vacancies_total"] == 1
    assert dementia["source"] == "tracker-north-west"
    assert [f["code"] for f in body["quality_flags"]] == ["capacity-invariant-broken"]


def test_derived_vacancies_never_negative(client: TestClient, make_token: TokenMaker) -> None:
    token = make_token()
    over = vacancy(
        maximum_capacity=5, occupied=7, admittable=0, reserved=0, unavailable=0, unavailable_reasons=[]
    )
    post(client, token, batch(location(vacancies=[over])))
    line = client.get("/api/v1/locations/1-100000001", headers=bearer(token)).json()["vacancies"][0]
    assert line["occupied"] == 7 and line["vacancies_total"] == 0
    assert line["consistent"] is False


def test_stale_and_duplicate_updates(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    token = make_token()
    first = post(client, token, batch(location(updated_at="2026-11-20T09:00:00Z")))
    assert statuses(first) == ["accepted"]
    duplicate = post(client, token, batch(location(updated_at="2026-11-20T09:00:00Z")))
    assert statuses(duplicate) == ["unchanged"]
    # The same record with its time written in another offset is the same record.
    other_offset = post(client, token, batch(location(updated_at="2026-11-20T10:00:00+01:00")))
    assert statuses(other_offset) == ["unchanged"]
    older = location(updated_at="2026-11-19T09:00:00Z", vacancies=[vacancy(occupied=1, admittable=17)])
    assert statuses(post(client, token, batch(older))) == ["stale"]
    # The same instant in another offset is not newer.
    same_instant = location(updated_at="2026-11-20T10:00:00+01:00", name="Renamed")
    assert statuses(post(client, token, batch(same_instant))) == ["accepted"]
    body = client.get("/api/v1/locations/1-100000001", headers=bearer(token)).json()
    assert body["vacancies"][0]["occupied"] == 16  # the stale figures never landed
    assert body["name"] == "Renamed"
    with factory() as session:
        versions = session.scalar(sa.select(sa.func.count()).select_from(LocationVersion))
    assert versions == 2


def test_one_line_per_vacancy_type_in_any_order(client: TestClient, make_token: TokenMaker) -> None:
    token = make_token()
    twice = location("1-100000002", vacancies=[vacancy(), vacancy(admittable=1, unavailable=2)])
    response = post(client, token, batch(twice, location()))
    assert statuses(response) == ["rejected", "accepted"]  # the good record beside it is kept
    error = response.json()["records"][0]["errors"][0]
    assert error["pointer"] == "/locations/0/vacancies"
    assert "'general-nursing' appears twice" in error["message"]
    lines = [vacancy("dementia-nursing"), vacancy("general-nursing")]
    assert statuses(post(client, token, batch(location("1-100000003", vacancies=lines)))) == ["accepted"]
    reordered = location("1-100000003", vacancies=lines[::-1])
    assert statuses(post(client, token, batch(reordered))) == ["unchanged"]


def test_later_update_in_same_batch_wins(client: TestClient, make_token: TokenMaker) -> None:
    token = make_token()
    response = post(
        client,
        token,
        batch(
            location(updated_at="2026-11-20T09:00:00Z"),
            location(updated_at="2026-11-21T09:00:00Z", name="Newer"),
            location(updated_at="2026-11-20T12:00:00Z", name="Older than the second"),
        ),
    )
    assert statuses(response) == ["accepted", "accepted", "stale"]
    body = client.get("/api/v1/locations/1-100000001", headers=bearer(token)).json()
    assert body["name"] == "Newer"
    assert body["version_id"] == response.json()["records"][1]["version_id"]


def test_idempotent_retry_is_a_no_op(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    token = make_token()
    body = batch(location())
    first = post(client, token, body, **{"Idempotency-Key": "abc-1"})
    again = post(client, token, body, **{"Idempotency-Key": "abc-1"})
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert statuses(again) == ["accepted"]  # the original answer, not "unchanged"
    with factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Submission)) == 1
        assert session.scalar(sa.select(sa.func.count()).select_from(LocationVersion)) == 1
    other = post(client, token, batch(location(name="Different")), **{"Idempotency-Key": "abc-1"})
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json()["detail"]


def test_a_blank_idempotency_key_is_no_key(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    """A blank key (an unfilled template variable) shares nothing: each push is its own,
    where the second had been refused 422 as a reuse of the first's key."""
    token = make_token()
    first = post(client, token, batch(location()), **{"Idempotency-Key": ""})
    second = post(client, token, batch(location(cqc_location_id="1-999000001")), **{"Idempotency-Key": "  "})
    assert first.status_code == second.status_code == 200
    assert "Idempotent-Replayed" not in second.headers and statuses(second) == ["accepted"]
    with factory() as session:
        keys = session.scalars(sa.select(Submission.idempotency_key)).all()
    assert keys == [None, None]


def test_a_refusal_retried_with_its_key_is_the_first_answer_marked_replayed(
    client: TestClient, make_token: TokenMaker
) -> None:
    token = make_token()
    first = post(client, token, b"{not json", **{"Idempotency-Key": "bad-1"})
    again = post(client, token, b"{not json", **{"Idempotency-Key": "bad-1"})
    assert first.status_code == again.status_code == 400
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["detail"] == first.json()["detail"]


def test_not_json_and_not_a_batch_are_problems(client: TestClient, make_token: TokenMaker) -> None:
    token = make_token()
    garbage = post(client, token, b"{not json")
    assert garbage.status_code == 400
    assert garbage.headers["content-type"] == "application/problem+json"
    assert "not JSON" in garbage.json()["detail"]
    not_batch = post(client, token, [location()])
    assert not_batch.status_code == 422
    assert not_batch.json()["errors"][0]["pointer"] == ""
    empty = post(client, token, {"locations": []})
    assert empty.status_code == 422
    assert empty.json()["errors"][0]["pointer"] == "/locations"


def test_every_raw_submission_is_kept(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    token = make_token()
    bodies = [
        b"{not json",
        orjson.dumps(batch(location())),
        orjson.dumps(batch(location("1-100000009", vacancies=[vacancy(occupied="x")]))),
    ]
    codes = [post(client, token, body).status_code for body in bodies]
    assert codes == [400, 200, 200]
    with factory() as session:
        kept = session.scalars(sa.select(Submission).order_by(Submission.received_at)).all()
    assert [s.body for s in kept] == bodies
    assert [s.status_code for s in kept] == [400, 200, 200]
    assert kept[2].rejected == 1 and kept[1].accepted == 1


def test_no_token_bad_token_and_wrong_scope(client: TestClient, make_token: TokenMaker) -> None:
    body = orjson.dumps(batch(location()))
    missing = client.post(URL, content=body)
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert client.post(URL, content=body, headers=bearer("ccg_nope")).status_code == 401
    reader = make_token(name="reader", scopes=("read",), regions=())
    refused = client.post(URL, content=body, headers=bearer(reader))
    assert refused.status_code == 403
    assert "submit" in refused.json()["detail"]
    submitter = make_token(name="push-only", scopes=("submit",))
    assert post(client, submitter, batch(location())).status_code == 200
    read = client.get("/api/v1/locations/1-100000001", headers=bearer(submitter))
    assert read.status_code == 403


def test_cross_region_write_is_refused_naming_the_location(
    client: TestClient, make_token: TokenMaker
) -> None:
    north_west = make_token(name="tracker-north-west", regions=("north-west",))
    london = make_token(name="tracker-london", regions=("London",))
    assert statuses(post(client, north_west, batch(location()))) == ["accepted"]
    # A London tracker may not overwrite a North West home, whatever region it declares.
    hijack = location(updated_at="2026-11-21T09:00:00Z", region="london")
    in_london = location("1-100000077", region="london", address={"postcode": "NW8 9AA"})
    refused = post(client, london, batch(hijack, in_london))
    assert refused.status_code == 403
    assert "1-100000001" in refused.json()["detail"]
    assert "1-100000077" not in refused.json()["detail"]
    body = client.get("/api/v1/locations/1-100000001", headers=bearer(north_west)).json()
    assert body["source"] == "tracker-north-west"
    # A new location outside the token's regions is refused as well.
    outside = post(
        client,
        north_west,
        batch(location("1-100000078", region="south-west", address={"postcode": "EX1 1AA"})),
    )
    assert outside.status_code == 403 and "1-100000078" in outside.json()["detail"]


def test_region_comes_from_the_postcode_not_the_declaration(
    client: TestClient, make_token: TokenMaker
) -> None:
    north_west = make_token(name="tracker-north-west", regions=("north-west",))
    # Declared London, but its postcode is in Manchester: the North West tracker may write it.
    response = post(client, north_west, batch(location(region="london")))
    assert statuses(response) == ["accepted"]
    body = client.get("/api/v1/locations/1-100000001", headers=bearer(north_west)).json()
    assert body["nhs_region"] == "north-west"


def test_unknown_location_without_region_is_rejected(client: TestClient, make_token: TokenMaker) -> None:
    token = make_token()
    response = post(client, token, batch(location(region=None, address={"line1": "1 Lane"})))
    record = response.json()["records"][0]
    assert record["status"] == "rejected"
    assert record["errors"][0]["pointer"] == "/locations/0/nhs_region"


def test_read_unknown_and_malformed_location_ids(client: TestClient, make_token: TokenMaker) -> None:
    token = make_token()
    assert client.get("/api/v1/locations/1-999", headers=bearer(token)).status_code == 404
    malformed = client.get("/api/v1/locations/XYZ", headers=bearer(token))
    assert malformed.status_code == 422
    assert malformed.json()["errors"][0]["parameter"] == "cqc_location_id"
