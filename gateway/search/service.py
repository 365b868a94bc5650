"""The federated vacancy search over the national view (every source at once).

The search index (``gateway.search.index``) finds, orders and shows the matching
locations, each with its vacancy lines that meet the query's line filters. A location's
point is the registry's coordinates, else its postcode district's centroid (kept on the
location row).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from gateway.errors import Unprocessable
from gateway.places import district_centroid, normalise_postcode
from gateway.search.index import Snapshot, index_for
from gateway.search.query import SearchQuery, district_searched
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
    point = origin = None
    if q.postcode is not None:
        lat, lon, how = resolve_point(snapshot, q.postcode)
        point, origin = (
            (lat, lon),
            {"postcode": q.postcode, "latitude": lat, "longitude": lon, "found_by": how},
        )
    return snapshot, snapshot.find(q, point, now or utcnow()), origin
