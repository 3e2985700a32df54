"""The serving engine: the models behind dynamic batching and a score cache (no index, no HTTP).

What wires it to an index and a search pipeline is the composition root, `patentrank.runtime`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Coroutine, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np

from patentrank.batching import DynamicBatcher
from patentrank.cache import CachedScore, ScoreCache, make_cache, score_key
from patentrank.config import DEFAULT_INSTRUCTION, Settings
from patentrank.errors import InputError, StageUnavailable
from patentrank.metrics import Metrics
from patentrank.models.names import (
    UnknownModel,  # noqa: F401  (re-exported: callers import it from here)
    model_aliases,
    resolve_model_name,
    served_name,
)

logger = logging.getLogger("patentrank.engine")
T = TypeVar("T")
# Padded tokens of concurrent requests packed into one model call when PATENTRANK_BATCH_TOKENS is unset;
# each model then splits the call into its own (device-dependent) forward passes.
REQUEST_BATCH_TOKENS = 16384


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

    `reranker` and `embedder` may each be None: that stage answers 503 with a message from
    `load_errors` saying what failed and how to fix it. Reranking goes through the score cache,
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
        >>> engine.reranker is None
        True
        >>> try:
        ...     asyncio.run(rerank_once(engine))
        ... except StageUnavailable as exc:
        ...     print(str(exc)[:54])
        the rerank stage is unavailable: no reranker is loaded
        >>> engine.close()
        >>> from patentrank.testing import build_random_qwen3
        >>> import tempfile
        >>> from patentrank.models.reranker import Reranker
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     tiny = Reranker(str(build_random_qwen3(folder)), device="cpu", dtype="float32")
        ...     scores = asyncio.run(rerank_once(Engine(reranker=tiny, settings=Settings(cache_size=0))))
        >>> len(scores), all(0.0 < s < 1.0 for s in scores)
        (2, True)
    """

    def __init__(
        self,
        *,
        reranker: Any | None = None,
        embedder: Any | None = None,
        settings: Settings | None = None,
        load_errors: dict[str, str] | None = None,
        cache: ScoreCache | None = None,
        dynamic_batching: bool | None = None,
        reranker_aliases: Sequence[str] = (),
        embedder_aliases: Sequence[str] = (),
    ) -> None:
        self.settings = settings or Settings()
        s = self.settings
        self.reranker = reranker
        self.embedder = embedder
        self.load_errors = dict(load_errors or {})
        self.metrics = Metrics()
        self.cache = cache if cache is not None else make_cache(s.cache_size, s.cache_url)
        if dynamic_batching is None:
            dynamic_batching = s.dynamic_batching
        reranker_aliases = list(reranker_aliases) or list(s.reranker_aliases)
        embedder_aliases = list(embedder_aliases) or list(s.embedder_aliases)
        self.reranker_aliases = model_aliases(reranker.model_name, reranker_aliases) if reranker else set()
        self.embedder_aliases = model_aliases(embedder.model_name, embedder_aliases) if embedder else set()
        common = dict(
            batch_tokens=s.batch_tokens or REQUEST_BATCH_TOKENS,
            max_batch_size=s.max_batch_size,
            max_wait_s=s.batch_wait_ms / 1000.0,
            max_queue=s.queue_size,
            timeout_s=s.request_timeout_s,
            enabled=dynamic_batching,
            metrics=self.metrics,
        )
        self.rerank_batcher = DynamicBatcher("rerank", self._score_batch, **common)
        self.embed_batcher = DynamicBatcher("embed", self._embed_batch, **common)
        # Tokenizers mutate their own state per call: requests from the event loop tokenise on one
        # thread, worker threads (`rerank_sync`) in their own, all under one lock.
        self._tokenize_pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="patentrank-tokenize"
        )
        self._tokenize_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started_at = time.time()

    # ---- life cycle ---------------------------------------------------------------------------

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
        return np.asarray(self.require_reranker().score_encoded(pairs))  # its one prefix-sharing policy

    def _prepare(
        self, query: str, documents: Sequence[str], instruction: str | None
    ) -> tuple[Any, str, Sequence[str], str | None]:
        """(reranker, query, documents, instruction), a query formatted for vLLM parsed into its parts."""
        from patentrank.models.prompt import parse_preformatted

        reranker = self.require_reranker()
        parsed = parse_preformatted(query, documents)
        if parsed is not None:
            if instruction:
                raise InputError(
                    "instruction cannot be combined with a pre-formatted query", field="instruction"
                )
            instruction, query, documents = parsed
        return reranker, query, documents, instruction

    def _encode(
        self,
        reranker: Any,
        query: str,
        documents: Sequence[str],
        instruction: str | None,
        max_tokens_per_doc: int | None,
    ) -> list[Any]:
        with self._tokenize_lock:  # tokenizers mutate their own state per call
            return reranker.encode(query, list(documents), instruction, max_tokens_per_doc)

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
        reranker, query, documents, instruction = self._prepare(query, documents, instruction)
        return await self._rerank(reranker, query, documents, instruction, max_tokens_per_doc, None)

    async def _rerank(
        self,
        reranker: Any,
        query: str,
        documents: Sequence[str],
        instruction: str | None,
        max_tokens_per_doc: int | None,
        encoded: Sequence[Any] | None,
    ) -> RerankResult:
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
            if encoded is not None:  # tokenised by the calling worker thread (`rerank_sync`)
                pairs = [encoded[i] for i in misses]
            else:
                loop = asyncio.get_running_loop()
                began = time.perf_counter()
                pairs = await loop.run_in_executor(
                    self._tokenize_pool,
                    self._encode,
                    reranker,
                    query,
                    [documents[i] for i in misses],
                    instruction,
                    max_tokens_per_doc,
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

    def rerank_sync(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None = None,
        max_tokens_per_doc: int | None = None,
    ) -> RerankResult:
        """`rerank` for code running in a worker thread (the search pipeline, the web page).

        The calling thread tokenises (under the engine's tokenizer lock) before it hands the request
        to the event loop, so the request goes worker -> loop -> model thread -> loop -> worker, not
        through the tokenizer thread as well (cached pairs are then tokenised needlessly, which costs
        far less than the two thread hops saved on a search's mostly new candidates)."""
        reranker, query, documents, instruction = self._prepare(query, documents, instruction)
        began = time.perf_counter()
        pairs = self._encode(reranker, query, documents, instruction, max_tokens_per_doc)
        self.metrics.stage_seconds.labels(stage="tokenize").observe(time.perf_counter() - began)
        return self.run_threadsafe(
            self._rerank(reranker, query, documents, instruction, max_tokens_per_doc, pairs)
        )

    def embed_sync(self, texts: Sequence[str], **kwargs: Any) -> EmbedResult:
        """`embed` for code running in a worker thread."""
        return self.run_threadsafe(self.embed(texts, **kwargs))

    # ---- status (the composition root's `Runtime.health` adds the index and the stages) ------------

    @property
    def running(self) -> bool:
        """Whether `start()` bound the engine to an event loop (and `stop()` has not unbound it)."""
        return self._loop is not None

    def queue_status(self) -> dict[str, Any]:
        """Requests waiting per batcher, the queue limit, and whether batching is on."""
        return {
            "rerank": self.rerank_batcher.depth,
            "embed": self.embed_batcher.depth,
            "limit": self.settings.queue_size,
            "dynamic_batching": self.rerank_batcher.enabled,
        }


def pair_cost(pair: Any) -> int:
    """Tokens of one encoded pair (estimated for a remote model's pairs), for batch budgets."""
    tokens = getattr(pair, "num_tokens", None)
    return int(tokens) if tokens is not None else len(pair.input_ids)
