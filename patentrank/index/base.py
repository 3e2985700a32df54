"""The interfaces the pipeline talks to: `VectorStore` (FAISS, Milvus), `SearchIndex` (a folder or Milvus)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

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


@runtime_checkable
class SearchIndex(Protocol):
    """What the pipeline, the server, the page and the CLI use of an index: an index folder
    (`PatentIndex`) or the whole index in Milvus (`ClusterIndex`) alike.

    `docstore` answers `get_patent(s)`, `get_identities`, `get_passages`, `get_passage_heads`,
    `passages_of` and the counts; `lexical` answers `search_tokens`, `best_possible_score` and
    `without_common_terms`; `vectors` is a `VectorStore`, or None without an embedder.
    """

    docstore: Any
    lexical: Any
    vectors: VectorStore | None
    embedder: Any | None
    meta: dict[str, Any]

    def add(self, patents: Iterable[Any], **options: Any) -> Any:
        """Add or update patents (same id = update); returns an `IngestReport`."""
        ...

    def delete(self, patent_ids: Sequence[str]) -> list[str]:
        """Remove patents; returns the ids that were present."""
        ...

    def sync(self, progress: Any = None) -> int:
        """Finish what an interrupted run left undone; returns the passages handled."""
        ...

    def stats(self) -> dict[str, Any]:
        """Sizes and state, for the CLI, /health and the page."""
        ...

    def close(self) -> None: ...
