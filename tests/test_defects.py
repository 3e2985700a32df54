"""Defects of issue 10 ("Defects found on the way"), each against real components: a real server on
loopback, the real CLI, random-weight Qwen3 models with the real tokenizer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from patentrank.config import Settings
from patentrank.corpus import Patent, load_patents
from patentrank.engine import Engine
from patentrank.index.patent_index import PatentIndex
from patentrank.server import create_app
from patentrank.server.testing import serve_in_thread
from patentrank.testing import build_random_qwen3

PATENTS = [
    Patent(id="US2001000001A1", title="Gearbox lubrication", abstract="A helical gearbox with an oil pump."),
    Patent(id="CN2001000002A", title="一种锂电池负极材料", abstract="一种硅碳复合负极材料及其制备方法。"),
    Patent(id="US2001000003A1", title="Heat exchanger", abstract="A plate heat exchanger for waste heat."),
]


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`patentrank ARGS` as a real process (the settings come from its environment)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PATENTRANK_")}
    return subprocess.run(
        [sys.executable, "-m", "patentrank", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**clean, "HF_HUB_OFFLINE": "1", "PATENTRANK_DEVICE": "cpu", **env},
    )


@pytest.fixture(scope="module")
def embedder(tiny_embedder_path: Path):
    from patentrank.models.embedder import Embedder

    return Embedder(str(tiny_embedder_path), device="cpu", max_length=64)


@pytest.fixture(scope="module")
def other_embedder(tmp_path_factory: pytest.TempPathFactory):
    """A second random embedder (another folder, so another model name) to build a foreign index."""
    from patentrank.models.embedder import Embedder

    path = build_random_qwen3(
        tmp_path_factory.mktemp("models") / "other-embedder", "tiny", "embedding", seed=7
    )
    return Embedder(str(path), device="cpu", max_length=64)


def _index_with(path: Path, embedder: object) -> Path:
    index = PatentIndex(path, embedder=embedder)
    index.add(PATENTS)
    index.close()
    return path


# ---- 1: an index built with another embedder --------------------------------------------------------


def test_foreign_index_reports_the_real_reason_in_search_and_health(
    tmp_path: Path, embedder, other_embedder
) -> None:
    from patentrank.cli.serve import _search_routers
    from patentrank.runtime import serve_engine

    folder = _index_with(tmp_path / "ix", other_embedder)
    settings = Settings(index_dir=folder, reranker_model="none", cache_size=0)
    engine = Engine(embedder=embedder, settings=settings)
    said: list[str] = []
    runtime = serve_engine(engine, report=said.append)
    index = runtime.index
    assert index is not None and index.vectors is None
    try:
        with serve_in_thread(create_app(runtime, settings, routers=_search_routers())) as url:
            body = httpx.post(
                url + "/v1/search", json={"query": "gearbox", "mode": "dense", "rerank": False}, timeout=30
            ).json()
            reason = body["stages"]["dense"]["reason"]
            assert "holds vectors of" in reason and str(other_embedder.model_name) in reason, reason
            health = httpx.get(url + "/health", timeout=30).json()
    finally:
        index.close()
    assert health["stages"]["dense"] is False
    assert "dense" in health["failed"] and health["status"] == "degraded"
    dense = health["models"]["embedder"]["index"]
    assert dense["ready"] is False and "holds vectors of" in dense["error"]
    assert health["stages"]["embed"] is True, "the embeddings API itself still works"


def test_matching_index_has_dense_ready_in_health(tmp_path: Path, embedder) -> None:
    """The negative control: the same embedder serves dense search and health says so."""
    from patentrank.runtime import serve_engine

    folder = _index_with(tmp_path / "ix", embedder)
    settings = Settings(index_dir=folder, reranker_model="none", cache_size=0)
    engine = Engine(embedder=embedder, settings=settings)
    runtime = serve_engine(engine, report=print)
    index = runtime.index
    assert index is not None
    try:
        health = runtime.health()
    finally:
        index.close()
    assert health["stages"]["dense"] is True and "dense" not in health["failed"]
    assert health["models"]["embedder"]["index"] == {"ready": True, "error": None}


# ---- 2: PATENTRANK_REMOTE_API_KEY outside `serve` -------------------------------------------------


@pytest.fixture(scope="module")
def keyed_model_server(embedder, tiny_reranker_path: Path) -> Iterator[str]:
    """A patentrank server that requires an API key, used as the remote model server."""
    from patentrank.models.reranker import Reranker

    settings = Settings(api_key="model-key", cache_size=0)
    engine = Engine(
        reranker=Reranker(str(tiny_reranker_path), device="cpu", max_length=128),
        embedder=embedder,
        settings=settings,
    )
    with serve_in_thread(create_app(engine, settings)) as url:
        yield url


def test_remote_api_key_reaches_index_and_search(tmp_path: Path, keyed_model_server: str) -> None:
    data = tmp_path / "patents.jsonl"
    data.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in PATENTS), encoding="utf-8")
    env = {
        "PATENTRANK_EMBEDDER_URL": keyed_model_server,
        "PATENTRANK_REMOTE_API_KEY": "model-key",
        "PATENTRANK_RERANKER_MODEL": "none",
    }
    indexed = _cli("index", str(data), "--index", str(tmp_path / "ix"), "--json", env=env)
    assert indexed.returncode == 0, indexed.stderr
    assert "not loaded" not in indexed.stderr, indexed.stderr
    assert json.loads(indexed.stdout)["index"]["waiting_for_vectors"] == 0
    found = _cli(
        "search",
        "gearbox",
        "--mode",
        "dense",
        "--no-rerank",
        "--json",
        "--index",
        str(tmp_path / "ix"),
        env=env,
    )
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["stages"]["dense"]["ran"] is True
    # Negative control: without the key the model server refuses, and the CLI says so.
    refused = _cli(
        "index", str(data), "--index", str(tmp_path / "ix2"), env={**env, "PATENTRANK_REMOTE_API_KEY": ""}
    )
    assert "API key" in refused.stderr


def test_one_settings_class_knows_the_serve_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import patentrank.server as server

    monkeypatch.setenv("PATENTRANK_REMOTE_API_KEY", "k1")
    monkeypatch.setenv("PATENTRANK_RERANKER_ALIASES", "a, b")
    monkeypatch.setenv("PATENTRANK_DYNAMIC_BATCHING", "false")
    s = Settings()
    assert (s.remote_api_key, s.reranker_aliases, s.embedder_aliases, s.dynamic_batching) == (
        "k1",
        ["a", "b"],
        [],
        False,
    )
    assert not hasattr(server, "ServerSettings")


# ---- 3: one language detector -------------------------------------------------------------------

LANGUAGE_CASES = [
    ("基于CNN的锂电池 anode material design", "zh"),  # the example
    ("一种基于U-Net和CNN的图像分割方法", "zh"),
    ("本发明采用U-Net和ResNet结构，对CT图像进行降噪处理", "zh"),
    ("A heat exchanger (10) with a 中文 label", "en"),
    ("A method for denoising an image using a 深度 network", "en"),
    ("Waste heat recovery system for an internal combustion engine", "en"),
    ("排熱回収システムとボイラー", "ja"),
    ("画像のノイズを除去する装置", "ja"),
    ("폐열 회수 시스템", "ko"),
    ("(10) 12.5 %", ""),
    ("", ""),
]


@pytest.mark.parametrize(("text", "language"), LANGUAGE_CASES)
def test_patents_and_queries_get_the_same_language(text: str, language: str) -> None:
    from patentrank import corpus
    from patentrank import text as text_module

    assert text_module.detect_language(text) == language
    assert corpus.detect_language(text) == language
    if language:
        assert Patent(id="X1", title=text).language == language


# ---- 4: IngestReport.rejected --------------------------------------------------------------------


def test_ingest_report_lists_rejected_records(tmp_path: Path) -> None:
    data = tmp_path / "mixed.jsonl"
    lines = [
        json.dumps(PATENTS[0].to_dict()),
        "{not json",
        json.dumps({"id": "US1", "title": ""}),
        json.dumps(PATENTS[2].to_dict()),
    ]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    index = PatentIndex(tmp_path / "ix")
    try:
        report = index.add(load_patents(data, strict=False))
    finally:
        index.close()
    assert report.added == 2
    assert [r.where for r in report.rejected] == ["line 2", "line 3"]
    assert [r.position for r in report.rejected] == [2, 3]
    # One shape everywhere (CLI --json, HTTP, the page): the HTTP answer's fields, None where unknown.
    assert [set(r) for r in report.as_dict()["rejected"]] == [{"where", "reason", "field", "id", "index"}] * 2


def test_http_ingest_rejections_are_in_the_report(tmp_path: Path) -> None:
    from patentrank.cli.serve import _search_routers
    from patentrank.runtime import serve_engine

    settings = Settings(index_dir=tmp_path / "ix", reranker_model="none", embedder_model="none", cache_size=0)
    engine = Engine(settings=settings)
    runtime = serve_engine(engine, report=print)
    index = runtime.index
    assert index is not None
    try:
        with serve_in_thread(create_app(runtime, settings, routers=_search_routers())) as url:
            body = httpx.post(
                url + "/v1/patents",
                json={"patents": [PATENTS[0].to_dict(), {"id": "bad id/with slash", "title": "x"}]},
                timeout=30,
            ).json()
    finally:
        index.close()
    assert body["added"] == 1
    (rejected,) = body["rejected"]
    assert rejected["where"] == "patents[1]" and rejected["index"] == 1 and rejected["field"] == "id"
    assert rejected["reason"]


# ---- 5: stats counts the vectors -----------------------------------------------------------------


def test_stats_shows_the_vector_passages(tmp_path: Path, embedder) -> None:
    folder = _index_with(tmp_path / "ix", embedder)
    out = _cli("stats", "--index", str(folder), env={})
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    assert stats["passages"] > 0 and stats["vector_passages"] == stats["passages"]


def test_stats_of_a_lexical_index_shows_no_vectors(tmp_path: Path) -> None:
    folder = _index_with(tmp_path / "ix", None)
    stats = json.loads(_cli("stats", "--index", str(folder), env={}).stdout)
    assert stats["passages"] > 0 and stats["vector_passages"] == 0


# ---- 6: `patentrank rerank` with PATENTRANK_RERANKER_URL ------------------------------------------


def test_rerank_cli_uses_the_remote_reranker(keyed_model_server: str, tiny_reranker_path: Path) -> None:
    from patentrank.models.reranker import Reranker

    docs = ["a helical gearbox with an oil pump", "一种锂电池负极材料", "a plate heat exchanger"]
    env = {
        "PATENTRANK_RERANKER_URL": keyed_model_server,
        "PATENTRANK_REMOTE_API_KEY": "model-key",
        "PATENTRANK_RERANKER_MODEL": str(Path("/nonexistent/reranker")),
    }
    out = _cli("rerank", "gear lubrication", *docs, "--json", env=env)
    assert out.returncode == 0, out.stderr
    got = {r["index"]: r["relevance_score"] for r in json.loads(out.stdout)["results"]}
    local = Reranker(str(tiny_reranker_path), device="cpu", max_length=128).compute("gear lubrication", docs)
    np.testing.assert_allclose([got[i] for i in range(3)], local.scores, atol=1e-5, rtol=0)


# ---- 9: one tokenizer, many threads --------------------------------------------------------------


def test_embedder_is_safe_from_many_threads(embedder) -> None:
    """Ingest (embed_documents) and search (embed_queries, count_tokens) at once on one Embedder: the fast
    tokenizer is reconfigured per call (padding, truncation), which raises 'Already borrowed' when two
    threads are inside it together."""
    texts = [("gear " * n).strip() for n in (1, 5, 40, 3, 80, 12)]
    reference = embedder.embed_documents(texts)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def hammer(kind: int) -> None:
        start.wait()
        try:
            for _ in range(60):
                if kind == 0:
                    np.testing.assert_allclose(embedder.embed_documents(texts), reference, atol=1e-4)
                elif kind == 1:
                    embedder.embed_queries(texts[:2])
                else:
                    assert len(embedder.count_tokens(texts)) == len(texts)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(k % 3,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, f"{len(errors)} threads failed, first: {errors[0]!r}"


# ---- 10: test-only code out of the package -------------------------------------------------------


def test_test_only_helpers_are_not_in_the_package() -> None:
    from patentrank import evaluate
    from patentrank.index.lexical import LexicalIndex

    assert not hasattr(LexicalIndex, "search_many")
    assert not hasattr(evaluate, "bm25_run") and not hasattr(evaluate, "document_text")
