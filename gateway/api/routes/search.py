"""GET /api/v1/vacancies: one federated search across England, as JSON, CSV or Excel."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams

from gateway.api.deps import FactoryDep, Reader, SessionDep
from gateway.api.query_params import Param, QueryParameters, only_parameters
from gateway.model.vocab import (
    CqcRating,
    FundingSource,
    NhsRegion,
    ProviderType,
    ShortStayService,
    VacancyType,
)
from gateway.search import exports, reports
from gateway.search.query import (
    MAX_RADIUS_KM,
    SearchQuery,
    Sort,
    area_codes,
    check_postcode,
    codes,
    keywords,
    parse_duration,
    refuse,
    stay_types,
)
from gateway.search.service import search

router = APIRouter(prefix="/api/v1")
Many = Annotated[list[str] | None, Query()]
MAX_PAGE = 1_000_000  # far past the last page of England's care homes, at one a page


def _search_json(factory: sessionmaker[Session], q: SearchQuery) -> bytes:
    """One page of results as JSON (orjson straight from the result: FastAPI's encoder
    walks every value first)."""
    with factory() as session, session.begin():
        return orjson.dumps(search(session, q))


def _listed(vocabulary: type[StrEnum]) -> str:
    return "codes (or display names): " + ", ".join(m.value for m in vocabulary)


_NOT_FILTERS = frozenset({"format", "page", "page_size"})
VACANCY_PARAMETERS = QueryParameters(
    [
        Param("postcode", description="any England postcode, in any case and spacing; results closest first"),
        Param(
            "radius_km",
            "number",
            description="with postcode: how far to look (km)",
            above=0,
            maximum=MAX_RADIUS_KM,
        ),
        Param("local_authority", many=True, description="local authority names"),
        Param("icb", many=True, description="ICB codes"),
        Param("sub_icb", many=True, description="sub-ICB codes"),
        Param("region", many=True, description="NHS regions: " + _listed(NhsRegion)),
        Param("regulated_activity", many=True, description="CQC regulated activities"),
        Param("specialism", many=True, description="CQC specialisms"),
        Param("service_type", many=True, description="CQC service types"),
        Param("contract_la", many=True, description="contracted with this local authority"),
        Param("contract_sub_icb", many=True, description="contracted with this sub-ICB"),
        Param("stay", description="long-term or short-stay"),
        Param("short_stay_service", many=True, description=_listed(ShortStayService)),
        Param(
            "accepting_today",
            "boolean",
            description="accepting admissions today (a location whose source did not say matches neither)",
        ),
        Param("vacancy_type", many=True, description=_listed(VacancyType)),
        Param("rating", many=True, description="CQC overall ratings: " + _listed(CqcRating)),
        Param("brand", many=True, description="brand names or ids"),
        Param("max_weekly_price", "number", description="weekly price at most (pounds)", minimum=0),
        Param("language", many=True, description="languages spoken (all of them)"),
        Param(
            "notes",
            many=True,
            description="keywords that must all appear in the notes (one value may list several: a, b)",
        ),
        Param("funding", many=True, description="funding accepted: " + _listed(FundingSource)),
        Param("updated_within", description="24h, 7d, any, or e.g. 36h / 3d"),
        Param("out_of_hours", "boolean", description="admits out of hours"),
        Param("provider_type", many=True, description=_listed(ProviderType)),
        Param("sort", default=Sort.DISTANCE.value, choices=tuple(s.value for s in Sort)),
        Param("page", "integer", default=1, minimum=1, maximum=MAX_PAGE),
        Param("page_size", "integer", default=20, minimum=1, maximum=500),
        Param("format", default="json", choices=("json", "csv", "xlsx")),
    ]
)


def _given(query: QueryParams) -> QueryParams:
    """The parameters given a value. A blank one is not given, as in the tracker's search
    form ("Contract with LA: blank for all"): a form sends its empty fields, and a blank
    brand or language must not find nothing. An unknown name is refused even blank."""
    for name in query:
        if name not in VACANCY_PARAMETERS.params:
            raise refuse(name, "unknown parameter")
    return _without_blanks(query)


def _without_blanks(query: QueryParams) -> QueryParams:
    return QueryParams([(k, v) for k, v in query.multi_items() if v.strip()])


@router.get(
    "/vacancies",
    summary="Find vacancies anywhere in England (every source at once)",
    openapi_extra=VACANCY_PARAMETERS.openapi(),
)
async def find_vacancies(request: Request, factory: FactoryDep, _: Reader) -> Any:
    """Filters combine with AND; several values of one filter with OR."""
    # The parameters are parsed from one table (FastAPI's validation of 28 of them cost
    # more than the search), and the database work is one worker-thread call.
    p = VACANCY_PARAMETERS.parse(_given(request.query_params))
    postcode, format = p["postcode"], p["format"]
    point_postcode, radius = check_postcode(postcode, p["radius_km"])
    chosen_stay, types = stay_types(p["stay"], codes("vacancy_type", p["vacancy_type"], VacancyType))
    q = SearchQuery(
        postcode=point_postcode or postcode,
        radius_km=radius,
        local_authorities=p["local_authority"],
        icbs=area_codes(p["icb"]),
        sub_icbs=area_codes(p["sub_icb"]),
        regions=codes("region", p["region"], NhsRegion),
        regulated_activities=p["regulated_activity"],
        specialisms=p["specialism"],
        service_types=p["service_type"],
        contract_las=p["contract_la"],
        contract_sub_icbs=p["contract_sub_icb"],
        stay=chosen_stay,
        short_stay_services=codes("short_stay_service", p["short_stay_service"], ShortStayService),
        accepting_today=p["accepting_today"],
        vacancy_types=types,
        ratings=codes("rating", p["rating"], CqcRating),
        brands=p["brand"],
        max_weekly_price=p["max_weekly_price"],
        languages=p["language"],
        notes=keywords(p["notes"]),
        funding=codes("funding", p["funding"], FundingSource),
        updated_within=parse_duration("updated_within", p["updated_within"]),
        out_of_hours=p["out_of_hours"],
        provider_types=codes("provider_type", p["provider_type"], ProviderType),
        sort=Sort(p["sort"]),
        page=p["page"],
        page_size=p["page_size"],
    )
    if format == "json":
        return Response(await run_in_threadpool(_search_json, factory, q), media_type="application/json")
    # An export holds every page of the query, so paging is no filter of it.
    filters = [(k, v) for k, v in _given(request.query_params).multi_items() if k not in _NOT_FILTERS]
    stream = exports.csv_stream if format == "csv" else exports.xlsx_stream
    media = "text/csv" if format == "csv" else exports.XLSX
    results = await run_in_threadpool(exports.results_of, factory, q)  # bad input: a 422 here
    return StreamingResponse(
        stream(results, filters),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="vacancies.{format}"'},
    )


def _report_filters(given: QueryParams, report: dict[str, Any]) -> str:
    """What a report's file was drawn from, written in it: the filters asked and the
    provider types counted (care homes when none was asked), so a file read later says
    which figures it holds."""
    asked = [f"{k}={v}" for k, v in given.multi_items() if k != "format"]
    counted = ", ".join(report["provider_types"])
    about = f"Filters: {'; '.join(asked) or 'none'}; provider types counted: {counted}"
    # How its figures count (a bed under each of its line's reasons, say): the file is read
    # without the JSON answer's note beside it.
    note = report.get("note")
    return f"{about}. Note: {note}" if note else about


def _asked(request: Request, parameters: QueryParameters) -> tuple[QueryParams, dict[str, Any]]:
    """A report's parameters given a value (blank ones are not), and each parameter's
    value. Its route's ``only_parameters`` has refused any name it does not have."""
    given = _without_blanks(request.query_params)
    return given, parameters.parse(given)


