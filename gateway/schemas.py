"""Validation against the JSON Schemas in ``schemas/`` (every format the gateway accepts).

jsonschema (the reference implementation) is the authority: it explains every problem of
a record with a JSON pointer. It costs about 0.7 ms a record, which would dominate a
national push, so each schema is also compiled once by jsonschema-rs (a Rust validator of
the same 2020-12 dialect, about 4 us a record) into a fast gate: records that pass the gate
are valid; the rare ones that fail it are handed to jsonschema for the full list of
problems. ``tests/test_schemas.py`` checks the two agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"
_MAX_MESSAGE = 600
_MAX_VALUE = 60  # characters of a value quoted in a message
NOT_BLANK = "\\S"  # the schemas' pattern of a text that must not be blank


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem in a document: where (a JSON pointer) and why."""

    pointer: str
    message: str


def load_schema(name: str) -> dict[str, Any]:
    """A schema of ``schemas/`` by file name, e.g. 'tracker-submission.schema.json'."""
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / name).read_text())
    return schema


def _pointer(prefix: str, error: ValidationError) -> str:
    return prefix + "".join(f"/{part}" for part in error.absolute_path)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _value(instance: Any) -> str:
    """A short stand-in for a value a message quotes."""
    if isinstance(instance, list):
        return f"an array of {_count(len(instance), 'item')}"
    if isinstance(instance, dict):
        return f"an object of {_count(len(instance), 'member')}"
    if isinstance(instance, str):
        return f"{instance[: _MAX_VALUE // 2]!r}... ({len(instance)} characters)"
    return repr(instance)[:_MAX_VALUE] + "..."


def _message(error: ValidationError) -> str:
    # jsonschema quotes the offending value first, then says why. A long value is
    # replaced by a short stand-in so the why is never cut off (and little of the data,
    # health and care data, is logged and returned).
    message = error.message
    if error.validator == "pattern" and error.validator_value == NOT_BLANK:
        return "must not be blank"
    quoted = repr(error.instance)
    if len(quoted) > _MAX_VALUE and message.startswith(quoted):
        message = _value(error.instance) + message[len(quoted) :]
    if error.validator in ("maxItems", "maxLength"):
        unit = "items" if error.validator == "maxItems" else "characters"
        message += f" (at most {error.validator_value} {unit})"
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."


class SchemaValidator:
    """Validate documents against one schema: fast gate, full explanation on failure."""

    def __init__(self, schema: dict[str, Any]) -> None:
        Draft202012Validator.check_schema(schema)
        self._reference = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        self._gate = jsonschema_rs.validator_for(schema, validate_formats=True)

    def problems(self, document: Any, prefix: str = "") -> list[Problem]:
        """Every problem of ``document`` (empty when valid); pointers start with ``prefix``."""
        if self._gate.is_valid(document):
            return []
        errors = sorted(
            self._reference.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path]
        )
        return [Problem(_pointer(prefix, e), _message(e)) for e in errors]

    def reference_problems(self, document: Any) -> list[Problem]:
        """Problems found by the reference implementation alone (for agreement tests)."""
        return [Problem(_pointer("", e), _message(e)) for e in self._reference.iter_errors(document)]

    def gate_accepts(self, document: Any) -> bool:
        return bool(self._gate.is_valid(document))


@cache
def validator(name: str, definition: str | None = None) -> SchemaValidator:
    """The validator of schema ``name``, or of its ``$defs`` entry ``definition``."""
    schema = load_schema(name)
    if definition is not None:
        schema = {
            "$schema": schema["$schema"],
            "$defs": schema["$defs"],
            "$ref": f"#/$defs/{definition}",
        }
    return SchemaValidator(schema)
