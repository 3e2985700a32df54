"""The two-stage pipeline on the sample corpus with tiny random models: every stage, filter and fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from patentrank import InputError
from patentrank.corpus import load_patents, sample_corpus_path
from patentrank.index.filters import SearchFilter
from patentrank.index.patent_index import PatentIndex
from patentrank.search import SearchPipeline, SearchRequest

QUERY = "一种基于深度学习的图像去噪方法"


@pytest.fixture(scope="module")
def models(tiny_embedder_path: Path, tiny_reranker):
    from patentrank.models.embedder import Embedder

    return Embedder(str(tiny_embedder_path), device="cpu"), tiny_reranker


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, models) -> PatentIndex:
    embedder, _ = models
    index = PatentIndex(tmp_path_factory.mktemp("search") / "ix", embedder=embedder)
    index.add(load_patents(sample_corpus_path()))
    return index


@pytest.fixture(scope="module")
def pipeline(index: PatentIndex, models) -> SearchPipeline:
    embedder, reranker = models
    return SearchPipeline(
        index,
        embed_query=lambda q, i: embedder.embed_queries([q], instruction=i)[0],
        rerank=lambda q, docs, i: reranker.score(q, docs, instruction=i),
    )


def test_hybrid_search_runs_every_stage_and_reports_it(pipeline: SearchPipeline) -> None:
    response = pipeline.search(SearchRequest(QUERY, top_n=5, candidates=20))
    assert {k for k, v in response.stages.items() if v["ran"]} == {"lexical", "dense", "rerank"}
    assert len(response.results) == 5
    assert [r.rank for r in response.results] == [1, 2, 3, 4, 5]
    scores = [r.score for r in response.results]
    assert scores == sorted(scores, reverse=True)
    assert len({r.patent_id for r in response.results}) == 5, "one row per patent"


def test_rerank_scores_equal_the_reranker_on_the_best_passages(pipeline: SearchPipeline, models) -> None:
    _, reranker = models
    response = pipeline.search(SearchRequest(QUERY, top_n=5, candidates=20))
    texts = [r.best_passage.text for r in response.results]
    expected = reranker.score(QUERY, texts, instruction=None)
    np.testing.assert_allclose([r.score for r in response.results], expected, atol=1e-5)


def test_lexical_only_finds_the_exact_title_first(pipeline: SearchPipeline) -> None:
    response = pipeline.search(SearchRequest(QUERY, mode="lexical", rerank=False, top_n=3))
    assert response.results[0].patent_id == "CN113344556A"
    assert set(response.stages) == {"lexical", "rerank"} and not response.stages["rerank"]["ran"]
    best = response.results[0].best_passage
    marked = [best.text[s:e] for s, e in best.highlights]
    assert any(term in "".join(marked) for term in ("去噪", "图像", "深度学习"))


def test_score_fusion_in_the_pipeline_matches_the_formula(pipeline: SearchPipeline) -> None:
    from patentrank.text import analyze

    query = "battery thermal management"
    response = pipeline.search(SearchRequest(query, rerank=False, top_n=50, retrieve_k=30))
    bound = pipeline.index.lexical.best_possible_score(analyze(query))
    floor = min(score for _, score in pipeline._dense(SearchRequest(query, retrieve_k=30), None))
    assert bound > 0
    for r in response.results:
        hit = r.best_passage
        lexical = 0.6 * hit.lexical_score / bound if hit.lexical_score is not None else 0.0
        dense = 0.4 * (hit.dense_score - floor) / (1 - floor) if hit.dense_score is not None else 0.0
        assert hit.fused_score == pytest.approx(lexical + dense)
    fused = [r.best_passage.fused_score for r in response.results]
    assert fused == sorted(fused, reverse=True)


def test_rrf_fusion_matches_the_formula(pipeline: SearchPipeline) -> None:
    req = SearchRequest(
        "battery thermal management",
        rerank=False,
        top_n=50,
        retrieve_k=30,
        fusion="rrf",
        lexical_weight=1.0,
        dense_weight=1.0,
    )
    response = pipeline.search(req)
    for r in response.results:
        hit = r.best_passage
        expected = sum(1 / (60 + rank) for rank in (hit.lexical_rank, hit.dense_rank) if rank is not None)
        assert hit.fused_score == pytest.approx(expected)
    assert [r.rank_before_rerank for r in response.results] == sorted(
        r.rank_before_rerank for r in response.results
    )


@pytest.mark.parametrize(
    "flt",
    [
        SearchFilter(before="2015-01-01"),
        SearchFilter(after="2020-01-01", date_field="publication"),
        SearchFilter(code_prefixes=["H01M"]),
        SearchFilter(languages=["en"], jurisdictions=["US", "EP"]),
        SearchFilter(code_prefixes=["G06T5", "A61B"], before="2021-01-01"),
    ],
)
@pytest.mark.parametrize("mode", ["lexical", "dense", "hybrid"])
def test_every_result_satisfies_the_filter(pipeline: SearchPipeline, index: PatentIndex, flt, mode) -> None:
    response = pipeline.search(
        SearchRequest("battery image noise 电池 图像", mode=mode, filter=flt, rerank=False, top_n=50)
    )
    assert response.results, "the filter should leave something on the sample corpus"
    patents = index.docstore.get_patents([r.patent_id for r in response.results])
    for r in response.results:
        assert flt.matches(patents[r.patent_id].fields()), r.patent_id
    # Filters run inside retrieval: every matching patent is reachable, not a post-filtered remainder.
    matching = {p for p in index.docstore.get_fields(index.docstore.allowed_passage_ids(flt)).values()}
    if mode == "dense":
        assert len(response.results) == len({f.patent_id for f in matching})


def test_search_by_patent_excludes_it_and_cuts_off_at_its_priority_date(
    pipeline: SearchPipeline, index
) -> None:
    response = pipeline.search(SearchRequest("CN113344556A", rerank=False, top_n=20))
    assert response.by_patent == "CN113344556A"
    ids = [r.patent_id for r in response.results]
    assert "CN113344556A" not in ids and ids
    for r in response.results:
        assert r.priority_date is not None and r.priority_date < "2021-06-18"
    with pytest.raises(InputError, match="not in the index"):
        pipeline.search(SearchRequest(patent_id="CN000000000A"))


def test_missing_stages_degrade_and_say_why(index: PatentIndex) -> None:
    bare = SearchPipeline(index, unavailable={"rerank": "reranker failed to load: offline"})
    response = bare.search(SearchRequest(QUERY, mode="hybrid", top_n=3))
    assert response.stages["dense"] == {"ran": False, "reason": "no embedder is configured"}
    assert response.stages["rerank"] == {"ran": False, "reason": "reranker failed to load: offline"}
    assert response.stages["lexical"]["ran"] and len(response.results) == 3
    assert not any(r.reranked for r in response.results)


def test_min_score_and_top_n(pipeline: SearchPipeline) -> None:
    everything = pipeline.search(SearchRequest(QUERY, top_n=10, candidates=10))
    cut = sorted(r.score for r in everything.results)[len(everything.results) // 2]
    kept = pipeline.search(SearchRequest(QUERY, top_n=10, candidates=10, min_score=cut))
    assert kept.results and all(r.score >= cut for r in kept.results)
    assert len(kept.results) < len(everything.results)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"query": ""}, "query"),
        ({"query": "x", "top_n": 0}, "top_n"),
        ({"query": "x", "mode": "fuzzy"}, "mode"),
        ({"query": "x", "candidates": 5000}, "candidates"),
        ({"query": "x", "min_score": 2.0}, "min_score"),
    ],
)
def test_bad_requests_name_the_field(pipeline: SearchPipeline, kwargs, field) -> None:
    with pytest.raises(InputError) as info:
        pipeline.search(SearchRequest(**kwargs))
    assert info.value.field == field
