"""Property: the search answers exactly what a brute-force filter over the same data does."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.places import district_centroid, haversine_km
from tests.conftest import TokenMaker, bearer
from tests.factories import batch, location, vacancy

POSTCODES = ["M1 1AA", "M14 5AB", "M20 2AD", "SK4 1AA", "WA1 1AA", "BL1 1AA", "OL1 1AA", "LS1 1AA", "PR1 1AA"]
TYPES = ["general-nursing", "dementia-nursing", "general-residential", "dementia-residential"]
LANGUAGES = ["Polish", "Urdu", "Welsh"]
FUNDING = ["local-authority", "sub-icb", "private", "phb"]


def build(seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    records = []
    for n in range(60):
        lines = [
            vacancy(
                t,
                weekly_price_from=float(rng.choice([800, 1000, 1200, 1500])),
                maximum_capacity=10,
                occupied=10 - (a := rng.randint(0, 3)),
                admittable=a,
                reserved=0,
                unavailable=0,
                unavailable_reasons=[],
            )
            for t in rng.sample(TYPES, rng.randint(1, 3))
        ]
        records.append(
            location(
                f"1-{800000 + n}",
                updated_at=f"2026-11-{rng.randint(1, 21):02d}T10:00:00Z",
                address={"line1": "x", "postcode": rng.choice(POSTCODES)},
                languages=["English", *rng.sample(LANGUAGES, rng.randint(0, 2))],
                funding_sources=sorted(rng.sample(FUNDING, rng.randint(1, 3))),
                accepting_admissions=rng.choice([True, True, True, False, None]),  # None: not said
                out_of_hours_admissions=rng.choice([True, False, None]),
                vacancies=lines,
            )
        )
    return records


def brute(records: list[dict[str, Any]], q: dict[str, Any]) -> list[str]:
    out = []
    origin = district_centroid(q["postcode"]) if "postcode" in q else None
    for r in records:
        lines = r["vacancies"]
        if "vacancy_type" in q:
            lines = [ln for ln in lines if ln["vacancy_type"] in q["vacancy_type"]]
        if "max_weekly_price" in q:
            lines = [ln for ln in lines if ln["weekly_price_from"] <= q["max_weekly_price"]]
        if q.get("accepting_today") is True:
            lines = [ln for ln in lines if ln["admittable"] > 0]
        if not lines and ({"vacancy_type", "max_weekly_price"} & set(q) or q.get("accepting_today") is True):
            continue
        if "accepting_today" in q and r["accepting_admissions"] is not q["accepting_today"]:
            continue
        if "language" in q and q["language"] not in r["languages"]:
            continue
        if "funding" in q and not set(q["funding"]) & set(r["funding_sources"]):
            continue
        if "out_of_hours" in q and r["out_of_hours_admissions"] is not q["out_of_hours"]:
            continue
        distance = None
        if origin is not None:
            point = district_centroid(r["address"]["postcode"])
            assert point is not None
            distance = haversine_km(*origin, *point)
            if distance > q["radius_km"]:
                continue
        out.append((distance if distance is not None else 0.0, r["cqc_location_id"]))
    return [i for _, i in sorted(out)]


queries = st.fixed_dictionaries(
    {},
    optional={
        "vacancy_type": st.lists(st.sampled_from(TYPES), min_size=1, max_size=2, unique=True),
        "max_weekly_price": st.sampled_from([900, 1100, 1400]),
        "accepting_today": st.booleans(),
        "language": st.sampled_from(LANGUAGES),
        "funding": st.lists(st.sampled_from(FUNDING), min_size=1, max_size=2, unique=True),
        "out_of_hours": st.booleans(),
        "postcode": st.sampled_from(POSTCODES),
    },
)


@pytest.fixture
def loaded(client: TestClient, make_token: TokenMaker) -> tuple[TestClient, str, list[dict[str, Any]]]:
    token = make_token()
    records = build(3)
    assert (
        client.post(
            "/api/v1/submissions", content=orjson.dumps(batch(*records)), headers=bearer(token)
        ).status_code
        == 200
    )
    return client, token, records


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=queries, radius=st.sampled_from([5, 12, 30, 60]))
def test_search_equals_brute_force(
    loaded: tuple[TestClient, str, list[dict[str, Any]]], q: dict[str, Any], radius: int
) -> None:
    client, token, records = loaded
    if "postcode" in q:
        q = {**q, "radius_km": radius}
    params = {**q, "page_size": 500, "sort": "distance"}
    response = client.get("/api/v1/vacancies", params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    got = [r["cqc_location_id"] for r in response.json()["results"]]
    expected = brute(records, q)
    assert sorted(got) == sorted(expected)
    if "postcode" in q:
        distances = [r["distance_km"] for r in response.json()["results"]]
        assert distances == sorted(distances)
        assert all(d <= radius for d in distances)
