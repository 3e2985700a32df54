"""INT8 reranking on CPU through ONNX Runtime (opt-in: `PATENTRANK_DTYPE=int8`, `--dtype int8`).

The torch model is exported once to an ONNX graph that takes right-padded token ids and each row's
last real position and returns l_yes - l_no there (the same float32 yes-minus-no head as
`YesNoScorer`; no 151,669-way output layer), then quantized with ONNX Runtime's dynamic INT8
quantization and cached next to the model folder, keyed by a hash (onnx_export.py: the recipe, the
cache and what stays float32). Embeddings, norms, attention softmax and the head stay float32.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

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
from patentrank.models.scorer import plan_batches

# Bump when the graph or the quantization recipe changes: old exports are then not reused.
EXPORT_VERSION = 1
MODEL_FILE = "reranker-int8.onnx"


def export_options() -> dict[str, Any]:
    """The reranker's export options on this CPU (the cache key; unchanged since the first INT8 export)."""
    return {"version": EXPORT_VERSION, **quantization_options()}


def export_reranker(source: Path, out: Path, yes_id: int, no_id: int, options: dict[str, Any]) -> None:
    """Export `source` (a causal-LM reranker folder) to `out/MODEL_FILE`, INT8-quantized (see module doc)."""
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, local_files_only=True).eval()
    wrapper = LastYesNo(lm, yes_id, no_id).eval()
    ids = torch.tensor([[yes_id, no_id, yes_id, no_id], [no_id, yes_id, 0, 0]], dtype=torch.long)
    last = torch.tensor([3, 1], dtype=torch.long)
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("seq", min=2, max=int(getattr(lm.config, "max_position_embeddings", 32768)))
    export_quantized(
        wrapper, (ids, last), ["input_ids", "last_index"], ["logit"],
        {"input_ids": {0: batch, 1: seq}, "last_index": {0: batch}}, out, MODEL_FILE, source, options,
    )  # fmt: skip


class LastYesNo(torch.nn.Module):
    """The exported graph: backbone, then l_yes - l_no at each row's last real position (float32)."""

    def __init__(self, lm: Any, yes_id: int, no_id: int) -> None:
        super().__init__()
        self.backbone = lm.get_decoder()
        weight = lm.get_output_embeddings().weight
        self.register_buffer("head", (weight[yes_id].float() - weight[no_id].float()).detach().clone())

    def forward(self, input_ids: torch.Tensor, last_index: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, use_cache=False).last_hidden_state
        picked = hidden[torch.arange(hidden.shape[0]), last_index].float()
        # Multiply-and-sum, not MatMul: the quantizer then leaves this float32 head alone.
        return (picked * self.head).sum(-1)


class OnnxYesNoScorer:
    """`YesNoScorer.logits` on an INT8 ONNX Runtime session: same batches, padding and last position."""

    def __init__(
        self, session: Any, pad_id: int, batch_tokens: int, max_batch_size: int, folder: Path, exported: bool
    ) -> None:
        self.session = session
        self.pad_id = pad_id
        self.batch_tokens = batch_tokens
        self.max_batch_size = max_batch_size
        self.folder = folder
        self.exported = exported  # False when the cached export was reused

    def logits(
        self, sequences: Sequence[Sequence[int]], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Raw l_yes - l_no per sequence, in input order, as float32."""
        lengths = [len(s) for s in sequences]
        out = np.empty(len(sequences), dtype=np.float32)
        for batch in plan_batches(lengths, self.batch_tokens, self.max_batch_size):
            width = max(lengths[i] for i in batch)
            ids = np.full((len(batch), max(width, 2)), self.pad_id, dtype=np.int64)
            for row, index in enumerate(batch):
                ids[row, : lengths[index]] = sequences[index]
            last = np.asarray([lengths[i] - 1 for i in batch], dtype=np.int64)
            out[batch] = self.session.run(["logit"], {"input_ids": ids, "last_index": last})[0]
            if progress is not None:
                progress(len(batch))
        return out

    def logits_shared_prefix(
        self,
        prefix: Sequence[int],
        tails: Sequence[Sequence[int]],
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """`logits` of prefix + tail: the exported graph takes whole sequences (no KV-cache input)."""
        head = list(prefix)
        return self.logits([head + list(tail) for tail in tails], progress)


def load_int8_scorer(
    model: str, yes_id: int, no_id: int, pad_id: int, batch_tokens: int, max_batch_size: int,
    num_threads: int | None = None,
) -> OnnxYesNoScorer:  # fmt: skip
    """The INT8 scorer of `model`, exporting it first unless a matching export is cached."""
    require_runtime()
    source = source_folder(model)
    options = export_options()
    folder = cache_folder(source, weights_key(source, options))

    def export(out: Path) -> None:
        export_reranker(source, out, yes_id, no_id, options)

    exported = cached_export(model, "reranker", folder, MODEL_FILE, export)
    session = open_session(folder / MODEL_FILE, num_threads)
    return OnnxYesNoScorer(session, pad_id, batch_tokens, max_batch_size, folder, exported)
