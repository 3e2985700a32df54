"""Combination (obviousness, 35 USC 103) search: the pairs, optionally triples, of references from a
claim chart whose covered elements together reach furthest, with which reference covers which
element. Pure arithmetic over the chart: C(20, 2) = 190 pairs or C(20, 3) = 1,140 triples take
milliseconds; the cost is the chart's reranker calls (references x elements x passages per element).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from patentrank.claim_chart import ClaimChart, ReferenceChart
from patentrank.errors import InputError

MAX_COMBINATION_REFERENCES = 20


@dataclass
class Combination:
    references: list[str]  # the primary reference (the one covering most alone) first
    covered: list[int]
    by_element: dict[int, str]
    score: float  # the share of the claim's elements the combination covers
    uncovered: list[int]
    strength: float  # mean over elements of the best cell score: breaks ties between equal scores

    def as_dict(self) -> dict[str, Any]:
        return {
            "references": self.references,
            "covered": self.covered,
            "uncovered": self.uncovered,
            "score": self.score,
            "strength": self.strength,
            "by_element": {str(k): v for k, v in self.by_element.items()},
        }


def combine(
    chart: ClaimChart, size: int = 2, top: int = MAX_COMBINATION_REFERENCES, limit: int = 20
) -> list[Combination]:
    """Combinations of `size` (2 or 3) among the chart's `top` references, best first.

    A combination's score is the share of elements covered by at least one of its references. Ties
    go to the closer primary reference (more elements covered alone), then to the higher strength
    (the mean over elements of the best cell score in the combination).

    Example:
        >>> [c.references for c in combine(chart)][:1]   # doctest: +SKIP
        [['US1A', 'US2A']]
    """
    if size not in (2, 3):
        raise InputError("combination size must be 2 (pairs) or 3 (triples)", field="size")
    if not 1 <= top <= MAX_COMBINATION_REFERENCES:
        raise InputError(f"top must be between 1 and {MAX_COMBINATION_REFERENCES}", field="top")
    n = len(chart.elements)
    candidates = chart.references[:top]  # already ordered by coverage
    combos = []
    for group in itertools.combinations(candidates, size):
        combos.append(_combination(group, n, chart.threshold))
    combos.sort(key=lambda c: (-len(c.covered), -_primary_coverage(c, chart), -c.strength, c.references))
    return combos[:limit]


def _primary_coverage(combination: Combination, chart: ClaimChart) -> int:
    primary = next(r for r in chart.references if r.id == combination.references[0])
    return len(primary.covered)


def _combination(group: tuple[ReferenceChart, ...], n: int, threshold: float) -> Combination:
    # The primary is the reference that covers most on its own (then the stronger one).
    ordered = sorted(group, key=lambda r: (-len(r.covered), -r.mean_score))
    by_element: dict[int, str] = {}
    best_scores = []
    for index in range(n):
        cells = [(r.cells[index].score, -position, r.id) for position, r in enumerate(ordered)]
        score, _, owner = max(cells)
        best_scores.append(score)
        if score >= threshold:
            # A covered element is credited to the primary when it covers it, else to the next.
            owner = next(r.id for r in ordered if r.cells[index].score >= threshold)
            by_element[index] = owner
    covered = sorted(by_element)
    return Combination(
        references=[r.id for r in ordered],
        covered=covered,
        by_element=by_element,
        score=round(len(covered) / n, 6) if n else 0.0,
        uncovered=[i for i in range(n) if i not in by_element],
        strength=round(sum(best_scores) / n, 6) if n else 0.0,
    )
