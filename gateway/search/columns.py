"""The search index's columns: every active location's values that the filters and sorts
read, as numpy arrays (row = rank by CQC location ID), built whole or from an earlier set
of columns and the locations that changed since."""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from operator import attrgetter
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray

from gateway.search.entries import Entry

Marker = tuple[int, int]  # (newest location version id, registry generation)


def _codes(values: Sequence[str | None]) -> tuple[NDArray[np.int32], dict[str | None, int]]:
    """Each value as a small integer, and the vocabulary of values to integers."""
    vocabulary = {value: code for code, value in enumerate(dict.fromkeys(values))}
    return np.fromiter(map(vocabulary.__getitem__, values), np.int32, len(values)), vocabulary


def _floats(values: Iterable[float | None]) -> NDArray[np.float64]:
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


def _assembled(
    values: NDArray[Any],
    size: int,
    to: Any,
    take: NDArray[np.intp],
    fresh_at: list[int],
    fresh_values: Any,
) -> NDArray[Any]:
    """A new array of ``size``: ``values[take]`` copied to ``to``, ``fresh_values`` at
    ``fresh_at``."""
    out = np.empty(size, values.dtype)
    out[to] = values[take]
    out[fresh_at] = fresh_values
    return out


def _tri_state(value: bool | None) -> int:
    """A yes / no / not-known answer as one small integer: 1, 0 or -1."""
    return -1 if value is None else int(value)


def _accepting(entry: Entry) -> int:
    return _tri_state(entry.accepting)


def _out_of_hours(entry: Entry) -> int:
    return _tri_state(entry.out_of_hours)


_CATEGORIES = (
    "nhs_region",
    "local_authority",
    "icb",
    "sub_icb",
    "rating",
    "brand_name",
    "brand_id",
    "provider_type",
)


