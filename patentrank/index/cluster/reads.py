"""What searches read from a cluster index: documents, BM25 and vectors, each behind the interface the
embedded index's parts have (`DocStore`, `LexicalIndex`, `VectorStore`), so `SearchPipeline` is the same.

Several versions of a patent can be in Milvus for a moment (a replica writes a new version before it
removes the old one, and one killed mid-write leaves its rows behind): every read keeps only the
passages of each patent's current version, the newest one whose part 0 (its commit mark) is written.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import orjson

from patentrank.chunking import Passage
from patentrank.corpus import Patent
from patentrank.families import Identity, identity
from patentrank.index import milvus_lite_quirks as lite
from patentrank.index.cluster.connection import ClusterError, MilvusConnection
from patentrank.index.cluster.schema import (
    K1,
    MAX_TOKEN_BYTES,
    filter_expression,
    row_id,
    token_text,
)
from patentrank.index.cluster.term_stats import TermStatistics
from patentrank.index.filters import PassageFields, SearchFilter
from patentrank.index.stores import check_queries

QUERY_CHUNK = 1000  # ids per `in [...]` expression
_DATES = ("priority_date", "filing_date", "publication_date")


def _quoted(values: Iterable[str]) -> str:
    return "[" + ", ".join(orjson.dumps(str(v)).decode() for v in values) + "]"


def key_expressions(kind: str, keys: Sequence[str] | Sequence[int]) -> Iterator[str]:
    """`<primary key> in [...]` over `keys`, `QUERY_CHUNK` at a time (`id` of passages, `key` of the
    other collections).

    Example:
        >>> list(key_expressions("heads", ["CN1A"])), list(key_expressions("passages", [7]))
        (['key in ["CN1A"]'], ['id in [7]'])
    """
    for start in range(0, len(keys), QUERY_CHUNK):
        chunk = list(keys[start : start + QUERY_CHUNK])
        yield f"id in {[int(k) for k in chunk]}" if kind == "passages" else f"key in {_quoted(chunk)}"


class ClusterReader:
    """Shared by the three read interfaces: the connection, collection names and consistency level."""

    def __init__(self, connection: MilvusConnection, names: dict[str, str], consistency: str = "Strong"):
        self.connection = connection
        self.names = names
        self.consistency = consistency
        self.is_lite = False  # Milvus Lite (`ClusterIndex` sets it on connecting): see `ClusterVectors`

    def query(self, kind: str, expr: str, fields: list[str], op: str = "query") -> list[dict[str, Any]]:
        timeout = self.connection.timeout_s
        return self.connection.call(
            op,
            lambda c: c.query(
                self.names[kind], filter=expr, output_fields=fields,
                consistency_level=self.consistency, timeout=timeout,
            ),
        )  # fmt: skip

    def count(self, kind: str, expr: str = "") -> int:
        return int(self.query(kind, expr, ["count(*)"], "count")[0]["count(*)"])

    def health(self, tag: dict[str, object], measure: Callable[[], dict[str, object]]) -> dict[str, object]:
        """One index part's /health answer: `measure()` (its 'detail' and counts) when Milvus answers,
        else why not; `tag` names the part's backend. Never raises, never waits past the probe."""
        if why := self.connection.probe():
            return {"ok": False, "detail": why, **tag}
        try:
            return {"ok": True, **measure(), **tag}
        except Exception as exc:  # health reports, never raises
            return {"ok": False, "detail": str(exc), **tag}

    def current_versions(self, patent_ids: Iterable[str], record: bool = False) -> dict[str, dict[str, Any]]:
        """patent id -> part 0 row of its current version: version, parts, passages, content_hash (and
        the record's first part when `record`).

        By primary key: each patent's head (the heads collection) names its version, taken when that
        version's part 0 exists. Patents with no head, or whose head names a version without part 0
        (being written or removed: `versions.heads_to_write`), are listed by scanning for their newest
        part 0, as before heads: on Milvus Lite a primary-key read takes milliseconds, a scan 0.5 s at
        350k rows.
        """
        ids = list(dict.fromkeys(patent_ids))
        fields = [
            "patent_id",
            "version",
            "parts",
            "passages",
            "content_hash",
            *(["record"] if record else []),
        ]
        heads = self.by_key("heads", ids, ["key", "version"])
        marks = [f"{row['key']}|{row['version']}|0" for row in heads]
        newest = {row["patent_id"]: row for row in self.by_key("patents", marks, fields)}
        rest = [pid for pid in ids if pid not in newest]
        for start in range(0, len(rest), QUERY_CHUNK):
            chunk = rest[start : start + QUERY_CHUNK]
            for row in self.query("patents", f"patent_id in {_quoted(chunk)} and part == 0", fields):
                kept = newest.get(row["patent_id"])
                if kept is None or row["version"] > kept["version"]:
                    newest[row["patent_id"]] = row
        return newest

    def by_key(
        self, kind: str, keys: Sequence[str] | Sequence[int], fields: list[str]
    ) -> list[dict[str, Any]]:
        """Rows by primary key (`id` of passages, `key` of the others)."""
        rows: list[dict[str, Any]] = []
        for expr in key_expressions(kind, keys):
            rows += self.query(kind, expr, fields)
        return rows

    def current_rows(self, ids: Iterable[int], fields: list[str]) -> list[dict[str, Any]]:
        """Passage rows among `ids` that belong to their patent's current version."""
        rows = self.by_key("passages", [int(i) for i in ids], ["id", "patent_id", "version", *fields])
        current = self.current_versions(r["patent_id"] for r in rows)
        return [
            r
            for r in rows
            if r["patent_id"] in current and current[r["patent_id"]]["version"] == r["version"]
        ]


