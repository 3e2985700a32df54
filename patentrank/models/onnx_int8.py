"""INT8 reranking on CPU through ONNX Runtime (opt-in: `PATENTRANK_DTYPE=int8`, `--dtype int8`).

The torch model is exported once to an ONNX graph that takes right-padded token ids and each row's
last real position and returns l_yes - l_no there (the same float32 yes-minus-no head as
`YesNoScorer`; no 151,669-way output layer), then quantized with ONNX Runtime's dynamic INT8
quantization: MatMul weights int8 per output channel, activations quantized per batch at run time
(u8 x s8, which MLAS runs with VNNI where the CPU has it and with AVX2 elsewhere, Intel or AMD; without
VNNI the weights use 7 bits, as ONNX Runtime advises against AVX2's int16 saturation).
Embeddings, norms, attention softmax and the head stay float32.

The exported model is cached in `<model folder>.onnx-int8/<key>/` next to the source folder, or, where
that is read-only or the model came from the hub cache, under `$PATENTRANK_CACHE_DIR/onnx-int8/` (default
`~/.cache/patentrank/onnx-int8/`). `<key>` hashes the source weights, config and the export options, so
changed weights are exported again and a second load reuses the export.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from patentrank.errors import ModelLoadError
from patentrank.models.scorer import plan_batches

# Bump when the graph or the quantization recipe changes: old exports are then not reused.
EXPORT_VERSION = 1
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
MODEL_FILE = "reranker-int8.onnx"
log = logging.getLogger("patentrank")


def require_runtime() -> Any:
    """The onnxruntime module, or a ModelLoadError that says how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise ModelLoadError(
            "dtype int8 runs on ONNX Runtime, which is not installed: pip install 'patentrank[int8]' "
            "(onnxruntime, onnx, onnxscript), or use --dtype auto"
        ) from exc
    return onnxruntime


def cpu_has_vnni() -> bool:
    """AVX-512 VNNI or AVX-VNNI: u8 x s8 dot products without the int16 saturation of AVX2's vpmaddubsw."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as info:
            flags = next((line for line in info if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def export_options() -> dict[str, Any]:
    """The quantization recipe for this CPU (part of the cache key, so machines sharing a folder differ).

    Without VNNI, MLAS multiplies u8 x s8 with AVX2's vpmaddubsw, whose int16 sums can saturate;
    ONNX Runtime's advice for such CPUs is 7-bit weights (`reduce_range`), used here.
    """
    return {"version": EXPORT_VERSION, "weights": "int8-per-channel", "activations": "uint8-dynamic",
            "reduce_range": not cpu_has_vnni(), "quantized_ops": ["MatMul"]}  # fmt: skip


def weights_key(folder: Path, options: dict[str, Any] | None = None) -> str:
    """A hash of the folder's config, weight files (their bytes) and the export options.

    Example:
        >>> import tempfile; d = Path(tempfile.mkdtemp()); _ = (d / "config.json").write_text("{}")
        >>> a = weights_key(d); _ = (d / "model.safetensors").write_bytes(b"w"); a == weights_key(d)
        False
    """
    digest = hashlib.sha256(json.dumps(options or export_options(), sort_keys=True).encode())
    files = [folder / "config.json", *sorted(p for p in folder.iterdir() if p.name.endswith(WEIGHT_SUFFIXES))]
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()[:20]


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def cache_folder(source: Path, key: str) -> Path:
    """Where the export of `source` with `key` lives: next to the source when writable, else the cache dir."""
    beside = source.parent / f"{source.name}.onnx-int8"
    in_hub_cache = "snapshots" in source.parts  # never write into huggingface_hub's cache layout
    if not in_hub_cache and ((beside / key).is_dir() or _writable(beside)):
        return beside / key
    root = Path(os.environ.get("PATENTRANK_CACHE_DIR", Path.home() / ".cache" / "patentrank")).expanduser()
    return root / "onnx-int8" / f"{source.name}-{key}"


def source_folder(model: str) -> Path:
    """The local folder of `model` (a folder, or a hub id already in the local cache)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model, local_files_only=True))


def export_reranker(source: Path, out: Path, yes_id: int, no_id: int, options: dict[str, Any]) -> None:
    """Export `source` (a causal-LM reranker folder) to `out/MODEL_FILE`, INT8-quantized (see module doc)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, local_files_only=True).eval()
    wrapper = LastYesNo(lm, yes_id, no_id).eval()
    ids = torch.tensor([[yes_id, no_id, yes_id, no_id], [no_id, yes_id, 0, 0]], dtype=torch.long)
    last = torch.tensor([3, 1], dtype=torch.long)
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("seq", min=2, max=int(getattr(lm.config, "max_position_embeddings", 32768)))
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        fp32_path = Path(tmp) / "fp32.onnx"
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(
                wrapper, (ids, last), str(fp32_path), input_names=["input_ids", "last_index"],
                output_names=["logit"],
                dynamic_shapes={"input_ids": {0: batch, 1: seq}, "last_index": {0: batch}},
                dynamo=True, external_data=True, verbose=False,
            )  # fmt: skip
        del lm, wrapper
        staged = Path(tmp) / "staged"
        staged.mkdir()
        quantize_dynamic(
            fp32_path, staged / MODEL_FILE, weight_type=QuantType.QInt8, per_channel=True,
            reduce_range=bool(options["reduce_range"]), op_types_to_quantize=["MatMul"],
            use_external_data_format=True,
        )  # fmt: skip
        (staged / "export.json").write_text(json.dumps({"source": str(source), **options}, indent=1))
        shutil.rmtree(out, ignore_errors=True)
        staged.rename(out)  # whole folder at once: a crash mid-export leaves no half-written cache


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
    ort = require_runtime()
    source = source_folder(model)
    options = export_options()
    folder = cache_folder(source, weights_key(source, options))
    exported = False
    if not (folder / MODEL_FILE).is_file():
        started = time.perf_counter()
        log.warning("exporting %s to INT8 ONNX in %s (once; minutes for a 0.6B model)", model, folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            export_reranker(source, folder, yes_id, no_id, options)
        except ModelLoadError:
            raise
        except Exception as exc:  # any exporter failure reaches the user as one line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"could not export reranker {model!r} to INT8 ONNX: {first}") from exc
        log.warning("INT8 export done in %.0f s", time.perf_counter() - started)
        exported = True
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if num_threads:
        options.intra_op_num_threads = num_threads
    session = ort.InferenceSession(str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"])
    return OnnxYesNoScorer(session, pad_id, batch_tokens, max_batch_size, folder, exported)
