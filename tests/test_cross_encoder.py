"""Sequence-classification cross-encoders as rerankers: scores against sentence-transformers'
CrossEncoder on random-weight XLM-R and BERT models with real tokenizers, through the engine's
dynamic batching, a real HTTP server and the TEI / Infinity / Cohere remote clients; model detection."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from patentrank.config import Settings
from patentrank.engine import Engine
from patentrank.errors import ModelLoadError
from patentrank.models.cross_encoder import CrossEncoderReranker, load_reranker
from patentrank.models.factory import load_model
from patentrank.models.remote import RemoteReranker
from patentrank.server import create_app
from patentrank.server.testing import serve_in_thread
from patentrank.testing import build_random_cross_encoder, me5_small_dir

QUERY = "gear lubrication with an oil pump"
DOCS = [
    "A gearbox with an oil pump lubricates the helical gears.",
    "一种电池冷却板，设置在电池单元之间。",
    "Helical gears reduce noise; 齿轮箱润滑系统",
    "word " * 300,  # far past the 128-token limit: truncated
    "",
    "电池 battery cooling " * 40,  # truncated as well
]
QUERIES = ["battery thermal management", "齿轮箱润滑", "image denoising with a U-Net"]
# Float32 GEMMs of different batch shapes round differently; anything above this is a real difference.
TOLERANCE = 1e-5
MAX_LENGTH = 128


def real_xlmr_tokenizer() -> Path | None:
    """A folder with the real XLM-R tokenizer.json: $PATENTRANK_XLMR_TOKENIZER, or a multilingual-e5-small
    folder found by `me5_small_dir` (built by ../shared/models/build-me5-small)."""
    for candidate in (os.environ.get("PATENTRANK_XLMR_TOKENIZER"), me5_small_dir()):
        if candidate and (Path(candidate) / "tokenizer.json").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cross-encoders")
    return {
        "xlmr": build_random_cross_encoder(root / "xlmr", "xlm-roberta", max_length=MAX_LENGTH),
        "bert": build_random_cross_encoder(root / "bert", "bert", max_length=MAX_LENGTH, seed=1),
        "bert-2-labels": build_random_cross_encoder(root / "bert2", "bert", 2, max_length=MAX_LENGTH),
    }


@pytest.fixture(scope="module")
def real_xlmr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = real_xlmr_tokenizer()
    if source is None:
        pytest.skip(
            "no real XLM-R tokenizer: set PATENTRANK_XLMR_TOKENIZER to a multilingual-e5-small folder "
            "(../shared/models/build-me5-small OUT_DIR) to run this case"
        )
    out = tmp_path_factory.mktemp("cross-encoders") / "xlmr-real"
    return build_random_cross_encoder(out, "xlm-roberta", tokenizer_dir=source, max_length=MAX_LENGTH)


def crossencoder_scores(path: Path, query: str, docs: list[str], **kwargs: Any) -> np.ndarray:
    """What sentence-transformers gives: its default activation (1 label), P(label 1) for 2 labels."""
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(path), device="cpu", local_files_only=True)
    if model.num_labels == 2:
        return model.predict([(query, d) for d in docs], apply_softmax=True, **kwargs)[:, 1]
    return model.predict([(query, d) for d in docs], **kwargs)


def full_length(path: Path, query: str, doc: str) -> int:
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(str(path))(query, doc, verbose=False)["input_ids"])


@pytest.mark.parametrize("name", ["xlmr", "xlmr-real", "bert", "bert-2-labels"])
def test_scores_equal_sentence_transformers_crossencoder(name: str, models, request) -> None:
    path = request.getfixturevalue("real_xlmr") if name == "xlmr-real" else models[name]
    reranker = CrossEncoderReranker(str(path), device="cpu")
    assert reranker.max_length == MAX_LENGTH
    got = reranker.compute(QUERY, DOCS)
    want = crossencoder_scores(path, QUERY, DOCS)
    np.testing.assert_allclose(got.scores, want, atol=TOLERANCE, rtol=0)
    assert float(np.std(want)) > 100 * TOLERANCE, "random scores must spread for the test to be sensitive"
    if reranker.num_labels == 1:  # the raw logit is CrossEncoder's output without its activation
        raw = crossencoder_scores(path, QUERY, DOCS, activation_fn=torch.nn.Identity())
        np.testing.assert_allclose(got.logits, raw, atol=TOLERANCE, rtol=0)
    long = [i for i, d in enumerate(DOCS) if full_length(path, QUERY, d) > MAX_LENGTH]
    assert got.truncated == long == [3, 5]
    pairs = reranker.encode(QUERY, DOCS)
    assert [len(p.input_ids) for p in pairs][3] == MAX_LENGTH
    assert got.prompt_tokens == sum(len(p.input_ids) for p in pairs)
    ranked = reranker.rank(QUERY, DOCS, top_n=2)
    assert [r.index for r in ranked] == list(np.argsort(-want, kind="stable")[:2])


def test_pair_template_and_token_types(models) -> None:
    xlmr = CrossEncoderReranker(str(models["xlmr"]), device="cpu")
    tok = xlmr.tokenizer
    ids = xlmr.encode("gear", ["oil pump"])[0].input_ids
    sep = tok.convert_tokens_to_ids("</s>")
    assert ids[0] == tok.convert_tokens_to_ids("<s>") and ids[-1] == sep
    assert [ids[i] for i in range(len(ids) - 1) if ids[i] == sep == ids[i + 1]], "XLM-R pairs: </s></s>"
    bert = CrossEncoderReranker(str(models["bert"]), device="cpu")
    pair = bert.encode("gear", ["oil pump"])[0]
    assert bert.tokenizer.convert_ids_to_tokens(pair.input_ids) == [
        "[CLS]",
        "gear",
        "[SEP]",
        "oil",
        "pump",
        "[SEP]",
    ]
    assert pair.token_type_ids == [0, 0, 0, 1, 1, 1]


def test_negative_controls_are_detected(models) -> None:
    path = models["bert"]
    want = crossencoder_scores(path, QUERY, DOCS)
    reranker = CrossEncoderReranker(str(path), device="cpu")
    # Wrong input: the pair as one concatenated text (no [SEP], no token types) scores differently.
    glued = crossencoder_scores(path, QUERY + " " + DOCS[0], [""] * 1)
    assert abs(float(glued[0]) - want[0]) > 100 * TOLERANCE
    # Wrong activation: softmax over the single logit is always 1.
    assert np.abs(want - 1.0).max() > 100 * TOLERANCE
    # A perturbed weight moves the scores.
    weight = reranker.network.bert.encoder.layer[0].intermediate.dense.weight
    with torch.no_grad():
        weight.add_(0.05 * torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)))
    moved = np.asarray(reranker.compute(QUERY, DOCS).scores)
    assert np.abs(moved - want).max() > 100 * TOLERANCE


def test_max_tokens_per_doc_cuts_the_document(models) -> None:
    reranker = CrossEncoderReranker(str(models["bert"]), device="cpu")
    docs = ["a gearbox with an oil pump lubricates the helical gears", "short"]
    got = reranker.compute(QUERY, docs, max_tokens_per_doc=4)
    assert got.truncated == [0]
    want = crossencoder_scores(models["bert"], QUERY, ["a gearbox with an", "short"])
    np.testing.assert_allclose(got.scores, want, atol=TOLERANCE, rtol=0)


def test_instruction_is_ignored_and_the_model_prompt_applied(models, tmp_path: Path) -> None:
    reranker = CrossEncoderReranker(str(models["xlmr"]), device="cpu")
    plain = reranker.compute(QUERY, DOCS[:3])
    instructed = reranker.compute(QUERY, DOCS[:3], instruction="Find prior art for this claim")
    assert instructed.scores == plain.scores
    from sentence_transformers import CrossEncoder

    # A sentence-transformers folder (modules.json) with a default prompt, as CrossEncoder saves it.
    prompted = tmp_path / "prompted"
    CrossEncoder(
        str(models["xlmr"]), prompts={"query": "query: "}, default_prompt_name="query"
    ).save_pretrained(str(prompted))
    assert (prompted / "modules.json").is_file()
    got = CrossEncoderReranker(str(prompted), device="cpu").compute(QUERY, DOCS[:3])
    np.testing.assert_allclose(got.scores, crossencoder_scores(prompted, QUERY, DOCS[:3]), atol=TOLERANCE)
    assert np.abs(np.subtract(got.scores, plain.scores)).max() > 100 * TOLERANCE


# ---- through the engine, the HTTP API and the remote clients ---------------------------------------


@pytest.fixture(scope="module")
def xlmr(models) -> CrossEncoderReranker:
    return CrossEncoderReranker(str(models["xlmr"]), device="cpu")


def test_load_model_detects_a_cross_encoder(models) -> None:
    settings = Settings(reranker_model=str(models["xlmr"]), device="cpu", max_length=100)
    model = load_model("reranker", settings)
    assert isinstance(model, CrossEncoderReranker) and model.max_length == 100


def test_dynamic_batching_mixes_queries_and_scores_exactly(models, xlmr) -> None:
    engine = Engine(reranker=xlmr, settings=Settings(cache_size=0, batch_wait_ms=20))
    calls: list[int] = []
    original = xlmr.score_encoded

    def counted(pairs: Any, progress: Any = None) -> np.ndarray:
        calls.append(len(pairs))
        return original(pairs, progress)

    async def body() -> list[Any]:
        await engine.start()
        try:
            return await asyncio.gather(*(engine.rerank(q, DOCS) for q in QUERIES for _ in range(2)))
        finally:
            await engine.stop()

    xlmr.score_encoded = counted  # type: ignore[method-assign]
    try:
        results = asyncio.run(body())
    finally:
        del xlmr.score_encoded
    assert len(calls) < len(results) and max(calls) > len(DOCS), "requests must share model calls"
    for result, query in zip(results, [q for q in QUERIES for _ in range(2)], strict=True):
        want = crossencoder_scores(models["xlmr"], query, DOCS)
        np.testing.assert_allclose(result.scores, want, atol=TOLERANCE, rtol=0)
        assert result.truncated == [3, 5]


@pytest.fixture(scope="module")
def upstream(xlmr) -> Iterator[str]:
    """A patentrank server with the cross-encoder, standing in for TEI, Infinity and vLLM."""
    settings = Settings(cache_size=100)
    with serve_in_thread(create_app(Engine(reranker=xlmr, settings=settings), settings)) as url:
        yield url


def test_http_rerank_apis_give_crossencoder_scores(models, upstream: str) -> None:
    want = crossencoder_scores(models["xlmr"], QUERY, DOCS)
    for repeat in range(2):  # the second round comes from the score cache
        body = httpx.post(
            upstream + "/v1/rerank", json={"query": QUERY, "documents": DOCS}, timeout=60
        ).json()
        got = {row["index"]: row["relevance_score"] for row in body["results"]}
        np.testing.assert_allclose([got[i] for i in range(len(DOCS))], want, atol=TOLERANCE, rtol=0)
        assert body["usage"]["truncated_documents"] == [3, 5]
        assert body["usage"]["cache_hits"] == repeat * len(DOCS)
    tei = httpx.post(upstream + "/rerank", json={"query": QUERY, "texts": DOCS}, timeout=60).json()
    np.testing.assert_allclose(
        [r["score"] for r in sorted(tei, key=lambda r: r["index"])], want, atol=TOLERANCE
    )
    health = httpx.get(upstream + "/health", timeout=10).json()
    reranker = health["models"]["reranker"]
    assert (reranker["ready"], reranker["model"], reranker["backend"], reranker["error"]) == (
        True,
        "xlmr",
        "local",
        None,
    )


@pytest.mark.parametrize("api", ["tei", "infinity", "cohere"])
def test_remote_tei_infinity_and_cohere_clients(api: str, upstream: str, xlmr) -> None:
    settings = Settings(reranker_url=upstream, reranker_api=api, reranker_model="none")
    remote = load_model("reranker", settings)
    assert isinstance(remote, RemoteReranker) and remote.api == api
    pairs = remote.encode(QUERY, DOCS[:2], instruction="ignored by cross-encoders")
    assert (pairs[0].query_text, pairs[0].document_text) == (QUERY, DOCS[0]), "plain texts, no Qwen3 prompt"
    local = xlmr.compute(QUERY, DOCS)
    got = remote.compute(QUERY, DOCS, instruction="ignored by cross-encoders")
    np.testing.assert_allclose(got.scores, local.scores, atol=1e-6, rtol=0)
    assert [r.index for r in remote.rank(QUERY, DOCS)] == [r.index for r in xlmr.rank(QUERY, DOCS)]
    remote.close()


# ---- model detection --------------------------------------------------------------------------------


def _with_config(source: Path, target: Path, **changes: Any) -> Path:
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    config.update(changes)
    (target / "config.json").write_text(json.dumps(config))
    return target


def test_unsupported_models_give_one_clear_error(models, tmp_path: Path) -> None:
    cases = {
        "encoder": (
            _with_config(models["bert"], tmp_path / "a", architectures=["BertModel"]),
            "is a BertModel",
        ),
        "custom code": (
            _with_config(
                models["xlmr"],
                tmp_path / "b",
                model_type="XLMRoberta",
                auto_map={"AutoModelForSequenceClassification": "modeling_xlm_roberta.XLMRobertaForSequence"},
            ),
            "trust_remote_code",
        ),
        "3 labels": (
            _with_config(models["bert"], tmp_path / "c", id2label={"0": "a", "1": "b", "2": "c"}),
            "3 labels",
        ),
        "foreign weights": (
            _with_config(
                models["bert"],
                tmp_path / "d",
                architectures=["XLMRobertaForSequenceClassification"],
                model_type="xlm-roberta",
            ),
            "weights of XLMRobertaForSequenceClassification are not in the checkpoint",
        ),
    }
    for case, (path, message) in cases.items():
        with pytest.raises(ModelLoadError, match=message) as caught:
            load_reranker(Settings(reranker_model=str(path), device="cpu"))
        assert "\n" not in str(caught.value), case
    with pytest.raises(ModelLoadError, match=r"needs a Qwen3-style .*ForSequenceClassification"):
        load_reranker(Settings(reranker_model=str(cases["encoder"][0])))


def test_server_keeps_serving_without_an_unsupported_reranker(models, tmp_path: Path) -> None:
    broken = _with_config(models["bert"], tmp_path / "encoder", architectures=["BertModel"])
    lines: list[str] = []
    settings = Settings(reranker_model=str(broken), embedder_model="none")
    from patentrank.runtime import serve_runtime

    runtime = serve_runtime(settings, report=lines.append, with_index=False)
    assert runtime.reranker is None and len(lines) == 1 and "is a BertModel" in lines[0]
    assert runtime.health()["models"]["reranker"]["error"].startswith("reranker model")
    runtime.close()


def test_cli_rerank_with_a_cross_encoder_and_an_unsupported_model(models, tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "patentrank", "rerank", "--device", "cpu"]
    done = subprocess.run(
        [*command, "--json", "--model", str(models["bert"]), QUERY, *DOCS[:3]],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    got = {r["index"]: r["relevance_score"] for r in json.loads(done.stdout)["results"]}
    want = crossencoder_scores(models["bert"], QUERY, DOCS[:3])
    np.testing.assert_allclose([got[i] for i in range(3)], want, atol=TOLERANCE, rtol=0)
    broken = _with_config(models["bert"], tmp_path / "encoder", architectures=["BertModel"])
    done = subprocess.run(
        [*command, "--model", str(broken), QUERY, "a document"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "is a BertModel" in done.stderr


def test_search_reranks_with_the_cross_encoder(models, xlmr, tmp_path: Path) -> None:
    from patentrank.corpus import load_patents, sample_corpus_path
    from patentrank.index.patent_index import PatentIndex
    from patentrank.runtime import Runtime
    from patentrank.server.routes_search import router as search_router

    settings = Settings(cache_size=1000, rerank_candidates=10)
    index = PatentIndex(tmp_path / "ix", embedder=None)
    index.add(load_patents(sample_corpus_path()))
    engine = Engine(reranker=xlmr, settings=settings)
    runtime = Runtime.serving(engine, index)
    query = "battery cooling plate"
    with serve_in_thread(create_app(runtime, settings, routers=[search_router])) as url:
        body = httpx.post(f"{url}/v1/search", json={"query": query, "top_n": 5}, timeout=120).json()
    assert body["stages"]["rerank"]["ran"] and body["stages"]["lexical"]["ran"]
    results = body["results"]
    assert len(results) == 5
    want = crossencoder_scores(models["xlmr"], query, [r["best_passage"]["text"] for r in results])
    np.testing.assert_allclose([r["score"] for r in results], want, atol=TOLERANCE, rtol=0)
    index.close()


def test_a_hub_id_loads_offline_from_the_hugging_face_cache(models, tmp_path: Path) -> None:
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--cross-encoder--tiny-bert"
    shutil.copytree(models["bert"], repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    command = [sys.executable, "-m", "patentrank", "rerank", "--device", "cpu", "--json"]
    done = subprocess.run(
        [*command, "--model", "cross-encoder/tiny-bert", QUERY, *DOCS[:3]],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["model"] == "cross-encoder/tiny-bert"
    got = {r["index"]: r["relevance_score"] for r in answer["results"]}
    want = crossencoder_scores(models["bert"], QUERY, DOCS[:3])
    np.testing.assert_allclose([got[i] for i in range(3)], want, atol=TOLERANCE, rtol=0)
