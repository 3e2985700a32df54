"""Fusion: the formulas, the lexical bound they rely on, and the defaults every entry point shares."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from patentrank.fusion import DEFAULT_FUSION, fuse_scores
from patentrank.index.lexical import LexicalIndex
from patentrank.search import SearchRequest

LISTS = {"lexical": [(1, 6.0), (2, 3.0), (4, 1.0)], "dense": [(2, 0.92), (3, 0.88), (5, 0.80)]}


def test_score_fusion_is_the_documented_convex_combination() -> None:
    got = fuse_scores(LISTS, method="score", lexical_weight=1.0, dense_weight=3.0, lexical_bound=12.0)
    alpha, floor = 0.25, 0.80
    dense = {p: (s - floor) / (1 - floor) for p, s in LISTS["dense"]}
    lexical = {p: s / 12.0 for p, s in LISTS["lexical"]}
    expected = {p: alpha * lexical.get(p, 0.0) + (1 - alpha) * dense.get(p, 0.0) for p in {*dense, *lexical}}
    assert got.keys() == expected.keys()
    for pid, value in expected.items():
        assert got[pid] == pytest.approx(value, abs=1e-12)
    # Negative control: normalising by the list's own best score instead of the bound changes the order.
    unbounded = fuse_scores(LISTS, method="score", lexical_weight=1.0, dense_weight=3.0, lexical_bound=None)
    assert unbounded[1] > got[1] + 0.05


def test_rrf_is_the_weighted_reciprocal_rank_sum() -> None:
    got = fuse_scores(LISTS, method="rrf", lexical_weight=2.0, dense_weight=1.0, rrf_k=10)
    assert got[2] == pytest.approx(2 / 12 + 1 / 11)
    assert got[3] == pytest.approx(1 / 12)
    assert got[4] == pytest.approx(2 / 13)


def test_one_list_keeps_its_own_scores_and_zero_weights_are_allowed() -> None:
    assert fuse_scores({"dense": LISTS["dense"]}) == {2: 0.92, 3: 0.88, 5: 0.80}
    only_dense = fuse_scores(LISTS, lexical_weight=0.0, dense_weight=1.0, lexical_bound=12.0)
    assert only_dense[1] == 0.0 and only_dense[2] == pytest.approx((0.92 - 0.80) / (1 - 0.80))


def test_a_weak_lexical_match_cannot_outvote_a_confident_dense_one() -> None:
    """A query whose words the index lacks: BM25 finds passages through one common word only."""
    lists = {"lexical": [(7, 0.4), (8, 0.3)], "dense": [(9, 0.91), (7, 0.85), (8, 0.80)]}
    score = fuse_scores(lists, method="score", lexical_bound=25.0)
    assert max(score, key=score.__getitem__) == 9
    rrf = fuse_scores(lists, method="rrf")  # rank-only: the noisy lexical list decides
    assert max(rrf, key=rrf.__getitem__) == 7


def test_best_possible_score_bounds_every_bm25_score(tmp_path: Path) -> None:
    docs = [["heat", "boiler", "heat"], ["boiler", "turbin"], ["heat"] * 40, ["brake", "energi"]]
    index = LexicalIndex(tmp_path / "lex")
    index.add_tokens(list(range(len(docs))), docs)
    index.commit()
    n = len(docs)
    idf = {
        t: math.log(1 + (n - df + 0.5) / (df + 0.5))
        for t, df in {"heat": 2, "boiler": 2, "absent": 0}.items()
    }
    for query in (["heat"], ["heat", "boiler"], ["heat", "heat", "absent"]):
        bound = index.best_possible_score(query)
        assert bound == pytest.approx(sum(idf[t] for t in query))
        assert all(score <= bound for _, score in index.search_tokens(query, k=10))
    # a passage that is nothing but the query word comes close to the bound
    top = index.search_tokens(["heat"], k=1)[0][1]
    assert top > 0.7 * index.best_possible_score(["heat"])
    assert index.best_possible_score([]) == 0.0


def test_search_request_defaults_are_the_measured_ones() -> None:
    req = SearchRequest("q")
    assert req.fusion == DEFAULT_FUSION == "score"
    assert (req.lexical_weight, req.dense_weight) == (0.6, 0.4)


def test_cli_search_takes_the_fusion_and_its_weights(
    tmp_path: Path, tiny_embedder_path: Path, monkeypatch
) -> None:
    import json

    from typer.testing import CliRunner

    from patentrank.cli import app
    from patentrank.config import get_settings
    from patentrank.corpus import load_patents, sample_corpus_path
    from patentrank.index.patent_index import PatentIndex
    from patentrank.models.embedder import Embedder

    folder = tmp_path / "ix"
    index = PatentIndex(folder, embedder=Embedder(str(tiny_embedder_path), device="cpu"))
    index.add(load_patents(sample_corpus_path()))
    index.close()
    monkeypatch.setenv("PATENTRANK_EMBEDDER_MODEL", str(tiny_embedder_path))
    get_settings.cache_clear()
    base = ["search", "battery thermal management", "--index", str(folder), "--no-rerank", "-n", "20"]

    def fused(*extra: str) -> list[float]:
        out = CliRunner().invoke(app, [*base, *extra, "--json"], catch_exceptions=False).output
        return [r["best_passage"]["fused_score"] for r in json.loads(out.splitlines()[-1])["results"]]

    try:
        rrf = fused("--fusion", "rrf", "--lexical-weight", "1", "--dense-weight", "1")
        assert max(rrf) <= 2 / 61 + 1e-12  # reciprocal ranks, k = 60
        assert max(fused()) > 0.1  # the default: normalised scores
        bad = CliRunner().invoke(app, [*base, "--fusion", "vote"])
        assert bad.exit_code == 2 and "fusion" in bad.output
    finally:
        get_settings.cache_clear()
