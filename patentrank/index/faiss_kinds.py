"""The FAISS index kinds FaissStore picks by size, how each is built, read (memory-mapped) and searched.

Kinds, smallest band first (`IndexPlan.kind_for`):

- ``flat``: exact inner product (IndexFlatIP in IndexIDMap2), 4 bytes per dimension.
- ``hnsw_sq8``: HNSW graph over 8-bit scalar-quantised codes (IndexHNSWSQ in IndexIDMap): 1 byte
  per dimension plus 8 bytes per link (2M links at the bottom layer).
- ``ivf_sq8``: inverted lists of 8-bit codes (IndexIVFScalarQuantizer, an HNSW coarse quantizer):
  1 byte per dimension plus 16 bytes of ids; the lists can be memory-mapped.
- ``hnsw``: HNSW over float32 vectors (IndexHNSWFlat), what FaissStore wrote before the compressed
  kinds; such files still open and work, and a rebuild turns them into the kind for their size.

All kinds keep FAISS ids = store slots (increasing, never reused) through an IndexIDMap wrapper, so
an inner position maps to a slot by the wrapper's ``id_map``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from patentrank.index.stores import VectorStoreError

KINDS = ("flat", "hnsw", "hnsw_sq8", "ivf_sq8")
_RANK = {"flat": 0, "hnsw": 1, "hnsw_sq8": 1, "ivf_sq8": 2}  # a band's rank: conversions only go up
_CHUNK = 65_536  # vectors per reconstruct/add step of a rebuild: ~64 MB of float32 at 256-d
_INNER_FOURCC_AT = 37  # IndexIDMap header: fourcc, d, ntotal, two dummies, is_trained, metric


@dataclass(frozen=True)
class IndexPlan:
    """Which kind serves which number of live passages, and the parameters of each.

    Below `flat_limit` passages the index is exact; up to `ivf_limit` it is `mid_kind` (HNSW over
    SQ8 codes by default, or the float ``hnsw`` of earlier versions); above, IVF over SQ8 codes
    (``ivf_limit=None``, the default, never switches). `nlist` None means 4 * sqrt(passages) at
    training time. The defaults come from the table in docs/benchmarks-store.md.
    """

    flat_limit: int = 200_000
    ivf_limit: int | None = None
    mid_kind: str = "hnsw_sq8"
    hnsw_m: int = 32
    ef_construction: int = 100
    ef_search: int = 256
    nlist: int | None = None
    nprobe: int = 64

    def __post_init__(self) -> None:
        if self.mid_kind not in ("hnsw", "hnsw_sq8"):
            raise VectorStoreError(f"mid_kind must be 'hnsw' or 'hnsw_sq8', got {self.mid_kind!r}")
        if self.hnsw_m < 2 or self.ef_search < 1 or self.nprobe < 1:
            raise VectorStoreError("hnsw_m must be >= 2 and ef_search, nprobe >= 1")

    def kind_for(self, count: int) -> str:
        if count <= self.flat_limit:
            return "flat"
        if self.ivf_limit is not None and count > self.ivf_limit:
            return "ivf_sq8"
        return self.mid_kind

    def nlist_for(self, count: int) -> int:
        if self.nlist is not None:
            return self.nlist
        return int(min(max(4 * math.sqrt(max(count, 1)), 16), 65_536))


def rank(kind: str) -> int:
    return _RANK[kind]


def kind_of(index: Any) -> str:
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexHNSWSQ):
        return "hnsw_sq8"
    if isinstance(inner, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(inner, faiss.IndexIVFScalarQuantizer):
        return "ivf_sq8"
    if isinstance(inner, faiss.IndexFlat):
        return "flat"
    raise VectorStoreError(f"unsupported FAISS index type {type(inner).__name__}")


def new_index(
    kind: str, dim: int, plan: IndexPlan, training: np.ndarray | None = None, count: int = 0
) -> Any:
    """An empty index of `kind`; the quantised kinds are trained on `training`, a sample of the
    `count` vectors the index is built for."""
    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    if kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, plan.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = plan.ef_construction
        inner.hnsw.efSearch = plan.ef_search
        return faiss.IndexIDMap2(inner)
    if training is None or len(training) == 0:
        raise VectorStoreError(f"a {kind} index needs training vectors")
    if kind == "hnsw_sq8":
        inner = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, plan.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = plan.ef_construction
        inner.hnsw.efSearch = plan.ef_search
        _widen_range(faiss.downcast_index(inner.storage).sq)
        inner.train(training)
        return faiss.IndexIDMap(inner)
    if kind == "ivf_sq8":
        nlist = min(plan.nlist_for(max(count, len(training))), len(training))
        quantizer = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        quantizer.hnsw.efSearch = 128
        inner = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT, False
        )
        inner.quantizer_trains_alone = 2  # k-means on a flat index, then the centroids go into HNSW
        inner.cp.spherical = True  # unit vectors: centroids on the sphere keep IP assignment fair
        inner.cp.niter = 10
        inner.nprobe = plan.nprobe
        _widen_range(inner.sq)
        sample = training[:: max(1, len(training) // (40 * nlist))]
        inner.train(np.ascontiguousarray(sample))
        inner.referenced_objects = [quantizer]  # keep the Python object alive while `inner` uses it
        inner.own_fields = False
        return faiss.IndexIDMap(inner)
    raise VectorStoreError(f"unknown index kind {kind!r}")


def _widen_range(quantizer: Any) -> None:
    # Vectors added after training can fall outside the sample's per-dimension range and get clipped:
    # a 5% margin halved the worst score error (0.047 -> 0.027) without moving the median (8e-4).
    quantizer.rangestat = faiss.ScalarQuantizer.RS_minmax
    quantizer.rangestat_arg = 0.05


def read_index(file: Path, dim: int, *, mmap: bool) -> Any:
    """Read the index at `file`; with `mmap`, its codes stay in the file (see `mapped_part`)."""
    flags = 0
    if mmap:
        with open(file, "rb") as handle:
            head = handle.read(_INNER_FOURCC_AT + 4)
        # IVF maps its inverted lists; the other kinds map their flat code arrays (IFC).
        is_ivf = head[_INNER_FOURCC_AT : _INNER_FOURCC_AT + 2] == b"Iw"
        flags = faiss.IO_FLAG_MMAP if is_ivf else faiss.IO_FLAG_MMAP_IFC
    try:
        index = faiss.read_index(str(file), flags)
    except RuntimeError as exc:
        raise VectorStoreError(f"the FAISS index {str(file)!r} cannot be read (damaged?): {exc}") from exc
    if not isinstance(index, faiss.IndexIDMap) or index.d != dim:
        raise VectorStoreError(f"{str(file)!r} is not a {dim}-d patentrank index")
    kind_of(index)  # refuses unknown inner types
    return index


def mapped_part(kind: str) -> str:
    """What IO_FLAG_MMAP(_IFC) leaves in the file for `kind` (the rest is read into RAM)."""
    return {
        "flat": "the float32 vectors",
        "hnsw": "the float32 vectors (the graph is resident)",
        "hnsw_sq8": "the SQ8 codes (the graph is resident)",
        "ivf_sq8": "the inverted lists: SQ8 codes and ids (the coarse quantizer is resident)",
    }[kind]


def configure(index: Any, plan: IndexPlan) -> None:
    """Apply the plan's search parameters to an index just read from disk."""
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexHNSW):
        inner.hnsw.efSearch = plan.ef_search
    elif isinstance(inner, faiss.IndexIVF):
        inner.nprobe = plan.nprobe


