"""Overload over HTTP: a full queue answers 429 at once, a request past its deadline 503, both with
Retry-After, never a hang; afterwards the server serves again."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from patentrank.config import Settings
from patentrank.engine import Engine
from patentrank.server import create_app
from patentrank.server.testing import serve_in_thread

# About 1000 x 300 tokens in model calls of 4 pairs: seconds of work even for the tiny model.
HEAVY = {"query": "gear", "documents": [f"{i} " + "gearbox lubrication pump " * 80 for i in range(1000)]}
SMALL = {"query": "gear", "documents": ["a gearbox"]}


def test_full_queue_is_429_and_expired_request_is_503(tiny_reranker_path: Path) -> None:
    from patentrank.models.reranker import Reranker

    settings = Settings(
        embedder_model="none",
        queue_size=1,
        request_timeout_s=1.5,
        max_batch_size=4,
        cache_size=0,
        max_body_bytes=50_000_000,
    )
    engine = Engine(reranker=Reranker(str(tiny_reranker_path), device="cpu"), settings=settings)
    with (
        serve_in_thread(create_app(engine, settings)) as url,
        httpx.Client(base_url=url, timeout=60) as client,
    ):
        heavy: dict[str, httpx.Response] = {}
        worker = threading.Thread(target=lambda: heavy.update(r=client.post("/v1/rerank", json=HEAVY)))
        worker.start()
        deadline = time.monotonic() + 30
        while client.get("/health").json()["queue"]["rerank"] < 1:
            assert time.monotonic() < deadline, "the heavy request never reached the queue"
            time.sleep(0.01)

        refused = client.post("/v1/rerank", json=SMALL)
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["retry-after"]) >= 1
        assert "queue is full" in refused.json()["error"]["message"]

        worker.join(30)
        assert not worker.is_alive(), "the expired request must be answered, not left hanging"
        late = heavy["r"]
        assert late.status_code == 503, late.text
        assert int(late.headers["retry-after"]) >= 1
        assert "PATENTRANK_REQUEST_TIMEOUT_S" in late.json()["error"]["message"]

        # Serving again; on a loaded machine one small request may itself miss the 1.5 s deadline.
        statuses = []
        for _ in range(10):
            statuses.append(client.post("/v1/rerank", json=SMALL).status_code)
            if statuses[-1] == 200:
                break
        assert statuses[-1] == 200 and set(statuses) <= {200, 503}, statuses
        metrics = client.get("/metrics").text
        assert 'patentrank_rejected_total{model="rerank",reason="queue_full"} 1.0' in metrics
        assert 'patentrank_rejected_total{model="rerank",reason="deadline"}' in metrics
    engine.close()
