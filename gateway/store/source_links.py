"""Which location each of a source's own records feeds (a London home, by its ref).

A tracker keys its homes by its own refs and names their CQC location IDs as data; when a
home comes to name another location (a re-registration, an admin's link the tracker later
corrects) or none, the location it fed would otherwise keep its last report as current,
and its beds would be counted twice. These links let the sync see that happen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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


@dataclass(frozen=True, slots=True)
class Relinked:
    """What relinking changed: the locations no record of the source feeds any more
    (``left``), and each location a record came to name that another record of the source
    names too (``shared``: the refs naming it), whose reports replace each other's."""

    left: list[str] = field(default_factory=list)
    shared: dict[str, list[str]] = field(default_factory=dict)


def relink(session: Session, source: str, targets: Mapping[str, str | None], now: datetime) -> Relinked:
    """Record the location each of ``source``'s records in ``targets`` now feeds (None:
    none, it is held for matching).

    One query for a page's refs; writes only the links that changed (a full sync's first
    run writes them all, later runs next to nothing)."""
    if not targets:
        return Relinked()
    before: dict[str, str] = {}
    for chunk in chunks(sorted(targets)):
        before.update(
            (ref, cqc_id) for ref, cqc_id in session.execute(_LINKS_OF, {"source": source, "refs": chunk})
        )
    changed = {ref: target for ref, target in targets.items() if before.get(ref) != target}
    if not changed:
        return Relinked()
    unlinked = [ref for ref, target in changed.items() if target is None]
    for chunk in chunks(unlinked):
        session.execute(sa.delete(_LINK).where(_LINK.c.source == source, _LINK.c.source_ref.in_(chunk)))
    rows = [
        {"source": source, "source_ref": ref, "cqc_location_id": target, "linked_at": now}
        for ref, target in changed.items()
        if target is not None
    ]
    bulk_upsert(session, _LINK, rows, ("source", "source_ref"))
    shared = _shared(session, source, sorted({target for target in changed.values() if target is not None}))
    left = sorted({before[ref] for ref in changed if ref in before})
    if not left:
        return Relinked([], shared)
    # Another record of the source may still name a location one record left (two homes
    # reporting one CQC ID): that location is still fed. Rare, so read only then.
    still_fed = set(
        session.scalars(
            sa.select(_LINK.c.cqc_location_id).where(
                _LINK.c.source == source, _LINK.c.cqc_location_id.in_(left)
            )
        )
    )
    return Relinked([cqc_id for cqc_id in left if cqc_id not in still_fed], shared)


_SHARED = (
    sa.select(_LINK.c.cqc_location_id, _LINK.c.source_ref)
    .where(
        _LINK.c.source == sa.bindparam("source"),
        _LINK.c.cqc_location_id.in_(
            sa.select(_LINK.c.cqc_location_id)
            .where(
                _LINK.c.source == sa.bindparam("source"),
                _LINK.c.cqc_location_id.in_(sa.bindparam("ids", expanding=True)),
            )
            .group_by(_LINK.c.cqc_location_id)
            .having(sa.func.count() > 1)
        ),
    )
    .order_by(_LINK.c.cqc_location_id, _LINK.c.source_ref)
)


def _shared(session: Session, source: str, cqc_ids: Sequence[str]) -> dict[str, list[str]]:
    """Those of ``cqc_ids`` that two or more of ``source``'s records name, with their refs."""
    shared: dict[str, list[str]] = {}
    for chunk in chunks(cqc_ids):
        for cqc_id, ref in session.execute(_SHARED, {"source": source, "ids": chunk}):
            shared.setdefault(cqc_id, []).append(ref)
    return shared


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