def vectors_at(index: Any, positions: np.ndarray) -> np.ndarray:
    """The (decoded) vectors at these inner positions."""
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexIVF) and not inner.direct_map.type:
        inner.make_direct_map(True)
    return inner.reconstruct_batch(positions.astype(np.int64))


def rebuilt(index: Any, live_positions: np.ndarray, slots: np.ndarray, kind: str, plan: IndexPlan) -> Any:
    """A new index of `kind` holding the vectors at `live_positions` under ids `slots`, built in chunks
    so that no more than `_CHUNK` decoded float32 vectors exist at once beside the two indexes."""
    training = None
    if kind in ("hnsw_sq8", "ivf_sq8"):
        want = 100_000 if kind == "hnsw_sq8" else 40 * plan.nlist_for(len(live_positions))
        step = max(1, len(live_positions) // max(want, 1))
        training = vectors_at(index, live_positions[::step])
    target = new_index(kind, index.d, plan, training, len(live_positions))
    del training
    for lo in range(0, len(live_positions), _CHUNK):
        chunk = live_positions[lo : lo + _CHUNK]
        target.add_with_ids(vectors_at(index, chunk), slots[lo : lo + _CHUNK])
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexIVF):
        inner.make_direct_map(False)
    return target


def search_all_codes(
    index: Any, matrix: np.ndarray, k: int, position_bitmap: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Brute force over the vectors whose inner positions are set in `position_bitmap`: float32 for
    flat storage, SQ8 codes for the compressed kinds. Returns (scores, inner positions)."""
    inner = faiss.downcast_index(index.index)
    selector = faiss.IDSelectorBitmap(position_bitmap)
    if isinstance(inner, faiss.IndexHNSW):
        storage = faiss.downcast_index(inner.storage)
        return storage.search(matrix, k, params=faiss.SearchParameters(sel=selector))
    if isinstance(inner, faiss.IndexIVF):  # every list, no coarse search (by_residual is off)
        assign = np.broadcast_to(np.arange(inner.nlist, dtype=np.int64), (len(matrix), inner.nlist))
        coarse = np.zeros(assign.shape, dtype=np.float32)
        params = faiss.SearchParametersIVF(sel=selector, nprobe=inner.nlist, max_codes=0)
        queries = np.ascontiguousarray(matrix, dtype=np.float32)
        assign = np.ascontiguousarray(assign)
        scores = np.empty((len(queries), k), dtype=np.float32)
        positions = np.empty((len(queries), k), dtype=np.int64)
        # The Python wrapper of search_preassigned refuses params (the selector): call the C++ one.
        inner.search_preassigned_c(
            len(queries), faiss.swig_ptr(queries), k, faiss.swig_ptr(assign), faiss.swig_ptr(coarse),
            faiss.swig_ptr(scores), faiss.swig_ptr(positions), False, params,
        )  # fmt: skip
        return scores, positions
    raise VectorStoreError("exact search inside the index needs HNSW or IVF")


DECODE_BLOCK = 32_768  # vectors decoded at a time: 32 MiB of float32 at 256-d


def search_codes_at(
    index: Any, matrix: np.ndarray, k: int, positions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Brute force over the vectors at inner `positions` (increasing). Returns (scores, inner positions).

    For an HNSW index the positions' codes are gathered and decoded by the storage's own decoder
    (`sa_decode`), then scored with one matrix product, so the cost follows the matching set. FAISS's
    own brute force with a selector tests every code of the index: 2.4 ns each, 24 ms of a 10M index
    for any filter. IVF keeps its codes in lists, so it takes that path (`search_all_codes`).
    """
    inner = faiss.downcast_index(index.index)
    storage = faiss.downcast_index(inner.storage) if isinstance(inner, faiss.IndexHNSW) else None
    if not isinstance(storage, faiss.IndexFlatCodes) or storage.metric_type != faiss.METRIC_INNER_PRODUCT:
        mask = np.zeros(max(index.ntotal, 1), dtype=bool)
        mask[positions] = True
        return search_all_codes(index, matrix, k, np.packbits(mask, bitorder="little"))
    codes = faiss.rev_swig_ptr(storage.codes.data(), storage.ntotal * storage.code_size)
    codes = codes.reshape(storage.ntotal, storage.code_size)
    queries = np.ascontiguousarray(matrix, dtype=np.float32)
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_positions = np.full((len(queries), k), -1, dtype=np.int64)
    for start in range(0, len(positions), DECODE_BLOCK):
        block = positions[start : start + DECODE_BLOCK]
        scores = np.concatenate([best_scores, queries @ storage.sa_decode(codes[block]).T], axis=1)
        found = np.concatenate([best_positions, np.broadcast_to(block, (len(queries), len(block)))], axis=1)
        if scores.shape[1] > k:
            keep = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            scores, found = np.take_along_axis(scores, keep, axis=1), np.take_along_axis(found, keep, axis=1)
        best_scores, best_positions = scores, found
    order = np.argsort(-best_scores, axis=1, kind="stable")
    return np.take_along_axis(best_scores, order, axis=1), np.take_along_axis(best_positions, order, axis=1)
