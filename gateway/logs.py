"""How the gateway's processes log: one format for every logger of a process (the
gateway's, its adapters', the scheduler's and the HTTP server's), as text for a terminal
or as one JSON object a line for a log collector (``GATEWAY_LOG_FORMAT``).

Lines say what happened (a run's outcome, a retry, a fault's type and stack), never a
payload or a secret; the HTTP clients' own per-request lines are kept to warnings, as a
full CQC sync would otherwise log some 17,000 URLs.
"""

from __future__ import annotations

import logging
import logging.config
import time
import traceback
from typing import TYPE_CHECKING, Any

from pythonjsonlogger.core import RESERVED_ATTRS

if TYPE_CHECKING:
    from rich.console import Console

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Loggers that would say too much at INFO: a line per upstream request, per job started,
# per schema check (each /readyz reads the schema's revision).
_QUIET = ("httpx", "httpcore", "apscheduler", "multipart", "alembic")


class UTCFormatter(logging.Formatter):
    """Text lines stamped in UTC (``2026-11-23T05:07:49.004Z``), as every time the
    gateway serves is, whatever the machine's time zone."""

    def converter(self, seconds: float | None) -> time.struct_time:
        return time.gmtime(seconds)

    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"


class WithoutExceptionText(logging.Filter):
    """Let a record's exception through by its type and stack only, as
    ``gateway.errors.log_unexpected`` logs one: an exception's text may quote data (a
    driver's error carries the statement's parameters: a pushed record). The HTTP server
    logs every request the app failed on with the exception it re-raises (Starlette's
    error middleware always re-raises), after the gateway has logged it so."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            error = record.exc_info[1]
            if error is not None:
                stack = "".join(traceback.format_tb(error.__traceback__))
                record.msg = f"{record.getMessage()}: {type(error).__name__}\n{stack}"
                record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def log_config(level: str = "info", log_format: str = "text") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for a whole process: every logger through one
    handler on stderr, at ``level``; the HTTP server's loggers too (it takes this as its
    ``log_config``, in each of its worker processes)."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r}: choose from {', '.join(LOG_FORMATS)}")
    formatter: dict[str, Any] = (
        {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": True,
            # The server's coloured copy of its message is for terminals only.
            "reserved_attrs": [*RESERVED_ATTRS, "color_message"],
        }
        if log_format == "json"
        else {"()": "gateway.logs.UTCFormatter", "fmt": TEXT_FORMAT}
    )
    if level.lower() not in LOG_LEVELS:
        raise ValueError(f"log level {level!r}: choose from {', '.join(LOG_LEVELS)}")
    quiet = max(logging.getLevelName(level.upper()), logging.WARNING)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"gateway": formatter},
        "filters": {"without_exception_text": {"()": "gateway.logs.WithoutExceptionText"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "gateway",
                "stream": "ext://sys.stderr",
                "filters": ["without_exception_text"],
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            # The server's loggers go through the root's handler, in the same format.
            "uvicorn": {"handlers": [], "level": level.upper(), "propagate": True},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": [], "level": level.upper(), "propagate": True},
            **{name: {"level": quiet} for name in _QUIET},
        },
    }


def configure_logging(level: str = "info", log_format: str = "text", console: Console | None = None) -> None:
    """Log this process as ``log_config`` says (for commands that run no HTTP server).

    ``console``: in text, lines go through that rich console instead, so they print above
    a command's progress bar rather than through it. As with ``logging.basicConfig``, a
    process whose logging is already set up (a test runner, an embedding program) keeps it.
    """
    if logging.getLogger().handlers:
        return
    logging.config.dictConfig(log_config(level, log_format))
    if console is not None and log_format == "text":
        from rich.logging import RichHandler

        root = logging.getLogger()
        handler = RichHandler(console=console, show_path=False, log_time_format="[%X]")
        handler.addFilter(WithoutExceptionText())
        root.handlers = [handler]
