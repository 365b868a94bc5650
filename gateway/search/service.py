"""The federated vacancy search over the national view (every source at once).

The search index (``gateway.search.index``) finds, orders and shows the matching
locations, each with its vacancy lines that meet the query's line filters. A location's
point is the registry's coordinates, else its postcode district's centroid (kept on the
location row).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from functools import cache, partial
from typing import Any

from rapidfuzz import fuzz, process
from sqlalchemy.orm import Session

from gateway.errors import Unprocessable
from gateway.places import district_centroid, load_districts, normalise_postcode
from gateway.search.index import Snapshot, index_for
from gateway.search.query import SearchQuery, area_code, authority_key, district_searched, refuse, text_key
from gateway.store import registry as registry_queries
from gateway.store.tables import utcnow


def resolve_point(snapshot: Snapshot, postcode: str) -> tuple[float, float, str]:
    """A searched postcode as a point: the exact postcode where the registry knows it,
    else its district's centroid (a district or sector searched alone too); (latitude,
    longitude, how it was found)."""
    normal = normalise_postcode(postcode)
    if normal is not None and normal in snapshot.points:
        lat, lon = snapshot.points[normal]
        return lat, lon, "postcode"
    district = district_searched(postcode)
    centroid = district_centroid(normal or (f"{district} 1AA" if district else None))
    if centroid is None:
        raise Unprocessable(
            f"postcode: {postcode!r} is not a postcode of England the gateway knows",
            errors=[{"parameter": "postcode", "message": "unknown in England"}],
        )
    return centroid[0], centroid[1], "district"


def search(session: Session, q: SearchQuery, now: datetime | None = None) -> dict[str, Any]:
    """One page of results with the total."""
    snapshot, found, origin = _find(session, q, now)
    start = (q.page - 1) * q.page_size
    return {
        "total": len(found),
        "page": q.page,
        "page_size": q.page_size,
        "sort": q.sort.value,
        "origin": origin,
        "results": list(snapshot.results(q, found[start : start + q.page_size])),
    }


def iterate_all(session: Session, q: SearchQuery) -> Iterator[dict[str, Any]]:
    """Every result of a query in order (exports), from one snapshot of the index."""
    snapshot, found, _ = _find(session, q, None)
    return snapshot.results(q, found)


def _find(
    session: Session, q: SearchQuery, now: datetime | None
) -> tuple[Snapshot, list[tuple[int, float | None]], dict[str, Any] | None]:
    """The index as of now, every matching location in order, and the searched point."""
    snapshot = index_for(session).current(session)
    check_named_values(session, snapshot, q)
    point = origin = None
    if q.postcode is not None:
        lat, lon, how = resolve_point(snapshot, q.postcode)
        point, origin = (
            (lat, lon),
            {"postcode": q.postcode, "latitude": lat, "longitude": lon, "found_by": how},
        )
    return snapshot, snapshot.find(q, point, now or utcnow()), origin


def check_named_values(session: Session, snapshot: Snapshot, q: SearchQuery) -> None:
    """Refuse any searched name or code nobody knows (``check_known``): a local authority
    or a contract with one, an ICB or sub-ICB code, a specialism, service type, regulated
    activity, brand or contract with a sub-ICB."""
    if q.local_authorities:
        check_local_authorities(
            q.local_authorities,
            lambda: [
                *snapshot.categories["local_authority"][1],
                *registry_queries.registry_authorities(session),
            ],
        )
    if q.contract_las:  # a local authority, or as some home's contract names one
        check_local_authorities(
            q.contract_las,
            lambda: [
                *snapshot.held("contract_las"),
                *snapshot.categories["local_authority"][1],
                *registry_queries.registry_authorities(session),
            ],
            "contract_la",
        )
    for area, wanted in (("icb", q.icbs), ("sub_icb", q.sub_icbs)):
        if wanted:
            check_area_codes(
                area,
                wanted,
                snapshot.categories[area][1],
                partial(registry_queries.registry_values, session, area),
            )

    def brands() -> Iterable[str | None]:
        return [*snapshot.categories["brand_name"][1], *snapshot.categories["brand_id"][1]]

    def contract_sub_icbs() -> Iterable[str | None]:
        return [*snapshot.held("contract_sub_icbs"), *snapshot.categories["sub_icb"][1]]

    # What the view holds of each (read only when searched for), and how alike a value must
    # be to be suggested.
    for parameter, what, wanted, held, cutoff in (
        ("specialism", "specialism", q.specialisms, partial(snapshot.held, "specialisms"), 70),
        ("service_type", "service type", q.service_types, partial(snapshot.held, "service_types"), 70),
        (
            "regulated_activity",
            "regulated activity",
            q.regulated_activities,
            partial(snapshot.held, "regulated_activities"),
            70,
        ),
        ("brand", "brand", q.brands, brands, 70),
        ("contract_sub_icb", "sub-ICB", q.contract_sub_icbs, contract_sub_icbs, 60),  # often a code: '01W'
    ):
        if wanted:
            check_known(
                parameter,
                wanted,
                {text_key(v): v for v in held() if v},
                partial(registry_queries.registry_values, session, parameter),
                key=text_key,
                what=what,
                cutoff=cutoff,
            )


@cache
def reference_authorities() -> dict[str, str]:
    """Local authorities as the gateway's postcode districts name them (some by an older
    or shorter name), keyed lower case, to as written."""
    return {
        authority_key(d.local_authority): d.local_authority.strip()
        for d in load_districts().values()
        if d.local_authority
    }


def check_known(
    parameter: str,
    wanted: Iterable[str],
    held: Mapping[str, str],
    known: Callable[[], Iterable[str | None]],
    *,
    key: Callable[[str], str],
    what: str,
    cutoff: float = 70,
    before_sync: bool = False,
) -> None:
    """Refuse a searched value (of ``parameter``) that is neither ``held`` (by the national
    view, or another list always at hand: as compared, ``key``, to as written) nor given
    by ``known()`` (the registry's, read only for a value not held), naming the likeliest
    known values: a mistyped specialism, brand, code or authority would otherwise look like
    one with no vacancies. Until ``known()`` gives any value (a registry not yet synced) no
    value can be told unknown, so none is refused, unless ``before_sync`` (``held`` is a
    whole list of its own)."""
    names: dict[str, str] | None = None
    for value in wanted:
        asked = key(value)
        if asked in held:
            continue
        if names is None:
            names = {key(v): v.strip() for v in known() if v and v.strip()}
            if not names and not before_sync:
                return
            for k, written in held.items():  # a spelling of the list always at hand wins
                if written != k or k not in names:
                    names[k] = written
        if asked in names:
            continue
        likely = _likeliest(asked, names, cutoff)
        hint = f"; did you mean {' or '.join(map(repr, likely))}?" if likely else ""
        raise refuse(
            parameter,
            f"unknown {what} {value!r}: no location of the national view or the registry has it{hint}",
        )


def check_local_authorities(
    wanted: Iterable[str], known: Callable[[], Iterable[str | None]], parameter: str = "local_authority"
) -> None:
    """Refuse a local authority nobody knows, naming the likeliest ones: a misspelt or
    shortened authority ('Manchster', 'Hull') would otherwise look like one with no
    vacancies. Known: the postcode districts' authorities, and ``known()`` (read only for
    a name not among those: the view's and the registry's authorities)."""
    check_known(
        parameter,
        wanted,
        reference_authorities(),
        known,
        key=authority_key,
        what="local authority",
        before_sync=True,
    )


def check_area_codes(
    parameter: str, wanted: Iterable[str], held: Iterable[str | None], known: Callable[[], Iterable[str]]
) -> None:
    """Refuse an ICB or sub-ICB code that neither the national view (``held``) nor the
    registry (``known()``, read only for a code not held) gives: a mistyped code would
    otherwise look like an area with no vacancies. Before the registry gives any codes (not
    yet synced) no code can be told unknown, so none is refused."""
    check_known(
        parameter,
        wanted,
        {code: code for code in held if code},
        known,
        key=area_code,
        what="code",
        cutoff=60,
    )


def _likeliest(key: str, names: dict[str, str], cutoff: float = 70) -> list[str]:
    """Up to three values a user typing ``key`` likely meant: those whose name holds it as
    a word ('Hull': 'Kingston upon Hull'), else those spelt most alike."""
    word = re.compile(rf"\b{re.escape(key)}\b")
    holding = sorted({names[k] for k in names if word.search(k)}, key=len)
    if holding:
        return holding[:3]
    close = process.extract(key, list(names), scorer=fuzz.ratio, limit=3, score_cutoff=cutoff)
    best = close[0][1] if close else 0
    return [names[k] for k, score, _ in close if score >= best - 10]
