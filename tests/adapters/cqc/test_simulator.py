"""The CQC API simulator keeps to the contract where tests and benches rely on it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from simulators.cqc_api import CqcApiSimulator, CqcSimulatorSettings, create_app

DATA = Path(__file__).resolve().parents[2] / "fixtures" / "cqc"
HEADERS = {"Ocp-Apim-Subscription-Key": "k", "User-Agent": "tests"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limited(per_minute: float, clock: Clock) -> CqcApiSimulator:
    return CqcApiSimulator([], [], CqcSimulatorSettings(requests_per_minute=per_minute), clock=clock)


def test_a_limit_below_sixty_a_minute_lets_calls_through_at_that_rate() -> None:
    clock = Clock()
    sim = limited(30, clock)  # one call every 2 s
    allowed = []
    for at in (0.0, 0.0, 1.0, 2.0, 2.5, 3.9, 4.0, 60.0, 60.0):
        clock.now = 1000.0 + at
        allowed.append(not sim.over_limit())
    assert allowed == [True, False, False, True, False, False, True, True, False]


def test_a_limit_above_sixty_a_minute_allows_a_second_s_worth_at_once() -> None:
    clock = Clock()
    sim = limited(120, clock)
    assert [sim.over_limit() for _ in range(3)] == [False, False, True]
    clock.now += 0.5
    assert [sim.over_limit() for _ in range(2)] == [False, True]


def test_a_malformed_timestamp_is_a_400_not_a_server_error() -> None:
    home = json.loads((DATA / "location-henley-house.json").read_text())
    client = TestClient(create_app([home], [], CqcSimulatorSettings(subscription_key="k")))
    for start, end in [("yesterday", "2025-01-01T00:00:00Z"), ("2025-01-01T00:00:00Z", "")]:
        answer = client.get(
            "/public/v1/changes/location",
            params={"startTimestamp": start, "endTimestamp": end},
            headers=HEADERS,
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["statusCode"] == 400 and "Timestamp" in answer.json()["message"]
    good = client.get(
        "/public/v1/changes/location",
        params={"startTimestamp": "2025-01-01T00:00:00Z", "endTimestamp": "2025-01-02T00:00:00Z"},
        headers=HEADERS,
    )
    assert good.status_code == 200 and good.json()["changes"] == []


def test_a_change_is_listed_late_when_the_registry_lags() -> None:
    home = json.loads((DATA / "location-henley-house.json").read_text())
    settings = CqcSimulatorSettings(subscription_key="k", listing_lag_s=600)
    app = create_app([home], [], settings)
    sim: CqcApiSimulator = app.state.simulator
    client = TestClient(app)
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=2), now + timedelta(hours=1)
    window = {"startTimestamp": f"{start:%Y-%m-%dT%H:%M:%SZ}", "endTimestamp": f"{end:%Y-%m-%dT%H:%M:%SZ}"}

    def listed() -> list[str]:
        answer = client.get("/public/v1/changes/location", params=window, headers=HEADERS)
        assert answer.status_code == 200, answer.text
        return list(answer.json()["changes"])

    home_id = home["locationId"]
    sim.change_location(home_id, {"numberOfBeds": 41}, at=now)
    assert listed() == []  # within the lag: its window leaves it out, though its detail has it
    detail = client.get(f"/public/v1/locations/{home_id}", headers=HEADERS)
    assert detail.json()["numberOfBeds"] == 41
    sim.change_location(home_id, {"numberOfBeds": 42}, at=now - timedelta(hours=1))
    assert listed() == [home_id]  # older than the lag: listed
    sim.settings.listing_lag_s = 0
    sim.changes.clear()
    sim.change_location(home_id, {"numberOfBeds": 43}, at=now, listed_at=now + timedelta(days=1))
    assert listed() == []
    sim.list_late(home_id)
    assert listed() == [home_id]
    assert sim.windows[-1] == (window["startTimestamp"], window["endTimestamp"])


def test_a_provider_change_is_listed_by_changes_provider_with_the_same_lag() -> None:
    home = json.loads((DATA / "location-henley-house.json").read_text())
    provider = {"providerId": home["providerId"], "name": "Henley", "locationIds": [home["locationId"]]}
    settings = CqcSimulatorSettings(subscription_key="k", listing_lag_s=600)
    app = create_app([home], [provider], settings)
    sim: CqcApiSimulator = app.state.simulator
    client = TestClient(app)
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=2), now + timedelta(hours=1)
    window = {"startTimestamp": f"{start:%Y-%m-%dT%H:%M:%SZ}", "endTimestamp": f"{end:%Y-%m-%dT%H:%M:%SZ}"}

    def listed(kind: str) -> list[str]:
        answer = client.get(f"/public/v1/changes/{kind}", params=window, headers=HEADERS)
        assert answer.status_code == 200, answer.text
        assert answer.json()["firstPageUri"].startswith(f"/changes/{kind}?")
        return list(answer.json()["changes"])

    provider_id = provider["providerId"]
    sim.change_provider(provider_id, {"name": "Evergreen Homes Ltd"}, at=now)
    assert listed("provider") == []  # within the lag
    detail = client.get(f"/public/v1/providers/{provider_id}", headers=HEADERS)
    assert detail.json()["name"] == "Evergreen Homes Ltd"
    sim.change_provider(provider_id, {"name": "Evergreen Homes"}, at=now - timedelta(hours=1))
    assert listed("provider") == [provider_id]
    assert listed("location") == []  # a provider's change is not a location's
    sim.settings.listing_lag_s = 0
    sim.provider_changes.clear()
    sim.change_provider(provider_id, {"name": "Evergreen"}, at=now, listed_at=now + timedelta(days=1))
    assert listed("provider") == []
    sim.list_late(provider_id)
    assert listed("provider") == [provider_id]
    assert sim.provider_windows[-1] == (window["startTimestamp"], window["endTimestamp"])
    sim.settings.failing_changes = ["provider"]
    answer = client.get("/public/v1/changes/provider", params=window, headers=HEADERS)
    assert answer.status_code == 500
