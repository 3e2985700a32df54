"""Hardware-aware `auto` precision: the policy under forced CPU detection, explicit dtypes, mixed bf16."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from patentrank import Reranker
from patentrank.config import Settings
from patentrank.errors import ModelLoadError
from patentrank.models import precision
from patentrank.models.loading import resolve_dtype, resolve_precision
from patentrank.models.precision import Bf16Linear, plan_precision

CPU = torch.device("cpu")
QUERY = "image denoising with a convolutional network"


def documents(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    words = ["image", "noise", "encoder", "battery", "gearbox", "network", "filter", "pixel",
             "separator", "electrode", "signal"]  # fmt: skip
    return [" ".join(rng.choice(words, int(rng.integers(5, 60)))) for _ in range(count)]


@pytest.fixture
def avx2_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend the CPU has no native bf16, as on the AVX2-only AMD EPYC machines of this workplace."""
    monkeypatch.setattr(precision, "cpu_bf16_isa", lambda: None)


@pytest.fixture
def amx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_bf16_isa", lambda: "AMX-BF16")


def test_auto_on_a_cpu_without_native_bf16_is_float32(avx2_only: None) -> None:
    plan = plan_precision("auto", CPU)
    assert (plan.load_dtype, plan.mixed_bf16, plan.name) == (torch.float32, False, "float32")
    assert "no native bf16" in plan.reason
    assert resolve_dtype(None, CPU) == torch.float32


def test_auto_on_a_native_bf16_cpu_is_mixed_bf16_and_says_why(amx: None) -> None:
    plan = resolve_precision("auto", CPU)
    assert (plan.load_dtype, plan.mixed_bf16, plan.name) == (torch.float32, True, "bfloat16-mixed")
    assert plan.describe() == {"dtype": "bfloat16-mixed", "dtype_reason": plan.reason}
    assert "AMX-BF16" in plan.reason


def test_auto_on_cuda_is_bfloat16(avx2_only: None) -> None:
    assert plan_precision("auto", torch.device("cuda")).load_dtype == torch.bfloat16


@pytest.mark.parametrize("forced", ["avx2_only", "amx"])
def test_an_explicit_dtype_always_wins(forced: str, request: pytest.FixtureRequest) -> None:
    request.getfixturevalue(forced)
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        plan = resolve_precision(name, CPU)
        assert (plan.load_dtype, plan.mixed_bf16, plan.name) == (dtype, False, name)
        assert "explicitly" in plan.reason
    assert resolve_precision(torch.float32, CPU).mixed_bf16 is False


def test_bfloat16_without_native_bf16_is_allowed_but_warned(
    avx2_only: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="patentrank"):
        assert resolve_precision("bfloat16-mixed", CPU).mixed_bf16
    assert "no native bfloat16" in caplog.text


def test_bad_dtypes_are_refused_with_the_choices() -> None:
    with pytest.raises(ModelLoadError, match="auto, float32, bfloat16, bfloat16-mixed, float16, int8"):
        resolve_precision("int4", CPU)
    with pytest.raises(ModelLoadError, match="float16 on CPU"):
        resolve_precision("float16", CPU)
    with pytest.raises(ModelLoadError, match="int8 runs on CPU"):
        resolve_precision("int8", torch.device("cuda"))
    assert Settings(dtype="int8").dtype == "int8"
    with pytest.raises(ValueError):
        Settings(dtype="int4")


def test_detection_agrees_with_the_cpu_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PATENTRANK_CPU_BF16", raising=False)  # conftest turns detection off elsewhere
    flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").is_file() else set()
    if not flags:
        pytest.skip("no /proc/cpuinfo")
    if not flags & {"avx512_bf16", "amx_bf16"}:
        assert precision.cpu_bf16_isa() is None
    else:
        assert precision.cpu_bf16_isa() in ("AVX512-BF16", "AMX-BF16")
    monkeypatch.setenv("PATENTRANK_CPU_BF16", "0")
    assert precision.cpu_bf16_isa() is None
    assert plan_precision("auto", CPU).name == "float32"


def test_mixed_reranker_keeps_the_residual_stream_norms_and_head_in_float32(tiny_reranker_path: Path) -> None:
    fp32 = Reranker(str(tiny_reranker_path), device="cpu", dtype="float32")
    mixed = Reranker(str(tiny_reranker_path), device="cpu", dtype="bfloat16-mixed")
    backbone = mixed.scorer.backbone
    linears = [m for m in backbone.modules() if isinstance(m, Bf16Linear)]
    assert len(linears) == 7 * len(backbone.layers)  # q, k, v, o, gate, up, down of every layer
    assert all(m.weight.dtype == torch.bfloat16 for m in linears)
    assert not any(isinstance(m, torch.nn.Linear) for m in backbone.modules())
    assert backbone.embed_tokens.weight.dtype == backbone.norm.weight.dtype == torch.float32
    assert mixed.scorer.head.dtype == torch.float32
    docs = documents(16, seed=3)
    exact, got = np.array(fp32.score(QUERY, docs)), np.array(mixed.score(QUERY, docs))
    assert np.ptp(exact) > 0.1, "the tiny model must spread its scores for this test to mean anything"
    assert np.max(np.abs(exact - got)) <= 0.01
    assert spearmanr(exact, got).statistic >= 0.99
    assert not np.array_equal(exact, got), "bf16 matmuls must actually run (else the test proves nothing)"


