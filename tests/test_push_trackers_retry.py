"""The pushing trackers' simulator retries as the README says trackers do: a 503
(Retry-After), a 409 "still being processed" and a time-out are tried again with the same
Idempotency-Key, and a file that never gets through does not stop the region's others."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable
from pathlib import Path

import httpx

from simulators.push_trackers import main, push_file, push_region

OK = {"summary": {"accepted": 1, "unchanged": 0, "stale": 0, "rejected": 0}, "records": []}


def files(tmp_path: Path, count: int) -> list[Path]:
    out = []
    for n in range(count):
        path = tmp_path / f"r-{n}.json"
        path.write_bytes(b'{"locations": [{"n": %d}]}' % n)
        out.append(path)
    return out


def stub(
    answers: list[Callable[[httpx.Request], httpx.Response]],
) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers[min(len(seen), len(answers)) - 1](request)

    return httpx.MockTransport(handle), seen


def status(code: int, **headers: str) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(code, json={"title": "not now"}, headers=headers)


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=OK)


def timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


def test_a_503_then_a_200_is_retried_with_the_same_key_after_retry_after(tmp_path: Path) -> None:
    transport, seen = stub([status(503, **{"Retry-After": "5"}), ok])
    (path,) = files(tmp_path, 1)
    waits: list[float] = []
    with httpx.Client(transport=transport) as client:
        result = push_file(client, "http://gw", "tok", path, max_wait_s=2.0, sleep=waits.append)
    assert (result.status_code, result.summary, result.tries) == (200, OK["summary"], 2)
    assert waits == [2.0]  # Retry-After: 5, capped at the simulator's 2 s
    key = hashlib.sha256(path.read_bytes()).hexdigest()
    assert [r.headers["Idempotency-Key"] for r in seen] == [key, key]
    assert all(gzip.decompress(r.content) == path.read_bytes() for r in seen)


def test_a_409_still_being_processed_then_a_200_is_asked_again(tmp_path: Path) -> None:
    transport, seen = stub([status(409), status(429, **{"Retry-After": "0"}), ok])
    results = push_region("http://gw", "tok", files(tmp_path, 1), transport=transport, max_wait_s=0)
    assert [(r.status_code, r.tries) for r in results] == [(200, 3)]
    assert len({r.headers["Idempotency-Key"] for r in seen}) == 1


def test_a_push_that_always_times_out_is_reported_and_the_region_goes_on(tmp_path: Path) -> None:
    calls = 0

    def first_file_times_out(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if gzip.decompress(request.content).endswith(b"0}]}"):  # r-0.json: never answered
            return timeout(request)
        return ok(request)

    transport = httpx.MockTransport(first_file_times_out)
    results = push_region("http://gw", "tok", files(tmp_path, 2), transport=transport, tries=3, max_wait_s=0)
    assert [(r.file, r.status_code, r.tries) for r in results] == [("r-0.json", 0, 3), ("r-1.json", 200, 1)]
    assert results[0].error is not None and "ReadTimeout" in results[0].error
    assert calls == 4


def test_a_final_refusal_is_not_retried(tmp_path: Path) -> None:
    transport, seen = stub([status(403)])
    results = push_region("http://gw", "tok", files(tmp_path, 1), transport=transport, max_wait_s=0)
    assert [(r.status_code, r.tries) for r in results] == [(403, 1)]
    assert len(seen) == 1


def test_a_503_every_time_ends_after_the_bounded_tries(tmp_path: Path) -> None:
    transport, seen = stub([status(503, **{"Retry-After": "5"})])
    results = push_region("http://gw", "tok", files(tmp_path, 1), transport=transport, max_wait_s=0)
    assert [(r.status_code, r.tries) for r in results] == [(503, 5)]
    assert len(seen) == 5


def test_the_command_reports_a_file_that_got_no_answer(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import simulators.push_trackers as push_trackers

    real = push_trackers.push_region

    def never_answered(*args, **kwargs):  # type: ignore[no-untyped-def]
        return real(*args, **kwargs, transport=httpx.MockTransport(timeout), tries=2, max_wait_s=0)

    monkeypatch.setattr(push_trackers, "push_region", never_answered)
    (path,) = files(tmp_path, 1)
    assert main(["--gateway", "http://gw", "--token", "tok", str(path)]) == 1
    assert "r-0.json: no answer (ReadTimeout" in capsys.readouterr().out
