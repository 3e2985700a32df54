"""GET /health's answer for a `Runtime`: which models and stages are ready, the index's parts, the queue."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from patentrank.models.names import served_name

if TYPE_CHECKING:
    from patentrank.runtime import Runtime


def runtime_health(runtime: Runtime) -> dict[str, Any]:
    """`status` is "degraded" when something that was asked for failed (a model, the index, one of its
    parts); models switched off by settings ("none") are not failures. Never raises."""
    from patentrank import __version__

    engine = runtime.engine
    stages = {stage: reason is None for stage, reason in runtime.stages().items()}
    models = models_status(runtime.reranker, runtime.embedder, runtime.errors)
    if runtime.pipeline is not None:  # a loaded embedder may still be refused by the index
        reason = runtime.stages()["dense"]
        models["embedder"]["index"] = {"ready": stages["dense"], "error": reason}
    failed = sorted(set(runtime.errors) - runtime.disabled)
    index = index_health(runtime.index)
    if index and not all(part.get("ok", True) for part in index.values() if isinstance(part, dict)):
        failed.append("index")
    answer: dict[str, Any] = {
        "status": "degraded" if failed else "ok",
        "failed": failed,
        "version": __version__,
        "uptime_s": round(time.time() - (engine.started_at if engine is not None else time.time()), 1),
        "models": models,
        "stages": stages,
        "index": index,
    }
    if engine is not None:
        answer["cache"] = engine.cache.health()
        answer["queue"] = engine.queue_status()
    return answer


def index_health(index: Any | None) -> dict[str, Any] | None:
    """The search index's parts (documents, BM25, vectors: FAISS or Milvus); never raises."""
    if index is None:
        return None
    parts: dict[str, Any] = {}
    for name in ("docstore", "lexical", "vectors"):
        part = getattr(index, name, None)
        try:
            parts[name] = part.health() if part is not None else None
        except Exception as exc:  # health must answer even when a store is broken
            parts[name] = {"ok": False, "detail": str(exc)}
    return parts


def models_status(
    reranker: Any | None, embedder: Any | None, errors: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Per role: ready, served name, local or remote, the dtype chosen and why, the load error."""
    return {
        "reranker": _model_status(reranker, errors.get("reranker")),
        "embedder": _model_status(embedder, errors.get("embedder")),
    }


def _model_status(model: Any | None, error: str | None) -> dict[str, Any]:
    backend = None if model is None else ("remote" if model.is_remote else "local")
    precision = getattr(model, "precision", None)  # in-process models: the dtype `auto` chose and why
    return {
        "ready": model is not None,
        "model": served_name(model.model_name) if model is not None else None,
        "backend": backend,
        **(precision.describe() if precision is not None else {}),
        "error": None if model is not None else error,
    }
