"""Query parameters declared once, parsed by hand, documented in OpenAPI.

For a busy read route with many optional parameters (the vacancy search has 28), FastAPI's
per-parameter validation costs more than answering the search. A route declares them here
instead: one table gives both the parsing and the OpenAPI description, and every bad
value is a 422 naming the parameter and why, as everywhere else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Depends, Request
from starlette.datastructures import QueryParams

from gateway.search.query import refuse

Kind = Literal["string", "number", "integer", "boolean"]
_TRUE = frozenset({"true", "1", "yes", "on", "t", "y"})
_FALSE = frozenset({"false", "0", "no", "off", "f", "n"})


@dataclass(frozen=True, slots=True)
class Param:
    """One query parameter: its JSON type, whether it repeats, its bounds or choices."""

    name: str
    kind: Kind = "string"
    many: bool = False
    description: str = ""
    default: Any = None
    minimum: float | None = None
    above: float | None = None  # an exclusive minimum
    maximum: float | None = None
    choices: tuple[str, ...] | None = None

    def parse(self, raw: str) -> Any:
        value: Any = raw
        if self.kind == "number":
            try:
                value = float(raw)
            except ValueError:
                raise refuse(self.name, f"{raw!r} is not a number") from None
            if not math.isfinite(value):
                raise refuse(self.name, f"{raw!r} is not a finite number")
        elif self.kind == "integer":
            try:
                value = int(raw)
            except ValueError:
                raise refuse(self.name, f"{raw!r} is not a whole number") from None
        elif self.kind == "boolean":
            if raw.lower() not in _TRUE | _FALSE:
                raise refuse(self.name, f"{raw!r} is not true or false")
            value = raw.lower() in _TRUE
        if self.choices is not None and value not in self.choices:
            raise refuse(self.name, f"unknown value {raw!r}; allowed: {', '.join(self.choices)}")
        if self.minimum is not None and value < self.minimum:
            raise refuse(self.name, f"must be at least {self.minimum:g}")
        if self.above is not None and value <= self.above:
            raise refuse(self.name, f"must be greater than {self.above:g}")
        if self.maximum is not None and value > self.maximum:
            raise refuse(self.name, f"must be at most {self.maximum:g}")
        return value

    def openapi(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": self.kind}
        if self.choices is not None:
            schema["enum"] = list(self.choices)
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.above is not None:
            schema["exclusiveMinimum"] = self.above
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        if self.default is not None:
            schema["default"] = self.default
        if self.many:
            schema = {"type": "array", "items": schema}
        out: dict[str, Any] = {"name": self.name, "in": "query", "required": False, "schema": schema}
        if self.many:
            out["explode"] = True
        if self.description:
            out["description"] = self.description
        return out


class QueryParameters:
    """A route's query parameters."""

    def __init__(self, params: Sequence[Param]) -> None:
        self.params = {p.name: p for p in params}

    def parse(self, query: QueryParams) -> dict[str, Any]:
        """Every declared parameter's value (its default where absent; a list where it
        repeats). An undeclared parameter or a bad value is a 422 naming it."""
        for name in query:
            if name not in self.params:
                raise refuse(name, "unknown parameter")
        out: dict[str, Any] = {}
        for name, param in self.params.items():
            if param.many:
                out[name] = [param.parse(raw) for raw in query.getlist(name)]
            else:
                given = query.getlist(name)
                if len(set(given)) > 1:  # which one was meant cannot be told
                    raise refuse(name, f"given {len(given)} times with different values; it takes one")
                out[name] = param.parse(given[0]) if given else param.default
        return out

    def openapi(self) -> dict[str, Any]:
        """The routes's ``openapi_extra``: its parameters."""
        return {"parameters": [p.openapi() for p in self.params.values()]}


def only_parameters(*names: str) -> Any:
    """A route dependency refusing any query parameter but ``names``: a filter a route
    does not have (the search's ``region=`` given to a report, say) must not be silently
    ignored, leaving an answer that looks filtered."""
    allowed = frozenset(names)

    def check(request: Request) -> None:
        for name in request.query_params:
            if name not in allowed:
                raise refuse(name, f"unknown parameter; allowed: {', '.join(names)}")

    return Depends(check)
