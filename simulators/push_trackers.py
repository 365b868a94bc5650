"""Pushing regional trackers: send each region's batches to the gateway's push API over
real HTTP, as the regional trackers do, with their own tokens and idempotency keys."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass(frozen=True)
class PushResult:
    file: str
    status_code: int
    summary: dict[str, int]


def push_file(client: httpx.Client, base_url: str, token: str, path: Path) -> PushResult:
    """Push one batch file, gzip-compressed as a tracker sending megabytes would; the
    idempotency key is the body's digest, so a retry is a no-op."""
    body = path.read_bytes()
    response = client.post(
        f"{base_url.rstrip('/')}/api/v1/submissions",
        content=gzip.compress(body, compresslevel=6),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "Idempotency-Key": hashlib.sha256(body).hexdigest(),
        },
    )
    summary = response.json().get("summary", {}) if response.status_code == 200 else {}
    return PushResult(path.name, response.status_code, summary)


def push_region(base_url: str, token: str, files: Iterable[Path], timeout: float = 300.0) -> list[PushResult]:
    """Push a region's batch files in order."""
    with httpx.Client(timeout=timeout) as client:
        return [push_file(client, base_url, token, path) for path in files]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Push tracker batch files to a gateway")
    parser.add_argument("--gateway", default="http://127.0.0.1:8000")
    parser.add_argument("--token", required=True)
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    failed = 0
    for result in push_region(args.gateway, args.token, args.files):
        print(f"{result.file}: HTTP {result.status_code} {result.summary}")
        failed += result.status_code != 200
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
