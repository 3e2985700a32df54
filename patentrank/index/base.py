"""The `VectorStore` interface that the pipeline talks to; FAISS and Milvus implement it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from patentrank.index.filters import PassageFields, SearchFilter


@runtime_checkable
class VectorStore(Protocol):
    """Passage vectors keyed by int64 passage id, with the scalar fields filters need.

    Vectors are L2-normalised float32; scores are inner products (cosine), higher is better.
    """

    dim: int

    def upsert(self, ids: Sequence[int], vectors: np.ndarray, fields: Sequence[PassageFields]) -> None:
        """Insert or replace these passages (same id = replace)."""
        ...

    def delete(self, ids: Sequence[int]) -> None:
        """Remove passages by id; unknown ids are ignored."""
        ...

    def search(
        self, queries: np.ndarray, k: int, flt: SearchFilter | None = None
    ) -> list[list[tuple[int, float]]]:
        """For each query row, up to k (passage id, score) pairs, best first, all matching `flt`."""
        ...

    def count(self) -> int:
        """Number of passages stored."""
        ...

    def save(self) -> None:
        """Make everything upserted so far durable."""
        ...

    def health(self) -> dict[str, object]:
        """{'ok': bool, 'detail': str, ...} for /health; must not raise."""
        ...
