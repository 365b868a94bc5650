"""Each source's health: last sync, failures, age of its newest data, and a status."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from gateway.settings import Settings
from gateway.store import sources as source_queries
from gateway.store.sources import SourceActivity
from gateway.store.tables import utcnow
from gateway.sync.sources import PULLED_SOURCES


def status_of(activity: SourceActivity, freshness_target_s: float, failing_after: int, now: datetime) -> str:
    """ok, degraded (recent failures, data still fresh), stale (data older than the
    target, or none yet, or no sync ever finished: a first sync under way has stored only
    part of its source) or failing (``failing_after`` failures in a row)."""
    if activity.consecutive_failures >= failing_after:
        return "failing"
    if activity.last_success is None or activity.newest_data is None:
        return "stale"
    if (now - activity.newest_data).total_seconds() > freshness_target_s:
        return "stale"
    if activity.consecutive_failures > 0:
        return "degraded"
    return "ok"


def _describe(
    name: str, kind: str, activity: SourceActivity, target: float, failing_after: int, now: datetime
) -> dict[str, Any]:
    age = (now - activity.newest_data).total_seconds() if activity.newest_data else None
    return {
        "source": name,
        "kind": kind,
        "status": status_of(activity, target, failing_after, now),
        "last_successful_sync": activity.last_success.isoformat() if activity.last_success else None,
        "last_attempt": activity.last_attempt.isoformat() if activity.last_attempt else None,
        "consecutive_failures": activity.consecutive_failures,
        "newest_data_at": activity.newest_data.isoformat() if activity.newest_data else None,
        "newest_data_age_seconds": round(age) if age is not None else None,
        "freshness_target_seconds": target,
        "last_error_class": activity.last_error_class,
        "last_error": activity.last_error,
    }


def source_health(
    session: Session, settings: Settings, now: datetime | None = None, *, every_pulled: bool = False
) -> list[dict[str, Any]]:
    """Health of every configured pulled source and every tracker that has pushed;
    ``every_pulled``: also the pulled sources not configured here that have run (a
    command run where the gateway's upstream settings are not)."""
    now = now or utcnow()
    out = []
    for name, spec in PULLED_SOURCES.items():
        activity = source_queries.pulled_source_activity(session, name)
        ran = activity.last_attempt is not None or activity.last_success is not None
        if not (spec.configured(settings) or (every_pulled and ran)):
            continue
        out.append(
            _describe(
                name,
                "pulled",
                activity,
                spec.freshness_target_s(settings),
                settings.source_failing_after,
                now,
            )
        )
    for name in source_queries.push_sources(session):
        activity = source_queries.push_source_activity(session, name)
        out.append(
            _describe(
                name, "push", activity, settings.push_freshness_target_s, settings.source_failing_after, now
            )
        )
    return out
