"""`FaissStore`: passage vectors in FAISS (exact, compressed past a size) with filters inside the search."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from patentrank.index import faiss_kinds
from patentrank.index.faiss_columns import FilterColumns
from patentrank.index.faiss_kinds import IndexPlan
from patentrank.index.faiss_search import FaissSearch
from patentrank.index.filters import PassageFields
from patentrank.index.stores import VectorStoreError, check_ids, check_upsert

log = logging.getLogger(__name__)

INDEX_FILE = "vectors.faiss"
FIELDS_FILE = "fields.sqlite"
_SQL_CHUNK = 10_000  # ids per `IN (...)` list; SQLite allows 32766 parameters
_LOAD_CHUNK = 200_000  # side-table rows per step when loading the filter columns

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS passages (
    id INTEGER PRIMARY KEY, slot INTEGER NOT NULL UNIQUE, patent_id TEXT NOT NULL,
    language TEXT NOT NULL, jurisdiction TEXT NOT NULL, codes TEXT NOT NULL,
    priority INTEGER NOT NULL, filing INTEGER NOT NULL, publication INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS passages_patent ON passages (patent_id);
"""

# BLAS for batches of 20+ queries: 5-8x faster exact search than faiss 1.15's default of 128000.
if faiss.cvar.distance_compute_blas_threshold > 20:
    faiss.cvar.distance_compute_blas_threshold = 20


