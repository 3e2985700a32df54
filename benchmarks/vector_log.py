"""Every vector the index stored, logged to disk, and exact (brute-force) neighbours over it.

The log is the benchmark's ground truth for recall: the ids and vectors given to the index's vector
store (float32 in a flat file, so 10M x 256-d is 10 GB on disk, read back in blocks) and
each passage's filterable fields as small numpy columns, tested with `SearchFilter.matches`'s semantics
independently of the stores under test.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from patentrank.index.filters import PassageFields, SearchFilter, date_to_int, normalize_code

_BLOCK = 131_072  # rows per block of the exact search (block x queries float32 scores stay ~150 MB)
_LANGUAGES = ("", "zh", "en")


class VectorLog:
    """Append-only (id, vector, fields) rows; `finish()` before reading."""

    def __init__(self, path: Path, dim: int) -> None:
        self.path, self.dim, self.rows = path, dim, 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "wb")  # noqa: SIM115 - kept open while the index is written
        self._columns: dict[str, list[np.ndarray]] = {}
        self.codes: dict[str, int] = {}  # normalised IPC code -> bit
        self.jurisdictions: dict[str, int] = {"": 0}
        self.column: dict[str, np.ndarray] = {}
        self._unsaved: dict[str, list[np.ndarray]] = {}  # columns of rows `save_new_rows` has not written

    def save_new_rows(self, folder: Path) -> dict[str, Any]:
        """Write the columns of the rows appended since the last call to `folder/<rows>.npz`, flush the
        vectors, and return what `reopen` needs (so a stopped run can go on from here)."""
        self._file.flush()
        os.fsync(self._file.fileno())
        folder.mkdir(parents=True, exist_ok=True)
        if self._unsaved:
            new = {name: np.concatenate(parts) for name, parts in self._unsaved.items()}
            np.savez(folder / f"{self.rows:012d}.npz", **new)
        self._unsaved = {}
        return {"rows": self.rows, "codes": self.codes, "jurisdictions": self.jurisdictions}

    @classmethod
    def reopen(cls, path: Path, dim: int, folder: Path, saved: dict[str, Any]) -> VectorLog:
        """The log as `save_new_rows` left it: vectors past the saved rows cut off, columns read back."""
        log = cls.__new__(cls)
        log.path, log.dim, log.rows = path, dim, int(saved["rows"])
        log.codes, log.jurisdictions = dict(saved["codes"]), dict(saved["jurisdictions"])
        chunks = sorted(folder.glob("*.npz"))
        for stale in [f for f in chunks if int(f.stem) > log.rows]:  # saved, then stopped before recorded
            stale.unlink()
        chunks = [f for f in chunks if int(f.stem) <= log.rows]
        parts = [dict(np.load(f)) for f in chunks]
        log._columns = {n: [np.concatenate([p[n] for p in parts])] for n in parts[0]} if parts else {}
        if sum(len(p["id"]) for p in parts) != log.rows:
            raise RuntimeError(f"the vector log's saved columns in {folder} do not add up to {log.rows} rows")
        log._unsaved, log.column = {}, {}
        log._file = open(path, "r+b")  # noqa: SIM115 - kept open while the index is written
        log._file.truncate(log.rows * dim * 4)
        log._file.seek(0, os.SEEK_END)
        return log

    def append(self, ids: Sequence[int], vectors: np.ndarray, fields: Sequence[PassageFields]) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        self._file.write(vectors.tobytes())
        self.rows += len(ids)
        cols = {
            "id": np.asarray(ids, np.int64),
            "priority": np.array([f.priority for f in fields], np.int32),
            "filing": np.array([f.filing for f in fields], np.int32),
            "publication": np.array([f.publication for f in fields], np.int32),
            "language": np.array([_LANGUAGES.index(f.language) for f in fields], np.int8),
            "jurisdiction": np.array(
                [
                    self.jurisdictions.setdefault(f.jurisdiction.upper(), len(self.jurisdictions))
                    for f in fields
                ],
                np.int16,
            ),
            "codes": np.array([self._code_bits(f.codes) for f in fields], np.uint64),
        }
        for name, values in cols.items():
            self._columns.setdefault(name, []).append(values)
            self._unsaved.setdefault(name, []).append(values)

    def _code_bits(self, codes: Sequence[str]) -> int:
        bits = 0
        for code in codes:
            bit = self.codes.setdefault(normalize_code(code), len(self.codes))
            if bit >= 64:
                raise ValueError("VectorLog tracks at most 64 distinct IPC codes")
            bits |= 1 << bit
        return bits

    def finish(self) -> None:
        self._file.flush()
        self.column = {n: np.concatenate(v) for n, v in self._columns.items()}
        self._columns = {n: [v] for n, v in self.column.items()}  # appending more stays possible

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Vectors of rows lo:hi, read from the file (not memory-mapped: mapped pages would count in
        this process's RSS, which the benchmark reports)."""
        count = (min(hi, self.rows) - lo) * self.dim
        return np.fromfile(self.path, np.float32, count, offset=lo * self.dim * 4).reshape(-1, self.dim)

    def mask(self, flt: SearchFilter, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """Rows lo:hi that satisfy `flt`, by `SearchFilter.matches`'s rules."""
        c = {n: v[lo:hi] for n, v in self.column.items()}
        keep = np.ones(len(c["id"]), bool)
        date = c[flt.date_field]
        if flt.before:
            keep &= (date > 0) & (date < date_to_int(flt.before))
        if flt.after:
            keep &= (date > 0) & (date >= date_to_int(flt.after))
        if flt.code_prefixes:
            prefixes = [normalize_code(p) for p in flt.code_prefixes]
            bits = sum(1 << b for code, b in self.codes.items() if any(code.startswith(p) for p in prefixes))
            keep &= (c["codes"] & np.uint64(bits)) != 0
        if flt.languages:
            keep &= np.isin(c["language"], [_LANGUAGES.index(x) for x in flt.languages if x in _LANGUAGES])
        if flt.jurisdictions:
            wanted = [
                self.jurisdictions[j.upper()] for j in flt.jurisdictions if j.upper() in self.jurisdictions
            ]
            keep &= np.isin(c["jurisdiction"], wanted)
        if flt.exclude_patents:
            raise NotImplementedError("VectorLog does not keep patent ids")
        return keep

    def close(self) -> None:
        self._file.close()


def exact_neighbours(
    log: VectorLog, queries: np.ndarray, filters: Sequence[SearchFilter | None], k: int, progress: Any = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(ids, scores) of the exact top-k by inner product for each (query, filter), best first: one pass
    over the log in blocks, a running top-k per query."""
    n = len(queries)
    best_scores = np.full((n, k), -np.inf, np.float32)
    best_ids = np.full((n, k), -1, np.int64)
    ids = log.column["id"]
    q = np.ascontiguousarray(queries, dtype=np.float32)
    for lo in range(0, log.rows, _BLOCK):
        hi = min(lo + _BLOCK, log.rows)
        scores = log.read(lo, hi) @ q.T  # (block, n)
        masks: dict[int, np.ndarray] = {}
        for j, flt in enumerate(filters):
            if flt is not None and not flt.is_empty():
                key = id(flt)
                if key not in masks:
                    masks[key] = log.mask(flt, lo, hi)
                scores[~masks[key], j] = -np.inf
        take = min(k, hi - lo)
        top = np.argpartition(-scores, take - 1, axis=0)[:take]  # (take, n)
        cand_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, 0).T], axis=1)
        cand_ids = np.concatenate([best_ids, ids[lo:hi][top].T], axis=1)
        keep = np.argsort(-cand_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(cand_scores, keep, 1)
        best_ids = np.take_along_axis(cand_ids, keep, 1)
        if progress is not None:
            progress(hi - lo)
    return [(row[np.isfinite(s)], s[np.isfinite(s)]) for row, s in zip(best_ids, best_scores, strict=True)]
