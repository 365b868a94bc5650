"""The occupancy report's drill-down: its rows add up to their group's row, and it takes
a group spelt as the search takes one."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from tests.conftest import TokenMaker, bearer
from tests.factories import batch, location, vacancy

URL = "/api/v1/reports/occupancy"
COUNTED = ("maximum_capacity", "occupied", "reserved", "admittable", "unavailable", "vacancies_total")


def line(vacancy_type: str, capacity: int, occupied: int) -> dict[str, Any]:
    """A line with every vacant bed admittable (over-occupied: none, an inconsistent line)."""
    free = max(capacity - occupied, 0)
    return vacancy(
        vacancy_type,
        maximum_capacity=capacity,
        occupied=occupied,
        reserved=0,
        admittable=free,
        unavailable=0,
        unavailable_reasons=[],
    )


@pytest.fixture
def token(client: TestClient, make_token: TokenMaker) -> str:
    token = make_token()
    records = [
        location("1-1", vacancies=[line("general-nursing", 10, 12), line("dementia-nursing", 10, 5)]),
        location("1-2", local_authority="Wigan", vacancies=[line("general-nursing", 8, 6)]),
        location(
            "1-3",
            region="london",
            local_authority="Camden",
            address={"line1": "1 Road", "postcode": "NW1 1AA"},
            vacancies=[line("general-nursing", 4, 4)],
        ),
    ]
    response = client.post(
        "/api/v1/submissions", content=orjson.dumps(batch(*records)), headers=bearer(token)
    )
    assert response.json()["summary"]["accepted"] == 3, response.text
    return token


def report(client: TestClient, token: str, **params: Any) -> Any:
    response = client.get(URL, params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    return response.json()


def test_drill_down_rows_add_up_to_their_group_row(client: TestClient, token: str) -> None:
    [north_west] = [r for r in report(client, token)["rows"] if r["group"] == "north-west"]
    drill = report(client, token, group="north-west")["locations"]
    assert {loc["cqc_location_id"]: loc["vacancies_total"] for loc in drill} == {"1-1": 5, "1-2": 2}
    for key in COUNTED:
        assert sum(loc[key] for loc in drill) == north_west[key], key
    assert north_west["vacancies_total"] == 7


def test_drill_down_by_vacancy_type_adds_up_too(client: TestClient, token: str) -> None:
    rows = {r["group"]: r for r in report(client, token, group_by="vacancy_type")["rows"]}
    drill = report(client, token, group_by="vacancy_type", group="general-nursing")["locations"]
    assert sum(loc["vacancies_total"] for loc in drill) == rows["general-nursing"]["vacancies_total"] == 2


@pytest.mark.parametrize(
    ("group_by", "group", "code", "found"),
    [
        ("nhs_region", "London", "london", ["1-3"]),
        ("nhs_region", "north west", "north-west", ["1-1", "1-2"]),
        ("nhs_region", "north-west", "north-west", ["1-1", "1-2"]),
        ("vacancy_type", "Dementia Nursing", "dementia-nursing", ["1-1"]),
        ("local_authority", "WIGAN", "WIGAN", ["1-2"]),
        ("local_authority", "Bolton", "Bolton", []),
    ],
)
def test_drill_down_takes_a_group_as_the_search_does(
    client: TestClient, token: str, group_by: str, group: str, code: str, found: list[str]
) -> None:
    drill = report(client, token, group_by=group_by, group=group)
    assert drill["group"] == code
    assert sorted(loc["cqc_location_id"] for loc in drill["locations"]) == found


@pytest.mark.parametrize(
    ("group_by", "group", "allowed"),
    [("nhs_region", "Atlantis", "london"), ("vacancy_type", "sea-view", "general-nursing")],
)
def test_an_unknown_drill_down_group_is_a_422_naming_it(
    client: TestClient, token: str, group_by: str, group: str, allowed: str
) -> None:
    response = client.get(URL, params={"group_by": group_by, "group": group}, headers=bearer(token))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    [error] = response.json()["errors"]
    assert error["parameter"] == "group"
    assert group in error["message"] and allowed in error["message"]
