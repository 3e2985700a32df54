"""The composition root: settings -> models (local or remote) -> index -> pipeline -> engine.

The CLI, evaluation, the server and the web page take their objects from here and wire nothing by hand:

- `open_runtime` for one-shot commands (`patentrank search`, `index`, `eval`): model calls go straight
  to the models;
- `serve_runtime` for the server: the models sit behind one `Engine` (batchers, score cache), and the
  pipeline's model calls and the index's ingest embeddings go through it, so searches, the HTTP APIs and
  the web page share one queue, one tokenizer thread and one cache.

A model or index that cannot be loaded leaves its stage out; every answer and `/health` say why.

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     runtime = open_runtime(Settings(reranker_model="none", embedder_model="none"), folder)
    ...     stages = runtime.stages()
    ...     runtime.close()
    >>> stages["search"], stages["rerank"]
    (None, 'no reranker is configured (PATENTRANK_RERANKER_MODEL=none)')
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from patentrank.config import Settings
from patentrank.engine import Engine, StageUnavailable
from patentrank.index.base import SearchIndex
from patentrank.index.location import index_location, open_patent_index
from patentrank.models.factory import ROLES, load_models
from patentrank.search import SearchPipeline

Report = Callable[[str], None]


@dataclass
class Runtime:
    """What one process runs: its settings, the models that loaded (and why the others did not), the
    index, its search pipeline and, in the server, the engine the model calls go through."""

    settings: Settings
    reranker: Any | None = None
    embedder: Any | None = None
    index: SearchIndex | None = None
    pipeline: SearchPipeline | None = None
    engine: Engine | None = None
    errors: dict[str, str] = field(default_factory=dict)
    disabled: set[str] = field(default_factory=set)

    @classmethod
    def serving(cls, engine: Engine, index: SearchIndex | None = None) -> Runtime:
        """A server's runtime around `engine` (its models loaded already) and `index` (None: no search):
        the pipeline's model calls go through the engine's batchers and cache."""
        runtime = cls(
            engine.settings, engine.reranker, engine.embedder, engine=engine, errors=engine.load_errors
        )
        if index is not None:
            runtime.index = index
            runtime.pipeline = engine_pipeline(engine, index)
        return runtime

    def stages(self) -> dict[str, str | None]:
        """Each stage -> None when it can run, else why not: the one place that decides it."""
        stages: dict[str, str | None] = {
            "rerank": None if self.reranker is not None else self._why("reranker"),
            "embed": None if self.embedder is not None else self._why("embedder"),
        }
        if self.pipeline is None:
            stages["search"] = self.errors.get("pipeline", "no search index is loaded")
            stages["dense"] = stages["search"]
        else:
            stages["search"] = None
            stages["dense"] = self.pipeline.missing_stages().get("dense")
        return stages

    def _why(self, role: str) -> str:
        return self.errors.get(role, f"no {role} is loaded")

    def require_pipeline(self) -> SearchPipeline:
        """The search pipeline, or StageUnavailable (503) saying why there is none and how to fix it."""
        if self.pipeline is None:
            raise StageUnavailable(
                "search",
                f"the search stage is unavailable: {self.stages()['search']}. Fix: build an index "
                "(`patentrank index ...`) and start the server with --index DIR (or PATENTRANK_INDEX_DIR)",
            )
        return self.pipeline

    def health(self) -> dict[str, Any]:
        """Liveness plus which models and stages are ready, with load errors (GET /health)."""
        from patentrank.health import runtime_health

        return runtime_health(self)

    def close(self) -> None:
        """Release the engine's threads and connections, then the index (after the engine's `stop`)."""
        if self.engine is not None:
            self.engine.close()
        else:
            for model in (self.reranker, self.embedder):
                closer = getattr(model, "close", None)
                if callable(closer):
                    closer()
        if self.index is not None:
            self.index.close()


def load_some_models(
    settings: Settings, roles: Sequence[str], report: Report | None = None
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """Load only the models named in `roles`; (models, load errors, roles switched off by settings)."""
    off = {f"{r}_model": "none" for r in ROLES if r not in roles}
    off.update({f"{r}_url": None for r in ROLES if r not in roles})
    models, errors, disabled = load_models(settings.model_copy(update=off), report)
    return models, {r: e for r, e in errors.items() if r in roles}, [r for r in disabled if r in roles]


def open_index(
    location: str | Path,
    embedder: Any | None,
    settings: Settings,
    report: Report,
    embed_documents: Callable[[list[str]], np.ndarray] | None = None,
) -> tuple[SearchIndex, str | None]:
    """Open (or create) the index at `location` (a folder or a Milvus URI) with `embedder`; an index
    built with another embedder (or a vector store that cannot be opened) still serves lexical search:
    returns (index, why dense is off)."""
    try:
        index = open_patent_index(
            location, settings=settings, embedder=embedder, embed_documents=embed_documents
        )
        return index, None
    except Exception as exc:
        if embedder is None:
            raise
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        report(f"warning: dense search disabled for {location}: {reason}")
        return open_patent_index(location, settings=settings), reason


def build_pipeline(
    index: SearchIndex,
    *,
    embed_query: Callable[[str, str | None], Any] | None,
    rerank: Callable[..., list[float]] | None,
    errors: dict[str, str],
    settings: Settings,
) -> SearchPipeline:
    """A pipeline whose missing stages explain themselves with the models' load errors; `settings`
    gives its instruction, rerank candidates and passage cap."""
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
        default_instruction=settings.instruction,
        rerank_candidates=settings.rerank_candidates,
        rerank_passage_tokens=settings.rerank_passage_tokens,
        lexical_max_df=settings.lexical_max_df,
    )


def open_runtime(
    settings: Settings,
    index_dir: str | Path | None = None,
    *,
    roles: Sequence[str] = ROLES,
    report: Report | None = None,
    degrade: bool = True,
) -> Runtime:
    """Open (or create) the index at `index_dir` with the configured models (only those in `roles`),
    calling them directly: for one-shot commands. A model that fails to load leaves its stage out;
    so does an index that refuses the embedder, unless `degrade` is False (writers: `patentrank
    index` must not add passages without the vectors it was asked for), when that error is raised."""
    models, errors, disabled = load_some_models(settings, roles, report)
    embedder, reranker = models.get("embedder"), models.get("reranker")
    location = index_location(index_dir or settings.index_dir)
    if degrade:
        index, dense_off = open_index(location, embedder, settings, report or _stderr)
        if dense_off:
            errors["dense"] = dense_off
    else:
        index = open_patent_index(location, settings=settings, embedder=embedder)

    def rerank(
        query: str, docs: list[str], instruction: str | None, max_tokens_per_doc: int | None = None
    ) -> list[float]:
        return reranker.compute(query, docs, instruction, max_tokens_per_doc).scores

    pipeline = build_pipeline(
        index,
        embed_query=(lambda q, i: embedder.embed_queries([q], instruction=i)[0]) if embedder else None,
        rerank=rerank if reranker is not None else None,
        errors=errors,
        settings=settings,
    )
    return Runtime(settings, reranker, embedder, index, pipeline, None, errors, set(disabled))


def serve_runtime(
    settings: Settings,
    *,
    report: Report | None = None,
    dynamic_batching: bool | None = None,
    with_index: bool = True,
) -> Runtime:
    """The server's runtime: the configured models behind one engine, and (unless `with_index` is
    False: the model APIs only) the index at `settings.index_dir` (`serve_engine`). Start the engine
    inside the event loop (`create_app` does)."""
    models, errors, disabled = load_models(settings, report or _stderr)
    engine = Engine(
        reranker=models.get("reranker"),
        embedder=models.get("embedder"),
        settings=settings,
        load_errors=errors,
        dynamic_batching=dynamic_batching,
    )
    runtime = serve_engine(engine, report=report) if with_index else Runtime.serving(engine)
    runtime.disabled = set(disabled)
    return runtime


def serve_engine(engine: Engine, *, report: Report | None = None) -> Runtime:
    """A server's runtime around `engine` and the index at its `settings.index_dir`, whose passages
    are embedded through the engine. An index that cannot be opened is reported in one line and search
    stays off (503 naming the problem); the rest of the server runs."""
    say = report or _stderr
    settings, errors = engine.settings, engine.load_errors
    embed_documents = engine_document_embedder(engine) if engine.embedder is not None else None
    try:
        index, dense_off = open_index(settings.index_dir, engine.embedder, settings, say, embed_documents)
    except Exception as exc:  # any failure to open leaves the rest of the server running
        errors["pipeline"] = f"the index at {settings.index_dir} could not be opened: {_one_line(exc)}"
        say(f"warning: search not available: {errors['pipeline']}")
        return Runtime.serving(engine)
    if dense_off:  # the embedder loaded, but this index refuses it: say why in searches and /health
        errors["dense"] = dense_off
    return Runtime.serving(engine, index)


def engine_pipeline(engine: Engine, index: SearchIndex) -> SearchPipeline:
    """A pipeline over `index` whose model calls go through the engine's batchers and score cache.

    Call the returned pipeline from worker threads (the engine's event loop must be running)."""

    def embed_query(query: str, instruction: str | None) -> np.ndarray:
        return engine.embed_sync([query], input_type="query", instruction=instruction).vectors[0]

    def rerank(
        query: str, docs: list[str], instruction: str | None, max_tokens_per_doc: int | None = None
    ) -> list[float]:
        return engine.rerank_sync(
            query, docs, instruction=instruction, max_tokens_per_doc=max_tokens_per_doc
        ).scores

    return build_pipeline(
        index,
        embed_query=embed_query if engine.embedder is not None else None,
        rerank=rerank if engine.reranker is not None else None,
        errors=engine.load_errors,
        settings=engine.settings,
    )


def engine_document_embedder(engine: Engine) -> Callable[[list[str]], np.ndarray]:
    """Passage embeddings for the index through the engine's batcher once the server runs (one queue,
    metered, shared with searches); before that (opening the index finishes its journal), directly.

    Passages go in slices of `max_batch_size`, so that a large ingest never waits on one request's
    timeout (PATENTRANK_REQUEST_TIMEOUT_S) and interleaves with searches."""

    def embed_documents(texts: list[str]) -> np.ndarray:
        embedder = engine.require_embedder()
        if not engine.running:
            return np.asarray(embedder.embed_documents(texts), dtype=np.float32)
        step = max(1, engine.settings.max_batch_size)
        parts = [
            engine.embed_sync(texts[i : i + step], input_type="document").vectors
            for i in range(0, len(texts), step)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, int(embedder.dim)), dtype=np.float32)

    return embed_documents


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
