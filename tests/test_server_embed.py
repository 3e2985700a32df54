"""POST /v1/embeddings over real HTTP with the openai SDK (float and base64), queries, MRL and errors."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from patentrank.config import Settings
from patentrank.engine import Engine
from patentrank.server import create_app
from patentrank.server.testing import serve_in_thread

TEXTS = ["A U-Net removes noise from images.", "一种齿轮箱，包括润滑油泵。", "gear", "word " * 50]
MODEL = "qwen3-embedding-0.6b"
TOLERANCE = 1e-5  # left padding in differently shaped batches rounds differently in float32


@pytest.fixture(scope="module")
def embedder(tiny_embedder_path: Path):
    from patentrank.models.embedder import Embedder

    return Embedder(str(tiny_embedder_path), device="cpu", max_length=64)


@pytest.fixture(scope="module")
def base_url(tiny_embedder_path: Path) -> Iterator[str]:
    from patentrank.models.embedder import Embedder

    settings = Settings(reranker_model="none", embedder_aliases=["qwen3-embedding-0.6b"], max_inputs=8)
    engine = Engine(
        embedder=Embedder(str(tiny_embedder_path), device="cpu", max_length=64), settings=settings
    )
    with serve_in_thread(create_app(engine, settings)) as url:
        yield url
    engine.close()


@pytest.fixture(scope="module")
def openai_client(base_url: str):
    import openai

    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)


def test_openai_sdk_float_and_base64(openai_client, embedder) -> None:
    expected = embedder.embed_documents(TEXTS)
    as_float = openai_client.embeddings.create(
        model="qwen3-embedding-0.6b", input=TEXTS, encoding_format="float"
    )
    as_b64 = openai_client.embeddings.create(
        model="Qwen3-Embedding-0.6B", input=TEXTS
    )  # the SDK asks for base64
    for response in (as_float, as_b64):
        got = np.array([d.embedding for d in sorted(response.data, key=lambda d: d.index)])
        np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0)
        assert response.usage.prompt_tokens == sum(embedder.count_tokens(TEXTS))
    assert as_float.model == Path(embedder.model_name).name


def test_base64_is_little_endian_float32(base_url: str, embedder) -> None:
    body = httpx.post(f"{base_url}/v1/embeddings", json={"input": "gear", "encoding_format": "base64"}).json()
    vector = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(vector, embedder.embed_documents(["gear"])[0], atol=TOLERANCE, rtol=0)


def test_dimensions_truncate_and_renormalise(openai_client, embedder) -> None:
    response = openai_client.embeddings.create(
        model=MODEL, input=TEXTS, dimensions=16, encoding_format="float"
    )
    got = np.array([d.embedding for d in response.data])
    assert got.shape == (len(TEXTS), 16)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, embedder.embed_documents(TEXTS, dimensions=16), atol=TOLERANCE, rtol=0)


def test_queries_get_the_instruction(openai_client, embedder) -> None:
    instruction = "Given a patent query, retrieve prior art"
    default = openai_client.embeddings.create(
        model=MODEL, input=TEXTS[:2], extra_body={"input_type": "query"}
    )
    custom = openai_client.embeddings.create(
        model=MODEL, input=TEXTS[:2], extra_body={"instruction": instruction}
    )
    np.testing.assert_allclose(
        [d.embedding for d in default.data], embedder.embed_queries(TEXTS[:2]), atol=TOLERANCE, rtol=0
    )
    np.testing.assert_allclose(
        [d.embedding for d in custom.data],
        embedder.embed_queries(TEXTS[:2], instruction),
        atol=TOLERANCE,
        rtol=0,
    )
    # Negative control: a query vector is not the document vector of the same text.
    documents = embedder.embed_documents(TEXTS[:2])
    assert np.abs(np.array([d.embedding for d in default.data]) - documents).max() > 100 * TOLERANCE


def test_concurrent_requests_match_sequential_ones(base_url: str, embedder) -> None:
    def call(i: int) -> list[list[float]]:
        body = httpx.post(
            f"{base_url}/v1/embeddings", json={"input": [f"text {i}", TEXTS[i % 4]]}, timeout=60
        )
        return [d["embedding"] for d in body.json()["data"]]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(call, range(16)))
    for i, answer in enumerate(answers):
        np.testing.assert_allclose(
            answer, embedder.embed_documents([f"text {i}", TEXTS[i % 4]]), atol=TOLERANCE, rtol=0
        )


@pytest.mark.parametrize(
    "body, status, field",
    [
        ({"input": []}, 422, "input"),
        ({"input": ["ok", ""]}, 422, "input[1]"),
        ({"input": [1, 2, 3]}, 422, "input"),
        ({"input": [[1, 2]]}, 422, "input"),
        ({"input": "x", "dimensions": 0}, 422, "dimensions"),
        ({"input": "x", "dimensions": 100_000}, 422, "dimensions"),
        ({"input": "x", "dimensions": "8"}, 422, "dimensions"),
        ({"input": "x", "encoding_format": "int8"}, 422, "encoding_format"),
        ({"input": "x", "input_type": "document", "instruction": "Find"}, 422, "instruction"),
        ({"input": "x", "input_type": "passage"}, 422, "input_type"),
        ({"input": "x", "instruction": "  "}, 422, "instruction"),
        ({"input": ["x"] * 9}, 413, "input"),
        ({"input": ["x", "y" * 200_000]}, 413, "input[1]"),
        ({"inputs": "x"}, 422, "input"),
    ],
)
def test_bad_embedding_requests_name_the_field(base_url: str, body: dict, status: int, field: str) -> None:
    response = httpx.post(f"{base_url}/v1/embeddings", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field and field.split("[")[0] in error["message"]


def test_rerank_without_a_reranker_is_503_with_the_fix(base_url: str) -> None:
    response = httpx.post(f"{base_url}/v1/rerank", json={"query": "q", "documents": ["d"]})
    assert response.status_code == 503
    assert "PATENTRANK_RERANKER_MODEL" in response.json()["error"]["message"]
