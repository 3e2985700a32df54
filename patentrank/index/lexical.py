"""BM25 over analysed passages in tantivy, with every `SearchFilter` evaluated inside the engine."""

from __future__ import annotations

import json
import math
import os
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tantivy
from tqdm.auto import tqdm

from patentrank.analysis_pool import analyze_batch
from patentrank.errors import InputError, PatentrankError
from patentrank.index.filters import PassageFields, SearchFilter
from patentrank.index.lexical_exact import rescore
from patentrank.index.lexical_query import (
    SCHEMA,
    SCHEMA_FORMAT_2,
    code_prefix_terms,
    filter_clauses,
    text_query,
)
from patentrank.text import ANALYZER_VERSION, analyze

FORMAT_VERSION = 3  # 1: the numpy BM25 of `lexical/`; 2: tantivy without exact lengths (still read)
EXACT_TOP = 32  # hits per search whose BM25 uses exact lengths (lexical_exact.py, docs/lexical.md)
MARKER_FILE = "patentrank-lexical.json"  # what wrote this folder: format and analyzer versions
# tantivy scores BM25 as idf * (k1 + 1) * tf / (tf + norm); Lucene 8+ and bm25s drop the constant
# (k1 + 1). Dividing it out gives the scores this module documents, with the same ranking.
K1, B = 1.2, 0.75
_TANTIVY_SCALE = K1 + 1.0
MAX_TOKEN_BYTES = 255  # longer "words" (base64 blobs, DNA strings) are dropped at index and query time


class LexicalIndexError(PatentrankError):
    """The lexical index cannot be opened or written (another writer, another format, damaged)."""


