"""Remote model backends: a vLLM (or patentrank) rerank server and any OpenAI-compatible embeddings server."""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from patentrank.config import DEFAULT_INSTRUCTION
from patentrank.errors import InputError, PatentrankError
from patentrank.models.embedder import QUERY_TEMPLATE
from patentrank.models.prompt import format_document, format_query
from patentrank.models.reranker import Ranking, validate_request

# Where each kind of rerank server listens; all but vLLM get plain (query, document) texts.
RERANK_APIS = {"vllm": "/v1/rerank", "tei": "/rerank", "infinity": "/rerank", "cohere": "/v1/rerank"}


class RemoteError(PatentrankError):
    """A remote model server failed (unreachable, 5xx, or an answer that makes no sense)."""


def split_urls(urls: str | Sequence[str]) -> list[str]:
    """Base URLs from a list or a comma-separated string, without a trailing '/' or '/v1'."""
    parts = urls.split(",") if isinstance(urls, str) else list(urls)
    cleaned = []
    for url in parts:
        url = url.strip().rstrip("/")
        if url.endswith("/v1"):
            url = url[:-3]
        if url:
            if not url.startswith(("http://", "https://")):
                raise InputError(f"remote URL {url!r} must start with http:// or https://", field="url")
            cleaned.append(url)
    if not cleaned:
        raise InputError("at least one remote server URL is needed", field="url")
    return cleaned


def _estimate_tokens(text: str) -> int:
    """A rough token count without a tokenizer: about 3 characters per token across zh/en text."""
    return max(1, math.ceil(len(text) / 3))


def _upstream_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for key in ("message", "detail", "error"):
            if body.get(key):
                return str(body[key])
    return str(body)[:300]


class _Endpoints:
    """POSTs JSON to the first server that answers, in order, starting from the last one that worked."""

    def __init__(self, urls: str | Sequence[str], role: str, api_key: str | None, timeout_s: float) -> None:
        self.urls = split_urls(urls)
        self.role = role
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout_s, headers=headers, trust_env=False)
        self._preferred = 0

    def post(self, path: str, payload: dict[str, Any]) -> Any:
        failures = []
        for step in range(len(self.urls)):
            position = (self._preferred + step) % len(self.urls)
            url = self.urls[position] + path
            try:
                response = self._client.post(url, json=payload)
            except httpx.TransportError as exc:  # refused, timed out, reset: try the next server
                failures.append(f"{url}: {type(exc).__name__} {exc}".strip())
                continue
            if response.status_code >= 500 or response.status_code == 429:
                failures.append(f"{url}: HTTP {response.status_code} {_upstream_message(response)}")
                continue
            if response.status_code in (401, 403):
                raise RemoteError(
                    f"{self.role} server {url} rejected the API key (HTTP {response.status_code})"
                )
            if response.status_code >= 400:
                # The same request would fail on every server: report it instead of failing over.
                raise InputError(f"{self.role} server {url}: {_upstream_message(response)}")
            self._preferred = position
            try:
                return response.json()
            except ValueError as exc:
                raise RemoteError(f"{self.role} server {url} answered with invalid JSON") from exc
        raise RemoteError(f"every {self.role} server failed: " + "; ".join(failures))

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True, slots=True)
class RemotePair:
    """One (query, document) prompt as the texts a remote server scores; `num_tokens` is estimated."""

    query_text: str
    document_text: str
    num_tokens: int
    max_tokens_per_doc: int | None = None
    truncated: bool = False


