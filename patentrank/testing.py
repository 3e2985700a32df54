"""Random-weight Qwen3 models of the real architecture, for tests, benchmarks and demos without a hub."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json")

# The real 0.6B shape (reranker and embedding share it) and a tiny one with the same vocabulary.
SHAPES: dict[str, dict[str, int | float]] = {
    "0.6b": dict(
        hidden_size=1024,
        intermediate_size=3072,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
    ),
    "small": dict(
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
    ),
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
    ),
}


def find_shared_dir() -> Path | None:
    """The project's `../shared` folder (or $PATENTRANK_SHARED), if present."""
    candidates = [os.environ.get("PATENTRANK_SHARED"), Path(__file__).resolve().parents[2] / "shared"]
    for c in candidates:
        if c and (Path(c) / "tokenizers" / "qwen3" / "vocab.json").is_file():
            return Path(c)
    return None


def qwen3_tokenizer_dir() -> Path | None:
    shared = find_shared_dir()
    return shared / "tokenizers" / "qwen3" if shared else None


def build_random_qwen3(
    out_dir: str | Path,
    shape: str = "tiny",
    kind: str = "reranker",
    tokenizer_dir: str | Path | None = None,
    seed: int = 0,
) -> Path:
    """Save a randomly initialised Qwen3ForCausalLM (`kind='reranker'`) or Qwen3Model (`'embedding'`)
    of the given shape, with the real Qwen3 tokenizer, to `out_dir`; load it with `from_pretrained`.

    Example:
        >>> path = build_random_qwen3("/tmp/tiny-reranker", shape="tiny")
        >>> Reranker(str(path)).score("q", ["d"])  # doctest: +SKIP
    """
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3Model

    tok_dir = Path(tokenizer_dir) if tokenizer_dir else qwen3_tokenizer_dir()
    if tok_dir is None:
        raise FileNotFoundError("the Qwen3 tokenizer (../shared/tokenizers/qwen3) was not found")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = Qwen3Config(
        vocab_size=151669,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        attention_bias=False,
        max_position_embeddings=40960 if kind == "reranker" else 32768,
        torch_dtype="float32",
        # Tiny models get a wider init so random scores spread over (0, 1) instead of all near 0.5,
        # which makes differential tests sensitive.
        initializer_range=0.1 if shape == "tiny" else 0.02,
        **SHAPES[shape],
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config) if kind == "reranker" else Qwen3Model(config)
    if kind != "reranker":
        config.architectures = ["Qwen3Model"]
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        shutil.copy(tok_dir / name, out / name)
    return out
