"""Benchmarks: ``gateway bench NAME``. Each prints a readable table and, as its very last
line, one JSON object with its figures, the floor it measured in the same run, and the
ratio of the two."""

from __future__ import annotations

import asyncio
import json
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(stderr=False)


def _ingest() -> dict[str, Any]:
    from gateway.bench.ingest import bench_ingest

    return bench_ingest()


def _london() -> dict[str, Any]:
    from gateway.bench.london import bench_london

    return bench_london()


def _cqc() -> dict[str, Any]:
    from gateway.bench.cqc import bench_cqc

    return bench_cqc()


def _search() -> dict[str, Any]:
    from gateway.bench.search import bench_search

    return bench_search()


def _fhir() -> dict[str, Any]:
    from gateway.bench.fhir import bench_fhir

    return bench_fhir()


BENCHMARKS: dict[str, Callable[[], dict[str, Any]]] = {
    "search": _search,
    "ingest": _ingest,
    "london": _london,
    "cqc": _cqc,
    "fhir": _fhir,
}


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """Yields a function returning the seconds elapsed since the block began."""
    start = time.perf_counter()
    yield lambda: time.perf_counter() - start


def run_async(coroutine: Any) -> Any:
    """Run a coroutine on uvloop, the event loop the gateway runs on under uvicorn."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_result(title: str, rows: list[tuple[str, str]], figures: dict[str, Any]) -> None:
    """The readable table, then the JSON line (always the last line printed)."""
    table = Table("measure", "value", title=title)
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)
    print(json.dumps(figures), flush=True)


def run_benchmark(name: str) -> dict[str, Any]:
    if name not in BENCHMARKS:
        raise SystemExit(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]()
