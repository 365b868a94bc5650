"""An Organization whose last location stops naming its provider is retired, not deleted
(IHE mCSD): readable as ``active: false`` with a version of its own, in instance history
and the change feed as that version, left out of search (unless it asks for ``active=false``),
includes and exports (as retired HealthcareServices are), and active again with a new version
once a location names it."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.organization import Organization
from sqlalchemy.orm import Session, sessionmaker

from gateway.errors import NotFound
from gateway.fhir import history
from gateway.fhir.history import organization_versions
from tests.conftest import bearer, sqlite_plan, statements_run
from tests.factories import location
from tests.fhir.conftest import HENLEY, homes, push
from tests.fhir.helpers import get, ids
from tests.fhir.test_change_feed import BASE, poll

BEECH = "1-200000002"  # the provider of 1-102 alone in the small national view
TEST_CARE = "1-200000001"  # the provider of 1-101


def moved(cqc_id: str, updated_at: str, provider: dict[str, Any]) -> dict[str, Any]:
    """The small national view's record of ``cqc_id``, now naming ``provider``."""
    record = next(r for r in homes() if r["cqc_location_id"] == cqc_id)
    return {**record, "updated_at": updated_at, "provider": provider}


def version_of(answer: dict[str, Any]) -> str:
    return str(answer["records"][0]["version_id"])


def test_the_last_location_moving_away_retires_the_organization(
    client: TestClient, tracker: str, read_token: str, national: list[dict[str, Any]]
) -> None:
    before = get(client, read_token, f"/fhir/Organization/{BEECH}")
    assert before["active"] is True and before["name"] == "Beech Care Ltd"
    since = get(client, read_token, "/fhir/Organization/_history")["meta"]["lastUpdated"]

    answer = push(client, tracker, moved("1-102", "2026-11-21T09:00:00Z", {"cqc_provider_id": TEST_CARE}))
    version = version_of(answer)
    location_now = get(client, read_token, "/fhir/Location/1-102")

    response = client.get(f"/fhir/Organization/{BEECH}", headers=bearer(read_token))
    assert response.status_code == 200, response.text
    retired = response.json()
    Organization.model_validate(retired)
    assert retired["active"] is False
    assert retired["name"] == "Beech Care Ltd"  # as the provider last stood
    assert retired["meta"]["versionId"] == version != before["meta"]["versionId"]
    assert retired["meta"]["lastUpdated"] == location_now["meta"]["lastUpdated"]
    assert response.headers["etag"] == f'W/"{version}"'
    assert {k: v for k, v in retired.items() if k not in ("meta", "active")} == {
        k: v for k, v in before.items() if k not in ("meta", "active")
    }
    unchanged = client.get(
        f"/fhir/Organization/{BEECH}", headers={**bearer(read_token), "If-None-Match": f'W/"{version}"'}
    )
    assert unchanged.status_code == 304

    # Version reads and instance history (newest first) agree with the read.
    assert get(client, read_token, f"/fhir/Organization/{BEECH}/_history/{version}") == retired
    old = get(client, read_token, f"/fhir/Organization/{BEECH}/_history/{before['meta']['versionId']}")
    assert old == before
    instance = get(client, read_token, f"/fhir/Organization/{BEECH}/_history")
    Bundle.model_validate(instance)
    assert [e["resource"] for e in instance["entry"]] == [retired, before]
    assert [e["request"]["method"] for e in instance["entry"]] == ["PUT", "POST"]
    assert instance["entry"][0]["response"]["etag"] == f'W/"{version}"'

    # The change feed carries the retirement once, as that version, beside the provider
    # the location now names.
    feed = get(client, read_token, "/fhir/Organization/_history", _since=since)
    assert [(e["resource"]["id"], e["resource"]["active"]) for e in feed["entry"]] == [
        (TEST_CARE, True),
        (BEECH, False),
    ]
    assert feed["entry"][1]["resource"] == retired
    everything = get(client, read_token, "/fhir/Organization/_history")
    beech = [e["resource"] for e in everything["entry"] if e["resource"]["id"] == BEECH]
    assert beech == [before, retired]  # oldest first

    # Search finds only current Organizations (as with retired HealthcareServices), and
    # no include brings the retired one in.
    assert ids(get(client, read_token, "/fhir/Organization", _id=BEECH)) == []
    assert ids(get(client, read_token, "/fhir/Organization", name="Beech")) == []
    assert BEECH not in ids(get(client, read_token, "/fhir/Organization", _count=50))
    assert ids(get(client, read_token, "/fhir/Organization", identifier=BEECH)) == []
    found = get(client, read_token, "/fhir/Location", _id="1-102", _include="Location:organization")
    assert ids(found, "include") == [TEST_CARE]


