"""Search results as CSV or Excel, with the filters and the export time in the file.

CSV is streamed row by row; Excel is written by openpyxl's write-only workbook (rows go
to disk as they come) into a temporary file, then streamed. Results come one at a time
from one snapshot of the process's search index, which the process keeps anyway, so a
national export holds no more than its output buffer.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from sqlalchemy.orm import Session, sessionmaker

from gateway.model.vocab import VacancyType
from gateway.search.query import SearchQuery
from gateway.search.service import iterate_all
from gateway.store.tables import utcnow

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# The exports are for spreadsheets: without a byte-order mark Excel reads UTF-8 text as
# its local code page and garbles every '£' and accented name.
BOM = "\ufeff"
HEADERS = [
    "CQC location ID",
    "Location name",
    "Provider",
    "Provider type",
    "Distance (km)",
    "Address",
    "Postcode",
    "Local authority",
    "NHS region",
    "CQC overall rating",
    "Brand",
    "Vacancy type",
    "Weekly price from (GBP)",
    "Maximum capacity",
    "Occupied",
    "Vacancies (total)",
    "Vacant: reserved",
    "Vacant: accepting admissions",
    "Vacant: not available for admission",
    "Reasons not available",
    "Flexible",
    "Admission status",
    "Accepting out-of-hours admissions",
    "Short-stay services",
    # What a short stay costs here: a short-stay search's price filter and sort read it.
    "Short-stay weekly cost (GBP)",
    "Languages",
    "Notes",
    "Funding accepted",
    "Last updated by provider",
    "Source",
    "Data-quality flags",
]
# What a spreadsheet takes for the start of a formula in a cell of text (OWASP, "CSV
# Injection"): provider text such as a name or notes must never run as one.
_ADMISSION_STATUS = {
    True: "Accepting admissions",
    False: "Not accepting admissions",
    None: "Admission status not given",
}
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_UPDATED = HEADERS.index("Last updated by provider")
# Report columns that hold a time (ISO text in JSON and CSV, a date-time in Excel).
_TIME_COLUMNS = frozenset({"last_updated"})
_UTC_NOTE = "Times are UTC."


def spreadsheet_cell(value: Any) -> Any:
    """``value`` as a cell no spreadsheet runs as a formula: text that starts like one gets
    a leading ``'`` (OWASP's advice); numbers, negative ones too, and other text stay."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _cells(values: Iterable[Any], missing: Any = None) -> list[Any]:
    """A row as written to CSV or Excel: every cell through ``spreadsheet_cell``, a
    missing value as ``missing``."""
    return [missing if v is None else spreadsheet_cell(v) for v in values]


def _excel_row(values: Iterable[Any]) -> list[Any]:
    """A row as Excel can hold it: a control character (a vertical tab pasted into notes,
    say) that the file format cannot carry becomes U+FFFD, where openpyxl refused the
    whole file (the export ended empty, a report's was a 500)."""
    return [ILLEGAL_CHARACTERS_RE.sub("\ufffd", v) if isinstance(v, str) else v for v in values]


