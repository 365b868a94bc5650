"""GET /api/v1/vacancies: one federated search across England, as JSON, CSV or Excel."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from gateway.api.deps import FactoryDep, Reader, SessionDep
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
    SearchQuery,
    Sort,
    check_postcode,
    codes,
    parse_duration,
    refuse,
    stay_types,
)
from gateway.search.service import search

router = APIRouter(prefix="/api/v1")
Many = Annotated[list[str] | None, Query()]


def _search_json(factory: sessionmaker[Session], q: SearchQuery) -> bytes:
    """One page of results as JSON (orjson straight from the result: FastAPI's encoder
    walks every value first)."""
    with factory() as session, session.begin():
        return orjson.dumps(search(session, q))


@router.get("/vacancies", summary="Find vacancies anywhere in England (every source at once)")
async def find_vacancies(
    request: Request,
    factory: FactoryDep,
    _: Reader,
    postcode: Annotated[str | None, Query(description="any England postcode; results closest first")] = None,
    radius_km: Annotated[float | None, Query(description="with postcode: how far to look")] = None,
    local_authority: Many = None,
    icb: Many = None,
    sub_icb: Many = None,
    region: Many = None,
    regulated_activity: Many = None,
    specialism: Many = None,
    service_type: Many = None,
    contract_la: Many = None,
    contract_sub_icb: Many = None,
    stay: Annotated[str | None, Query(description="long-term or short-stay")] = None,
    short_stay_service: Many = None,
    accepting_today: bool | None = None,
    vacancy_type: Many = None,
    rating: Many = None,
    brand: Many = None,
    max_weekly_price: Annotated[float | None, Query(ge=0)] = None,
    language: Many = None,
    notes: Annotated[
        list[str] | None, Query(description="keywords that must all appear in the notes")
    ] = None,
    funding: Many = None,
    updated_within: Annotated[str | None, Query(description="24h, 7d, any, or e.g. 36h / 3d")] = None,
    out_of_hours: bool | None = None,
    provider_type: Many = None,
    sort: Sort = Sort.DISTANCE,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 20,
    format: Literal["json", "csv", "xlsx"] = "json",
) -> Any:
    # Async, with the database work in one worker-thread call: a sync route with a session
    # dependency would take three trips through the thread pool per request.
    known = set(find_vacancies.__annotations__) - {"request", "factory", "_", "return"}
    for name in request.query_params:
        if name not in known:
            raise refuse(name, "unknown parameter")
    point_postcode, radius = check_postcode(postcode, radius_km)
    chosen_stay, types = stay_types(stay, codes("vacancy_type", vacancy_type or [], VacancyType))
    q = SearchQuery(
        postcode=point_postcode or postcode,
        radius_km=radius,
        local_authorities=local_authority or [],
        icbs=icb or [],
        sub_icbs=sub_icb or [],
        regions=codes("region", region or [], NhsRegion),
        regulated_activities=regulated_activity or [],
        specialisms=specialism or [],
        service_types=service_type or [],
        contract_las=contract_la or [],
        contract_sub_icbs=contract_sub_icb or [],
        stay=chosen_stay,
        short_stay_services=codes("short_stay_service", short_stay_service or [], ShortStayService),
        accepting_today=accepting_today,
        vacancy_types=types,
        ratings=codes("rating", rating or [], CqcRating),
        brands=brand or [],
        max_weekly_price=max_weekly_price,
        languages=language or [],
        notes=notes or [],
        funding=codes("funding", funding or [], FundingSource),
        updated_within=parse_duration("updated_within", updated_within),
        out_of_hours=out_of_hours,
        provider_types=codes("provider_type", provider_type or [], ProviderType),
        sort=sort,
        page=page,
        page_size=page_size,
    )
    if format == "json":
        return Response(await run_in_threadpool(_search_json, factory, q), media_type="application/json")
    filters = [(k, v) for k, v in request.query_params.multi_items() if k != "format"]
    stream = exports.csv_stream if format == "csv" else exports.xlsx_stream
    media = "text/csv" if format == "csv" else exports.XLSX
    return StreamingResponse(
        stream(factory, q, filters),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="vacancies.{format}"'},
    )


@router.get("/reports/occupancy", summary="Occupancy by NHS region, local authority, ICB or vacancy type")
def occupancy_report(
    session: SessionDep,
    _: Reader,
    group_by: Literal["nhs_region", "local_authority", "icb", "vacancy_type"] = "nhs_region",
    group: Annotated[str | None, Query(description="drill down: the locations of this group")] = None,
    stay: Literal["long-term", "short-stay"] | None = None,
    vacancy_type: Many = None,
    out_of_hours: bool | None = None,
    accepting_admissions: bool | None = None,
    provider_type: Many = None,
    format: Literal["json", "csv", "xlsx"] = "json",
) -> Any:
    report = reports.occupancy(
        session,
        group_by=group_by,
        stay=stay,
        vacancy_types=codes("vacancy_type", vacancy_type or [], VacancyType),
        out_of_hours=out_of_hours,
        accepting=accepting_admissions,
        provider_types=codes("provider_type", provider_type or [], ProviderType),
        group=group,
    )
    if format == "json":
        return report
    rows = report.get("locations") or [*report["rows"], report["total"]]
    return exports.table_response(rows, f"occupancy-by-{group_by}", format)


@router.get("/reports/unavailable", summary="Vacancies not available for admission, by reason and area")
def unavailable_report(
    session: SessionDep,
    _: Reader,
    group_by: Literal["nhs_region", "local_authority", "icb"] = "nhs_region",
    provider_type: Many = None,
    format: Literal["json", "csv", "xlsx"] = "json",
) -> Any:
    report = reports.unavailable(
        session, group_by=group_by, provider_types=codes("provider_type", provider_type or [], ProviderType)
    )
    if format == "json":
        return report
    flat = [
        {"group": row["group"], "unavailable_beds": row["unavailable_beds"], **row["by_reason"]}
        for row in [*report["rows"], report["total"]]
    ]
    return exports.table_response(flat, f"unavailable-by-{group_by}", format)
