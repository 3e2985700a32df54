"""Persisted BM25 index over passages keyed by int64 id: term counts kept, weights rebuilt on commit.

The search benchmark's baseline: `patentrank/index/lexical.py` as of commit 19128a7 (before the lexical
stage moved to tantivy), copied verbatim so that before/after are measured in the same run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from patentrank.errors import InputError, PatentrankError
from patentrank.text import ANALYZER_VERSION, analyze

FORMAT_VERSION = 1
_CURRENT = "CURRENT"  # names the generation folder in use; replaced atomically on commit
_LOCK = "LOCK"  # flock'd by the one process allowed to write


@dataclass(frozen=True)
class _Snapshot:
    """One committed generation, immutable: searches read it while a commit builds the next one."""

    generation: int
    ids: np.ndarray  # int64, sorted; row i of the matrices is passage ids[i]
    vocab: dict[str, int]  # term -> id; later adds append to this dict, so ids >= n_terms are ignored
    n_terms: int
    counts: sp.csr_matrix  # passages x terms, term frequencies (what rebuilds need; never re-tokenised)
    post_indptr: np.ndarray  # term-major BM25 weights: postings of term t are [indptr[t], indptr[t+1])
    post_rows: np.ndarray
    post_weights: np.ndarray


def bm25_weights(counts: sp.csr_matrix, k1: float, b: float) -> sp.csr_matrix:
    """Per (passage, term) BM25 weight, as bm25s "lucene" (and Lucene 8+) computes it:
    idf = ln(1 + (N - df + 0.5) / (df + 0.5)), weight = idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))."""
    n_docs, n_terms = counts.shape
    counts = counts.tocsr()
    tf = counts.data.astype(np.float64)
    doc_len = np.asarray(counts.sum(axis=1), dtype=np.float64).ravel()
    avg_len = float(doc_len.mean()) if n_docs and doc_len.any() else 1.0
    df = np.bincount(counts.indices, minlength=n_terms).astype(np.float64)
    idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
    rows = np.repeat(np.arange(n_docs), np.diff(counts.indptr))
    norm = k1 * (1.0 - b + b * doc_len[rows] / avg_len)
    weights = (idf[counts.indices] * tf / (tf + norm)).astype(np.float32)
    return sp.csr_matrix((weights, counts.indices, counts.indptr), shape=counts.shape)


class LexicalIndex:
    """BM25 over analysed passages (Chinese via jieba, English stemmed), stored in a folder.

    `add`/`delete` stage changes; `commit` applies them and makes them durable atomically (a new
    generation folder is written and fsync'd, then the `CURRENT` pointer file is replaced), so a
    crash at any moment leaves the last committed index intact. Adding an id again replaces it.
    One process writes at a time (a lock file says so); others may read and `refresh()`.

    Example:
        >>> index = LexicalIndex("/tmp/lexical-demo")
        >>> index.add([1, 2], ["一种废热回收锅炉", "A waste heat recovery boiler"])
        >>> index.commit()
        >>> [pid for pid, _ in index.search("boiler", k=5)]
        [2]
    """

    def __init__(self, path: str | Path, k1: float = 1.2, b: float = 0.75) -> None:
        if k1 < 0 or not 0.0 <= b <= 1.0:
            raise InputError("BM25 needs k1 >= 0 and 0 <= b <= 1", field="k1" if k1 < 0 else "b")
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"lexical index path {self.path} exists and is not a folder", field="path")
        self.k1, self.b = float(k1), float(b)
        self._lock = threading.RLock()
        self._lock_file: int | None = None
        self._pending: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # id -> (term ids, counts)
        self._pending_deletes: set[int] = set()
        self._snap = self._load()

    # ----- staging -------------------------------------------------------------------------------

    def add(self, ids: Sequence[int] | np.ndarray, texts: Sequence[str], show_progress: bool = False) -> None:
        """Stage passages for indexing (analysed now); same id again = replace. Searchable after commit."""
        if isinstance(texts, str) or len(texts) != len(ids):
            raise InputError("add() needs as many texts as ids", field="texts")
        if not all(isinstance(t, str) for t in texts):
            raise InputError("every passage text must be a string", field="texts")
        bar = tqdm(texts, disable=not show_progress, desc="BM25 analysing", unit="passage")
        self.add_tokens(ids, [analyze(t) for t in bar])

    def add_tokens(self, ids: Sequence[int] | np.ndarray, tokens: Sequence[Sequence[str]]) -> None:
        """Stage already analysed passages (the output of `patentrank.text.analyze`)."""
        id_array = _as_ids(ids)
        if len(tokens) != len(id_array):
            raise InputError("add_tokens() needs one token list per id", field="tokens")
        with self._lock:
            self._acquire_writer()
            vocab = self._snap.vocab
            for pid, toks in zip(id_array.tolist(), tokens, strict=True):
                bag = Counter(toks)
                term_ids = np.fromiter((vocab.setdefault(t, len(vocab)) for t in bag), np.int32, len(bag))
                self._pending[pid] = (term_ids, np.fromiter(bag.values(), np.int32, len(bag)))
                self._pending_deletes.discard(pid)

    def delete(self, ids: Sequence[int] | np.ndarray) -> None:
        """Stage removal of these passages; unknown ids are ignored."""
        id_array = _as_ids(ids)
        with self._lock:
            self._acquire_writer()
            for pid in id_array.tolist():
                self._pending.pop(pid, None)
                self._pending_deletes.add(pid)

    def has_pending(self) -> bool:
        """Whether there are staged adds or deletes that `commit()` has not applied yet."""
        return bool(self._pending or self._pending_deletes)

    # ----- commit and load -----------------------------------------------------------------------

    def commit(self) -> None:
        """Apply staged changes, recompute BM25 weights and save a new generation atomically."""
        with self._lock:
            if not self.has_pending() and self._snap.generation > 0:
                return
            self._acquire_writer()
            old = self._snap
            n_terms = len(old.vocab)  # staged adds may have appended terms: widen the old matrix
            counts = sp.csr_matrix(
                (old.counts.data, old.counts.indices, old.counts.indptr), (len(old.ids), n_terms)
            )
            gone = np.fromiter(set(self._pending) | self._pending_deletes, np.int64)
            keep = ~np.isin(old.ids, gone)
            new_ids = np.fromiter(self._pending.keys(), np.int64, len(self._pending))
            fresh = _rows_to_csr([self._pending[pid] for pid in new_ids.tolist()], n_terms)
            ids = np.concatenate([old.ids[keep], new_ids])
            counts = sp.vstack([counts[keep], fresh], format="csr")
            order = np.argsort(ids, kind="stable")
            ids, counts = ids[order], counts[order]
            counts, terms = _compact_terms(counts, old.vocab)
            generation = old.generation + 1
            snap = self._make_snapshot(generation, ids, counts, terms)
            self._write_generation(snap, terms)
            self._snap = snap
            self._pending.clear()
            self._pending_deletes.clear()

    def refresh(self) -> bool:
        """Reload if another process committed a newer generation; True when something changed."""
        with self._lock:
            if self._read_current() == self._snap.generation or self.has_pending():
                return False
            self._snap = self._load()
            return True

    def _load(self) -> _Snapshot:
        for _ in range(5):  # a concurrent writer may remove the generation we just read the name of
            generation = self._read_current()
            if generation == 0:
                empty = sp.csr_matrix((0, 0), dtype=np.int32)
                return self._make_snapshot(0, np.zeros(0, np.int64), empty, [])
            try:
                return self._load_generation(generation)
            except FileNotFoundError:
                continue
        raise PatentrankError(f"lexical index {self.path}: could not read a stable generation")

    def _load_generation(self, generation: int) -> _Snapshot:
        folder = self.path / f"gen-{generation:08d}"
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT_VERSION or meta.get("analyzer") != ANALYZER_VERSION:
            raise PatentrankError(
                f"lexical index {self.path} was built by another version (format {meta.get('format')}, "
                f"analyzer {meta.get('analyzer')!r}; this one reads format {FORMAT_VERSION}, analyzer "
                f"{ANALYZER_VERSION!r}): rebuild it from the document store"
            )
        terms = json.loads((folder / "terms.json").read_text(encoding="utf-8"))
        load = lambda name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)  # noqa: E731
        ids = np.array(load("ids"))
        counts = sp.csr_matrix(
            (load("counts_data"), load("counts_indices"), load("counts_indptr")), shape=(len(ids), len(terms))
        )
        if meta.get("k1") == self.k1 and meta.get("b") == self.b:
            postings = (load("post_indptr"), load("post_rows"), load("post_weights"))
            return _Snapshot(
                generation, ids, {t: i for i, t in enumerate(terms)}, len(terms), counts, *postings
            )
        return self._make_snapshot(generation, ids, counts, terms)  # other k1/b: reweigh, no re-analysis

    def _make_snapshot(
        self, generation: int, ids: np.ndarray, counts: sp.csr_matrix, terms: list[str]
    ) -> _Snapshot:
        post = bm25_weights(counts, self.k1, self.b).tocsc()
        post.sort_indices()
        vocab = {t: i for i, t in enumerate(terms)}
        indptr = post.indptr.astype(np.int64)
        return _Snapshot(generation, ids, vocab, len(terms), counts, indptr, post.indices, post.data)

    def _write_generation(self, snap: _Snapshot, terms: list[str]) -> None:
        generation, counts = snap.generation, snap.counts
        folder = self.path / f"gen-{generation:08d}"
        shutil.rmtree(folder, ignore_errors=True)  # debris of a commit that crashed before its pointer
        folder.mkdir(parents=True)
        arrays = {
            "ids": snap.ids.astype(np.int64),
            "counts_indptr": counts.indptr.astype(np.int64),
            "counts_indices": counts.indices.astype(np.int32),
            "counts_data": counts.data.astype(np.int32),
            "post_indptr": snap.post_indptr.astype(np.int64),
            "post_rows": snap.post_rows.astype(np.int32),
            "post_weights": snap.post_weights.astype(np.float32),
        }
        for name, array in arrays.items():
            with open(folder / f"{name}.npy", "wb") as f:
                np.save(f, np.ascontiguousarray(array), allow_pickle=False)
                _flush(f)
        meta = dict(
            format=FORMAT_VERSION, analyzer=ANALYZER_VERSION, k1=self.k1, b=self.b, generation=generation
        )
        meta |= dict(passages=len(snap.ids), terms=len(terms), postings=int(counts.nnz))
        for name, obj in (("terms.json", terms), ("meta.json", meta)):
            with open(folder / name, "w", encoding="utf-8") as f:
                json.dump(obj, f, ensure_ascii=False)
                _flush(f)
        _fsync_dir(folder)
        tmp = self.path / f"{_CURRENT}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(f"gen-{generation:08d}\n")
            _flush(f)
        os.replace(tmp, self.path / _CURRENT)
        _fsync_dir(self.path)
        for stale in self.path.glob("gen-*"):
            if stale.name != folder.name:
                shutil.rmtree(stale, ignore_errors=True)

    def _read_current(self) -> int:
        try:
            name = (self.path / _CURRENT).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return 0
        if not name.startswith("gen-") or not name[4:].isdigit():
            raise PatentrankError(f"lexical index {self.path}: {_CURRENT} is damaged ({name[:40]!r})")
        return int(name[4:])

    def _acquire_writer(self) -> None:
        if self._lock_file is not None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise PatentrankError(f"lexical index {self.path} is being written by another process") from None
        self._lock_file = fd
        if self._read_current() != self._snap.generation:
            self._snap = self._load()  # another writer committed since we opened: build on its work

    def close(self) -> None:
        """Release the writer lock (staged, uncommitted changes are dropped)."""
        with self._lock:
            self._pending.clear()
            self._pending_deletes.clear()
            if self._lock_file is not None:
                os.close(self._lock_file)  # closing the descriptor releases the flock
                self._lock_file = None

    def __enter__(self) -> LexicalIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # staged changes that were not committed are dropped, like a rolled-back transaction

    # ----- search --------------------------------------------------------------------------------

    def search(
        self, query: str, k: int = 10, allowed_ids: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """Up to k (passage id, BM25 score) pairs, best first (ties by id); only passages that share a
        term with the query; with `allowed_ids`, only those passages (the filter runs inside retrieval)."""
        return self.search_tokens(analyze(query), k, allowed_ids)

    def search_many(
        self,
        queries: Sequence[str],
        k: int = 10,
        allowed_ids: np.ndarray | None = None,
        show_progress: bool = False,
    ) -> list[list[tuple[int, float]]]:
        """`search` for each query against one snapshot (a concurrent commit cannot split the batch)."""
        snap = self._snap
        rows = None if allowed_ids is None else _allowed_rows(snap, allowed_ids)
        bar = tqdm(queries, disable=not show_progress, desc="BM25 search", unit="query")
        return [self._search(snap, analyze(q), k, rows) for q in bar]

    def search_tokens(
        self, tokens: Sequence[str], k: int = 10, allowed_ids: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """`search` with an already analysed query (repeated tokens count repeatedly, as in bm25s)."""
        snap = self._snap
        rows = None if allowed_ids is None else _allowed_rows(snap, allowed_ids)
        return self._search(snap, tokens, k, rows)

    def _search(
        self, snap: _Snapshot, tokens: Sequence[str], k: int, rows: np.ndarray | None
    ) -> list[tuple[int, float]]:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise InputError("k must be a positive integer", field="k")
        if not len(snap.ids) or (rows is not None and not len(rows)):
            return []
        scores = np.zeros(len(snap.ids), np.float32)
        for term, repeats in Counter(tokens).items():
            t = snap.vocab.get(term)
            if t is None or t >= snap.n_terms:
                continue
            start, end = snap.post_indptr[t], snap.post_indptr[t + 1]
            # A term's postings hold each row once, so fancy-index += adds every weight (no np.add.at).
            scores[snap.post_rows[start:end]] += snap.post_weights[start:end] * repeats
        candidates = np.flatnonzero(scores) if rows is None else rows[scores[rows] > 0]
        if len(candidates) > k:
            # Ties at the cut go to the smallest ids (rows are in id order), so results are deterministic.
            cand_scores = scores[candidates]
            threshold = cand_scores[np.argpartition(-cand_scores, k - 1)[k - 1]]
            above = candidates[cand_scores > threshold]
            candidates = np.concatenate([above, candidates[cand_scores == threshold][: k - len(above)]])
        best = candidates[np.lexsort((snap.ids[candidates], -scores[candidates]))]
        return [(int(snap.ids[r]), float(scores[r])) for r in best]

    # ----- introspection -------------------------------------------------------------------------

    def count(self) -> int:
        """Number of committed passages."""
        return len(self._snap.ids)

    def ids(self) -> np.ndarray:
        """Committed passage ids, sorted (a read-only view)."""
        return self._snap.ids

    def __contains__(self, pid: object) -> bool:
        ids = self._snap.ids
        if not isinstance(pid, int | np.integer) or not len(ids):
            return False
        i = int(np.searchsorted(ids, pid))
        return i < len(ids) and int(ids[i]) == pid

    def health(self) -> dict[str, object]:
        """{'ok', 'detail', 'passages', 'terms', 'generation'} for /health; never raises."""
        snap = self._snap  # in memory: nothing here can fail
        info = {"passages": len(snap.ids), "terms": snap.n_terms, "generation": snap.generation}
        return {"ok": True, "detail": f"BM25 over {len(snap.ids)} passages", **info}


def _as_ids(ids: Sequence[int] | np.ndarray) -> np.ndarray:
    array = np.asarray(ids)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise InputError("passage ids must be a 1-d sequence of integers", field="ids")
    if array.dtype.kind == "u" and array.size and array.max() > np.iinfo(np.int64).max:
        raise InputError("passage ids must fit in int64", field="ids")
    return array.astype(np.int64)


def _allowed_rows(snap: _Snapshot, allowed_ids: np.ndarray) -> np.ndarray:
    """Row numbers of the allowed passage ids that are in the index (unknown ids are ignored)."""
    allowed = np.unique(_as_ids(allowed_ids))
    if not len(snap.ids) or not len(allowed):
        return np.zeros(0, np.int64)
    rows = np.minimum(np.searchsorted(snap.ids, allowed), len(snap.ids) - 1)
    return rows[snap.ids[rows] == allowed]


def _rows_to_csr(rows: list[tuple[np.ndarray, np.ndarray]], n_terms: int) -> sp.csr_matrix:
    indptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum([len(t) for t, _ in rows], out=indptr[1:])
    indices = np.concatenate([t for t, _ in rows]) if rows else np.zeros(0, np.int32)
    data = np.concatenate([c for _, c in rows]) if rows else np.zeros(0, np.int32)
    return sp.csr_matrix((data, indices, indptr), shape=(len(rows), n_terms))


def _compact_terms(counts: sp.csr_matrix, vocab: dict[str, int]) -> tuple[sp.csr_matrix, list[str]]:
    """Drop terms no passage uses any more (after deletes and replacements) and renumber the rest."""
    used = np.bincount(counts.indices, minlength=counts.shape[1]) > 0
    new_id = np.cumsum(used) - 1
    terms_by_id = [""] * len(vocab)
    for term, i in vocab.items():
        terms_by_id[i] = term
    terms = [t for t, keep in zip(terms_by_id, used.tolist(), strict=True) if keep]
    counts = sp.csr_matrix(
        (counts.data, new_id[counts.indices].astype(np.int32), counts.indptr),
        shape=(counts.shape[0], len(terms)),
    )
    return counts, terms


def _flush(f) -> None:
    f.flush()
    os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems refuse fsync on directories
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