class ClusterDocStore:
    """Patents and passages read from Milvus, with the methods of `DocStore` that searches use."""

    def __init__(self, reader: ClusterReader):
        self.reader = reader

    def get_patent(self, patent_id: str) -> Patent | None:
        return self.get_patents([patent_id]).get(patent_id)

    def get_patents(self, ids: Iterable[str]) -> dict[str, Patent]:
        """The stored patents among `ids` (their current versions), keyed by id."""
        current = self.reader.current_versions(ids, record=True)
        records = {pid: [row["record"]] for pid, row in current.items()}
        keys = [
            f"{pid}|{row['version']}|{part}"
            for pid, row in current.items()
            for part in range(1, row["parts"])
        ]
        for row in sorted(self.reader.by_key("patents", keys, ["key", "patent_id", "part", "record"]),
                          key=lambda r: r["part"]):  # fmt: skip
            records[row["patent_id"]].append(row["record"])
        patents = {}
        for pid, parts in records.items():
            if len(parts) == current[pid]["parts"]:  # a version missing a part is skipped, never half-read
                patents[pid] = _patent("".join(parts))
        return patents

    def get_identities(self, ids: Iterable[str]) -> dict[str, Identity]:
        """`families.Identity` of the stored patents among `ids`."""
        return {
            pid: identity(p.title, p.abstract, p.metadata.get("family_id"))
            for pid, p in self.get_patents(ids).items()
        }

    def get_passages(self, ids: Iterable[int] | np.ndarray) -> list[Passage]:
        """Passages in the order of `ids`; unknown ids and other versions' passages are skipped."""
        ids = [int(i) for i in ids]
        rows = self.reader.current_rows(ids, ["ordinal", "field", "text"])
        found = {r["id"]: Passage(r["id"], r["patent_id"], r["ordinal"], r["field"], r["text"]) for r in rows}
        return [found[i] for i in ids if i in found]

    def get_passage_heads(self, ids: Iterable[int] | np.ndarray) -> dict[int, tuple[str, str]]:
        """(patent id, field) of these passages, keyed by passage id."""
        return {r["id"]: (r["patent_id"], r["field"]) for r in self.reader.current_rows(ids, ["field"])}

    def passages_of(self, patent_id: str) -> list[Passage]:
        row = self.reader.current_versions([patent_id]).get(patent_id)
        if row is None:
            return []
        ids = [row_id(patent_id, row["version"], ordinal) for ordinal in range(row["passages"])]
        rows = self.reader.by_key("passages", ids, ["id", "patent_id", "version", "ordinal", "field", "text"])
        rows = sorted((r for r in rows if r["version"] == row["version"]), key=lambda r: r["ordinal"])
        return [Passage(r["id"], r["patent_id"], r["ordinal"], r["field"], r["text"]) for r in rows]

    def count_patents(self) -> int:
        return self.reader.count("patents", "part == 0")

    def count_passages(self) -> int:
        return self.reader.count("passages")

    def health(self) -> dict[str, object]:
        def measure() -> dict[str, object]:
            patents, passages = self.count_patents(), self.count_passages()
            where = self.reader.connection.where
            detail = f"{patents} patents, {passages} passages in Milvus at {where}"
            return {"detail": detail, "patents": patents, "passages": passages}

        return self.reader.health({"backend": "milvus"}, measure)