class LexicalIndex:
    """BM25 (k1 1.2, b 0.75, Lucene idf ln(1 + (N - df + 0.5) / (df + 0.5))) over passages keyed by
    int64 id, stored in a tantivy index folder.

    The project's analyzer (`patentrank.text.analyze`: jieba search mode for Chinese runs, Snowball for
    the rest) is the only source of tokens: they go into a whitespace-tokenised field, and queries are
    analysed the same way. Beside the tokens each passage carries its `PassageFields` (dates as fast
    fields, every prefix of every IPC/CPC code, language, jurisdiction, patent id), so a filtered search
    is one tantivy query, never a list of allowed ids computed elsewhere.

    Two documented differences from the textbook formula, both Lucene's own: tantivy stores document
    lengths on one byte (exact up to 40 tokens, then within about 12%: `quantized_length`), so the
    first `exact_top` hits of every search are scored again with exact lengths (`lexical_exact.py`) and
    only hits below them keep the rounded ones; and the statistics (N, df, average length) count
    deleted passages until tantivy merges their segment.

    `add`/`delete` stage changes; `commit()` makes them durable and visible atomically (a crash loses
    only what was not committed). A commit writes one new segment, so its cost follows the batch, not
    the index. One process writes at a time; any number read, and see other processes' commits
    within about a second (or at once after `refresh()`).

    Example:
        >>> import tempfile
        >>> index = LexicalIndex(tempfile.mkdtemp())
        >>> index.add([1, 2], ["一种废热回收锅炉", "A waste heat recovery boiler"])
        >>> index.commit()
        >>> [pid for pid, _ in index.search("boiler", k=5)]
        [2]
        >>> [pid for pid, _ in index.search("锅炉", k=5, flt=SearchFilter(languages=["en"]))]
        []
    """

    def __init__(
        self,
        path: str | Path,
        *,
        writer_memory_mb: int = 128,
        read_only: bool = False,
        exact_top: int = EXACT_TOP,
    ) -> None:
        self.path = Path(path)
        self.exact_top = max(int(exact_top), 0)
        self.exact_lengths = True  # False for a format 2 index: rounded lengths only, until a reindex
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"lexical index path {self.path} exists and is not a folder", field="path")
        self.read_only = read_only
        self.writer_memory_mb = max(int(writer_memory_mb), 16)
        self._lock = threading.RLock()
        self._writer: tantivy.IndexWriter | None = None
        self._pending = 0
        self._index = self._open()

    # ----- opening -------------------------------------------------------------------------------

    def _open(self) -> tantivy.Index:
        marker = self.path / MARKER_FILE
        if (self.path / "CURRENT").exists():
            raise LexicalIndexError(
                f"{self.path} holds a lexical index in the old format 1: rebuild it with "
                "`patentrank reindex --index <index folder>`"
            )
        if marker.exists():
            try:
                meta = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise LexicalIndexError(f"{marker} is damaged ({exc}): run `patentrank reindex`") from exc
            if meta.get("format") not in (2, FORMAT_VERSION) or meta.get("analyzer") != ANALYZER_VERSION:
                raise LexicalIndexError(
                    f"the lexical index {self.path} was built by another version (format "
                    f"{meta.get('format')}, analyzer {meta.get('analyzer')!r}; this one writes format "
                    f"{FORMAT_VERSION}, analyzer {ANALYZER_VERSION!r}): run `patentrank reindex`"
                )
            self.exact_lengths = meta.get("format") == FORMAT_VERSION
        elif self.read_only and not tantivy.Index.exists(str(self.path)):
            raise LexicalIndexError(f"no lexical index at {self.path}")
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            schema = SCHEMA if self.exact_lengths else SCHEMA_FORMAT_2
            index = tantivy.Index(schema, path=str(self.path), reuse=True)
        except ValueError as exc:
            raise LexicalIndexError(f"the lexical index at {self.path} cannot be opened: {exc}") from exc
        if not marker.exists() and not self.read_only:
            _write_atomically(marker, {"format": FORMAT_VERSION, "analyzer": ANALYZER_VERSION})
        # "commit": tantivy polls meta.json, so readers in other processes see new commits by themselves.
        index.config_reader(reload_policy="commit", num_warmers=0)
        return index

    def _writer_or_raise(self) -> tantivy.IndexWriter:
        if self.read_only:
            raise LexicalIndexError(f"the lexical index at {self.path} was opened read-only")
        if self._writer is None:
            try:
                # One indexing thread: analysis in Python is the bottleneck, and a second arena costs RAM.
                self._writer = self._index.writer(heap_size=self.writer_memory_mb * 1_000_000, num_threads=1)
            except ValueError as exc:
                if "lock" in str(exc).lower():
                    raise LexicalIndexError(
                        f"lexical index {self.path} is being written by another process"
                    ) from None
                raise LexicalIndexError(f"cannot write the lexical index at {self.path}: {exc}") from exc
        return self._writer

    # ----- staging -------------------------------------------------------------------------------

    def add(
        self,
        ids: Sequence[int] | np.ndarray,
        texts: Sequence[str],
        fields: Sequence[PassageFields] | None = None,
        show_progress: bool = False,
    ) -> None:
        """Stage passages (analysed now); the same id again replaces it. Searchable after `commit()`.

        `fields` are what filters test; without them a passage has only a patent id equal to its own id.
        """
        if isinstance(texts, str) or len(texts) != len(ids):
            raise InputError("add() needs as many texts as ids", field="texts")
        if not all(isinstance(t, str) for t in texts):
            raise InputError("every passage text must be a string", field="texts")
        if show_progress:
            tokens = [analyze(t) for t in tqdm(texts, desc="BM25 analysing", unit="passage")]
        else:
            tokens = analyze_batch(texts)  # large batches on every core
        self.add_tokens(ids, tokens, fields)

    def add_tokens(
        self,
        ids: Sequence[int] | np.ndarray,
        tokens: Sequence[Sequence[str]],
        fields: Sequence[PassageFields] | None = None,
    ) -> None:
        """Stage already analysed passages (the output of `patentrank.text.analyze`)."""
        id_array = _as_ids(ids)
        if len(tokens) != len(id_array):
            raise InputError("add_tokens() needs one token list per id", field="tokens")
        if fields is None:
            fields = [PassageFields(patent_id=str(pid)) for pid in id_array.tolist()]
        elif len(fields) != len(id_array) or not all(isinstance(f, PassageFields) for f in fields):
            raise InputError("add_tokens() needs one PassageFields per id", field="fields")
        with self._lock:
            writer = self._writer_or_raise()
            for pid, toks, f in zip(id_array.tolist(), tokens, fields, strict=True):
                writer.delete_documents_by_term("pid", pid)  # applies to earlier adds only: a replace
                writer.add_document(_document(pid, toks, f, self.exact_lengths))
            self._pending += len(id_array)

    def delete(self, ids: Sequence[int] | np.ndarray) -> None:
        """Stage removal of these passages; unknown ids are ignored."""
        id_array = _as_ids(ids)
        with self._lock:
            writer = self._writer_or_raise()
            for pid in id_array.tolist():
                writer.delete_documents_by_term("pid", pid)
            self._pending += len(id_array)

    def delete_patents(self, patent_ids: Sequence[str]) -> None:
        """Stage removal of every passage of these patents."""
        with self._lock:
            writer = self._writer_or_raise()
            for patent_id in patent_ids:
                writer.delete_documents_by_term("patent_id", str(patent_id))
            self._pending += len(patent_ids)

    def has_pending(self) -> bool:
        """Whether there are staged adds or deletes that `commit()` has not applied yet."""
        return self._pending > 0

    # ----- commit and reading --------------------------------------------------------------------

    def commit(self) -> None:
        """Make staged changes durable (fsync'd, atomic) and visible to searches."""
        with self._lock:
            if self._writer is None or not self._pending:
                return
            try:
                self._writer.commit()
            except ValueError as exc:
                raise LexicalIndexError(f"could not commit the lexical index at {self.path}: {exc}") from exc
            self._pending = 0
            self._index.reload()

    def rollback(self) -> None:
        """Drop staged changes."""
        with self._lock:
            if self._writer is not None and self._pending:
                self._writer.rollback()
            self._pending = 0

    def refresh(self) -> bool:
        """See other processes' commits now (they also appear by themselves within about a second);
        True when the number of passages changed."""
        before = self.count()
        self._index.reload()
        return self.count() != before

    def release_writer(self) -> None:
        """Let another process write: drop the writer (and its lock) until the next add or delete.
        Staged, uncommitted changes are dropped; background merges go on in tantivy's threads."""
        with self._lock:
            if self._writer is not None and self._pending:
                self._writer.rollback()
            self._writer = None
            self._pending = 0

    def close(self) -> None:
        """Release the writer (staged, uncommitted changes are dropped)."""
        with self._lock:
            if self._writer is not None:
                if self._pending:
                    self._writer.rollback()
                self._writer.wait_merging_threads()  # also releases tantivy's writer lock
                self._writer = None
            self._pending = 0

    def __enter__(self) -> LexicalIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- search --------------------------------------------------------------------------------

    def search(self, query: str, k: int = 10, flt: SearchFilter | None = None) -> list[tuple[int, float]]:
        """Up to k (passage id, BM25 score) pairs, best first (ties by id); only passages that share a
        term with the query and pass `flt`."""
        return self.search_tokens(analyze(query), k, flt)

    def search_tokens(
        self, tokens: Sequence[str], k: int = 10, flt: SearchFilter | None = None
    ) -> list[tuple[int, float]]:
        """`search` with an already analysed query (repeated tokens count repeatedly, as in bm25s)."""
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise InputError("k must be a positive integer", field="k")
        counts = Counter(t for t in tokens if len(t.encode()) <= MAX_TOKEN_BYTES)
        if not counts:
            return []
        scored = query = text_query(counts)
        if flt is not None and not flt.is_empty():
            query = tantivy.Query.boolean_query([(tantivy.Occur.Must, scored), *filter_clauses(flt)])
        searcher = self._index.searcher()
        hits = searcher.search(query, int(k), count=False).hits
        if not hits:
            return []
        pids = searcher.fast_field_values("pid", [address for _, address in hits])
        scores = [float(score) for score, _ in hits]
        if self.exact_top and self.exact_lengths:
            head = [address for _, address in hits[: self.exact_top]]
            lengths = [int(n) for n in searcher.fast_field_values("length", head)]
            quantized = _NORM_TABLE[np.searchsorted(_NORM_TABLE, lengths, side="right") - 1].tolist()
            # Explained without the filter clauses: they add nothing to a score and cost 5x to explain.
            scores = rescore(scored, searcher, hits, lengths, quantized, self.exact_top, K1, B)
        pairs = [(int(pid), score / _TANTIVY_SCALE) for score, pid in zip(scores, pids, strict=True)]
        return sorted(pairs, key=lambda pair: (-pair[1], pair[0]))

    def without_common_terms(self, tokens: Sequence[str], max_df: float | None) -> list[str]:
        """`tokens` less those found in more than `max_df` of the passages (None: all kept), or all of
        them when every one is that common: the idf floor of PATENTRANK_LEXICAL_MAX_DF."""
        if max_df is None:
            return list(tokens)
        searcher = self._index.searcher()
        limit = max_df * max(int(searcher.num_docs), 1)
        common = {t for t in set(tokens) if searcher.doc_freq("tokens", t) > limit}
        kept = [t for t in tokens if t not in common]
        return kept or list(tokens)

    def best_possible_score(self, tokens: Sequence[str]) -> float:
        """The BM25 score no passage can exceed for this analysed query: the sum of each query term's
        idf (times its repeats), since one term adds at most idf * (k1 + 1) / (k1 + 1) however often it
        occurs. A query whose terms the index lacks (Chinese words in an English index) gets a large
        bound and so a small normalised score: fusion reads score / bound as lexical confidence."""
        counts = Counter(t for t in tokens if len(t.encode()) <= MAX_TOKEN_BYTES)
        if not counts:
            return 0.0
        searcher = self._index.searcher()
        total = max(int(searcher.num_docs), 1)
        bound = 0.0
        for token, repeats in counts.items():
            df = int(searcher.doc_freq("tokens", token))
            bound += repeats * math.log(1.0 + (total - df + 0.5) / (df + 0.5))
        return bound

    # ----- introspection -------------------------------------------------------------------------

    def count(self) -> int:
        """Number of committed passages (deleted ones excluded)."""
        return int(self._index.searcher().num_docs)

    def health(self) -> dict[str, object]:
        """{'ok', 'detail', 'passages', 'segments', 'engine'} for /health; never raises."""
        try:
            searcher = self._index.searcher()
            passages, segments = int(searcher.num_docs), int(searcher.num_segments)
        except Exception as exc:  # health must report, never raise
            return {"ok": False, "detail": f"lexical index at {self.path} failed: {exc}", "engine": "tantivy"}
        detail = f"BM25 (tantivy) over {passages} passages in {segments} segments"
        if not self.exact_lengths:
            detail += "; format 2, rounded lengths only: `patentrank reindex` scores the best hits exactly"
        return {"ok": True, "detail": detail, "passages": passages, "segments": segments, "engine": "tantivy"}


