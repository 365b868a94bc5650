"""The federated vacancy search over the national view (every source at once).

The search index (``gateway.search.index``) finds, orders and shows the matching
locations, each with its vacancy lines that meet the query's line filters. A location's
point is the registry's coordinates, else its postcode district's centroid (kept on the
location row).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from functools import cache
from typing import Any

from rapidfuzz import fuzz, process
from sqlalchemy.orm import Session

from gateway.errors import Unprocessable
from gateway.places import district_centroid, load_districts, normalise_postcode
from gateway.search.index import Snapshot, index_for
from gateway.search.query import SearchQuery, district_searched, refuse
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
    check_local_authorities(q.local_authorities, snapshot.categories["local_authority"][1])
    point = origin = None
    if q.postcode is not None:
        lat, lon, how = resolve_point(snapshot, q.postcode)
        point, origin = (
            (lat, lon),
            {"postcode": q.postcode, "latitude": lat, "longitude": lon, "found_by": how},
        )
    return snapshot, snapshot.find(q, point, now or utcnow()), origin


@cache
def _reference_authorities() -> dict[str, str]:
    """England's local authorities as the gateway's postcode districts name them, lower
    case to as written."""
    return {
        d.local_authority.lower(): d.local_authority for d in load_districts().values() if d.local_authority
    }


def check_local_authorities(
    wanted: Iterable[str], held: Iterable[str | None], parameter: str = "local_authority"
) -> None:
    """Refuse a local authority nobody knows (not in the national view, not one of
    England's), naming the closest ones: a misspelt authority would otherwise look like
    an authority with no vacancies. ``held``: the view's authorities, lower case."""
    reference = _reference_authorities()
    known: set[str] | None = None
    for name in wanted:
        lowered = name.strip().lower()
        if lowered in reference:
            continue
        if known is None:
            known = {a for a in held if a} | set(reference)
        if lowered in known:
            continue
        written = {a: reference.get(a, a.title()) for a in known}
        close = process.extract(lowered, list(written), scorer=fuzz.WRatio, limit=3, score_cutoff=75)
        hint = f"; did you mean {' or '.join(repr(written[c]) for c, _, _ in close)}?" if close else ""
        raise refuse(parameter, f"unknown local authority {name!r}{hint}")
