"""The London simulator keeps the contract's quirks: a home updated during a listing comes
again on a later page (and the gateway keeps the later copy), each cursor lasts 15 minutes
from when it was handed out, and the rate limit is per client, not per token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from gateway.settings import Settings
from gateway.store import repository
from gateway.store.tables import Location
from gateway.sync import london
from simulators.london_tracker import LondonSimulatorSettings, LondonTrackerSimulator, create_app
from simulators.server import run_in_thread
from tests.sync.test_london_sync import london_homes, run_sync


def _client(**settings: Any) -> tuple[TestClient, LondonTrackerSimulator, dict[str, str]]:
    config = LondonSimulatorSettings(client_id="gw", client_secret="s3cret", **settings)
    app = create_app(london_homes(), config)
    client = TestClient(app)
    return client, app.state.simulator, _bearer(client)


def _bearer(client: TestClient) -> dict[str, str]:
    answer = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "gw", "client_secret": "s3cret"},
    )
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_a_home_updated_during_the_listing_comes_again_and_the_later_copy_wins(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    app = create_app(london_homes(), LondonSimulatorSettings(client_id="gw", client_secret="s3cret"))
    sim: LondonTrackerSimulator = app.state.simulator
    served = sim.page
    listed: list[str] = []

    def page_then_update(*args: Any) -> Any:
        answer = served(*args)
        if answer is not None:
            listed.extend(home["home_ref"] for home in answer[0])
            if len(listed) == 20:  # the first page is out: its first home is updated
                sim.update_home(listed[0], {"name": "Renamed Mid-Listing"})
        return answer

    sim.page = page_then_update  # type: ignore[method-assign]
    with run_in_thread(app) as url:
        run = run_sync(settings, factory, url)
    assert run.status == "succeeded", run.error_message
    assert listed.count(listed[0]) == 2 and listed[-1] == listed[0]  # again, on the last page
    assert run.records_seen == len(sim.homes) + 1
    cqc_id = sim.homes[listed[0]]["cqc_location_id"]
    with factory() as session:
        location = session.get(Location, cqc_id)
        assert location is not None and location.name == "Renamed Mid-Listing"
        assert len(repository.location_versions(session, cqc_id)) == 2


def test_each_cursor_lasts_15_minutes_from_when_it_was_handed_out() -> None:
    client, sim, bearer = _client(token_ttl_s=86400)
    cursor = client.get("/api/v2/homes", params={"page_size": 50}, headers=bearer).json()["next_cursor"]
    for _ in range(4):  # a slow listing: 40 minutes in all, 10 between pages
        sim.advance_clock(600)
        page = client.get("/api/v2/homes", params={"page_size": 50, "cursor": cursor}, headers=bearer)
        assert page.status_code == 200
        cursor = page.json()["next_cursor"]
    sim.advance_clock(901)
    expired = client.get("/api/v2/homes", params={"page_size": 50, "cursor": cursor}, headers=bearer)
    assert (expired.status_code, expired.json()) == (410, {"error": "cursor_expired"})


def test_the_rate_limit_is_per_client_and_a_new_token_does_not_reset_it() -> None:
    client, sim, bearer = _client(rate_limit_per_minute=4, retry_after_s=7)  # the token call counts
    assert [client.get("/api/v2/homes", headers=bearer).status_code for _ in range(3)] == [200] * 3
    sim.advance_clock(20)  # the oldest call of the window (the token request) frees it in 40 s
    for headers in (bearer, {"Authorization": "Bearer " + sim.issue_token("gw")}):
        throttled = client.get("/api/v2/homes", headers=headers)
        # Retry-After is the wait until the window frees, not the throttle fault's 7 s.
        assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) in (40, 41)
    assert LondonSimulatorSettings().rate_limit_per_minute == 120  # the contract's limit by default


def test_a_client_that_waits_as_the_rate_limit_tells_is_served() -> None:
    client, sim, bearer = _client(rate_limit_per_minute=3)
    assert [client.get("/api/v2/homes", headers=bearer).status_code for _ in range(2)] == [200] * 2
    sim.advance_clock(30)
    throttled = client.get("/api/v2/homes", headers=bearer)
    assert throttled.status_code == 429
    wait = int(throttled.headers["Retry-After"])
    assert 29 <= wait <= 31
    sim.advance_clock(wait)
    assert client.get("/api/v2/homes", headers=bearer).status_code == 200


def test_the_token_request_counts_in_the_rate_limit_and_meets_the_faults() -> None:
    client, sim, bearer = _client(rate_limit_per_minute=2)
    assert client.get("/api/v2/homes", headers=bearer).status_code == 200
    form = {"grant_type": "client_credentials", "client_id": "gw", "client_secret": "s3cret"}
    refused = client.post("/oauth/token", data=form)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    sim.advance_clock(61)
    assert client.post("/oauth/token", data=form).status_code == 200
    for fault, status in (("error_rate", {500, 502, 503, 504}), ("throttle_rate", {429})):
        client, sim, _ = _client(rate_limit_per_minute=0)
        setattr(sim.settings, fault, 1.0)
        assert client.post("/oauth/token", data=form).status_code in status


def test_the_listing_starts_at_updated_since_and_ends_with_a_null_cursor() -> None:
    client, sim, bearer = _client()
    since = "2026-11-19T00:00:00Z"
    refs: list[str] = []
    params: dict[str, Any] = {"page_size": 7, "updated_since": since}
    while True:
        body = client.get("/api/v2/homes", params=params, headers=bearer).json()
        refs += [home["home_ref"] for home in body["homes"]]
        if body["next_cursor"] is None:
            break
        params = {"page_size": 7, "cursor": body["next_cursor"]}
    expected = {ref for ref, home in sim.homes.items() if home["updated_at"] >= "2026-11-19"}
    assert len(refs) == len(set(refs)) and set(refs) == expected


def test_a_home_stamped_in_the_future_is_rejected_by_its_ref_and_the_rest_stored(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    homes = london_homes()
    homes[3]["updated_at"] = "2099-01-01T00:00:00+00:00"
    app = create_app(homes, LondonSimulatorSettings(client_id="gw", client_secret="s3cret"))
    with run_in_thread(app) as url:
        run = run_sync(settings, factory, url)
    assert run.status == "succeeded", run.error_message
    (rejection,) = run.rejections
    assert rejection["ref"] == homes[3]["home_ref"]
    assert rejection["reasons"][0].startswith("/updated_at: is ")
    assert "ahead of the gateway's clock" in rejection["reasons"][0]
    assert run.rejected == 1 and run.accepted == len(homes) - 2  # one rejected, one held for matching
    with factory() as session:
        assert session.get(Location, homes[3]["cqc_location_id"]) is None


def test_a_home_refused_as_ahead_of_the_clock_is_asked_for_again_until_the_clocks_agree(
    settings: Settings, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tracker's clock runs 20 minutes fast: a home it stamps is refused, and the
    listing's ``as_of`` (its clock too) is later than that home. The cursor stays at the
    home's own time, so once the gateway's clock agrees the home is stored, instead of
    being passed over until it next changes."""
    app = create_app(london_homes()[:60], LondonSimulatorSettings(client_id="gw", client_secret="s3cret"))
    sim: LondonTrackerSimulator = app.state.simulator
    with run_in_thread(app) as url:
        assert run_sync(settings, factory, url).status == "succeeded"
        sim.advance_clock(20 * 60)
        ref = next(
            ref for ref, home in sim.homes.items() if home.get("cqc_location_id") and home["status"] == "OPEN"
        )
        stamped = sim.update_home(ref, {"name": "Renamed Ahead Of Time"})["updated_at"]
        sim.advance_clock(5)  # the next listing's as_of is later than the home's time

        refused = run_sync(settings, factory, url)
        assert refused.status == "succeeded" and [r["ref"] for r in refused.rejections] == [ref]
        with factory() as session:
            assert repository.get_sync_cursor(session, "london") == {"as_of": stamped}
        assert any("the cursor stays at" in warning for warning in refused.warnings)

        later = datetime.now(UTC) + timedelta(minutes=30)  # the gateway's clock catches up
        monkeypatch.setattr(london, "utcnow", lambda: later)
        caught_up = run_sync(settings, factory, url)
    assert caught_up.status == "succeeded" and caught_up.rejections == []
    assert caught_up.accepted == 1 and caught_up.records_seen == 1
    with factory() as session:
        location = session.get(Location, sim.homes[ref]["cqc_location_id"])
        assert location is not None and location.name == "Renamed Ahead Of Time"
        cursor = repository.get_sync_cursor(session, "london")
        assert cursor is not None and cursor["as_of"] > stamped  # past the home now
