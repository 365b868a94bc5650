"""The log of pushes: what a tracker sent and what the gateway answered, after the fact.

A tracker that lost an answer (a time-out, a restart) or wants to know which of
yesterday's records were rejected reads its own pushes here; an admin reads anyone's.
The raw bodies are never served back: the log gives each body's SHA-256 and whether it is
still kept, and a push's page gives the answer as the tracker got it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from gateway.auth import Principal, Scope
from gateway.errors import Forbidden, NotFound, Unprocessable
from gateway.store.tables import Submission

MAX_LIMIT = 200
# Every column but the raw body (never read here) and the answer (read for one push).
_COLUMNS = tuple(c for name, c in Submission.__table__.c.items() if name not in ("body", "response"))  # type: ignore[attr-defined]


def _sees_everyone(principal: Principal) -> bool:
    return Scope.ADMIN.value in principal.scopes


def _summary(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "source": row.source,
        "received_at": row.received_at.isoformat(),
        "status_code": row.status_code,  # None while the push is being processed
        "summary": {k: getattr(row, k) for k in ("accepted", "unchanged", "stale", "rejected")},
        "idempotency_key": row.idempotency_key,
        "content_type": row.content_type,
        "body_sha256": row.request_hash,
        "body_kept": row.body_discarded_at is None,
        "body_discarded_at": row.body_discarded_at.isoformat() if row.body_discarded_at else None,
    }


def list_submissions(
    session: Session,
    principal: Principal,
    *,
    source: str | None = None,
    since: datetime | None = None,
    status_code: int | None = None,
    with_rejections: bool = False,
    before: str | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    """The pushes ``principal`` may see, newest first, at most ``limit``; ``next_before``
    is the id to pass as ``before`` for the page after (None on the last page).

    A tracker sees the pushes recorded under its own name (every token it was given);
    an admin sees everyone's, or one source's with ``source``.
    """
    if not _sees_everyone(principal):
        if source is not None and source != principal.name:
            raise Forbidden("a tracker's token sees only its own pushes; ask an admin for another source's")
        source = principal.name
    t = Submission.__table__  # type: ignore[attr-defined]
    query = sa.select(*_COLUMNS)
    if source is not None:
        query = query.where(t.c.source == source)
    if since is not None:
        try:
            since = since.astimezone(UTC)
        except OverflowError:  # year 1 ahead of UTC, or 9999 behind it
            raise Unprocessable(
                "since: the instant is outside the calendar once in UTC",
                errors=[{"parameter": "since", "in": "query", "message": "out of range"}],
            ) from None
        query = query.where(t.c.received_at >= since)
    if status_code is not None:
        query = query.where(t.c.status_code == status_code)
    if with_rejections:
        query = query.where(sa.or_(t.c.rejected > 0, t.c.status_code.between(400, 499)))
    if before is not None:
        after = session.execute(sa.select(t.c.received_at, t.c.source).where(t.c.id == before)).first()
        if after is None or (source is not None and after.source != source):
            raise Unprocessable(
                "before: no such push among those listed; pass the next_before of the previous page",
                errors=[{"parameter": "before", "in": "query", "message": "unknown push id"}],
            )
        query = query.where(sa.tuple_(t.c.received_at, t.c.id) < sa.tuple_(after.received_at, before))
    rows = session.execute(query.order_by(t.c.received_at.desc(), t.c.id.desc()).limit(limit + 1)).all()
    page = [_summary(row) for row in rows[:limit]]
    return {
        "submissions": page,
        "next_before": page[-1]["id"] if len(rows) > limit else None,
    }


def submission_detail(session: Session, principal: Principal, submission_id: str) -> dict[str, Any]:
    """One push and the answer the gateway gave it. Another tracker's push is a 404, as if
    it did not exist: its id tells a tracker nothing."""
    t = Submission.__table__  # type: ignore[attr-defined]
    row = session.execute(sa.select(*_COLUMNS, t.c.response).where(t.c.id == submission_id)).first()
    if row is None or (not _sees_everyone(principal) and row.source != principal.name):
        raise NotFound(f"no push {submission_id!r} of yours")
    return {**_summary(row), "answer": row.response}