def test_a_location_naming_a_retired_provider_again_makes_it_active_with_a_new_version(
    client: TestClient, tracker: str, read_token: str, national: list[dict[str, Any]]
) -> None:
    beech = {"cqc_provider_id": BEECH, "name": "Beech Care Ltd"}
    retired_by = version_of(
        push(client, tracker, moved("1-102", "2026-11-21T09:00:00Z", {"cqc_provider_id": TEST_CARE}))
    )
    since = get(client, read_token, "/fhir/Organization/_history")["meta"]["lastUpdated"]
    back = version_of(push(client, tracker, moved("1-102", "2026-11-21T10:00:00Z", beech)))

    current = get(client, read_token, f"/fhir/Organization/{BEECH}")
    assert current["active"] is True and current["meta"]["versionId"] == back
    assert int(back) > int(retired_by)
    instance = get(client, read_token, f"/fhir/Organization/{BEECH}/_history")
    assert [(e["resource"]["meta"]["versionId"], e["resource"]["active"]) for e in instance["entry"]][:2] == [
        (back, True),
        (retired_by, False),
    ]
    assert ids(get(client, read_token, "/fhir/Organization", _id=BEECH)) == [BEECH]
    # The feed: the provider back, and TEST_CARE, which 1-101 still names, not retired.
    feed = get(client, read_token, "/fhir/Organization/_history", _since=since)
    assert [(e["resource"]["id"], e["resource"]["active"]) for e in feed["entry"]] == [(BEECH, True)]


def test_a_provider_keeps_its_version_while_another_location_names_it(
    client: TestClient, tracker: str, read_token: str, national: list[dict[str, Any]]
) -> None:
    """A location leaving a provider that others still run changes nothing of its
    Organization: no new version, none going backwards; the last to leave retires it."""
    other = {"cqc_provider_id": BEECH, "name": "Beech Care Ltd"}
    second = version_of(push(client, tracker, location("1-103", "2026-11-21T08:00:00Z", provider=other)))
    assert get(client, read_token, f"/fhir/Organization/{BEECH}")["meta"]["versionId"] == second

    # 1-103 (the newest version naming it) moves away; 1-102 still names it.
    push(client, tracker, location("1-103", "2026-11-21T09:00:00Z"))
    still = get(client, read_token, f"/fhir/Organization/{BEECH}")
    assert still["active"] is True and still["meta"]["versionId"] == second
    assert ids(get(client, read_token, "/fhir/Organization", _id=BEECH)) == [BEECH]
    searched = get(client, read_token, "/fhir/Organization", _id=BEECH)["entry"][0]["resource"]
    assert searched == still
    included = get(client, read_token, "/fhir/Location", _id="1-102", _include="Location:organization")
    assert [e["resource"] for e in included["entry"] if e["search"]["mode"] == "include"] == [still]
    instance = get(client, read_token, f"/fhir/Organization/{BEECH}/_history")
    assert all(e["resource"]["active"] for e in instance["entry"])
    assert instance["entry"][0]["resource"] == still

    # 1-102 stops naming any provider: now it is retired.
    last = version_of(
        push(
            client,
            tracker,
            moved("1-102", "2026-11-21T10:00:00Z", {"cqc_provider_id": None, "name": "Beech Care Ltd"}),
        )
    )
    retired = get(client, read_token, f"/fhir/Organization/{BEECH}")
    assert retired["active"] is False and retired["meta"]["versionId"] == last
    assert get(client, read_token, f"/fhir/Organization/{BEECH}/_history")["entry"][0]["resource"] == retired


