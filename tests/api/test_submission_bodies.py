"""Push bodies: the size limit, held before reading, and compressed pushes (gzip, deflate)."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col

from gateway.store.tables import Submission
from tests.conftest import TokenMaker, bearer
from tests.factories import batch, location

URL = "/api/v1/submissions"


def kept(factory: sessionmaker[Session]) -> list[bytes | None]:
    with factory() as session:
        return list(session.scalars(sa.select(col(Submission.body))))


@pytest.fixture
def limit(client: TestClient) -> int:
    """A small body limit for these tests (the default is 32 MiB)."""
    client.app.state.settings.max_submission_bytes = 4_000  # type: ignore[attr-defined]
    return 4_000


def post(client: TestClient, token: str, body: bytes | Iterator[bytes], **headers: str):  # type: ignore[no-untyped-def]
    return client.post(
        URL, content=body, headers={**bearer(token), "Content-Type": "application/json", **headers}
    )


@pytest.mark.parametrize(
    ("coding", "compress"),
    [("gzip", gzip.compress), ("x-gzip", gzip.compress), ("deflate", zlib.compress), ("GZIP", gzip.compress)],
)
def test_a_compressed_push_is_taken_and_kept_decompressed(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session], coding: str, compress
) -> None:  # type: ignore[no-untyped-def]
    body = orjson.dumps(batch(location("1-100000001"), location("1-100000002")))
    response = post(client, make_token(), compress(body), **{"Content-Encoding": coding})
    assert response.status_code == 200, response.text
    assert response.json()["summary"]["accepted"] == 2
    assert kept(factory) == [body]


def test_a_compressed_retry_with_the_same_key_is_a_replay(client: TestClient, make_token: TokenMaker) -> None:
    token = make_token()
    body = orjson.dumps(batch(location("1-100000001")))
    headers = {"Content-Encoding": "gzip", "Idempotency-Key": "push-1"}
    first = post(client, token, gzip.compress(body), **headers)
    again = post(client, token, gzip.compress(body, mtime=12345), **headers)  # other gzip bytes, same body
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()


@pytest.mark.parametrize("coding", ["br", "compress", "gzip, br", "zstd"])
def test_a_coding_the_gateway_cannot_undo_is_a_415_naming_it(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session], coding: str
) -> None:
    response = post(client, make_token(), b"\x00\x01", **{"Content-Encoding": coding})
    assert response.status_code == 415
    assert response.headers["content-type"] == "application/problem+json"
    assert repr(coding) in response.json()["detail"]
    assert kept(factory) == []


def test_identity_is_no_coding(client: TestClient, make_token: TokenMaker) -> None:
    body = orjson.dumps(batch(location("1-100000001")))
    assert post(client, make_token(), body, **{"Content-Encoding": "identity"}).status_code == 200


@pytest.mark.parametrize(
    ("sent", "says"),
    [
        (b"this is not gzip at all", "is not valid gzip"),
        (gzip.compress(orjson.dumps(batch(location())))[:-12], "truncated"),
        (gzip.compress(b"{}") + b"trailing", "data after the end"),
    ],
    ids=["not-gzip", "truncated", "trailing-data"],
)
def test_a_broken_compressed_body_is_a_400_that_says_why(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session], sent: bytes, says: str
) -> None:
    response = post(client, make_token(), sent, **{"Content-Encoding": "gzip"})
    assert response.status_code == 400
    assert says in response.json()["detail"]
    assert kept(factory) == []


def test_a_declared_length_over_the_limit_is_a_413(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session], limit: int
) -> None:
    response = post(client, make_token(), b" " * (limit + 1))
    assert response.status_code == 413
    assert response.json()["detail"] == f"the body is {limit + 1} bytes; the limit is {limit}"
    assert kept(factory) == []


def test_a_body_streamed_past_the_limit_is_a_413(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session], limit: int
) -> None:
    chunks = iter([b" " * 1_000] * 5)  # no Content-Length: sent chunked
    response = post(client, make_token(), chunks)
    assert response.status_code == 413
    assert f"more than {limit} bytes" in response.json()["detail"]
    assert kept(factory) == []


def test_a_body_at_the_limit_is_taken(client: TestClient, make_token: TokenMaker, limit: int) -> None:
    body = orjson.dumps(batch(location("1-100000001")))
    padded = body + b" " * (limit - len(body))
    assert post(client, make_token(), padded).status_code == 200
    assert post(client, make_token(), iter([padded[:100], padded[100:]])).status_code == 200


def test_a_small_body_that_decompresses_past_the_limit_is_a_413(
    client: TestClient, make_token: TokenMaker, factory: sessionmaker[Session], limit: int
) -> None:
    bomb = gzip.compress(b" " * 1_000_000)  # about 1 KB sent, 1 MB unpacked
    assert len(bomb) < limit
    response = post(client, make_token(), bomb, **{"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert "once decompressed" in response.json()["detail"]
    assert kept(factory) == []


def test_a_content_length_that_is_not_ascii_digits_is_not_read_as_one() -> None:
    """'²' (b'\\xb2', a latin-1 header byte) is a digit to Python but not to int(): it had
    raised a 500 before the body was read; the body is read and judged as sent."""
    import asyncio

    from starlette.requests import Request

    from gateway.api.bodies import read_body

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b'{"a": 1}', "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-length", b"\xb2")]}
    assert asyncio.run(read_body(Request(scope, receive), limit=100)) == b'{"a": 1}'