class Columns:
    """The index's data at one marker: immutable once built, shared by concurrent searches."""

    def __init__(
        self, marker: Marker, entries: dict[str, Entry], points: dict[str, tuple[float, float]]
    ) -> None:
        self.marker = marker
        self.entries = entries
        self.points = points  # the registry's postcodes, each with its point
        # Position in the arrays is rank by CQC location ID: the tie-break of every sort.
        self.ids = sorted(entries)
        self.ordered = ordered = list(map(entries.__getitem__, self.ids))
        self.size = n = len(ordered)
        self.lat = _floats(map(attrgetter("latitude"), ordered))
        self.lon = _floats(map(attrgetter("longitude"), ordered))
        self.categories = {name: _codes(list(map(attrgetter(name), ordered))) for name in _CATEGORIES}
        self.accepting = np.fromiter(map(_accepting, ordered), np.int8, n)
        self.out_of_hours = np.fromiter(map(_out_of_hours, ordered), np.int8, n)
        self.updated = np.fromiter(map(attrgetter("updated"), ordered), np.float64, n)
        self.short_stay_cost = _floats(map(attrgetter("short_stay_cost"), ordered))
        counts = np.fromiter(map(len, map(attrgetter("lines"), ordered)), np.int64, n)
        lines = [line for e in ordered for line in e.lines]
        self.line_type, self.line_types = _codes(list(map(attrgetter("vacancy_type"), lines)))
        self.line_price = _floats(map(attrgetter("price"), lines))
        self.line_admittable = np.fromiter(map(attrgetter("admittable"), lines), np.int64, len(lines))
        self._derive(counts)

    def _derive(self, counts: NDArray[np.int64]) -> None:
        """What follows from the columns: points in radians, where each entry's lines are;
        and the search's caches of masks, empty."""
        self.has_point = ~np.isnan(self.lat) & ~np.isnan(self.lon)
        self.lat_r, self.lon_r = np.radians(self.lat), np.radians(self.lon)
        # Entry i's lines are at line_start[i]:line_start[i + 1] of the line arrays.
        self.line_start = np.concatenate(([0], np.cumsum(counts)))
        self.line_location = np.repeat(np.arange(self.size, dtype=np.int32), counts)
        self._masks: dict[tuple[int, str], NDArray[np.bool_]] = {}
        self._values: dict[int, frozenset[str]] = {}
        self._position: dict[str, int] | None = None

    def updated_with(
        self, marker: Marker, changed: dict[str, Entry | None], points: dict[str, tuple[float, float]]
    ) -> Self:
        """A new snapshot: this one with the ``changed`` locations replaced (None: gone
        from the index). Unchanged rows are copied array to array, so only the changed
        locations are read one by one (the whole build reads every one: 65-95 ms)."""
        new = type(self).__new__(type(self))
        new.marker, new.points = marker, points
        new.entries = entries = dict(self.entries)
        for cqc_id, entry in changed.items():
            if entry is None:
                entries.pop(cqc_id, None)
            else:
                entries[cqc_id] = entry
        gone = {cqc_id for cqc_id in changed if cqc_id not in entries}
        added = sorted(i for i, entry in changed.items() if entry is not None and i not in self.entries)
        new.ids = ids = (
            list(heapq.merge((i for i in self.ids if i not in gone), added)) if gone or added else self.ids
        )
        new.ordered = ordered = list(map(entries.__getitem__, ids))
        new.size = n = len(ids)
        position = self._positions()
        # Each new row's row in this snapshot (-1: read afresh, a changed or new location).
        old = np.fromiter((-1 if i in changed else position[i] for i in ids), np.intp, n)
        kept = old >= 0
        source = old[kept]
        fresh = np.flatnonzero(~kept).tolist()
        fresh_entries = [ordered[i] for i in fresh]

        def column(values: NDArray[Any], fresh_values: Any) -> NDArray[Any]:
            return _assembled(values, n, kept, source, fresh, fresh_values)

        new.lat = column(self.lat, _floats(map(attrgetter("latitude"), fresh_entries)))
        new.lon = column(self.lon, _floats(map(attrgetter("longitude"), fresh_entries)))
        new.accepting = column(self.accepting, list(map(_accepting, fresh_entries)))
        new.out_of_hours = column(self.out_of_hours, list(map(_out_of_hours, fresh_entries)))
        new.updated = column(self.updated, [e.updated for e in fresh_entries])
        new.short_stay_cost = column(
            self.short_stay_cost, _floats(map(attrgetter("short_stay_cost"), fresh_entries))
        )
        new.categories = {}
        for name, (codes, vocabulary) in self.categories.items():
            vocabulary = dict(vocabulary)  # values only ever join it: kept codes stay valid
            fresh_codes = [
                vocabulary.setdefault(value, len(vocabulary))
                for value in map(attrgetter(name), fresh_entries)
            ]
            new.categories[name] = (column(codes, fresh_codes), vocabulary)

        # Lines: the kept rows' runs of lines are gathered in one go, the fresh rows' read.
        old_counts = np.diff(self.line_start)
        counts = column(old_counts, [len(e.lines) for e in fresh_entries])
        start = np.concatenate(([0], np.cumsum(counts)))
        kept_counts = counts[kept]
        within = np.arange(int(kept_counts.sum())) - np.repeat(
            np.cumsum(kept_counts) - kept_counts, kept_counts
        )
        to = np.repeat(start[:-1][kept], kept_counts) + within
        take = np.repeat(self.line_start[:-1][source], kept_counts) + within
        fresh_to = [
            int(start[i]) + k for i, e in zip(fresh, fresh_entries, strict=True) for k in range(len(e.lines))
        ]
        fresh_lines = [line for e in fresh_entries for line in e.lines]
        total = int(start[-1])
        line_types = dict(self.line_types)

        def lines(values: NDArray[Any], fresh_values: Any) -> NDArray[Any]:
            return _assembled(values, total, to, take, fresh_to, fresh_values)

        new.line_type = lines(
            self.line_type, [line_types.setdefault(x.vacancy_type, len(line_types)) for x in fresh_lines]
        )
        new.line_types = line_types
        new.line_price = lines(self.line_price, _floats(map(attrgetter("price"), fresh_lines)))
        new.line_admittable = lines(self.line_admittable, [x.admittable for x in fresh_lines])
        new._derive(counts)
        return new

    def _positions(self) -> dict[str, int]:
        """Each location's row (made when first asked)."""
        positions = self._position
        if positions is None:
            positions = self._position = {cqc_id: row for row, cqc_id in enumerate(self.ids)}
        return positions