def test_unknown_providers_and_versions_are_still_404(
    client: TestClient, tracker: str, read_token: str, national: list[dict[str, Any]]
) -> None:
    push(client, tracker, moved("1-102", "2026-11-21T09:00:00Z", {"cqc_provider_id": TEST_CARE}))
    henley_version = get(client, read_token, f"/fhir/Location/{HENLEY}")["meta"]["versionId"]
    for path in (
        "/fhir/Organization/1-999999999",
        "/fhir/Organization/1-999999999/_history",
        f"/fhir/Organization/{BEECH}/_history/999999",
        f"/fhir/Organization/{BEECH}/_history/{henley_version}",  # a version, but not this provider's
        f"/fhir/Organization/{BEECH}/_history/not-a-version",
    ):
        response = client.get(path, headers=bearer(read_token))
        assert response.status_code == 404, path
        assert response.json()["issue"][0]["code"] == "not-found"


def test_the_feed_pages_through_two_organization_versions_of_one_location_version(
    client: TestClient, tracker: str, factory: sessionmaker[Session], national: list[dict[str, Any]]
) -> None:
    """A location moving from its provider's last location to another provider makes two
    Organization versions at one feed position; pages of one entry show each once."""
    _, since = poll(factory, "Organization", None)
    push(client, tracker, moved("1-102", "2026-11-21T09:00:00Z", {"cqc_provider_id": "1-200000003"}))
    entries, _ = poll(factory, "Organization", since, count=1)
    assert [(e["resource"]["id"], e["resource"]["active"]) for e in entries] == [
        ("1-200000003", True),
        (BEECH, False),
    ]
    assert len({e["resource"]["meta"]["versionId"] for e in entries}) == 1


def test_export_holds_the_organizations_the_view_names_at_the_versions_reads_give(
    client: TestClient, tracker: str, read_token: str, national: list[dict[str, Any]]
) -> None:
    other = {"cqc_provider_id": BEECH, "name": "Beech Care Ltd"}
    push(client, tracker, location("1-103", "2026-11-21T08:00:00Z", provider=other))
    push(client, tracker, location("1-103", "2026-11-21T09:00:00Z"))  # leaves 1-102 naming it
    push(client, tracker, moved(HENLEY, "2026-11-21T09:00:00Z", {"cqc_provider_id": TEST_CARE}))
    reads = {
        provider: get(client, read_token, f"/fhir/Organization/{provider}")
        for provider in (TEST_CARE, BEECH, "1-102642938")
    }
    assert [r["active"] for r in reads.values()] == [True, True, False]

    kick_off = client.get(
        "/fhir/$export",
        params={"_type": "Organization"},
        headers={**bearer(read_token), "Prefer": "respond-async"},
    )
    assert kick_off.status_code == 202, kick_off.text
    deadline = time.monotonic() + 30
    while (
        polled := client.get(kick_off.headers["content-location"], headers=bearer(read_token))
    ).status_code == 202:
        assert time.monotonic() < deadline, "the export did not complete"
        time.sleep(0.02)
    manifest = polled.json()
    assert [(item["type"], item["count"]) for item in manifest["output"]] == [("Organization", 2)]
    body = client.get(manifest["output"][0]["url"], headers=bearer(read_token)).content
    exported = {r["id"]: r for r in map(orjson.loads, body.splitlines())}
    assert exported == {TEST_CARE: reads[TEST_CARE], BEECH: reads[BEECH]}


