"""Push body retention: discard raw push bodies once older than the retention period.

A push's raw body is kept before anything parses it, so nothing sent is lost while its
records are judged. Once the records are stored they live on in the version history, and
with a retention period set (``GATEWAY_PUSH_BODY_RETENTION_DAYS``) the raw bodies older
than that are discarded: at national rates they are the bulk of the database's growth.
The push's record stays (who sent it, when, its digest, the answer and counts), so source
health, idempotent retries and audits go on working.

Bodies go a batch per transaction, oldest first, so no push waits long on the write lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from gateway.store import repository
from gateway.store.db import transaction
from gateway.store.tables import utcnow

log = logging.getLogger(__name__)
BATCH = 200


def discard_old_bodies(
    factory: sessionmaker[Session],
    retention: timedelta,
    *,
    batch: int = BATCH,
    progress: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Discard the raw bodies of pushes received more than ``retention`` ago; returns how
    many. ``progress`` is told the running total after each batch; once ``stop`` is set, no
    further batch is begun (each is a transaction of its own)."""
    if retention < timedelta(0):
        raise ValueError("the retention period must not be negative")
    now = utcnow()
    cutoff = now - retention
    total = 0
    while True:
        with transaction(factory) as session:
            done = repository.discard_submission_bodies(session, cutoff, now, batch)
        total += done
        if done and progress is not None:
            progress(total)
        if done < batch or (stop is not None and stop.is_set()):
            break
    if total:
        log.info("discarded the raw bodies of %s pushes received before %s", total, cutoff.isoformat())
    return total
