"""How the push API judges and explains single records: sets sent in another order, times
the store cannot hold, and messages about long values."""

from __future__ import annotations

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from gateway.store.tables import LocationVersion
from tests.api.test_submissions import post, statuses
from tests.conftest import TokenMaker, bearer
from tests.factories import batch, location, vacancy


def test_coded_sets_sent_in_another_order_are_unchanged(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    token = make_token()

    def home(reasons: list[str], funding: list[str], services: list[str]) -> dict[str, object]:
        line = vacancy(admittable=1, unavailable=2, unavailable_reasons=reasons)
        return location(vacancies=[line], funding_sources=funding, short_stay_services=services)

    reasons = ["refurbishment", "staffing-absence"]
    funding = ["phb", "private"]
    services = ["respite-care", "rehabilitation"]
    assert statuses(post(client, token, batch(home(reasons, funding, services)))) == ["accepted"]
    for again in (
        home(reasons[::-1], funding, services),
        home(reasons, funding[::-1], services),
        home(reasons, funding, services[::-1]),
    ):
        assert statuses(post(client, token, batch(again))) == ["unchanged"]
    # A real change is still a change.
    fewer = home(["staffing-absence"], funding, services)
    assert statuses(post(client, token, batch(fewer))) == ["accepted"]
    with factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(LocationVersion)) == 2
    # Held in the order of the codes, whatever the order sent.
    body = client.get("/api/v1/locations/1-100000001", headers=bearer(token)).json()
    assert body["funding_sources"] == ["phb", "private"]
    assert body["short_stay_services"] == ["rehabilitation", "respite-care"]
    assert body["vacancies"][0]["unavailable_reasons"] == ["staffing-absence"]


def test_a_time_the_store_cannot_hold_is_rejected_and_the_rest_of_the_batch_kept(
    client: TestClient, make_token: TokenMaker
) -> None:
    token = make_token()
    # The first hour of year 1 at +01:00 is year 0 in UTC.
    too_early = location("1-100000002", updated_at="0001-01-01T00:00:00+01:00")
    response = post(client, token, batch(location(), too_early))
    assert response.status_code == 200
    assert statuses(response) == ["accepted", "rejected"]
    [error] = response.json()["records"][1]["errors"]
    assert error["pointer"] == "/locations/1/updated_at"
    assert "out of range" in error["message"]
    assert client.get("/api/v1/locations/1-100000001", headers=bearer(token)).status_code == 200
    assert client.get("/api/v1/locations/1-100000002", headers=bearer(token)).status_code == 404


@pytest.mark.parametrize(
    "updated_at", ["0202-12-06T09:00:00Z", "0001-01-01T00:00:00Z", "1999-12-31T23:59:59Z"]
)
def test_a_time_before_2000_is_rejected_and_the_rest_of_the_batch_kept(
    client: TestClient, make_token: TokenMaker, updated_at: str
) -> None:
    """A clock never set or a typing slip (0202 for 2025). On SQLite, a year before 1000 had
    been stored unpadded, and every later read of the location, the national search among
    them, answered 500."""
    token = make_token()
    response = post(client, token, batch(location(), location("1-100000002", updated_at=updated_at)))
    assert response.status_code == 200
    assert statuses(response) == ["accepted", "rejected"]
    [error] = response.json()["records"][1]["errors"]
    assert error["pointer"] == "/locations/1/updated_at"
    assert "before 2000" in error["message"]
    assert client.get("/api/v1/vacancies", headers=bearer(token)).status_code == 200
    assert client.get("/api/v1/locations/1-100000002", headers=bearer(token)).status_code == 404
    # The first instant of 2000 is taken.
    later = location("1-100000002", updated_at="2000-01-01T00:00:00Z")
    assert statuses(post(client, token, batch(later))) == ["accepted"]