def excel_time(value: Any) -> Any:
    """An ISO time as Excel's own date-time (UTC, as Excel holds no time zone), so a
    spreadsheet sorts and filters it as a date; anything else as it is."""
    if not isinstance(value, str):
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return spreadsheet_cell(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _display(code: str | None) -> str:
    try:
        return VacancyType(code).display if code else ""
    except ValueError:
        return code or ""


def rows(result: dict[str, Any]) -> Iterator[list[Any]]:
    """One row per matching vacancy line (a location with none still gets one row)."""
    base = [
        result["cqc_location_id"],
        result["name"],
        result["provider"]["name"],
        result["provider_type"],
        result["distance_km"],
        result["address"]["line1"],
        result["address"]["postcode"],
        result["local_authority"],
        result["nhs_region"],
        result["overall_rating"],
        result["brand"],
    ]
    tail = [
        _ADMISSION_STATUS[result["accepting_admissions"]],
        {True: "Yes", False: "No", None: ""}[result["out_of_hours_admissions"]],
        "; ".join(result["short_stay_services"] or []),
        result["short_stay_weekly_cost"],
        "; ".join(result["languages"] or []),
        result["notes"] or "",
        "; ".join(result["funding_sources"] or []),
        result["provider_last_updated"],
        result["source"],
        "; ".join(result["quality_flags"]),
    ]
    for line in result["vacancies"] or [None]:
        if line is None:
            yield base + [""] * 10 + tail
            continue
        yield (
            base
            + [
                _display(line["vacancy_type"]),
                line["weekly_price_from"],
                line["maximum_capacity"],
                line["occupied"],
                line["vacancies_total"],
                line["reserved"],
                line["admittable"],
                line["unavailable"],
                "; ".join(line["unavailable_reasons"]),
                "Yes" if line["flexible"] else "No",
            ]
            + tail
        )


def _preamble(filters: list[tuple[str, str]]) -> list[str]:
    described = "; ".join(f"{k}={v}" for k, v in filters) or "none (all of England)"
    return [f"Exported at: {utcnow().isoformat(timespec='seconds')}", f"Filters: {described}"]


def results_of(factory: sessionmaker[Session], q: SearchQuery) -> Iterator[dict[str, Any]]:
    """Every result of ``q``, from the index's snapshot as of now. Called before the
    export's answer starts, so bad input is still a 422 (not a broken download), and the
    database is read and its connection given back before the first row is streamed: an
    export streams for as long as its client takes to download it, and must not hold a
    connection meanwhile."""
    with factory() as session:
        return iterate_all(session, q)


def csv_stream(results: Iterable[dict[str, Any]], filters: list[tuple[str, str]]) -> Iterator[str]:
    buffer = io.StringIO()
    buffer.write(BOM)
    writer = csv.writer(buffer)
    for line in ["National Care Capacity Gateway: vacancy search", *_preamble(filters)]:
        writer.writerow([f"# {line}"])
    writer.writerow(HEADERS)
    for result in results:
        for row in rows(result):
            writer.writerow(_cells(row, ""))
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def xlsx_stream(results: Iterable[dict[str, Any]], filters: list[tuple[str, str]]) -> Iterator[bytes]:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Vacancies")
    sheet.append(HEADERS)
    for result in results:
        for row in rows(result):
            cells = _cells(row)
            cells[_UPDATED] = excel_time(row[_UPDATED])
            sheet.append(_excel_row(cells))
    about = workbook.create_sheet("About this export")
    about.append(["National Care Capacity Gateway: vacancy search"])
    for line in [*_preamble(filters), _UTC_NOTE]:
        about.append(_excel_row([line]))
    with tempfile.TemporaryFile() as handle:
        workbook.save(handle)
        handle.seek(0)
        while chunk := handle.read(256 * 1024):
            yield chunk


def table_response(
    rows: list[dict[str, Any]],
    name: str,
    fmt: str,
    columns: list[str],
    about: str = "",
    headers: list[str] | None = None,
) -> Any:
    """A small report table as CSV or Excel (reports are a few hundred rows at most): the
    rows' ``columns`` whatever the rows hold (a row without one: a blank cell), headed by
    ``headers`` (else the columns' keys), and ``about`` (the filters it was drawn from)
    after the export time on its first line."""
    from fastapi.responses import Response

    stamp = f"Exported at: {utcnow().isoformat(timespec='seconds')}" + (f"; {about}" if about else "")
    if fmt == "csv":
        buffer = io.StringIO()
        buffer.write(BOM)
        writer = csv.writer(buffer)
        writer.writerow([f"# {stamp}"])
        writer.writerow(_cells(headers or columns))
        for row in rows:
            writer.writerow(_cells((row.get(c) for c in columns), ""))
        return Response(
            buffer.getvalue(),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(name[:31])
    sheet.append(_excel_row([f"{stamp} {_UTC_NOTE}"]))
    sheet.append(_excel_row(_cells(headers or columns)))
    for row in rows:
        sheet.append(
            _excel_row((excel_time if c in _TIME_COLUMNS else spreadsheet_cell)(row.get(c)) for c in columns)
        )
    out = io.BytesIO()
    workbook.save(out)
    return Response(
        out.getvalue(),
        media_type=XLSX,
        headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
    )
