"""A change the CQC registry makes to what the view shows of a location (its rating, beds,
position...) or of a provider (its name) is a new version: ETags, Last-Modified, version
reads and the change feed move with it, and pushes are judged as before."""

from __future__ import annotations

import json
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from adapters.cqc.mapping import provider_row, registry_row
from gateway.store import registry as registry_queries
from gateway.store.db import transaction
from gateway.store.tables import LocationVersion, utcnow
from tests.conftest import bearer, statements_run
from tests.factories import location, vacancy
from tests.fhir.conftest import FIXTURES, HENLEY, homes, push
from tests.fhir.helpers import get

HENLEY_PROVIDER = "1-102642938"


def henley_row(**over: Any) -> dict[str, Any]:
    record = json.loads((FIXTURES / "location-henley-house.json").read_text())
    return {**registry_row(record), **over}


def sync_locations(factory: sessionmaker[Session], *rows: dict[str, Any]) -> tuple[list[str], list[str]]:
    with transaction(factory) as session:
        return registry_queries.sync_registry_locations(session, list(rows), utcnow())


def sync_provider(factory: sessionmaker[Session], provider_id: str, name: str) -> tuple[list[str], list[str]]:
    row = provider_row({"providerId": provider_id, "name": name, "locationIds": [HENLEY]})
    with transaction(factory) as session:
        return registry_queries.sync_registry_providers(session, [row], utcnow())


def horizon(client: TestClient, token: str) -> str:
    """A feed horizon now: ``_since`` for a poll that sees what comes after."""
    found: str = get(client, token, "/fhir/Location/_history", _count="1")["meta"]["lastUpdated"]
    return found


def feed(client: TestClient, token: str, resource_type: str, since: str) -> list[tuple[str, str]]:
    page = get(client, token, f"/fhir/{resource_type}/_history", _since=since, _count="100")
    return [(e["resource"]["id"], e["resource"]["meta"]["versionId"]) for e in page.get("entry", [])]


def version_count(factory: sessionmaker[Session], cqc_id: str | None = None) -> int:
    query = sa.select(sa.func.count()).select_from(LocationVersion)
    if cqc_id is not None:
        query = query.where(LocationVersion.cqc_location_id == cqc_id)  # type: ignore[arg-type]
    with factory() as session:
        return int(session.scalar(query) or 0)


def test_a_registry_change_of_a_location_is_a_new_version(
    client: TestClient,
    factory: sessionmaker[Session],
    read_token: str,
    tracker: str,
    national: list[dict[str, Any]],
) -> None:
    before = client.get(f"/fhir/Location/{HENLEY}", headers=bearer(read_token))
    old = before.json()
    old_version, old_updated = old["meta"]["versionId"], old["meta"]["lastUpdated"]
    since = horizon(client, read_token)

    assert sync_locations(factory, henley_row(overall_rating="Inadequate")) == ([HENLEY], [])

    after = client.get(f"/fhir/Location/{HENLEY}", headers=bearer(read_token))
    assert after.status_code == 200
    new = after.json()
    assert "Inadequate" in json.dumps(new)
    assert int(new["meta"]["versionId"]) > int(old_version)
    assert after.headers["etag"] == f'W/"{new["meta"]["versionId"]}"'
    assert datetime.fromisoformat(new["meta"]["lastUpdated"]) > datetime.fromisoformat(old_updated)
    assert parsedate_to_datetime(after.headers["last-modified"]) == datetime.fromisoformat(
        new["meta"]["lastUpdated"]
    ).replace(microsecond=0)
    assert new["meta"]["source"] == old["meta"]["source"]  # still the tracker's report
    stale = client.get(
        f"/fhir/Location/{HENLEY}", headers={**bearer(read_token), "If-None-Match": before.headers["etag"]}
    )
    assert stale.status_code == 200 and stale.json()["meta"]["versionId"] == new["meta"]["versionId"]
    fresh = client.get(
        f"/fhir/Location/{HENLEY}", headers={**bearer(read_token), "If-None-Match": after.headers["etag"]}
    )
    assert fresh.status_code == 304

    # The feed since before the change lists the location, its service and its provider.
    version = new["meta"]["versionId"]
    assert feed(client, read_token, "Location", since) == [(HENLEY, version)]
    service_id = f"{HENLEY}-general-residential"
    assert feed(client, read_token, "HealthcareService", since) == [(service_id, version)]
    assert feed(client, read_token, "Organization", since) == [(HENLEY_PROVIDER, version)]
    # The version before is still readable; history lists both, newest first.
    assert get(client, read_token, f"/fhir/Location/{HENLEY}/_history/{old_version}")["id"] == HENLEY
    history = get(client, read_token, f"/fhir/Location/{HENLEY}/_history")
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == [version, old_version]
    service = get(client, read_token, f"/fhir/HealthcareService/{service_id}")
    assert service["meta"]["versionId"] == version

    # The native history says what prompted each version; the record is the tracker's.
    native = get(client, tracker, f"/api/v1/locations/{HENLEY}/history")
    assert [(v["prompted_by"], str(v["version_id"])) for v in native] == [
        ("source", old_version),
        ("registry", version),
    ]
    assert native[1]["record"] == native[0]["record"]
    assert native[1]["source_updated_at"] == native[0]["source_updated_at"]
    detail = get(client, tracker, f"/api/v1/locations/{HENLEY}")
    assert str(detail["version_id"]) == version

    # The tracker's same report again is still 'unchanged'; a later one is accepted.
    henley = homes()[2]
    again = push(client, tracker, henley)
    assert [r["status"] for r in again["records"]] == ["unchanged"]
    later = push(client, tracker, {**henley, "updated_at": "2026-11-20T10:00:00Z"})
    assert [r["status"] for r in later["records"]] == ["accepted"]
    assert later["records"][0]["version_id"] > int(version)


