"""A source's records that move between locations: the location a record leaves is
retired from that source, as a tracker's CLOSED home is (see ``store.source_links``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from gateway.ingest.service import apply_updates
from gateway.model.capacity import LocationUpdate
from gateway.store import source_links


def leaving_updates(session: Session, source: str, left: Sequence[str]) -> list[LocationUpdate]:
    """For each location in ``left`` whose current record is ``source``'s and active: that
    record again, inactive (the location leaves the source; its history stays). It keeps
    the record's own time, so it replaces the record it retires and any later report of
    the location wins over it."""
    if not left:
        return []
    return [
        LocationUpdate.model_validate({**record, "active": False})
        for record in source_links.active_records_of(session, source, left)
    ]


def follow(
    session: Session, source: str, targets: Mapping[str, str | None], now: datetime
) -> source_links.Relinked:
    """Record the location each of ``source``'s records in ``targets`` now feeds (None:
    none), and retire from ``source`` every location that no record of it feeds any more
    (``left`` of the answer)."""
    relinked = source_links.relink(session, source, targets, now)
    retiring = leaving_updates(session, source, relinked.left)
    if retiring:
        apply_updates(session, source=source, updates=list(enumerate(retiring)), received_at=now)
    return relinked
