"""HEAD answered as GET is, without the body (RFC 9110 §9.3.2: the same header fields, an
ETag and Content-Length among them, so a client can check a resource without fetching
it). FastAPI's routes answer GET only, and a HEAD had been a 405.

A GET that acts (a bulk export's kick-off starts a job) refuses a HEAD: the request is
marked (``is_head``) for it to tell."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_HEAD = "gateway.head"


def is_head(request: Request) -> bool:
    """Whether ``request``, seen as a GET, came as a HEAD."""
    return bool(request.scope.get(_HEAD))


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # a streamed body's chunks are dropped, its end is sent
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET", _HEAD: True}, receive, without_body)
