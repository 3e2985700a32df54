"""The serving engine: optional reranker / embedder / pipeline behind dynamic batching and a score cache."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Coroutine, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np

from patentrank.batching import DynamicBatcher
from patentrank.cache import CachedScore, ScoreCache, make_cache, score_key
from patentrank.config import DEFAULT_INSTRUCTION, Settings
from patentrank.engine_models import (
    UnknownModel,  # noqa: F401  (re-exported: callers import it from here)
    load_models,
    model_aliases,
    pair_cost,
    resolve_model_name,
    score_mixed,
    served_name,
)
from patentrank.errors import InputError, PatentrankError
from patentrank.metrics import Metrics

logger = logging.getLogger("patentrank.engine")
T = TypeVar("T")


class StageUnavailable(PatentrankError):
    """A stage (rerank, embed, search) has no model: the message names it and says how to fix it."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


@dataclass(slots=True)
class RerankResult:
    """Scores (P(yes)) and raw logits in input order, token usage, truncation and cache hits."""

    scores: list[float]
    logits: list[float]
    prompt_tokens: int
    truncated: list[int] = field(default_factory=list)
    cache_hits: int = 0


@dataclass(slots=True)
class EmbedResult:
    """Unit-length float32 vectors, one row per input, and their token count."""

    vectors: np.ndarray
    prompt_tokens: int