def test_a_nul_character_is_rejected_by_its_field_and_the_rest_of_the_batch_kept(
    client: TestClient, make_token: TokenMaker
) -> None:
    """JSON may carry U+0000; PostgreSQL's text cannot hold it (the whole batch failed there
    with a 500, its good records lost, every retry the same)."""
    token = make_token()
    nul = "\u0000"
    records = [
        location(),
        location("1-100000002", notes=f"hoist{nul}"),
        location("1-100000003", languages=["English", f"Pol{nul}ish"]),
        location("1-100000004", address={"line1": f"1 High St{nul}", "postcode": "LS1 4AP"}),
    ]
    body, headers = orjson.dumps(batch(*records)), {**bearer(token), "Content-Type": "application/json"}
    for url in ("/api/v1/submissions/check", "/api/v1/submissions"):
        response = client.post(url, content=body, headers=headers)
        assert response.status_code == 200, response.text
        assert statuses(response) == ["accepted", "rejected", "rejected", "rejected"]
        pointers = [e["pointer"] for r in response.json()["records"][1:] for e in r["errors"]]
        assert pointers == ["/locations/1/notes", "/locations/2/languages/1", "/locations/3/address/line1"]
        assert "NUL character (U+0000)" in response.json()["records"][1]["errors"][0]["message"]
    assert client.get("/api/v1/locations/1-100000001", headers=bearer(token)).status_code == 200


def test_a_refused_record_does_not_place_the_location_for_the_next_one(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    """A batch's first record of a new location places it; when that record is refused
    (its time too far ahead), a later one without a region must not be stored unplaced
    (out of every regional search and report, and free for any tracker to claim)."""
    token = make_token(regions=("north-west",))
    unplaced = {"address": {"line1": "1 High Street"}, "local_authority": None}
    ahead = location(updated_at="2099-01-01T00:00:00Z", **unplaced)
    later = location(region=None, **unplaced)
    response = post(client, token, batch(ahead, later))
    assert response.status_code == 200, response.text
    assert statuses(response) == ["rejected", "rejected"]
    [error] = response.json()["records"][1]["errors"]
    assert error["pointer"] == "/locations/1/nhs_region"
    assert "required for a location the gateway does not know yet" in error["message"]
    assert client.get("/api/v1/locations/1-100000001", headers=bearer(token)).status_code == 404
    with factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(LocationVersion)) == 0


def test_a_batch_of_5000_is_taken_and_one_of_5001_refused_saying_why(
    client: TestClient, make_token: TokenMaker
) -> None:
    token = make_token()
    records = [location(f"1-{n}", vacancies=[]) for n in range(1, 5002)]
    refused = post(client, token, batch(*records))
    assert refused.status_code == 422
    [error] = refused.json()["errors"]
    assert error == {
        "pointer": "/locations",
        "message": "an array of 5001 items is too long (at most 5000 items)",
    }
    taken = post(client, token, batch(*records[:5000]))
    assert taken.status_code == 200
    assert taken.json()["summary"]["accepted"] == 5000


def test_a_long_value_is_named_by_its_size_and_the_reason_kept(
    client: TestClient, make_token: TokenMaker
) -> None:
    token = make_token()
    long_name = location(name="Willow Court " * 30)
    many_languages = location("1-100000002", languages=["English"] * 51)
    response = post(client, token, batch(long_name, many_languages))
    assert statuses(response) == ["rejected", "rejected"]
    [name_error] = response.json()["records"][0]["errors"]
    assert name_error["pointer"] == "/locations/0/name"
    assert name_error["message"].endswith("(390 characters) is too long (at most 300 characters)")
    assert "Willow Court " * 3 not in name_error["message"]  # not the whole value back
    [languages_error] = response.json()["records"][1]["errors"]
    assert languages_error == {
        "pointer": "/locations/1/languages",
        "message": "an array of 51 items is too long (at most 50 items)",
    }
    not_a_batch = post(client, token, [location()])
    assert not_a_batch.json()["errors"][0]["message"] == "an array of 1 item is not of type 'object'"


def test_a_community_rehab_line_may_leave_reserved_out_and_a_care_home_line_may_not(
    client: TestClient, make_token: TokenMaker
) -> None:
    token = make_token()
    # As the national tracker shows community rehabilitation: reserved is "NA".
    rehab = vacancy(
        "community-rehab-nhs-la",
        maximum_capacity=30,
        occupied=25,
        admittable=0,
        unavailable=5,
        unavailable_reasons=["outbreak-covid"],
    )
    del rehab["reserved"]
    care_home = vacancy()
    del care_home["reserved"]
    response = post(
        client,
        token,
        batch(
            location(provider_type="community-rehab", vacancies=[rehab]),
            location("1-100000002", vacancies=[care_home]),
        ),
    )
    assert statuses(response) == ["accepted", "rejected"]
    assert response.json()["records"][1]["errors"] == [
        {"pointer": "/locations/1/vacancies/0", "message": "'reserved' is a required property"}
    ]
    [line] = client.get("/api/v1/locations/1-100000001", headers=bearer(token)).json()["vacancies"]
    assert (line["reserved"], line["consistent"], line["quality_flags"]) == (0, True, [])


