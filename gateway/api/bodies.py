"""Request bodies of the push endpoints, read within the size limit.

A body is never held beyond the limit: a declared ``Content-Length`` over it is refused
before reading, and a body streamed without one is refused as soon as it passes it.
Trackers may compress a push (``Content-Encoding: gzip`` or ``deflate``); the limit then
holds for the body both as sent and once decompressed, so a small compressed body cannot
unpack into an unbounded one. The decompressed body is what the gateway keeps and judges.
"""

from __future__ import annotations

import zlib

from starlette.requests import Request

from gateway.errors import InvalidBody, PayloadTooLarge, UnsupportedMediaType

# zlib's window bits: a gzip member, or a zlib stream (HTTP's "deflate").
_DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _encoding(request: Request) -> str | None:
    """The body's one content coding, or None; a coding the gateway cannot undo is a 415."""
    header = request.headers.get("content-encoding", "")
    codings = [c.strip().lower() for c in header.split(",") if c.strip().lower() not in ("", "identity")]
    if not codings:
        return None
    if len(codings) > 1 or codings[0] not in _DECODERS:
        raise UnsupportedMediaType(
            f"Content-Encoding {header!r} is not taken; send the body as it is, or with gzip or deflate"
        )
    return codings[0]


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, decompressed, if it is at most ``limit`` bytes both as sent and
    as decompressed; else a 413 (415 for an unknown coding, 400 for a broken one)."""
    encoding = _encoding(request)
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit}")
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            raise PayloadTooLarge(f"the body is more than {limit} bytes; the limit is {limit}")
    if encoding is None:
        return bytes(received)
    return _decompress(bytes(received), encoding, limit)


def _decompress(data: bytes, encoding: str, limit: int) -> bytes:
    decoder = zlib.decompressobj(_DECODERS[encoding])
    try:
        body = decoder.decompress(data, limit + 1)
    except zlib.error as exc:
        raise InvalidBody(f"the body is not valid {encoding} ({exc})") from None
    if len(body) > limit or decoder.unconsumed_tail:
        raise PayloadTooLarge(f"the body is more than {limit} bytes once decompressed; the limit is {limit}")
    if not decoder.eof:
        raise InvalidBody(f"the {encoding} body ends before its stream does (truncated)")
    if decoder.unused_data:
        raise InvalidBody(f"the {encoding} body has data after the end of its stream")
    return body
