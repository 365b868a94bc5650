"""The change feed (mCSD ITI-91): a consumer polling with the previous Bundle's
meta.lastUpdated as ``_since`` sees every version exactly once, in order, even while
trackers write concurrently."""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from gateway.auth import Principal
from gateway.fhir.history import type_history
from gateway.ingest.submissions import receive_submission
from gateway.store.tables import LocationVersion, table
from tests.conftest import bearer
from tests.factories import batch, location, vacancy
from tests.fhir.conftest import push

BASE = "http://gateway.test/fhir"


def poll(
    factory: sessionmaker[Session], resource_type: str, since: str | None, count: int = 7
) -> tuple[list[dict[str, Any]], str]:
    """One poll of the feed, following next links to the end; (entries, next _since)."""
    items = [("_count", str(count))] + ([("_since", since)] if since else [])
    entries: list[dict[str, Any]] = []
    horizon = None
    while True:
        with factory() as session, session.begin():
            page = type_history(session, factory, BASE, resource_type, items)
        horizon = horizon or page["meta"]["lastUpdated"]
        assert page["meta"]["lastUpdated"] == horizon  # one horizon for every page of a poll
        entries += page.get("entry", [])  # R4: no empty arrays, so an empty page has no entry
        following = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not following:
            return entries, horizon
        cursor = following[0].split("_cursor=")[1]
        items = [(k, v) for k, v in items if k != "_cursor"] + [("_cursor", cursor)]


def test_polling_sees_every_version_once_while_trackers_write(factory: sessionmaker[Session]) -> None:
    principal = Principal("t", "tracker-feed", frozenset({"submit"}), frozenset({"*"}))
    writers_done = threading.Event()
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for round_ in range(12):
                records = [
                    location(
                        f"1-{worker}0{n}",
                        updated_at=f"2026-11-21T{round_:02d}:00:00Z",
                        vacancies=[vacancy(admittable=round_ % 3, unavailable=3 - round_ % 3)],
                    )
                    for n in range(3)
                ]
                receive_submission(factory, principal, orjson.dumps(batch(*records)))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in (1, 2, 3)]
    for thread in threads:
        thread.start()
    seen: list[tuple[str, str]] = []
    since: str | None = None
    polls = 0
    while not writers_done.is_set():
        if all(not t.is_alive() for t in threads):
            writers_done.set()  # one more poll after the last write
        entries, since = poll(factory, "Location", since)
        seen += [(e["resource"]["id"], e["resource"]["meta"]["versionId"]) for e in entries]
        polls += 1
        time.sleep(0.01)
    assert not errors, errors
    with factory() as session:
        written = {
            (cqc_id, str(version_id))
            for cqc_id, version_id in session.execute(
                sa.select(table(LocationVersion).c.cqc_location_id, table(LocationVersion).c.version_id)
            )
        }
    assert len(written) == 3 * 12 * 3
    assert len(seen) == len(set(seen)), "a version was delivered twice"
    assert set(seen) == written, f"missed {len(written - set(seen))} versions over {polls} polls"


def test_service_feed_pages_through_every_service_version_in_order(
    client: TestClient, tracker: str, factory: sessionmaker[Session], national: list[dict[str, Any]]
) -> None:
    # Drop one line of 1-101: its service gets an inactive version in the feed.
    push(client, tracker, location("1-101", updated_at="2026-11-21T09:00:00Z", vacancies=[vacancy()]))
    entries, since = poll(factory, "HealthcareService", None, count=1)
    keys = [(e["resource"]["id"], e["resource"]["meta"]["versionId"]) for e in entries]
    assert len(keys) == len(set(keys)) == 4 + 2
    stamps = [
        (e["resource"]["meta"]["lastUpdated"], int(e["resource"]["meta"]["versionId"])) for e in entries
    ]
    assert stamps == sorted(stamps)
    dropped = [e for e in entries if e["resource"]["id"] == "1-101-dementia-nursing"]
    assert [e["resource"]["active"] for e in dropped] == [True, False]
    assert [e["request"]["method"] for e in dropped] == ["POST", "PUT"]
    # Nothing new: the next poll is empty; a new push shows up once.
    assert poll(factory, "HealthcareService", since)[0] == []
    push(
        client,
        tracker,
        location(
            "1-101", updated_at="2026-11-21T10:00:00Z", vacancies=[vacancy(admittable=1, unavailable=2)]
        ),
    )
    again, _ = poll(factory, "HealthcareService", since)
    assert [e["resource"]["id"] for e in again] == ["1-101-general-nursing"]


def test_organization_feed_and_http_history(
    client: TestClient, read_token: str, national: list[dict[str, Any]]
) -> None:
    response = client.get("/fhir/Organization/_history", headers=bearer(read_token))
    assert response.status_code == 200
    bundle = response.json()
    assert bundle["type"] == "history"
    assert sorted(e["resource"]["id"] for e in bundle["entry"]) == [
        "1-102642938",
        "1-200000001",
        "1-200000002",
    ]
    bad = client.get("/fhir/Location/_history", params={"_since": "last tuesday"}, headers=bearer(read_token))
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
    unknown = client.get("/fhir/Location/_history", params={"_sort": "x"}, headers=bearer(read_token))
    assert unknown.status_code == 400


def test_a_feed_page_of_nothing_is_refused_so_no_horizon_skips_changes(
    client: TestClient, read_token: str, factory: sessionmaker[Session], national: list[dict[str, Any]]
) -> None:
    response = client.get("/fhir/Location/_history", params={"_count": "0"}, headers=bearer(read_token))
    assert response.status_code == 400
    assert "_count" in response.json()["issue"][0]["diagnostics"]
    # The versions such a page would have stepped over are all there from the same _since.
    entries, _ = poll(factory, "Location", None, count=1)
    assert sorted(e["resource"]["id"] for e in entries) == ["1-10000302982", "1-101", "1-102"]
