"""The ASGI application: routers, one error shape, and the OpenAPI schema."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from finetune_lab import __version__
from finetune_lab.schema import (
    ErrorBody,
    HeartbeatEvent,
    PredictionIn,
    PredictionsBatch,
    PredictionsEvent,
    RoundCompleteEvent,
)
from finetune_lab.server import serving, upstream_dialect
from finetune_lab.server.auth import Authenticator
from finetune_lab.server.credential_gate import CredentialGate
from finetune_lab.server.dashboard import install_dashboard
from finetune_lab.server.db import Database, upgrade
from finetune_lab.server.docs import install_docs
from finetune_lab.server.errors import install_error_handlers
from finetune_lab.server.middleware import APIResponseHeaders, BodySizeLimit
from finetune_lab.server.notify import PostgresListener, StreamNotifier
from finetune_lab.server.page_headers import PageHeaders
from finetune_lab.server.rate_limit import RateLimiter
from finetune_lab.server.routes import ROUTERS
from finetune_lab.server.services import search
from finetune_lab.server.services.scoring_pool import ScoringPool
from finetune_lab.server.services.search_indexer import IndexerSettings, SearchIndexer
from finetune_lab.server.settings import Settings

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "Malformed body",
        401: "Missing or invalid credentials",
        403: "Missing scope",
        404: "Unknown resource",
        409: "Conflict",
        413: "Too large",
        422: "Invalid parameters",
        429: "Rate limited",
    }.items()
}


# SSE `data` shapes: no route returns them as JSON, so the schema lists them explicitly.
STREAM_EVENT_MODELS = (PredictionsEvent, RoundCompleteEvent, HeartbeatEvent)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    pool: ScoringPool = app.state.scoring_pool
    pool.start()
    indexer: SearchIndexer = app.state.search_indexer
    await indexer.start()
    try:
        async with serving.running(app):
            yield
    finally:
        await indexer.stop()
        pool.close()
    listener: PostgresListener | None = app.state.stream_listener
    if listener is not None:
        await listener.close()


def create_app(settings: Settings | None = None, *, migrate: bool = True) -> FastAPI:
    settings = settings or Settings()
    db = Database(settings.database_url, pool_size=settings.pool_size)
    if migrate:
        upgrade(db.engine)
    search.configure(
        db.engine, enabled=settings.search_index, scan_max_rows=settings.search_scan_max_rows
    )
    app = FastAPI(
        title="FineTune Lab",
        version=__version__,
        summary="Predictions captured during fine-tuning, scored against ground truth.",
        responses=ERROR_RESPONSES,
        docs_url=None,  # served from the package by install_docs: no CDN needed
        redoc_url=None,
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.authenticator = Authenticator(db)
    app.state.rate_limiter = RateLimiter(settings.rate_limit, settings.rate_limit_storage)
    app.state.scoring_pool = ScoringPool(settings.scoring_pool())
    app.state.stream_notifier = StreamNotifier()
    app.state.stream_listener = (
        PostgresListener(db.url, app.state.stream_notifier) if db.is_postgres else None
    )
    install_error_handlers(app)
    install_docs(app)
    install_dashboard(app)
    # Outermost last: CORS, API headers, body size (declared), credentials and rate limit.
    app.add_middleware(
        CredentialGate,
        authenticator=app.state.authenticator,
        limiter=app.state.rate_limiter,
    )
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)
    app.add_middleware(APIResponseHeaders)
    # Inside CORS (which merges its `Vary: Origin` into ours), outside the credential gate.
    app.add_middleware(PageHeaders, headers=upstream_dialect.vary_headers)
    if settings.cors_origins:  # off unless configured: the dashboard is same-origin
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            # W3C trace context in (predict joins the caller's trace) and out (its span).
            allow_headers=[
                "Authorization",
                "X-API-Key",
                "Content-Type",
                "Last-Event-ID",
                "traceparent",
                "tracestate",
            ],
            expose_headers=["traceresponse"],
            max_age=600,
        )
    serving.install(app, db, settings)
    app.state.search_indexer = SearchIndexer(
        db,
        IndexerSettings(
            enabled=settings.search_index and settings.search_indexer,
            chunk_rows=max(1, settings.search_index_chunk_rows),
            poll_s=max(0.01, settings.search_index_poll_s),
        ),
        app.state.ingest_activity,
    )
    for router in ROUTERS:
        app.include_router(router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """Add what FastAPI cannot see: the ingest body (that route reads raw bytes for speed) and
    the credentials every /api route takes."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        _, extra = models_json_schema(
            [
                (PredictionsBatch, "validation"),
                (PredictionIn, "validation"),
                *((model, "serialization") for model in STREAM_EVENT_MODELS),
                *serving.schema_models(),
            ],
            ref_template="#/components/schemas/{model}",
        )
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {}).update(extra.get("$defs", {}))
        components["securitySchemes"] = {
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "API key, session token or job token",
            },
        }
        schema["security"] = [{"apiKey": []}, {"bearer": []}]
        app.openapi_schema = schema
    return app.openapi_schema