def test_a_registry_row_written_again_unchanged_is_no_new_version(
    client: TestClient, factory: sessionmaker[Session], read_token: str, national: list[dict[str, Any]]
) -> None:
    versions = version_count(factory)
    assert sync_locations(factory, henley_row(registered_beds=99)) == ([HENLEY], [])
    assert version_count(factory) == versions + 1
    before = client.get(f"/fhir/Location/{HENLEY}", headers=bearer(read_token))
    assert sync_locations(factory, henley_row(registered_beds=99)) == ([], [HENLEY])
    assert version_count(factory) == versions + 1
    again = client.get(
        f"/fhir/Location/{HENLEY}", headers={**bearer(read_token), "If-None-Match": before.headers["etag"]}
    )
    assert again.status_code == 304


def test_a_provider_renamed_by_the_registry_is_a_new_organization_version(
    client: TestClient, factory: sessionmaker[Session], read_token: str, national: list[dict[str, Any]]
) -> None:
    path = f"/fhir/Organization/{HENLEY_PROVIDER}"
    old = get(client, read_token, path)
    since = horizon(client, read_token)

    assert sync_provider(factory, HENLEY_PROVIDER, "Henley Care Group") == ([HENLEY_PROVIDER], [])
    named = client.get(path, headers=bearer(read_token))
    org = named.json()
    assert org["name"] == "Henley Care Group"
    assert int(org["meta"]["versionId"]) > int(old["meta"]["versionId"])
    assert named.headers["etag"] == f'W/"{org["meta"]["versionId"]}"'
    assert feed(client, read_token, "Organization", since) == [(HENLEY_PROVIDER, org["meta"]["versionId"])]
    history = get(client, read_token, f"{path}/_history")
    assert history["entry"][0]["resource"]["meta"]["versionId"] == org["meta"]["versionId"]
    assert get(client, read_token, f"{path}/_history/{old['meta']['versionId']}")["id"] == HENLEY_PROVIDER

    # Renamed again, and then the same name again: one more version, not two.
    assert sync_provider(factory, HENLEY_PROVIDER, "Henley Homes") == ([HENLEY_PROVIDER], [])
    renamed = get(client, read_token, path)
    assert renamed["name"] == "Henley Homes"
    assert int(renamed["meta"]["versionId"]) > int(org["meta"]["versionId"])
    assert sync_provider(factory, HENLEY_PROVIDER, "Henley Homes") == ([], [HENLEY_PROVIDER])
    assert get(client, read_token, path)["meta"]["versionId"] == renamed["meta"]["versionId"]
    # The other providers' Organizations did not move.
    assert [i for i, _ in feed(client, read_token, "Organization", since)] == [HENLEY_PROVIDER] * 2


def test_registry_rows_of_what_the_view_does_not_hold_make_no_version(
    client: TestClient, factory: sessionmaker[Session], read_token: str, national: list[dict[str, Any]]
) -> None:
    versions = version_count(factory)
    since = horizon(client, read_token)
    elsewhere = henley_row(cqc_location_id="1-999999999", cqc_provider_id="1-888888888", name="Elsewhere")
    changed = henley_row(registered_beds=99)
    assert sync_locations(factory, elsewhere, changed) == (["1-999999999", HENLEY], [])
    assert sync_provider(factory, "1-888888888", "Nobody's Provider") == (["1-888888888"], [])
    assert version_count(factory) == versions + 1  # Henley House's alone
    assert [i for i, _ in feed(client, read_token, "Location", since)] == [HENLEY]
    assert client.get("/fhir/Location/1-999999999", headers=bearer(read_token)).status_code == 404


def test_a_first_registry_sync_over_many_locations_is_set_based(
    client: TestClient, engine: sa.Engine, factory: sessionmaker[Session], tracker: str
) -> None:
    ids = [f"1-5000{n:05d}" for n in range(60)]
    push(client, tracker, *(location(cqc_id, vacancies=[vacancy()]) for cqc_id in ids))
    rows = [henley_row(cqc_location_id=cqc_id, name=f"Home {cqc_id}") for cqc_id in ids]
    with statements_run(engine, "") as seen:
        assert sync_locations(factory, *rows) == (ids, [])
    assert len(seen) < 25  # a few statements, not one or more per location
    assert all(version_count(factory, cqc_id) == 2 for cqc_id in ids[:3])
    with factory() as session:
        current = session.execute(sa.text("SELECT max(version_id) FROM location_version")).scalar()
        held = session.execute(sa.text("SELECT max(version_id) FROM location")).scalar()
    assert current == held  # the view's rows point at their new versions
