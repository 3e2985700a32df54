"""Document frequencies of query terms in a cluster index, read from BM25 searches instead of counts.

Milvus does not expose the statistics its BM25 function keeps. Score fusion needs each query term's
idf (`best_possible_score`), and so does `PATENTRANK_LEXICAL_MAX_DF`. Counting with
`TEXT_MATCH(tokens, term)` is exact but costs a scan per term on Milvus Lite (10.7 s per term at 100k
passages). Instead, one BM25 search carries every query term as its own query (nq = terms) and asks
for `probe_hits` hits:

- a term with fewer hits than that has exactly that many passages (BM25 returns only passages that
  contain the term): its document frequency is the count of hits;
- a common term's idf is read back from the scores of three of its hits (the first, middle and last of
  the probe: their scores differ, so they are different passages). With a hit's term frequency
  tf and length dl (from its stored tokens), BM25 of a one-term query divided by (k1 + 1) is
  s = idf * tf / (tf + k1 * (1 - b + b * dl / avgdl)), so

      idf * (tf / s) - k1 * b * dl * (1 / avgdl) = tf + k1 * (1 - b)

  is linear in the term's idf and in 1 / avgdl, which every term shares: a few hits of each common
  term give a least-squares system, solved in one step. The df whose Lucene idf that is follows.
  When no hit pins 1 / avgdl (every chosen hit the same), the last solved value (cached as long as
  the frequencies) stands in; only with none yet are those terms counted with `TEXT_MATCH`.

Two calls per query (the search, and one read of the chosen hits' tokens when there are common terms),
cached per term for `ttl_s`. Milvus Lite keeps BM25 statistics per segment, so there a common term's
idf is a fit over its hits' segments; a Milvus server keeps them for the whole collection.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from patentrank.index.cluster.schema import K1, B, encode_token

PROBE_HITS = 100  # terms in fewer passages than this are counted exactly
STATS_TTL_S = 300.0  # only fusion and the max-df floor read these: minutes-old is recent enough
INVERSE_AVGDL = "\x00 1/avgdl"  # cache key of the last solved 1 / avgdl (no token has a NUL)
AVGDL_SCALE = 1e12  # the cache keeps ints: 1 / avgdl scaled


class TermStatistics:
    """Cached (passages, {term: document frequency}) for a cluster index's BM25 field."""

    def __init__(self, reader: Any, probe_hits: int = PROBE_HITS, ttl_s: float = STATS_TTL_S) -> None:
        self.reader = reader
        self.probe_hits = max(int(probe_hits), 2)
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def frequencies(self, tokens: Iterable[str]) -> tuple[int, dict[str, int]]:
        """(passages, {token: document frequency}) for these analysed tokens."""
        words = {t: encode_token(t) for t in set(tokens)}
        total = self._cached("", lambda: {"": self.reader.count("passages")})[""]
        known = self._cached_many(list(dict.fromkeys(words.values())), total)
        return total, {t: known[w] for t, w in words.items()}

    # ------------------------------------------------------------ cache

    def _cached(self, key: str, compute: Any) -> dict[str, int]:
        hit = self._fresh([key])
        return hit if key in hit else self._store(compute())

    def _cached_many(self, words: list[str], total: int) -> dict[str, int]:
        known = self._fresh(words)
        missing = [w for w in words if w not in known]
        if missing:
            known.update(self._store(self._probe(missing, total)))
        return known

    def _fresh(self, keys: list[str]) -> dict[str, int]:
        now, found = time.monotonic(), {}
        with self._lock:
            for key in keys:
                cached = self._cache.get(key)
                if cached is not None and now - cached[0] < self.ttl_s:
                    found[key] = cached[1]
        return found

    def _store(self, values: dict[str, int]) -> dict[str, int]:
        now = time.monotonic()
        with self._lock:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache.update((k, (now, int(v))) for k, v in values.items())
        return values

    # ------------------------------------------------------------ reading Milvus

    def _probe(self, words: list[str], total: int) -> dict[str, int]:
        hits = self._search(words)
        dfs = {w: len(h) for w, h in zip(words, hits, strict=True) if len(h) < self.probe_hits}
        common = {w: h for w, h in zip(words, hits, strict=True) if w not in dfs}
        if common:
            dfs.update(self._from_scores(common, total))
        return dfs

    def _search(self, words: list[str]) -> list[list[tuple[int, float]]]:
        reader, timeout = self.reader, self.reader.connection.timeout_s
        rows = reader.connection.call(
            "BM25 statistics",
            lambda c: c.search(
                reader.names["passages"], data=words, anns_field="sparse", limit=self.probe_hits,
                search_params={"metric_type": "BM25"}, output_fields=["id"],
                consistency_level=reader.consistency, timeout=timeout,
            ),
        )  # fmt: skip
        # Lite returns BM25 distances negated; a hit without the term would score 0 and is not one.
        return [[(int(h["id"]), abs(float(h["distance"])) / (K1 + 1.0)) for h in row if h["distance"]]
                for row in rows]  # fmt: skip

    def _from_scores(self, common: dict[str, list[tuple[int, float]]], total: int) -> dict[str, int]:
        # Hits spread over each term's probe (first, middle, last) differ in score, so they differ in
        # tf / score or length and pin idf and avgdl apart; repeated texts make the top hits identical.
        chosen = {
            w: [hits[i] for i in sorted({0, len(hits) // 2, len(hits) - 1})] for w, hits in common.items()
        }
        ids = sorted({pid for hits in chosen.values() for pid, _ in hits})
        read = self.reader.query("passages", f"id in {ids}", ["id", "tokens"])
        tokens = {r["id"]: r["tokens"].split() for r in read}
        words = list(chosen)
        rows, rhs, owner = [], [], []
        for column, word in enumerate(words):
            for pid, score in chosen[word]:
                tf = tokens[pid].count(word) if pid in tokens else 0
                if tf == 0 or score <= 0:
                    continue
                row = [0.0] * (len(words) + 1)
                row[column], row[-1] = tf / score, -K1 * B * len(tokens[pid])
                rows.append(row)
                rhs.append(tf + K1 * (1.0 - B))
                owner.append(column)
        matrix, target = np.array(rows, dtype=np.float64), np.array(rhs, dtype=np.float64)
        solution = _solve(matrix, target, len(words))
        if solution is not None:
            self._store({INVERSE_AVGDL: solution[-1] * AVGDL_SCALE})
            idfs = solution[: len(words)].tolist()
        elif (cached := self._fresh([INVERSE_AVGDL])) and len(set(owner)) == len(words):
            # Every hit identical: the average length of an earlier probe pins each idf from its rows.
            inverse = cached[INVERSE_AVGDL] / AVGDL_SCALE
            per_row = (target - matrix[:, -1] * inverse) / matrix[np.arange(len(owner)), owner]
            idfs = [float(np.mean(per_row[np.array(owner) == c])) for c in range(len(words))]
        else:  # nothing pins avgdl yet: count these terms instead (exact, slow on Milvus Lite)
            return {w: self.reader.count("passages", f'TEXT_MATCH(tokens, "{w}")') for w in words}
        return {w: df_of_idf(float(idf), total) for w, idf in zip(words, idfs, strict=True)}


def _solve(rows: np.ndarray, rhs: np.ndarray, terms: int) -> np.ndarray | None:
    """Each common term's idf and then 1 / avgdl, or None when the system does not pin them down."""
    if len(rows) < terms + 1 or np.linalg.matrix_rank(rows) < terms + 1:
        return None
    solution, *_ = np.linalg.lstsq(rows, rhs, rcond=None)
    if not (np.all(np.isfinite(solution)) and solution[-1] > 0):  # 1 / avgdl must be positive
        return None
    return solution


def df_of_idf(idf: float, total: int) -> int:
    """The document frequency whose Lucene idf ln(1 + (N - df + 0.5) / (df + 0.5)) is `idf`.

    Example:
        >>> idf = math.log(1 + (1000 - 70 + 0.5) / (70 + 0.5))
        >>> df_of_idf(idf, 1000)
        70
    """
    return min(max(round((total + 1) / math.exp(idf) - 0.5), 0), total)
