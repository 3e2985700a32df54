"""Opening an index with whatever models load, for the CLI, the server and evaluation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from patentrank.config import Settings
from patentrank.engine_models import load_models
from patentrank.index.patent_index import PatentIndex
from patentrank.search import SearchPipeline


@dataclass
class Runtime:
    """An opened index, its pipeline, and the models that loaded (with the reasons others did not)."""

    index: PatentIndex
    pipeline: SearchPipeline
    reranker: Any | None = None
    embedder: Any | None = None
    errors: dict[str, str] = field(default_factory=dict)


def load_some_models(
    settings: Settings, roles: Sequence[str], report: Callable[[str], None] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Load only the models named in `roles` ("reranker", "embedder"); failures are reported once."""
    off = {f"{r}_model": "none" for r in ("reranker", "embedder") if r not in roles}
    off.update({f"{r}_url": None for r in ("reranker", "embedder") if r not in roles})
    models, errors, _ = load_models(settings.model_copy(update=off), report)
    return models, {r: e for r, e in errors.items() if r in roles}


def open_index(
    path: str | Path, embedder: Any | None, vector_store: str, report: Callable[[str], None]
) -> tuple[PatentIndex, str | None]:
    """Open (or create) an index with `embedder`; an index built with another embedder (or a vector
    store that cannot be opened) still serves lexical search: returns (index, why dense is off)."""
    try:
        return PatentIndex(path, embedder=embedder, vector_store=vector_store), None
    except Exception as exc:
        if embedder is None:
            raise
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        report(f"warning: dense search disabled for {path}: {reason}")
        return PatentIndex(path, embedder=None, vector_store=vector_store), reason


def build_pipeline(
    index: PatentIndex,
    *,
    embed_query: Callable[[str, str | None], Any] | None,
    rerank: Callable[..., list[float]] | None,
    errors: dict[str, str],
    instruction: str | None,
    settings: Settings | None = None,
) -> SearchPipeline:
    """A pipeline whose missing stages explain themselves with the models' load errors; `settings`
    gives its rerank candidates and passage cap (PATENTRANK_RERANK_CANDIDATES / _PASSAGE_TOKENS)."""
    s = settings or Settings()
    embed_query = embed_query if index.vectors is not None else None
    unavailable = {}
    if embed_query is None:
        # "dense": the index refused a working embedder (open_index says why); else why none loaded.
        unavailable["dense"] = errors.get("dense") or errors.get("embedder", "no embedder is configured")
    if rerank is None:
        unavailable["rerank"] = errors.get("reranker", "no reranker is configured")
    return SearchPipeline(
        index,
        embed_query=embed_query,
        rerank=rerank,
        unavailable=unavailable,
        default_instruction=instruction,
        rerank_candidates=s.rerank_candidates,
        rerank_passage_tokens=s.rerank_passage_tokens,
    )


def open_runtime(
    settings: Settings,
    index_dir: str | Path | None = None,
    *,
    roles: Sequence[str] = ("reranker", "embedder"),
    report: Callable[[str], None] | None = None,
) -> Runtime:
    """Open (or create) the index at `index_dir` with the configured models, degrading gracefully:
    a model that fails to load leaves its stage out, and the pipeline says why in every answer."""
    models, errors = load_some_models(settings, roles, report)
    embedder, reranker = models.get("embedder"), models.get("reranker")
    path = Path(index_dir or settings.index_dir)
    index, dense_off = open_index(path, embedder, settings.vector_store, report or print)
    if dense_off:
        errors["dense"] = dense_off
    pipeline = build_pipeline(
        index,
        embed_query=(lambda q, i: embedder.embed_queries([q], instruction=i)[0]) if embedder else None,
        rerank=(
            (
                lambda q, docs, i, max_tokens_per_doc=None: (
                    reranker.compute(q, docs, i, max_tokens_per_doc).scores
                )
            )
            if reranker
            else None
        ),
        errors=errors,
        instruction=settings.instruction,
        settings=settings,
    )
    return Runtime(index, pipeline, reranker, embedder, errors)


def engine_pipeline(engine: Any, index: PatentIndex) -> SearchPipeline:
    """A pipeline over `index` whose model calls go through the engine's batchers and score cache,
    so searches, the HTTP rerank API and the web page share one queue and one cache.

    Call the returned pipeline from worker threads (the engine's event loop must be running)."""
    return build_pipeline(
        index,
        embed_query=(
            (lambda q, i: engine.embed_sync([q], input_type="query", instruction=i).vectors[0])
            if engine.embedder is not None
            else None
        ),
        rerank=(
            (
                lambda q, docs, i, max_tokens_per_doc=None: (
                    engine.rerank_sync(q, docs, instruction=i, max_tokens_per_doc=max_tokens_per_doc).scores
                )
            )
            if engine.reranker is not None
            else None
        ),
        errors=engine.load_errors,
        instruction=engine.settings.instruction,
        settings=engine.settings,
    )
