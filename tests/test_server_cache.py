"""Score cache over HTTP: the in-process LRU, Redis shared by two servers, and a Redis outage."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from patentrank.cache import RedisScoreCache
from patentrank.config import Settings
from patentrank.engine import Engine
from patentrank.server import create_app
from patentrank.server.testing import RedisServer, serve_in_thread

DOCS = ["a gearbox with helical gears", "一种润滑油泵", "battery cooling plate"]


@pytest.fixture(scope="module")
def reranker(tiny_reranker_path: Path):
    from patentrank.models.reranker import Reranker

    return Reranker(str(tiny_reranker_path), device="cpu", max_length=96)


def rerank(url: str, query: str, **extra: Any) -> dict[str, Any]:
    response = httpx.post(f"{url}/v1/rerank", json={"query": query, "documents": DOCS, **extra}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def scores(body: dict[str, Any]) -> dict[int, float]:
    return {r["index"]: r["relevance_score"] for r in body["results"]}


def test_lru_cache_answers_repeats(reranker) -> None:
    settings = Settings(embedder_model="none", cache_size=10)
    with serve_in_thread(create_app(Engine(reranker=reranker, settings=settings), settings)) as url:
        first, again = rerank(url, "gear"), rerank(url, "gear")
        assert first["usage"]["cache_hits"] == 0 and again["usage"]["cache_hits"] == len(DOCS)
        assert scores(again) == scores(first) == dict(enumerate(reranker.score("gear", DOCS)))
        assert again["usage"]["total_tokens"] == first["usage"]["total_tokens"]
        assert (
            rerank(url, "gear", max_tokens_per_doc=2)["usage"]["cache_hits"] == 0
        )  # truncation is in the key
        assert rerank(url, "gear", instruction="Other")["usage"]["cache_hits"] == 0
        metrics = httpx.get(f"{url}/metrics").text
        assert f'patentrank_cache_lookups_total{{result="hit"}} {float(len(DOCS))}' in metrics
        assert httpx.get(f"{url}/health").json()["cache"]["backend"] == "lru"


@pytest.mark.skipif(not RedisServer.available(), reason="redis-server is not installed")
def test_redis_is_shared_and_an_outage_only_disables_it(reranker) -> None:
    with RedisServer() as redis:
        settings = Settings(embedder_model="none", cache_url=redis.url)
        engines = [
            Engine(reranker=reranker, settings=settings, cache=RedisScoreCache(redis.url, retry_after_s=0.2))
            for _ in range(2)
        ]
        with (
            serve_in_thread(create_app(engines[0], settings)) as one,
            serve_in_thread(create_app(engines[1], settings)) as two,
        ):
            expected = dict(enumerate(reranker.score("gear", DOCS)))
            first = rerank(one, "gear")
            shared = rerank(two, "gear")
            assert first["usage"]["cache_hits"] == 0 and shared["usage"]["cache_hits"] == len(DOCS)
            assert scores(first) == scores(shared) == expected
            assert httpx.get(f"{two}/health").json()["cache"] == {
                "backend": "redis",
                "ok": True,
                "error": None,
            }

            redis.stop()  # kill -9 of the redis-server we started
            during = rerank(one, "gear")
            assert during["usage"]["cache_hits"] == 0 and scores(during) == expected
            assert scores(rerank(two, "pump")) == dict(enumerate(reranker.score("pump", DOCS)))
            health = httpx.get(f"{one}/health").json()
            assert health["cache"]["ok"] is False and health["cache"]["error"]
            assert health["status"] == "ok"  # the cache is optional: the server is not degraded

            redis.start()  # same port, empty: the cache comes back by itself
            time.sleep(0.3)
            assert rerank(one, "gear")["usage"]["cache_hits"] == 0
            assert rerank(two, "gear")["usage"]["cache_hits"] == len(DOCS)
            assert httpx.get(f"{one}/health").json()["cache"]["ok"] is True


@pytest.mark.skipif(not RedisServer.available(), reason="redis-server is not installed")
def test_redis_down_from_the_start_serves_without_cache(reranker) -> None:
    with RedisServer() as redis:
        url = redis.url
    settings = Settings(embedder_model="none", cache_url=url)
    with serve_in_thread(create_app(Engine(reranker=reranker, settings=settings), settings)) as server:
        assert scores(rerank(server, "gear")) == dict(enumerate(reranker.score("gear", DOCS)))
        assert httpx.get(f"{server}/health").json()["cache"]["ok"] is False


def test_killed_redis_process_is_ours() -> None:
    """The fixture stops only the redis-server it started, by its own process handle."""
    if not RedisServer.available():
        pytest.skip("redis-server is not installed")
    redis = RedisServer().start()
    process = redis.process
    assert process is not None
    redis.stop()
    assert process.poll() is not None and redis.process is None
