"""Pushing regional trackers: send each region's batches to the gateway's push API over
real HTTP, as the regional trackers do, with their own tokens and idempotency keys."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx

RETRIED = frozenset({409, 429, 503})  # still being processed, throttled, database unavailable


@dataclass(frozen=True)
class PushResult:
    file: str
    status_code: int  # the last answer's status; 0 when the last try got no answer
    summary: dict[str, int]
    tries: int = 1
    error: str | None = None  # the transport error of the last try, when it got no answer


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


def push_file(
    client: httpx.Client,
    base_url: str,
    token: str,
    path: Path,
    *,
    tries: int = 5,
    max_wait_s: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> PushResult:
    """Push one batch file, gzip-compressed as a tracker sending megabytes would; the
    idempotency key is the body's digest, so a retry is a no-op.

    As the trackers do, a 503 (database unavailable), a 409 (still being processed), a 429
    and a time-out or broken connection are tried again with the same key, up to ``tries``
    times in all, waiting as ``Retry-After`` asks (at most ``max_wait_s``, this being a
    simulator) or else 0.5 s, 1 s, 2 s...; the last outcome is the file's result."""
    body = path.read_bytes()
    content = gzip.compress(body, compresslevel=6)
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
        "Idempotency-Key": hashlib.sha256(body).hexdigest(),
    }
    url = f"{base_url.rstrip('/')}/api/v1/submissions"
    for attempt in range(1, tries + 1):
        wait: float | None = None
        try:
            response = client.post(url, content=content, headers=headers)
        except httpx.TransportError as exc:
            if attempt == tries:
                return PushResult(path.name, 0, {}, attempt, f"{type(exc).__name__}: {exc}")
        else:
            if response.status_code not in RETRIED or attempt == tries:
                summary = response.json().get("summary", {}) if response.status_code == 200 else {}
                return PushResult(path.name, response.status_code, summary, attempt)
            wait = _retry_after(response)
        sleep(min(max_wait_s, 0.5 * 2 ** (attempt - 1) if wait is None else wait))
    raise AssertionError("unreachable")  # pragma: no cover


def push_region(
    base_url: str,
    token: str,
    files: Iterable[Path],
    timeout: float = 300.0,
    *,
    tries: int = 5,
    max_wait_s: float = 5.0,
    transport: httpx.BaseTransport | None = None,
) -> list[PushResult]:
    """Push a region's batch files in order; a file that fails after its retries is
    reported in its result and the next file is pushed."""
    with httpx.Client(timeout=timeout, transport=transport) as client:
        return [
            push_file(client, base_url, token, path, tries=tries, max_wait_s=max_wait_s) for path in files
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Push tracker batch files to a gateway")
    parser.add_argument("--gateway", default="http://127.0.0.1:8000")
    parser.add_argument("--token", required=True)
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    failed = 0
    for result in push_region(args.gateway, args.token, args.files):
        outcome = f"HTTP {result.status_code}" if result.error is None else f"no answer ({result.error})"
        print(f"{result.file}: {outcome} {result.summary}")
        failed += result.status_code != 200
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
