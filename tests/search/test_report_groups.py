"""Reports as their users read them: one local authority is one row however trackers write
it, and a filter a report does not have is refused rather than ignored."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy.orm import Session, sessionmaker

from gateway.store.db import transaction
from gateway.store.registry import replace_registry_locations
from gateway.store.tables import RegistryLocation, utcnow
from tests.conftest import TokenMaker, bearer
from tests.factories import batch, location, vacancy

OCCUPANCY = "/api/v1/reports/occupancy"
COUNTED = ("maximum_capacity", "occupied", "reserved", "admittable", "unavailable", "vacancies_total")


@pytest.fixture
def token(client: TestClient, make_token: TokenMaker) -> str:
    """Three homes in Manchester, written three ways by their trackers, and one in Wigan."""
    token = make_token()
    records = [
        location("1-1", local_authority="Manchester"),
        location("1-2", local_authority="MANCHESTER", vacancies=[vacancy(maximum_capacity=30, occupied=26)]),
        location("1-3", local_authority="Manchester ", vacancies=[vacancy(maximum_capacity=10, occupied=6)]),
        location("1-4", local_authority="Wigan"),
    ]
    response = client.post(
        "/api/v1/submissions", content=orjson.dumps(batch(*records)), headers=bearer(token)
    )
    assert response.json()["summary"]["accepted"] == len(records), response.text
    return token


def get(client: TestClient, token: str, url: str, **params: Any) -> Any:
    response = client.get(url, params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    return response.json()


def test_one_authority_written_several_ways_is_one_row_its_drill_down_adds_up_to(
    client: TestClient, token: str
) -> None:
    report = get(client, token, OCCUPANCY, group_by="local_authority")
    rows = {row["group"]: row for row in report["rows"]}
    assert sorted(rows) == ["Manchester", "Wigan"]
    manchester = rows["Manchester"]
    assert manchester["maximum_capacity"] == 20 + 30 + 10
    assert manchester["locations_with_vacancy_data"] == 3
    for spelling in ("Manchester", "manchester", "MANCHESTER  "):
        answer = get(client, token, OCCUPANCY, group_by="local_authority", group=spelling)
        assert answer["group"] == "Manchester", spelling  # as its row names it, not as typed
        drill = answer["locations"]
        assert sorted(loc["cqc_location_id"] for loc in drill) == ["1-1", "1-2", "1-3"], spelling
        for key in COUNTED:
            assert sum(loc[key] for loc in drill) == manchester[key], (spelling, key)


def test_the_search_finds_an_authority_however_its_tracker_wrote_it(client: TestClient, token: str) -> None:
    found = get(client, token, "/api/v1/vacancies", local_authority="manchester")
    assert sorted(r["cqc_location_id"] for r in found["results"]) == ["1-1", "1-2", "1-3"]


@pytest.mark.parametrize(
    ("url", "parameter"),
    [
        (OCCUPANCY, "region"),  # the search's filter: the report is national whatever it says
        (OCCUPANCY, "accepting_today"),  # the search's name for accepting_admissions
        ("/api/v1/reports/unavailable", "stay"),
        ("/api/v1/reports/unavailable", "local_authority"),
    ],
)
def test_a_filter_a_report_does_not_have_is_a_422_naming_it(
    client: TestClient, token: str, url: str, parameter: str
) -> None:
    response = client.get(url, params={parameter: "london"}, headers=bearer(token))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    [error] = response.json()["errors"]
    assert error["parameter"] == parameter
    assert "unknown parameter" in error["message"]


def test_every_filter_a_report_has_is_still_taken(client: TestClient, token: str) -> None:
    params = {
        "group_by": "vacancy_type",
        "stay": "long-term",
        "vacancy_type": "general-nursing",
        "out_of_hours": "false",
        "accepting_admissions": "true",
        "provider_type": "care-home",
        "format": "json",
    }
    assert get(client, token, OCCUPANCY, **params)["total"]["maximum_capacity"] == 80
    assert get(client, token, OCCUPANCY, group="general-nursing", group_by="vacancy_type")["locations"]
    unavailable = get(client, token, "/api/v1/reports/unavailable", group_by="icb", provider_type="care-home")
    assert unavailable["total"]["unavailable_beds"] == 4


def test_a_drill_down_lists_homes_of_one_name_in_a_stable_order(
    client: TestClient, make_token: TokenMaker
) -> None:
    token = make_token(name="willows")
    ids = [f"1-{n}" for n in (907, 12, 5550, 31, 700, 4, 88, 1203)]
    records = [location(cqc_id, name="The Willows", local_authority="Bolton") for cqc_id in ids]
    records.append(location("1-3", name="Acorn House", local_authority="Bolton"))
    client.post("/api/v1/submissions", content=orjson.dumps(batch(*records)), headers=bearer(token))
    drill = get(client, token, OCCUPANCY, group_by="local_authority", group="Bolton")["locations"]
    assert [loc["cqc_location_id"] for loc in drill] == ["1-3", *sorted(ids)]


@pytest.mark.parametrize("url", [OCCUPANCY, "/api/v1/reports/unavailable"])
def test_an_area_not_known_comes_last_on_every_database(
    client: TestClient, token: str, factory: sessionmaker[Session], url: str
) -> None:
    # Only 1-4 has a registry record, so only it has an ICB; the others' row comes last.
    known = RegistryLocation(
        cqc_location_id="1-4",
        name="Reg",
        registration_status="Registered",
        icb_code="QOP",
        synced_at=utcnow(),
    )
    with transaction(factory) as session:
        replace_registry_locations(session, [known.model_dump()])
    assert [row["group"] for row in get(client, token, url, group_by="icb")["rows"]] == ["QOP", None]


def test_an_icb_code_is_taken_in_any_case_and_an_unknown_one_refused(
    client: TestClient, token: str, factory: sessionmaker[Session]
) -> None:
    known = RegistryLocation(
        cqc_location_id="1-4",
        name="Reg",
        registration_status="Registered",
        icb_code="QOP",
        sub_icb_code="00V",
        synced_at=utcnow(),
    )
    elsewhere = RegistryLocation(  # an ICB the registry knows but no tracker reports in
        cqc_location_id="1-99",
        name="Reg",
        registration_status="Registered",
        icb_code="QAK",
        synced_at=utcnow(),
    )
    with transaction(factory) as session:
        replace_registry_locations(session, [known.model_dump(), elsewhere.model_dump()])
    found = get(client, token, "/api/v1/vacancies", icb=" qop")
    assert [r["cqc_location_id"] for r in found["results"]] == ["1-4"]
    assert get(client, token, "/api/v1/vacancies", icb="QAK")["total"] == 0  # a true empty answer
    drill = get(client, token, OCCUPANCY, group_by="icb", group="qop")
    assert drill["group"] == "QOP" and [loc["cqc_location_id"] for loc in drill["locations"]] == ["1-4"]
    for url, params, parameter in [
        ("/api/v1/vacancies", {"icb": "QOQ"}, "icb"),
        ("/api/v1/vacancies", {"sub_icb": "00T"}, "sub_icb"),
        (OCCUPANCY, {"group_by": "icb", "group": "QOQ"}, "group"),
    ]:
        response = client.get(url, params=params, headers=bearer(token))
        assert response.status_code == 422, response.text
        [error] = response.json()["errors"]
        assert error["parameter"] == parameter and "unknown code" in error["message"]
    assert (
        "did you mean 'QOP'"
        in client.get("/api/v1/vacancies", params={"icb": "QOQ"}, headers=bearer(token)).text
    )


def test_before_the_registry_gives_any_icb_no_code_is_refused(client: TestClient, token: str) -> None:
    # No registry sync yet: no ICB code can be told unknown; the answer is empty, not a 422.
    assert get(client, token, "/api/v1/vacancies", icb="QOP")["total"] == 0
    assert get(client, token, OCCUPANCY, group_by="icb", group="QOP")["locations"] == []


def test_the_unavailable_report_has_one_row_per_authority_too(client: TestClient, token: str) -> None:
    report = get(client, token, "/api/v1/reports/unavailable", group_by="local_authority")
    assert {row["group"]: row["unavailable_beds"] for row in report["rows"]} == {"Manchester": 3, "Wigan": 1}


@pytest.mark.parametrize(
    ("url", "params"),
    [
        (OCCUPANCY, {"stay": "long-term", "vacancy_type": "general-nursing"}),
        (OCCUPANCY, {"group_by": "local_authority", "group": "Wigan", "stay": "long-term"}),
        ("/api/v1/reports/unavailable", {"group_by": "local_authority"}),
    ],
)
def test_a_report_file_says_what_it_was_drawn_from(
    client: TestClient, token: str, url: str, params: dict[str, str]
) -> None:
    # A file read later (a regional planner's download) must say whether its figures are
    # a filtered report's and which providers they count, as the search's exports do.
    response = client.get(url, params={**params, "format": "csv"}, headers=bearer(token))
    assert response.status_code == 200, response.text
    first = response.content.decode("utf-8-sig").splitlines()[0]
    for name, value in params.items():
        assert f"{name}={value}" in first
    assert "provider types counted: care-home" in first
    workbook = load_workbook(
        io.BytesIO(client.get(url, params={**params, "format": "xlsx"}, headers=bearer(token)).content)
    )
    assert "provider types counted: care-home" in next(workbook.active.values)[0]
    # And how its figures count, as the JSON answer's note says it.
    note = client.get(url, params=params, headers=bearer(token)).json().get("note")
    if "group" not in params:  # a drill-down lists locations: no counting to explain
        assert note and f"Note: {note}" in first and f"Note: {note}" in next(workbook.active.values)[0]


def test_a_drill_down_is_named_as_the_registry_writes_its_authority(
    client: TestClient, token: str, factory: sessionmaker[Session]
) -> None:
    # The registry writes Wigan its own way: the row and its drill-down both say so.
    written = RegistryLocation(
        cqc_location_id="1-4", name="Reg", registration_status="Registered", local_authority="WIGAN Borough"
    )
    odd = location("1-6", local_authority="wigan borough")
    client.post("/api/v1/submissions", content=orjson.dumps(batch(odd)), headers=bearer(token))
    with transaction(factory) as session:
        replace_registry_locations(session, [{**written.model_dump(), "synced_at": utcnow()}])
    rows = [row["group"] for row in get(client, token, OCCUPANCY, group_by="local_authority")["rows"]]
    assert "WIGAN Borough" in rows
    drill = get(client, token, OCCUPANCY, group_by="local_authority", group="wigan   BOROUGH")
    assert drill["group"] == "WIGAN Borough"
    assert sorted(loc["cqc_location_id"] for loc in drill["locations"]) == ["1-4", "1-6"]


def test_registered_care_homes_add_up_to_the_total_under_any_filter(
    client: TestClient, token: str, factory: sessionmaker[Session]
) -> None:
    # One registered home in each of Manchester, Wigan and Bolton (none reported there);
    # the registry gives no region for the first two: the view's (north-west) places them.
    registry = [
        RegistryLocation(
            cqc_location_id="1-1", name="R", registration_status="Registered", local_authority="Manchester"
        ),
        RegistryLocation(
            cqc_location_id="1-4", name="R", registration_status="Registered", local_authority="Wigan"
        ),
        RegistryLocation(
            cqc_location_id="1-50",
            name="R",
            registration_status="Registered",
            local_authority="Bolton",
            nhs_region="north-west",
        ),
    ]
    with transaction(factory) as session:
        replace_registry_locations(session, [{**r.model_dump(), "synced_at": utcnow()} for r in registry])
    late = location("1-5", local_authority="Wigan", out_of_hours_admissions=True)  # the only one matching
    client.post("/api/v1/submissions", content=orjson.dumps(batch(late)), headers=bearer(token))
    by_authority = get(client, token, OCCUPANCY, group_by="local_authority", out_of_hours="true")
    rows = {row["group"]: row for row in by_authority["rows"]}
    # Every area with registered homes has a row, of zeros where no line matches.
    assert sorted(rows) == ["Bolton", "Manchester", "Wigan"]
    assert rows["Bolton"]["maximum_capacity"] == rows["Manchester"]["maximum_capacity"] == 0
    assert rows["Bolton"]["locations_with_vacancy_data"] == 0 and rows["Wigan"]["maximum_capacity"] == 20
    assert {name: row["cqc_registered_care_homes"] for name, row in rows.items()} == {
        "Bolton": 1,
        "Manchester": 1,
        "Wigan": 1,
    }
    for report in (by_authority, get(client, token, OCCUPANCY, out_of_hours="true")):
        total = report["total"]
        assert total["cqc_registered_care_homes"] == 3
        for key in (*COUNTED, "cqc_registered_care_homes", "locations_with_vacancy_data"):
            assert sum(row[key] for row in report["rows"]) == total[key], key
    by_region = get(client, token, OCCUPANCY, out_of_hours="true")["rows"]
    assert [(row["group"], row["cqc_registered_care_homes"]) for row in by_region] == [("north-west", 3)]
