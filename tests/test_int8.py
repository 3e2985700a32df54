"""INT8 reranking on ONNX Runtime: agreement with float32, same prompts, export cache, missing runtime."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from patentrank import Reranker
from patentrank.config import Settings
from patentrank.errors import ModelLoadError
from patentrank.models import onnx_export, onnx_int8
from patentrank.testing import build_random_qwen3

pytest.importorskip("onnxruntime", reason="the int8 extra (onnxruntime) is not installed")
pytest.importorskip("onnxscript", reason="the int8 extra (onnxscript, the ONNX exporter) is not installed")

QUERY = "image denoising with a convolutional network"


def documents(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    words = ["image", "noise", "encoder", "battery", "gearbox", "network", "filter", "pixel",
             "separator", "electrode", "signal"]  # fmt: skip
    zh = "一种图像去噪方法，包括卷积编码器和注意力模块。"
    return [" ".join(rng.choice(words, int(rng.integers(5, 80)))) if i % 3 else zh * int(rng.integers(1, 6))
            for i in range(count)]  # fmt: skip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> Path:
    """A private copy of the tiny reranker: these tests write export caches next to it."""
    return build_random_qwen3(tmp_path_factory.mktemp("int8") / "tiny-reranker", "tiny", "reranker")


@pytest.fixture(scope="module")
def fp32(model_dir: Path) -> Reranker:
    return Reranker(str(model_dir), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def int8(model_dir: Path) -> Reranker:
    return Reranker(str(model_dir), device="cpu", dtype="int8")


# Max |dP| allowed on the tiny model per weight recipe: 8-bit weights (CPUs with VNNI) measured 0.017,
# 7-bit weights (`reduce_range`, AVX2-only CPUs) 0.039: half the weight levels, about twice the error.
MAX_DP = {False: 0.03, True: 0.06}


@pytest.mark.parametrize("vnni", [True, False], ids=["8-bit-weights", "7-bit-weights"])
def test_int8_scores_agree_with_float32(
    fp32: Reranker, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vnni: bool
) -> None:
    """Both recipes run on every CPU, whichever this one would pick (CI machines differ). A private copy
    of the model, so that the module's `int8` fixture still makes (and tests) its own first export."""
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns("*.onnx-int8"))
    monkeypatch.setattr(onnx_export, "cpu_has_vnni", lambda: vnni)
    int8 = Reranker(str(copy), device="cpu", dtype="int8")
    reduce_range = onnx_int8.export_options()["reduce_range"]
    assert reduce_range is (not vnni)
    docs = documents(24, seed=1)
    exact, got = np.array(fp32.score(QUERY, docs)), np.array(int8.score(QUERY, docs))
    assert np.ptp(exact) > 0.1, "the tiny model must spread its scores for agreement to mean anything"
    assert spearmanr(exact, got).statistic >= 0.95
    assert np.max(np.abs(exact - got)) <= MAX_DP[reduce_range]
    assert not np.array_equal(exact, got), "int8 must actually run (else the test proves nothing)"
    # Negative control: another model's INT8 export does not agree with this float32 model.
    other = build_random_qwen3(tmp_path / "other", "tiny", "reranker", seed=7)
    stranger = np.array(Reranker(str(other), device="cpu", dtype="int8").score(QUERY, docs))
    assert spearmanr(exact, stranger).statistic < 0.9


def test_int8_uses_the_same_prompt_truncation_and_formula(fp32: Reranker, int8: Reranker) -> None:
    docs = documents(6, seed=2)
    ours = int8.encode(QUERY, docs, max_tokens_per_doc=20)
    theirs = fp32.encode(QUERY, docs, max_tokens_per_doc=20)
    assert [p.input_ids for p in ours] == [p.input_ids for p in theirs]
    out = int8.compute(QUERY, docs, max_tokens_per_doc=20)
    assert out.truncated == fp32.compute(QUERY, docs, max_tokens_per_doc=20).truncated != []
    np.testing.assert_allclose(out.scores, 1 / (1 + np.exp(-np.array(out.logits, dtype=np.float64))))
    assert int8.precision.name == "int8" and int8.share_prefix is False