class RemoteReranker(Ranking):
    """Qwen3-Reranker behind a vLLM server (`vllm serve ... --runner pooling`) or another patentrank server.

    Prompts are formatted client-side (system prefix and instruction in the query, the assistant
    suffix after each document), which is what vLLM needs for correct Qwen3 scores and what a
    patentrank server recognises and scores exactly like its local path. Several base URLs give
    failover: a connection error, timeout, 429 or 5xx moves on to the next one. `api` 'tei',
    'infinity' or 'cohere' sends plain texts instead, for a cross-encoder behind TEI (`POST /rerank`
    {query, texts}), Infinity (`POST /rerank` {query, documents}) or any Cohere-style `/v1/rerank`.

    Example:
        >>> reranker = RemoteReranker("http://gpu1:8000,http://gpu2:8000", model="Qwen/Qwen3-Reranker-0.6B")
        >>> scores = reranker.score("image denoising", ["U-Net removes noise", "a gearbox"])  # doctest: +SKIP
    """

    is_remote = True  # models/base.py: the backend protocols

    def __init__(
        self,
        urls: str | Sequence[str],
        model: str | None = None,
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        endpoint: str | None = None,
        batch_size: int = 128,
        max_length: int = 8192,
        api: str = "vllm",
    ) -> None:
        if api not in RERANK_APIS:
            raise InputError(f"reranker api must be one of {sorted(RERANK_APIS)}, not {api!r}", field="api")
        endpoint = endpoint or RERANK_APIS[api]
        if endpoint not in ("/v1/rerank", "/rerank", "/score"):
            raise InputError("endpoint must be '/v1/rerank', '/rerank' or '/score'", field="endpoint")
        self.api = api
        self.endpoints = _Endpoints(urls, "reranker", api_key, timeout_s)
        self.model = model
        self.model_name = model or self.endpoints.urls[0]
        self.endpoint = endpoint
        self.batch_size = batch_size
        self.max_length = max_length

    def encode(
        self,
        query: str,
        documents: Sequence[str],
        instruction: str | None = None,
        max_tokens_per_doc: int | None = None,
    ) -> list[RemotePair]:
        """The formatted texts of each pair; `score_encoded` sends them."""
        validate_request(query, documents)
        plain = self.api != "vllm"  # a cross-encoder server: bare texts, no instruction slot
        formatted_query = query if plain else format_query(query, instruction)
        return [
            RemotePair(
                formatted_query,
                doc if plain else format_document(doc),
                _estimate_tokens(formatted_query) + _estimate_tokens(doc) + 10,
                max_tokens_per_doc,
            )
            for doc in documents
        ]

    def _post_group(
        self, query_text: str, documents: list[str], max_tokens_per_doc: int | None
    ) -> np.ndarray:
        payload: dict[str, Any] = {"model": self.model} if self.model else {}
        if self.endpoint == "/score":
            payload |= {"text_1": query_text, "text_2": documents}
        elif self.api == "tei":  # TEI's own truncation to the model length instead of a 413
            payload = {"query": query_text, "texts": documents, "truncate": True, "raw_scores": False}
        else:
            payload |= {"query": query_text, "documents": documents}
        if max_tokens_per_doc is not None and self.api != "tei":
            payload["max_tokens_per_doc"] = max_tokens_per_doc
        body = self.endpoints.post(self.endpoint, payload)
        rows = body if isinstance(body, list) else None  # TEI answers a bare list
        if isinstance(body, dict):
            rows = body.get("data" if self.endpoint == "/score" else "results")
        scores = np.full(len(documents), np.nan)
        for row in rows or []:
            index = row.get("index")
            value = row.get("score", row.get("relevance_score"))
            if isinstance(index, int) and 0 <= index < len(documents) and isinstance(value, int | float):
                scores[index] = float(value)
        if np.isnan(scores).any():
            raise RemoteError(
                f"reranker server answered without a score for every document: {str(body)[:200]}"
            )
        return scores

    def score_encoded(self, pairs: Sequence[RemotePair], progress: Any = None) -> np.ndarray:
        """Raw logits (log-odds of the returned P(yes)) in order; pairs of one query share a request."""
        groups: dict[tuple[str, int | None], list[int]] = {}
        for i, pair in enumerate(pairs):
            groups.setdefault((pair.query_text, pair.max_tokens_per_doc), []).append(i)
        probabilities = np.empty(len(pairs), dtype=np.float64)
        for (query_text, max_tokens), members in groups.items():
            for start in range(0, len(members), self.batch_size):
                chunk = members[start : start + self.batch_size]
                docs = [pairs[i].document_text for i in chunk]
                probabilities[chunk] = self._post_group(query_text, docs, max_tokens)
                if progress is not None:
                    progress(len(chunk))
        tiny = np.finfo(np.float64).tiny
        p = np.clip(probabilities, tiny, 1.0 - np.finfo(np.float64).epsneg)
        return np.log(p) - np.log1p(-p)

    def close(self) -> None:
        self.endpoints.close()


