"""The app factory: engine, shared HTTP client and scheduler are made and closed by the
lifespan, so several stateless gateway processes can run side by side."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.orm import Session, sessionmaker

from gateway.api import problems
from gateway.api.deps import Reader
from gateway.api.guards import RefuseNul
from gateway.api.head import HeadAsGet
from gateway.api.headers import SecurityHeaders
from gateway.api.routes import fhir, fhir_export, fhir_transaction, native, reconciliation, search, sources
from gateway.auth import PrincipalCache
from gateway.fhir import export
from gateway.ingest.submissions import SCHEMA_NAME
from gateway.metrics import HttpMetrics, exposition
from gateway.schemas import load_schema
from gateway.search.index import index_for
from gateway.settings import Settings, get_settings
from gateway.store.db import check_schema, create_engine, session_factory
from gateway.sync.scheduler import SourceScheduler

log = logging.getLogger(__name__)
EXPORTS_SETTLE_S = 10.0  # how long a stopping process lets bulk exports being counted finish


def warm_index(factory: sessionmaker[Session]) -> None:
    """Build this process's search index (a failure is logged; the first search retries)."""
    started = time.perf_counter()
    try:
        with factory() as session:
            index_for(session).current(session)
    except Exception as error:  # noqa: BLE001 - logged by type only, never its text
        log.warning("search index not built at start: %s", type(error).__name__)
    else:
        log.info("search index built in %.1f s", time.perf_counter() - started)


def create_app(settings: Settings | None = None) -> FastAPI:
    """A gateway application for ``settings`` (the environment's by default)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url, pool_size=settings.database_pool_size)
        app.state.engine = engine
        app.state.session_factory = session_factory(engine)
        app.state.http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0))
        scheduler = SourceScheduler(app.state.session_factory, app.state.http, settings)
        app.state.scheduler = scheduler
        log.info(
            "gateway process starting on %s (scheduler %s)",
            engine.dialect.name,
            "on" if settings.scheduler_enabled else "off",
        )
        if settings.scheduler_enabled:
            scheduler.start()
        # The search index is built in the background, so the first search does not wait.
        warming = threading.Thread(target=warm_index, args=(app.state.session_factory,), daemon=True)
        warming.start()
        app.state.index_warming = warming
        try:
            yield
        finally:
            warming.join(timeout=30)
            await scheduler.stop()  # syncs under way close their runs before the client
            await app.state.http.aclose()
            await asyncio.to_thread(export.settle, EXPORTS_SETTLE_S)
            engine.dispose()

    app = FastAPI(
        title="National Care Capacity Gateway",
        version="0.1.0",
        description="One national view of care-home bed capacity in England.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.principals = PrincipalCache(settings.auth_cache_s)
    problems.install(app)
    app.add_middleware(HeadAsGet)  # innermost: the others see the HEAD as it came
    app.add_middleware(RefuseNul)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(HttpMetrics)  # outermost: it times the whole answer
    app.include_router(native.router)
    app.include_router(sources.router)
    app.include_router(reconciliation.router)
    app.include_router(search.router)
    app.include_router(fhir_export.router)  # before fhir: /fhir/{resource_type} would take $export
    app.include_router(fhir_transaction.router)
    app.include_router(fhir.router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        """Liveness: the process answers (whatever its database does)."""
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False, response_model=None)
    def readyz(request: Request) -> dict[str, str] | JSONResponse:
        """Readiness, for a load balancer in front of several processes: the database
        answers and holds a schema this code serves; else 503 saying why."""
        schema = check_schema(request.app.state.engine)  # a database down raises: 503
        if not schema.ready:
            return problems.unavailable(request, schema.detail or "")
        return {"status": "ready", **({"schema": schema.detail} if schema.detail else {})}

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request, _: Reader) -> Response:
        """Prometheus metrics (see gateway/metrics.py), for a token with the read scope."""
        body = exposition(request.app.state.session_factory, request.app.state.settings)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            submission = load_schema(SCHEMA_NAME)
            schema.setdefault("components", {}).setdefault("schemas", {})["TrackerSubmission"] = {
                "description": submission["description"],
                "externalDocs": {"url": "/schemas/tracker-submission.schema.json"},
                "type": "object",
            }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
