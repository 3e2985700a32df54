"""The status line: which models and stages are ready, and for each missing one what it means and the fix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from patentrank.engine import StageUnavailable
from patentrank.health import models_status
from patentrank.runtime import Runtime
from patentrank.ui import render

CONSEQUENCES = {
    "reranker": "Search results keep their first-stage (BM25/dense) order and the Rerank tab cannot score.",
    "embedder": "Dense and hybrid search fall back to lexical (BM25) search; new patents are indexed "
    "for BM25 only and wait for vectors.",
    "pipeline": "The Search and Index tabs need an index.",
}


def index_stats(runtime: Runtime) -> dict[str, Any] | None:
    """The search index's `stats()`, or None when the runtime has no index."""
    return runtime.index.stats() if runtime.index is not None else None


def _missing(require: Callable[[], Any]) -> str | None:
    try:
        require()
    except StageUnavailable as exc:
        return str(exc)
    return None


def _on_cpu(model: Any) -> bool:
    device = getattr(model, "device", None)
    return getattr(device, "type", device) == "cpu"


def status_line(runtime: Runtime) -> str:
    """HTML badges for the models, the index and each search stage, then problems and fixes."""
    engine = runtime.engine
    assert engine is not None
    models = models_status(runtime.reranker, runtime.embedder, runtime.errors)
    items: list[tuple[str, bool, str]] = []
    problems: list[str] = []
    for role, require in (("reranker", engine.require_reranker), ("embedder", engine.require_embedder)):
        info = models[role]
        if info["ready"]:
            items.append((role, True, str(info["model"])))
            continue
        switched_off = role in runtime.disabled
        items.append((role, False, "off" if switched_off else "not loaded"))
        problems.append(f"{_missing(require)}. {CONSEQUENCES[role]}")
    pipeline = runtime.pipeline
    if pipeline is None:
        items.append(("index", False, "none"))
        problems.append(f"{_missing(runtime.require_pipeline)}. {CONSEQUENCES['pipeline']}")
    else:
        stats = pipeline.index.stats()
        items.append(("index", True, f"{stats['patents']} patents, {stats['passages']} passages"))
        missing = pipeline.missing_stages()
        for stage in ("lexical", "dense", "rerank"):
            reason = missing.get(stage)
            items.append((stage, reason is None, ""))
            if reason is not None and models["reranker" if stage == "rerank" else "embedder"]["ready"]:
                problems.append(f"search stage {stage} is off: {reason}")
        if stats.get("waiting_for_vectors"):
            problems.append(
                f"{stats['waiting_for_vectors']} passages wait for vectors: they are found by BM25 only "
                "until the server runs with the index's embedder."
            )
    if engine.reranker is not None and _on_cpu(engine.reranker):
        problems.append(
            "The reranker runs on CPU: reranking tens of candidates can take a minute with a 0.6B model. "
            "Turn rerank off for quick searches, or lower PATENTRANK_RERANK_CANDIDATES."
        )
    return render.status_html(items, problems)