def test_a_blank_name_or_language_is_rejected_saying_so(client: TestClient, make_token: TokenMaker) -> None:
    token = make_token()
    blank_name = location("1-100000001", name="   ")
    blank_language = location("1-100000002", languages=["English", " "])
    response = post(client, token, batch(blank_name, blank_language, location("1-100000003")))
    assert statuses(response) == ["rejected", "rejected", "accepted"]
    errors = [r["errors"] for r in response.json()["records"][:2]]
    assert errors == [
        [{"pointer": "/locations/0/name", "message": "must not be blank"}],
        [{"pointer": "/locations/1/languages/1", "message": "must not be blank"}],
    ]


def test_a_new_location_placed_by_its_first_record_needs_no_region_on_a_later_one(
    client: TestClient, make_token: TokenMaker
) -> None:
    """As once the first is stored: the later record of the batch is judged against it."""
    token = make_token()
    nowhere = {"line1": "1 Road", "postcode": None}
    first = location("1-100000001", region="north-west", address=nowhere)
    later = location("1-100000001", region=None, address=nowhere, updated_at="2026-11-20T10:00:00Z")
    unplaced = location("1-100000002", region=None, address=nowhere)
    response = post(client, token, batch(first, later, unplaced))
    assert statuses(response) == ["accepted", "accepted", "rejected"]
    assert response.json()["records"][2]["errors"][0]["pointer"] == "/locations/2/nhs_region"
    body = client.get("/api/v1/locations/1-100000001", headers=bearer(token)).json()
    assert (body["nhs_region"], body["source_updated_at"]) == ("north-west", "2026-11-20T10:00:00+00:00")


def _versions(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(LocationVersion)) or 0)


def test_two_states_of_a_location_at_one_time_in_one_batch_keep_the_first_and_reject_the_second(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    """Which is the home's state then is not known; taking the last wrote both again at
    every retry of the batch (two versions a retry)."""
    token = make_token()
    first = location(vacancies=[vacancy(admittable=2, occupied=16)])
    second = location(vacancies=[vacancy(admittable=0, occupied=18)])
    other = location("1-100000002")
    answer = post(client, token, batch(first, second, other))
    assert statuses(answer) == ["accepted", "rejected", "accepted"]
    [error] = answer.json()["records"][1]["errors"]
    assert error["pointer"] == "/locations/1/updated_at"
    assert "record 0 of this batch" in error["message"]
    for _ in range(2):  # retried without an Idempotency-Key: nothing moves
        assert statuses(post(client, token, batch(first, second, other))) == [
            "unchanged",
            "rejected",
            "unchanged",
        ]
    assert _versions(factory) == 2
    held = client.get("/api/v1/locations/1-100000001", headers=bearer(token)).json()
    assert held["vacancies"][0]["admittable"] == 2
    # A later time is a later state, in the same batch or the next.
    later = location(updated_at="2026-11-20T10:00:00Z", vacancies=[vacancy(admittable=0, occupied=18)])
    assert statuses(post(client, token, batch(first, later))) == ["unchanged", "accepted"]


def test_another_source_as_old_as_the_held_state_is_stale_so_two_sources_never_flip_the_view(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]
) -> None:
    one, two = make_token(name="tracker-one"), make_token(name="tracker-two")
    ones = location(vacancies=[vacancy(admittable=2, occupied=16)])
    twos = location(vacancies=[vacancy(admittable=0, occupied=18)])
    assert statuses(post(client, one, batch(ones))) == ["accepted"]
    for _ in range(2):
        assert statuses(post(client, two, batch(twos))) == ["stale"]
        assert statuses(post(client, one, batch(ones))) == ["unchanged"]
    assert _versions(factory) == 1
    held = client.get("/api/v1/locations/1-100000001", headers=bearer(one)).json()
    assert (held["source"], held["vacancies"][0]["admittable"]) == ("tracker-one", 2)
    # The same source may restate its own time (its last word), and a later time wins from anyone.
    assert statuses(post(client, one, batch(twos))) == ["accepted"]
    later = location(updated_at="2026-11-20T09:00:01Z", vacancies=[vacancy(admittable=1, occupied=17)])
    assert statuses(post(client, two, batch(later))) == ["accepted"]
