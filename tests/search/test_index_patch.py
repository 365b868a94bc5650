"""A snapshot brought up to date with the locations that changed (``updated_with``) is the
snapshot a whole build would make: every column, every line, every search."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from gateway.search.entries import SETS, Entry, Line
from gateway.search.index import Snapshot
from gateway.search.query import SearchQuery, Sort

REGIONS = ["London", "North West", "Midlands", None]
TYPES = ["nursing", "residential", "dementia-nursing", "dementia-residential"]


def entry(rng: random.Random, cqc_id: str) -> Entry:
    lines = tuple(
        Line(t, rng.choice([None, 700.0, 950.5, 1200.0]), rng.randint(0, 3), {"vacancy_type": t})
        for t in sorted(rng.sample(TYPES, rng.randint(0, 3)))
    )
    placed = rng.random() < 0.9
    return Entry(
        cqc_location_id=cqc_id,
        latitude=rng.uniform(50.5, 54.5) if placed else None,
        longitude=rng.uniform(-3.0, 0.5) if placed else None,
        nhs_region=rng.choice(REGIONS),
        local_authority=rng.choice(["leeds", "camden", "wigan", None, f"new-{rng.randint(0, 3)}"]),
        icb=rng.choice(["QWO", "QMJ", None]),
        sub_icb=rng.choice(["15F", None]),
        rating=rng.choice(["Good", "Outstanding", "not-rated"]),
        brand_name=rng.choice([None, "acme care", f"brand {rng.randint(0, 5)}"]),
        brand_id=rng.choice([None, "bd001"]),
        provider_type=rng.choice(["care-home", "community-rehab"]),
        accepting=rng.random() < 0.8,
        out_of_hours=rng.choice([None, True, False]),
        updated=rng.uniform(1.7e9, 1.8e9),
        sets=tuple(
            frozenset(rng.sample(["english", "polish", "nhs", "self"], rng.randint(0, 2))) for _ in SETS
        ),
        notes=rng.choice(["", "garden", "lift and garden"]),
        short_stay_cost=rng.choice([None, 650.0, 990.0]),
        lines=lines,
        shown={"cqc_location_id": cqc_id},
    )


def decoded(snapshot: Snapshot) -> dict[str, Any]:
    """A snapshot's contents with its codes turned back into values."""
    out: dict[str, Any] = {"ids": snapshot.ids, "size": snapshot.size}
    for name in ("lat", "lon", "updated", "short_stay_cost", "line_price", "lat_r", "lon_r"):
        out[name] = np.nan_to_num(getattr(snapshot, name), nan=-999.0).tolist()
    for name in ("accepting", "out_of_hours", "has_point", "line_admittable", "line_start", "line_location"):
        out[name] = getattr(snapshot, name).tolist()
    for name, (codes, vocabulary) in snapshot.categories.items():
        values = {code: value for value, code in vocabulary.items()}
        out[name] = [values[c] for c in codes.tolist()]
    types = {code: value for value, code in snapshot.line_types.items()}
    out["line_type"] = [types[c] for c in snapshot.line_type.tolist()]
    out["ordered"] = [e.cqc_location_id for e in snapshot.ordered]
    return out


QUERIES = [
    SearchQuery(),
    SearchQuery(regions=["London"], accepting_today=True),
    SearchQuery(vacancy_types=["nursing"], max_weekly_price=1000.0, sort=Sort.PRICE),
    SearchQuery(stay="short-stay", vacancy_types=["nursing"], max_weekly_price=900.0, sort=Sort.PRICE),
    SearchQuery(languages=["polish"], sort=Sort.ADMITTABLE),
    SearchQuery(local_authorities=["Leeds", "new-2"], sort=Sort.FRESHNESS),
    SearchQuery(radius_km=80.0),
]


@pytest.mark.parametrize("seed", range(12))
def test_an_updated_snapshot_is_the_snapshot_a_whole_build_makes(seed: int) -> None:
    rng = random.Random(seed)
    ids = [f"1-{n}" for n in rng.sample(range(10_000), 300)]
    entries = {i: entry(rng, i) for i in ids}
    snapshot = Snapshot((1, 0), dict(entries), {})
    for step in range(6):
        changed: dict[str, Entry | None] = {}
        for cqc_id in rng.sample(sorted(entries), rng.randint(0, 25)):  # updates and removals
            changed[cqc_id] = entry(rng, cqc_id) if rng.random() < 0.7 else None
        for n in rng.sample(range(10_000, 20_000), rng.randint(0, 10)):  # new locations
            changed[f"1-{n}"] = entry(rng, f"1-{n}")
        changed[f"1-{rng.randint(30_000, 40_000)}"] = None  # gone, though never indexed
        for cqc_id, new in changed.items():
            if new is None:
                entries.pop(cqc_id, None)
            else:
                entries[cqc_id] = new
        patched = snapshot.updated_with((step + 2, 0), changed, {})
        whole = Snapshot((step + 2, 0), dict(entries), {})
        assert decoded(patched) == decoded(whole)
        now = datetime(2027, 1, 1, tzinfo=UTC)
        for query in QUERIES:
            point = (52.5, -1.5) if query.radius_km else None
            assert patched.find(query, point, now) == whole.find(query, point, now), query
        snapshot = patched
