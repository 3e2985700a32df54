"""Session-wide fixtures: tiny random-weight Qwen3 models saved with the real tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests compare in-process scores with float32 references: keep `dtype=auto` float32 on every CPU
# (auto picks bf16 matmuls where the CPU has AVX-512 BF16 / AMX); test_precision forces detection itself.
os.environ.setdefault("PATENTRANK_CPU_BF16", "0")

from patentrank.testing import build_random_qwen3, find_shared_dir

SHARED = find_shared_dir()
needs_shared = pytest.mark.skipif(
    SHARED is None, reason="../shared (Qwen3 tokenizer and evaluation data) is not beside the repository"
)


def _require_shared() -> Path:
    if SHARED is None:
        pytest.skip("../shared/tokenizers/qwen3 is absent: the real Qwen3 tokenizer is needed")
    return SHARED


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require_shared()


@pytest.fixture(scope="session")
def tiny_reranker_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Qwen3ForCausalLM with the real tokenizer, built once per test session."""
    _require_shared()
    return build_random_qwen3(tmp_path_factory.mktemp("models") / "tiny-reranker", "tiny", "reranker")


@pytest.fixture(scope="session")
def tiny_embedder_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Qwen3Model (embedding layout) with the real tokenizer."""
    _require_shared()
    return build_random_qwen3(
        tmp_path_factory.mktemp("models") / "tiny-embedder", "tiny", "embedding", seed=1
    )


@pytest.fixture(scope="session")
def tiny_reranker(tiny_reranker_path: Path):
    from patentrank import Reranker

    return Reranker(str(tiny_reranker_path), device="cpu")
