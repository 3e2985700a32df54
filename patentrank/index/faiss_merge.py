"""Background merges of FaissStore: recent vectors go into a compressed main index off the commit path.

Inserting into an HNSW graph is the slowest part of indexing at scale (about 40 s for 54k vectors in a
1.4M-passage graph on two cores), and it used to run inside the `save()` of every commit that passed
`recent_limit`. Now that commit only appends its vectors to the log, as every other commit does, and a
thread takes the recent vectors into the main index and writes the main file:

1. `start` (in `save()`, holding the state lock, the log just fsynced): the recent vectors as they are
   now (a prefix of the recent flat index) are the merge's; the log becomes the merging log
   (`RecentVectors.rotate_log`), so later commits append to a new one.
2. The thread, holding the main-index lock: inserts them; then, with the state lock too, drops them from
   the recent index, so a search sees each vector exactly once; then writes the main file (temporary
   file, fsync, atomic rename) and deletes the merging log.

Searches take the main-index lock, so they wait while the graph changes (as they waited for a merge
inside `save()` before); upserts and commits do not, so indexing goes on beside the merge, on the other
core. A crash at any step leaves the previous main file and both logs: opening replays every logged
vector the main file lacks. One merge runs at a time; a compressed store's `close()` waits for it.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from patentrank.index.stores import VectorStoreError

log = logging.getLogger(__name__)


class BackgroundMerges:
    """The part of `FaissStore` that callers see of background merges (mixed in; the attributes are the
    store's)."""

    path: Path
    _merger: threading.Thread | None
    _merge_error: BaseException | None

    @property
    def merging(self) -> bool:
        """Whether a background merge is taking recent vectors into the main index now."""
        return self._merger is not None and self._merger.is_alive()

    def wait_for_merge(self) -> None:
        """Block until no background merge runs; raise what a failed one raised (once)."""
        merger = self._merger
        if merger is not None:
            merger.join()
        self._raise_merge_error()

    def _raise_merge_error(self) -> None:
        error, self._merge_error = self._merge_error, None
        if error is not None:
            raise VectorStoreError(
                f"a background merge of the FAISS store at {self.path} failed (nothing stored was lost; "
                f"the next save writes the main index again): {error}"
            ) from error


def start(store: Any, file: Path) -> None:
    """Start merging the store's recent vectors into its main index and writing that to `file`, in the
    background (the caller holds `store._lock`, and has just persisted the log)."""
    recent = store._recent
    count, end = recent.ntotal, store._next_slot
    slots, vectors = recent.slots(), recent.vectors()
    recent.rotate_log()
    thread = threading.Thread(
        target=_merge, args=(store, file, count, end, slots, vectors), name="faiss-merge", daemon=True
    )
    store._merger = thread
    thread.start()


def _merge(store: Any, file: Path, count: int, end: int, slots: np.ndarray, vectors: np.ndarray) -> None:
    try:
        with store._main_lock:
            with store._lock:
                live = store._slot_ids[slots] >= 0  # passages deleted since are left out
            store._writable()
            if live.any():
                store._index.add_with_ids(vectors[live], slots[live])
            with store._lock:  # the vectors leave the recent index as they land in the main one
                store._recent.drop_first(count)
                store._main_end = end
                store._main_ntotal = int(store._index.ntotal)
                store._main_dirty = True
                store._changed()
            write_index_file(store._index, file)
            with store._lock:
                store._recent.remove_merging_log()
                store._main_dirty = False
        log.info("merged %d recent vectors into the main index at %s", int(live.sum()), store.path)
    except BaseException as exc:  # reported by the next save(), wait_for_merge() or close()
        log.exception("background merge at %s failed", store.path)
        store._merge_error = exc


def write_index_file(index: Any, file: Path) -> None:
    """Write `index` to `file` atomically: a temporary file, fsynced, renamed over the old one."""
    tmp = file.with_name(file.name + ".tmp")
    faiss.write_index(index, str(tmp))
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, file)
