"""Security headers on every answer (a plain ASGI middleware: no per-request task).

``X-Content-Type-Options: nosniff`` on every answer, so a browser never takes a CSV or a
JSON body for HTML or script. ``Cache-Control: private, no-cache`` on every answer to a
request that carried credentials (an ``Authorization`` header): what a token may read is
health and care data, which no shared cache (a proxy, a CDN) may keep, and which a
client's own cache must check with the gateway before each use (so reads with an ETag
still answer 304 Not Modified to a client that kept the body). A route that sets its own
``Cache-Control`` keeps it.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

AUTHENTICATED_CACHE_CONTROL = "private, no-cache"


def secure(headers: MutableHeaders, authenticated: bool) -> None:
    """Add the security headers an answer lacks (those it sets itself stay). The middleware
    adds them to every answer but a 500: Starlette answers those outside every middleware,
    so the handler of unexpected errors adds them itself."""
    headers.setdefault("X-Content-Type-Options", "nosniff")
    if authenticated:
        headers.setdefault("Cache-Control", AUTHENTICATED_CACHE_CONTROL)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authenticated = any(name == b"authorization" for name, _ in scope["headers"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                secure(MutableHeaders(scope=message), authenticated)
            await send(message)

        await self.app(scope, receive, send_with_headers)