def test_shared_prefix_entry_point_equals_whole_sequences(int8: Reranker) -> None:
    """The server's batcher calls logits_shared_prefix; it must score prefix + tail exactly as logits."""
    pairs = int8.encode(QUERY, documents(5, seed=3))
    shared = pairs[0].shared_len
    whole = int8.scorer.logits([p.input_ids for p in pairs])
    tails = [p.input_ids[shared:] for p in pairs]
    split = int8.scorer.logits_shared_prefix(pairs[0].input_ids[:shared], tails)
    np.testing.assert_array_equal(whole, split)


def test_second_load_reuses_the_export(
    int8: Reranker, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert int8.scorer.exported and (int8.scorer.folder / onnx_int8.MODEL_FILE).is_file()
    assert int8.scorer.folder.parent == model_dir.parent / f"{model_dir.name}.onnx-int8"

    def no_export(*args: object) -> None:
        raise AssertionError("a cached export must be reused, not exported again")

    monkeypatch.setattr(onnx_int8, "export_reranker", no_export)
    again = Reranker(str(model_dir), device="cpu", dtype="int8")
    assert not again.scorer.exported and again.scorer.folder == int8.scorer.folder
    docs = documents(4, seed=4)
    assert again.score(QUERY, docs) == int8.score(QUERY, docs)


def test_changed_weights_are_exported_again(model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "changed"
    shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns("*.onnx-int8"))
    options = onnx_int8.export_options()
    before = onnx_int8.weights_key(copy, options)
    first = Reranker(str(copy), device="cpu", dtype="int8")
    build_random_qwen3(copy, "tiny", "reranker", seed=3)  # same folder, new weights
    assert onnx_int8.weights_key(copy, options) != before
    second = Reranker(str(copy), device="cpu", dtype="int8")
    assert second.scorer.exported and second.scorer.folder != first.scorer.folder
    docs = documents(6, seed=5)
    assert second.score(QUERY, docs) != first.score(QUERY, docs)


def test_read_only_source_exports_under_the_cache_dir(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnx_export, "_writable", lambda folder: False)
    monkeypatch.setenv("PATENTRANK_CACHE_DIR", str(tmp_path / "cache"))
    key = "0" * 20  # not exported yet (an existing export beside a read-only folder is reused)
    expected = tmp_path / "cache" / "onnx-int8" / f"{model_dir.name}-{key}"
    assert onnx_int8.cache_folder(model_dir, key) == expected


def test_missing_runtime_is_a_clear_error(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    advice = r"ONNX Runtime, which is not installed: pip install 'patentrank\[int8\]'"
    with pytest.raises(ModelLoadError, match=advice):
        Reranker(str(model_dir), device="cpu", dtype="int8")


def test_health_reports_int8(int8: Reranker) -> None:
    from patentrank.engine import Engine
    from patentrank.runtime import Runtime

    runtime = Runtime.serving(Engine(reranker=int8, settings=Settings(cache_size=0)))
    health = runtime.health()["models"]["reranker"]  # what GET /health shows
    assert health["dtype"] == "int8" and "ONNX Runtime" in health["dtype_reason"]


def test_cpus_without_vnni_get_their_own_seven_bit_export(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnx_export, "cpu_has_vnni", lambda: True)
    vnni = onnx_int8.export_options()
    monkeypatch.setattr(onnx_export, "cpu_has_vnni", lambda: False)  # an AVX2-only CPU (e.g. older AMD EPYC)
    avx2 = onnx_int8.export_options()
    assert (vnni["reduce_range"], avx2["reduce_range"]) == (False, True)
    assert onnx_int8.weights_key(model_dir, vnni) != onnx_int8.weights_key(model_dir, avx2)
