"""GET /api/v1/vacancies: filters, distance, sorting, paging, bad input, exports."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy.orm import Session, sessionmaker

from gateway.places import district_centroid, haversine_km
from gateway.store.db import transaction
from gateway.store.registry import replace_registry_locations
from gateway.store.tables import RegistryLocation, utcnow
from tests.conftest import TokenMaker, bearer
from tests.factories import batch, location, vacancy

URL = "/api/v1/vacancies"
# Homes around Manchester (M1 1AA is at the M1 district centroid) and one in Leeds.
HOMES = [
    ("1-1", "M1 1AA", {"languages": ["English", "Polish"], "notes": "Hoist; bariatric bed"}),
    ("1-2", "M14 5AA", {"vacancies": [vacancy("dementia-nursing", weekly_price_from=1500.0)]}),
    ("1-3", "M20 2AA", {"accepting_admissions": False, "funding_sources": ["phb"]}),
    ("1-4", "LS1 1AA", {"short_stay_services": ["respite-care"], "out_of_hours_admissions": True}),
    (
        "1-5",
        "M1 2AB",
        {
            "provider_type": "community-rehab",
            "vacancies": [vacancy("community-rehab-nhs-la", weekly_price_from=2000.0)],
        },
    ),
]


@pytest.fixture
def token(client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session]) -> str:
    token = make_token()
    records = [location(cqc, address={"line1": "1 Road", "postcode": pc}, **over) for cqc, pc, over in HOMES]
    response = client.post(
        "/api/v1/submissions", content=orjson.dumps(batch(*records)), headers=bearer(token)
    )
    assert response.json()["summary"]["accepted"] == len(HOMES)
    registered = RegistryLocation(
        cqc_location_id="1-2",
        name="Reg",
        registration_status="Registered",
        postcode="M14 5AA",
        latitude=53.45,
        longitude=-2.22,
        overall_rating="good",
        brand_name="BRAND Oak",
        icb_code="QOP",
        synced_at=utcnow(),
    )
    with transaction(factory) as session:  # as a registry sync stores it: the location moves there
        replace_registry_locations(session, [registered.model_dump()])
    return token


def get(client: TestClient, token: str, **params: Any) -> Any:
    return client.get(URL, params=params, headers=bearer(token))


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["cqc_location_id"] for r in response.json()["results"]]


def test_radius_search_is_closest_first_with_distances(client: TestClient, token: str) -> None:
    response = get(client, token, postcode="m1 1aa", radius_km=15)
    found = ids(response)
    assert "1-4" not in found  # Leeds is ~55 km away
    distances = [r["distance_km"] for r in response.json()["results"]]
    assert distances == sorted(distances)
    origin = response.json()["origin"]
    reg = next(r for r in response.json()["results"] if r["cqc_location_id"] == "1-2")
    assert reg["distance_km"] == pytest.approx(
        haversine_km(origin["latitude"], origin["longitude"], 53.45, -2.22), abs=0.01
    )
    assert set(ids(get(client, token, postcode="M1 1AA", radius_km=80))) >= {"1-4"}


def test_filters_combine(client: TestClient, token: str) -> None:
    assert ids(get(client, token, language=["polish"])) == ["1-1"]
    assert ids(get(client, token, notes=["hoist", "bariatric"])) == ["1-1"]
    assert ids(get(client, token, notes=["hoist", "pets"])) == []
    assert ids(get(client, token, vacancy_type="dementia-nursing")) == ["1-2"]
    assert ids(get(client, token, rating="good")) == ["1-2"]
    assert ids(get(client, token, brand="BRAND Oak")) == ["1-2"]
    assert ids(get(client, token, icb="QOP")) == ["1-2"]
    assert ids(get(client, token, funding="phb")) == ["1-3"]
    assert ids(get(client, token, accepting_today=False)) == ["1-3"]
    assert ids(get(client, token, short_stay_service="respite-care")) == ["1-4"]
    assert ids(get(client, token, stay="short-stay")) == ["1-4"]
    assert ids(get(client, token, provider_type="community-rehab")) == ["1-5"]
    assert ids(get(client, token, out_of_hours=True)) == ["1-4"]
    assert sorted(ids(get(client, token, max_weekly_price=1200, provider_type="care-home"))) == [
        "1-1",
        "1-3",
        "1-4",
    ]
    assert ids(
        get(client, token, vacancy_type=["dementia-nursing", "community-rehab-nhs-la"], sort="price")
    ) == ["1-2", "1-5"]


def test_paging_and_total(client: TestClient, token: str) -> None:
    first = get(client, token, page_size=2, sort="freshness")
    second = get(client, token, page_size=2, page=2, sort="freshness")
    assert first.json()["total"] == len(HOMES)
    assert len(set(ids(first)) | set(ids(second))) == 4


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"postcode": "not a postcode"}, "postcode"),
        ({"postcode": "ZZ99 9ZZ"}, "postcode"),
        ({"postcode": "M1 1AA", "radius_km": -5}, "radius_km"),
        ({"postcode": "M1 1AA", "radius_km": 0}, "radius_km"),
        ({"radius_km": 5}, "radius_km"),
        ({"vacancy_type": "sea-view"}, "vacancy_type"),
        ({"rating": "superb"}, "rating"),
        ({"region": "atlantis"}, "region"),
        ({"updated_within": "fortnight"}, "updated_within"),
        ({"updated_within": "99999999999999999999d"}, "updated_within"),  # was a 500 (overflow)
        ({"updated_within": "999999999h"}, "updated_within"),
        ({"updated_within": "3651d"}, "updated_within"),
        ({"updated_within": "\u00b2h"}, "updated_within"),  # a digit to Python, not to int(): was a 500
        ({"stay": "forever"}, "stay"),
        ({"colour": "blue"}, "colour"),
        ({"sort": "random"}, "sort"),
        ({"postcode": "M1 1AA", "radius_km": "far"}, "radius_km"),
        ({"postcode": "M1 1AA", "radius_km": "nan"}, "radius_km"),
        ({"max_weekly_price": -1}, "max_weekly_price"),
        ({"accepting_today": "maybe"}, "accepting_today"),
        ({"page": 0}, "page"),
        ({"page": "two"}, "page"),
        ({"page": 10**20}, "page"),  # was a 500 (past a 64-bit integer)
        ({"page": 1_000_001}, "page"),
        ({"page": 10**20, "format": "csv"}, "page"),
        ({"page_size": 501}, "page_size"),
        ({"format": "pdf"}, "format"),
    ],
)
def test_bad_input_is_a_422_naming_the_parameter(
    client: TestClient, token: str, params: dict[str, Any], parameter: str
) -> None:
    response = get(client, token, **params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert parameter in [e["parameter"] for e in response.json()["errors"]]


def test_the_longest_duration_and_page_are_still_answered(client: TestClient, token: str) -> None:
    assert get(client, token, updated_within="3650d").json()["total"] == len(HOMES)
    assert get(client, token, updated_within="87600h").json()["total"] == len(HOMES)
    far = get(client, token, page=1_000_000)
    assert far.status_code == 200 and far.json()["results"] == []


def test_csv_and_excel_exports_carry_filters_and_time(client: TestClient, token: str) -> None:
    text = get(client, token, postcode="M1 1AA", radius_km=15, format="csv").text
    lines = text.splitlines()
    assert lines[1].startswith("# Exported at:") and "postcode=M1 1AA" in lines[2]
    table = list(csv.DictReader(io.StringIO("\n".join(lines[3:]))))
    assert {row["CQC location ID"] for row in table} == {"1-1", "1-2", "1-3", "1-5"}
    assert table[0]["Vacant: accepting admissions"] != ""
    workbook = load_workbook(io.BytesIO(get(client, token, format="xlsx", language="Polish").content))
    rows = list(workbook["Vacancies"].values)
    assert rows[0][0] == "CQC location ID" and rows[1][0] == "1-1"
    about = [r[0] for r in workbook["About this export"].values]
    assert any("language=Polish" in line for line in about)


def test_occupancy_report_totals_equal_sums_over_lines(client: TestClient, token: str) -> None:
    every_type = {"provider_type": ["care-home", "community-rehab"]}
    report = client.get("/api/v1/reports/occupancy", params=every_type, headers=bearer(token)).json()
    lines = [ln for cqc, _, over in HOMES for ln in over.get("vacancies", [vacancy()])]
    total = report["total"]
    for key in ("maximum_capacity", "occupied", "reserved", "admittable", "unavailable"):
        assert total[key] == sum(ln[key] for ln in lines), key
        assert sum(row[key] for row in report["rows"]) == total[key]
    assert total["vacancies_total"] == sum(max(ln["maximum_capacity"] - ln["occupied"], 0) for ln in lines)
    assert total["locations_with_vacancy_data"] == len(HOMES)
    assert [row["group"] for row in report["rows"]] == ["north-east-and-yorkshire", "north-west"]
    drill = client.get(
        "/api/v1/reports/occupancy", params={"group": "north-west", **every_type}, headers=bearer(token)
    ).json()
    assert {loc["cqc_location_id"] for loc in drill["locations"]} == {"1-1", "1-2", "1-3", "1-5"}
    by_type = client.get(
        "/api/v1/reports/occupancy", params={"group_by": "vacancy_type", **every_type}, headers=bearer(token)
    )
    assert {row["group"] for row in by_type.json()["rows"]} == {
        "general-nursing",
        "dementia-nursing",
        "community-rehab-nhs-la",
    }
    csv_text = client.get("/api/v1/reports/occupancy", params={"format": "csv"}, headers=bearer(token)).text
    assert csv_text.splitlines()[1].startswith("group,")
    bad = client.get("/api/v1/reports/occupancy", params={"group_by": "planet"}, headers=bearer(token))
    assert bad.status_code == 422


def test_inconsistent_lines_are_counted_once_and_never_negative(
    client: TestClient, make_token: TokenMaker
) -> None:
    token = make_token(name="other")
    odd = vacancy(
        maximum_capacity=5, occupied=7, admittable=1, reserved=0, unavailable=0, unavailable_reasons=[]
    )
    client.post(
        "/api/v1/submissions",
        content=orjson.dumps(batch(location("1-77", vacancies=[odd]))),
        headers=bearer(token),
    )
    report = client.get("/api/v1/reports/occupancy", headers=bearer(token)).json()
    assert report["inconsistent_lines"] == 1
    assert report["total"]["vacancies_total"] == 0 and report["total"]["occupied"] == 7
    # The unavailable report counts it too, though it has no bed unavailable to show (beds
    # not available left out are the usual way a line breaks the invariant).
    unavailable = client.get("/api/v1/reports/unavailable", headers=bearer(token)).json()
    assert unavailable["inconsistent_lines"] == 1 and unavailable["total"]["unavailable_beds"] == 0


def test_unavailable_report_by_reason_and_area(client: TestClient, token: str) -> None:
    every_type = {"provider_type": ["care-home", "community-rehab"]}
    report = client.get("/api/v1/reports/unavailable", params=every_type, headers=bearer(token)).json()
    # Each home's default line has 1 bed unavailable for staffing absence.
    assert report["total"]["unavailable_beds"] == len(HOMES)
    assert report["total"]["by_reason"] == {"staffing-absence": len(HOMES)}
    assert {row["group"]: row["unavailable_beds"] for row in report["rows"]} == {
        "north-east-and-yorkshire": 1,
        "north-west": 4,
    }
    xlsx = client.get("/api/v1/reports/unavailable", params={"format": "xlsx"}, headers=bearer(token))
    assert xlsx.status_code == 200 and xlsx.headers["content-type"].startswith("application/vnd.openxml")


def test_every_parameter_is_documented_in_openapi(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/api/v1/vacancies"]["get"]
    documented = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
    assert {"postcode", "radius_km", "vacancy_type", "rating", "sort", "page_size", "format"} <= set(
        documented
    )
    assert len(documented) == 28
    assert documented["vacancy_type"]["schema"]["type"] == "array"
    assert documented["page_size"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 500,
        "default": 20,
    }
    # As it is checked: a radius above 0 (0 is refused), up to 500 km.
    assert documented["radius_km"]["schema"] == {"type": "number", "exclusiveMinimum": 0, "maximum": 500}
    assert documented["sort"]["schema"]["enum"] == ["distance", "admittable", "price", "freshness"]


def test_boolean_words_and_repeated_values(client: TestClient, token: str) -> None:
    yes = ids(get(client, token, accepting_today="yes"))
    assert (
        yes == ids(get(client, token, accepting_today="true")) == ids(get(client, token, accepting_today=1))
    )
    assert "1-3" not in yes
    both = client.get(
        URL,
        params=[("vacancy_type", "dementia-nursing"), ("vacancy_type", "community-rehab-nhs-la")],
        headers=bearer(token),
    )
    assert sorted(ids(both)) == ["1-2", "1-5"]


@pytest.mark.parametrize("searched", ["M1", "m1", " m1 ", "M1 1", "m1  1"])
def test_a_postcode_district_or_sector_is_searched_from_the_district_centroid(
    client: TestClient, token: str, searched: str
) -> None:
    response = get(client, token, postcode=searched, radius_km=15)
    found = ids(response)
    centroid = district_centroid("M1 1AA")
    assert centroid is not None
    assert response.json()["origin"] == {
        "postcode": "M1",
        "latitude": centroid[0],
        "longitude": centroid[1],
        "found_by": "district",
    }
    assert found == ids(get(client, token, postcode="M1 1AA", radius_km=15))  # at the M1 centroid
    assert "1-4" not in found and "1-1" in found


@pytest.mark.parametrize("searched", ["ZZ9", "EH1", "M1 1A", "M1 12", "1M"])
def test_an_unknown_or_malformed_partial_postcode_is_a_422(
    client: TestClient, token: str, searched: str
) -> None:
    response = get(client, token, postcode=searched)
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["parameter"] == "postcode"


@pytest.mark.parametrize(
    ("notes", "found"),
    [
        ("Hoist, Bariatric", ["1-1"]),  # as typed into one "notes contain" box
        ("hoist;bariatric bed", ["1-1"]),
        ("BARIATRIC   bed", ["1-1"]),
        ("hoist, pets", []),
        ("hoist bariatric", []),  # one keyword, not in the notes as such
        (["hoist,", "bariatric"], ["1-1"]),
    ],
)
def test_notes_keywords_may_be_listed_in_one_value(
    client: TestClient, token: str, notes: str | list[str], found: list[str]
) -> None:
    assert ids(get(client, token, notes=notes)) == found


def test_an_export_holds_every_page_and_does_not_echo_paging_as_a_filter(
    client: TestClient, token: str
) -> None:
    searched = get(client, token, postcode="M1 1AA", radius_km=15, sort="price")
    text = get(
        client, token, postcode="M1 1AA", radius_km=15, sort="price", page=2, page_size=1, format="csv"
    ).text
    lines = text.splitlines()
    assert lines[2] == "# Filters: postcode=M1 1AA; radius_km=15; sort=price"
    table = list(csv.DictReader(io.StringIO("\n".join(lines[3:]))))
    assert [row["CQC location ID"] for row in table] == ids(searched)  # every page, in the search's order


def test_a_misspelt_local_authority_is_a_422_naming_the_closest_not_an_empty_answer(
    client: TestClient, token: str
) -> None:
    assert ids(get(client, token, local_authority="manchester")) == ["1-1", "1-2", "1-3", "1-4", "1-5"]
    # An authority of England with no homes in the view is a true empty answer.
    assert ids(get(client, token, local_authority="Rutland")) == []
    misspelt = get(client, token, local_authority="Manchster")
    assert misspelt.status_code == 422
    [error] = misspelt.json()["errors"]
    assert error["parameter"] == "local_authority"
    assert "unknown local authority 'Manchster'" in error["message"]
    assert "'Manchester'" in error["message"]
    # A shortened name is pointed to the authority that holds it.
    shortened = get(client, token, local_authority="Hull").json()["errors"][0]["message"]
    assert "did you mean 'Kingston upon Hull'" in shortened
    # The registry's authorities are known too, and spacing and case do not matter.
    assert ids(get(client, token, local_authority="  MANCHESTER ")) == ["1-1", "1-2", "1-3", "1-4", "1-5"]
    # One misspelt among good ones is refused too; a name like none gets no suggestion.
    assert get(client, token, local_authority=["Manchester", "Wgian"]).status_code == 422
    nowhere = get(client, token, local_authority="Qzxv Wrrk")
    assert nowhere.status_code == 422 and "did you mean" not in nowhere.json()["errors"][0]["message"]
    # Exports refuse bad input the same way, before their download starts.
    assert get(client, token, local_authority="Manchster", format="csv").status_code == 422
    unplaced = get(client, token, postcode="ZZ9 9ZZ", radius_km=5, format="xlsx")
    assert unplaced.status_code == 422
    assert unplaced.headers["content-type"] == "application/problem+json"


def test_an_authority_only_the_view_knows_is_searched(client: TestClient, make_token: TokenMaker) -> None:
    token = make_token()
    odd = location(
        "1-9", local_authority="Borough of Testshire", address={"line1": "1 Road", "postcode": "M1 1AA"}
    )
    client.post("/api/v1/submissions", content=orjson.dumps(batch(odd)), headers=bearer(token))
    assert ids(get(client, token, local_authority="borough of testshire")) == ["1-9"]


def test_an_authority_only_the_registry_knows_is_a_true_empty_answer(
    client: TestClient, token: str, factory: sessionmaker[Session]
) -> None:
    elsewhere = RegistryLocation(
        cqc_location_id="1-77",
        name="Far Away",
        registration_status="Registered",
        postcode="TR1 1AA",
        local_authority="Duchy of Testwall",
        synced_at=utcnow(),
    )
    with transaction(factory) as session:
        replace_registry_locations(session, [elsewhere.model_dump()])
    assert ids(get(client, token, local_authority="duchy of testwall")) == []


def test_a_blank_filter_is_no_filter_as_in_the_trackers_form(client: TestClient, token: str) -> None:
    # A search form sends its empty fields ("Contract with LA: blank for all"): a blank
    # brand or language must not find nothing, nor a blank authority be an unknown one.
    everything = ids(get(client, token))
    blanks = {
        "brand": "",
        "language": " ",
        "contract_la": "",
        "icb": "",
        "local_authority": "",
        "postcode": "",
    }
    response = get(client, token, **blanks, vacancy_type="", sort="")
    assert ids(response) == everything
    csv_text = get(client, token, **blanks, format="csv").text
    assert "Filters: none (all of England)" in csv_text
    unknown = get(client, token, colour="")
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["parameter"] == "colour"


def test_a_report_takes_a_blank_filter_as_none_as_the_search_does(client: TestClient, token: str) -> None:
    for url, blanks in (
        ("/api/v1/reports/occupancy", "?group_by=&group=&stay=&vacancy_type=&out_of_hours=&provider_type="),
        ("/api/v1/reports/unavailable", "?group_by=&provider_type=&format="),
    ):
        plain = client.get(url, headers=bearer(token))
        blank = client.get(url + blanks, headers=bearer(token))
        assert plain.status_code == blank.status_code == 200, blank.text
        assert blank.json() == plain.json()
        unknown = client.get(url + "?region=", headers=bearer(token))  # not a report's: refused, blank or not
        assert unknown.status_code == 422 and unknown.json()["errors"][0]["parameter"] == "region"
    csv_text = client.get("/api/v1/reports/occupancy?format=csv&stay=", headers=bearer(token)).text
    assert "Filters: none;" in csv_text


def test_a_one_value_filter_given_twice_differently_is_a_422_naming_it(
    client: TestClient, token: str
) -> None:
    both = client.get("/api/v1/vacancies?accepting_today=true&accepting_today=false", headers=bearer(token))
    assert both.status_code == 422, both.text
    [error] = both.json()["errors"]
    assert error["parameter"] == "accepting_today" and "2 times with different values" in error["message"]
    same = client.get("/api/v1/vacancies?accepting_today=true&accepting_today=true", headers=bearer(token))
    assert ids(same) == ids(get(client, token, accepting_today="true"))  # the same value twice is that value


def test_reports_count_care_homes_unless_asked_as_the_trackers_reference_figures_do(
    client: TestClient, token: str
) -> None:
    # The national tracker's occupancy figures (the spec's reference table, which the
    # demo data reproduces) are care homes'; community rehab providers are "other
    # providers". 1-5 is a community rehab provider in the North West.
    def report(url: str, **params: Any) -> Any:
        response = client.get(url, params=params, headers=bearer(token))
        assert response.status_code == 200, response.text
        return response.json()

    care_homes = [over.get("vacancies", [vacancy()]) for cqc, _, over in HOMES if cqc != "1-5"]
    occupancy = report("/api/v1/reports/occupancy")
    assert occupancy["provider_types"] == ["care-home"]
    assert occupancy["total"]["maximum_capacity"] == sum(
        ln["maximum_capacity"] for lines in care_homes for ln in lines
    )
    assert occupancy["total"]["locations_with_vacancy_data"] == len(HOMES) - 1
    assert "1-5" not in {
        loc["cqc_location_id"] for loc in report("/api/v1/reports/occupancy", group="north-west")["locations"]
    }
    assert report("/api/v1/reports/unavailable")["total"]["unavailable_beds"] == len(HOMES) - 1
    rehab = report("/api/v1/reports/occupancy", provider_type="community-rehab")
    assert rehab["total"]["maximum_capacity"] == 20 and rehab["total"]["locations_with_vacancy_data"] == 1
    # Asking for a community rehab vacancy type is asking for community rehab providers.
    by_type = report(
        "/api/v1/reports/occupancy", group_by="vacancy_type", vacancy_type="community-rehab-nhs-la"
    )
    assert [row["group"] for row in by_type["rows"]] == ["community-rehab-nhs-la"]


@pytest.mark.parametrize("sort", ["price", "admittable", "freshness"])
def test_ties_of_a_sort_come_closest_first_near_a_postcode(
    client: TestClient, make_token: TokenMaker, sort: str
) -> None:
    # Equal price, admittable beds and last update: the nearer home first, whatever its ID.
    token = make_token(name="ties")
    postcodes = {"1-7": "LS1 1AA", "1-8": "M20 2AA", "1-9": "M1 1AA"}  # far, near, here
    records = [location(cqc, address={"line1": "1 Road", "postcode": pc}) for cqc, pc in postcodes.items()]
    client.post("/api/v1/submissions", content=orjson.dumps(batch(*records)), headers=bearer(token))
    response = get(client, token, postcode="M1 1AA", sort=sort)
    assert ids(response) == ["1-9", "1-8", "1-7"]
    assert ids(get(client, token, sort=sort)) == ["1-7", "1-8", "1-9"]  # no postcode: by CQC ID
