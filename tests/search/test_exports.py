"""Exports never hand a spreadsheet a formula: provider text that starts like one is
written as text, in CSV and in Excel, for searches and reports alike."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy.orm import Session, sessionmaker

from gateway.search import exports
from gateway.search.exports import spreadsheet_cell
from gateway.search.query import SearchQuery
from tests.conftest import TokenMaker, bearer
from tests.factories import batch, location

NAME, NOTES = "=1+1", "@SUM(A1)"
URL = "/api/v1/vacancies"
exports_rows = exports.rows


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=1+1", "'=1+1"),
        ("+44 161 496 0000", "'+44 161 496 0000"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
    ],
)
def test_text_that_starts_like_a_formula_gets_a_leading_quote(value: str, written: str) -> None:
    assert spreadsheet_cell(value) == written


@pytest.mark.parametrize(
    "value", [-3, -2.5, 0, 1150.0, True, None, "", "Hoist; 1+1 beds", "Oak = Ash", "'=1"]
)
def test_numbers_and_other_text_are_left_as_they_are(value: Any) -> None:
    assert spreadsheet_cell(value) == value
    assert type(spreadsheet_cell(value)) is type(value)


@pytest.fixture
def token(client: TestClient, make_token: TokenMaker) -> str:
    token = make_token()
    record = location("1-9", name=NAME, notes=NOTES, local_authority="-Wigan")
    response = client.post("/api/v1/submissions", content=orjson.dumps(batch(record)), headers=bearer(token))
    assert response.json()["summary"]["accepted"] == 1, response.text
    return token


def csv_table(text: str, skip: int) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO("\n".join(text.splitlines()[skip:]))))


def test_vacancy_csv_writes_formula_text_as_text(client: TestClient, token: str) -> None:
    response = client.get("/api/v1/vacancies", params={"format": "csv"}, headers=bearer(token))
    [row] = csv_table(response.text, 3)
    assert (row["Location name"], row["Notes"], row["Local authority"]) == ("'=1+1", "'@SUM(A1)", "'-Wigan")
    assert row["Weekly price from (GBP)"] == "1150.0" and row["Maximum capacity"] == "20"


def test_vacancy_excel_holds_formula_text_as_text(client: TestClient, token: str) -> None:
    response = client.get("/api/v1/vacancies", params={"format": "xlsx"}, headers=bearer(token))
    sheet = load_workbook(io.BytesIO(response.content))["Vacancies"]
    header, row = (list(r) for r in sheet.iter_rows(min_row=1, max_row=2))
    cells = {h.value: cell for h, cell in zip(header, row, strict=True)}
    assert [(cells[h].value, cells[h].data_type) for h in ("Location name", "Notes", "Local authority")] == [
        ("'=1+1", "s"),
        ("'@SUM(A1)", "s"),
        ("'-Wigan", "s"),
    ]
    assert not [c for c in row if c.data_type == "f"]
    assert (cells["Maximum capacity"].value, cells["Maximum capacity"].data_type) == (20, "n")


def test_report_exports_write_formula_text_as_text(client: TestClient, token: str) -> None:
    params = {"group_by": "local_authority"}
    url = "/api/v1/reports/occupancy"
    text = client.get(url, params={**params, "format": "csv"}, headers=bearer(token)).text
    assert [row["group"] for row in csv_table(text, 1)] == ["'-Wigan", "England"]
    content = client.get(url, params={**params, "format": "xlsx"}, headers=bearer(token)).content
    sheet = load_workbook(io.BytesIO(content)).worksheets[0]
    group = sheet.cell(row=3, column=1)
    assert (group.value, group.data_type) == ("'-Wigan", "s")
    assert not [c for r in sheet.iter_rows() for c in r if c.data_type == "f"]


def test_csv_exports_carry_a_byte_order_mark_so_spreadsheets_read_utf8(
    client: TestClient, make_token: TokenMaker
) -> None:
    """Excel takes a CSV without a byte-order mark for its local code page: 'Café' and '£'
    come out garbled. With the mark, the text reads back exactly as UTF-8."""
    token = make_token()
    record = location("1-10", name="Café Lodge", notes="£50 a week towards outings")
    client.post("/api/v1/submissions", content=orjson.dumps(batch(record)), headers=bearer(token))
    for url, params in (
        ("/api/v1/vacancies", {"format": "csv"}),
        ("/api/v1/reports/occupancy", {"format": "csv", "group_by": "local_authority"}),
    ):
        response = client.get(url, params=params, headers=bearer(token))
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert response.content.startswith(b"\xef\xbb\xbf#")
        assert response.content.decode("utf-8-sig").startswith("#")  # one mark, then the table
    text = client.get("/api/v1/vacancies", params={"format": "csv"}, headers=bearer(token)).text
    [row] = [r for r in csv_table(text, 3) if r["CQC location ID"] == "1-10"]
    assert (row["Location name"], row["Notes"]) == ("Café Lodge", "£50 a week towards outings")


def test_excel_exports_hold_last_updates_as_dates(client: TestClient, make_token: TokenMaker) -> None:
    """A spreadsheet sorts and filters "last updated" as a date only when the cell is one:
    Excel's date-time in UTC (the file says so), while CSV keeps the ISO time."""
    token = make_token()
    record = location("1-11", updated_at="2026-11-20T09:30:00+01:00")
    client.post("/api/v1/submissions", content=orjson.dumps(batch(record)), headers=bearer(token))
    utc = datetime(2026, 11, 20, 8, 30)

    workbook = load_workbook(
        io.BytesIO(client.get(URL, params={"format": "xlsx"}, headers=bearer(token)).content)
    )
    header, row = (list(r) for r in workbook["Vacancies"].iter_rows(min_row=1, max_row=2))
    updated = {h.value: cell for h, cell in zip(header, row, strict=True)}["Last updated by provider"]
    assert (updated.value, updated.is_date) == (utc, True)
    assert "Times are UTC." in [r[0] for r in workbook["About this export"].values]
    text = client.get(URL, params={"format": "csv"}, headers=bearer(token)).text
    assert csv_table(text, 3)[0]["Last updated by provider"] == "2026-11-20T08:30:00+00:00"

    params = {"group": "north-west", "format": "xlsx"}
    content = client.get("/api/v1/reports/occupancy", params=params, headers=bearer(token)).content
    sheet = load_workbook(io.BytesIO(content)).worksheets[0]
    assert "UTC" in sheet.cell(row=1, column=1).value
    names = [cell.value for cell in sheet[2]]
    last = sheet.cell(row=3, column=names.index("last_updated") + 1)
    assert (last.value, last.is_date) == (utc, True)


