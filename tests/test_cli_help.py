"""``gateway bench --help`` names every benchmark the command runs."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gateway import cli
from gateway.bench import BENCHMARKS


def test_bench_help_names_every_benchmark(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(cli.app, ["bench", "--help"])
    assert result.exit_code == 0, result.output
    for name in BENCHMARKS:
        assert name in result.output
