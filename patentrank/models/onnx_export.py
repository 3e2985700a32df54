"""What the INT8 backends share: ONNX Runtime, the quantization recipe, and the export cache keyed by a hash.

A torch module is exported once with torch's dynamo exporter to a float32 ONNX graph, then quantized
with ONNX Runtime's dynamic INT8 quantization: MatMul weights int8 per output channel, activations
quantized per batch at run time (u8 x s8, which MLAS runs with VNNI where the CPU has it and with AVX2
elsewhere, Intel or AMD; without VNNI the weights use 7 bits, as ONNX Runtime advises against AVX2's
int16 saturation). Embeddings (a Gather), norms, attention softmax and what the graph computes after the
last MatMul stay float32.

The export is cached in `<model folder>.onnx-int8/<key>/` next to the source folder, or, where that is
read-only or the model came from the hub cache, under `$PATENTRANK_CACHE_DIR/onnx-int8/` (default
`~/.cache/patentrank/onnx-int8/`). `<key>` hashes the source weights, config and the export options
(which include the graph: reranker head or embedder pooling), so changed weights are exported again and
a second load reuses the export. The reranker (onnx_int8.py) and the embedder (onnx_embedder.py) use it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from patentrank.errors import ModelLoadError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
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


def quantization_options() -> dict[str, Any]:
    """The quantization recipe for this CPU (part of the cache key, so machines sharing a folder differ).

    Without VNNI, MLAS multiplies u8 x s8 with AVX2's vpmaddubsw, whose int16 sums can saturate;
    ONNX Runtime's advice for such CPUs is 7-bit weights (`reduce_range`), used here.
    """
    return {"weights": "int8-per-channel", "activations": "uint8-dynamic",
            "reduce_range": not cpu_has_vnni(), "quantized_ops": ["MatMul"]}  # fmt: skip


def weights_key(folder: Path, options: dict[str, Any]) -> str:
    """A hash of the folder's config, weight files (their bytes) and the export options.

    Example:
        >>> import tempfile; d = Path(tempfile.mkdtemp()); _ = (d / "config.json").write_text("{}")
        >>> a = weights_key(d, {}); _ = (d / "model.safetensors").write_bytes(b"w"); a == weights_key(d, {})
        False
        >>> weights_key(d, {"graph": "embedder"}) == weights_key(d, {"graph": "reranker"})
        False
    """
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
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


def export_quantized(
    module: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    input_names: list[str],
    output_names: list[str],
    dynamic_shapes: dict[str, dict[int, Any]],
    out: Path,
    model_file: str,
    source: Path,
    options: dict[str, Any],
    keep_float32: Callable[[tuple[int, ...]], bool] | None = None,
) -> None:
    """Export `module` to float32 ONNX, quantize it into `out/model_file` (every MatMul with a weight,
    less those whose weight shape (in, out) `keep_float32` is true of), and move the finished folder
    into place at once (a crash leaves no half-written cache)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        fp32_path = Path(tmp) / "fp32.onnx"
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(
                module, example, str(fp32_path), input_names=input_names, output_names=output_names,
                dynamic_shapes=dynamic_shapes, dynamo=True, external_data=True, verbose=False,
            )  # fmt: skip
        excluded: list[str] = []
        if keep_float32 is not None:
            graph = onnx.load(str(fp32_path), load_external_data=False).graph
            shapes = {i.name: tuple(i.dims) for i in graph.initializer}
            for node in graph.node:
                weight = next((shapes[x] for x in node.input if x in shapes), None)
                if node.op_type == "MatMul" and weight is not None and keep_float32(weight):
                    excluded.append(node.name)
        staged = Path(tmp) / "staged"
        staged.mkdir()
        quantize_dynamic(
            fp32_path, staged / model_file, weight_type=QuantType.QInt8, per_channel=True,
            reduce_range=bool(options["reduce_range"]), op_types_to_quantize=["MatMul"],
            nodes_to_exclude=excluded, use_external_data_format=True,
        )  # fmt: skip
        record = {"source": str(source), **options, "float32_matmuls": len(excluded)}
        (staged / "export.json").write_text(json.dumps(record, indent=1))
        shutil.rmtree(out, ignore_errors=True)
        staged.rename(out)


def cached_export(
    model: str, what: str, folder: Path, model_file: str, export: Callable[[Path], None]
) -> bool:
    """Run `export(folder)` unless `folder/model_file` exists; True when it exported. Exporter failures
    become one ModelLoadError line naming the model."""
    if (folder / model_file).is_file():
        return False
    started = time.perf_counter()
    log.warning("exporting %s %s to INT8 ONNX in %s (once; minutes for a 0.6B model)", what, model, folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        export(folder)
    except ModelLoadError:
        raise
    except Exception as exc:  # any exporter failure reaches the user as one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"could not export {what} {model!r} to INT8 ONNX: {first}") from exc
    log.warning("INT8 export done in %.0f s", time.perf_counter() - started)
    return True


def open_session(path: Path, num_threads: int | None) -> Any:
    """An ONNX Runtime CPU session on `path` with every graph optimisation."""
    ort = require_runtime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if num_threads:
        options.intra_op_num_threads = num_threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # a damaged or foreign cache entry: say where it is
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"could not open the INT8 export {path} ({first}); delete {path.parent} to export it again"
        ) from exc
