"""`create_app(runtime)`: the FastAPI application around the composition root's `Runtime`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from patentrank import __version__
from patentrank.config import Settings
from patentrank.engine import Engine
from patentrank.runtime import Runtime
from patentrank.server import routes_admin, routes_embed, routes_rerank, routes_tei
from patentrank.server.auth import AuthMiddleware, FailureLimiter, make_auth
from patentrank.server.errors import install_error_handlers
from patentrank.server.json_body import JsonBodyMiddleware
from patentrank.server.middleware import BodyLimitMiddleware, MetricsMiddleware
from patentrank.server.openapi import install_openapi

DESCRIPTION = """Patent search models over HTTP: Qwen3 reranking in the vLLM, Jina, Cohere (v1, v2) and
Hugging Face TEI shapes, and OpenAI-compatible embeddings. See docs/api.md for examples and limits."""


def create_app(
    runtime: Runtime | Engine, settings: Settings | None = None, routers: Sequence[APIRouter] = ()
) -> FastAPI:
    """Build the app around `runtime` (`patentrank.runtime.serve_runtime`); a bare `Engine` serves
    the model APIs only (no index). `routers` adds more endpoints (e.g. search) behind the same API key.

    The engine is started and stopped with the app (lifespan); routes reach the runtime as
    `request.app.state.runtime`, its engine as `request.app.state.engine` and the settings as
    `request.app.state.settings`.

    Example:
        >>> from fastapi.testclient import TestClient
        >>> app = create_app(Engine(settings=Settings(cache_size=0)))
        >>> with TestClient(app) as client:
        ...     client.get("/health").json()["stages"]
        {'rerank': False, 'embed': False, 'search': False, 'dense': False}
    """
    if isinstance(runtime, Engine):
        runtime = Runtime.serving(runtime)
    engine = runtime.engine
    if engine is None:
        raise ValueError("create_app needs a serving runtime (patentrank.runtime.serve_runtime)")
    settings = settings or runtime.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        try:
            yield
        finally:
            await engine.stop()

    app = FastAPI(
        title="patentrank",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.runtime = runtime
    app.state.engine = engine
    app.state.settings = settings
    install_error_handlers(app)
    # Added innermost first: metrics see every answer, the key is checked before any body is read,
    # then the size limit applies while the body streams in, then the JSON is checked.
    app.add_middleware(JsonBodyMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    limiter = FailureLimiter(settings.auth_failure_limit, settings.auth_failure_window_s)
    app.add_middleware(AuthMiddleware, api_key=settings.api_key, limiter=limiter)
    app.add_middleware(MetricsMiddleware, metrics=engine.metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
        )
    auth = make_auth(settings.api_key)
    dependencies = [Depends(auth)] if auth is not None else []
    app.include_router(routes_admin.public_router)
    app.include_router(routes_tei.public_router)
    for router in (
        routes_rerank.router,
        routes_embed.router,
        routes_tei.router,
        routes_admin.router,
        *routers,
    ):
        app.include_router(router, dependencies=dependencies)
    install_openapi(app)
    return app
