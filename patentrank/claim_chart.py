"""Claim charts: each element of a claim against the passage of each reference that best discloses
it, with coverage per reference, from the same reranker (and its cache) that serves `/v1/rerank`.

The embedder is the fast first pass: every passage of a reference is compared with every element
by cosine similarity, and only the `passages_per_element` closest go to the reranker. Without an
embedder every passage (up to `max_chart_passages`) is reranked.

Example:
    >>> scorers = scorers_from_models(reranker, embedder)                     # doctest: +SKIP
    >>> charter = ClaimCharter(index.docstore, scorers, settings)             # doctest: +SKIP
    >>> chart = charter.chart(ChartRequest("claim 1 of US8926509B2", ["EP3404678B1"]))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import re
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from patentrank.claims import split_elements, strip_leading_number
from patentrank.config import Settings
from patentrank.errors import InputError
from patentrank.patent_ids import patent_id_problem

CHART_INSTRUCTION = (
    "Given a claim element of a patent, judge whether the passage of a prior-art reference discloses "
    "this element"
)
_CLAIM_OF = re.compile(r"^\s*claim\s+(\d{1,4})\s+(?:of|in|from)\s+([A-Za-z0-9][A-Za-z0-9._:\-]*)\s*$", re.I)

RerankFn = Callable[[str, list[str], str | None], list[float]]
EmbedQueriesFn = Callable[[list[str], str | None], np.ndarray]
EmbedDocumentsFn = Callable[[list[str]], np.ndarray]


class UnknownReference(InputError):
    """A publication number that is not in the index (HTTP 404 naming the field)."""


@dataclass
class Scorers:
    """The model calls a chart needs; the server builds them from the engine (shared batching and
    score cache), the CLI from the loaded models."""

    rerank: RerankFn
    embed_queries: EmbedQueriesFn | None = None
    embed_documents: EmbedDocumentsFn | None = None


def scorers_from_engine(engine: Any) -> Scorers:
    """Scorers that go through `engine.rerank_sync` / `embed_sync` (call from a worker thread)."""
    engine.require_reranker()

    def rerank(query: str, docs: list[str], instruction: str | None) -> list[float]:
        return list(engine.rerank_sync(query, docs, instruction=instruction).scores)

    if engine.embedder is None:
        return Scorers(rerank)
    return Scorers(
        rerank,
        lambda texts, instruction: (
            engine.embed_sync(texts, input_type="query", instruction=instruction).vectors
        ),
        _cached_documents(engine, lambda texts: engine.embed_sync(texts, input_type="document").vectors),
    )


# Passage vectors for the first pass, per engine: the rerank cache already makes a repeated chart
# cheap (the page charts, then searches combinations of the same chart), the embedder should too.
_VECTOR_CACHES: weakref.WeakKeyDictionary[Any, OrderedDict[str, np.ndarray]] = weakref.WeakKeyDictionary()
VECTOR_CACHE_SIZE = 20_000


def _cached_documents(owner: Any, embed: EmbedDocumentsFn) -> EmbedDocumentsFn:
    cache = _VECTOR_CACHES.setdefault(owner, OrderedDict())

    def embed_documents(texts: list[str]) -> np.ndarray:
        keys = [hashlib.blake2b(t.encode(), digest_size=16).hexdigest() for t in texts]
        found = {k: cache[k] for k in keys if k in cache}
        for key in found:
            cache.move_to_end(key)
        missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in found}
        if missing:
            for key, vector in zip(missing, embed(list(missing.values())), strict=True):
                found[key] = cache[key] = np.asarray(vector, dtype=np.float32)
        while len(cache) > VECTOR_CACHE_SIZE:
            cache.popitem(last=False)
        return np.stack([found[k] for k in keys])

    return embed_documents


def scorers_from_models(reranker: Any, embedder: Any | None) -> Scorers:
    """Scorers calling loaded models directly (the CLI, tests)."""

    def rerank(query: str, docs: list[str], instruction: str | None) -> list[float]:
        return [float(s) for s in reranker.score(query, docs, instruction=instruction)]

    if embedder is None:
        return Scorers(rerank)
    return Scorers(
        rerank,
        lambda texts, instruction: np.asarray(embedder.embed_queries(texts, instruction=instruction)),
        lambda texts: np.asarray(embedder.embed_documents(texts)),
    )


@dataclass
class ChartRequest:
    """A claim (text, or 'claim N of PUBNUMBER' from the index) against reference publications."""

    claim: str
    references: list[str] = field(default_factory=list)
    elements: list[str] | None = None
    instruction: str | None = None
    threshold: float | None = None


@dataclass
class Cell:
    element: int
    passage_id: int | None
    text: str
    score: float
    field: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "element": self.element,
            "passage_id": self.passage_id,
            "text": self.text,
            "score": self.score,
            "field": self.field,
        }


@dataclass
class ReferenceChart:
    id: str
    title: str
    cells: list[Cell]
    threshold: float

    @property
    def covered(self) -> list[int]:
        """Element indexes whose best passage scores at or above the threshold."""
        return [c.element for c in self.cells if c.score >= self.threshold]

    @property
    def coverage(self) -> float:
        return len(self.covered) / len(self.cells) if self.cells else 0.0

    @property
    def weakest(self) -> int | None:
        return min(self.cells, key=lambda c: c.score).element if self.cells else None

    @property
    def mean_score(self) -> float:
        return float(np.mean([c.score for c in self.cells])) if self.cells else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "coverage": self.coverage,
            "covered": self.covered,
            "weakest_element": self.weakest,
            "mean_score": self.mean_score,
            "cells": [c.as_dict() for c in self.cells],
        }


@dataclass
class ClaimChart:
    claim: str
    elements: list[str]
    references: list[ReferenceChart]
    threshold: float
    instruction: str
    source: str | None = None  # "claim N of X" when the claim came from the index
    took_ms: float = 0.0
    reranked_pairs: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "claim": self.claim,
            "source": self.source,
            "elements": [{"index": i, "text": t} for i, t in enumerate(self.elements)],
            "threshold": self.threshold,
            "instruction": self.instruction,
            "references": [r.as_dict() for r in self.references],
            "reranked_pairs": self.reranked_pairs,
            "took_ms": round(self.took_ms, 1),
        }


class ClaimCharter:
    """Builds claim charts over one index's document store."""

    def __init__(self, docstore: Any, scorers: Scorers, settings: Settings) -> None:
        self.docstore = docstore
        self.scorers = scorers
        self.settings = settings

    # ------------------------------------------------------------ input

    def resolve_claim(self, claim: str) -> tuple[str, str | None]:
        """(claim text, source): 'claim 3 of US8926509B2' reads claim 3 from the index."""
        text = (claim or "").strip()
        if not text:
            raise InputError("claim is empty: give a claim's text or 'claim N of PUBLICATION'", field="claim")
        match = _CLAIM_OF.match(text)
        if not match:
            return text, None
        number, patent_id = int(match.group(1)), match.group(2)
        patent = self.docstore.get_patent(patent_id)
        if patent is None:
            raise UnknownReference(f"claim: publication {patent_id!r} is not in the index", field="claim")
        if not 1 <= number <= len(patent.claims):
            raise InputError(
                f"claim: {patent_id} has {len(patent.claims)} claims, there is no claim {number}",
                field="claim",
            )
        return strip_leading_number(patent.claims[number - 1], number), f"claim {number} of {patent_id}"

    def elements_of(self, claim: str, elements: Sequence[str] | None) -> list[str]:
        """The user's split when given (blank entries dropped), else `split_elements`."""
        if elements is not None:
            chosen = [e.strip() for e in elements if e and e.strip()]
        else:
            chosen = split_elements(claim)
        if not chosen:
            raise InputError("no claim elements found: give `elements` or a longer claim", field="elements")
        limit = self.settings.max_chart_elements
        if len(chosen) > limit:
            raise InputError(
                f"{len(chosen)} claim elements is more than the limit of {limit} "
                "(PATENTRANK_MAX_CHART_ELEMENTS)",
                field="elements",
            )
        return chosen

    def check_references(self, references: Sequence[str]) -> list[str]:
        ids = list(dict.fromkeys(r.strip() for r in references if r and r.strip()))
        for position, patent_id in enumerate(ids):
            problem = patent_id_problem(patent_id)
            if problem is not None:
                raise InputError(f"references[{position}] {problem}", field=f"references[{position}]")
        if not ids:
            raise InputError(
                "give at least one reference publication number (or a search)", field="references"
            )
        limit = self.settings.max_chart_references
        if len(ids) > limit:
            raise InputError(
                f"{len(ids)} references is more than the limit of {limit} (PATENTRANK_MAX_CHART_REFERENCES)",
                field="references",
            )
        found = self.docstore.get_patents(ids)
        missing = [i for i in ids if i not in found]
        if missing:
            raise UnknownReference(
                f"references not in the index: {', '.join(missing[:10])}", field="references"
            )
        return ids

    # ------------------------------------------------------------ chart

    def chart(self, request: ChartRequest) -> ClaimChart:
        """The chart; raises InputError (bad input, naming the field) or UnknownReference."""
        began = time.perf_counter()
        claim, source = self.resolve_claim(request.claim)
        elements = self.elements_of(claim, request.elements)
        ids = self.check_references(request.references)
        threshold = self.settings.chart_threshold if request.threshold is None else request.threshold
        if not 0.0 <= threshold <= 1.0:
            raise InputError("threshold must be between 0 and 1", field="threshold")
        instruction = (request.instruction or "").strip() or CHART_INSTRUCTION
        element_vectors = None
        if self.scorers.embed_queries is not None:
            element_vectors = _normalized(self.scorers.embed_queries(elements, instruction))
        patents = self.docstore.get_patents(ids)
        charts, pairs = [], 0
        for patent_id in ids:
            passages = self.docstore.passages_of(patent_id)[: self.settings.max_chart_passages]
            cells, scored = self._cells(elements, passages, element_vectors, instruction)
            pairs += scored
            charts.append(ReferenceChart(patent_id, patents[patent_id].title, cells, threshold))
        # Most elements covered first; among equals, the stronger passages.
        charts.sort(key=lambda r: (-len(r.covered), -r.mean_score))
        took = (time.perf_counter() - began) * 1000
        return ClaimChart(claim, elements, charts, threshold, instruction, source, took, pairs)

    def _cells(
        self, elements: list[str], passages: list[Any], element_vectors: np.ndarray | None, instruction: str
    ) -> tuple[list[Cell], int]:
        if not passages:
            return [Cell(i, None, "", 0.0) for i in range(len(elements))], 0
        texts = [p.text for p in passages]
        k = min(self.settings.chart_passages_per_element, len(passages))
        if element_vectors is not None and self.scorers.embed_documents is not None and k < len(passages):
            similarity = element_vectors @ _normalized(self.scorers.embed_documents(texts)).T
            shortlists = [list(np.argsort(-row, kind="stable")[:k]) for row in similarity]
        else:
            shortlists = [list(range(len(passages))) for _ in elements]
        cells, pairs = [], 0
        for index, (element, shortlist) in enumerate(zip(elements, shortlists, strict=True)):
            scores = self.scorers.rerank(element, [texts[j] for j in shortlist], instruction)
            pairs += len(shortlist)
            best = int(np.argmax(scores))
            passage = passages[shortlist[best]]
            cells.append(Cell(index, passage.passage_id, passage.text, float(scores[best]), passage.field))
        return cells, pairs


def _normalized(vectors: Any) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.where(norms == 0, 1, norms)