class RemoteEmbedder:
    """Embeddings from any OpenAI-compatible server (vLLM, TEI, another patentrank server), with failover.

    Queries are wrapped client-side in Qwen3-Embedding's template (`Instruct: {task}\\nQuery:{query}`)
    and sent as plain inputs, so every server embeds them correctly; set `query_template=None` for a
    model without instructions. Vectors come back as base64 float32 and are L2-normalised.

    Example:
        >>> embedder = RemoteEmbedder("http://gpu1:8001", model="Qwen/Qwen3-Embedding-0.6B")
        >>> embedder.embed_queries(["image denoising"]).shape  # doctest: +SKIP
        (1, 1024)
    """

    is_remote = True  # models/base.py: the backend protocols

    def __init__(
        self,
        urls: str | Sequence[str],
        model: str | None = None,
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        dimensions: int | None = None,
        batch_size: int = 64,
        instruction: str = DEFAULT_INSTRUCTION,
        query_template: str | None = QUERY_TEMPLATE,
    ) -> None:
        self.endpoints = _Endpoints(urls, "embedder", api_key, timeout_s)
        self.model = model
        self.model_name = model or self.endpoints.urls[0]
        self.batch_size = batch_size
        self.instruction = instruction
        self.query_template = query_template
        self.default_dimensions = dimensions
        self._full_dim: int | None = None

    @property
    def full_dim(self) -> int:
        """The server's full vector size, asked once with a one-word probe."""
        if self._full_dim is None:
            self._full_dim = int(self._post(["dimension probe"], None).shape[1])
        return self._full_dim

    @property
    def dim(self) -> int:
        return self.default_dimensions or self.full_dim

    def _post(self, texts: list[str], dimensions: int | None) -> np.ndarray:
        payload: dict[str, Any] = {"input": texts, "encoding_format": "base64"}
        if self.model:
            payload["model"] = self.model
        if dimensions is not None:
            payload["dimensions"] = dimensions
        body = self.endpoints.post("/v1/embeddings", payload)
        rows = sorted(body.get("data") or [], key=lambda row: row.get("index", 0))
        if len(rows) != len(texts):
            raise RemoteError(f"embeddings server returned {len(rows)} vectors for {len(texts)} inputs")
        vectors = []
        for row in rows:
            value = row.get("embedding")
            if isinstance(value, str):
                vectors.append(np.frombuffer(base64.b64decode(value), dtype="<f4"))
            else:
                vectors.append(np.asarray(value, dtype=np.float32))
        if len({len(v) for v in vectors}) != 1:
            raise RemoteError("embeddings server returned vectors of different sizes")
        matrix = np.stack(vectors).astype(np.float32)
        return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)

    def _embed(self, texts: Sequence[str], dimensions: int | None) -> np.ndarray:
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"texts[{i}] must be a string", field=f"texts[{i}]")
        dimensions = dimensions or self.default_dimensions
        if not texts:
            return np.zeros((0, dimensions or self.full_dim), dtype=np.float32)
        parts = [
            self._post(texts[s : s + self.batch_size], dimensions)
            for s in range(0, len(texts), self.batch_size)
        ]
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)

    def format_query(self, query: str, instruction: str | None = None) -> str:
        if self.query_template is None:
            return query
        return self.query_template.format(instruction=instruction or self.instruction, query=query)

    def embed_documents(
        self, texts: Sequence[str], dimensions: int | None = None, progress: bool = False
    ) -> np.ndarray:
        """One unit-length row per passage."""
        return self._embed(texts, dimensions)

    def embed_queries(
        self, texts: Sequence[str], instruction: str | None = None, dimensions: int | None = None
    ) -> np.ndarray:
        """One unit-length row per query, each wrapped in the instruction template."""
        return self._embed([self.format_query(t, instruction) for t in texts], dimensions)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Estimated tokens per text (the server's tokenizer is not at hand)."""
        return [_estimate_tokens(t) for t in texts]

    def close(self) -> None:
        self.endpoints.close()
