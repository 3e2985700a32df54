"""The two-stage pipeline: retrieve (BM25, dense), fuse, filter, rerank, aggregate passages to patents."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from patentrank.errors import InputError
from patentrank.families import Collapsed, FamilyMember, Group, Identity, collapse, fill_page
from patentrank.fusion import fuse_scores
from patentrank.index.base import SearchIndex
from patentrank.index.patent_index import PatentIndex  # noqa: F401 (the docstring example's)
from patentrank.search_request import MAX_RETRIEVE_K, Mode, SearchRequest
from patentrank.text import analyze, highlight_terms

# rerank(query, documents, instruction) -> P(yes) per document; called with `max_tokens_per_doc=T` as
# well when a passage cap is set (PATENTRANK_RERANK_PASSAGE_TOKENS or the request's).
RerankFn = Callable[..., list[float]]
EmbedQueryFn = Callable[[str, str | None], np.ndarray]

_PUBLICATION_NUMBER = re.compile(r"^[A-Z]{2}\d{4,}[A-Z]?\d?$")


@dataclass
class PassageHit:
    """A passage as retrieved: its text, where the query's terms match, and each stage's score."""

    passage_id: int
    patent_id: str
    field: str
    text: str
    highlights: list[tuple[int, int]] = field(default_factory=list)
    lexical_score: float | None = None
    lexical_rank: int | None = None
    dense_score: float | None = None
    dense_rank: int | None = None
    fused_score: float = 0.0
    first_stage_rank: int = 0
    rerank_score: float | None = None


@dataclass
class PatentResult:
    """One patent in the answer, with its best passage and the scores of every stage."""

    rank: int
    patent_id: str
    title: str
    abstract: str
    language: str
    jurisdiction: str
    codes: list[str]
    applicants: list[str]
    priority_date: str | None
    publication_date: str | None
    best_passage: PassageHit
    rank_before_rerank: int
    reranked: bool
    score: float  # the rerank score when reranked, else the first-stage score
    family_members: list[FamilyMember] = field(default_factory=list)  # collapsed into this one


@dataclass
class SearchResponse:
    """The ranked patents plus which stages ran, why others did not, and how long each took."""

    results: list[PatentResult]
    stages: dict[str, dict[str, Any]]
    query: str
    mode: Mode
    by_patent: str | None = None
    applied_filter: dict[str, Any] = field(default_factory=dict)
    took_ms: float = 0.0
    collapse: dict[str, Any] = field(default_factory=dict)  # on?, results collapsed, query twins left out

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LexicalHits(list[tuple[int, float]]):
    """The lexical list, carrying the best score any passage could have had (fusion's normaliser)."""

    bound: float = 0.0


class SearchPipeline:
    """Hybrid retrieval over a `PatentIndex`, then reranking; works with any stage missing.

    `embed_query(text, instruction)` gives a query vector (None: no dense stage); `rerank(query,
    documents, instruction)` gives P(yes) scores (None: no rerank stage). `unavailable` explains a
    missing stage (e.g. the model load error) in the response. `rerank_candidates` and
    `rerank_passage_tokens` are used by requests that do not set `candidates` / `max_passage_tokens`
    (the settings PATENTRANK_RERANK_CANDIDATES and PATENTRANK_RERANK_PASSAGE_TOKENS).

    Example (the bundled sample corpus, lexical only; pass `embed_query` / `rerank` for the others):
        >>> import tempfile
        >>> from patentrank.corpus import load_patents, sample_corpus_path
        >>> index = PatentIndex(tempfile.mkdtemp())
        >>> _ = index.add(load_patents(sample_corpus_path()))
        >>> pipeline = SearchPipeline(index, unavailable={"rerank": "no reranker in this example"})
        >>> response = pipeline.search(SearchRequest("waste heat boiler", mode="lexical"))
        >>> [hit.patent_id for hit in response.results[:2]], response.stages["rerank"]
        (['WO2010123456A1', 'US2013086456A1'], {'ran': False, 'reason': 'no reranker in this example'})
        >>> index.close()
    """

    def __init__(
        self,
        index: SearchIndex,
        *,
        embed_query: EmbedQueryFn | None = None,
        rerank: RerankFn | None = None,
        unavailable: dict[str, str] | None = None,
        default_instruction: str | None = None,
        rerank_candidates: int = 50,
        rerank_passage_tokens: int | None = None,
        lexical_max_df: float | None = None,
    ) -> None:
        self.index = index
        self.lexical_max_df = lexical_max_df
        self.rerank_candidates = rerank_candidates
        self.rerank_passage_tokens = rerank_passage_tokens
        self.embed_query = embed_query if index.vectors is not None else None
        self.rerank = rerank
        self.unavailable = dict(unavailable or {})
        if embed_query is not None and index.vectors is None:
            self.unavailable.setdefault("dense", "the index has no vector store")
        self.default_instruction = default_instruction

    def missing_stages(self) -> dict[str, str]:
        """Stage ("dense", "hybrid", "rerank") -> why it cannot run here; empty when every stage can."""
        missing = {}
        if self.embed_query is None:
            missing["dense"] = missing["hybrid"] = self.unavailable.get("dense", "no embedder")
        if self.rerank is None:
            missing["rerank"] = self.unavailable.get("rerank", "no reranker")
        return missing

    # ------------------------------------------------------------ query by patent

    def _resolve_patent(self, req: SearchRequest) -> tuple[SearchRequest, str | None]:
        """Turn a search by patent into a text query that excludes it, cut off at its priority date."""
        wanted = req.patent_id or re.sub(r"\s+", "", req.query).upper()
        if not req.patent_id and not _PUBLICATION_NUMBER.match(wanted):
            return req, None
        patent = self.index.docstore.get_patent(wanted)
        if patent is None:
            if req.patent_id:
                raise InputError(f"patent {req.patent_id!r} is not in the index", field="patent_id")
            return req, None  # looked like a number, but it is just a query
        text = "\n".join(part for part in (patent.title, patent.abstract, *patent.claims[:1]) if part)
        flt = replace(req.filter, exclude_patents=[*req.filter.exclude_patents, patent.id])
        if not flt.before and not flt.after and patent.priority_date:
            flt = replace(flt, before=patent.priority_date.isoformat(), date_field="priority")
        return replace(req, query=text[:2000], filter=flt, patent_id=patent.id), patent.id

    # ------------------------------------------------------------ stages

    def _lexical(self, req: SearchRequest, with_bound: bool) -> LexicalHits:
        flt = None if req.filter.is_empty() else req.filter  # evaluated inside the lexical engine's query
        tokens = self.index.lexical.without_common_terms(analyze(req.query), self.lexical_max_df)
        hits = LexicalHits(self.index.lexical.search_tokens(tokens, req.retrieve_k, flt))
        # Only score fusion of both lists reads the bound (one list keeps its scores; RRF uses ranks), and
        # it costs a document-frequency lookup per term: one Milvus query each in cluster mode.
        hits.bound = self.index.lexical.best_possible_score(tokens) if hits and with_bound else 0.0
        return hits

    def _dense(self, req: SearchRequest, instruction: str | None) -> list[tuple[int, float]]:
        assert self.embed_query is not None and self.index.vectors is not None
        vector = np.asarray(self.embed_query(req.query, instruction), dtype=np.float32).reshape(1, -1)
        flt = None if req.filter.is_empty() else req.filter
        return self.index.vectors.search(vector, req.retrieve_k, flt)[0]

    def search(self, req: SearchRequest) -> SearchResponse:
        """Run the pipeline for one request."""
        start = time.perf_counter()
        req.validate()
        req, by_patent = self._resolve_patent(req)
        instruction = req.instruction or self.default_instruction
        stages: dict[str, dict[str, Any]] = {}
        want_lexical = req.mode in ("lexical", "hybrid")
        want_dense = req.mode in ("dense", "hybrid")
        if want_dense and self.embed_query is None:
            reason = self.unavailable.get("dense", "no embedder is configured")
            stages["dense"] = {"ran": False, "reason": reason}
            want_dense, want_lexical = False, True  # degrade to what works, and say so
        wanted = [name for name, on in (("lexical", want_lexical), ("dense", want_dense)) if on]
        docstore = self.index.docstore
        own = docstore.get_identities([by_patent]).get(by_patent) if by_patent and req.collapse else None
        retrieve_k, identities = req.retrieve_k, None
        while True:  # once, unless collapsing leaves too few inventions to fill the page
            lists = self._retrieve(replace(req, retrieve_k=retrieve_k), instruction, wanted, stages)
            hits = self._fuse(req, lists)
            self._attach_heads(hits)
            if not req.collapse:
                break
            identities = docstore.get_identities(dict.fromkeys(h.patent_id for h in hits))
            inventions = len(collapse(list(identities), identities, exclude=own).groups)
            truncated = any(len(found) >= retrieve_k for found in lists.values())
            shortened = inventions < min(req.top_n, len(identities))  # by collapsing, not by retrieval
            if not shortened or not truncated or retrieve_k >= MAX_RETRIEVE_K:
                break
            retrieve_k = min(2 * retrieve_k, MAX_RETRIEVE_K)
        reranked = self._rerank(req, hits, instruction, stages)
        results, collapsed = self._aggregate(req, hits, reranked, identities, own)
        return SearchResponse(
            results=results,
            stages=stages,
            query=req.query,
            mode=req.mode,
            by_patent=by_patent,
            applied_filter=asdict(req.filter),
            took_ms=_ms(start),
            collapse={
                "on": req.collapse,
                "collapsed": sum(len(r.family_members) for r in results),
                "excluded_twins_of_query": [{"patent_id": p, "reason": why} for p, why in collapsed.excluded],
                "retrieve_k": retrieve_k,
            },
        )

    def _retrieve(
        self, req: SearchRequest, instruction: str | None, wanted: list[str], stages: dict[str, Any]
    ) -> dict[str, list[tuple[int, float]]]:
        lists: dict[str, list[tuple[int, float]]] = {}
        with_bound = len(wanted) > 1 and req.fusion == "score"
        for name in wanted:
            t = time.perf_counter()
            if name == "lexical":
                lists[name] = self._lexical(req, with_bound)
            else:
                lists[name] = self._dense(req, instruction)
            stages[name] = {"ran": True, "ms": _ms(t), "hits": len(lists[name])}
        return lists

    def _fuse(self, req: SearchRequest, lists: dict[str, list[tuple[int, float]]]) -> list[PassageHit]:
        """One first-stage order: the request's fusion of the retrievers' lists (patentrank/fusion.py)."""
        hits: dict[int, PassageHit] = {}
        for name, ranked in lists.items():
            for rank, (pid, score) in enumerate(ranked, 1):
                hit = hits.setdefault(pid, PassageHit(pid, "", "", ""))
                setattr(hit, f"{name}_score", float(score))
                setattr(hit, f"{name}_rank", rank)
        fused = fuse_scores(
            lists,
            method=req.fusion,
            lexical_weight=req.lexical_weight,
            dense_weight=req.dense_weight,
            rrf_k=req.rrf_k,
            lexical_bound=getattr(lists.get("lexical"), "bound", None),
        )
        for pid, score in fused.items():
            hits[pid].fused_score = score
        ordered = sorted(hits.values(), key=lambda h: (-h.fused_score, h.passage_id))
        for rank, hit in enumerate(ordered, 1):
            hit.first_stage_rank = rank
        return ordered

    def _attach_heads(self, hits: list[PassageHit]) -> None:
        """Patent and field of every hit; texts are read later for the few passages that need them."""
        heads = self.index.docstore.get_passage_heads([h.passage_id for h in hits])
        for hit in hits:
            head = heads.get(hit.passage_id)
            if head is not None:  # a passage deleted between retrieval and now is dropped below
                hit.patent_id, hit.field = head
        hits[:] = [h for h in hits if h.patent_id]
        # Exact ties (family members with the same text) go to the smaller patent id, whatever the
        # backend numbers its passages: embedded and cluster indexes then rank the same patents.
        hits.sort(key=lambda h: (-h.fused_score, h.patent_id, h.passage_id))
        for rank, hit in enumerate(hits, 1):
            hit.first_stage_rank = rank

    def _attach_texts(self, hits: list[PassageHit]) -> None:
        """Texts of these hits only (the rerank candidates, the shown passages): O(candidates) reads."""
        missing = [h for h in hits if not h.text]
        if missing:
            texts = {
                p.passage_id: p.text
                for p in self.index.docstore.get_passages([h.passage_id for h in missing])
            }
            for hit in missing:
                hit.text = texts.get(hit.passage_id, "")

    def _rerank(
        self, req: SearchRequest, hits: list[PassageHit], instruction: str | None, stages: dict[str, Any]
    ) -> list[PassageHit]:
        if not req.rerank:
            stages["rerank"] = {"ran": False, "reason": "rerank was turned off in the request"}
            return []
        if self.rerank is None:
            reason = self.unavailable.get("rerank", "no reranker is configured")
            stages["rerank"] = {"ran": False, "reason": reason}
            return []
        candidates = req.candidates or self.rerank_candidates
        cap = req.max_passage_tokens or self.rerank_passage_tokens
        chosen: list[PassageHit] = []
        per_patent: dict[str, int] = {}
        for hit in hits:
            if per_patent.get(hit.patent_id, 0) < req.passages_per_patent:
                per_patent[hit.patent_id] = per_patent.get(hit.patent_id, 0) + 1
                chosen.append(hit)
                if len(chosen) >= candidates:
                    break
        self._attach_texts(chosen)
        t = time.perf_counter()
        if chosen:
            texts = [h.text for h in chosen]
            if cap is None:
                scores = self.rerank(req.query, texts, instruction)
            else:
                scores = self.rerank(req.query, texts, instruction, max_tokens_per_doc=cap)
            for hit, score in zip(chosen, scores, strict=True):
                hit.rerank_score = float(score)
        stages["rerank"] = {"ran": True, "ms": _ms(t), "pairs": len(chosen), "passage_tokens": cap}
        return chosen

    def _aggregate(
        self,
        req: SearchRequest,
        hits: list[PassageHit],
        reranked: list[PassageHit],
        identities: dict[str, Identity] | None,
        own: Identity | None,
    ) -> tuple[list[PatentResult], Collapsed]:
        """Best passage per patent: reranked patents by rerank score, then the rest by first stage;
        then one result per invention when collapsing, and the first `top_n` still stored."""
        best: dict[str, PassageHit] = {}
        for hit in sorted(reranked, key=lambda h: -(h.rerank_score or 0.0)):
            best.setdefault(hit.patent_id, hit)
        ranked = sorted(best.values(), key=lambda h: (-(h.rerank_score or 0.0), h.first_stage_rank))
        if req.min_score is not None and reranked:
            ranked = [h for h in ranked if (h.rerank_score or 0.0) >= req.min_score]
        else:
            for hit in hits:  # patents the reranker did not see keep their first-stage order
                if hit.patent_id not in best:
                    best[hit.patent_id] = hit
                    ranked.append(hit)
        order = [h.patent_id for h in ranked]
        if identities is None:
            collapsed = Collapsed([Group(patent_id) for patent_id in order])
        else:
            collapsed = collapse(order, identities, exclude=own)
        page = fill_page(collapsed.groups, req.top_n, self.index.docstore.get_patents)
        group_of = {m: g.kept for g in collapsed.groups for m, _ in g.members}
        left_out = {patent_id for patent_id, _ in collapsed.excluded}
        first_rank: dict[str, int] = {}  # rank among inventions before rerank
        for hit in hits:
            if hit.patent_id not in left_out:
                first_rank.setdefault(group_of.get(hit.patent_id, hit.patent_id), len(first_rank) + 1)
        ranked = [best[group.kept] for group, _ in page]
        self._attach_texts(ranked)
        results = []
        for rank, (hit, (group, patent)) in enumerate(zip(ranked, page, strict=True), 1):
            if req.highlight:
                hit.highlights = highlight_terms(req.query, hit.text)
            results.append(
                PatentResult(
                    rank=rank,
                    patent_id=patent.id,
                    title=patent.title,
                    abstract=patent.abstract,
                    language=patent.language,
                    jurisdiction=patent.jurisdiction,
                    codes=list(patent.codes),
                    applicants=list(patent.applicants),
                    priority_date=_iso(patent.priority_date),
                    publication_date=_iso(patent.publication_date),
                    best_passage=hit,
                    rank_before_rerank=first_rank[group_of.get(hit.patent_id, hit.patent_id)],
                    reranked=hit.rerank_score is not None,
                    score=_score(hit),
                    family_members=[FamilyMember(m, _score(best[m]), why) for m, why in group.members],
                )
            )
        return results, collapsed


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


def _score(hit: PassageHit) -> float:
    return hit.rerank_score if hit.rerank_score is not None else hit.fused_score


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None
