"""The London client at the transport (respx): tokens, paging, retries, cursor expiry."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import respx

from adapters.common.http import (
    RetryPolicy,
    TransientUpstreamError,
    UpstreamConfigurationError,
    parse_retry_after,
)
from adapters.london_tracker.client import LondonTrackerClient
from adapters.london_tracker.source import LondonTrackerSource
from tests.adapters.london_tracker.homes import home

BASE = "https://london.example"
sleeps: list[float] = []


async def no_sleep(seconds: float) -> None:
    sleeps.append(seconds)


def token_answer(token: str) -> httpx.Response:
    return httpx.Response(200, json={"access_token": token, "token_type": "Bearer", "expires_in": 3600})


def page(
    homes: list[dict[str, Any]], next_cursor: str | None, as_of: str = "2026-11-22T08:00:03Z"
) -> httpx.Response:
    return httpx.Response(200, json={"homes": homes, "next_cursor": next_cursor, "as_of": as_of})


@pytest.fixture
def client() -> LondonTrackerClient:
    sleeps.clear()
    return LondonTrackerClient(
        httpx.AsyncClient(),
        BASE,
        "gw",
        "s3cret",
        RetryPolicy(max_attempts=4, base_delay_s=0.5, sleep=no_sleep),
        page_size=2,
    )


async def collect(client: LondonTrackerClient, since: str | None = None) -> list[Any]:
    return [p async for p in client.list_homes(since)]


@respx.mock
async def test_pages_to_the_end_with_cursor_and_bearer(client: LondonTrackerClient) -> None:
    token = respx.post(f"{BASE}/oauth/token").mock(return_value=token_answer("t1"))
    homes = respx.get(f"{BASE}/api/v2/homes").mock(
        side_effect=[
            page([home(home_ref="LDN-000001"), home(home_ref="LDN-000002")], "c2"),
            page([home(home_ref="LDN-000003")], None),
        ]
    )
    pages = await collect(client)
    assert [[h["home_ref"] for h in p.homes] for p in pages] == [["LDN-000001", "LDN-000002"], ["LDN-000003"]]
    assert token.call_count == 1
    form = dict(httpx.QueryParams(token.calls[0].request.content.decode()))
    assert form == {
        "grant_type": "client_credentials",
        "client_id": "gw",
        "client_secret": "s3cret",
        "scope": "beds.read",
    }
    first, second = (call.request for call in homes.calls)
    assert first.headers["Authorization"] == "Bearer t1"
    assert dict(first.url.params) == {"page_size": "2"}
    assert dict(second.url.params) == {"page_size": "2", "cursor": "c2"}


@respx.mock
async def test_updated_since_is_the_previous_as_of_verbatim(client: LondonTrackerClient) -> None:
    respx.post(f"{BASE}/oauth/token").mock(return_value=token_answer("t1"))
    homes = respx.get(f"{BASE}/api/v2/homes").mock(return_value=page([], None, "2026-11-22T09:00:00Z"))
    (first,) = await collect(client)
    await collect(client, first.as_of)
    assert "updated_since" not in homes.calls[0].request.url.params
    assert homes.calls[1].request.url.params["updated_since"] == "2026-11-22T09:00:00Z"


@respx.mock
async def test_token_renewed_once_on_401(client: LondonTrackerClient) -> None:
    token = respx.post(f"{BASE}/oauth/token").mock(side_effect=[token_answer("old"), token_answer("new")])
    homes = respx.get(f"{BASE}/api/v2/homes").mock(
        side_effect=[httpx.Response(401, json={"error": "invalid_token"}), page([home()], None)]
    )
    pages = await collect(client)
    assert len(pages) == 1 and token.call_count == 2
    assert [c.request.headers["Authorization"] for c in homes.calls] == ["Bearer old", "Bearer new"]


@respx.mock
async def test_a_renewed_token_refused_again_is_a_configuration_error(client: LondonTrackerClient) -> None:
    token = respx.post(f"{BASE}/oauth/token").mock(side_effect=[token_answer("a"), token_answer("b")])
    respx.get(f"{BASE}/api/v2/homes").mock(return_value=httpx.Response(401, json={"error": "invalid_token"}))
    with pytest.raises(UpstreamConfigurationError):
        await collect(client)
    assert token.call_count == 2


@respx.mock
async def test_wrong_credentials_are_a_configuration_error(client: LondonTrackerClient) -> None:
    respx.post(f"{BASE}/oauth/token").mock(return_value=httpx.Response(401, json={"error": "invalid_client"}))
    with pytest.raises(UpstreamConfigurationError):
        await LondonTrackerSource(client).check()


@respx.mock
async def test_retry_then_success_honours_retry_after(client: LondonTrackerClient) -> None:
    respx.post(f"{BASE}/oauth/token").mock(return_value=token_answer("t"))
    homes = respx.get(f"{BASE}/api/v2/homes").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "7"}, json={"error": "rate_limited"}),
            httpx.Response(503, text="<html>busy</html>"),
            httpx.Response(200, text="<html>not json</html>"),
            page([home()], None),
        ]
    )
    pages = await collect(client)
    assert len(pages) == 1 and homes.call_count == 4
    assert sleeps == [7.0, 1.0, 2.0]


@respx.mock
async def test_a_long_retry_after_is_waited_in_full_and_a_too_long_one_ends_the_run(
    client: LondonTrackerClient,
) -> None:
    respx.post(f"{BASE}/oauth/token").mock(return_value=token_answer("t"))
    throttled = httpx.Response(429, headers={"Retry-After": "60"}, json={"error": "rate_limited"})
    homes = respx.get(f"{BASE}/api/v2/homes").mock(side_effect=[throttled, page([home()], None)])
    assert len(await collect(client)) == 1 and homes.call_count == 2
    assert sleeps == [60.0]  # past the backoff's cap, but never sooner than asked

    sleeps.clear()
    homes.side_effect = [httpx.Response(429, headers={"Retry-After": "3600"}, json={"error": "rate_limited"})]
    with pytest.raises(TransientUpstreamError, match="asked to wait 3600 s, longer than a run waits"):
        await collect(client)
    assert homes.call_count == 3 and sleeps == []  # not asked again within the run


@respx.mock
async def test_a_retry_after_given_as_an_http_date_is_honoured(client: LondonTrackerClient) -> None:
    """Retry-After may be an HTTP date (RFC 9110): waited until then, not the backoff's
    half second (an upstream that asks to wait is never asked again sooner)."""
    respx.post(f"{BASE}/oauth/token").mock(return_value=token_answer("t"))
    until = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    throttled = httpx.Response(429, headers={"Retry-After": until}, json={"error": "rate_limited"})
    homes = respx.get(f"{BASE}/api/v2/homes").mock(side_effect=[throttled, page([home()], None)])
    assert len(await collect(client)) == 1 and homes.call_count == 2
    assert len(sleeps) == 1 and 60 < sleeps[0] <= 90


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("Sun, 22 Nov 2026 08:02:00 GMT", 120.0),
        ("Sun, 22 Nov 2026 07:59:00 GMT", 0.0),  # already past: at once
        ("soon", None),
        ("nan", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_forms(header: str | None, seconds: float | None) -> None:
    now = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    assert parse_retry_after(header, now) == seconds


@pytest.mark.parametrize(
    "broken",
    [
        {"homes": [], "next_cursor": None},  # no as_of
        {"homes": [], "next_cursor": None, "as_of": None},
        {"homes": [], "next_cursor": None, "as_of": "yesterday"},
        {"homes": [], "as_of": "2026-11-22T08:00:03Z"},  # no next_cursor: never taken as the last page
        {"homes": {}, "next_cursor": None, "as_of": "2026-11-22T08:00:03Z"},
        {"homes": [], "next_cursor": "", "as_of": "2026-11-22T08:00:03Z"},
    ],
)
@respx.mock
async def test_a_page_that_breaks_the_contract_is_asked_for_again(
    client: LondonTrackerClient, broken: dict[str, Any]
) -> None:
    respx.post(f"{BASE}/oauth/token").mock(return_value=token_answer("t"))
    homes = respx.get(f"{BASE}/api/v2/homes").mock(
        side_effect=[httpx.Response(200, json=broken), page([home()], None)]
    )
    (only,) = await collect(client)
    assert homes.call_count == 2 and only.as_of == "2026-11-22T08:00:03Z" and only.last
    homes.side_effect = None
    homes.return_value = httpx.Response(200, json=broken)
    with pytest.raises(TransientUpstreamError, match="the page breaks the contract"):
        await collect(client)


@respx.mock
async def test_time_outs_are_retried(client: LondonTrackerClient) -> None:
    respx.post(f"{BASE}/oauth/token").mock(return_value=token_answer("t"))
    homes = respx.get(f"{BASE}/api/v2/homes").mock(side_effect=[httpx.ReadTimeout("slow"), page([], None)])
    assert len(await collect(client)) == 1 and homes.call_count == 2


def broken_gzip(_request: httpx.Request | None = None) -> httpx.Response:
    """A 200 whose body is not the gzip stream its Content-Encoding says (read later)."""
    return httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(b"cut short"))


@respx.mock
async def test_a_body_that_cannot_be_decoded_is_retried(client: LondonTrackerClient) -> None:
    respx.post(f"{BASE}/oauth/token").mock(return_value=token_answer("t"))
    homes = respx.get(f"{BASE}/api/v2/homes").mock(side_effect=[broken_gzip(), page([], None)])
    assert len(await collect(client)) == 1 and homes.call_count == 2
    homes.side_effect = broken_gzip
    with pytest.raises(TransientUpstreamError, match="DecodingError calling upstream"):
        await collect(client)


@respx.mock
async def test_retry_then_give_up(client: LondonTrackerClient) -> None:
    respx.post(f"{BASE}/oauth/token").mock(return_value=token_answer("t"))
    homes = respx.get(f"{BASE}/api/v2/homes").mock(return_value=httpx.Response(502, text="<html>bad</html>"))
    with pytest.raises(TransientUpstreamError):
        await collect(client)
    assert homes.call_count == 4


@respx.mock
async def test_410_restarts_the_listing(client: LondonTrackerClient) -> None:
    respx.post(f"{BASE}/oauth/token").mock(return_value=token_answer("t"))
    homes = respx.get(f"{BASE}/api/v2/homes").mock(
        side_effect=[
            page([home(home_ref="LDN-000001")], "c2", "2026-11-22T08:00:00Z"),
            httpx.Response(410, json={"error": "cursor_expired"}),
            page([home(home_ref="LDN-000001")], "c9", "2026-11-22T08:05:00Z"),
            page([home(home_ref="LDN-000002")], None, "2026-11-22T08:05:00Z"),
        ]
    )
    pages = await collect(client, "2026-11-21T00:00:00Z")
    assert [p.restarts for p in pages] == [0, 1, 1]
    assert pages[-1].as_of == "2026-11-22T08:05:00Z"
    restart = homes.calls[2].request.url.params
    assert "cursor" not in restart and restart["updated_since"] == "2026-11-21T00:00:00Z"


@respx.mock
async def test_malformed_home_is_skipped_and_recorded(client: LondonTrackerClient) -> None:
    respx.post(f"{BASE}/oauth/token").mock(return_value=token_answer("t"))
    broken = home(home_ref="LDN-000009")
    del broken["name"]
    respx.get(f"{BASE}/api/v2/homes").mock(return_value=page([home(), broken], None))
    (mapped,) = [p async for p in LondonTrackerSource(client).pull(None)]
    assert [ref for ref, _ in mapped.updates] == ["LDN-004211"]
    assert [s.home_ref for s in mapped.skipped] == ["LDN-000009"]
    assert "'name' is a required property" in mapped.skipped[0].problems[0].message


@respx.mock
async def test_next_page_is_requested_while_the_caller_holds_the_current_one(
    client: LondonTrackerClient,
) -> None:
    respx.post(f"{BASE}/oauth/token").mock(return_value=token_answer("t"))
    homes = respx.get(f"{BASE}/api/v2/homes").mock(
        side_effect=[page([home(home_ref="LDN-000001")], "c2"), page([home(home_ref="LDN-000002")], None)]
    )
    listing = client.list_homes(None)
    first = await anext(listing)
    assert not first.last
    await asyncio.sleep(0.05)  # the caller works on page 1; the loop runs meanwhile
    assert homes.call_count == 2  # page 2 already asked for
    second = await anext(listing)
    assert second.last and [h["home_ref"] for h in second.homes] == ["LDN-000002"]
    with pytest.raises(StopAsyncIteration):
        await anext(listing)
    assert homes.call_count == 2


@respx.mock
async def test_a_listing_closed_early_drops_the_request_ahead(client: LondonTrackerClient) -> None:
    respx.post(f"{BASE}/oauth/token").mock(return_value=token_answer("t"))
    respx.get(f"{BASE}/api/v2/homes").mock(
        side_effect=[page([home()], "c2")] + [httpx.Response(502, text="<html>bad</html>")] * 4
    )
    listing = client.list_homes(None)
    (await anext(listing)).homes.clear()
    await asyncio.sleep(0.05)  # the request ahead has failed, retries and all
    await listing.aclose()  # no error escapes, nothing is left running
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert pending == []


@respx.mock
async def test_a_broken_page_is_named_by_where_it_breaks_never_by_its_values(
    client: LondonTrackerClient,
) -> None:
    """The error is logged on each try and kept with the run: it says where the page
    breaks the contract, never what the upstream put there (its data)."""
    respx.post(f"{BASE}/oauth/token").mock(return_value=token_answer("t"))
    broken = {"homes": {"error": "SECRET session"}, "next_cursor": None, "as_of": "Jane Doe 1931"}
    respx.get(f"{BASE}/api/v2/homes").mock(return_value=httpx.Response(200, json=broken))
    with pytest.raises(TransientUpstreamError) as failed:
        await collect(client)
    said = str(failed.value)
    assert "breaks the contract at /as_of, /homes" in said
    assert "SECRET" not in said and "Jane" not in said


def test_a_url_is_logged_without_its_credentials_or_secret_parameters() -> None:
    from adapters.common.http import redact_url

    said = redact_url("https://gw:s3cret@proxy.example:8443/public/v1/changes?subscription-key=k&page=2")
    assert said == "https://***@proxy.example:8443/public/v1/changes?subscription-key=%2A%2A%2A&page=2"
    assert redact_url("https://cqc.example/public/v1/locations") == "https://cqc.example/public/v1/locations"
