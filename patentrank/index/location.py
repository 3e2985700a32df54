"""Where an index lives: a folder (embedded: SQLite, tantivy, FAISS) or a Milvus URI (cluster mode),
and opening either behind the one interface the pipeline, server, CLI and eval use."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from patentrank.index.cluster import is_cluster_uri


def index_location(value: str | Path) -> str | Path:
    """A Milvus URI stays a string (a `Path` would fold its '//'); anything else is a folder.

    Example:
        >>> index_location("http://milvus:19530"), index_location("~/ix").name
        ('http://milvus:19530', 'ix')
    """
    if is_cluster_uri(value):
        return str(value).strip()
    return Path(value).expanduser()


def missing_index(location: str | Path) -> str | None:
    """Why there is no index to read at `location` (None when there may be: a URI is checked on open).

    Example:
        >>> missing_index("/nonexistent/ix")
        'no index at /nonexistent/ix: build one with `patentrank index FILE --index /nonexistent/ix`'
    """
    if is_cluster_uri(location) or (Path(location) / "docs.sqlite").exists():
        return None
    return f"no index at {location}: build one with `patentrank index FILE --index {location}`"


def open_patent_index(
    location: str | Path,
    *,
    settings: Any | None = None,
    embedder: Any | None = None,
    embed_documents: Callable[[list[str]], np.ndarray] | None = None,
    read_only: bool = False,
) -> Any:
    """A `PatentIndex` for a folder, a `ClusterIndex` for a Milvus URI (`settings` gives the vector
    store of a folder, and Milvus's token, collection prefix and timeout). A read-only open of a URI
    creates nothing there."""
    if is_cluster_uri(location):
        try:
            from patentrank.index.cluster.index import ClusterIndex
        except ImportError as exc:
            from patentrank.errors import PatentrankError

            raise PatentrankError(
                f"an index in Milvus needs pymilvus ({exc.name} is missing): pip install 'patentrank[milvus]'"
            ) from None
        return ClusterIndex(
            str(location).strip(),
            embedder=embedder,
            embed_documents=embed_documents,
            token=getattr(settings, "milvus_token", None),
            prefix=getattr(settings, "milvus_prefix", "patentrank"),
            timeout_s=getattr(settings, "milvus_timeout_s", 10.0),
            create=not read_only,
        )
    from patentrank.index.patent_index import PatentIndex

    return PatentIndex(
        Path(location),
        embedder=embedder,
        embed_documents=embed_documents,
        vector_store=getattr(settings, "vector_store", "faiss"),
        read_only=read_only,
    )
