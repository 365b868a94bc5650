"""The occupancy report's drill-down: its rows add up to their group's row, and it takes
a group spelt as the search takes one."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy.orm import Session, sessionmaker

from gateway.ingest.service import apply_updates
from gateway.model.capacity import LocationUpdate
from gateway.search import reports
from gateway.store.db import transaction
from gateway.store.tables import utcnow
from tests.conftest import TokenMaker, bearer
from tests.factories import batch, location, vacancy

URL = "/api/v1/reports/occupancy"
COLUMNS = [
    *("maximum_capacity", "occupied", "reserved", "admittable", "unavailable", "vacancies_total"),
    *("admittable_pct", "unavailable_pct", "reserved_pct", "occupied_pct"),
]
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
        ("local_authority", "WIGAN", "Wigan", ["1-2"]),  # named as its row names it, not as typed
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
    [
        ("nhs_region", "Atlantis", "london"),
        ("vacancy_type", "sea-view", "general-nursing"),
        ("local_authority", "Wigna", "did you mean 'Wigan'"),
    ],
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


def test_a_report_no_line_matches_is_a_zero_total_not_an_error(client: TestClient, token: str) -> None:
    # No home of the fixture admits out of hours.
    empty = report(client, token, out_of_hours=True)
    assert empty["rows"] == [] and empty["inconsistent_lines"] == 0
    total = empty["total"]
    for key in COUNTED:
        assert total[key] == 0, key
    assert total["admittable_pct"] == total["occupied_pct"] == 0.0
    assert total["locations_with_vacancy_data"] == 0
    for fmt in ("csv", "xlsx"):
        response = client.get(URL, params={"out_of_hours": True, "format": fmt}, headers=bearer(token))
        assert response.status_code == 200, response.text


def exported(client: TestClient, token: str, url: str, params: dict[str, Any]) -> dict[str, list[list[Any]]]:
    """A report's CSV and Excel exports as rows of cells (the export stamp left out)."""
    tables = {}
    text = client.get(url, params={**params, "format": "csv"}, headers=bearer(token))
    assert text.status_code == 200, text.text
    tables["csv"] = list(csv.reader(io.StringIO(text.text.lstrip("\ufeff"))))[1:]
    xlsx = client.get(url, params={**params, "format": "xlsx"}, headers=bearer(token))
    assert xlsx.status_code == 200, xlsx.text
    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    assert sheet is not None
    tables["xlsx"] = [list(row) for row in sheet.values][1:]
    return tables


def test_an_empty_drill_down_exports_its_header(client: TestClient, token: str) -> None:
    params = {"group_by": "local_authority", "group": "Bolton"}
    for fmt, table in exported(client, token, URL, params).items():
        assert table == [["cqc_location_id", "name", "source", "last_updated", *COLUMNS]], fmt
    full = exported(client, token, URL, {"group": "north-west"})["csv"]
    assert full[0] == ["cqc_location_id", "name", "source", "last_updated", *COLUMNS]
    assert sorted(row[0] for row in full[1:]) == ["1-1", "1-2"]


@pytest.fixture
def reasons_token(client: TestClient, make_token: TokenMaker) -> str:
    """London gives one reason, the North West two others, Midlands none at all."""
    token = make_token(name="reasons")

    def unavailable(beds: int, reasons: list[str]) -> dict[str, Any]:
        return vacancy(
            maximum_capacity=10,
            occupied=10 - beds,
            reserved=0,
            admittable=0,
            unavailable=beds,
            unavailable_reasons=reasons,
        )

    records = [
        location("1-31", address={"postcode": "NW1 1AA"}, vacancies=[unavailable(2, ["safeguarding"])]),
        location("1-32", vacancies=[unavailable(3, ["refurbishment", "outbreak-covid"])]),
        location("1-33", address={"postcode": "B1 1AA"}, vacancies=[unavailable(1, [])]),
    ]
    response = client.post(
        "/api/v1/submissions", content=orjson.dumps(batch(*records)), headers=bearer(token)
    )
    assert response.json()["summary"]["accepted"] == 3, response.text
    return token


