"""Combination search: the hand-made case (one reference covers A and B, another C) must be found,
the arithmetic is checked against a brute-force reference, and /v1/combinations over HTTP."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from patentrank.claim_chart import Cell, ClaimChart, ReferenceChart
from patentrank.combinations import combine
from patentrank.engine import Engine
from patentrank.errors import InputError

ELEMENTS = ["A: a housing", "B: a battery in the housing", "C: a wireless charger"]


def hand_chart(scores: dict[str, list[float]], threshold: float = 0.5) -> ClaimChart:
    refs = [
        ReferenceChart(ref, ref, [Cell(i, i, f"{ref} passage {i}", s) for i, s in enumerate(row)], threshold)
        for ref, row in scores.items()
    ]
    refs.sort(key=lambda r: (-len(r.covered), -r.mean_score))
    return ClaimChart("claim", ELEMENTS, refs, threshold, "instruction")


HAND = {
    "US-AB": [0.9, 0.8, 0.1],  # covers A and B
    "US-C": [0.2, 0.1, 0.9],  # covers C
    "US-A": [0.95, 0.2, 0.3],  # covers A only, strongly
    "US-B": [0.1, 0.7, 0.45],  # covers B, almost C
    "US-NONE": [0.3, 0.3, 0.3],
}


def test_the_pair_covering_every_element_is_found_first() -> None:
    best = combine(hand_chart(HAND))[0]
    assert best.references == ["US-AB", "US-C"]  # the closer primary (two elements alone) first
    assert best.covered == [0, 1, 2] and best.uncovered == [] and best.score == 1.0
    assert best.by_element == {0: "US-AB", 1: "US-AB", 2: "US-C"}


def test_control_without_the_c_reference_no_pair_covers_everything() -> None:
    scores = dict(HAND, **{"US-C": [0.2, 0.1, 0.4]})
    best = combine(hand_chart(scores))[0]
    assert len(best.covered) == 2 and best.uncovered


def test_matches_a_brute_force_union_and_triples() -> None:
    chart = hand_chart(HAND)
    for size in (2, 3):
        combos = combine(chart, size=size, limit=100)
        assert len(combos) == len(list(itertools.combinations(HAND, size)))
        for combo in combos:
            union = sorted({e for ref in combo.references for e, s in enumerate(HAND[ref]) if s >= 0.5})
            assert combo.covered == union and combo.score == pytest.approx(len(union) / 3)
            assert all(HAND[combo.by_element[e]][e] >= 0.5 for e in combo.covered)
        sizes = [len(c.covered) for c in combos]
        assert sizes == sorted(sizes, reverse=True)


def test_bounds() -> None:
    with pytest.raises(InputError) as info:
        combine(hand_chart(HAND), size=4)
    assert info.value.field == "size"
    with pytest.raises(InputError):
        combine(hand_chart(HAND), top=21)


@pytest.fixture(scope="module")
def server(tiny_reranker_path: Path, tiny_embedder_path: Path, tmp_path_factory) -> Iterator[str]:
    from patentrank import Reranker
    from patentrank.config import Settings
    from patentrank.corpus import load_patents, sample_corpus_path
    from patentrank.index.patent_index import PatentIndex
    from patentrank.models.embedder import Embedder
    from patentrank.runtime import Runtime
    from patentrank.server import create_app
    from patentrank.server.routes_chart import router
    from patentrank.server.testing import serve_in_thread

    embedder = Embedder(str(tiny_embedder_path), device="cpu")
    index = PatentIndex(tmp_path_factory.mktemp("combos") / "ix", embedder=embedder)
    index.add(load_patents(sample_corpus_path()))
    settings = Settings(cache_size=10_000)
    engine = Engine(
        reranker=Reranker(str(tiny_reranker_path), device="cpu"), embedder=embedder, settings=settings
    )
    runtime = Runtime.serving(engine, index)
    with serve_in_thread(create_app(runtime, settings, routers=[router])) as url:
        yield url


def test_combinations_over_http_agree_with_the_chart(server: str) -> None:
    refs = ["CN111489305B", "US2021118123A1", "CN110992292A", "CN108765319A"]
    body: dict[str, Any] = {"claim": "claim 1 of CN113344556A", "references": refs, "threshold": 0.45}
    result = httpx.post(f"{server}/v1/combinations", json=body, timeout=300).json()
    covered = {r["id"]: set(r["covered"]) for r in result["references"]}
    coverage_of = {r["id"]: r["coverage"] for r in result["references"]}
    assert len(result["combinations"]) == 6  # C(4, 2)
    for combo in result["combinations"]:
        first, second = combo["references"]
        assert combo["covered"] == sorted(covered[first] | covered[second])
        assert coverage_of[first] >= coverage_of[second]
        assert set(combo["by_element"].values()) <= {first, second}
    sizes = [len(c["covered"]) for c in result["combinations"]]
    assert sizes == sorted(sizes, reverse=True)
    triples = httpx.post(f"{server}/v1/combinations", json={**body, "size": 3}, timeout=300).json()
    assert len(triples["combinations"]) == 4 and all(
        len(c["references"]) == 3 for c in triples["combinations"]
    )
    bad = httpx.post(f"{server}/v1/combinations", json={**body, "size": 5}, timeout=60)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "size"