def test_auto_reranker_reports_its_choice(tiny_reranker_path: Path, amx: None) -> None:
    from patentrank.engine import Engine
    from patentrank.runtime import Runtime

    reranker = Reranker(str(tiny_reranker_path), device="cpu")
    assert reranker.precision.name == "bfloat16-mixed"
    runtime = Runtime.serving(Engine(reranker=reranker, settings=Settings(cache_size=0)))
    health = runtime.health()["models"]["reranker"]  # what GET /health shows
    assert health["dtype"] == "bfloat16-mixed" and "AMX-BF16" in health["dtype_reason"]


def test_auto_reranker_without_native_bf16_runs_float32(tiny_reranker_path: Path, avx2_only: None) -> None:
    reranker = Reranker(str(tiny_reranker_path), device="cpu")
    assert reranker.precision.name == "float32"
    assert not any(isinstance(m, Bf16Linear) for m in reranker.scorer.backbone.modules())


def test_auto_embedder_on_native_bf16_is_bf16_close_to_float32(tiny_embedder_path: Path, amx: None) -> None:
    from patentrank.models.embedder import Embedder

    exact = Embedder(str(tiny_embedder_path), device="cpu", dtype="float32")
    auto = Embedder(str(tiny_embedder_path), device="cpu")
    assert auto.precision.name == "bfloat16" and "AMX-BF16" in auto.precision.reason
    assert next(auto.st.parameters()).dtype == torch.bfloat16
    texts = documents(12, seed=5)
    cosine = np.sum(exact.embed_documents(texts) * auto.embed_documents(texts), axis=1)
    assert cosine.mean() >= 0.999 and cosine.min() >= 0.995
    assert cosine.min() < 1 - 1e-7, "bf16 matmuls must actually run"


@pytest.mark.parametrize("forced", ["avx2_only", "amx"])
def test_int8_embedder_plan_is_the_onnx_backend(forced: str, request: pytest.FixtureRequest) -> None:
    request.getfixturevalue(forced)
    plan = precision.embedder_plan(resolve_precision("int8", CPU), CPU)
    assert (plan.name, plan.backend, plan.load_dtype) == ("int8", "onnx-int8", torch.float32)
    assert "ONNX Runtime" in plan.describe()["dtype_reason"]


def test_auto_embedder_on_an_avx2_only_cpu_is_float32_never_int8(avx2_only: None) -> None:
    """An AVX2-only CPU (no AVX-512 BF16/AMX, as this workplace's AMD EPYC): auto stays float32 for both
    models (bf16 would be emulated, ~8x slower); int8 is opt-in, never chosen by auto."""
    plan = precision.embedder_plan(resolve_precision("auto", CPU), CPU)
    assert (plan.name, plan.backend, plan.mixed_bf16, plan.load_dtype) == (
        "float32",
        "torch",
        False,
        torch.float32,
    )
    assert "no native bf16" in plan.reason


def test_cpu_flags_without_bf16_make_auto_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    """The detection itself, fed the flags of an AVX2-only CPU (torch's checks answer from them)."""
    monkeypatch.delenv("PATENTRANK_CPU_BF16", raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert precision.cpu_bf16_isa() is None
    assert precision.embedder_plan(plan_precision("auto", CPU), CPU).name == "float32"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert precision.embedder_plan(plan_precision("auto", CPU), CPU).name == "bfloat16"


def test_int8_on_a_cpu_without_vnni_says_float32_is_likely_faster(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """INT8 stays what was asked for, but on an AVX2-only CPU (measured 0.7x float32) /health and the log
    say so; a VNNI CPU (measured 2.0x) gets no caveat."""
    from patentrank.models import onnx_export

    monkeypatch.setattr(onnx_export, "cpu_has_vnni", lambda: False)
    with caplog.at_level(logging.WARNING, logger="patentrank"):
        plan = plan_precision("int8", CPU)
    assert plan.name == "int8" and plan.backend == "onnx-int8"
    assert "no VNNI" in plan.reason and "--dtype float32 is likely faster" in plan.reason
    assert any("no VNNI" in r.getMessage() for r in caplog.records)
    monkeypatch.setattr(onnx_export, "cpu_has_vnni", lambda: True)
    assert "VNNI" not in plan_precision("int8", CPU).reason
