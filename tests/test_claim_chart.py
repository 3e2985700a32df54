"""POST /v1/claim-chart over real HTTP on the sample corpus with the tiny random Qwen3 models:
structure, exact reranker scores (differential against `Reranker.score`), coverage arithmetic,
ordering, the shared score cache with /v1/rerank, bad input, exports and the CLI."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from patentrank.claim_chart import CHART_INSTRUCTION, ChartRequest, ClaimCharter, scorers_from_models
from patentrank.claims import split_elements
from patentrank.config import Settings
from patentrank.engine import Engine
from patentrank.server import create_app
from patentrank.server.routes_chart import router as chart_router
from patentrank.server.routes_search import router as search_router
from patentrank.server.testing import serve_in_thread

CLAIM_OF = "claim 1 of CN113344556A"
REFS = ["CN111489305B", "US2021118123A1", "CN110992292A"]


@pytest.fixture(scope="module")
def models(tiny_reranker_path: Path, tiny_embedder_path: Path) -> tuple[Any, Any]:
    from patentrank import Reranker
    from patentrank.models.embedder import Embedder

    return Reranker(str(tiny_reranker_path), device="cpu"), Embedder(str(tiny_embedder_path), device="cpu")


@pytest.fixture(scope="module")
def index(models: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    from patentrank.corpus import load_patents, sample_corpus_path
    from patentrank.index.patent_index import PatentIndex

    idx = PatentIndex(tmp_path_factory.mktemp("chart") / "ix", embedder=models[1])
    idx.add(load_patents(sample_corpus_path()))
    return idx


@pytest.fixture(scope="module")
def server(models: tuple[Any, Any], index: Any) -> Iterator[tuple[str, Engine]]:
    from patentrank.runtime import Runtime

    reranker, embedder = models
    settings = Settings(cache_size=10_000, max_chart_references=5)
    engine = Engine(reranker=reranker, embedder=embedder, settings=settings)
    runtime = Runtime.serving(engine, index)
    with serve_in_thread(create_app(runtime, settings, routers=[search_router, chart_router])) as url:
        yield url, engine


def post(url: str, body: dict[str, Any], path: str = "/v1/claim-chart", **params: str) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, params=params, timeout=300)


def test_chart_structure_scores_coverage_and_order(server, models, index) -> None:
    url, _ = server
    reranker, _ = models
    response = post(url, {"claim": CLAIM_OF, "references": REFS, "threshold": 0.5})
    assert response.status_code == 200, response.text
    chart = response.json()
    claim_text = index.docstore.get_patent("CN113344556A").claims[0]
    elements = [e["text"] for e in chart["elements"]]
    assert elements == split_elements(claim_text) and chart["source"] == CLAIM_OF
    assert [e["index"] for e in chart["elements"]] == list(range(len(elements)))
    assert sorted(r["id"] for r in chart["references"]) == sorted(REFS)
    for ref in chart["references"]:
        cells = ref["cells"]
        assert [c["element"] for c in cells] == list(range(len(elements)))  # one cell per element
        expected = reranker.score(elements[0], [cells[0]["text"]], instruction=CHART_INSTRUCTION)
        np.testing.assert_allclose(cells[0]["score"], expected[0], atol=1e-5)  # the reranker's own score
        passages = {p.passage_id: p.text for p in index.docstore.passages_of(ref["id"])}
        assert all(passages[c["passage_id"]] == c["text"] for c in cells)  # passages of that reference
        covered = [c["element"] for c in cells if c["score"] >= 0.5]
        assert ref["covered"] == covered and ref["coverage"] == pytest.approx(len(covered) / len(cells))
        assert ref["weakest_element"] == int(np.argmin([c["score"] for c in cells]))
    coverages = [len(r["covered"]) for r in chart["references"]]
    assert coverages == sorted(coverages, reverse=True)


def test_best_passage_equals_a_brute_force_reference(models, index) -> None:
    """With a shortlist as long as the reference, the cell is the arg-max over every passage."""
    reranker, embedder = models
    settings = Settings(chart_passages_per_element=50)
    charter = ClaimCharter(index.docstore, scorers_from_models(reranker, embedder), settings)
    elements = ["a convolutional neural network", "noise residual learning"]
    chart = charter.chart(ChartRequest("a claim", ["US2021118123A1"], elements=elements))
    passages = index.docstore.passages_of("US2021118123A1")
    for element, cell in zip(elements, chart.references[0].cells, strict=True):
        scores = reranker.score(element, [p.text for p in passages], instruction=CHART_INSTRUCTION)
        assert cell.passage_id == passages[int(np.argmax(scores))].passage_id
        assert cell.score == pytest.approx(max(scores), abs=1e-5)
    # Control: the embedder shortlist (k=1) reranks one passage per element, not all of them.
    short = ClaimCharter(
        index.docstore, scorers_from_models(reranker, embedder), Settings(chart_passages_per_element=1)
    )
    assert short.chart(ChartRequest("x", ["US2021118123A1"], elements=elements)).reranked_pairs == 2
    assert chart.reranked_pairs == 2 * len(passages)


def test_chart_scores_share_the_rerank_cache(server) -> None:
    url, _ = server
    chart = post(
        url, {"claim": "A denoising method comprising: a network; a loss", "references": REFS[:1]}
    ).json()
    cell = chart["references"][0]["cells"][1]
    again = httpx.post(
        f"{url}/v1/rerank",
        json={
            "query": chart["elements"][1]["text"],
            "documents": [cell["text"]],
            "instruction": CHART_INSTRUCTION,
        },
        timeout=60,
    ).json()
    assert again["usage"]["cache_hits"] == 1
    assert again["results"][0]["relevance_score"] == pytest.approx(cell["score"], abs=1e-6)


def test_references_from_a_search_and_user_elements(server) -> None:
    url, _ = server
    body = {
        "claim": "An image denoising method comprising: training a network; subtracting the noise",
        "search": {"query": "", "top_n": 3, "rerank": False, "mode": "lexical"},
        "elements": ["training a network", "  ", "subtracting the estimated noise"],
    }
    chart = post(url, body).json()
    assert [e["text"] for e in chart["elements"]] == ["training a network", "subtracting the estimated noise"]
    assert len(chart["references"]) == 3


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"claim": "  ", "references": REFS}, 422, "claim"),
        ({"claim": "A lamp comprising: a base", "references": ["US0000000X9"]}, 404, "references"),
        (
            {"claim": "A lamp comprising: a base", "references": [f"R{i}" for i in range(6)]},
            422,
            "references",
        ),
        ({"claim": "A lamp comprising: a base", "references": []}, 422, "references"),
        ({"claim": "A lamp comprising: a base", "references": ["CN1A", "WO/2020/1"]}, 422, "references[1]"),
        ({"claim": "A lamp", "references": REFS, "elements": [" "]}, 422, "elements"),
        ({"claim": "claim 99 of CN113344556A", "references": REFS}, 422, "claim"),
        ({"claim": "claim 1 of XX1A", "references": REFS}, 404, "claim"),
        ({"claim": "A lamp", "references": REFS, "search": {"query": "x"}}, 422, None),
        ({"claim": "A lamp", "references": REFS, "threshold": 2}, 422, "threshold"),
        ({"claim": "A lamp", "search": {"query": "lamp", "top_n": 9}}, 422, "search.top_n"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(server, body, status, field) -> None:
    url, _ = server
    response = post(url, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    if field is not None:
        assert error["field"] == field
    assert "Traceback" not in error["message"]


def test_exports_csv_xlsx_html(server) -> None:
    from openpyxl import load_workbook

    url, _ = server
    body = {"claim": "A method comprising: denoising an image; training a network", "references": REFS[:2]}
    chart = post(url, body).json()
    n = len(chart["elements"])
    rows = list(csv.DictReader(io.StringIO(post(url, body, format="csv").text)))
    assert len(rows) == 2 * n and {r["reference"] for r in rows} == set(REFS[:2])
    first = chart["references"][0]
    assert float(rows[0]["score"]) == pytest.approx(first["cells"][0]["score"], abs=1e-5)
    book = load_workbook(io.BytesIO(post(url, body, format="xlsx").content))
    sheet = book["Chart"]
    assert sheet.max_row == n + 1 and sheet.cell(1, 3).value == f"{first['id']} score"
    page = post(url, body, format="html")
    assert page.headers["content-type"].startswith("text/html") and "claim-chart" in page.text
    assert post(url, body, format="pdf").status_code == 422


def test_cli_chart_writes_xlsx_and_fails_in_one_line(
    index, tiny_reranker_path, tiny_embedder_path, tmp_path
) -> None:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PATENTRANK_RERANKER_MODEL": str(tiny_reranker_path),
        "PATENTRANK_EMBEDDER_MODEL": str(tiny_embedder_path),
    }
    out = tmp_path / "chart.xlsx"
    base = [sys.executable, "-m", "patentrank", "chart", CLAIM_OF, "--index", str(index.path)]
    done = subprocess.run(
        [*base, "-r", REFS[0], "-r", REFS[1], "-o", str(out), "--json", "--combinations", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert len(body["references"]) == 2 and out.stat().st_size > 0 and len(body["combinations"]) == 1
    bad = subprocess.run([*base, "-r", "NOPE1A"], capture_output=True, text=True, timeout=300, env=env)
    assert bad.returncode == 2 and "NOPE1A" in bad.stderr and "Traceback" not in bad.stderr


def test_a_repeated_chart_embeds_no_passage_again(server) -> None:
    from patentrank import claim_chart

    url, engine = server
    claim_chart._VECTOR_CACHES.clear()
    embedded: list[int] = []
    original = engine.embed_sync

    def counting(texts, **kwargs):
        if kwargs.get("input_type") == "document":
            embedded.append(len(texts))
        return original(texts, **kwargs)

    engine.embed_sync = counting
    engine.settings.chart_passages_per_element = 1  # shorter than every reference: the first pass runs
    try:
        body = {"claim": "A denoising method comprising: a network; a loss", "references": REFS}
        first = post(url, body).json()
        after_first = len(embedded)
        second = post(url, body).json()
    finally:
        engine.embed_sync = original
        engine.settings.chart_passages_per_element = 3
    assert after_first == len(REFS) and all(n > 1 for n in embedded)  # each reference's passages, once
    assert len(embedded) == after_first  # the second chart embedded nothing
    assert first["references"] == second["references"]