def test_organization_versions_from_a_timeline() -> None:
    """Two locations of one provider: leaving while another still names it is no version;
    the last to leave retires it, drawn from its own last version naming it."""
    timeline: list[tuple[int, str, str | None]] = [
        (1, "1-1", "1-9"),
        (2, "1-2", "1-9"),
        (3, "1-3", "1-8"),  # a location that never named it changes nothing
        (4, "1-1", "1-8"),
        (5, "1-2", None),
        (6, "1-2", "1-9"),
        (7, "1-2", "1-9"),
    ]
    found = [(v.version_id, v.named_by, v.active) for v in organization_versions("1-9", timeline)]
    assert found == [(1, 1, True), (2, 2, True), (5, 2, False), (6, 6, True), (7, 7, True)]
    assert organization_versions("1-7", timeline) == []


def test_organization_reads_and_history_search_indexes(
    engine: sa.Engine,
    factory: sessionmaker[Session],
    client: TestClient,
    tracker: str,
    national: list[dict[str, Any]],
) -> None:
    """An Organization's versions are found from indexes, never by reading every version
    (they grow by thousands a day): reads, version reads, history and the feed."""
    if engine.dialect.name != "sqlite":
        pytest.skip("query plans are read from SQLite")
    push(client, tracker, moved("1-102", "2026-11-21T09:00:00Z", {"cqc_provider_id": TEST_CARE}))
    with statements_run(engine, "SELECT") as selects, factory() as session:
        assert history.read(session, "Organization", BEECH)["active"] is False
        current = history.read(session, "Organization", TEST_CARE)
        history.instance_history(session, BASE, "Organization", BEECH)
        assert history.vread(session, "Organization", TEST_CARE, current["meta"]["versionId"]) == current
        with pytest.raises(NotFound):
            history.read(session, "Organization", "1-999999999")
        history.type_history(session, factory, BASE, "Organization", [])
    assert selects
    for statement in selects:
        plan = sqlite_plan(engine, statement)
        # Every table (or alias of one) is searched through an index; nothing is scanned.
        assert not [step for step in plan if step.startswith("SCAN")], (statement[0], plan)


# --- searching by active ------------------------------------------------------------------

HENLEY_PROVIDER = "1-102642938"  # the provider of Henley House in the small national view


def search_pages(client: TestClient, token: str, **params: Any) -> list[dict[str, Any]]:
    """Every page of an Organization search, following its next links."""
    pages = [get(client, token, "/fhir/Organization", **params)]
    while nxt := next((link["url"] for link in pages[-1]["link"] if link["relation"] == "next"), None):
        assert len(pages) < 10, "paging does not end"
        response = client.get(nxt, headers=bearer(token))
        assert response.status_code == 200, response.text
        pages.append(response.json())
    return pages


def test_active_searches_current_or_retired_organizations(
    client: TestClient, tracker: str, read_token: str, national: list[dict[str, Any]]
) -> None:
    push(client, tracker, moved("1-102", "2026-11-21T09:00:00Z", {"cqc_provider_id": TEST_CARE}))
    retired = get(client, read_token, f"/fhir/Organization/{BEECH}")
    assert retired["active"] is False

    # Without active, and with active=true: the providers some location names now.
    current = get(client, read_token, "/fhir/Organization", _count=50)
    assert ids(current) == [HENLEY_PROVIDER, TEST_CARE]  # in _id order
    assert ids(get(client, read_token, "/fhir/Organization", active="true", _count=50)) == ids(current)
    assert ids(get(client, read_token, "/fhir/Organization", active="|true")) == ids(current)

    # active=false: the retired one, exactly as a read gives it, and nothing to revinclude.
    found = get(
        client,
        read_token,
        "/fhir/Organization",
        active="false",
        _revinclude="Location:organization",
        _total="accurate",
    )
    Bundle.model_validate(found)
    assert [e["resource"] for e in found["entry"]] == [retired]
    assert found["total"] == 1
    assert ids(get(client, read_token, "/fhir/Organization", active="false", _id=BEECH)) == [BEECH]
    assert ids(get(client, read_token, "/fhir/Organization", active="false", _id=TEST_CARE)) == []
    by_identifier = get(client, read_token, "/fhir/Organization", active="false", identifier=f"|{BEECH}")
    assert ids(by_identifier) == []  # a token with no system matches none of the CQC's
    assert ids(get(client, read_token, "/fhir/Organization", active="false", identifier=BEECH)) == [BEECH]
    assert ids(get(client, read_token, "/fhir/Organization", active="true", identifier=BEECH)) == []
    both = get(client, read_token, "/fhir/Organization", active="true,false", _total="accurate")
    assert sorted(ids(both)) == sorted([TEST_CARE, HENLEY_PROVIDER, BEECH]) and both["total"] == 3
    anded = client.get("/fhir/Organization?active=true&active=false", headers=bearer(read_token))
    assert anded.status_code == 200 and "entry" not in anded.json()


