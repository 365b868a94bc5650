"""A searched specialism, service type, regulated activity, brand or contract nobody knows
is a 422 naming the parameter and the closest known values, never an empty answer that
looks like "no vacancies"; a value the registry knows but no home in the view has is a
true empty answer; a gateway whose registry is not yet synced refuses nothing it cannot
tell (a contract with a local authority is still checked against England's authorities)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from gateway.store.db import transaction
from gateway.store.registry import replace_registry_locations
from gateway.store.tables import RegistryLocation, utcnow
from tests.conftest import TokenMaker, bearer
from tests.factories import batch, location

URL = "/api/v1/vacancies"
NURSING = "Accommodation for persons who require nursing or personal care"
# One searched value of each kind that the view holds (in another case and spacing), one
# misspelt, and what the 422 suggests for it.
KINDS = [
    ("specialism", "  DEMENTIA ", "Dementa", "'Dementia'"),
    ("service_type", "care home service with nursing", "Care home servce with nursing", "with nursing'"),
    ("regulated_activity", NURSING.upper(), "Accommodation for persons who require nursing", NURSING),
    ("brand", "oak  care", "Oke Care", "'Oak Care'"),
    ("contract_la", "salford", "Salfrod", "'Salford'"),
    ("contract_sub_icb", "01w", "01X", "'01W'"),
]


def _registry(cqc_id: str, **over: Any) -> dict[str, Any]:
    row = RegistryLocation(
        cqc_location_id=cqc_id,
        name="Reg",
        registration_status="Registered",
        synced_at=utcnow(),
        **over,
    )
    return row.model_dump()


@pytest.fixture
def token(client: TestClient, make_token: TokenMaker) -> str:
    token = make_token()
    records = [
        location("1-1", contracts_with_local_authorities=["Salford"], contracts_with_sub_icbs=["01W"]),
        location("1-2"),
    ]
    response = client.post(
        "/api/v1/submissions", content=orjson.dumps(batch(*records)), headers=bearer(token)
    )
    assert response.json()["summary"]["accepted"] == 2, response.text
    return token


@pytest.fixture
def synced(factory: sessionmaker[Session], token: str) -> str:
    """The registry describes 1-1, and a home no tracker reports that has other values."""
    rows = [
        _registry(
            "1-1",
            specialisms=["Dementia", "Caring for adults over 65 yrs"],
            service_types=["Care home service with nursing"],
            regulated_activities=[NURSING],
            brand_name="Oak Care",
            brand_id="BD001",
            sub_icb_code="01W",
            sub_icb_name="NHS Greater Manchester ICB - 01W",
        ),
        _registry(
            "1-88",
            specialisms=["Eating disorders"],
            service_types=["Hospice services"],
            regulated_activities=["Treatment of disease, disorder or injury"],
            brand_name="Elm Group",
            sub_icb_code="02A",
        ),
    ]
    with transaction(factory) as session:
        replace_registry_locations(session, rows)
    return token


def search(client: TestClient, token: str, **params: Any) -> Any:
    return client.get(URL, params=params, headers=bearer(token))


def found(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["cqc_location_id"] for r in response.json()["results"]]


@pytest.mark.parametrize(("parameter", "held", "misspelt", "suggested"), KINDS)
def test_a_misspelt_value_is_a_422_naming_the_parameter_and_the_closest(
    client: TestClient, synced: str, parameter: str, held: str, misspelt: str, suggested: str
) -> None:
    assert found(search(client, synced, **{parameter: held})) == ["1-1"]  # any case and spacing
    for params in (
        {parameter: misspelt},
        {parameter: [held, misspelt]},
        {parameter: misspelt, "format": "csv"},
    ):
        response = search(client, synced, **params)
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        [error] = response.json()["errors"]
        assert error["parameter"] == parameter
        assert repr(misspelt) in error["message"] and "did you mean" in error["message"], error
        assert suggested in error["message"], error


@pytest.mark.parametrize(
    ("parameter", "value", "expected"),
    [
        ("specialism", "eating disorders", []),  # the registry's, no home in the view has it
        ("service_type", "Hospice services", []),
        ("regulated_activity", "Treatment of disease, disorder or injury", []),
        ("brand", "elm group", []),
        ("brand", "bd001", ["1-1"]),  # a brand by its id
        ("contract_la", "Wigan", []),  # an authority of England no home has a contract with
        ("contract_sub_icb", "02A", []),
        ("contract_sub_icb", "nhs greater manchester icb - 01w", []),  # a sub-ICB by its name
    ],
)
def test_a_value_the_registry_knows_is_searched(
    client: TestClient, synced: str, parameter: str, value: str, expected: list[str]
) -> None:
    assert found(search(client, synced, **{parameter: value})) == expected


@pytest.mark.parametrize(("parameter", "held", "misspelt", "suggested"), KINDS)
def test_before_the_registry_is_synced_only_an_unknown_authority_is_refused(
    client: TestClient, token: str, parameter: str, held: str, misspelt: str, suggested: str
) -> None:
    response = search(client, token, **{parameter: misspelt})
    if parameter == "contract_la":  # England's local authorities are known without a sync
        assert response.status_code == 422 and suggested in response.text
    else:
        assert found(response) == []
