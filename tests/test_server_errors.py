"""Bad input gets a 4xx that names the field, the server keeps serving, and generated requests find no 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from patentrank.config import Settings
from patentrank.engine import Engine
from patentrank.server import create_app
from patentrank.server.testing import serve_in_thread

GOOD = {"query": "gear", "documents": ["a gearbox", "a pump"]}


@pytest.fixture(scope="module")
def base_url(tiny_reranker_path: Path, tiny_embedder_path: Path) -> Iterator[str]:
    from patentrank.models.embedder import Embedder
    from patentrank.models.reranker import Reranker

    settings = Settings(
        max_documents=10, max_document_chars=2000, max_inputs=10, max_body_bytes=64 * 1024, cache_size=100
    )
    engine = Engine(
        reranker=Reranker(str(tiny_reranker_path), device="cpu", max_length=96),
        embedder=Embedder(str(tiny_embedder_path), device="cpu", max_length=32),
        settings=settings,
    )
    with serve_in_thread(create_app(engine, settings)) as url:
        yield url
    engine.close()


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=60) as c:
        yield c


def with_(**changes: Any) -> dict[str, Any]:
    body = dict(GOOD)
    for key, value in changes.items():
        if value is ...:
            body.pop(key, None)
        else:
            body[key] = value
    return body


BAD_RERANK = [
    (with_(query=...), 422, "query"),
    (with_(query=""), 422, "query"),
    (with_(query="   "), 422, "query"),
    (with_(query=5), 422, "query"),
    (with_(query=["gear"]), 422, "query"),
    (with_(query=None), 422, "query"),
    (with_(query="q" * 2001), 413, "query"),
    (with_(documents=...), 422, "documents"),
    (with_(documents=[]), 422, "documents"),
    (with_(documents="a gearbox"), 422, "documents"),
    (with_(documents=[1]), 422, "documents[0]"),
    (with_(documents=[None]), 422, "documents[0]"),
    (with_(documents=[{"title": "no text"}]), 422, "documents[0]"),
    (with_(documents=[{"text": 5}]), 422, "documents[0]"),
    (with_(documents=["d"] * 11), 413, "documents"),
    (with_(documents=["ok", "d" * 2001]), 413, "documents[1]"),
    (with_(top_n=-1), 422, "top_n"),
    (with_(top_n="2"), 422, "top_n"),
    (with_(top_n=1.5), 422, "top_n"),
    (with_(top_n=True), 422, "top_n"),
    (with_(return_documents="yes"), 422, "return_documents"),
    (with_(max_tokens_per_doc=0), 422, "max_tokens_per_doc"),
    (with_(max_tokens_per_doc="10"), 422, "max_tokens_per_doc"),
    (with_(instruction=7), 422, "instruction"),
    (with_(instruction=""), 422, "instruction"),
    (with_(instruction="i" * 2001), 413, "instruction"),
    (with_(min_score="high"), 422, "min_score"),
    (with_(model=3), 422, "model"),
    (with_(rank_fields=["title"], documents=[{"text": "t"}]), 422, "rank_fields"),
    (with_(documents=..., texts=["a"]), 422, "documents"),
]


@pytest.mark.parametrize("body, status, field", BAD_RERANK)
@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank"])
def test_bad_rerank_requests_name_the_field(
    client: httpx.Client, path: str, body: dict, status: int, field: str
):
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field and error["code"] == status
    assert field.split("[")[0] in error["message"] and "Traceback" not in response.text


@pytest.mark.parametrize(
    "content, headers, status",
    [
        (b'{"query": "gear", "documents": ["a"', {"content-type": "application/json"}, 400),
        (b"not json at all", {"content-type": "application/json"}, 400),
        (b"", {"content-type": "application/json"}, 422),
        (b"[1, 2]", {"content-type": "application/json"}, 422),
        (b'"just a string"', {"content-type": "application/json"}, 422),
        (b'{"query": "gear", "documents": ["a"]}', {"content-type": "text/plain"}, 415),
        (b'{"query": "gear", "documents": ["a"]}', {}, 415),
        (b"\xff\xfe\x00garbage", {"content-type": "application/json"}, 400),
    ],
)
def test_malformed_bodies(client: httpx.Client, content: bytes, headers: dict, status: int) -> None:
    response = client.post("/v1/rerank", content=content, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]


def test_oversized_body_is_413_naming_the_setting(client: httpx.Client) -> None:
    response = client.post("/v1/rerank", json=with_(documents=["x" * 1000] * 100))
    assert response.status_code == 413
    assert "PATENTRANK_MAX_BODY_BYTES" in response.json()["error"]["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams in
        yield b'{"query": "q", "documents": ["'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"]}'

    streamed = client.post("/v1/rerank", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413


def test_unknown_routes_and_methods(client: httpx.Client) -> None:
    assert client.get("/v1/nothing").status_code == 404
    assert client.get("/v1/nothing").json()["error"]["type"] == "not_found"
    assert client.get("/v1/rerank").status_code == 405


def test_server_keeps_serving_after_bad_input(client: httpx.Client) -> None:
    for body, _, _ in BAD_RERANK:
        client.post("/rerank", json=body)
    assert client.get("/health").json()["stages"]["rerank"] is True
    ok = client.post("/rerank", json=GOOD)
    assert ok.status_code == 200 and len(ok.json()["results"]) == 2


def test_generated_requests_never_get_a_server_error(client: httpx.Client, base_url: str) -> None:
    """Schemathesis draws valid and invalid requests for every operation of the OpenAPI schema."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/rerank",
        "/v1/rerank",
        "/v2/rerank",
        "/score",
        "/v1/embeddings",
    }
    failures: list[str] = []
    for operation in operations:
        negative = [GenerationMode.NEGATIVE] if operation.method.upper() == "POST" else []
        for mode in [GenerationMode.POSITIVE, *negative]:

            @settings(
                max_examples=25 if operation.method.upper() == "POST" else 5,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: Any) -> None:
                response = case.call(base_url=base_url, timeout=60)
                if response.status_code >= 500:
                    failures.append(f"{response.status_code} {case.as_curl_command(base_url=base_url)}")
                    return
                if response.status_code >= 400:
                    body = response.json()
                    assert "error" in body, response.text

            check()
    assert not failures, "\n".join(failures[:5])
