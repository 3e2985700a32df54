"""What the engine, the index and the pipeline need of a reranker and an embedder, local or remote.

In-process models (`Reranker`, `CrossEncoderReranker`, `Embedder`) and the clients of remote
servers (`RemoteReranker`, `RemoteEmbedder`) all satisfy these protocols; `is_remote` is how
callers tell them apart (health, `/v1/models`, cost estimates), never the class name.

Example:
    >>> from patentrank.models.remote import RemoteEmbedder, RemoteReranker
    >>> reranker = RemoteReranker("http://127.0.0.1:9", model="Qwen/Qwen3-Reranker-0.6B")
    >>> isinstance(reranker, RerankerBackend), reranker.is_remote, served_name_of(reranker)
    (True, True, 'Qwen/Qwen3-Reranker-0.6B')
    >>> RemoteEmbedder.is_remote, isinstance(reranker, EmbedderBackend)
    (True, False)
    >>> reranker.close()
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class RerankerBackend(Protocol):
    """Scores (query, document) pairs: P(relevant) in (0, 1) per document, in input order."""

    model_name: str  # the hub id or folder it was loaded from (remote: the name the server serves)
    is_remote: bool

    def compute(
        self,
        query: str,
        documents: Sequence[str],
        instruction: str | None = None,
        max_tokens_per_doc: int | None = None,
    ) -> Any: ...

    def score(self, query: str, documents: Sequence[str], instruction: str | None = None) -> list[float]: ...


@runtime_checkable
class EmbedderBackend(Protocol):
    """Unit-length float32 vectors for passages and for queries (wrapped in the model's instruction)."""

    model_name: str
    is_remote: bool

    @property
    def dim(self) -> int: ...

    def embed_documents(self, texts: Sequence[str], dimensions: int | None = None) -> np.ndarray: ...

    def embed_queries(
        self, texts: Sequence[str], instruction: str | None = None, dimensions: int | None = None
    ) -> np.ndarray: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...


def served_name_of(model: RerankerBackend | EmbedderBackend) -> str:
    """The id `model` answers to in the APIs (a local folder by its folder name, a hub id as is)."""
    from patentrank.models.names import served_name

    return served_name(model.model_name)
