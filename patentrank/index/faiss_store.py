"""`FaissStore`: passage vectors in FAISS (exact, compressed past a size) with filters inside the search."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from patentrank.index import faiss_fields, faiss_kinds, faiss_merge
from patentrank.index.faiss_columns import FilterColumns
from patentrank.index.faiss_kinds import IndexPlan
from patentrank.index.faiss_merge import BackgroundMerges
from patentrank.index.faiss_recent import RecentVectors
from patentrank.index.faiss_search import AllowedSlots, FaissSearch
from patentrank.index.filters import PassageFields
from patentrank.index.stores import VectorStoreError, check_ids, check_upsert

log = logging.getLogger(__name__)

INDEX_FILE = "vectors.faiss"
RECENT_FILE = "vectors.recent"
FIELDS_FILE = "fields.sqlite"

# BLAS for batches of 20+ queries: 5-8x faster exact search than faiss 1.15's default of 128000.
if faiss.cvar.distance_compute_blas_threshold > 20:
    faiss.cvar.distance_compute_blas_threshold = 20


class FaissStore(FaissSearch, BackgroundMerges):
    """Vectors in a FAISS index, the filterable fields of each passage in a SQLite table beside it.

    Layout of the folder `path`: ``vectors.faiss`` (FAISS ids are internal *slots*),
    ``vectors.recent`` (the vectors added since that file was last written, module `faiss_recent`)
    and ``fields.sqlite`` (passage id -> slot and `PassageFields`). New vectors go to an exact flat
    index of recent vectors, searched beside the main one, and `save()` appends just them to the
    log: a commit costs in proportion to its batch. The main index takes them in and is rewritten
    once more than `recent_limit` have gathered, or on a conversion or compaction.

    The main index's kind follows the number of live passages (`IndexPlan`, module `faiss_kinds`):
    exact (IndexFlatIP) up to `hnsw_threshold`, then HNSW over 8-bit scalar-quantised codes
    (IndexHNSWSQ, efSearch 256: the smallest that kept recall@100 >= 0.95 under a 12% filter at 1M,
    docs/benchmarks-store.md). IVF over SQ8 codes above `ivf_threshold` is opt-in (None by default):
    2.7x less RAM and 6x faster to build, but filtered recall fell to 0.77-0.91 at 1M. An upsert that
    takes the count into a higher band converts at once, chunk by chunk. Replaced or deleted passages
    leave dead slots (but in a flat main index) that searches skip; `save()` rebuilds once they pass
    `compact_fraction`. Files written by earlier versions (flat, or HNSW over float32) keep working.

    With `mmap=True` the index is read with FAISS's memory-mapping flags: the vector codes (or the
    IVF lists) stay in the file and the OS pages them in; it is read into RAM only to merge, convert,
    compact, or delete from a flat index.

    Filters are evaluated over in-memory columns loaded from the side table (`FilterColumns`), inside
    the search (`FaissSearch`). Past `recent_limit`, a compressed main index takes the recent vectors
    in on a background thread (`faiss_merge`), so that commit does not wait for the graph insertion.

    Example (three-dimensional vectors; an embedder's have 384 or 1024):
        >>> import tempfile
        >>> import numpy as np
        >>> from patentrank.index.filters import PassageFields, SearchFilter
        >>> folder = tempfile.TemporaryDirectory()
        >>> store = FaissStore(folder.name, dim=3)
        >>> vectors = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0]], dtype=np.float32)
        >>> store.upsert([1, 2], vectors, [PassageFields("CN1"), PassageFields("US2", codes=("H04L9/32",))])
        >>> query = np.array([1.0, 0.0, 0.0], dtype=np.float32)
        >>> [(pid, round(score, 2)) for pid, score in store.search(query, k=10)[0]]
        [(1, 1.0), (2, 0.6)]
        >>> [pid for pid, _ in store.search(query, k=10, flt=SearchFilter(code_prefixes=["H04L"]))[0]]
        [2]
        >>> store.close()  # saves; the folder opens again with what was stored
        >>> with FaissStore(folder.name, dim=3) as again:
        ...     again.count()
        2
        >>> folder.cleanup()
    """

    def __init__(
        self,
        path: str | Path,
        dim: int,
        *,
        hnsw_threshold: int = 200_000,
        ivf_threshold: int | None = None,
        compressed: bool = True,
        hnsw_m: int = 32,
        ef_construction: int = 100,
        ef_search: int = 256,
        nprobe: int = 64,
        nlist: int | None = None,
        exact_filter_limit: int = 20_000,
        compact_fraction: float = 0.2,
        mmap: bool = False,
        recent_limit: int = 50_000,
        background_merges: bool = True,
    ) -> None:
        if dim < 1:
            raise VectorStoreError(f"dim must be positive, got {dim}")
        self.path = Path(path).expanduser()
        self.dim = dim
        self.plan = IndexPlan(
            flat_limit=hnsw_threshold, ivf_limit=ivf_threshold if compressed else None,
            mid_kind="hnsw_sq8" if compressed else "hnsw", hnsw_m=hnsw_m, ef_construction=ef_construction,
            ef_search=ef_search, nlist=nlist, nprobe=nprobe,
        )  # fmt: skip
        self.exact_filter_limit = exact_filter_limit
        self.compact_fraction = compact_fraction
        self.recent_limit = recent_limit
        self._recent = RecentVectors(self.path / RECENT_FILE, dim)
        self._main_dirty = False  # the main index in RAM holds what neither its file nor the log does
        self._lock = threading.RLock()  # the store's state; taken after `_main_lock` where both are
        self._main_lock = threading.RLock()  # the main index: held by a background merge while it inserts
        self.background_merges = background_merges
        self._merger: threading.Thread | None = None
        self._merge_error: BaseException | None = None
        self._allowed_cache: OrderedDict[tuple[Any, ...], AllowedSlots] = OrderedDict()
        self._live_cache: tuple[tuple[int, int], np.ndarray] = ((-1, -1), np.zeros(0, dtype=bool))
        self._version = 0
        self._slots_version = -1
        self._slots_cache = np.zeros(0, dtype=np.int64)
        self._dirty = False
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path / FIELDS_FILE, check_same_thread=False)
            self._db.executescript(faiss_fields.SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise VectorStoreError(f"cannot open the FAISS store at {str(self.path)!r}: {exc}") from exc
        self._check_dim()
        file = self.path / INDEX_FILE
        self.mapped = mmap and file.exists()
        self._index = faiss_kinds.read_index(file, dim, mmap=mmap) if file.exists() else self._new("flat")
        faiss_kinds.configure(self._index, self.plan)
        self._reconcile()

    # ----- opening -----------------------------------------------------------------------------

    def _check_dim(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'dim'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('dim', ?)", (str(self.dim),))
            self._db.commit()
        elif int(row[0]) != self.dim:
            raise VectorStoreError(
                f"the index at {str(self.path)!r} holds {row[0]}-d vectors but {self.dim}-d were asked for: "
                "use the embedder (and embedding_dim) it was built with, or rebuild the index"
            )

    def _new(self, kind: str) -> Any:
        return faiss_kinds.new_index(kind, self.dim, self.plan)

    def _reconcile(self) -> None:
        """Make the side table and the index agree after a crash between their two writes.

        Reads the side table in chunks of `faiss_fields.LOAD_CHUNK` rows: at 10M passages a list of
        all rows as Python tuples would take several GB.
        """
        main_slots = self._index_slots()
        cursor = self._db.execute("SELECT slot, id FROM passages ORDER BY slot")
        parts = [
            np.array(batch, dtype=np.int64)
            for batch in iter(lambda: cursor.fetchmany(faiss_fields.LOAD_CHUNK), [])
        ]
        rows = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)
        logged_slots, logged_vectors = self._recent.read_log()
        # Replay a record only if its side-table row committed and no merge took it in already.
        replay = np.isin(logged_slots, rows[:, 0]) & ~np.isin(logged_slots, main_slots)
        self._recent.load(logged_slots[replay], logged_vectors[replay])
        del logged_vectors
        self._main_end = int(main_slots.max(initial=-1)) + 1
        slots_in_index = np.concatenate([main_slots, logged_slots[replay]])
        without_vector = rows[~np.isin(rows[:, 0], slots_in_index), 1]
        if len(without_vector):
            log.warning("dropping %d passages whose vectors were never saved", len(without_vector))
            faiss_fields.delete_ids(self._db, without_vector)
            self._db.commit()
            rows = rows[np.isin(rows[:, 0], slots_in_index)]
        # Past every slot ever written, the skipped log records' too: a reused slot would replay them.
        top = int(max(main_slots.max(initial=-1), logged_slots.max(initial=-1), rows[:, 0].max(initial=-1)))
        self._slot_ids = np.full(top + 1, -1, dtype=np.int64)
        self._slot_ids[rows[:, 0]] = rows[:, 1]
        self._columns = FilterColumns()
        cursor = self._db.execute(
            "SELECT slot, language, jurisdiction, codes, priority, filing, publication "
            "FROM passages ORDER BY slot"
        )
        for batch in iter(lambda: cursor.fetchmany(faiss_fields.LOAD_CHUNK), []):
            columns = list(zip(*batch, strict=True))
            self._columns.add_columns(np.array(columns[0], dtype=np.int64), *columns[1:])
        self._next_slot = top + 1
        self._count = len(rows)
        orphans = main_slots[self._slot_ids[main_slots] < 0]
        if len(orphans) and self.kind == "flat":
            self._writable()
            self._index.remove_ids(orphans)
        self._main_ntotal = int(self._index.ntotal)

    # ----- small helpers -----------------------------------------------------------------------

    def _writable(self) -> None:
        """A memory-mapped index is read-only inside FAISS (adding to it aborts): read it into RAM."""
        if self.mapped:
            log.info("reading the memory-mapped index at %s into memory for a write", self.path)
            self._index = faiss_kinds.read_index(self.path / INDEX_FILE, self.dim, mmap=False)
            faiss_kinds.configure(self._index, self.plan)
            self.mapped = False

    def _drop_slots(self, slots: np.ndarray) -> None:
        if len(slots) == 0:
            return
        self._slot_ids[slots] = -1
        in_main = slots[slots < self._main_end]
        if self.kind == "flat" and len(in_main):
            self._writable()
            self._index.remove_ids(in_main)  # a crash before the next write leaves orphans _reconcile drops
            self._main_ntotal = int(self._index.ntotal)
        # The other kinds, and the recent vectors, keep dead slots: searches skip them, merges drop them.

    def _changed(self) -> None:
        self._version += 1
        self._dirty = True
        self._allowed_cache.clear()

    # ----- writing -----------------------------------------------------------------------------

    def upsert(self, ids: Sequence[int], vectors: np.ndarray, fields: Sequence[PassageFields]) -> None:
        """Insert or replace passages (same id = replace); durable after `save()`."""
        id_array, matrix, fields = check_upsert(ids, vectors, fields, self.dim)
        if len(id_array) == 0:
            return
        with self._main_lock_if_flat(), self._lock:  # a replaced passage leaves a flat main index at once
            old_slots = faiss_fields.slots_of(self._db, id_array)
            self._drop_slots(old_slots)
            slots = np.arange(self._next_slot, self._next_slot + len(id_array), dtype=np.int64)
            self._recent.add(slots, matrix)
            self._db.executemany(
                "INSERT OR REPLACE INTO passages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (int(i), int(s), f.patent_id, f.language, f.jurisdiction, f.codes_text,
                     int(f.priority), int(f.filing), int(f.publication))
                    for i, s, f in zip(id_array, slots, fields, strict=True)
                ],
            )  # fmt: skip
            self._next_slot += len(id_array)
            if len(self._slot_ids) < self._next_slot:
                grown = np.full(max(self._next_slot, 2 * len(self._slot_ids)), -1, dtype=np.int64)
                grown[: len(self._slot_ids)] = self._slot_ids
                self._slot_ids = grown
            self._slot_ids[slots] = id_array
            self._columns.add(slots, fields)
            self._count += len(id_array) - len(old_slots)
            self._changed()
        if self._upward() or self._recent.ntotal > 2 * self.recent_limit:
            self.wait_for_merge()
            with self._main_lock, self._lock:
                if self._upward():
                    self._rebuild()  # now, not at save(): a bulk load must not pile up float32 vectors
                elif self._recent.ntotal > 2 * self.recent_limit:
                    self._merge_recent()  # upserts without a save: RAM stays bounded (the next save writes)

    def delete(self, ids: Sequence[int]) -> None:
        """Remove passages by id; unknown ids are ignored."""
        id_array = check_ids(ids)
        with self._main_lock_if_flat(), self._lock:
            slots = faiss_fields.slots_of(self._db, id_array)
            if len(slots) == 0:
                return
            self._drop_slots(slots)
            faiss_fields.delete_ids(self._db, id_array)
            self._count -= len(slots)
            self._changed()

    def save(self) -> None:
        """Make every change durable: append the recent vectors to the log and commit the side table.
        A merge into a flat main index, a conversion, a compaction and the first write are done here
        (the main index written atomically); merges into a compressed one in the background."""
        self._raise_merge_error()
        with self._lock:
            file = self.path / INDEX_FILE
            if not self._dirty and file.exists():
                return
            merging = self.merging
            if merging or not (self._main_dirty or not file.exists() or self._write_due()):
                try:
                    self._recent.persist()  # the log first: a crash now leaves records replay skips
                    self._db.commit()
                except (OSError, RuntimeError, sqlite3.Error) as exc:
                    raise VectorStoreError(f"could not save the FAISS store at {self.path}: {exc}") from exc
                self._dirty = False
                if not merging and self._recent.ntotal > self.recent_limit:
                    faiss_merge.start(self, file)
                return
        self.wait_for_merge()
        with self._main_lock, self._lock:
            try:
                self._write_main(file)
            except (OSError, RuntimeError, sqlite3.Error) as exc:
                raise VectorStoreError(f"could not save the FAISS store at {self.path}: {exc}") from exc
            self._dirty = False

    def _write_main(self, file: Path) -> None:
        self._merge_recent()
        self._maybe_rebuild()
        faiss_merge.write_index_file(self._index, file)  # the index first: a crash now leaves orphans
        self._db.commit()
        self._recent.remove_log()  # after the commit: a crash before it leaves records replay skips
        self._main_dirty = False

    def _upward(self) -> bool:
        return faiss_kinds.rank(self.plan.kind_for(self._count)) > faiss_kinds.rank(self.kind)

    def _write_due(self) -> bool:
        """Whether `save` must write the main index itself (else the log, and maybe a background merge)."""
        stored = self._main_ntotal + self._recent.ntotal
        synchronous_merge = self.kind == "flat" or not self.background_merges
        return (
            self._upward()
            or (synchronous_merge and self._recent.ntotal > self.recent_limit)
            or self.dead > self.compact_fraction * stored
        )

    def _main_lock_if_flat(self) -> Any:
        return self._main_lock if self.kind == "flat" else contextlib.nullcontext()

    def _merge_recent(self) -> None:
        """Move the live recent vectors into the main index (one insertion for all of them)."""
        if self._recent.ntotal:
            slots = self._recent.slots()
            live = self._slot_ids[slots] >= 0
            if live.any():
                self._writable()
                self._index.add_with_ids(self._recent.vectors()[live], slots[live])
                self._main_ntotal = int(self._index.ntotal)
            self._recent.clear()
            self._main_dirty = True
            self._changed()
        self._main_end = self._next_slot

    def _maybe_rebuild(self) -> None:
        target = self.plan.kind_for(self._count)
        upward = faiss_kinds.rank(target) > faiss_kinds.rank(self.kind)
        if upward or (self.kind != "flat" and self.dead > self.compact_fraction * self._index.ntotal):
            self._rebuild()

    def _rebuild(self) -> None:
        """Rebuild into the kind for the live count (a conversion, or a compaction dropping dead slots)."""
        self._merge_recent()
        self._writable()
        target = self.plan.kind_for(self._count)
        if faiss_kinds.rank(target) < faiss_kinds.rank(self.kind) and self.kind != "flat":
            target = self.kind if self.kind != "hnsw" else self.plan.mid_kind  # never down a band
        log.info("rebuilding %d vectors from %s into %s; this takes a while", self._count, self.kind, target)
        slots = self._index_slots()
        live = np.flatnonzero(self._slot_ids[slots] >= 0)
        if len(live) == 0:
            self._index = self._new("flat")
        else:
            self._index = faiss_kinds.rebuilt(self._index, live, slots[live], target, self.plan)
        self._main_ntotal = int(self._index.ntotal)
        self._main_dirty = True
        self._changed()

    # ----- reading -----------------------------------------------------------------------------

    def count(self) -> int:
        """Number of passages stored."""
        return self._count

    def get_fields(self, ids: Sequence[int]) -> dict[int, PassageFields]:
        """The stored fields of these passages (unknown ids are absent)."""
        id_array = check_ids(ids)
        with self._lock:
            return faiss_fields.fields_of(self._db, id_array)

    def _slots_of_patents(self, patent_ids: list[str]) -> list[int]:
        return faiss_fields.slots_of_patents(self._db, patent_ids)

    def health(self) -> dict[str, object]:
        """{'ok', 'detail', 'backend', 'kind', 'count', 'dead', 'recent', 'dim', 'mapped', 'path'}; never
        raises."""
        try:
            with self._lock:
                self._db.execute("SELECT 1").fetchone()
                return {
                    "ok": True,
                    "detail": f"FAISS {self.kind} index, {self._count} passages",
                    "backend": "faiss",
                    "kind": self.kind,
                    "count": self._count,
                    "dead": self.dead,
                    "recent": self._recent.ntotal,
                    "merging": self.merging,
                    "dim": self.dim,
                    "mapped": faiss_kinds.mapped_part(self.kind) if self.mapped else "",
                    "path": str(self.path),
                }
        except Exception as exc:  # health must report, never raise
            return {"ok": False, "detail": f"FAISS store at {self.path} failed: {exc}", "backend": "faiss"}

    def close(self) -> None:
        """Wait for a background merge, save pending changes and release the side table."""
        self.wait_for_merge()
        if self._dirty:
            self.save()
        self.wait_for_merge()
        with self._lock:
            self._db.close()

    def __enter__(self) -> FaissStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
