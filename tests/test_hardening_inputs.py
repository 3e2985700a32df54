"""Issue 15, findings 1-5 and 7 over real HTTP: model names, lone surrogates, out-of-range numbers,
body-parse errors, patent ids, and an OpenAPI document that declares what the server does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from patentrank.config import Settings
from patentrank.engine import Engine
from patentrank.server import create_app
from patentrank.server.openapi import NON_BLANK
from patentrank.server.routes_search import router as search_router
from patentrank.server.testing import serve_in_thread

DOCS = ["A gearbox with helical gears.", "A U-Net removes noise from images."]


@pytest.fixture(scope="module")
def models(tiny_reranker_path: Path, tiny_embedder_path: Path) -> tuple[Any, Any]:
    from patentrank.models.embedder import Embedder
    from patentrank.models.reranker import Reranker

    return (
        Reranker(str(tiny_reranker_path), device="cpu", max_length=128),
        Embedder(str(tiny_embedder_path), device="cpu", max_length=64),
    )


@pytest.fixture(scope="module")
def server(models: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    from patentrank.corpus import load_patents, sample_corpus_path
    from patentrank.index.patent_index import PatentIndex
    from patentrank.runtime import Runtime

    reranker, embedder = models
    settings = Settings(cache_size=0, rerank_candidates=5)
    index = PatentIndex(tmp_path_factory.mktemp("hardening") / "ix", embedder=embedder)
    index.add(load_patents(sample_corpus_path()))
    engine = Engine(reranker=reranker, embedder=embedder, settings=settings)
    runtime = Runtime.serving(engine, index)
    with serve_in_thread(create_app(runtime, settings, routers=[search_router])) as url:
        yield url, index
    engine.close()


@pytest.fixture(scope="module")
def url(server: tuple[str, Any]) -> str:
    return server[0]


def post(url: str, path: str, body: Any = None, *, content: bytes | None = None) -> httpx.Response:
    if content is None:
        content = json.dumps(body).encode("utf-8")  # json.dumps keeps lone surrogates as \\ud800 escapes
    return httpx.post(url + path, content=content, headers={"Content-Type": "application/json"}, timeout=60)


# ---- 1. model names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/rerank", {"model": "qwen3-reranker-0.6b", "query": "gear", "documents": DOCS}),
        ("/v1/rerank", {"model": "rerank-english-v3.0", "query": "gear", "documents": DOCS}),
        ("/v2/rerank", {"model": "rerank-v3.5", "query": "gear", "documents": DOCS}),
        ("/rerank", {"model": "jina-reranker-v2-base-multilingual", "query": "gear", "documents": DOCS}),
        ("/score", {"model": "BAAI/bge-reranker-v2-m3", "text_1": "gear", "text_2": DOCS}),
        ("/v1/embeddings", {"model": "text-embedding-3-small", "input": DOCS}),
    ],
)
def test_any_model_name_selects_the_one_served_model(url: str, models, path: str, body: dict) -> None:
    response = post(url, path, body)
    assert response.status_code == 200, response.text
    role = models[1] if path == "/v1/embeddings" else models[0]
    assert response.json()["model"] == Path(role.model_name).name


def test_strict_model_names_is_404_naming_the_alias_setting(models) -> None:
    settings = Settings(cache_size=0, strict_model_names=True, reranker_aliases="rerank-v3.5")
    engine = Engine(reranker=models[0], embedder=models[1], settings=settings)
    with serve_in_thread(create_app(engine, settings)) as strict:
        refused = post(strict, "/v1/rerank", {"model": "gpt-4", "query": "q", "documents": ["d"]})
        assert refused.status_code == 404
        error = refused.json()["error"]
        assert error["field"] == "model" and "PATENTRANK_RERANKER_ALIASES" in error["message"]
        embed = post(strict, "/v1/embeddings", {"model": "text-embedding-3-small", "input": "x"})
        assert embed.status_code == 404 and "PATENTRANK_EMBEDDER_ALIASES" in embed.json()["error"]["message"]
        alias = post(strict, "/v1/rerank", {"model": "RERANK-v3.5", "query": "q", "documents": ["d"]})
        assert alias.status_code == 200  # the configured alias, case-insensitive


# ---- 2. lone surrogates --------------------------------------------------------------------------

SURROGATE_QUERY, SURROGATE_DOC = "q\ud800", "a\udc00b"
CLEAN_DOC = "a\ufffdb"


def _relevance(body: Any) -> list[float]:
    return [r["relevance_score"] for r in body["results"]]


SURROGATE_CASES = [
    ("/v1/rerank", {"query": SURROGATE_QUERY, "documents": [SURROGATE_DOC]}, _relevance),
    ("/v2/rerank", {"query": SURROGATE_QUERY, "documents": [{"text": SURROGATE_DOC}]}, _relevance),
    ("/rerank", {"query": SURROGATE_QUERY, "texts": [SURROGATE_DOC]}, lambda b: [r["score"] for r in b]),
    (
        "/score",
        {"text_1": SURROGATE_QUERY, "text_2": [SURROGATE_DOC]},
        lambda b: [d["score"] for d in b["data"]],
    ),
    ("/v1/embeddings", {"input": [SURROGATE_DOC]}, lambda b: b["data"][0]["embedding"]),
]


def _cleaned(value: Any) -> Any:
    """The documented replacement, done here independently of the server."""
    if isinstance(value, str):
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    if isinstance(value, list):
        return [_cleaned(v) for v in value]
    if isinstance(value, dict):
        return {k: _cleaned(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize("path, dirty, scores", SURROGATE_CASES)
def test_lone_surrogates_are_replaced_by_ufffd(url: str, path: str, dirty: dict, scores: Any) -> None:
    got = post(url, path, dirty)
    assert got.status_code == 200, got.text
    reference = post(url, path, _cleaned(dirty))
    assert _cleaned(dirty) != dirty and "\\ud" not in json.dumps(_cleaned(dirty))
    np.testing.assert_allclose(scores(got.json()), scores(reference.json()), atol=1e-6)


def test_rerank_returns_the_replaced_text(url: str) -> None:
    body = post(url, "/v1/rerank", {"query": SURROGATE_QUERY, "documents": [SURROGATE_DOC]}).json()
    assert body["results"][0]["document"]["text"] == CLEAN_DOC


def test_surrogates_in_patents_and_search(url: str) -> None:
    record = {"id": "ZZ0000015A1", "title": "Gear\ud800box", "abstract": "A pump \udfff with gears."}
    stored = post(url, "/v1/patents", {"patents": [record]})
    assert stored.status_code == 200, stored.text
    assert stored.json()["rejected"] == []
    patent = httpx.get(f"{url}/v1/patents/ZZ0000015A1", timeout=30).json()
    assert patent["title"] == "Gear\ufffdbox"
    unknown = post(url, "/v1/search", {"patent_id": "US\ud800", "mode": "lexical", "rerank": False})
    assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "patent_id", unknown.text
    assert httpx.delete(f"{url}/v1/patents/ZZ0000015A1", timeout=30).status_code == 200


# ---- 3. numbers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/rerank", "/rerank"])
@pytest.mark.parametrize(
    "raw, field",
    [
        ('{"query":"q","documents":[{"text":"a","n":18446744073709551616}]}', "documents[0].n"),
        ('{"query":"q","documents":[{"text":"a","n":-9223372036854775809}]}', "documents[0].n"),
        ('{"query":"q","documents":[{"text":"a","n":1e400}]}', "documents[0].n"),
        ('{"query":"q","documents":[{"text":"a","n":[2.5e19]}]}', "documents[0].n[0]"),
        ('{"query":"q","documents":["a"],"min_score":NaN}', "min_score"),
        ('{"query":"q","documents":["a"],"min_score":-Infinity}', "min_score"),
        ('{"query":"q","documents":[{"text":"a","n":' + "9" * 5000 + "}]}", "documents[0].n"),
    ],
)
def test_out_of_range_numbers_are_422_naming_the_field(url: str, path: str, raw: str, field: str) -> None:
    response = post(url, path, content=raw.encode())
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


def test_numbers_in_range_are_echoed_exactly(url: str) -> None:  # the negative control
    nested: Any = "deep"
    for _ in range(97):  # with the body, the list and the document: 100 levels, the limit
        nested = [nested]
    document = {
        "text": "a",
        "big": 2**64 - 1,
        "small": -(2**63),
        "x": 1.5e19,
        "y": -2.5e-300,
        "nested": nested,
    }
    body = post(url, "/v1/rerank", {"query": "q", "documents": [document]}).json()
    assert body["results"][0]["document"] == document


# ---- 4. body-parse errors ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/rerank", "/rerank", "/v1/embeddings", "/v1/patents", "/v1/search"])
@pytest.mark.parametrize(
    "content",
    [
        b'{"query": "\xff\xfe", "documents": ["a"]}',  # not UTF-8
        b"[" * 5000 + b"]" * 5000,
        b'{"query": ' + b"[" * 100 + b"]" * 100 + b"}",  # 101 levels: under the parser's limit, over ours
        b'{"query": "q", "documents": ["a"',
    ],
)
def test_parse_errors_are_400_invalid_request_on_body(url: str, path: str, content: bytes) -> None:
    response = post(url, path, content=content)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["field"], error["code"]) == ("invalid_request", "body", 400)


# ---- 5. patent ids -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", ["WO/2020/123456", "US123\x00", "X" * 10_000, "-leading", "US 123", "US1\t23"]
)
def test_invalid_patent_ids_are_rejected_at_ingest(url: str, bad: str) -> None:
    good = {"id": "ZZ0000015B1", "title": "Valid", "abstract": "A valid patent about gears."}
    response = post(url, "/v1/patents", {"patents": [{"id": bad, "title": "t", "abstract": "a b c"}, good]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(0, "id")]
    assert body["added"] + body["updated"] + body["unchanged"] == 1
    looked_up = httpx.get(f"{url}/v1/patents", params={"id": bad}, timeout=30)
    assert looked_up.status_code == (422 if len(bad) > 1000 else 404)  # not stored; ?id= takes 1,000 chars


@pytest.mark.parametrize("bad", ["US123%00", "X" * 129, "US%20123"])
def test_invalid_ids_in_the_path_are_422(url: str, bad: str) -> None:
    for method in ("GET", "DELETE"):
        response = httpx.request(method, f"{url}/v1/patents/{bad}", timeout=30)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == "patent_id"


def test_ids_stored_before_the_rule_stay_readable_and_deletable(server: tuple[str, Any]) -> None:
    from patentrank.corpus import patent_from_record

    url, index = server
    legacy = "WO/2020/000015"
    index.add([patent_from_record({"id": legacy, "title": "Legacy", "abstract": "An old record."})])
    got = httpx.get(f"{url}/v1/patents", params={"id": legacy}, timeout=30)
    assert got.status_code == 200 and got.json()["id"] == legacy
    assert httpx.get(f"{url}/v1/patents/{legacy}", timeout=30).status_code == 404  # the path cannot
    deleted = httpx.delete(f"{url}/v1/patents", params={"id": legacy}, timeout=30)
    assert deleted.status_code == 200 and deleted.json() == {"id": legacy, "deleted": True}
    assert httpx.get(f"{url}/v1/patents", params={"id": legacy}, timeout=30).status_code == 404


def test_options_on_a_patent_lists_delete(url: str) -> None:
    response = httpx.options(f"{url}/v1/patents/CN113344556A", timeout=30)
    assert response.status_code == 204
    assert {m.strip() for m in response.headers["allow"].split(",")} >= {"GET", "DELETE"}


# ---- 7. the OpenAPI document ---------------------------------------------------------------------


def test_openapi_declares_the_statuses_and_limits(url: str) -> None:
    schema = httpx.get(f"{url}/openapi.json", timeout=30).json()
    paths = schema["paths"]
    for path in (
        "/rerank",
        "/v1/rerank",
        "/v2/rerank",
        "/score",
        "/v1/embeddings",
        "/v1/search",
        "/v1/patents",
    ):
        assert {"400", "413", "415", "422"} <= set(paths[path]["post"]["responses"]), path
    assert "404" in paths["/v1/patents/{patent_id}"]["get"]["responses"]
    assert "delete" in paths["/v1/patents/{patent_id}"]
    error = paths["/v1/rerank"]["post"]["responses"]["422"]["content"]["application/json"]["schema"]
    assert error["required"] == ["error"]  # our error body, not FastAPI's {"detail": ...}
    components = schema["components"]["schemas"]
    query = components["RerankRequest"]["properties"]["query"]
    assert query["minLength"] == 1 and query["pattern"] == NON_BLANK
    text_1 = components["ScoreRequest"]["properties"]["text_1"]["anyOf"]
    assert next(m for m in text_1 if m["type"] == "string")["minLength"] == 1
    assert next(m for m in text_1 if m["type"] == "array")["maxItems"] == 1
    dimensions = next(
        m
        for m in components["EmbeddingRequest"]["properties"]["dimensions"]["anyOf"]
        if m["type"] == "integer"
    )
    assert dimensions["minimum"] == 1 and dimensions["maximum"] > 1
    too_big = post(url, "/v1/embeddings", {"input": "x", "dimensions": dimensions["maximum"] + 1})
    assert too_big.status_code == 422  # what the schema now says, the server does
    fits = post(url, "/v1/embeddings", {"input": "x", "dimensions": dimensions["maximum"]})
    assert fits.status_code == 200
