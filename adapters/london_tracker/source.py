"""London's tracker as a source: listing pages mapped to the national model."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field

from adapters.london_tracker.client import HomesPage, LondonTrackerClient
from adapters.london_tracker.mapping import SkippedHome, UnmatchedHome, map_home
from gateway.model.capacity import LocationUpdate


@dataclass
class MappedPage:
    """One listing page, mapped: updates for the national view, homes held for matching,
    homes skipped as malformed, and warnings (unknown boroughs, unknown categories)."""

    number: int
    as_of: str
    homes_seen: int
    updates: list[tuple[str, LocationUpdate]] = field(default_factory=list)
    unmatched: list[UnmatchedHome] = field(default_factory=list)
    skipped: list[SkippedHome] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    restarts: int = 0
    last: bool = False  # the listing's last page: the cursor may advance with it


class LondonTrackerSource:
    """Pulls London's homes; the gateway stores each page and the cursor."""

    name = "london"

    def __init__(self, client: LondonTrackerClient) -> None:
        self.client = client

    async def check(self) -> None:
        """Raise the classified error if the tracker refuses our credentials."""
        await self.client.fetch_token()

    def listing(self, since: str | None) -> AsyncGenerator[HomesPage, None]:
        """The raw pages of homes updated at or after ``since`` (a previous ``as_of``),
        for a caller that maps them itself with ``map_page`` (off the event loop, say)."""
        return self.client.list_homes(since)

    async def pull(self, since: str | None) -> AsyncGenerator[MappedPage, None]:
        """Mapped pages of homes updated at or after ``since`` (a previous ``as_of``).

        Within a run a home may come twice (updated during the listing, or a restarted
        listing): pages are applied in order and the store judges each copy by its
        ``updated_at``, so the later copy wins and an identical one is 'unchanged'.
        """
        async with aclosing(self.listing(since)) as pages:
            async for page in pages:
                yield map_page(page)


def map_page(page: HomesPage) -> MappedPage:
    """One listing page mapped to the national model, home by home."""
    mapped = MappedPage(page.number, page.as_of, len(page.homes), restarts=page.restarts, last=page.last)
    for home in page.homes:
        result = map_home(home)
        mapped.warnings.extend(result.warnings)
        if result.skipped is not None:
            mapped.skipped.append(result.skipped)
        elif result.unmatched is not None:
            mapped.unmatched.append(result.unmatched)
        elif result.update is not None and result.home_ref is not None:
            mapped.updates.append((result.home_ref, result.update))
    return mapped
