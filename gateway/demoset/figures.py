"""Reference figures and the integer allocation that reproduces them exactly."""

from __future__ import annotations

import random
from collections.abc import Sequence

from gateway.model.vocab import NhsRegion

# The national tracker's occupancy report by NHS region, January 2023 (capacity-model.md):
# locations, maximum capacity, admittable, unavailable, reserved, occupied.
REFERENCE: dict[NhsRegion, tuple[int, int, int, int, int, int]] = {
    NhsRegion.EAST_OF_ENGLAND: (1654, 50889, 6492, 1472, 471, 42454),
    NhsRegion.LONDON: (1299, 32775, 3542, 580, 360, 28293),
    NhsRegion.MIDLANDS: (3069, 88051, 11998, 2983, 768, 72302),
    NhsRegion.NORTH_EAST_AND_YORKSHIRE: (2217, 71657, 7870, 2609, 726, 60452),
    NhsRegion.NORTH_WEST: (1754, 56610, 5738, 2055, 659, 48158),
    NhsRegion.SOUTH_EAST: (2716, 77362, 9642, 2023, 842, 64855),
    NhsRegion.SOUTH_WEST: (1892, 50795, 5590, 1361, 769, 43075),
}
COMMUNITY_REHAB_PROVIDERS = 260


def allocate(
    total: int, weights: Sequence[float], limits: Sequence[int] | None, rng: random.Random
) -> list[int]:
    """Split ``total`` into integers proportional to ``weights``, each at most its limit.

    Largest-remainder rounding, then any shortfall (from limits) handed out one at a time
    to items with room, in a seeded order. The parts always add up to ``total`` when the
    limits allow it.
    """
    n = len(weights)
    limit = list(limits) if limits is not None else [total] * n
    if sum(limit) < total:
        raise ValueError(f"cannot place {total} within limits summing to {sum(limit)}")
    weight_sum = sum(weights) or 1.0
    ideal = [total * w / weight_sum for w in weights]
    parts = [min(int(x), limit[i]) for i, x in enumerate(ideal)]
    order = sorted(range(n), key=lambda i: ideal[i] - int(ideal[i]), reverse=True)
    remaining = total - sum(parts)
    while remaining > 0:
        progressed = False
        for i in order:
            if remaining == 0:
                break
            if parts[i] < limit[i]:
                parts[i] += 1
                remaining -= 1
                progressed = True
        if not progressed:  # pragma: no cover - excluded by the check above
            raise ValueError("allocation stalled")
        rng.shuffle(order)
    return parts
