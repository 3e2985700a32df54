"""Fusing the lexical and dense passage lists into one first-stage order.

Two methods, chosen per request (`SearchRequest.fusion`):

- ``"score"`` (the default): a convex combination of normalised scores,
  ``w * bm25 / bound + (1 - w) * (cos - c_min) / (1 - c_min)``, with ``w = lexical_weight /
  (lexical_weight + dense_weight)``. ``bound`` is the BM25 score no passage can exceed for this query
  (the sum of its terms' idf, `LexicalIndex.best_possible_score`), so the lexical part is an absolute
  confidence: a query whose words the index lacks (Chinese words over English patents) or that
  matches only its common words contributes little, and the dense list decides. ``c_min`` is the
  lowest cosine in the dense list, so the dense part spans [0, 1] between the list's tail and a
  perfect match. A passage one retriever did not return counts 0 for it. This is the "theoretical
  min-max" convex combination that Bruch et al. (TOIS 2023, "An Analysis of Fusion Functions for
  Hybrid Retrieval") found better than RRF and robust to its one weight, with BM25's true maximum.
- ``"rrf"``: reciprocal-rank fusion, ``sum of weight / (rrf_k + rank)``; rank-only, so it cannot
  tell a confident list from a noisy one (kept for clients that ask for it).

docs/evaluation.md has the measurements behind the choice and the default weight.

Example:
    >>> lists = {"lexical": [(1, 8.0), (2, 4.0)], "dense": [(2, 0.9), (3, 0.7)]}
    >>> fused = fuse_scores(lists, method="score", lexical_weight=0.5, dense_weight=0.5, lexical_bound=8.0)
    >>> [(p, round(s, 3)) for p, s in sorted(fused.items())]
    [(1, 0.5), (2, 0.583), (3, 0.0)]
    >>> rrf = fuse_scores(lists, method="rrf", lexical_weight=1.0, dense_weight=1.0, rrf_k=60)
    >>> round(rrf[2], 5) == round(1 / 62 + 1 / 61, 5)
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

FusionMethod = Literal["score", "rrf"]
FUSION_METHODS: tuple[str, ...] = ("score", "rrf")
DEFAULT_FUSION: FusionMethod = "score"
# The default weights: measured on the dev queries of ../shared/data (docs/evaluation.md, "Fusion").
DEFAULT_LEXICAL_WEIGHT = 0.6
DEFAULT_DENSE_WEIGHT = 0.4
DEFAULT_RRF_K = 60

Ranked = Sequence[tuple[int, float]]


def fuse_scores(
    lists: Mapping[str, Ranked],
    *,
    method: str = DEFAULT_FUSION,
    lexical_weight: float = DEFAULT_LEXICAL_WEIGHT,
    dense_weight: float = DEFAULT_DENSE_WEIGHT,
    rrf_k: int = DEFAULT_RRF_K,
    lexical_bound: float | None = None,
) -> dict[int, float]:
    """Passage id -> fused score over the lists given ("lexical" and/or "dense", best first).

    One list alone keeps its own scores. With both, `method` fuses them as the module explains;
    `lexical_bound` is needed by "score" (without it, the lexical list's best score stands in).
    """
    present = {name: ranked for name, ranked in lists.items() if name in ("lexical", "dense")}
    if len(present) == 1:
        ((_, ranked),) = present.items()
        return {pid: float(score) for pid, score in ranked}
    if method == "rrf":
        return _rrf(present, {"lexical": lexical_weight, "dense": dense_weight}, rrf_k)
    total = lexical_weight + dense_weight
    alpha = lexical_weight / total if total > 0 else 0.5
    return _convex(present.get("lexical", ()), present.get("dense", ()), alpha, lexical_bound)


def _rrf(lists: Mapping[str, Ranked], weights: Mapping[str, float], k: int) -> dict[int, float]:
    fused: dict[int, float] = {}
    for name, ranked in lists.items():
        for rank, (pid, _) in enumerate(ranked, 1):
            fused[pid] = fused.get(pid, 0.0) + weights[name] / (k + rank)
    return fused


def _convex(lexical: Ranked, dense: Ranked, alpha: float, bound: float | None) -> dict[int, float]:
    fused: dict[int, float] = {}
    if lexical:
        top = bound if bound and bound > 0 else max(score for _, score in lexical)
        for pid, score in lexical:
            fused[pid] = alpha * float(score) / top if top > 0 else 0.0
    if dense:
        floor = min(score for _, score in dense)
        span = (1.0 - floor) or 1.0
        for pid, score in dense:
            fused[pid] = fused.get(pid, 0.0) + (1.0 - alpha) * (float(score) - floor) / span
    return fused
