"""Opening the configured vector store (FAISS or Milvus), its errors, and input checks both stores share."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from patentrank.errors import InputError, PatentrankError
from patentrank.index.base import VectorStore
from patentrank.index.filters import PassageFields

# Milvus rejects a larger top-k; FAISS would accept it, but both stores keep one contract.
MAX_K = 16384


class VectorStoreError(PatentrankError):
    """The vector store cannot do what was asked (dimension mismatch, damaged files, bad settings)."""


class VectorStoreUnavailable(VectorStoreError):
    """The vector database cannot be reached (Milvus down or unreachable); retrying later may work."""


def open_vector_store(
    settings_or_uri: Any,
    path: str | Path,
    dim: int,
    *,
    token: str | None = None,
    collection: str | None = None,
    **options: Any,
) -> VectorStore:
    """The vector store that `Settings.vector_store` (or a URI string) names, for the index folder `path`.

    - ``"faiss"``: a `FaissStore` in ``<path>/faiss``.
    - ``"http(s)://host:19530"`` (or ``tcp://``): a Milvus server; the token comes from `token` or
      ``Settings.milvus_token`` / ``PATENTRANK_MILVUS_TOKEN``.
    - a path ending in ``.db``: Milvus Lite in that folder (relative paths are inside `path`).

    The Milvus collection is `collection`, else ``patentrank_<index folder name>``. Extra `options`
    go to the store's constructor (e.g. ``hnsw_threshold`` for FAISS, ``index_type`` for Milvus).

    Example (a Milvus server is opened the same way: ``open_vector_store("http://milvus:19530", path,
    1024, token="root:Milvus")``):
        >>> import tempfile
        >>> folder = tempfile.TemporaryDirectory()
        >>> store = open_vector_store("faiss", folder.name, 1024)
        >>> type(store).__name__, store.path.name, store.count()
        ('FaissStore', 'faiss', 0)
        >>> store.close()
        >>> open_vector_store("milvus", folder.name, 1024)
        Traceback (most recent call last):
        patentrank.errors.InputError: vector_store 'milvus' is not understood: use 'faiss', a Milvus URI ...
        >>> folder.cleanup()
    """
    if isinstance(settings_or_uri, str) or settings_or_uri is None:
        uri = (settings_or_uri or "faiss").strip()
    else:
        uri = str(settings_or_uri.vector_store).strip()
        token = token or getattr(settings_or_uri, "milvus_token", None)
    token = token or os.environ.get("PATENTRANK_MILVUS_TOKEN") or None
    index_dir = Path(path).expanduser()
    if uri.lower() == "faiss":
        from patentrank.index.faiss_store import FaissStore

        return FaissStore(index_dir / "faiss", dim, **options)
    name = collection or default_collection_name(index_dir)
    if re.match(r"^(https?|tcp)://", uri, flags=re.IGNORECASE):
        from patentrank.index.milvus_store import MilvusStore

        return MilvusStore(uri, dim, collection=name, token=token, **options)
    if uri.endswith(".db"):
        from patentrank.index.milvus_store import MilvusStore

        db_path = Path(uri).expanduser()
        if not db_path.is_absolute():
            db_path = index_dir / db_path
        return MilvusStore(str(db_path), dim, collection=name, **options)
    raise InputError(
        f"vector_store {uri!r} is not understood: use 'faiss', a Milvus URI such as "
        "'http://localhost:19530', or a Milvus Lite path ending in '.db'",
        field="vector_store",
    )


def default_collection_name(index_dir: Path) -> str:
    """'patentrank_<folder>' with only the characters Milvus allows in a collection name.

    Example:
        >>> default_collection_name(Path("/data/wasteheat-index"))
        'patentrank_wasteheat_index'
    """
    stem = re.sub(r"[^0-9A-Za-z_]", "_", index_dir.resolve().name or "index")
    return f"patentrank_{stem}"[:255]


def check_upsert(
    ids: Sequence[int], vectors: np.ndarray, fields: Sequence[PassageFields], dim: int
) -> tuple[np.ndarray, np.ndarray, list[PassageFields]]:
    """Validated int64 ids, float32 (n, dim) vectors and fields; a repeated id keeps its last row."""
    id_array = np.asarray(ids)
    if id_array.ndim != 1 or (id_array.size and not np.issubdtype(id_array.dtype, np.integer)):
        raise InputError("ids must be a list of integers", field="ids")
    id_array = id_array.astype(np.int64, copy=False)
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[1] != dim:
        raise InputError(f"vectors must have shape (n, {dim}), got {matrix.shape}", field="vectors")
    fields = list(fields)
    if not len(id_array) == len(matrix) == len(fields):
        raise InputError(
            f"ids, vectors and fields differ in length ({len(id_array)}, {len(matrix)}, {len(fields)})",
            field="ids",
        )
    if not all(isinstance(f, PassageFields) for f in fields):
        raise InputError("fields must be PassageFields", field="fields")
    if not np.isfinite(matrix).all():
        raise InputError("vectors contain NaN or infinity", field="vectors")
    _, last = np.unique(id_array[::-1], return_index=True)
    if len(last) != len(id_array):
        keep = np.sort(len(id_array) - 1 - last)
        id_array, matrix, fields = id_array[keep], matrix[keep], [fields[i] for i in keep]
    return id_array, np.ascontiguousarray(matrix), fields


def check_queries(queries: np.ndarray, k: int, dim: int) -> np.ndarray:
    """Validated float32 (nq, dim) queries; one 1-D vector counts as one query."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= MAX_K:
        raise InputError(f"k must be an integer between 1 and {MAX_K}", field="k")
    matrix = np.asarray(queries, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2 or matrix.shape[1] != dim:
        raise InputError(f"queries must have shape (nq, {dim}), got {matrix.shape}", field="queries")
    if not np.isfinite(matrix).all():
        raise InputError("queries contain NaN or infinity", field="queries")
    return np.ascontiguousarray(matrix)


def check_ids(ids: Sequence[int]) -> np.ndarray:
    id_array = np.asarray(ids)
    if id_array.ndim != 1 or (id_array.size and not np.issubdtype(id_array.dtype, np.integer)):
        raise InputError("ids must be a list of integers", field="ids")
    return np.unique(id_array.astype(np.int64, copy=False))
