"""The CQC client and source at the transport (respx)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import respx

from adapters.common.http import RetryPolicy, TransientUpstreamError, UpstreamConfigurationError
from adapters.cqc.client import CqcClient
from adapters.cqc.source import CqcSource, RegistryBatch

BASE = "https://cqc.example/public/v1"
sleeps: list[float] = []
now = [0.0]  # the clock the fixture's client reads: its sleeps move it on, at once


async def no_sleep(seconds: float) -> None:
    sleeps.append(seconds)
    now[0] += seconds


def fake_clock() -> float:
    return now[0]


def record(location_id: str) -> dict[str, Any]:
    return {
        "locationId": location_id,
        "providerId": "1-9",
        "name": f"Home {location_id}",
        "careHome": "Y",
        "registrationStatus": "Registered",
        "numberOfBeds": 30,
        "region": "London",
        "postalCode": "nw8 9aa",
    }


def list_page(ids: list[str], page: int, pages: int) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "total": 99,
            "page": page,
            "perPage": len(ids),
            "totalPages": pages,
            "nextPageUri": f"/locations?page={page + 1}" if page < pages else None,
            "locations": [{"locationId": i, "locationName": "x", "postalCode": "y"} for i in ids],
        },
    )


@pytest.fixture
def client() -> CqcClient:
    sleeps.clear()
    return CqcClient(
        httpx.AsyncClient(),
        BASE,
        "k3y",
        RetryPolicy(max_attempts=4, sleep=no_sleep),
        requests_per_minute=60_000,
        clock=fake_clock,
    )


@respx.mock
async def test_paging_sends_key_user_agent_and_filters(client: CqcClient) -> None:
    route = respx.get(f"{BASE}/locations").mock(
        side_effect=[list_page(["1-1", "1-2"], 1, 2), list_page(["1-3"], 2, 2)]
    )
    pages = [ids async for ids in client.list_care_home_ids(page_size=2)]
    assert pages == [["1-1", "1-2"], ["1-3"]]
    first, second = (c.request for c in route.calls)
    assert first.headers["Ocp-Apim-Subscription-Key"] == "k3y"
    assert first.headers["User-Agent"].startswith("care-capacity-gateway/")
    assert dict(first.url.params) == {"careHome": "Y", "page": "1", "perPage": "2"}
    assert second.url.params["page"] == "2"


@respx.mock
async def test_changes_window_passes_start_and_end_and_pages(client: CqcClient) -> None:
    route = respx.get(f"{BASE}/changes/location").mock(
        side_effect=[
            httpx.Response(200, json={"total": 3, "page": 1, "totalPages": 2, "changes": ["1-1", "1-2"]}),
            httpx.Response(200, json={"total": 3, "page": 2, "totalPages": 2, "changes": ["1-3"]}),
        ]
    )
    ids = await client.changed_location_ids("2026-11-21T00:00:00Z", "2026-11-22T00:00:00Z")
    assert ids == ["1-1", "1-2", "1-3"]
    params = route.calls[0].request.url.params
    assert (params["startTimestamp"], params["endTimestamp"]) == (
        "2026-11-21T00:00:00Z",
        "2026-11-22T00:00:00Z",
    )


@respx.mock
async def test_provider_changes_pass_the_window_and_page_until_the_last(client: CqcClient) -> None:
    route = respx.get(f"{BASE}/changes/provider").mock(
        side_effect=[
            httpx.Response(200, json={"total": 5, "page": 1, "totalPages": 3, "changes": ["1-7", "1-8"]}),
            httpx.Response(200, json={"total": 5, "page": 2, "totalPages": 3, "changes": ["1-9", "1-10"]}),
            httpx.Response(200, json={"total": 5, "page": 3, "totalPages": 3, "changes": ["1-11"]}),
        ]
    )
    locations = respx.get(f"{BASE}/changes/location")
    ids = await client.changed_provider_ids("2026-11-21T00:00:00Z", "2026-11-22T00:00:00Z", page_size=2)
    assert ids == ["1-7", "1-8", "1-9", "1-10", "1-11"]
    assert route.call_count == 3 and not locations.called
    for n, call in enumerate(route.calls, start=1):
        request = call.request
        assert request.headers["Ocp-Apim-Subscription-Key"] == "k3y"
        assert request.headers["User-Agent"].startswith("care-capacity-gateway/")
        assert dict(request.url.params) == {
            "startTimestamp": "2026-11-21T00:00:00Z",
            "endTimestamp": "2026-11-22T00:00:00Z",
            "page": str(n),
            "perPage": "2",
        }


@respx.mock
async def test_provider_changes_go_through_the_retry_policy(client: CqcClient) -> None:
    route = respx.get(f"{BASE}/changes/provider").mock(
        side_effect=[
            httpx.Response(503, text="<html/>"),
            httpx.Response(200, json={"statusCode": 429, "message": "Try again in 2 seconds."}),
            httpx.Response(200, json={"total": 1, "page": 1, "totalPages": 1, "changes": ["1-7"]}),
        ]
    )
    assert await client.changed_provider_ids("a", "b") == ["1-7"]
    assert route.call_count == 3 and client.requests == 3
    assert sleeps[-1] >= 2  # the soft 429's wait is honoured


@respx.mock
async def test_404_on_a_changed_id_is_recorded_not_fatal(client: CqcClient) -> None:
    respx.get(f"{BASE}/changes/location").mock(
        return_value=httpx.Response(
            200, json={"total": 2, "page": 1, "totalPages": 1, "changes": ["1-1", "1-2"]}
        )
    )
    respx.get(f"{BASE}/locations/1-1").mock(return_value=httpx.Response(200, json=record("1-1")))
    respx.get(f"{BASE}/locations/1-2").mock(return_value=httpx.Response(404, json={"statusCode": 404}))
    batches: list[RegistryBatch] = []

    async def keep(batch: RegistryBatch) -> None:
        batches.append(batch)

    await CqcSource(client).incremental_sync("a", "b", keep)
    assert [r["cqc_location_id"] for r in batches[0].rows] == ["1-1"]
    assert batches[0].rows[0]["postcode"] == "NW8 9AA"
    assert batches[0].not_found == ["1-2"]


@respx.mock
async def test_a_location_that_keeps_failing_is_skipped_with_its_error(client: CqcClient) -> None:
    respx.get(f"{BASE}/changes/location").mock(
        return_value=httpx.Response(
            200, json={"total": 3, "page": 1, "totalPages": 1, "changes": ["1-1", "1-2", "1-3"]}
        )
    )
    respx.get(f"{BASE}/locations/1-1").mock(return_value=httpx.Response(200, json=record("1-1")))
    bad = respx.get(f"{BASE}/locations/1-2").mock(
        return_value=httpx.Response(400, json={"statusCode": 400, "message": "Invalid location id"})
    )
    broken = respx.get(f"{BASE}/locations/1-3").mock(return_value=httpx.Response(503, text="<html/>"))
    batches: list[RegistryBatch] = []

    async def keep(batch: RegistryBatch) -> None:
        batches.append(batch)

    assert await CqcSource(client).incremental_sync("a", "b", keep) == 3
    [batch] = batches
    assert [r["cqc_location_id"] for r in batch.rows] == ["1-1"]
    assert sorted(i for i, _ in batch.failed) == ["1-2", "1-3"]
    reasons = dict(batch.failed)
    assert reasons["1-2"].endswith("/locations/1-2: HTTP 400")
    assert reasons["1-3"].endswith("/locations/1-3: HTTP 503")
    assert bad.call_count == 1 and broken.call_count == 4  # a 400 is not retried, a 503 is


@respx.mock
async def test_ids_queued_for_retry_are_fetched_with_the_window(client: CqcClient) -> None:
    respx.get(f"{BASE}/changes/location").mock(
        return_value=httpx.Response(200, json={"total": 1, "page": 1, "totalPages": 1, "changes": ["1-1"]})
    )
    details = respx.get(url__regex=rf"{BASE}/locations/1-\d+").mock(
        side_effect=lambda request: httpx.Response(200, json=record(request.url.path.rsplit("/", 1)[1]))
    )
    rows: list[str] = []

    async def keep(batch: RegistryBatch) -> None:
        rows.extend(r["cqc_location_id"] for r in batch.rows)

    await CqcSource(client).incremental_sync("a", "b", keep, retry_ids=["1-7", "1-1"])
    assert sorted(rows) == ["1-1", "1-7"] and details.call_count == 2  # 1-1 once


@respx.mock
async def test_many_failing_locations_fail_the_run(client: CqcClient) -> None:
    ids = [f"1-{n}" for n in range(1, 13)]
    respx.get(f"{BASE}/changes/location").mock(
        return_value=httpx.Response(200, json={"total": 12, "page": 1, "totalPages": 1, "changes": ids})
    )
    respx.get(url__regex=rf"{BASE}/locations/1-\d+").mock(return_value=httpx.Response(502, text="<html/>"))

    async def keep(batch: RegistryBatch) -> None:
        raise AssertionError("nothing is stored when the API itself fails")

    with pytest.raises(TransientUpstreamError):
        await CqcSource(client).incremental_sync("a", "b", keep)


@respx.mock
async def test_refused_access_on_a_detail_call_fails_the_run(client: CqcClient) -> None:
    respx.get(f"{BASE}/changes/location").mock(
        return_value=httpx.Response(200, json={"total": 1, "page": 1, "totalPages": 1, "changes": ["1-1"]})
    )
    respx.get(f"{BASE}/locations/1-1").mock(
        return_value=httpx.Response(401, json={"statusCode": 401, "message": "Access denied"})
    )
    with pytest.raises(UpstreamConfigurationError):
        await CqcSource(client).incremental_sync("a", "b", _ignore)


@respx.mock
async def test_a_failing_listing_fails_the_full_sync(client: CqcClient) -> None:
    listing = respx.get(f"{BASE}/locations").mock(return_value=httpx.Response(503, text="<html/>"))
    with pytest.raises(TransientUpstreamError):
        await CqcSource(client).full_sync(set(), _ignore)
    assert listing.call_count == 4


async def _ignore(batch: RegistryBatch) -> None:
    return None


@respx.mock
async def test_a_limit_below_sixty_a_minute_is_honoured() -> None:
    route = respx.get(f"{BASE}/locations/1-1").mock(return_value=httpx.Response(200, json=record("1-1")))
    slow = CqcClient(httpx.AsyncClient(), BASE, "k3y", requests_per_minute=45)  # one call every 1.33 s
    started = time.monotonic()
    for _ in range(2):
        await slow.get_location("1-1")
    assert time.monotonic() - started >= 1.25
    assert route.call_count == 2 and slow.requests == 2


@respx.mock
async def test_hard_and_soft_429_are_retried(client: CqcClient) -> None:
    route = respx.get(f"{BASE}/locations/1-1").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "3"}, json={"statusCode": 429}),
            httpx.Response(
                200, json={"statusCode": 429, "message": "Rate limit is exceeded. Try again in 5 seconds."}
            ),
            httpx.Response(200, json=record("1-1")),
        ]
    )
    assert (await client.get_location("1-1") or {})["name"] == "Home 1-1"
    assert route.call_count == 3 and sleeps == [3.0, 5.0]


THROTTLED = {
    "hard": lambda: httpx.Response(429, headers={"Retry-After": "1"}, json={"statusCode": 429}),
    "soft": lambda: httpx.Response(
        200, json={"statusCode": 429, "message": "Rate limit is exceeded. Try again in 1 seconds."}
    ),
}


@pytest.mark.parametrize("kind", sorted(THROTTLED))
@respx.mock
async def test_a_wait_the_api_asks_for_holds_every_call_of_the_client(kind: str) -> None:
    ids = [f"1-{n}" for n in range(1, 31)]
    respx.get(f"{BASE}/locations").mock(return_value=list_page(ids, 1, 1))
    sent: list[tuple[str, float]] = []  # each detail call as the API receives it, in order
    told: list[tuple[int, float]] = []  # which call the API answered "wait a second", when

    def detail(request: httpx.Request) -> httpx.Response:
        location_id = request.url.path.rsplit("/", 1)[1]
        sent.append((location_id, time.monotonic()))
        if location_id == "1-3" and not told:
            told.append((len(sent) - 1, time.monotonic()))
            return THROTTLED[kind]()
        return httpx.Response(200, json=record(location_id))

    respx.get(url__regex=rf"{BASE}/locations/1-\d+").mock(side_effect=detail)
    retry = RetryPolicy(max_attempts=3)  # real sleeps, on the real clock
    real_time = CqcClient(httpx.AsyncClient(), BASE, "k3y", retry, requests_per_minute=60_000)
    stored: list[str] = []

    async def keep(batch: RegistryBatch) -> None:
        stored.extend(r["cqc_location_id"] for r in batch.rows)

    assert await CqcSource(real_time, concurrency=6).full_sync(set(), keep) == len(ids)
    assert sorted(stored) == sorted(ids) and len(sent) == len(ids) + 1  # 1-3 twice, nothing else
    [(told_at, when)] = told
    after = sent[told_at + 1 :]
    # The other workers were busy when the API asked to wait: every call sent after it,
    # theirs and the retry of 1-3 alike, waited the second (10 ms allowed for clock
    # granularity: a call not held would be sent within microseconds).
    assert len(after) == len(ids) - told_at and "1-3" in {i for i, _ in after}
    assert min(at for _, at in after) >= when + 1.0 - 0.01


@respx.mock
async def test_a_body_that_cannot_be_decoded_is_retried(client: CqcClient) -> None:
    broken = httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(b"cut short"))
    route = respx.get(f"{BASE}/locations").mock(side_effect=[broken, list_page(["1-1"], 1, 1)])
    assert [ids async for ids in client.list_care_home_ids(page_size=1)] == [["1-1"]]
    assert route.call_count == 2


@respx.mock
async def test_give_up_after_bounded_retries(client: CqcClient) -> None:
    route = respx.get(f"{BASE}/locations/1-1").mock(return_value=httpx.Response(503, text="<html/>"))
    with pytest.raises(TransientUpstreamError):
        await client.get_location("1-1")
    assert route.call_count == 4


@respx.mock
async def test_bad_key_is_a_configuration_error(client: CqcClient) -> None:
    respx.get(f"{BASE}/locations/1-1").mock(
        return_value=httpx.Response(
            401, json={"statusCode": 401, "message": "Access denied due to invalid subscription key."}
        )
    )
    with pytest.raises(UpstreamConfigurationError):
        await client.get_location("1-1")


@respx.mock
async def test_interrupted_full_sync_resumes_without_starting_again(client: CqcClient) -> None:
    ids = [f"1-{n}" for n in range(1, 451)]
    respx.get(f"{BASE}/locations").mock(return_value=list_page(ids, 1, 1))
    # A dozen failing locations, more than a run tolerates: the API itself is failing.
    fail_at = {f"1-{n}" for n in range(300, 312)}

    def detail(request: httpx.Request) -> httpx.Response:
        location_id = request.url.path.rsplit("/", 1)[1]
        if location_id in fail_at:
            return httpx.Response(500, text="<html>boom</html>")
        return httpx.Response(200, json=record(location_id))

    details = respx.get(url__regex=rf"{BASE}/locations/1-\d+").mock(side_effect=detail)
    stored: list[str] = []

    async def keep(batch: RegistryBatch) -> None:
        stored.extend(r["cqc_location_id"] for r in batch.rows)

    with pytest.raises(TransientUpstreamError):
        await CqcSource(client).full_sync(set(), keep)
    kept = len(stored)
    assert 0 < kept < len(ids) and kept % 200 == 0  # whole batches were stored before the failure
    first_calls = details.call_count
    fail_at.clear()
    await CqcSource(client).full_sync(set(stored), keep)
    assert sorted(stored) == sorted(ids)
    assert details.call_count - first_calls == len(ids) - kept  # only the rest was fetched again


def provider(provider_id: str, **over: Any) -> dict[str, Any]:
    return {
        "providerId": provider_id,
        "name": f"Provider {provider_id} Ltd",
        "ownershipType": "Organisation",
        "companiesHouseNumber": "01234567",
        "locationIds": ["1-1", "1-2"],
        "contacts": [{"personGivenName": "Sarah", "personFamilyName": "Smith"}],
        **over,
    }


@respx.mock
async def test_provider_details_are_fetched_and_one_that_fails_is_skipped(client: CqcClient) -> None:
    found = respx.get(f"{BASE}/providers/1-101").mock(
        return_value=httpx.Response(200, json=provider("1-101"))
    )
    respx.get(f"{BASE}/providers/1-102").mock(return_value=httpx.Response(404, json={"statusCode": 404}))
    broken = respx.get(f"{BASE}/providers/1-103").mock(return_value=httpx.Response(503, text="<html/>"))
    respx.get(f"{BASE}/providers/1-104").mock(
        return_value=httpx.Response(200, json=provider("1-104", name=" "))
    )
    soft = respx.get(f"{BASE}/providers/1-105").mock(
        side_effect=[
            httpx.Response(
                200, json={"statusCode": 429, "message": "Rate limit is exceeded. Try again in 1 seconds."}
            ),
            httpx.Response(200, json=provider("1-105")),
        ]
    )
    batches: list[RegistryBatch] = []

    async def keep(batch: RegistryBatch) -> None:
        batches.append(batch)

    ids = ["1-101", "1-102", "1-103", "1-104", "1-105", "1-101"]
    assert await CqcSource(client).fetch_providers(ids, keep) == 5  # each once
    [batch] = batches
    assert sorted(r["cqc_provider_id"] for r in batch.rows) == ["1-101", "1-105"]
    row = next(r for r in batch.rows if r["cqc_provider_id"] == "1-101")
    assert row["name"] == "Provider 1-101 Ltd" and row["companies_house_number"] == "01234567"
    assert row["ownership_type"] == "Organisation" and row["location_ids"] == ["1-1", "1-2"]
    assert batch.not_found == ["1-102"]
    assert [i for i, _ in batch.failed] == ["1-103"] and "HTTP 503" in batch.failed[0][1]
    assert batch.rejected == [("1-104", "name: missing")]
    assert broken.call_count == 4 and soft.call_count == 2 and found.call_count == 1
    request = found.calls[0].request
    assert request.headers["Ocp-Apim-Subscription-Key"] == "k3y"
    assert request.headers["User-Agent"].startswith("care-capacity-gateway/")


@respx.mock
async def test_refused_access_on_a_provider_call_fails_the_run(client: CqcClient) -> None:
    respx.get(f"{BASE}/providers/1-101").mock(
        return_value=httpx.Response(403, text="<html><body>403 Forbidden</body></html>")
    )
    with pytest.raises(UpstreamConfigurationError):
        await CqcSource(client).fetch_providers(["1-101"], _ignore)


@respx.mock
async def test_provider_calls_keep_to_the_rate_limit() -> None:
    route = respx.get(url__regex=rf"{BASE}/providers/1-\d+").mock(
        side_effect=lambda request: httpx.Response(200, json=provider(request.url.path.rsplit("/", 1)[1]))
    )
    slow = CqcClient(httpx.AsyncClient(), BASE, "k3y", requests_per_minute=120)  # one call every 0.5 s
    started = time.monotonic()
    await CqcSource(slow, concurrency=4).fetch_providers(["1-1", "1-2", "1-3", "1-4"], _ignore)
    # A second's worth (2) at once, then one every half second.
    assert route.call_count == 4 and time.monotonic() - started >= 0.9
