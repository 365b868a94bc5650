"""How a gateway process logs: every logger (the gateway's, its adapters', the HTTP
server's) in one format, text or JSON lines, in UTC; the HTTP clients' per-request lines
kept out; bad formats refused."""

from __future__ import annotations

import io
import logging
import logging.config
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from gateway.logs import LOG_FORMATS, log_config
from simulators.server import free_ports

RETRY_LINE = "London tracker page failed (try 1)"
TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: "
)


def _serve_until(tmp_path: Path, log_format: str, wanted: str) -> list[str]:
    """Run ``gateway serve`` whose London tracker refuses connections until a line with
    ``wanted`` is logged (or 30 s pass); its stderr lines."""
    env = {
        **os.environ,
        "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'gateway.db'}",
        "GATEWAY_LOG_FORMAT": log_format,
        "GATEWAY_LONDON_BASE_URL": f"http://127.0.0.1:{free_ports(1)[0]}",  # nobody listens there
        "GATEWAY_LONDON_CLIENT_ID": "logs",
        "GATEWAY_LONDON_CLIENT_SECRET": "never-logged-secret",
    }
    lines: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--port", str(free_ports(1)[0])],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stderr is not None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                line = process.stderr.readline()
                if not line:
                    break
                lines.append(line.rstrip("\n"))
                if wanted in line:
                    break
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert any(wanted in line for line in lines), lines
    return lines


def test_a_served_process_logs_json_lines_from_every_logger(tmp_path: Path) -> None:
    lines = _serve_until(tmp_path, "json", RETRY_LINE)
    records = [orjson.loads(line) for line in lines]  # every line is one JSON object
    for record in records:
        assert {"level", "logger", "message", "timestamp"} <= set(record)
        assert record["timestamp"].endswith("+00:00")
        assert "color_message" not in record
    loggers = {record["logger"] for record in records}
    assert {"uvicorn.error", "gateway.api.app", "adapters.london_tracker.client"} <= loggers
    assert not any(name.startswith(("httpx", "httpcore")) for name in loggers)
    retry = next(record for record in records if RETRY_LINE in record["message"])
    assert retry["level"] == "WARNING"
    assert not any("never-logged-secret" in line for line in lines)


def test_a_served_process_logs_text_lines_in_one_format(tmp_path: Path) -> None:
    lines = _serve_until(tmp_path, "text", RETRY_LINE)
    assert lines and all(TEXT_LINE.match(line) for line in lines), lines
    assert any(" INFO gateway.api.app: gateway process starting on sqlite (scheduler on)" in x for x in lines)
    assert any(" INFO gateway.sync.scheduler: scheduled: london:incremental every 300 s" in x for x in lines)
    assert any(" WARNING adapters.london_tracker.client: " + RETRY_LINE in x for x in lines)


def test_the_level_holds_for_every_logger_and_the_chatty_ones_stay_at_warnings() -> None:
    config = log_config("error", "text")
    assert config["root"]["level"] == "ERROR"
    assert config["loggers"]["uvicorn.access"]["level"] == "ERROR"
    assert config["loggers"]["httpx"]["level"] == 40  # never below the level asked for
    assert log_config("debug", "json")["loggers"]["httpx"]["level"] == 30
    # Each /readyz reads the schema's revision: no alembic line per probe.
    assert log_config("info", "text")["loggers"]["alembic"]["level"] == 30


@pytest.mark.parametrize("log_format", LOG_FORMATS)
def test_an_exception_is_logged_by_its_type_and_stack_never_its_text(log_format: str) -> None:
    # As the HTTP server logs a request the app failed on: with the exception itself, whose
    # text (a driver's error, say) may quote a pushed record.
    config = log_config("info", log_format)
    configurator = logging.config.DictConfigurator(config)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(configurator.configure_formatter(config["formatters"]["gateway"]))
    for name in config["handlers"]["stderr"]["filters"]:
        handler.addFilter(configurator.configure_filter(config["filters"][name]))
    logger = logging.getLogger("tests.logs.exception")
    logger.addHandler(handler)
    logger.propagate = False
    quoted = "[parameters: {'name': 'Sentinel Lodge'}]"  # not on the line the stack shows
    try:
        try:
            raise ValueError(quoted)
        except ValueError:
            logger.exception("Exception in ASGI application")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    text = out.getvalue()
    assert "Sentinel Lodge" not in text
    assert "Exception in ASGI application" in text
    assert "ValueError" in text
    assert "test_logs.py" in text  # the stack stays


def test_an_unknown_format_or_level_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="log format 'xml': choose from text, json"):
        log_config("info", "xml")
    with pytest.raises(ValueError, match="log level 'verbose': choose from critical, error, warning"):
        log_config("verbose", "text")


def test_a_bad_log_format_setting_stops_a_command_naming_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "token", "list"],
        env={**os.environ, "GATEWAY_LOG_FORMAT": "xml", "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path}/g.db"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "GATEWAY_LOG_FORMAT: Input should be 'text' or 'json'" in done.stderr and done.stdout == ""
