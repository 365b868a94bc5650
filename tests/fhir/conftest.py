"""A small national view for the FHIR tests: three pushed homes (one the registry knows)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from adapters.cqc.mapping import registry_row
from gateway.store.db import transaction
from gateway.store.registry import replace_registry_locations
from gateway.store.tables import utcnow
from tests.conftest import TokenMaker, bearer
from tests.factories import batch, location, vacancy

FIXTURES = Path(__file__).parent.parent / "fixtures" / "cqc"
HENLEY = "1-10000302982"  # a real CQC record: Ipswich, ODS code VNH4N


def push(client: TestClient, token: str, *records: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/v1/submissions", json=batch(*records), headers=bearer(token))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def homes() -> list[dict[str, Any]]:
    """Manchester (two lines), Leeds (rehab, short-stay services) and Henley House, Ipswich."""
    return [
        location(
            "1-101",
            name="Ashgrove House",
            address={"line1": "1 High Street", "town": "Manchester", "postcode": "M1 1AA"},
            vacancies=[
                vacancy("general-nursing", weekly_price_from=900.0),
                vacancy(
                    "dementia-nursing",
                    weekly_price_from=1200.0,
                    admittable=0,
                    unavailable=3,
                    unavailable_reasons=["outbreak-covid"],
                ),
            ],
            languages=["English", "Polish"],
            notes="Hoist and bariatric beds",
        ),
        location(
            "1-102",
            name="Beech Lodge",
            region="north-east-and-yorkshire",
            provider={"cqc_provider_id": "1-200000002", "name": "Beech Care Ltd"},
            address={"line1": "2 Park Row", "town": "Leeds", "postcode": "LS1 4AP"},
            provider_type="community-rehab",
            short_stay_services=["discharge-to-assess"],
            vacancies=[
                vacancy(
                    "community-rehab-nhs-la",
                    weekly_price_from=None,
                    admittable=5,
                    unavailable=0,
                    occupied=14,
                    reserved=1,
                    unavailable_reasons=[],
                )
            ],
        ),
        location(
            HENLEY,
            name="Henley House",
            region="east-of-england",
            provider={"cqc_provider_id": "1-102642938", "name": "Henley House Ltd"},
            address={"line1": "Henley Road", "town": "Ipswich", "postcode": "IP1 6TB"},
            short_stay_services=["respite-care"],
            vacancies=[vacancy("general-residential", weekly_price_from=750.0, admittable=1)],
        ),
    ]


@pytest.fixture
def read_token(make_token: TokenMaker) -> str:
    return make_token(name="reader", scopes=("read",))


@pytest.fixture
def tracker(make_token: TokenMaker) -> str:
    return make_token(name="tracker-national", scopes=("submit", "read"))


@pytest.fixture
def national(client: TestClient, tracker: str, factory: sessionmaker[Session]) -> list[dict[str, Any]]:
    record = json.loads((FIXTURES / "location-henley-house.json").read_text())
    with transaction(factory) as session:
        replace_registry_locations(session, [{**registry_row(record), "synced_at": utcnow()}])
    records = homes()
    push(client, tracker, *records)
    return records