@pytest.mark.parametrize("stream", [exports.csv_stream, exports.xlsx_stream])
def test_an_export_gives_its_database_connection_back_before_streaming(
    token: str,
    engine: sa.Engine,
    factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    stream: Callable[..., Iterator[Any]],
) -> None:
    """A national export streams for as long as its client takes to download it; holding
    a pooled connection all that while would starve searches when a few run at once."""
    held: list[int] = []

    def rows(result: dict[str, Any]) -> Iterator[list[Any]]:
        held.append(engine.pool.checkedout())  # type: ignore[attr-defined]
        return exports_rows(result)

    monkeypatch.setattr(exports, "rows", rows)
    chunks = list(stream(exports.results_of(factory, SearchQuery()), [("language", "English")]))
    assert chunks and held == [0]


def test_a_control_character_excel_cannot_hold_is_replaced_not_fatal(
    client: TestClient, make_token: TokenMaker
) -> None:
    """A vertical tab pasted into notes, or typed into a filter: the Excel file is written
    with U+FFFD in its place (openpyxl had refused the file: an empty search export, a 500
    for a report). The CSV keeps the text as sent."""
    token = make_token()
    record = location("1-9", name="Oak Lodge\x02", notes="Hoist\x0bavailable", local_authority="Wigan")
    client.post("/api/v1/submissions", content=orjson.dumps(batch(record)), headers=bearer(token))
    search = client.get(
        "/api/v1/vacancies", params={"format": "xlsx", "language": "Polish\x1b"}, headers=bearer(token)
    )
    assert search.status_code == 200 and search.content
    book = load_workbook(io.BytesIO(search.content))
    about = [row[0] for row in book["About this export"].values]
    assert any("language=Polish\ufffd" in str(line) for line in about)
    everyone = client.get("/api/v1/vacancies", params={"format": "xlsx"}, headers=bearer(token))
    header, row = (list(r) for r in load_workbook(io.BytesIO(everyone.content))["Vacancies"].values)
    cells = dict(zip(header, row, strict=True))
    assert (cells["Location name"], cells["Notes"]) == ("Oak Lodge\ufffd", "Hoist\ufffdavailable")
    drill = client.get(
        "/api/v1/reports/occupancy",
        params={"group_by": "local_authority", "group": "Wigan", "format": "xlsx"},
        headers=bearer(token),
    )
    assert drill.status_code == 200, drill.text
    assert "Oak Lodge\ufffd" in [
        c for r in load_workbook(io.BytesIO(drill.content)).worksheets[0].values for c in r
    ]
    csv_text = client.get("/api/v1/vacancies", params={"format": "csv"}, headers=bearer(token)).text
    assert "Hoist\x0bavailable" in csv_text