class ClusterLexical:
    """BM25 in Milvus (a BM25 function over the encoded tokens), with `LexicalIndex`'s search methods.

    Scores are divided by (k1 + 1), as the embedded index's, and read as positive whichever sign the
    server gives (Milvus Lite returns BM25 distances negated). The fusion bound needs each term's
    document frequency, which Milvus does not expose: `TermStatistics` reads it from BM25 searches.
    """

    def __init__(self, reader: ClusterReader):
        self.reader = reader
        self.statistics = TermStatistics(reader)

    def search(self, query: str, k: int = 10, flt: SearchFilter | None = None) -> list[tuple[int, float]]:
        from patentrank.text import analyze

        return self.search_tokens(analyze(query), k, flt)

    def search_tokens(
        self, tokens: Sequence[str], k: int = 10, flt: SearchFilter | None = None
    ) -> list[tuple[int, float]]:
        text = token_text(tokens)
        if not text:
            return []
        expr = filter_expression(flt)
        timeout = self.reader.connection.timeout_s
        hits = self.reader.connection.call(
            "BM25 search",
            lambda c: c.search(
                self.reader.names["passages"], data=[text], anns_field="sparse", limit=int(k), filter=expr,
                search_params={"metric_type": "BM25"}, output_fields=["id"],
                consistency_level=self.reader.consistency, timeout=timeout,
            ),
        )  # fmt: skip
        pairs = [(int(h["id"]), abs(float(h["distance"])) / (K1 + 1.0)) for h in hits[0]]
        return sorted(pairs, key=lambda pair: (-pair[1], pair[0]))

    def _frequencies(self, tokens: Iterable[str]) -> tuple[int, dict[str, int]]:
        """(passages, {token: document frequency}) for these tokens (`term_stats.py`)."""
        return self.statistics.frequencies(tokens)

    def without_common_terms(self, tokens: Sequence[str], max_df: float | None) -> list[str]:
        """As `LexicalIndex.without_common_terms` (PATENTRANK_LEXICAL_MAX_DF)."""
        if max_df is None:
            return list(tokens)
        total, counts = self._frequencies(tokens)
        common = {t for t, df in counts.items() if df > max_df * max(total, 1)}
        return [t for t in tokens if t not in common] or list(tokens)

    def best_possible_score(self, tokens: Sequence[str]) -> float:
        """As `LexicalIndex.best_possible_score`: the sum of the query terms' idf, times their repeats."""
        counts = Counter(t for t in tokens if len(t.encode()) <= MAX_TOKEN_BYTES)
        if not counts:
            return 0.0
        total, dfs = self._frequencies(counts)
        total = max(total, 1)
        return sum(r * math.log(1.0 + (total - dfs[t] + 0.5) / (dfs[t] + 0.5)) for t, r in counts.items())

    def count(self) -> int:
        return self.reader.count("passages")

    def health(self) -> dict[str, object]:
        def measure() -> dict[str, object]:
            passages = self.count()
            return {"detail": f"BM25 (Milvus) over {passages} passages", "passages": passages}

        return self.reader.health({"engine": "milvus"}, measure)

    def close(self) -> None:
        """Nothing to release: the connection belongs to the index."""


