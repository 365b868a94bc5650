"""The CQC API simulator keeps to the contract where tests and benches rely on it."""

from __future__ import annotations

import json
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