class FaissStore(FaissSearch):
    """Vectors in a FAISS index, the filterable fields of each passage in a SQLite table beside it.

    Layout of the folder `path`: ``vectors.faiss`` (FAISS ids are internal *slots*) and
    ``fields.sqlite`` (passage id -> slot and `PassageFields`). The index kind follows the number
    of live passages (`IndexPlan`, module `faiss_kinds`): exact (IndexFlatIP) up to
    `hnsw_threshold`, then HNSW over 8-bit scalar-quantised codes (IndexHNSWSQ, efSearch 256: the
    smallest that kept recall@100 >= 0.95 under a 12% filter at 1M, docs/benchmarks-store.md). IVF
    over SQ8 codes above `ivf_threshold` is opt-in (None by default): 2.7x less RAM and 6x faster
    to build, but filtered recall fell to 0.77-0.91 at 1M. An upsert that takes the count into a
    higher band converts the index at once, chunk by chunk, so a bulk load never holds more than
    the flat band's float32 vectors. HNSW and IVF here do not remove vectors, so a replaced or
    deleted passage leaves a dead slot that searches skip; `save()` rebuilds once dead slots pass
    `compact_fraction`. Files written by earlier versions (flat, or HNSW over float32) open and keep working.

    With `mmap=True` the index is read with FAISS's memory-mapping flags: the vector codes (or the
    IVF lists) stay in the file and the OS pages them in; the first write reads it into RAM.

    Filters are evaluated over in-memory columns loaded from the side table (`FilterColumns`, the
    semantics of `SearchFilter.matches`); the matching slots go to FAISS as a bitmap IDSelector, so a
    filtered query returns k results whenever k passages match (a brute-force pass over the
    matching codes for small matching sets; a widened beam or more probed lists otherwise, falling
    back to brute force for any row that comes back short).

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
        ef_construction: int = 200,
        ef_search: int = 256,
        nprobe: int = 64,
        nlist: int | None = None,
        exact_filter_limit: int = 20_000,
        compact_fraction: float = 0.2,
        mmap: bool = False,
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
        self._lock = threading.RLock()
        self._allowed_cache: OrderedDict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._version = 0
        self._slots_version = -1
        self._slots_cache = np.zeros(0, dtype=np.int64)
        self._dirty = False
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path / FIELDS_FILE, check_same_thread=False)
            self._db.executescript(_SCHEMA)
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

        Reads the side table in chunks of `_LOAD_CHUNK` rows: at 10M passages a list of all rows
        as Python tuples would take several GB.
        """
        slots_in_index = self._index_slots()
        cursor = self._db.execute("SELECT slot, id FROM passages ORDER BY slot")
        parts = [np.array(batch, dtype=np.int64) for batch in iter(lambda: cursor.fetchmany(_LOAD_CHUNK), [])]
        rows = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)
        without_vector = rows[~np.isin(rows[:, 0], slots_in_index), 1]
        if len(without_vector):
            log.warning("dropping %d passages whose vectors were never saved", len(without_vector))
            for chunk in _chunks(without_vector):
                self._db.execute(f"DELETE FROM passages WHERE id IN ({_marks(chunk)})", chunk.tolist())
            self._db.commit()
            rows = rows[np.isin(rows[:, 0], slots_in_index)]
        top = int(max(slots_in_index.max(initial=-1), rows[:, 0].max(initial=-1)))
        self._slot_ids = np.full(top + 1, -1, dtype=np.int64)
        self._slot_ids[rows[:, 0]] = rows[:, 1]
        self._columns = FilterColumns()
        cursor = self._db.execute(
            "SELECT slot, language, jurisdiction, codes, priority, filing, publication "
            "FROM passages ORDER BY slot"
        )
        for batch in iter(lambda: cursor.fetchmany(_LOAD_CHUNK), []):
            columns = list(zip(*batch, strict=True))
            self._columns.add_columns(np.array(columns[0], dtype=np.int64), *columns[1:])
        self._next_slot = top + 1
        self._count = len(rows)
        orphans = slots_in_index[self._slot_ids[slots_in_index] < 0]
        if len(orphans) and self.kind == "flat":
            self._writable()
            self._index.remove_ids(orphans)

    # ----- small helpers -----------------------------------------------------------------------

    def _slots_of(self, ids: np.ndarray) -> np.ndarray:
        found: list[tuple[int, int]] = []
        for chunk in _chunks(ids):
            sql = f"SELECT slot, id FROM passages WHERE id IN ({_marks(chunk)})"
            found.extend(self._db.execute(sql, chunk.tolist()).fetchall())
        return np.array([slot for slot, _ in found], dtype=np.int64)

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
        if self.kind == "flat":
            self._index.remove_ids(slots)
        # The other kinds keep the vectors as dead slots: searches skip them and save() compacts.

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
        with self._lock:
            self._writable()
            old_slots = self._slots_of(id_array)
            self._drop_slots(old_slots)
            slots = np.arange(self._next_slot, self._next_slot + len(id_array), dtype=np.int64)
            self._index.add_with_ids(matrix, slots)
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
            if faiss_kinds.rank(self.plan.kind_for(self._count)) > faiss_kinds.rank(self.kind):
                self._rebuild()  # now, not at save(): a bulk load must not pile up float32 vectors

    def delete(self, ids: Sequence[int]) -> None:
        """Remove passages by id; unknown ids are ignored."""
        id_array = check_ids(ids)
        with self._lock:
            slots = self._slots_of(id_array)
            if len(slots) == 0:
                return
            self._writable()
            self._drop_slots(slots)
            for chunk in _chunks(id_array):
                self._db.execute(f"DELETE FROM passages WHERE id IN ({_marks(chunk)})", chunk.tolist())
            self._count -= len(slots)
            self._changed()

    def save(self) -> None:
        """Convert or compact the index if due, write it atomically, then commit the side table."""
        with self._lock:
            if not self._dirty and (self.path / INDEX_FILE).exists():
                return
            self._maybe_rebuild()
            file = self.path / INDEX_FILE
            tmp = file.with_name(file.name + ".tmp")
            try:
                faiss.write_index(self._index, str(tmp))
                with open(tmp, "rb+") as handle:
                    os.fsync(handle.fileno())
                os.replace(tmp, file)  # the index first: a crash now leaves orphans _reconcile drops
                self._db.commit()
            except (OSError, RuntimeError, sqlite3.Error) as exc:
                raise VectorStoreError(f"could not save the FAISS store at {self.path}: {exc}") from exc
            self._dirty = False

    def _maybe_rebuild(self) -> None:
        target = self.plan.kind_for(self._count)
        upward = faiss_kinds.rank(target) > faiss_kinds.rank(self.kind)
        if upward or (self.kind != "flat" and self.dead > self.compact_fraction * self._index.ntotal):
            self._rebuild()

    def _rebuild(self) -> None:
        """Rebuild into the kind for the live count (a conversion, or a compaction dropping dead slots)."""
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
        self._changed()

    # ----- reading -----------------------------------------------------------------------------

    def count(self) -> int:
        """Number of passages stored."""
        return self._count

    def get_fields(self, ids: Sequence[int]) -> dict[int, PassageFields]:
        """The stored fields of these passages (unknown ids are absent)."""
        id_array = check_ids(ids)
        out: dict[int, PassageFields] = {}
        with self._lock:
            for chunk in _chunks(id_array):
                sql = (
                    "SELECT id, patent_id, language, jurisdiction, codes, priority, filing, publication "
                    f"FROM passages WHERE id IN ({_marks(chunk)})"
                )
                for pid, patent, lang, juris, codes, pri, fil, pub in self._db.execute(sql, chunk.tolist()):
                    codes_tuple = tuple(c for c in codes.split("|") if c)
                    out[int(pid)] = PassageFields(patent, lang, juris, codes_tuple, pri, fil, pub)
        return out

    def _slots_of_patents(self, patent_ids: list[str]) -> list[int]:
        slots: list[int] = []
        for i in range(0, len(patent_ids), _SQL_CHUNK):
            chunk = patent_ids[i : i + _SQL_CHUNK]
            sql = f"SELECT slot FROM passages WHERE patent_id IN ({','.join('?' * len(chunk))})"
            slots.extend(row[0] for row in self._db.execute(sql, chunk))
        return slots

    def health(self) -> dict[str, object]:
        """{'ok', 'detail', 'backend', 'kind', 'count', 'dead', 'dim', 'mapped', 'path'}; never raises."""
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
                    "dim": self.dim,
                    "mapped": faiss_kinds.mapped_part(self.kind) if self.mapped else "",
                    "path": str(self.path),
                }
        except Exception as exc:  # health must report, never raise
            return {"ok": False, "detail": f"FAISS store at {self.path} failed: {exc}", "backend": "faiss"}

    def close(self) -> None:
        """Save pending changes and release the side table."""
        with self._lock:
            if self._dirty:
                self.save()
            self._db.close()

    def __enter__(self) -> FaissStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _chunks(values: np.ndarray) -> list[np.ndarray]:
    return [values[i : i + _SQL_CHUNK] for i in range(0, len(values), _SQL_CHUNK)]


def _marks(chunk: np.ndarray) -> str:
    return ",".join("?" * len(chunk))