def test_unavailable_exports_have_a_column_for_every_reason(client: TestClient, reasons_token: str) -> None:
    # Headed in the users' words, as the tracker names the reasons; JSON keeps the codes.
    reasons = ["Not given", "Outbreaks (Covid)", "Refurbishment", "Safeguarding"]
    expected = [
        ["group", "unavailable_beds", *reasons],
        ["london", 2, 0, 0, 0, 2],
        ["midlands", 1, 1, 0, 0, 0],
        ["north-west", 3, 0, 3, 3, 0],
        ["England", 6, 1, 3, 3, 2],
    ]
    tables = exported(client, reasons_token, "/api/v1/reports/unavailable", {})
    assert tables["xlsx"] == expected
    assert tables["csv"] == [[str(cell) for cell in row] for row in expected]
    as_json = client.get("/api/v1/reports/unavailable", headers=bearer(reasons_token)).json()
    codes = ["not-given", "outbreak-covid", "refurbishment", "safeguarding"]
    assert list(as_json["total"]["by_reason"]) == codes


def test_the_unavailable_report_says_how_many_lines_were_inconsistent(
    client: TestClient, reasons_token: str
) -> None:
    url = "/api/v1/reports/unavailable"
    before = client.get(url, headers=bearer(reasons_token)).json()
    assert before["inconsistent_lines"] == 0
    odd = vacancy(maximum_capacity=5, occupied=4, reserved=0, admittable=0, unavailable=3)
    response = client.post(
        "/api/v1/submissions",
        content=orjson.dumps(batch(location("1-34", vacancies=[odd]))),
        headers=bearer(reasons_token),
    )
    assert response.json()["summary"]["accepted"] == 1, response.text
    after = client.get(url, headers=bearer(reasons_token)).json()
    assert after["inconsistent_lines"] == 1
    assert after["total"]["unavailable_beds"] == before["total"]["unavailable_beds"] + 3  # as sent


def test_a_short_stay_report_counts_the_long_term_lines_short_stays_are_filled_from(
    client: TestClient, make_token: TokenMaker
) -> None:
    token = make_token()
    offering = location(
        "1-7",
        short_stay_services=["respite-care"],
        vacancies=[line("general-nursing", 10, 6), line("community-rehab-nhs-la", 5, 1)],
    )
    elsewhere = location("1-8", vacancies=[line("general-nursing", 20, 10)])  # offers no short stay
    client.post(
        "/api/v1/submissions", content=orjson.dumps(batch(offering, elsewhere)), headers=bearer(token)
    )

    def total(**params: str) -> dict[str, Any]:
        response = client.get(URL, params=params, headers=bearer(token))
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()["total"]
        return found

    short = total(stay="short-stay")
    assert (short["maximum_capacity"], short["occupied"]) == (10, 6)  # not the rehab line's 5 beds
    assert total(stay="long-term")["maximum_capacity"] == 30
    assert total()["maximum_capacity"] == 30
    refused = client.get(
        URL, params={"stay": "short-stay", "vacancy_type": "community-rehab-nhs-la"}, headers=bearer(token)
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["parameter"] == "vacancy_type"


def test_a_report_is_read_from_one_snapshot_while_trackers_push(
    factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report takes several statements (its rows, its national location counts, the
    registry's): a push committed between them made the rows and the total disagree."""

    def push(cqc_id: str) -> None:
        update = LocationUpdate.model_validate(location(cqc_id, updated_at=utcnow().isoformat()))
        with transaction(factory) as writer:
            apply_updates(writer, source="tracker", updates=[(0, update)], received_at=utcnow())

    push("1-100000001")
    pushed = iter(f"1-2000000{n:02d}" for n in range(50))
    with factory() as session, session.begin():
        execute = session.execute

        def pushed_between(*args: Any, **kwargs: Any) -> Any:
            push(next(pushed))  # another tracker's push commits before each statement
            return execute(*args, **kwargs)

        monkeypatch.setattr(session, "execute", pushed_between)
        report = reports.occupancy(session)
        unavailable = reports.unavailable(session)
    rows, total = report["rows"], report["total"]
    assert sum(r["locations_with_vacancy_data"] for r in rows) == total["locations_with_vacancy_data"]
    assert sum(r["maximum_capacity"] for r in rows) == total["maximum_capacity"]
    # As the database was at the report's first statement (the first push had landed).
    assert total["locations_with_vacancy_data"] == 2
    assert unavailable["total"]["unavailable_beds"] == total["unavailable"]
    with factory() as session:
        assert reports.occupancy(session)["total"]["locations_with_vacancy_data"] > 1  # the pushes landed
