"""Remote backends against a second instance of our own server: exact scores, vectors and failover."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from patentrank.config import Settings
from patentrank.engine import Engine
from patentrank.errors import InputError
from patentrank.models.prompt import ASSISTANT_SUFFIX, SYSTEM_PREFIX
from patentrank.models.remote import RemoteEmbedder, RemoteError, RemoteReranker, split_urls
from patentrank.server import create_app
from patentrank.server.testing import free_port, serve_in_thread

QUERY = "gear lubrication"
DOCS = ["a gearbox with an oil pump", "一种电池冷却板", "helical gears reduce noise", "word " * 200]
INSTRUCTION = "Given a patent query, retrieve prior art"
TOLERANCE = 1e-6  # P(yes) -> log-odds -> P(yes) in float64, and float32 batch rounding


@pytest.fixture(scope="module")
def reranker(tiny_reranker_path: Path):
    from patentrank.models.reranker import Reranker

    return Reranker(str(tiny_reranker_path), device="cpu", max_length=128)


@pytest.fixture(scope="module")
def embedder(tiny_embedder_path: Path):
    from patentrank.models.embedder import Embedder

    return Embedder(str(tiny_embedder_path), device="cpu", max_length=64)


@pytest.fixture(scope="module")
def upstream(tiny_reranker_path: Path, tiny_embedder_path: Path) -> Iterator[str]:
    """The 'model server': a patentrank server with local models, as vLLM would be."""
    from patentrank.models.embedder import Embedder
    from patentrank.models.reranker import Reranker

    # Strict names: the 4xx-does-not-fail-over test below needs a name the upstream refuses.
    settings = Settings(cache_size=0, api_key="upstream-key", strict_model_names=True)
    engine = Engine(
        reranker=Reranker(str(tiny_reranker_path), device="cpu", max_length=128),
        embedder=Embedder(str(tiny_embedder_path), device="cpu", max_length=64),
        settings=settings,
    )
    with serve_in_thread(create_app(engine, settings)) as url:
        yield url


@pytest.fixture(scope="module")
def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_remote_reranker_scores_like_the_local_one(upstream: str, dead_url: str, reranker) -> None:
    remote = RemoteReranker([dead_url, upstream], api_key="upstream-key", timeout_s=30)
    for instruction in (None, INSTRUCTION):
        local = reranker.compute(QUERY, DOCS, instruction)
        got = remote.compute(QUERY, DOCS, instruction)
        np.testing.assert_allclose(got.scores, local.scores, atol=TOLERANCE, rtol=0)
    assert remote.endpoints.urls[remote.endpoints._preferred] == upstream, (
        "failover must stick to the live server"
    )
    ranked = remote.rank(QUERY, DOCS, top_n=2)
    assert [r.index for r in ranked] == [r.index for r in reranker.rank(QUERY, DOCS, top_n=2)]
    remote.close()


def test_remote_reranker_formats_prompts_for_vllm(upstream: str) -> None:
    pairs = RemoteReranker(upstream).encode(QUERY, DOCS[:1], INSTRUCTION)
    assert pairs[0].query_text == f"{SYSTEM_PREFIX}<Instruct>: {INSTRUCTION}\n<Query>: {QUERY}\n"
    assert pairs[0].document_text == f"<Document>: {DOCS[0]}{ASSISTANT_SUFFIX}"


def test_score_endpoint_and_truncation_match_too(upstream: str, reranker) -> None:
    remote = RemoteReranker(upstream, endpoint="/score", api_key="upstream-key")
    np.testing.assert_allclose(remote.score(QUERY, DOCS), reranker.score(QUERY, DOCS), atol=TOLERANCE, rtol=0)
    cut = remote.compute(QUERY, DOCS, max_tokens_per_doc=4)
    np.testing.assert_allclose(
        cut.scores, reranker.compute(QUERY, DOCS, max_tokens_per_doc=4).scores, atol=TOLERANCE, rtol=0
    )


def test_server_detects_the_formatted_prompt(upstream: str, reranker) -> None:
    """Negative control: a query that only almost carries the prefix is scored as plain text, differently."""
    remote = RemoteReranker(upstream, api_key="upstream-key")
    pairs = remote.encode(QUERY, DOCS)
    exact = remote.score_encoded(pairs)
    broken = [type(p)(" " + p.query_text, p.document_text, p.num_tokens) for p in pairs]
    assert np.abs(remote.score_encoded(broken) - exact).max() > 1e-3


def test_every_server_down_is_a_clear_error(dead_url: str) -> None:
    other = f"http://127.0.0.1:{free_port()}"
    remote = RemoteReranker([dead_url, other], timeout_s=2)
    with pytest.raises(RemoteError) as error:
        remote.score(QUERY, DOCS)
    assert dead_url in str(error.value) and other in str(error.value)


def test_5xx_fails_over_but_4xx_does_not(upstream: str, tiny_embedder_path: Path) -> None:
    settings = Settings(reranker_model="none", embedder_model="none")
    with serve_in_thread(create_app(Engine(settings=settings), settings)) as empty:  # answers 503
        remote = RemoteReranker([empty, upstream], api_key="upstream-key")
        assert len(remote.score(QUERY, DOCS)) == len(DOCS)
        named = RemoteReranker([upstream, empty], model="no-such-model", api_key="upstream-key")
        with pytest.raises(InputError, match="not served here"):
            named.score(QUERY, DOCS)
        with pytest.raises(RemoteError, match="API key"):
            RemoteReranker(upstream, api_key="wrong").score(QUERY, DOCS)


def test_remote_embedder_matches_the_local_one(upstream: str, dead_url: str, embedder) -> None:
    remote = RemoteEmbedder([dead_url, upstream + "/v1"], api_key="upstream-key", batch_size=3)
    np.testing.assert_allclose(
        remote.embed_documents(DOCS), embedder.embed_documents(DOCS), atol=1e-5, rtol=0
    )
    np.testing.assert_allclose(
        remote.embed_queries(DOCS[:2]), embedder.embed_queries(DOCS[:2]), atol=1e-5, rtol=0
    )
    np.testing.assert_allclose(
        remote.embed_queries(DOCS[:2], INSTRUCTION),
        embedder.embed_queries(DOCS[:2], INSTRUCTION),
        atol=1e-5,
        rtol=0,
    )
    np.testing.assert_allclose(
        remote.embed_documents(DOCS, dimensions=16),
        embedder.embed_documents(DOCS, dimensions=16),
        atol=1e-5,
        rtol=0,
    )
    assert remote.dim == embedder.dim and remote.embed_documents([]).shape == (0, embedder.dim)
    assert len(remote.count_tokens(DOCS)) == len(DOCS)


def test_an_engine_serves_through_remote_models(upstream: str, reranker, embedder) -> None:
    """A front server whose models are the upstream server: same answers over two HTTP hops."""
    settings = Settings(
        reranker_url=upstream,
        embedder_url=upstream,
        remote_api_key="upstream-key",
        reranker_model="none",  # with a URL, the model name sent upstream; "none" sends none
        embedder_model="none",
    )
    from patentrank.runtime import serve_runtime

    runtime = serve_runtime(settings, with_index=False)
    assert runtime.health()["models"]["reranker"]["backend"] == "remote"
    with serve_in_thread(create_app(runtime, settings)) as front:
        body = httpx.post(f"{front}/v1/rerank", json={"query": QUERY, "documents": DOCS}).json()
        got = {r["index"]: r["relevance_score"] for r in body["results"]}
        np.testing.assert_allclose(
            [got[i] for i in range(len(DOCS))], reranker.score(QUERY, DOCS), atol=TOLERANCE
        )
        vectors = httpx.post(f"{front}/v1/embeddings", json={"input": DOCS}).json()["data"]
        np.testing.assert_allclose(
            [v["embedding"] for v in vectors], embedder.embed_documents(DOCS), atol=1e-5
        )
    runtime.close()


def test_url_lists() -> None:
    assert split_urls("http://a:1/, https://b/v1 ,") == ["http://a:1", "https://b"]
    with pytest.raises(InputError):
        split_urls("a-host:8000")
    with pytest.raises(InputError):
        split_urls(" , ")
    assert Settings(reranker_url="http://a,http://b").reranker_url == "http://a,http://b"
