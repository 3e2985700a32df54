"""Issue 15, finding 1 and the TEI routes: every client as its users write it, with the real package and
the model names they hard-code, against a real server; scores equal the in-process reference."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from patentrank.config import Settings
from patentrank.engine import Engine
from patentrank.server import create_app
from patentrank.server.testing import serve_in_thread

KEY = "client-key"
MAX_LENGTH = 128
TOLERANCE = 1e-5
QUERY = "image denoising with a neural network"
LINES = [
    "A U-Net removes noise from images.",
    "A gearbox with helical gears.",
    "Non-local means filtering of photographs.",
]


@pytest.fixture(scope="module")
def reference(tiny_reranker_path: Path, tiny_embedder_path: Path):
    """In-process models: what every client's numbers must equal."""
    from patentrank.models.embedder import Embedder
    from patentrank.models.reranker import Reranker

    return (
        Reranker(str(tiny_reranker_path), device="cpu", max_length=MAX_LENGTH),
        Embedder(str(tiny_embedder_path), device="cpu", max_length=64),
    )


@pytest.fixture(scope="module")
def url(tiny_reranker_path: Path, tiny_embedder_path: Path) -> Iterator[str]:
    from patentrank.models.embedder import Embedder
    from patentrank.models.reranker import Reranker

    settings = Settings(cache_size=0, api_key=KEY)
    engine = Engine(
        reranker=Reranker(str(tiny_reranker_path), device="cpu", max_length=MAX_LENGTH),
        embedder=Embedder(str(tiny_embedder_path), device="cpu", max_length=64),
        settings=settings,
    )
    with serve_in_thread(create_app(engine, settings)) as base:
        yield base
    engine.close()


def _expected_order(reference) -> tuple[list[int], list[float]]:
    scores = reference[0].score(QUERY, LINES)
    return sorted(range(len(LINES)), key=lambda i: -scores[i]), scores


def _check_ranked(reference, indices: list[int], scores: list[float]) -> None:
    order, expected = _expected_order(reference)
    assert indices == order[: len(indices)]
    np.testing.assert_allclose(scores, [expected[i] for i in indices], atol=TOLERANCE, rtol=0)


def test_original_design_payload(url: str, reference) -> None:
    payload = {"model": "qwen3-reranker-0.6b", "query": QUERY, "documents": LINES, "top_n": 2}
    body = httpx.post(f"{url}/v1/rerank", json=payload, headers={"Authorization": f"Bearer {KEY}"}).json()
    results = body["results"]
    _check_ranked(reference, [r["index"] for r in results], [r["relevance_score"] for r in results])
    assert body["model"] == Path(reference[0].model_name).name


def test_cohere_v1_and_v2_with_real_model_names(url: str, reference) -> None:
    import cohere

    v1 = cohere.Client(KEY, base_url=url).rerank(model="rerank-english-v3.0", query=QUERY, documents=LINES)
    _check_ranked(reference, [r.index for r in v1.results], [r.relevance_score for r in v1.results])
    v2 = cohere.ClientV2(KEY, base_url=url).rerank(model="rerank-v3.5", query=QUERY, documents=LINES, top_n=2)
    _check_ranked(reference, [r.index for r in v2.results], [r.relevance_score for r in v2.results])


def test_openai_embeddings_with_a_real_model_name(url: str, reference) -> None:
    import openai

    client = openai.OpenAI(api_key=KEY, base_url=f"{url}/v1")
    response = client.embeddings.create(model="text-embedding-3-small", input=LINES)
    got = np.array([d.embedding for d in response.data])
    np.testing.assert_allclose(got, reference[1].embed_documents(LINES), atol=TOLERANCE, rtol=0)
    assert response.model == Path(reference[1].model_name).name


def test_langchain_cohere_rerank(url: str, reference) -> None:
    langchain_cohere = pytest.importorskip("langchain_cohere")
    from langchain_core.documents import Document

    reranker = langchain_cohere.CohereRerank(
        model="rerank-english-v3.0", cohere_api_key=KEY, base_url=url, top_n=2
    )
    ranked = reranker.compress_documents([Document(page_content=t) for t in LINES], QUERY)
    indices = [LINES.index(d.page_content) for d in ranked]
    _check_ranked(reference, indices, [d.metadata["relevance_score"] for d in ranked])


def test_llama_index_cohere_rerank(url: str, reference) -> None:
    module = pytest.importorskip("llama_index.postprocessor.cohere_rerank")
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    reranker = module.CohereRerank(api_key=KEY, model="rerank-v3.5", top_n=2, base_url=url)
    nodes = [NodeWithScore(node=TextNode(text=t), score=0.0) for t in LINES]
    ranked = reranker.postprocess_nodes(nodes, query_bundle=QueryBundle(QUERY))
    _check_ranked(reference, [LINES.index(n.node.get_content()) for n in ranked], [n.score for n in ranked])


@pytest.mark.parametrize(
    "provider, path, model",
    [
        ("cohere", "/v1/rerank", "rerank-english-v3.0"),
        ("jina", "/v1/rerank", "jina-reranker-v2-base-multilingual"),
        ("text-embeddings-inference", "/rerank", "BAAI/bge-reranker-base"),
    ],
)
def test_rerankers_api_ranker(url: str, reference, provider: str, path: str, model: str) -> None:
    pytest.importorskip("rerankers")
    from rerankers.models.api_rankers import APIRanker

    ranker = APIRanker(model=model, api_key=KEY, api_provider=provider, url=url + path, verbose=0)
    ranked = ranker.rank(QUERY, LINES)
    top = ranked.results
    _check_ranked(reference, [LINES.index(r.document.text) for r in top], [r.score for r in top])


def test_huggingface_hub_inference_client(url: str, reference, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub
    import huggingface_hub.constants

    # conftest sets HF_HUB_OFFLINE, which would also refuse this loopback server; nothing else is called.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    client = huggingface_hub.InferenceClient(base_url=url, api_key=KEY)
    vectors = client.feature_extraction(LINES[0])
    np.testing.assert_allclose(vectors, reference[1].embed_documents(LINES[:1]), atol=TOLERANCE, rtol=0)
    similarity = client.sentence_similarity(LINES[0], other_sentences=LINES[1:])
    expected = reference[1].embed_documents(LINES)
    np.testing.assert_allclose(similarity, expected[1:] @ expected[0], atol=TOLERANCE, rtol=0)
    with pytest.raises(huggingface_hub.errors.HfHubHTTPError, match="text classification is not served"):
        client.text_classification(LINES[0])


def test_tei_embed_route(url: str, reference) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    got = httpx.post(f"{url}/embed", json={"inputs": LINES, "dimensions": 16}, headers=headers).json()
    np.testing.assert_allclose(
        got, reference[1].embed_documents(LINES, dimensions=16), atol=TOLERANCE, rtol=0
    )
    bad = httpx.post(f"{url}/embed", json={"inputs": LINES, "normalize": False}, headers=headers)
    assert bad.status_code == 422 and bad.json()["error_type"] == "invalid_request"  # TEI's error shape
