"""The change feed (``{type}/_history``) and instance history (``{type}/{id}/_history``)
agree on how each version came to be (``entry.request`` and ``entry.response.status``):
an Organization is created by the first version naming its provider, a HealthcareService
by the first version of its location offering its vacancy type (offered again after a
withdrawal, it is updated); and the feed finds that out without a query per entry."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from gateway.fhir.history import type_history
from tests.conftest import statements_run
from tests.factories import location, vacancy
from tests.fhir.conftest import push
from tests.fhir.helpers import follow, get

P1 = {"cqc_provider_id": "1-200000001", "name": "Test Care Ltd"}
P2 = {"cqc_provider_id": "1-200000002", "name": "Other Care Ltd"}
P3 = {"cqc_provider_id": "1-200000003", "name": "Third Care Ltd"}

BASE = "http://gateway.test/fhir"
How = tuple[str, str, str]  # request method, request url, response status


def _how(entry: dict[str, Any]) -> How:
    return entry["request"]["method"], entry["request"]["url"], entry["response"]["status"]


def _feed(client: TestClient, token: str, resource_type: str, count: int) -> dict[tuple[str, str], How]:
    first = get(client, token, f"/fhir/{resource_type}/_history", _count=count)
    entries = [e for page in follow(client, token, first) for e in page.get("entry", [])]
    out = {(e["resource"]["id"], e["resource"]["meta"]["versionId"]): _how(e) for e in entries}
    assert len(out) == len(entries)
    return out


def _instances(
    client: TestClient, token: str, resource_type: str, resource_ids: set[str]
) -> dict[tuple[str, str], How]:
    out = {}
    for resource_id in sorted(resource_ids):
        history = get(client, token, f"/fhir/{resource_type}/{resource_id}/_history")
        out.update({(resource_id, e["resource"]["meta"]["versionId"]): _how(e) for e in history["entry"]})
    return out


def test_an_organizations_first_version_is_created_in_the_feed(
    client: TestClient, tracker: str, read_token: str
) -> None:
    push(client, tracker, location("1-701", provider=P1))
    push(client, tracker, location("1-702", provider=P1))  # a second location: an update
    feed = _feed(client, read_token, "Organization", 20)
    versions = sorted(feed, key=lambda key: int(key[1]))
    assert [feed[key] for key in versions] == [
        ("POST", "Organization", "201 Created"),
        ("PUT", "Organization/1-200000001", "200 OK"),
    ]
    assert feed == _instances(client, read_token, "Organization", {"1-200000001"})


def test_a_service_offered_again_is_updated_in_the_feed(
    client: TestClient, tracker: str, read_token: str
) -> None:
    both = [vacancy("general-nursing"), vacancy("dementia-nursing")]
    push(client, tracker, location("1-701", updated_at="2026-11-20T09:00:00Z", vacancies=both))
    push(client, tracker, location("1-701", updated_at="2026-11-21T09:00:00Z", vacancies=both[:1]))
    push(client, tracker, location("1-701", updated_at="2026-11-22T09:00:00Z", vacancies=both))
    feed = _feed(client, read_token, "HealthcareService", 20)
    service = "1-701-dementia-nursing"
    assert [feed[key] for key in sorted(k for k in feed if k[0] == service)] == [
        ("POST", "HealthcareService", "201 Created"),
        ("PUT", f"HealthcareService/{service}", "200 OK"),  # withdrawn: inactive
        ("PUT", f"HealthcareService/{service}", "200 OK"),  # offered again
    ]
    assert feed == _instances(client, read_token, "HealthcareService", {k[0] for k in feed})


def test_feed_and_instance_history_agree_on_every_version(
    client: TestClient, tracker: str, read_token: str
) -> None:
    gn, dn, gr = vacancy("general-nursing"), vacancy("dementia-nursing"), vacancy("general-residential")
    steps = [
        location("1-701", updated_at="2026-11-20T09:00:00Z", provider=P1, vacancies=[gn, dn]),
        location("1-702", updated_at="2026-11-20T09:00:00Z", provider=P1, vacancies=[gn]),
        location("1-701", updated_at="2026-11-21T09:00:00Z", provider=P1, vacancies=[gn]),
        location("1-701", updated_at="2026-11-22T09:00:00Z", provider=P1, vacancies=[gn, dn]),
        location("1-702", updated_at="2026-11-22T09:00:00Z", provider=P2, vacancies=[gn]),
        location("1-701", updated_at="2026-11-23T09:00:00Z", provider=P2, vacancies=[dn]),  # P1 retired
        location("1-702", updated_at="2026-11-23T09:00:00Z", provider=P1, vacancies=[gn, dn]),  # P1 again
        location("1-701", updated_at="2026-11-24T09:00:00Z", provider=P2, vacancies=[dn, gr]),
        location("1-703", updated_at="2026-11-24T09:00:00Z", provider=P3, vacancies=[gr]),
        location("1-701", updated_at="2026-11-25T09:00:00Z", provider=P2, vacancies=[gn, gr]),
    ]
    for step in steps:
        push(client, tracker, step)
    for resource_type in ("Location", "HealthcareService", "Organization"):
        for count in (1, 3, 50):  # pages ending within a version, and none
            feed = _feed(client, read_token, resource_type, count)
            assert feed == _instances(client, read_token, resource_type, {k[0] for k in feed}), resource_type
    organizations = _feed(client, read_token, "Organization", 50)
    created = sorted(key[0] for key, how in organizations.items() if how[0] == "POST")
    assert created == ["1-200000001", "1-200000002", "1-200000003"]
    services = _feed(client, read_token, "HealthcareService", 50)
    created = sorted(key[0] for key, how in services.items() if how[0] == "POST")
    assert created == [
        "1-701-dementia-nursing",
        "1-701-general-nursing",
        "1-701-general-residential",
        "1-702-dementia-nursing",
        "1-702-general-nursing",
        "1-703-general-residential",
    ]


def test_feed_finds_first_versions_with_queries_per_page_not_per_entry(
    client: TestClient, tracker: str, engine: sa.Engine, factory: sessionmaker[Session]
) -> None:
    both = [vacancy("general-nursing"), vacancy("dementia-nursing")]
    homes = [f"1-7{n:02d}" for n in range(30)]
    for day, lines in ((20, both), (21, both[:1]), (22, both)):  # every home offers one again
        push(
            client,
            tracker,
            *[
                location(
                    cqc_id,
                    updated_at=f"2026-11-{day}T09:00:00Z",
                    provider=P1 if n % 2 else P2,
                    vacancies=lines,
                )
                for n, cqc_id in enumerate(homes)
            ],
        )
    pages = {}
    for resource_type, entries in (("HealthcareService", 30 * 6), ("Organization", 30 * 3)):
        with statements_run(engine, "SELECT") as seen, factory() as session, session.begin():
            pages[resource_type] = type_history(session, factory, BASE, resource_type, [("_count", "500")])
        assert len(pages[resource_type]["entry"]) == entries
        assert len(seen) <= 12, (resource_type, len(seen))  # not one per home offering again
    reoffered = [
        e["request"]["method"]
        for e in pages["HealthcareService"]["entry"]
        if e["resource"]["id"].endswith("-dementia-nursing") and e["resource"]["active"]
    ]
    assert reoffered == ["POST"] * 30 + ["PUT"] * 30
    named = [e["request"]["method"] for e in pages["Organization"]["entry"]]
    assert named == ["POST", "POST"] + ["PUT"] * (30 * 3 - 2)
