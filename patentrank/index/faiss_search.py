"""FaissStore's search side: a filter becomes a slot bitmap, then exact, widened or brute-force search."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import faiss
import numpy as np

from patentrank.index import faiss_kinds
from patentrank.index.faiss_columns import FilterColumns
from patentrank.index.faiss_kinds import IndexPlan
from patentrank.index.faiss_recent import RecentVectors
from patentrank.index.filters import SearchFilter
from patentrank.index.stores import check_queries


class AllowedSlots:
    """The slots a filter lets through, kept as the bitmap FAISS reads (n/8 bytes, against 8 bytes per
    matching slot for a list); the sorted slots are unpacked only for the brute-force path.

    Example:
        >>> allowed = AllowedSlots(np.array([True, False, True, True]))
        >>> allowed.total, allowed.count_below(3), allowed.slots_below(3).tolist()
        (3, 2, [0, 2])
    """

    __slots__ = ("bitmap", "size", "total")

    def __init__(self, mask: np.ndarray) -> None:
        self.bitmap = np.packbits(mask, bitorder="little")  # IDSelectorBitmap's byte and bit order
        self.size = len(mask)
        self.total = int(np.count_nonzero(mask))

    def count_below(self, end: int) -> int:
        """How many allowed slots are below `end`."""
        end = min(end, self.size)
        whole = int(np.bitwise_count(self.bitmap[: end // 8]).sum())
        return whole + int(np.count_nonzero(self._bits(end // 8 * 8, end)))

    def slots_below(self, end: int) -> np.ndarray:
        """The allowed slots below `end`, increasing."""
        return np.flatnonzero(self._bits(0, min(end, self.size)))

    def slots(self) -> np.ndarray:
        """Every allowed slot, increasing."""
        return self.slots_below(self.size)

    def _bits(self, start: int, end: int) -> np.ndarray:
        """The mask over slots [start, end); `start` is a multiple of 8."""
        unpacked = np.unpackbits(self.bitmap[start // 8 : (end + 7) // 8], bitorder="little")
        return unpacked[: end - start].view(bool)


class FaissSearch:
    """The read path of `FaissStore` (mixed into it; the attributes are the store's).

    A filter is evaluated over `FilterColumns` into a bitmap of matching slots (`AllowedSlots`). Flat
    indexes search exactly with the bitmap as an IDSelector. The approximate kinds search a small
    matching set (at most `exact_filter_limit`, or under 2% of the passages) by brute force over the
    index's own codes, gathered for just those vectors (`faiss_kinds.search_codes_at`); a larger one
    with the beam (HNSW efSearch) or the probed lists (IVF nprobe) widened by 1/selectivity, answering
    any row that comes back short by brute force. The recent vectors (slots from `_main_end` on, not
    yet merged into the main index) are searched exactly beside it, with the same bitmap, and the two
    lists merged by score.
    """

    dim: int
    plan: IndexPlan
    exact_filter_limit: int
    _lock: threading.RLock
    _main_lock: threading.RLock
    _main_ntotal: int
    _allowed_cache: OrderedDict[tuple[Any, ...], AllowedSlots]
    _live_cache: tuple[tuple[int, int], np.ndarray]
    _slot_ids: np.ndarray
    _next_slot: int
    _count: int
    _columns: FilterColumns
    _index: Any
    _recent: RecentVectors
    _main_end: int
    _version: int
    _slots_version: int
    _slots_cache: np.ndarray

    @property
    def kind(self) -> str:
        """'flat' (exact), 'hnsw_sq8' or 'ivf_sq8' (compressed, approximate), or 'hnsw' (float32 HNSW)."""
        return faiss_kinds.kind_of(self._index)

    @property
    def dead(self) -> int:
        """Vectors still held whose passage was replaced or deleted (recent, or in a non-flat main index)."""
        return self._main_ntotal + self._recent.ntotal - self._count

    def _index_slots(self) -> np.ndarray:
        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def _slots_of_patents(self, patent_ids: list[str]) -> list[int]:
        raise NotImplementedError

    def _live(self) -> np.ndarray:
        """Boolean mask of the slots that hold a stored passage, kept until the next change."""
        key = (self._version, self._next_slot)
        if self._live_cache[0] != key:
            self._live_cache = (key, self._slot_ids[: self._next_slot] >= 0)
        return self._live_cache[1]

    def _allowed(self, flt: SearchFilter | None) -> AllowedSlots | None:
        """The slots `flt` lets through, or None when every vector in the index may be returned."""
        if (flt is None or flt.is_empty()) and self.dead == 0:
            return None
        flt = flt or SearchFilter()
        key = (flt.date_field, str(flt.before), str(flt.after), *map(tuple, (
            flt.code_prefixes, flt.languages, flt.jurisdictions, flt.exclude_patents)))  # fmt: skip
        cached = self._allowed_cache.get(key)
        if cached is None:
            cached = AllowedSlots(self._columns.mask(flt, self._live(), self._slots_of_patents))
            self._allowed_cache[key] = cached
            if len(self._allowed_cache) > 32:
                self._allowed_cache.popitem(last=False)
        return cached

    def matching_ids(self, flt: SearchFilter | None = None) -> np.ndarray:
        """Sorted ids of the stored passages that `flt` lets through (what searches draw from)."""
        with self._lock:
            allowed = self._allowed(flt)
            slots = np.flatnonzero(self._live()) if allowed is None else allowed.slots()
            return np.sort(self._slot_ids[slots])

    def search(
        self, queries: np.ndarray, k: int, flt: SearchFilter | None = None
    ) -> list[list[tuple[int, float]]]:
        """For each query row, up to k (passage id, inner product) pairs, best first, all matching `flt`."""
        matrix = check_queries(queries, k, self.dim)
        with self._main_lock, self._lock:  # in this order everywhere: a background merge holds the first
            allowed = self._allowed(flt)
            if self._count == 0 or (allowed is not None and allowed.total == 0):
                return [[] for _ in range(len(matrix))]
            scores, slots = self._search_main(matrix, k, allowed)
            if self._recent.ntotal:
                recent = self._recent.search(matrix, k, None if allowed is None else allowed.bitmap)
                scores, slots = _best_of(k, (scores, slots), recent)
            return [
                [(int(self._slot_ids[s]), float(d)) for s, d in zip(row_s, row_d, strict=True) if s >= 0]
                for row_s, row_d in zip(slots, scores, strict=True)
            ]

    def _search_main(
        self, matrix: np.ndarray, k: int, allowed: AllowedSlots | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if self._index.ntotal == 0:
            return np.full((len(matrix), k), -np.inf, np.float32), np.full((len(matrix), k), -1, np.int64)
        if self.kind == "flat":
            params = faiss.SearchParameters(sel=faiss.IDSelectorBitmap(allowed.bitmap)) if allowed else None
            return self._index.search(matrix, k, params=params)
        ivf = self.kind == "ivf_sq8"
        width = self.plan.nprobe if ivf else max(self.plan.ef_search, k)
        if allowed is None:
            return self._index.search(matrix, k, params=self._params(width, None))
        in_main = allowed.count_below(self._main_end)
        recent_live = np.count_nonzero(self._live()[self._main_end :])
        main_count = self._count - int(recent_live)
        if in_main <= self.exact_filter_limit or in_main < 0.02 * main_count:
            return self._search_exact(matrix, k, allowed.slots_below(self._main_end))
        # A filter that keeps a fraction s of the passages needs a beam (or lists) about 1/s times wider.
        limit = faiss.downcast_index(self._index.index).nlist if ivf else 4096
        widened = max(min(int(width * main_count / in_main), limit), width)
        scores, slots = self._index.search(matrix, k, params=self._params(widened, allowed.bitmap))
        short = np.flatnonzero((slots >= 0).sum(axis=1) < min(k, in_main))
        if len(short):
            scores[short], slots[short] = self._search_exact(
                matrix[short], k, allowed.slots_below(self._main_end)
            )
        return scores, slots

    def _params(self, width: int, bitmap: np.ndarray | None) -> Any:
        selector = None if bitmap is None else faiss.IDSelectorBitmap(bitmap)
        if self.kind == "ivf_sq8":
            return faiss.SearchParametersIVF(sel=selector, nprobe=width)
        return faiss.SearchParametersHNSW(sel=selector, efSearch=width)

    def _search_exact(self, matrix: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Brute force over the matching vectors only, inside the index's own codes."""
        if self._slots_version != self._version:
            self._slots_cache = self._index_slots()  # 8 bytes a vector: copied once per change, not per query
            self._slots_version = self._version
        index_slots = self._slots_cache  # increasing: slots are appended in order, never reordered
        positions = np.searchsorted(index_slots, allowed)
        scores, found = faiss_kinds.search_codes_at(self._index, matrix, k, positions)
        slots = np.where(found >= 0, index_slots[np.maximum(found, 0)], -1)
        return scores, slots


def _best_of(k: int, *lists: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The k best (score, slot) per row of several result lists; missing entries (slot -1) last."""
    scores = np.concatenate([np.where(slots >= 0, scores, -np.inf) for scores, slots in lists], axis=1)
    slots = np.concatenate([slots for _, slots in lists], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(slots, order, axis=1)