def test_active_false_pages_through_retired_organizations(
    client: TestClient, tracker: str, read_token: str, national: list[dict[str, Any]]
) -> None:
    third = {"cqc_provider_id": "1-200000009", "name": "Zeta Homes Ltd"}
    push(client, tracker, location("1-103", "2026-11-21T08:00:00Z", provider=third))
    push(client, tracker, location("1-103", "2026-11-21T09:00:00Z"))  # back to TEST_CARE: retires the third
    push(client, tracker, moved("1-102", "2026-11-21T09:00:00Z", {"cqc_provider_id": TEST_CARE}))
    push(client, tracker, moved(HENLEY, "2026-11-21T09:00:00Z", {"cqc_provider_id": TEST_CARE}))
    retired = sorted([BEECH, HENLEY_PROVIDER, "1-200000009"])
    reads = {provider: get(client, read_token, f"/fhir/Organization/{provider}") for provider in retired}
    assert not any(r["active"] for r in reads.values())

    pages = search_pages(client, read_token, active="false", _count=1, _total="accurate")
    assert [ids(page) for page in pages] == [[provider] for provider in retired]
    assert all(page["total"] == 3 for page in pages)
    assert [page["entry"][0]["resource"] for page in pages] == [reads[p] for p in retired]

    by_name = search_pages(client, read_token, active="false", _count=1, _sort="name")
    names = [page["entry"][0]["resource"]["name"] for page in by_name]
    assert names == sorted(names, key=str.casefold) and len(names) == 3
    assert ids(get(client, read_token, "/fhir/Organization", _count=50)) == [TEST_CARE]


def test_active_false_with_a_name(
    client: TestClient, tracker: str, read_token: str, national: list[dict[str, Any]]
) -> None:
    test_care = {"cqc_provider_id": TEST_CARE, "name": "Test Care Ltd"}
    push(client, tracker, moved("1-102", "2026-11-21T09:00:00Z", test_care))
    assert ids(get(client, read_token, "/fhir/Organization", active="false", name="beech")) == [BEECH]
    assert ids(
        get(client, read_token, "/fhir/Organization", active="false", **{"name:contains": "care"})
    ) == [BEECH]
    assert ids(get(client, read_token, "/fhir/Organization", active="false", name="Test")) == []
    assert ids(get(client, read_token, "/fhir/Organization", active="true", name="Beech")) == []
    assert ids(get(client, read_token, "/fhir/Organization", name="Test")) == [TEST_CARE]


@pytest.mark.parametrize("value", ["maybe", "TRUE", "http://hl7.org/fhir/x|yes"])
def test_a_bad_active_value_is_a_400_naming_the_parameter(
    client: TestClient, read_token: str, national: list[dict[str, Any]], value: str
) -> None:
    response = client.get("/fhir/Organization", params={"active": value}, headers=bearer(read_token))
    if value.startswith("http"):  # another system's code matches nothing, as on HealthcareService
        assert response.status_code == 200 and "entry" not in response.json()
        return
    assert response.status_code == 400, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    issue = outcome["issue"][0]
    assert issue["code"] == "invalid" and issue["diagnostics"].startswith("active:")
    assert f"unknown code {value!r}; allowed: false, true" in issue["diagnostics"]  # not an unknown parameter
