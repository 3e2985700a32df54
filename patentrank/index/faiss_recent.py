"""The vectors FaissStore received since it last wrote its main index: exact, in RAM, and in a log.

Rewriting the main index file is what made a small commit cost in proportion to the whole index
(at 1M passages a 1,000-patent commit spent 7 s in FaissStore, mostly writing and fsyncing the 669 MB
file and inserting into the HNSW graph). New vectors therefore go to a flat exact index beside the
main one, and a commit appends only them to ``vectors.recent``: ``RECORD`` = slot (int64) + the float32
vector, after a 16-byte header (magic, format, dimension). The main index takes them in (one HNSW
insertion of the whole lot) and is rewritten only when `FaissStore` merges: past its `recent_limit`,
on a conversion or compaction, or on the first save.

Replay on open keeps a record only when its slot still has a row in the side table and is not in the
main index already (a crash after the main file was replaced but before the log was cleared): so a
torn last record, a record whose side-table row never committed, and a merged record all drop out.

Example:
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> folder = tempfile.TemporaryDirectory()
    >>> recent = RecentVectors(Path(folder.name) / "vectors.recent", dim=2)
    >>> recent.add(np.array([7, 8]), np.array([[1, 0], [0, 1]], dtype=np.float32))
    >>> recent.persist()
    >>> again = RecentVectors(Path(folder.name) / "vectors.recent", dim=2)
    >>> slots, vectors = again.read_log()
    >>> slots.tolist(), vectors.tolist()
    ([7, 8], [[1.0, 0.0], [0.0, 1.0]])
    >>> folder.cleanup()
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import faiss
import numpy as np

from patentrank.index.stores import VectorStoreError

MAGIC = b"PRRV"
FORMAT = 1
_HEADER = struct.Struct("<4sIII")  # magic, format, dim, reserved


class RecentVectors:
    """Slots and exact float32 vectors not yet in the main index; `persist()` makes them durable."""

    def __init__(self, path: Path, dim: int) -> None:
        self.path, self.dim = path, dim
        # The log of the vectors a background merge is taking into the main index (`rotate_log`): kept
        # until the main index file that holds them is written.
        self.merging_path = path.with_name(path.name + ".merging")
        self.record = np.dtype([("slot", "<i8"), ("vector", "<f4", (dim,))])
        self.index = faiss.IndexIDMap(faiss.IndexFlatIP(dim))
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def add(self, slots: np.ndarray, vectors: np.ndarray) -> None:
        self.index.add_with_ids(vectors, slots)
        self._pending.append((slots, vectors))

    def load(self, slots: np.ndarray, vectors: np.ndarray) -> None:
        """Take rows replayed from the log (already durable: not written again)."""
        if len(slots):
            self.index.add_with_ids(np.ascontiguousarray(vectors), slots)

    def slots(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def vectors(self) -> np.ndarray:
        if self.ntotal == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.index.index.reconstruct_n(0, self.ntotal)

    def search(self, matrix: np.ndarray, k: int, bitmap: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, slots) of the k best rows, exact; only the slots set in `bitmap` when one is given."""
        params = None if bitmap is None else faiss.SearchParameters(sel=faiss.IDSelectorBitmap(bitmap))
        return self.index.search(matrix, k, params=params)

    def persist(self) -> None:
        """Append what was added since the last call to the log and fsync it."""
        if not self._pending:
            return
        rows = sum(len(slots) for slots, _ in self._pending)
        out = np.empty(rows, dtype=self.record)
        at = 0
        for slots, vectors in self._pending:
            out["slot"][at : at + len(slots)] = slots
            out["vector"][at : at + len(slots)] = vectors
            at += len(slots)
        try:
            with open(self.path, "ab") as handle:
                if handle.tell() == 0:
                    handle.write(_HEADER.pack(MAGIC, FORMAT, self.dim, 0))
                handle.write(out.tobytes())
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise VectorStoreError(f"could not append to {self.path}: {exc}") from exc
        self._pending.clear()

    def read_log(self) -> tuple[np.ndarray, np.ndarray]:
        """(slots, vectors) of every whole record in the logs (the merging one first), each slot once; a
        torn last record is cut off its file."""
        parts = [self._read_file(self.merging_path), self._read_file(self.path)]
        slots = np.concatenate([slots for slots, _ in parts])
        vectors = np.concatenate([vectors for _, vectors in parts])
        # A crash while `rotate_log` appended leaves records in both files: a slot is never reused, so
        # its two copies are the same vector.
        _, first = np.unique(slots, return_index=True)
        if len(first) < len(slots):
            keep = np.sort(first)
            slots, vectors = slots[keep], vectors[keep]
        return slots, np.ascontiguousarray(vectors)

    def _read_file(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        empty = np.zeros(0, dtype=np.int64), np.zeros((0, self.dim), dtype=np.float32)
        if not path.exists():
            return empty
        data = path.read_bytes()
        if len(data) < _HEADER.size:
            path.unlink()  # a crash while writing the header: nothing was acknowledged
            return empty
        magic, fmt, dim, _ = _HEADER.unpack_from(data)
        if magic != MAGIC or fmt != FORMAT or dim != self.dim:
            raise VectorStoreError(
                f"{str(path)!r} is not a {self.dim}-d patentrank vector log (format {FORMAT}): "
                "restore the folder from a backup, or rebuild the index"
            )
        whole = (len(data) - _HEADER.size) // self.record.itemsize
        end = _HEADER.size + whole * self.record.itemsize
        if end < len(data):
            with open(path, "rb+") as handle:  # a crash mid-append: that commit never completed
                handle.truncate(end)
        rows = np.frombuffer(data, dtype=self.record, count=whole, offset=_HEADER.size)
        return rows["slot"].astype(np.int64), np.ascontiguousarray(rows["vector"], dtype=np.float32)

    def rotate_log(self) -> None:
        """Make the log (everything persisted so far) the merging log, so that later commits append to a
        new log while a background merge takes these vectors into the main index. A merging log left by
        a crash still holds records the main index lacks: the log is appended to it instead."""
        try:
            if not self.path.exists():
                return
            if not self.merging_path.exists():
                os.replace(self.path, self.merging_path)
                return
            data = self.path.read_bytes()[_HEADER.size :]
            with open(self.merging_path, "ab") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            self.path.unlink()
        except OSError as exc:
            raise VectorStoreError(f"could not hand {self.path} to a merge: {exc}") from exc

    def drop_first(self, n: int) -> None:
        """Forget the first `n` rows in RAM (a background merge took them into the main index); rows
        added since stay, with what is not yet persisted."""
        rest = self.ntotal - n
        slots = self.slots()[n:]
        vectors = self.index.index.reconstruct_n(n, rest) if rest > 0 else None
        self.index = faiss.IndexIDMap(faiss.IndexFlatIP(self.dim))
        if vectors is not None:
            self.index.add_with_ids(vectors, slots)

    def clear(self) -> None:
        """Forget everything in RAM (after a merge into the main index)."""
        self.index = faiss.IndexIDMap(faiss.IndexFlatIP(self.dim))
        self._pending.clear()

    def remove_log(self) -> None:
        """Delete both logs: call only once the main index file holds every record (and is fsynced)."""
        self.remove_merging_log()
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise VectorStoreError(f"could not remove {self.path}: {exc}") from exc

    def remove_merging_log(self) -> None:
        """Delete the merging log: call only once the main index file holds its records (fsynced)."""
        try:
            self.merging_path.unlink(missing_ok=True)
        except OSError as exc:
            raise VectorStoreError(f"could not remove {self.merging_path}: {exc}") from exc
