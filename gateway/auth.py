"""Bearer tokens: minted once, stored as SHA-256 digests, each with scopes and regions."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy.orm import Session

from gateway.errors import Forbidden, NotAuthenticated
from gateway.model.vocab import NhsRegion
from gateway.store import repository
from gateway.store.tables import ApiToken, utcnow

ALL_REGIONS = "*"
TOKEN_PREFIX = "ccg_"
MAX_NAME_LENGTH = 80  # the longest source name the store keeps (a push's source is its token's name)


class Scope(StrEnum):
    SUBMIT = "submit"
    READ = "read"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's id and name, what it may do and where it may write."""

    token_id: str
    name: str
    scopes: frozenset[str]
    regions: frozenset[str]
    expires_at: datetime | None = None  # when the token stops working (None: never)

    def require(self, scope: Scope) -> None:
        if scope.value not in self.scopes and Scope.ADMIN.value not in self.scopes:
            raise Forbidden(f"this token lacks the '{scope.value}' scope")

    def may_write(self, region: str) -> bool:
        return ALL_REGIONS in self.regions or region in self.regions


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_regions(values: Iterable[str]) -> list[str]:
    """Region codes from user input ('north-west', 'North West' or 'all')."""
    out: list[str] = []
    for value in values:
        if value.strip().lower() in ("all", ALL_REGIONS):
            return [ALL_REGIONS]
        out.append(NhsRegion.from_display(value).value)
    return sorted(set(out))


def create_token(
    session: Session,
    *,
    name: str,
    scopes: Iterable[str],
    regions: Iterable[str] = (),
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Mint a token (working until ``expires_at``, or until revoked when None); the plain
    token is returned once and never stored."""
    if not name.strip() or len(name) > MAX_NAME_LENGTH or "\x00" in name:
        # The name is the source of every push the token makes, stored as such.
        raise ValueError(f"a token's name is its pushes' source: 1 to {MAX_NAME_LENGTH} characters, no NUL")
    scope_values = sorted({Scope(s.strip().lower()).value for s in scopes})
    if not scope_values:
        raise ValueError("a token needs at least one scope")
    if expires_at is not None and expires_at <= utcnow():
        raise ValueError("a token's expiry must lie in the future")
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        id=str(uuid.uuid4()),
        name=name,
        token_hash=digest(plain),
        scopes=scope_values,
        regions=parse_regions(regions),
        created_at=utcnow(),
        expires_at=expires_at,
    )
    repository.add_token(session, token)
    return token, plain


def revoke_tokens(
    session: Session, *, token_id: str | None = None, name: str | None = None
) -> list[ApiToken]:
    """Revoke the token ``token_id``, or every token named ``name`` not yet revoked; the
    tokens revoked now. ValueError when there is none to revoke (so a mistyped id is never
    taken for done). Processes that trusted one stop within ``GATEWAY_AUTH_CACHE_S``."""
    if (token_id is None) == (name is None):
        raise ValueError("name a token by its id or by its name (one of them)")
    if token_id is not None:
        token = repository.token_by_id(session, token_id)
        if token is None:
            raise ValueError(f"no token has the id {token_id!r} ('gateway token list' shows them)")
        if token.revoked_at is not None:
            raise ValueError(f"the token {token_id!r} was already revoked at {token.revoked_at.isoformat()}")
        found = [token]
    else:
        found = [t for t in repository.tokens_named(session, name or "") if t.revoked_at is None]
        if not found:
            raise ValueError(f"no token named {name!r} is still in use ('gateway token list' shows them)")
    now = utcnow()
    for token in found:
        token.revoked_at = now
    session.flush()
    return found


def authenticate(session: Session, authorization: str | None) -> Principal:
    """The principal behind an ``Authorization: Bearer ...`` header, or NotAuthenticated."""
    if not authorization:
        raise NotAuthenticated("send 'Authorization: Bearer <token>'")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise NotAuthenticated("the Authorization header must be 'Bearer <token>'")
    token = repository.token_by_hash(session, digest(value.strip()))
    if token is None or token.revoked_at is not None:
        raise NotAuthenticated("unknown or revoked token")
    if token.expires_at is not None and token.expires_at <= utcnow():
        raise NotAuthenticated(
            f"this token expired at {token.expires_at.isoformat(timespec='seconds')}; ask for a new one"
        )
    return Principal(
        token.id, token.name, frozenset(token.scopes), frozenset(token.regions), token.expires_at
    )


class PrincipalCache:
    """Principals already authenticated by this process, trusted for ``ttl_s`` seconds (a
    token revoked meanwhile stops working within that time). Keyed by the token's digest;
    unknown tokens are never cached."""

    def __init__(self, ttl_s: float, max_size: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_size = max_size
        self._lock = threading.Lock()
        self._found: dict[str, tuple[float, Principal]] = {}

    def get(self, authorization: str | None) -> Principal | None:
        if self.ttl_s <= 0 or not authorization:
            return None
        hit = self._found.get(digest(authorization))
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, authorization: str, principal: Principal) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            if len(self._found) >= self.max_size:
                now = time.monotonic()
                self._found = {k: v for k, v in self._found.items() if v[0] >= now}
                if len(self._found) >= self.max_size:
                    self._found.clear()
            trusted_s = self.ttl_s
            if principal.expires_at is not None:  # never trusted past its expiry
                trusted_s = min(trusted_s, (principal.expires_at - utcnow()).total_seconds())
            self._found[digest(authorization)] = (time.monotonic() + trusted_s, principal)
