"""Which location each of a source's own records feeds (a London home, by its ref).

A tracker keys its homes by its own refs and names their CQC location IDs as data; when a
home comes to name another location (a re-registration, an admin's link the tracker later
corrects) or none, the location it fed would otherwise keep its last report as current,
and its beds would be counted twice. These links let the sync see that happen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from gateway.store.repository import bulk_upsert, chunks
from gateway.store.tables import Location, LocationVersion, SourceLink, table

_LINK = table(SourceLink)
_LINKS_OF = sa.select(_LINK.c.source_ref, _LINK.c.cqc_location_id).where(
    _LINK.c.source == sa.bindparam("source"),
    _LINK.c.source_ref.in_(sa.bindparam("refs", expanding=True)),
)


def relink(session: Session, source: str, targets: Mapping[str, str | None], now: datetime) -> list[str]:
    """Record the location each of ``source``'s records in ``targets`` now feeds (None:
    none, it is held for matching). Returns the locations that, as a result, no record of
    ``source`` feeds any more.

    One query for a page's refs; writes only the links that changed (a full sync's first
    run writes them all, later runs next to nothing)."""
    if not targets:
        return []
    before: dict[str, str] = {}
    for chunk in chunks(sorted(targets)):
        before.update(
            (ref, cqc_id) for ref, cqc_id in session.execute(_LINKS_OF, {"source": source, "refs": chunk})
        )
    changed = {ref: target for ref, target in targets.items() if before.get(ref) != target}
    if not changed:
        return []
    unlinked = [ref for ref, target in changed.items() if target is None]
    for chunk in chunks(unlinked):
        session.execute(sa.delete(_LINK).where(_LINK.c.source == source, _LINK.c.source_ref.in_(chunk)))
    rows = [
        {"source": source, "source_ref": ref, "cqc_location_id": target, "linked_at": now}
        for ref, target in changed.items()
        if target is not None
    ]
    bulk_upsert(session, _LINK, rows, ("source", "source_ref"))
    left = sorted({before[ref] for ref in changed if ref in before})
    if not left:
        return []
    # Another record of the source may still name a location one record left (two homes
    # reporting one CQC ID): that location is still fed. Rare, so read only then.
    still_fed = set(
        session.scalars(
            sa.select(_LINK.c.cqc_location_id).where(
                _LINK.c.source == source, _LINK.c.cqc_location_id.in_(left)
            )
        )
    )
    return [cqc_id for cqc_id in left if cqc_id not in still_fed]


def active_records_of(session: Session, source: str, cqc_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The current records of those of ``cqc_ids`` whose current record is ``source``'s
    and active."""
    loc, version = table(Location), table(LocationVersion)
    records: list[dict[str, Any]] = []
    for chunk in chunks(list(cqc_ids)):
        records += session.scalars(
            sa.select(version.c.record)
            .join(loc, loc.c.version_id == version.c.version_id)
            .where(loc.c.cqc_location_id.in_(chunk), loc.c.source == source, loc.c.active.is_(True))
        )
    return records
