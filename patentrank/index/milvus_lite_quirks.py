"""What only Milvus Lite needs: its local folder shared by the stores of one process, restarting its
in-process server, and exact answers where its filtered HNSW search comes back short."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from patentrank.index.stores import VectorStoreError

# Milvus Lite accepts IVF_PQ, DISKANN, SCANN and others, then never builds them and searches fall
# back silently; only these are known to work there. A Milvus server takes any index type.
LITE_INDEX_TYPES = ("FLAT", "HNSW", "HNSW_SQ", "IVF_FLAT", "IVF_SQ8", "BRUTE_FORCE", "AUTOINDEX")
LITE_EXACT_LIMIT = 10_000  # rows a short filtered Lite search fetches to answer exactly
LITE_FILTER_EF_FACTOR = 8

_lock = threading.Lock()
_users: dict[str, int] = {}


def _key(uri: str) -> str:
    return str(Path(uri).expanduser().resolve())


def acquire_folder(uri: str) -> None:
    """Make the folder a Lite `uri` (a path ending in .db) lives in, and count one more store on it."""
    path = Path(uri).expanduser()
    if path.is_file():
        raise VectorStoreError(
            f"{uri!r} is a file (an old Milvus Lite database?); Milvus Lite now keeps a folder there"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock:
        _users[_key(uri)] = _users.get(_key(uri), 0) + 1


def release_folder(uri: str) -> None:
    """One store fewer on `uri`; the last one also stops the in-process Lite server."""
    key = _key(uri)
    with _lock:
        _users[key] = _users.get(key, 1) - 1
        last = _users[key] <= 0
    if last:
        restart_server(uri)


def restart_server(uri: str) -> None:
    """Forget Lite's in-process server for `uri` (it refused a connection): a new client restarts it."""
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(str(Path(uri).expanduser()))


def exact_top_k(
    queries: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int
) -> list[list[tuple[int, float]]]:
    """For each query row, the k best (id, inner product) over `vectors`, best first (ties: row order).

    Example:
        >>> vectors = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32)
        >>> exact_top_k(np.array([[1.0, 0.0]], dtype=np.float32), np.array([7, 8, 9]), vectors, 2)
        [[(7, 1.0), (9, 0.6000000238418579)]]
    """
    scores = queries @ vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[(int(ids[j]), float(s[j])) for j in o] for o, s in zip(order, scores, strict=True)]