def quantized_length(length: int) -> int:
    """The document length BM25 sees: Lucene's one-byte norm (SmallFloat.intToByte4), which tantivy
    uses too; exact below 41 tokens, then the largest encodable value not above `length`.

    Example:
        >>> [quantized_length(n) for n in (7, 40, 41, 67, 1000)]
        [7, 40, 40, 64, 984]
    """
    return int(_NORM_TABLE[np.searchsorted(_NORM_TABLE, length, side="right") - 1])


def _norm_table() -> np.ndarray:
    free = 24  # 255 - intToByte4's largest code (231): codes below this are the lengths themselves
    values = []
    for code in range(256):
        if code < free:
            values.append(code)
            continue
        bits, shift = (code - free) & 0x07, ((code - free) >> 3) - 1
        values.append(free + (bits if shift == -1 else (bits | 0x08) << shift))
    return np.array(values, dtype=np.int64)


_NORM_TABLE = _norm_table()


def _document(
    pid: int, tokens: Sequence[str], f: PassageFields, exact_lengths: bool = True
) -> tantivy.Document:
    doc = tantivy.Document()
    doc.add_integer("pid", pid)
    # A token of at most MAX_TOKEN_BYTES // 4 characters cannot be over the limit: check only long ones.
    if any(len(t) > MAX_TOKEN_BYTES // 4 for t in tokens):
        tokens = [t for t in tokens if len(t.encode()) <= MAX_TOKEN_BYTES]
    text = " ".join(tokens)
    doc.add_text("tokens", text)
    if exact_lengths:  # what tantivy's whitespace tokenizer will count
        doc.add_integer("length", len(text.split()))
    doc.add_text("patent_id", f.patent_id)
    doc.add_text("language", f.language)
    doc.add_text("jurisdiction", f.jurisdiction)
    for term in code_prefix_terms(f.codes):
        doc.add_text("code_prefix", term)
    doc.add_integer("priority", int(f.priority))
    doc.add_integer("filing", int(f.filing))
    doc.add_integer("publication", int(f.publication))
    return doc


def _as_ids(ids: Sequence[int] | np.ndarray) -> np.ndarray:
    array = np.asarray(ids)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise InputError("passage ids must be a 1-d sequence of integers", field="ids")
    if array.dtype.kind == "u" and array.size and array.max() > np.iinfo(np.int64).max:
        raise InputError("passage ids must fit in int64", field="ids")
    return array.astype(np.int64)


def _write_atomically(path: Path, obj: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
