"""The vacancy search's index: each gateway process keeps, in memory, every active
location with what the search's filters and sorts read of it, as columns (numpy arrays)
it can filter all at once, and its result as shown. A search is answered from one
snapshot, so a page is consistent with its total.

The index follows the database, so several stateless processes can each keep their own.
Before every search it reads one marker of the view's state (one cheap query):
- the newest location version id: every write of the view adds versions, and versions
  are numbered in commit order (their writers take the change clock's row lock first),
  so the locations changed since are exactly those with newer versions;
- the registry generation: every write of registry rows stamps them with the next one, in
  commit order too, so the registry rows changed since are those with a newer generation.
When the marker moved, the index reloads exactly those locations and makes a new snapshot
from the last one, copying unchanged rows array to array (5-7 ms for the national data
with up to a few hundred changed; a whole build of the arrays takes 65-95 ms); a process
builds it whole when it starts (in the background, about 1.3 s) or else on its first
search.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy.orm import Session

from gateway.model.vocab import LONG_TERM_VACANCY_TYPES
from gateway.places import EARTH_RADIUS_KM, bounding_box, haversine_km
from gateway.search.columns import Columns, Marker
from gateway.search.entries import SETS, load, load_points
from gateway.search.query import SearchQuery, Sort, authority_key, text_key
from gateway.store.tables import (
    LocationVersion,
    RegistryGeneration,
    RegistryLocation,
    table,
)

VER, GEN = table(LocationVersion), table(RegistryGeneration)
REG = table(RegistryLocation)

_MARKER = sa.select(
    sa.select(sa.func.max(VER.c.version_id)).scalar_subquery(),
    sa.select(GEN.c.generation).where(GEN.c.id == 1).scalar_subquery(),
)
_LONG_TERM = [v.value for v in LONG_TERM_VACANCY_TYPES]
# When more than this share (1 / it) of the locations changed, the index is built whole.
_REBUILD_SHARE = 4
# Distances within this of the radius are checked again with the scalar formula, so
# vectorised rounding never moves a home across the edge.
_EDGE_KM = 1e-6


def _members(
    codes: NDArray[np.int32], vocabulary: dict[str | None, int], wanted: Iterable[str | None]
) -> NDArray[np.bool_]:
    """Where ``codes`` stand for one of ``wanted`` (a look-up table: one gather)."""
    table = np.zeros(len(vocabulary), np.bool_)
    for value in wanted:
        if value in vocabulary:
            table[vocabulary[value]] = True
    return table[codes]


class Snapshot(Columns):
    """The index at one marker, and the search over it."""

    # --- masks ---------------------------------------------------------------------------

    def _category(self, name: str, wanted: Iterable[str | None]) -> NDArray[np.bool_]:
        codes, vocabulary = self.categories[name]
        return _members(codes, vocabulary, wanted)

    def _has(self, attribute: int, value: str) -> NDArray[np.bool_]:
        """Locations whose ``SETS[attribute]`` holds ``value`` (as compared). Cached for
        the values the data holds only, so values searched for cannot grow the cache."""
        key = (attribute, value)
        mask = self._masks.get(key)
        if mask is None:
            if value not in self._held(attribute):
                return np.zeros(self.size, np.bool_)
            mask = np.fromiter((value in e.sets[attribute] for e in self.ordered), np.bool_, self.size)
            self._masks[key] = mask
        return mask

    def held(self, name: str) -> frozenset[str]:
        """Every value of the list-valued attribute ``name`` (one of ``SETS``) some
        location holds, as compared (``text_key``)."""
        return self._held(SETS.index(name))

    def _held(self, attribute: int) -> frozenset[str]:
        """Every value of ``SETS[attribute]`` some location holds (computed once)."""
        held = self._values.get(attribute)
        if held is None:
            held = self._values[attribute] = frozenset().union(*(e.sets[attribute] for e in self.ordered))
        return held

    def _any_of(self, attribute: int, wanted: list[str]) -> NDArray[np.bool_]:
        mask = np.zeros(self.size, np.bool_)
        for value in {text_key(w) for w in wanted}:
            mask |= self._has(attribute, value)
        return mask

    def _lines(self, q: SearchQuery) -> NDArray[np.bool_] | None:
        """The vacancy lines that meet the query's line filters (None: it has none)."""
        types = q.vacancy_types or (_LONG_TERM if q.stay is not None else [])
        if not types and q.max_weekly_price is None and not q.accepting_today:
            return None
        mask = np.ones(len(self.line_location), np.bool_)
        if types:
            mask &= _members(self.line_type, self.line_types, types)
        if q.max_weekly_price is not None:
            mask &= self._line_prices(q) <= q.max_weekly_price  # NaN (no price) compares False
        if q.accepting_today:
            mask &= self.line_admittable > 0
        return mask

    def _line_prices(self, q: SearchQuery) -> NDArray[np.float64]:
        """Each vacancy line's weekly price as ``q`` reads it. A short stay costs what its
        location says a short stay costs; where the location gives no short-stay cost,
        its line's price stands in, so the home is priced rather than hidden."""
        if q.stay != "short-stay":
            return self.line_price
        cost = self.short_stay_cost[self.line_location]
        return np.where(np.isnan(cost), self.line_price, cost)

    def distances(self, point: tuple[float, float], rows: NDArray[np.intp]) -> NDArray[np.float64]:
        """Great-circle distances (km) from ``point`` to the locations at ``rows``
        (NaN where a location has no known place)."""
        p1, l1 = math.radians(point[0]), math.radians(point[1])
        p2, l2 = self.lat_r[rows], self.lon_r[rows]
        a = np.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * np.cos(p2) * np.sin((l2 - l1) / 2) ** 2
        return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(1.0, a)))

    # --- the search ----------------------------------------------------------------------

    def find(
        self, q: SearchQuery, point: tuple[float, float] | None, now: datetime
    ) -> list[tuple[int, float | None]]:
        """Every location that matches ``q`` (its position in the snapshot), in the order
        asked, with its distance from ``point`` (None: no point, or no known place)."""
        mask = np.ones(self.size, np.bool_)
        if point is not None and q.radius_km is not None:
            south, north, west, east = bounding_box(point[0], point[1], q.radius_km)
            mask &= self.has_point & (self.lat >= south) & (self.lat <= north)
            mask &= (self.lon >= west) & (self.lon <= east)
        for name, wanted in (
            ("nhs_region", q.regions),
            ("local_authority", [authority_key(a) for a in q.local_authorities]),
            ("icb", q.icbs),
            ("sub_icb", q.sub_icbs),
            ("rating", q.ratings),
            ("provider_type", q.provider_types),
        ):
            if wanted:
                mask &= self._category(name, wanted)
        if q.brands:
            brands = [text_key(b) for b in q.brands]
            mask &= self._category("brand_name", brands) | self._category("brand_id", brands)
        if q.accepting_today is not None:
            mask &= self.accepting == int(q.accepting_today)  # not known (-1) matches neither
        if q.out_of_hours is not None:
            mask &= self.out_of_hours == int(q.out_of_hours)
        if q.updated_within is not None:
            mask &= self.updated >= (now - q.updated_within).timestamp()
        lines = self._lines(q)
        if lines is not None:
            has_line = np.zeros(self.size, np.bool_)
            has_line[self.line_location[lines]] = True
            mask &= has_line
        self._sets(q, mask)
        rows = np.flatnonzero(mask)
        if q.notes:
            keywords = [k.lower() for k in q.notes]
            rows = rows[[all(k in self.ordered[i].notes for k in keywords) for i in rows]]
        distance = None
        if point is not None:
            distance = self.distances(point, rows)
            if q.radius_km is not None:
                keep = distance <= q.radius_km + _EDGE_KM
                rows, distance = rows[keep], distance[keep]
                distance = self._exact_edge(point, rows, distance, q.radius_km)
                keep = ~np.isnan(distance)
                rows, distance = rows[keep], distance[keep]
        order = self._order(q, rows, distance)
        rows = rows[order]
        if distance is None:
            return [(i, None) for i in rows.tolist()]
        shown = [None if math.isnan(d) else d for d in distance[order].tolist()]
        return list(zip(rows.tolist(), shown, strict=True))

    def results(self, q: SearchQuery, found: Iterable[tuple[int, float | None]]) -> Iterator[dict[str, Any]]:
        """Found locations as shown, each with its vacancy lines that meet the query's
        line filters."""
        lines = self._lines(q)
        for i, distance in found:
            entry = self.ordered[i]
            if lines is None:
                vacancies = [line.shown for line in entry.lines]
            else:
                start = int(self.line_start[i])
                vacancies = [line.shown for k, line in enumerate(entry.lines) if lines[start + k]]
            yield {
                **entry.shown,
                "distance_km": None if distance is None else round(distance, 2),
                "vacancies": vacancies,
            }

    def _sets(self, q: SearchQuery, mask: NDArray[np.bool_]) -> None:
        """Narrow ``mask`` by the list-valued filters."""
        for value in {text_key(w) for w in q.languages}:  # every language asked
            mask &= self._has(0, value)
        for attribute, wanted in (
            (1, q.funding),
            (2, q.short_stay_services),
            (3, q.specialisms),
            (4, q.service_types),
            (5, q.regulated_activities),
            (6, q.contract_las),
            (7, q.contract_sub_icbs),
        ):
            if wanted:
                mask &= self._any_of(attribute, wanted)
        if q.stay == "short-stay" and not q.short_stay_services:
            mask &= np.fromiter((bool(e.sets[2]) for e in self.ordered), np.bool_, self.size)

    def _exact_edge(
        self, point: tuple[float, float], rows: NDArray[np.intp], distance: NDArray[np.float64], radius: float
    ) -> NDArray[np.float64]:
        """Distances at the radius's edge, again with the scalar formula; NaN beyond it."""
        near = np.flatnonzero(np.abs(distance - radius) <= _EDGE_KM)
        for k in near:
            i = rows[k]
            exact = haversine_km(point[0], point[1], float(self.lat[i]), float(self.lon[i]))
            distance[k] = exact if exact <= radius else math.nan
        return distance

    def _order(
        self, q: SearchQuery, rows: NDArray[np.intp], distance: NDArray[np.float64] | None
    ) -> NDArray[np.intp]:
        """The order asked; ties closest first when a postcode was given (a discharge team
        sorting by price near a hospital wants the nearer of two equal prices first), then
        by CQC location ID."""
        near = np.zeros(len(rows)) if distance is None else np.where(np.isnan(distance), np.inf, distance)
        if q.sort is Sort.FRESHNESS:
            return np.lexsort((rows, near, -self.updated[rows]))
        if q.sort in (Sort.ADMITTABLE, Sort.PRICE):
            lines = self._lines(q)
            picked = np.ones(len(self.line_location), np.bool_) if lines is None else lines
            if q.sort is Sort.ADMITTABLE:
                total = np.bincount(
                    self.line_location[picked], weights=self.line_admittable[picked], minlength=self.size
                )
                return np.lexsort((rows, near, -total[rows]))
            prices = self._line_prices(q)
            priced = picked & (prices > 0)  # a missing or zero price does not count
            cheapest = np.full(self.size, np.inf)
            np.minimum.at(cheapest, self.line_location[priced], prices[priced])
            return np.lexsort((rows, near, cheapest[rows]))
        if distance is None:
            return np.arange(len(rows))
        return np.lexsort((rows, near))