class ClusterVectors:
    """The passages' dense vectors in Milvus, searched through the `VectorStore` interface. Writes go
    through `ClusterIndex.add`, which writes a passage's text, tokens and vector in one row."""

    def __init__(self, reader: ClusterReader, dim: int, search_params: dict[str, Any] | None = None):
        self.reader = reader
        self.dim = int(dim)
        self.search_params = dict(search_params or {"metric_type": "IP", "params": {"ef": 256}})

    def search(
        self, queries: np.ndarray, k: int, flt: SearchFilter | None = None
    ) -> list[list[tuple[int, float]]]:
        matrix = check_queries(queries, k, self.dim)
        params = {**self.search_params, "params": dict(self.search_params.get("params", {}))}
        expr = filter_expression(flt)
        hnsw = "ef" in params["params"]
        if hnsw:
            params["params"]["ef"] = max(int(params["params"]["ef"]), int(k))
        patch = bool(expr) and hnsw and self.reader.is_lite
        if patch:  # as `MilvusStore` on Lite: it walks HNSW with the filter and comes back short
            params["params"]["ef"] = min(params["params"]["ef"] * lite.LITE_FILTER_EF_FACTOR, 16384)
        timeout = self.reader.connection.timeout_s
        hits = self.reader.connection.call(
            "vector search",
            lambda c: c.search(
                self.reader.names["passages"], data=matrix.tolist(), anns_field="vector", limit=int(k),
                filter=expr, search_params=params, output_fields=["id"],
                consistency_level=self.reader.consistency, timeout=timeout,
            ),
        )  # fmt: skip
        results = [[(int(h["id"]), float(h["distance"])) for h in row] for row in hits]
        short = [i for i, row in enumerate(results) if len(row) < k] if patch else []
        if short and (exact := self._lite_exact(matrix[short], int(k), expr)) is not None:
            for i, row in zip(short, exact, strict=True):
                results[i] = row
        return results

    def _lite_exact(self, queries: np.ndarray, k: int, expr: str) -> list[list[tuple[int, float]]] | None:
        """Exact answers over every row matching `expr` when at most `LITE_EXACT_LIMIT` do, else None
        (one query: counting the matches first costs seconds on Lite for broad filters)."""
        limit = lite.LITE_EXACT_LIMIT
        rows = self.reader.connection.call(
            "vector query",
            lambda c: c.query(
                self.reader.names["passages"], filter=expr, output_fields=["id", "vector"], limit=limit + 1,
                consistency_level=self.reader.consistency, timeout=self.reader.connection.timeout_s,
            ),
        )  # fmt: skip
        if len(rows) > limit:
            return None
        ids = np.array([r["id"] for r in rows], dtype=np.int64)
        vectors = np.array([r["vector"] for r in rows], dtype=np.float32).reshape(len(rows), self.dim)
        return lite.exact_top_k(queries, ids, vectors, k)

    def upsert(self, ids: Sequence[int], vectors: np.ndarray, fields: Sequence[PassageFields]) -> None:
        raise ClusterError("a cluster index writes vectors with their passages: use ClusterIndex.add")

    def delete(self, ids: Sequence[int]) -> None:
        raise ClusterError("a cluster index deletes passages with their patent: use ClusterIndex.delete")

    def save(self) -> None:
        """Nothing to do: Milvus has every acknowledged write."""

    def count(self) -> int:
        return self.reader.count("passages")

    def health(self) -> dict[str, object]:
        def measure() -> dict[str, object]:
            passages = self.count()
            return {
                "detail": f"{passages} {self.dim}-d vectors in Milvus",
                "count": passages,
                "dim": self.dim,
            }

        return self.reader.health({"backend": "milvus"}, measure)


def _patent(record: str) -> Patent:
    d = orjson.loads(record)
    for key in _DATES:
        d[key] = dt.date.fromisoformat(d[key]) if d.get(key) else None
    return Patent(**d)
