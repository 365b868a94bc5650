"""Request dependencies: the database session (which commits) and the caller's principal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from gateway.auth import Principal, PrincipalCache, Scope, authenticate
from gateway.settings import Settings

# Dependencies that do no I/O are ``async``: FastAPI runs sync ones in its thread pool,
# and a hop there per dependency per request costs more than the work itself.


async def get_factory(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.session_factory
    return factory


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(
    factory: Annotated[sessionmaker[Session], Depends(get_factory)],
) -> Iterator[Session]:
    """One transaction per request: committed when the route returns (before its answer
    is sent), else rolled back."""
    with factory() as session, session.begin():
        yield session


def _authenticate(factory: sessionmaker[Session], authorization: str | None) -> Principal:
    with factory() as session:
        return authenticate(session, authorization)


async def get_principal(
    request: Request,
    factory: Annotated[sessionmaker[Session], Depends(get_factory)],
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    """The caller, from this process's short-lived cache or else read from the database."""
    cache: PrincipalCache = request.app.state.principals
    principal = cache.get(authorization)
    if principal is None:
        principal = await run_in_threadpool(_authenticate, factory, authorization)
        cache.put(authorization or "", principal)
    return principal


def require(scope: Scope):  # type: ignore[no-untyped-def]
    """A dependency that admits only principals holding ``scope`` (or admin)."""

    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        principal.require(scope)
        return principal

    return check


# Function scope: the transaction ends (commits) when the route returns, before its answer
# is sent, so a commit the database refuses is answered as the failure it is (503), never
# as a 200 for a change rolled back. (A request-scoped dependency would end after the
# answer was sent.) Routes stream only what they read before returning.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
FactoryDep = Annotated[sessionmaker[Session], Depends(get_factory)]
Reader = Annotated[Principal, Depends(require(Scope.READ))]
Submitter = Annotated[Principal, Depends(require(Scope.SUBMIT))]
Admin = Annotated[Principal, Depends(require(Scope.ADMIN))]
