"""/v1/search and /v1/patents over real HTTP, with the pipeline wired through the engine's batchers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from patentrank.config import PATENT_INSTRUCTION, Settings
from patentrank.engine import Engine
from patentrank.server import create_app
from patentrank.server.routes_search import router as search_router
from patentrank.server.testing import serve_in_thread

QUERY = "一种基于深度学习的图像去噪方法"


@pytest.fixture(scope="module")
def models(tiny_reranker_path: Path, tiny_embedder_path: Path) -> tuple[Any, Any]:
    from patentrank import Reranker
    from patentrank.models.embedder import Embedder

    return Reranker(str(tiny_reranker_path), device="cpu"), Embedder(str(tiny_embedder_path), device="cpu")


@pytest.fixture(scope="module")
def server(models: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Engine]]:
    from patentrank.corpus import load_patents, sample_corpus_path
    from patentrank.index.patent_index import PatentIndex
    from patentrank.runtime import Runtime

    reranker, embedder = models
    settings = Settings(cache_size=1000, rerank_candidates=10, max_inputs=5)
    index = PatentIndex(tmp_path_factory.mktemp("server-search") / "ix", embedder=embedder)
    index.add(load_patents(sample_corpus_path()))
    engine = Engine(reranker=reranker, embedder=embedder, settings=settings)
    runtime = Runtime.serving(engine, index)
    with serve_in_thread(create_app(runtime, settings, routers=[search_router])) as url:
        yield url, engine


def test_search_over_http_runs_every_stage_with_exact_scores(server, models) -> None:
    url, _ = server
    body = httpx.post(f"{url}/v1/search", json={"query": QUERY, "top_n": 5}, timeout=120).json()
    assert {k for k, v in body["stages"].items() if v["ran"]} == {"lexical", "dense", "rerank"}
    results = body["results"]
    assert len(results) == 5 and [r["rank"] for r in results] == [1, 2, 3, 4, 5]
    reranker, _ = models
    expected = reranker.score(
        QUERY, [r["best_passage"]["text"] for r in results], instruction=PATENT_INSTRUCTION
    )
    np.testing.assert_allclose([r["score"] for r in results], expected, atol=1e-5)
    first = results[0]["best_passage"]
    assert all(isinstance(s, list) and len(s) == 2 for s in first["highlights"])


def test_filters_and_search_by_patent(server) -> None:
    url, _ = server
    body = httpx.post(
        f"{url}/v1/search",
        json={
            "query": "battery",
            "mode": "lexical",
            "rerank": False,
            "top_n": 50,
            "filter": {"before": "2015-01-01", "ipc": ["H01M"], "languages": ["en"]},
        },
        timeout=60,
    ).json()
    assert body["results"]
    for r in body["results"]:
        assert r["priority_date"] < "2015-01-01" and any(c.startswith("H01M") for c in r["codes"])
    by_patent = httpx.post(
        f"{url}/v1/search", json={"patent_id": "CN113344556A", "rerank": False}, timeout=60
    )
    ids = [r["patent_id"] for r in by_patent.json()["results"]]
    assert by_patent.json()["by_patent"] == "CN113344556A" and "CN113344556A" not in ids


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ({"query": QUERY, "top_n": 0}, 422, "top_n"),
        ({"query": QUERY, "mode": "fuzzy"}, 422, "mode"),
        ({"query": QUERY, "filter": {"before": "2020-13-01"}}, 422, "filter.before"),
        ({"query": QUERY, "filter": {"colour": "red"}}, 422, "filter.colour"),
        ({"query": ""}, 422, "query"),
        ({"patent_id": "XX1234567A"}, 404, "patent_id"),  # no such patent to search by
        ({"query": QUERY, "min_score": 3}, 422, "min_score"),
    ],
)
def test_bad_search_requests_name_the_field(server, payload, status, field) -> None:
    url, _ = server
    response = httpx.post(f"{url}/v1/search", json=payload, timeout=60)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field


def test_ingest_get_delete_round_trip(server) -> None:
    url, _ = server
    good = {
        "id": "US2099000001A1",
        "title": "Quantum gearbox",
        "abstract": "A zirconium flux gearbox.",
        "claims": ["A gearbox comprising zirconium."],
        "priority_date": "2024-02-02",
        "ipc": ["F16H1/00"],
    }
    payload = {"patents": [good, {"title": "no id"}, {**good, "id": "US2099000002A1"}]}
    first = httpx.post(f"{url}/v1/patents", json=payload, timeout=60).json()
    assert (first["added"], first["updated"], first["unchanged"]) == (2, 0, 0)
    assert [r["index"] for r in first["rejected"]] == [1] and first["rejected"][0]["field"] == "id"
    again = httpx.post(f"{url}/v1/patents", json=payload, timeout=60).json()
    assert (again["added"], again["unchanged"]) == (0, 2)
    found = httpx.post(
        f"{url}/v1/search",
        json={"query": "zirconium gearbox", "mode": "lexical", "rerank": False},
        timeout=60,
    ).json()
    twins = [r for r in found["results"] if r["patent_id"] in {"US2099000001A1", "US2099000002A1"}]
    assert len(twins) == 1, "same title + abstract: one result, the other listed on it (collapse)"
    assert [m["reason"] for m in twins[0]["family_members"]] == ["duplicate text"]
    patent = httpx.get(f"{url}/v1/patents/US2099000001A1", timeout=30).json()
    assert patent["title"] == "Quantum gearbox" and patent["passages"]
    assert httpx.delete(f"{url}/v1/patents/US2099000001A1", timeout=30).json()["deleted"] is True
    assert httpx.get(f"{url}/v1/patents/US2099000001A1", timeout=30).status_code == 404
    assert httpx.delete(f"{url}/v1/patents/US2099000001A1", timeout=30).status_code == 404


def test_ingest_limits_and_shapes(server) -> None:
    url, _ = server
    too_many = {"patents": [{"id": f"US20990000{i:02d}A1", "title": "x"} for i in range(6)]}
    response = httpx.post(f"{url}/v1/patents", json=too_many, timeout=30)
    assert response.status_code == 413 and response.json()["error"]["field"] == "patents"
    assert httpx.post(f"{url}/v1/patents", json={"patents": []}, timeout=30).status_code == 422
    malformed = httpx.post(
        f"{url}/v1/patents", content=b"{not json", headers={"Content-Type": "application/json"}, timeout=30
    )
    assert malformed.status_code in (400, 422) and "error" in malformed.json()


def test_search_without_an_index_is_503_with_the_fix(tiny_reranker) -> None:
    settings = Settings(cache_size=0)
    engine = Engine(reranker=tiny_reranker, settings=settings)
    with serve_in_thread(create_app(engine, settings, routers=[search_router])) as url:
        response = httpx.post(f"{url}/v1/search", json={"query": "x"}, timeout=30)
        assert response.status_code == 503
        assert "patentrank index" in response.json()["error"]["message"]
