"""The rerank APIs over real HTTP: vLLM/Jina, Cohere v1/v2 (their SDKs), TEI, the original web client."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from patentrank.config import Settings
from patentrank.engine import Engine
from patentrank.server import create_app
from patentrank.server.testing import serve_in_thread

MAX_LENGTH = 128
QUERY = "image denoising with a neural network"
LINES = [
    "A U-Net removes noise from images.",
    "一种齿轮箱，包括润滑油泵。",
    "A cooling plate between battery cells.",
    "Helical gears reduce noise.",
    "Non-local means filtering of photographs.",
]
LONG = "noise " * 400  # far over MAX_LENGTH tokens: truncated, not refused
TOLERANCE = 1e-5  # float32 rounding between differently shaped batches


@pytest.fixture(scope="module")
def reranker(tiny_reranker_path: Path):
    """The in-process reference; the server gets its own instance."""
    from patentrank.models.reranker import Reranker

    return Reranker(str(tiny_reranker_path), device="cpu", max_length=MAX_LENGTH)


@pytest.fixture(scope="module")
def base_url(tiny_reranker_path: Path) -> Iterator[str]:
    from patentrank.models.reranker import Reranker

    settings = Settings(cache_size=0, reranker_aliases=["qwen3-reranker-0.6b"], embedder_model="none")
    engine = Engine(
        reranker=Reranker(str(tiny_reranker_path), device="cpu", max_length=MAX_LENGTH), settings=settings
    )
    with serve_in_thread(create_app(engine, settings)) as url:
        yield url
    engine.close()


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=60) as c:
        yield c


def test_original_web_client_payload_works_verbatim(client: httpx.Client, reranker) -> None:
    payload = {"model": "qwen3-reranker-0.6b", "query": QUERY, "documents": LINES, "return_documents": True}
    body = client.post("/rerank", json=payload).json()
    expected = reranker.score(QUERY, LINES)
    got = {r["index"]: r["relevance_score"] for r in body["results"]}
    assert [r["document"]["text"] for r in body["results"]] == [LINES[r["index"]] for r in body["results"]]
    assert [got[i] for i in range(len(LINES))] == expected  # one request = the same batch: identical
    scores = [r["relevance_score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert body["model"] == Path(reranker.model_name).name and body["id"].startswith("rerank-")
    assert body["usage"]["total_tokens"] == reranker.compute(QUERY, LINES).prompt_tokens


@pytest.mark.parametrize("path", ["/rerank", "/v1/rerank"])
def test_vllm_jina_shape(client: httpx.Client, reranker, path: str) -> None:
    body = client.post(path, json={"query": QUERY, "documents": LINES, "top_n": 2}).json()
    expected = reranker.score(QUERY, LINES)
    best = sorted(range(len(LINES)), key=lambda i: -expected[i])[:2]
    assert [r["index"] for r in body["results"]] == best
    assert all(
        r["document"] == {"text": LINES[r["index"]]} for r in body["results"]
    )  # vLLM always returns them
    assert set(body) >= {"id", "model", "usage", "results"}


def test_cohere_v1_sdk(base_url: str, reranker) -> None:
    import cohere

    co = cohere.Client(base_url=base_url, api_key="unused")
    documents: list[Any] = [LINES[0], {"text": LINES[1], "title": "gearbox"}, *LINES[2:]]
    response = co.rerank(query=QUERY, documents=documents, top_n=3, return_documents=True)
    expected = reranker.score(QUERY, LINES)
    assert [r.index for r in response.results] == sorted(range(len(LINES)), key=lambda i: -expected[i])[:3]
    for r in response.results:
        assert r.relevance_score == pytest.approx(expected[r.index], abs=TOLERANCE)
        assert r.document is not None and r.document.text == LINES[r.index]
    titled = co.rerank(query=QUERY, documents=documents[1:2], return_documents=True).results[0]
    assert titled.document is not None and titled.document.model_extra == {"title": "gearbox"}
    bare = co.rerank(query=QUERY, documents=LINES, return_documents=False)
    assert all(r.document is None for r in bare.results)


def test_cohere_v2_sdk(base_url: str, reranker) -> None:
    import cohere

    co = cohere.ClientV2("unused", base_url=base_url)
    response = co.rerank(model="Qwen3-Reranker-0.6B", query=QUERY, documents=LINES, top_n=2)
    expected = reranker.score(QUERY, LINES)
    assert [r.index for r in response.results] == sorted(range(len(LINES)), key=lambda i: -expected[i])[:2]
    assert [r.relevance_score for r in response.results] == [expected[r.index] for r in response.results]
    raw = httpx.post(f"{base_url}/v2/rerank", json={"query": QUERY, "documents": LINES}).json()
    assert all("document" not in r for r in raw["results"]) and raw["meta"]["api_version"]["version"] == "2"


def test_tei_shape(client: httpx.Client, reranker) -> None:
    out = reranker.compute(QUERY, LINES)
    body = client.post("/rerank", json={"query": QUERY, "texts": LINES, "return_text": True}).json()
    assert isinstance(body, list) and len(body) == len(LINES)
    assert [(r["index"], r["score"], r["text"]) for r in body] == sorted(
        ((i, out.scores[i], LINES[i]) for i in range(len(LINES))), key=lambda row: -row[1]
    )
    raw = client.post("/rerank", json={"query": QUERY, "texts": LINES, "raw_scores": True}).json()
    assert {r["index"]: r["score"] for r in raw} == pytest.approx(dict(enumerate(out.logits)), abs=TOLERANCE)
    assert all("text" not in r for r in raw)
    empty = client.post("/rerank", json={"query": " ", "texts": LINES})
    assert empty.status_code == 422 and set(empty.json()) == {"error", "error_type"}


def test_instruction_min_score_and_truncation(client: httpx.Client, reranker) -> None:
    instruction = "Given a patent query, retrieve prior art"
    documents = [*LINES, LONG]
    body = client.post(
        "/v1/rerank",
        json={"query": QUERY, "documents": documents, "instruction": instruction, "min_score": 0.3},
    ).json()
    out = reranker.compute(QUERY, documents, instruction)
    assert {r["index"] for r in body["results"]} == {i for i, s in enumerate(out.scores) if s >= 0.3}
    assert all(r["relevance_score"] == out.scores[r["index"]] for r in body["results"])
    assert body["usage"]["truncated_documents"] == [len(documents) - 1] == out.truncated
    default = reranker.compute(QUERY, documents)
    assert np.abs(np.subtract(default.scores, out.scores)).max() > 100 * TOLERANCE  # the instruction matters
    short = client.post(
        "/v1/rerank", json={"query": QUERY, "documents": LINES, "max_tokens_per_doc": 3}
    ).json()
    cut = reranker.compute(QUERY, LINES, max_tokens_per_doc=3)
    assert short["usage"]["truncated_documents"] == cut.truncated and len(cut.truncated) > 0
    assert {r["index"]: r["relevance_score"] for r in short["results"]} == dict(enumerate(cut.scores))


def test_vllm_score_endpoint(client: httpx.Client, reranker) -> None:
    body = client.post("/score", json={"text_1": QUERY, "text_2": LINES}).json()
    assert [row["score"] for row in body["data"]] == reranker.score(QUERY, LINES)
    assert [row["index"] for row in body["data"]] == list(range(len(LINES)))


def test_concurrent_requests_score_like_sequential_ones(client: httpx.Client, reranker) -> None:
    queries = [f"{QUERY} variant {i}" for i in range(24)]

    def call(query: str) -> dict[int, float]:
        body = client.post("/v1/rerank", json={"query": query, "documents": LINES}).json()
        return {r["index"]: r["relevance_score"] for r in body["results"]}

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(call, queries))
    for query, answer in zip(queries, answers, strict=True):
        expected = reranker.score(query, LINES)
        np.testing.assert_allclose([answer[i] for i in range(len(LINES))], expected, atol=TOLERANCE, rtol=0)
    metrics = client.get("/metrics").text
    shared = [line for line in metrics.splitlines() if line.startswith("patentrank_batch_requests_sum")]
    calls = [line for line in metrics.splitlines() if line.startswith("patentrank_batch_requests_count")]
    assert float(shared[0].split()[-1]) > float(calls[0].split()[-1]), "some model calls must be shared"


def test_models_health_metrics_and_docs(client: httpx.Client, reranker) -> None:
    models = client.get("/v1/models").json()
    assert [m["id"] for m in models["data"]] == [Path(reranker.model_name).name]
    assert "qwen3-reranker-0.6b" in models["data"][0]["aliases"]
    health = client.get("/health").json()
    assert health["stages"] == {"rerank": True, "embed": False, "search": False, "dense": False}
    assert health["status"] == "ok" and health["models"]["reranker"]["ready"] is True
    assert health["models"]["embedder"] == {"ready": False, "model": None, "backend": None, "error": None}
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in (
        'patentrank_requests_total{route="/rerank",status="200"}',
        'patentrank_stage_seconds_bucket{le="0.001",stage="rerank_model"}',
        'patentrank_stage_seconds_count{stage="tokenize"}',
        "patentrank_batch_items_count",
        'patentrank_queue_depth{model="rerank"}',
        'patentrank_cache_lookups_total{result="miss"}',
    ):
        assert name in metrics.text, name
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/rerank", "/v1/rerank", "/v2/rerank", "/score", "/v1/embeddings", "/health", "/metrics"} <= set(
        paths
    )


def test_settings_defaults_keep_the_server_local() -> None:
    settings = Settings()
    assert settings.host == "127.0.0.1" and settings.port == 8000 and settings.cors_origins == []
