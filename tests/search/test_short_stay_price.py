"""A short-stay search prices a home by its short-stay weekly cost, not its long-term line
price; a home that gives no short-stay cost is priced by its line instead."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from tests.conftest import TokenMaker, bearer
from tests.factories import batch, location, vacancy


def home(cqc_id: str, short_stay_cost: float | None, line_price: float | None) -> dict[str, Any]:
    return location(
        cqc_id,
        short_stay_services=["respite-care"],
        short_stay_weekly_cost=short_stay_cost,
        vacancies=[vacancy("general-residential", weekly_price_from=line_price)],
    )


@pytest.fixture
def token(client: TestClient, make_token: TokenMaker) -> str:
    token = make_token()
    homes = [
        home("1-1", 550.0, 600.0),  # short stays cheaper than long-term care
        home("1-2", 700.0, 500.0),  # short stays dearer
        home("1-3", None, 600.0),  # no short-stay cost: its line's price stands in
        home("1-4", None, None),  # no price at all
    ]
    response = client.post("/api/v1/submissions", content=orjson.dumps(batch(*homes)), headers=bearer(token))
    assert response.json()["summary"]["accepted"] == len(homes), response.text
    return token


def found(client: TestClient, token: str, **params: Any) -> list[str]:
    response = client.get("/api/v1/vacancies", params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    return [r["cqc_location_id"] for r in response.json()["results"]]


@pytest.mark.parametrize(
    ("max_weekly_price", "expected"),
    [(549, []), (560, ["1-1"]), (600, ["1-1", "1-3"]), (700, ["1-1", "1-2", "1-3"])],
)
def test_a_short_stay_is_priced_by_the_short_stay_cost(
    client: TestClient, token: str, max_weekly_price: int, expected: list[str]
) -> None:
    assert found(client, token, stay="short-stay", max_weekly_price=max_weekly_price) == expected


@pytest.mark.parametrize("stay", ["long-term", None])
def test_other_searches_still_price_by_the_line(client: TestClient, token: str, stay: str | None) -> None:
    params = {"max_weekly_price": 560} | ({"stay": stay} if stay else {})
    assert found(client, token, **params) == ["1-2"]


def test_without_a_short_stay_cost_the_line_price_stands_in(client: TestClient, token: str) -> None:
    assert "1-3" not in found(client, token, stay="short-stay", max_weekly_price=599)
    assert "1-3" in found(client, token, stay="short-stay", max_weekly_price=600)
    assert "1-4" not in found(client, token, stay="short-stay", max_weekly_price=10_000)


def test_short_stays_sorted_by_price_use_the_short_stay_cost(client: TestClient, token: str) -> None:
    assert found(client, token, stay="short-stay", sort="price") == ["1-1", "1-3", "1-2", "1-4"]
    assert found(client, token, sort="price") == ["1-2", "1-1", "1-3", "1-4"]


def test_a_short_stay_export_shows_the_cost_it_was_filtered_and_sorted_by(
    client: TestClient, token: str
) -> None:
    # Filtered at £560 a week, the file must show why 1-1 (£550 a short stay, £600 a
    # long-term week) is in it, not only its £600 line price.
    params = {"stay": "short-stay", "max_weekly_price": 560, "format": "csv"}
    response = client.get("/api/v1/vacancies", params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    table = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    header = next(row for row in table if row and row[0] == "CQC location ID")
    [row] = table[table.index(header) + 1 :]
    exported = dict(zip(header, row, strict=True))
    assert exported["CQC location ID"] == "1-1"
    assert exported["Short-stay weekly cost (GBP)"] == "550.0"
    assert exported["Weekly price from (GBP)"] == "600.0"
