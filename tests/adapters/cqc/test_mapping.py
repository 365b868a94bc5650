"""Every real CQC record in shared/data parses unchanged and maps to a registry row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.cqc.mapping import (
    CqcRecordError,
    parse_list_page,
    predecessors,
    provider_row,
    rating,
    registry_row,
)

DATA = Path(__file__).resolve().parents[2] / "fixtures" / "cqc"


def load(name: str) -> object:
    return json.loads((DATA / name).read_text())


def test_henley_house_current_era() -> None:
    row = registry_row(load("location-henley-house.json"))  # type: ignore[arg-type]
    assert row["cqc_location_id"] == "1-10000302982" and row["cqc_provider_id"] == "1-102642938"
    assert row["icb_code"] == "E54000023"
    assert row["icb_name"] == "NHS Suffolk and North East Essex Integrated Care Board"
    assert row["sub_icb_code"] == "E38000086"
    assert row["nhs_region"] == "east-of-england" and row["cqc_region"] == "East"
    assert row["registered_beds"] == 66 and row["dormant"] is False and row["care_home"] is True
    assert row["postcode"] == "IP1 6TB" and row["ods_code"] == "VNH4N"
    assert row["overall_rating"] == "good" and row["rating_date"] == "2022-04-20"
    assert row["brand_name"] == "BRAND Greensleeves"
    assert row["service_types"] == ["Care home service without nursing"]
    assert "Dementia" in row["specialisms"]
    assert row["regulated_activities"] == ["Accommodation for persons who require nursing or personal care"]
    assert (row["latitude"], row["longitude"]) == (52.088033, 1.1504829)


def test_lucerne_house_older_record_has_ccg_only() -> None:
    record = load("location-lucerne-house.json")
    row = registry_row(record)  # type: ignore[arg-type]
    assert row["icb_code"] is None and row["sub_icb_code"] == "E38000230"
    assert row["nhs_region"] == "south-west" and row["registered_beds"] == 75
    assert row["dormant"] is None  # older records carry no dormancy


def test_kingswood_house_predecessor_and_optional_fields_absent() -> None:
    record = load("location-kingswood-house-abridged.json")
    row = registry_row(record)  # type: ignore[arg-type]
    assert predecessors(record) == ["1-112758739"]  # type: ignore[arg-type]
    assert row["ods_code"] is None and row["latitude"] is None
    assert row["nhs_region"] == "south-east"
    # It carries no careHome flag and a service type with a name but no description.
    assert isinstance(record, dict) and "careHome" not in record
    assert record["gacServiceTypes"] == [{"name": "Nursing homes"}]
    assert row["care_home"] is True
    assert row["service_types"] == ["Care home service with nursing"]


BASE = {"locationId": "1-1", "name": "A Place"}
RA2 = {"name": "Accommodation for persons who require nursing or personal care", "code": "RA2"}
RA5 = {"name": "Treatment of disease, disorder or injury", "code": "RA5"}


@pytest.mark.parametrize(
    ("fields", "care_home"),
    [
        ({"careHome": "Y"}, True),
        ({"careHome": "N", "gacServiceTypes": [{"name": "Nursing homes"}]}, False),  # the flag wins
        ({"gacServiceTypes": [{"name": "Residential homes"}], "regulatedActivities": [RA2]}, True),
        ({"gacServiceTypes": [{"description": "Care home service without nursing"}]}, True),
        (
            {"gacServiceTypes": [{"name": "Rehabilitation services"}], "regulatedActivities": [RA2, RA5]},
            False,  # a named service type that is not a care home's says more than RA2
        ),
        ({"regulatedActivities": [RA5, RA2]}, True),
        ({"regulatedActivities": [{"name": RA2["name"], "contacts": []}]}, True),
        ({"regulatedActivities": [RA5]}, False),
        ({}, False),
    ],
)
def test_care_home_status_without_the_flag_follows_what_the_record_says(
    fields: dict[str, object], care_home: bool
) -> None:
    assert registry_row({**BASE, **fields})["care_home"] is care_home


def test_service_types_fall_back_to_their_names() -> None:
    record = {
        **BASE,
        "gacServiceTypes": [
            {"name": "Nursing homes", "description": "Care home service with nursing"},
            {"name": "Residential homes"},
            {"name": "Rehabilitation services"},
            {"name": "", "description": ""},
            "not an entry",
        ],
    }
    assert registry_row(record)["service_types"] == [
        "Care home service with nursing",
        "Care home service without nursing",
        "Rehabilitation services",
    ]


def test_every_south_west_record_maps() -> None:
    records = load("locations-south-west-2021.json")
    rows = [registry_row(r) for r in records]  # type: ignore[union-attr]
    assert len(rows) == 12
    assert all(r["nhs_region"] == "south-west" and r["registered_beds"] for r in rows)
    assert {r["overall_rating"] for r in rows} == {"good", "outstanding"}
    assert all(r["record"]["inspectionCategories"][0]["primary"] == "true" for r in rows)


def test_list_page() -> None:
    ids, following = parse_list_page(load("locations-list-page.json"))  # type: ignore[arg-type]
    assert len(ids) == 10 and ids[0] == "1-10000302982"
    assert following == "/locations?page=2&perPage=10"


def test_inherited_and_absent_ratings() -> None:
    inherited = {
        "currentRatings": {
            "overall": {"rating": "Good", "reportDate": "2019-01-01", "organisationId": "1-123"}
        }
    }
    assert rating(inherited) == ("good", "2019-01-01", True)
    assert rating({}) == ("not-rated", None, False)
    assert rating({"currentRatings": {"overall": {"rating": "No published rating"}}})[0] == "not-rated"


def test_record_without_id_is_refused_naming_the_field() -> None:
    with pytest.raises(CqcRecordError) as error:
        registry_row({"name": "Nameless"})
    assert error.value.field == "locationId"
    with pytest.raises(CqcRecordError):
        registry_row({"locationId": "1-1", "name": "X", "numberOfBeds": "many"})


def test_provider_row_keeps_what_the_registry_tables_hold() -> None:
    record = {
        "providerId": "1-102642938",
        "locationIds": ["1-10000302982"],
        "organisationType": "Provider",
        "ownershipType": "Organisation",
        "name": " Greensleeves Homes Trust ",
        "companiesHouseNumber": "02995221",
    }
    row = provider_row(record)
    assert row == {
        "cqc_provider_id": "1-102642938",
        "name": "Greensleeves Homes Trust",
        "ownership_type": "Organisation",
        "companies_house_number": "02995221",
        "location_ids": ["1-10000302982"],
        "record": record,
    }
    for missing in ("providerId", "name"):
        with pytest.raises(CqcRecordError) as refused:
            provider_row({k: v for k, v in record.items() if k != missing})
        assert refused.value.field == missing
