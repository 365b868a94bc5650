"""Requests refused before any route sees them.

A NUL character (U+0000, ``%00`` in a URL) in a request's path or query: PostgreSQL's text
cannot hold it, so any look-up by such a value (an id, a source, a name) failed there as a
500, where SQLite answered 404 or 200. No id, code or name the gateway serves holds one,
so it is refused as bad input, a 400 naming where it was, on either database.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.problems import bad_request_answer


class RefuseNul:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            where = _nul_in(scope)
            if where is not None:
                detail = f"the request's {where} holds a NUL character (%00), which no value may hold"
                await bad_request_answer(scope["path"], detail)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _nul_in(scope: Scope) -> str | None:
    if "\x00" in scope["path"]:
        return "path"
    query: bytes = scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query:
        return "query"
    return None
