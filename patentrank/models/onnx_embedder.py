"""INT8 embedding on CPU through ONNX Runtime (opt-in: `PATENTRANK_DTYPE=int8`, `--dtype int8`).

The embedder's sentence-transformers pipeline (Transformer -> Pooling [-> Normalize]) is exported once,
from the torch model `Embedder` has just loaded, to an ONNX graph that takes the token ids and attention
mask that `SentenceTransformer.preprocess` makes and returns the pooled, *un-normalised* float32 vector
(last-token for Qwen3-Embedding, mean for e5 and most others, or CLS), then quantized and cached next to
the model folder, keyed by a hash of the weights and these options (onnx_export.py). Tokenisation,
prompts, truncation, batching, MRL truncation and the L2 norm stay those of `Embedder`: the graph only
replaces the transformer forward and pooling, so an index built in float32 accepts the int8 embedder.
The torch weights are dropped once the session is open.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from patentrank.errors import ModelLoadError
from patentrank.models.onnx_export import (
    cache_folder,
    cached_export,
    export_quantized,
    open_session,
    quantization_options,
    require_runtime,
    source_folder,
    weights_key,
)

# Bump when the graph or the quantization recipe changes: old exports are then not reused.
EXPORT_VERSION = 1
MODEL_FILE = "embedder-int8.onnx"
POOLINGS = ("mean", "lasttoken", "cls")


def pipeline_parts(st: Any) -> tuple[torch.nn.Module, str]:
    """The backbone and pooling mode of `st`, or a ModelLoadError for pipelines the graph does not cover."""
    modules = list(st.children())
    kinds = [type(m).__name__ for m in modules]
    pooling = modules[1] if len(modules) > 1 else None
    mode = getattr(pooling, "pooling_mode", None)
    supported = (
        kinds[:2] == ["Transformer", "Pooling"]
        and all(k == "Normalize" for k in kinds[2:])
        and mode in POOLINGS
        and getattr(pooling, "include_prompt", True)
    )
    if not supported:
        raise ModelLoadError(
            f"dtype int8 covers Transformer -> Pooling ({', '.join(POOLINGS)}) [-> Normalize] embedders; "
            f"this one is {' -> '.join(kinds)} (pooling {mode!r}): use --dtype float32"
        )
    return modules[0].model, str(mode)


def export_options(pooling: str) -> dict[str, Any]:
    """The embedder's export options on this CPU: part of the cache key, apart from the reranker's.

    The FFN down-projections stay float32: their input (after GELU/SiLU-gating) has the long one-sided
    tail that per-tensor u8 activation quantization rounds worst; measured on multilingual-e5-small
    (AVX2), keeping them lifts the cosine to float32 from 0.9964 to 0.9992 (docs/benchmarks.md).
    """
    return {"version": EXPORT_VERSION, "graph": "embedder", "pooling": pooling, **quantization_options(),
            "float32": ["ffn-down"]}  # fmt: skip


class PooledEncoder(torch.nn.Module):
    """The exported graph: backbone, then the pooling of sentence-transformers' `Pooling` (float32)."""

    def __init__(self, backbone: torch.nn.Module, pooling: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.float()
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "mean":
            return (hidden * mask).sum(1) / torch.clamp(mask.sum(1), min=1e-9)
        positions = torch.arange(hidden.shape[1], dtype=hidden.dtype, device=hidden.device)
        real = attention_mask.to(hidden.dtype) * (positions + 1)  # 1-based positions of real tokens, else 0
        if self.pooling == "lasttoken":  # the last real token, whichever side the padding is on
            index = real.amax(1).long() - 1
        else:  # cls: the first real token
            index = torch.where(real > 0, real, float(hidden.shape[1] + 1)).amin(1).long() - 1
        return (hidden * mask)[torch.arange(hidden.shape[0], device=hidden.device), index]


def export_embedder(backbone: torch.nn.Module, pooling: str, source: Path, out: Path, options: dict) -> None:
    """Export `backbone` + `pooling` to `out/MODEL_FILE`, INT8-quantized (see module doc)."""
    wrapper = PooledEncoder(backbone, pooling).eval()
    ids = torch.tensor([[5, 6, 7, 8], [0, 0, 6, 7]], dtype=torch.long)
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]], dtype=torch.long)
    config = getattr(backbone, "config", None)
    limit = int(getattr(config, "max_position_embeddings", 8192) or 8192)
    down = (getattr(config, "intermediate_size", None), getattr(config, "hidden_size", None))
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("seq", min=2, max=limit)
    shapes = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}
    names = ["input_ids", "attention_mask"]
    export_quantized(
        wrapper, (ids, mask), names, ["pooled"], shapes, out, MODEL_FILE, source, options,
        keep_float32=lambda weight: "ffn-down" in options["float32"] and weight == down,
    )  # fmt: skip


class OnnxSentenceEncoder:
    """`SentenceTransformer.encode` as `Embedder` calls it, on an INT8 ONNX Runtime session: the same
    `preprocess` (prompt, tokenizer, padding side, truncation), then the exported graph."""

    def __init__(self, st: Any, session: Any, folder: Path, exported: bool) -> None:
        self.st = st
        self.session = session
        self.folder = folder
        self.exported = exported  # False when the cached export was reused

    def encode(
        self, texts: Sequence[str], *, prompt: str | None = None, batch_size: int = 32, **_: Any
    ) -> np.ndarray:
        """Pooled float32 vectors, not normalised (`Embedder` truncates to `dim`, then normalises)."""
        out: list[np.ndarray] = []
        for start in range(0, len(texts), batch_size):
            features = self.st.preprocess(list(texts[start : start + batch_size]), prompt=prompt or None)
            feed = {n: np.asarray(features[n], dtype=np.int64) for n in ("input_ids", "attention_mask")}
            out.append(self.session.run(["pooled"], feed)[0])
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def load_int8_encoder(model: str, st: Any, num_threads: int | None = None) -> OnnxSentenceEncoder:
    """The INT8 encoder of `st` (loaded from `model`), exporting it first unless a matching export is
    cached; the torch weights of `st` are released afterwards (its tokenizer and modules stay)."""
    require_runtime()
    backbone, pooling = pipeline_parts(st)
    source = source_folder(model)
    options = export_options(pooling)
    folder = cache_folder(source, weights_key(source, options))

    def export(out: Path) -> None:
        export_embedder(backbone, pooling, source, out, options)

    exported = cached_export(model, "embedder", folder, MODEL_FILE, export)
    session = open_session(folder / MODEL_FILE, num_threads)
    backbone.to("meta")  # the graph holds the weights now; an accidental torch forward fails loudly
    return OnnxSentenceEncoder(st, session, folder, exported)