_FORMAT = Param("format", default="json", choices=("json", "csv", "xlsx"))
_PROVIDER_TYPE = Param(
    "provider_type", many=True, description=_listed(ProviderType) + " (care homes when none is given)"
)
# The reports' parameters are parsed as the search's are: a blank one (a form's empty
# field) is not given, and a name a report does not have is refused, blank or not.
OCCUPANCY_PARAMETERS = QueryParameters(
    [
        Param(
            "group_by", default="nhs_region", choices=("nhs_region", "local_authority", "icb", "vacancy_type")
        ),
        Param("group", description="drill down: the locations of this group (a region by code or name)"),
        Param("stay", choices=("long-term", "short-stay")),
        Param("vacancy_type", many=True, description=_listed(VacancyType)),
        Param("out_of_hours", "boolean", description="admits out of hours"),
        Param("accepting_admissions", "boolean", description="says it accepts admissions"),
        _PROVIDER_TYPE,
        _FORMAT,
    ]
)
UNAVAILABLE_PARAMETERS = QueryParameters(
    [
        Param("group_by", default="nhs_region", choices=("nhs_region", "local_authority", "icb")),
        _PROVIDER_TYPE,
        _FORMAT,
    ]
)


@router.get(
    "/reports/occupancy",
    summary="Occupancy by NHS region, local authority, ICB or vacancy type",
    dependencies=[only_parameters(*OCCUPANCY_PARAMETERS.params)],
    openapi_extra=OCCUPANCY_PARAMETERS.openapi(),
)
def occupancy_report(request: Request, session: SessionDep, _: Reader) -> Any:
    given, p = _asked(request, OCCUPANCY_PARAMETERS)
    group_by, format = p["group_by"], p["format"]
    report = reports.occupancy(
        session,
        group_by=group_by,
        stay=p["stay"],
        vacancy_types=codes("vacancy_type", p["vacancy_type"], VacancyType),
        out_of_hours=p["out_of_hours"],
        accepting=p["accepting_admissions"],
        provider_types=codes("provider_type", p["provider_type"], ProviderType),
        group=p["group"],
    )
    if format == "json":
        return report
    about = _report_filters(given, report)
    if "locations" in report:  # a drill-down: its locations, even when it has none
        return exports.table_response(
            report["locations"], f"occupancy-by-{group_by}", format, reports.LOCATION_COLUMNS, about
        )
    rows = [*report["rows"], report["total"]]
    return exports.table_response(rows, f"occupancy-by-{group_by}", format, reports.GROUP_COLUMNS, about)


@router.get(
    "/reports/unavailable",
    summary="Vacancies not available for admission, by reason and area",
    dependencies=[only_parameters(*UNAVAILABLE_PARAMETERS.params)],
    openapi_extra=UNAVAILABLE_PARAMETERS.openapi(),
)
def unavailable_report(request: Request, session: SessionDep, _: Reader) -> Any:
    given, p = _asked(request, UNAVAILABLE_PARAMETERS)
    group_by, format = p["group_by"], p["format"]
    report = reports.unavailable(
        session, group_by=group_by, provider_types=codes("provider_type", p["provider_type"], ProviderType)
    )
    if format == "json":
        return report
    rows, columns, headers = reports.unavailable_table(report)
    return exports.table_response(
        rows, f"unavailable-by-{group_by}", format, columns, _report_filters(given, report), headers
    )