class Engine:
    """Serves the models to the HTTP layer (and to the search pipeline) without blocking the event loop.

    Each of `reranker`, `embedder` and `pipeline` may be None: that stage answers 503 with a message
    from `load_errors` saying what failed and how to fix it. Reranking goes through the score cache,
    then through a `DynamicBatcher` that packs pairs from concurrent requests into shared model
    calls on a worker thread. Call `start()` inside the event loop before use, `stop()` after.

    Example (without models every stage says why it is off; with one, the same code scores):
        >>> import asyncio
        >>> async def rerank_once(engine: Engine) -> list[float]:
        ...     await engine.start()  # inside the event loop; other threads call engine.rerank_sync
        ...     try:
        ...         return (await engine.rerank("gear", ["a gearbox", "a pump"])).scores
        ...     finally:
        ...         await engine.stop()
        >>> engine = Engine(settings=Settings(cache_size=0))
        >>> engine.health()["stages"]
        {'rerank': False, 'embed': False, 'search': False, 'dense': False}
        >>> try:
        ...     asyncio.run(rerank_once(engine))
        ... except StageUnavailable as exc:
        ...     print(str(exc)[:54])
        the rerank stage is unavailable: no reranker is loaded
        >>> engine.close()
        >>> asyncio.run(rerank_once(Engine(reranker=Reranker("Qwen/Qwen3-Reranker-0.6B"))))  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        reranker: Any | None = None,
        embedder: Any | None = None,
        pipeline: Any | None = None,
        settings: Settings | None = None,
        load_errors: dict[str, str] | None = None,
        disabled: Sequence[str] = (),
        cache: ScoreCache | None = None,
        dynamic_batching: bool | None = None,
        reranker_aliases: Sequence[str] = (),
        embedder_aliases: Sequence[str] = (),
    ) -> None:
        self.settings = settings or Settings()
        s = self.settings
        self.reranker = reranker
        self.embedder = embedder
        self.pipeline = pipeline
        self.load_errors = dict(load_errors or {})
        self.disabled = set(disabled)
        self.metrics = Metrics()
        self.cache = cache if cache is not None else make_cache(s.cache_size, s.cache_url)
        if dynamic_batching is None:
            dynamic_batching = s.dynamic_batching
        reranker_aliases = list(reranker_aliases) or list(s.reranker_aliases)
        embedder_aliases = list(embedder_aliases) or list(s.embedder_aliases)
        self.reranker_aliases = model_aliases(reranker.model_name, reranker_aliases) if reranker else set()
        self.embedder_aliases = model_aliases(embedder.model_name, embedder_aliases) if embedder else set()
        common = dict(
            max_wait_s=s.batch_wait_ms / 1000.0,
            max_queue=s.queue_size,
            timeout_s=s.request_timeout_s,
            enabled=dynamic_batching,
            metrics=self.metrics,
        )
        self.rerank_batcher = DynamicBatcher(
            "rerank",
            self._score_batch,
            batch_tokens=s.batch_tokens,
            max_batch_size=s.max_batch_size,
            **common,
        )
        self.embed_batcher = DynamicBatcher(
            "embed", self._embed_batch, batch_tokens=s.batch_tokens, max_batch_size=s.max_batch_size, **common
        )
        # Tokenizers mutate their own state per call: one thread does all reranker tokenising.
        self._tokenize_pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="patentrank-tokenize"
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started_at = time.time()

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        dynamic_batching: bool | None = None,
        report: Callable[[str], None] | None = None,
    ) -> Engine:
        """Load the configured models; one that fails is reported in one line and left out."""
        models, errors, disabled = load_models(settings, report)
        return cls(
            reranker=models.get("reranker"),
            embedder=models.get("embedder"),
            settings=settings,
            load_errors=errors,
            disabled=disabled,
            dynamic_batching=dynamic_batching,
        )

    async def start(self) -> None:
        """Bind to the running event loop and start the batchers."""
        self._loop = asyncio.get_running_loop()
        await self.rerank_batcher.start()
        await self.embed_batcher.start()

    async def stop(self) -> None:
        """Stop the batchers and close the cache connection."""
        await self.rerank_batcher.stop()
        await self.embed_batcher.stop()
        await self.cache.close()
        self._loop = None

    def close(self) -> None:
        """Release worker threads and remote connections (after `stop`)."""
        self._tokenize_pool.shutdown(wait=False, cancel_futures=True)
        for model in (self.reranker, self.embedder):
            closer = getattr(model, "close", None)
            if callable(closer):
                closer()

    # ---- availability and model names ---------------------------------------------------------

    def _unavailable(self, stage: str, role: str) -> StageUnavailable:
        reason = self.load_errors.get(role, f"no {role} is loaded")
        return StageUnavailable(
            stage,
            f"the {stage} stage is unavailable: {reason}. Fix: set PATENTRANK_{role.upper()}_MODEL "
            f"(or `patentrank serve --{role}-model`) to a local model folder, or "
            f"PATENTRANK_{role.upper()}_URL to a remote server, and restart",
        )

    def require_reranker(self) -> Any:
        if self.reranker is None:
            raise self._unavailable("rerank", "reranker")
        return self.reranker

    def require_embedder(self) -> Any:
        if self.embedder is None:
            raise self._unavailable("embed", "embedder")
        return self.embedder

    def require_pipeline(self) -> Any:
        if self.pipeline is None:
            reason = self.load_errors.get("pipeline", "no search index is loaded")
            raise StageUnavailable(
                "search",
                f"the search stage is unavailable: {reason}. Fix: build an index (`patentrank index ...`) "
                "and start the server with --index DIR (or PATENTRANK_INDEX_DIR)",
            )
        return self.pipeline

    @property
    def reranker_name(self) -> str | None:
        return served_name(self.reranker.model_name) if self.reranker is not None else None

    @property
    def embedder_name(self) -> str | None:
        return served_name(self.embedder.model_name) if self.embedder is not None else None

    def check_model(self, requested: str | None, role: Literal["reranker", "embedder"]) -> str:
        """The served name for a request's `model` field; an unknown name raises `UnknownModel` (404)."""
        model = self.require_reranker() if role == "reranker" else self.require_embedder()
        aliases = self.reranker_aliases if role == "reranker" else self.embedder_aliases
        strict = self.settings.strict_model_names
        return resolve_model_name(requested, role, served_name(model.model_name), aliases, strict=strict)

    # ---- reranking ----------------------------------------------------------------------------

    def _score_batch(self, key: Hashable, pairs: list[Any]) -> np.ndarray:
        return score_mixed(self.require_reranker(), pairs)

    async def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None = None,
        max_tokens_per_doc: int | None = None,
    ) -> RerankResult:
        """Score every document against `query`; a query formatted for vLLM is recognised and parsed.

        Cached pairs skip tokenising and the model; the rest share batched model calls with other
        requests. Raises InputError (bad input), StageUnavailable, or batching.Overloaded.
        """
        from patentrank.models.remote import parse_preformatted

        reranker = self.require_reranker()
        parsed = parse_preformatted(query, documents)
        if parsed is not None:
            if instruction:
                raise InputError(
                    "instruction cannot be combined with a pre-formatted query", field="instruction"
                )
            instruction, query, documents = parsed
        resolved = instruction or DEFAULT_INSTRUCTION
        max_length = int(getattr(reranker, "max_length", 0))
        keys = [
            score_key(reranker.model_name, resolved, query, d, max_length, max_tokens_per_doc)
            for d in documents
        ]
        began = time.perf_counter()
        found: list[CachedScore | None] = await self.cache.get_many(keys)
        self.metrics.stage_seconds.labels(stage="cache").observe(time.perf_counter() - began)
        misses = [i for i, hit in enumerate(found) if hit is None]
        hits = len(documents) - len(misses)
        if hits:
            self.metrics.cache.labels(result="hit").inc(hits)
        if misses:
            self.metrics.cache.labels(result="miss").inc(len(misses))
            loop = asyncio.get_running_loop()
            began = time.perf_counter()
            pairs = await loop.run_in_executor(
                self._tokenize_pool,
                lambda: reranker.encode(
                    query, [documents[i] for i in misses], instruction, max_tokens_per_doc
                ),
            )
            self.metrics.stage_seconds.labels(stage="tokenize").observe(time.perf_counter() - began)
            logits = await self.rerank_batcher.submit(pairs, [pair_cost(p) for p in pairs])
            fresh = {}
            for i, pair, logit in zip(misses, pairs, logits, strict=True):
                found[i] = CachedScore(float(logit), pair_cost(pair), bool(pair.truncated))
                fresh[keys[i]] = found[i]
            await self.cache.set_many(fresh)
        values = [hit for hit in found if hit is not None]
        raw = np.array([v.logit for v in values], dtype=np.float64)
        scores = 1.0 / (1.0 + np.exp(-raw))
        return RerankResult(
            scores=scores.tolist(),
            logits=raw.tolist(),
            prompt_tokens=sum(v.tokens for v in values),
            truncated=[i for i, v in enumerate(values) if v.truncated],
            cache_hits=hits,
        )

    # ---- embeddings ---------------------------------------------------------------------------

    def _embed_batch(self, key: Hashable, texts: list[str]) -> list[tuple[np.ndarray, int]]:
        kind, instruction, dimensions = key  # type: ignore[misc]
        embedder = self.require_embedder()
        if kind == "query":
            vectors = embedder.embed_queries(texts, instruction=instruction, dimensions=dimensions)
        else:
            vectors = embedder.embed_documents(texts, dimensions=dimensions)
        return list(zip(vectors, embedder.count_tokens(texts), strict=True))

    async def embed(
        self,
        texts: Sequence[str],
        *,
        input_type: Literal["query", "document"] = "document",
        instruction: str | None = None,
        dimensions: int | None = None,
    ) -> EmbedResult:
        """Vectors for passages (`input_type='document'`) or queries (wrapped in the instruction)."""
        embedder = self.require_embedder()
        if dimensions is not None:
            # A remote embedder would have to ask its server (blocking the loop): its server checks.
            remote = embedder.is_remote
            full = dimensions if remote else int(getattr(embedder, "full_dim", None) or embedder.dim)
            if not 1 <= dimensions <= full:
                raise InputError(
                    f"dimensions must be between 1 and {full} for {self.embedder_name!r}, got {dimensions}",
                    field="dimensions",
                )
        if instruction is not None and input_type != "query":
            raise InputError(
                "instruction applies to queries only: set input_type to 'query'", field="instruction"
            )
        key = (input_type, instruction if input_type == "query" else None, dimensions)
        costs = [max(1, len(t) // 2) for t in texts]
        rows = await self.embed_batcher.submit(list(texts), costs, key=key)
        if not rows:
            width = dimensions or int(embedder.dim)
            return EmbedResult(np.zeros((0, width), dtype=np.float32), 0)
        vectors = np.stack([vector for vector, _ in rows]).astype(np.float32, copy=False)
        return EmbedResult(vectors, sum(int(tokens) for _, tokens in rows))

    # ---- use from other threads (the search pipeline) -----------------------------------------

    def run_threadsafe(self, coroutine: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        """Run one of the engine's coroutines from a thread other than the event loop's, and wait."""
        loop = self._loop
        if loop is None:
            coroutine.close()
            raise RuntimeError("the engine is not started")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            coroutine.close()
            raise RuntimeError("run_threadsafe would deadlock on the event loop thread; await the coroutine")
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout_s)

    def rerank_sync(self, query: str, documents: Sequence[str], **kwargs: Any) -> RerankResult:
        """`rerank` for code running in a worker thread (e.g. the search pipeline)."""
        return self.run_threadsafe(self.rerank(query, documents, **kwargs))

    def embed_sync(self, texts: Sequence[str], **kwargs: Any) -> EmbedResult:
        """`embed` for code running in a worker thread."""
        return self.run_threadsafe(self.embed(texts, **kwargs))

    # ---- health -------------------------------------------------------------------------------

    def _model_health(self, role: str, model: Any) -> dict[str, Any]:
        backend = None
        if model is not None:
            backend = "remote" if model.is_remote else "local"
        precision = getattr(model, "precision", None)  # in-process models: the dtype `auto` chose and why
        return {
            "ready": model is not None,
            "model": served_name(model.model_name) if model is not None else None,
            "backend": backend,
            **(precision.describe() if precision is not None else {}),
            "error": None if model is not None else self.load_errors.get(role),
        }

    def _index_health(self) -> dict[str, Any] | None:
        """The search index's parts (documents, BM25, vectors: FAISS or Milvus); never raises."""
        index = getattr(self.pipeline, "index", None)
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

    def health(self) -> dict[str, Any]:
        """Liveness plus which models and stages are ready, with load errors."""
        from patentrank import __version__

        models = {
            "reranker": self._model_health("reranker", self.reranker),
            "embedder": self._model_health("embedder", self.embedder),
        }
        stages = {"rerank": self.reranker is not None, "embed": self.embedder is not None}
        stages["search"] = self.pipeline is not None
        stages["dense"] = self.pipeline is not None and self.pipeline.embed_query is not None
        if self.pipeline is not None:  # a loaded embedder may still be refused by the index
            reason = None if stages["dense"] else self.pipeline.unavailable.get("dense")
            models["embedder"]["index"] = {"ready": stages["dense"], "error": reason}
        failed = sorted(set(self.load_errors) - self.disabled)
        index = self._index_health()
        if index and not all(part.get("ok", True) for part in index.values() if isinstance(part, dict)):
            failed.append("index")
        return {
            "status": "degraded" if failed else "ok",
            "failed": failed,
            "version": __version__,
            "uptime_s": round(time.time() - self.started_at, 1),
            "models": models,
            "stages": stages,
            "index": index,
            "cache": self.cache.health(),
            "queue": {
                "rerank": self.rerank_batcher.depth,
                "embed": self.embed_batcher.depth,
                "limit": self.settings.queue_size,
                "dynamic_batching": self.rerank_batcher.enabled,
            },
        }