def read_marker(session: Session) -> Marker:
    newest, generation = session.execute(_MARKER).one()
    return int(newest or 0), int(generation or 0)


def _behind(marker: Marker, other: Marker) -> bool:
    """Whether ``marker`` is older than ``other`` in either of its parts."""
    return marker[0] < other[0] or marker[1] < other[1]


def _changed(session: Session, since: Marker) -> set[str]:
    """The locations whose view or registry row changed after ``since``."""
    versions = sa.select(VER.c.cqc_location_id).where(VER.c.version_id > since[0])
    registry = sa.select(REG.c.cqc_location_id).where(REG.c.generation > since[1])
    return set(session.scalars(versions)) | set(session.scalars(registry))


class SearchIndex:
    """One process's index of one database; ``current`` brings it up to date."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None

    def current(self, session: Session) -> Snapshot:
        """The index as of now (read in ``session``), refreshed first if the view moved."""
        marker = read_marker(session)
        snapshot = self._snapshot
        if snapshot is not None and snapshot.marker == marker:
            return snapshot
        with self._lock:
            snapshot = self._snapshot
            if snapshot is not None and _behind(marker, snapshot.marker):
                # Read again: another search may have brought the index past the marker
                # read before the lock (a write between the two reads). Only a marker still
                # behind says the history went back.
                marker = read_marker(session)
                if snapshot.marker == marker:
                    return snapshot
            if snapshot is None or _behind(marker, snapshot.marker):
                # New, or the history went back (pruned): what changed cannot be told.
                # Whatever commits after the marker was read moves it again.
                snapshot = Snapshot(marker, load(session, None), load_points(session))
            elif snapshot.marker != marker:
                changed = _changed(session, snapshot.marker)
                loaded = load(session, changed)
                registry_moved = marker[1] != snapshot.marker[1]
                points = load_points(session) if registry_moved else snapshot.points
                if len(changed) > snapshot.size // _REBUILD_SHARE:
                    entries = {k: v for k, v in snapshot.entries.items() if k not in changed}
                    entries.update(loaded)
                    snapshot = Snapshot(marker, entries, points)
                else:
                    snapshot = snapshot.updated_with(marker, {i: loaded.get(i) for i in changed}, points)
            self._snapshot = snapshot
        return snapshot


_indexes: weakref.WeakKeyDictionary[sa.Engine, SearchIndex] = weakref.WeakKeyDictionary()
_indexes_lock = threading.Lock()


def index_for(session: Session) -> SearchIndex:
    """The search index of the database ``session`` reads (one per engine)."""
    engine = session.get_bind()
    assert isinstance(engine, sa.Engine)
    with _indexes_lock:
        index = _indexes.get(engine)
        if index is None:
            index = _indexes[engine] = SearchIndex()
        return index
