"""Textbook BM25 for the best hits of a tantivy search: exact document lengths instead of one-byte ones.

tantivy, like Lucene, keeps each passage's length on one byte: exact up to 40 tokens, then rounded down
by up to 12% (`quantized_length`). BM25 over the rounded length favours long passages by a few percent,
enough to swap near-tied patents at the 10th place against any engine that uses exact lengths (bm25s,
Milvus: on wasteheat, 20% of the queries' top 10s differed from Milvus's by one such swap, 0.7% with
exact lengths).

The index keeps each passage's exact token count as a fast field. For the first `top` hits whose length
is not exactly representable, tantivy's own explanation gives every matched term's frequency, idf and
the average length; each term's part of the score is re-weighted from the rounded length to the exact
one. Since the rounded length is never above the exact one, an exact score is never above the tantivy
score, so the hits that stay above the best tantivy score left unexamined are exactly BM25's top hits,
in BM25's order (`certified`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import tantivy


def _term_parts(node: dict[str, Any]) -> tuple[float, float, float] | None:
    """(freq, dl, avgdl) of a TermQuery explanation, or None if it is something else."""
    if not node.get("description", "").startswith("TermQuery"):
        return None
    for part in node.get("details", []):
        if part.get("description", "").startswith("freq / (freq"):
            values = {d["description"].split(",")[0]: float(d["value"]) for d in part.get("details", [])}
            return values["freq"], values["dl"], values["avgdl"]
    return None


def _exact_value(node: dict[str, Any], length: int, k1: float, b: float) -> float:
    """The explanation's score, with every term part re-weighted to the exact document length."""
    value = float(node["value"])
    parts = _term_parts(node)
    if parts is not None:
        freq, dl, avgdl = parts
        rounded = freq + k1 * (1.0 - b + b * dl / avgdl)
        exact = freq + k1 * (1.0 - b + b * length / avgdl)
        return value * rounded / exact
    children = node.get("details", [])
    if not children:
        return value  # constant-score filter clauses (0)
    if node.get("description", "").startswith("BooleanClause"):
        return sum(_exact_value(child, length, k1, b) for child in children)
    if len(children) == 1 and float(children[0]["value"]):  # a boost: value = factor x child
        child = children[0]
        return value / float(child["value"]) * _exact_value(child, length, k1, b)
    return value


def rescore(
    query: tantivy.Query,
    searcher: tantivy.Searcher,
    hits: Sequence[tuple[float, Any]],
    lengths: Sequence[int],
    quantized: Sequence[int],
    top: int,
    k1: float,
    b: float,
) -> list[float]:
    """tantivy scores of `hits` (best first), with the first `top` made exact where the stored length
    differs from the exact one (`lengths`, their `quantized` forms)."""
    scores = [float(score) for score, _ in hits]
    for i in range(min(top, len(hits))):
        if lengths[i] != quantized[i]:
            explanation = orjson.loads(query.explain(searcher, hits[i][1]).to_json())
            scores[i] = _exact_value(explanation, lengths[i], k1, b)
    return scores


def certified(scores: Sequence[float], tantivy_scores: Sequence[float], top: int) -> int:
    """How many of the best rescored hits are exactly BM25's best: those at or above the first
    unexamined tantivy score (an upper bound on the exact score of everything not examined).

    Example:
        >>> certified([9.5, 9.0, 7.0], [10.0, 9.2, 8.0], top=2)  # the 3rd (8.0) was not examined
        2
        >>> certified([9.5, 7.5, 7.0], [10.0, 9.2, 8.0], top=2)
        1
    """
    if len(scores) <= top:
        return len(scores)
    ceiling = tantivy_scores[top]
    return sum(score >= ceiling for score in scores[:top])
