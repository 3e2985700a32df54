"""GET /health (open), /v1/models and /metrics (behind the API key when one is set)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from patentrank.engine import Engine
from patentrank.server.routes_rerank import json_response
from patentrank.server.schemas import ModelList

public_router = APIRouter(tags=["admin"])
router = APIRouter(tags=["admin"])


@public_router.get("/health", summary="Liveness and readiness of each model and stage")
async def health(request: Request) -> Response:
    """Always 200 while the process serves; `status` is "degraded" when a stage has no model, and each
    model's `error` says why it did not load. With an API key configured, callers without it get only
    `status`."""
    health = request.app.state.runtime.health()
    if not getattr(request.state, "authenticated", True):  # paths and versions only for key holders
        return json_response({"status": health["status"]})
    return json_response(health)


@router.get("/v1/models", summary="Served models (OpenAI shape)", response_model=ModelList)
async def models(request: Request) -> Response:
    engine: Engine = request.app.state.engine
    created = int(engine.started_at)
    data: list[dict[str, Any]] = []
    for kind, model, aliases in (
        ("reranker", engine.reranker, engine.reranker_aliases),
        ("embedding", engine.embedder, engine.embedder_aliases),
    ):
        if model is None:
            continue
        data.append(
            {
                "id": engine.reranker_name if kind == "reranker" else engine.embedder_name,
                "object": "model",
                "created": created,
                "owned_by": "patentrank",
                "type": kind,
                "aliases": sorted(a for a in aliases if "/" not in a and "\\" not in a),
                "backend": "remote" if model.is_remote else "local",
            }
        )
    return json_response({"object": "list", "data": data})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Requests and latency per route, time per stage, batch sizes, queue depth, cache hits."""
    engine: Engine = request.app.state.engine
    return Response(engine.metrics.render(), media_type=CONTENT_TYPE_LATEST)
