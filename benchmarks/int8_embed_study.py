"""What must stay float32 in the INT8 embedder: quantization variants of one export, cosine to torch fp32.

Run from the repository root (under `flock /tmp/patentrank-bench.lock`):
    .venv/bin/python -m benchmarks.int8_embed_study --model /tmp/models/me5-small
The model's pipeline is exported once to float32 ONNX (the graph `dtype=int8` uses:
patentrank/models/onnx_embedder.py), then quantized several ways with ONNX Runtime's dynamic INT8; each
variant embeds the same passages through `Embedder` (same tokenisation, prompt, MRL and norm) and is
compared with the torch float32 vectors: cosine per passage (mean / worst), top-10 overlap of
query -> passage retrieval, passages/s. Prints a markdown table (the caller pastes it into docs).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common as bench

# (label, reduce_range, which weight MatMuls stay float32: None, "down" or "ends")
VARIANTS = (
    ("float32 ONNX graph (no quantization)", None, None),
    ("int8, 7-bit weights (the AVX2 recipe)", True, None),
    ("int8, 8-bit weights (the VNNI recipe)", False, None),
    ("int8 7-bit, FFN down-projections float32", True, "down"),
    ("int8 7-bit, first and last layers float32", True, "ends"),
)


def excluded_nodes(graph: Any, layers: int, keep: str | None) -> list[str]:
    """Names of the weight MatMuls to keep float32, found by position: the graph lists each layer's
    projections in order (q, k, v, o, [gate,] up, down), then the next layer's."""
    weights = {i.name for i in graph.initializer}  # in graph order, as onnx_export.export_quantized sees them
    nodes = [n for n in graph.node if n.op_type == "MatMul" and any(x in weights for x in n.input)]
    per_layer = len(nodes) // layers
    if keep == "down":
        return [n.name for i, n in enumerate(nodes) if i % per_layer == per_layer - 1]
    if keep == "ends":
        return [n.name for i, n in enumerate(nodes) if i // per_layer in (0, layers - 1)]
    return []


def main(argv: list[str] | None = None) -> None:
    bench.quiet_environment()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--model", default="/tmp/models/me5-small")
    parser.add_argument("--passages", type=int, default=48)
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    args = parser.parse_args(argv)

    import numpy as np
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from patentrank.models.embedder import Embedder
    from patentrank.models.onnx_embedder import OnnxSentenceEncoder, PooledEncoder, pipeline_parts
    from patentrank.models.onnx_export import open_session

    emb = Embedder(args.model, device="cpu", dtype="float32", max_length=args.max_length)
    workload = bench.rerank_workload(emb.tokenizer, 2, args.passages // 2, 64, args.max_length - 16, seed=0)
    passages = [d for docs in workload.documents for d in docs]
    rng = np.random.default_rng(0)
    picked = rng.choice(len(passages), args.queries, replace=False)
    queries = [passages[i][: 40 + 20 * (i % 3)] for i in picked]  # a passage's opening as its query
    emb.embed_documents(passages[:1])
    start = time.perf_counter()
    reference = emb.embed_documents(passages)
    fp32_seconds = time.perf_counter() - start
    ref_queries = emb.embed_queries(queries)
    ref_top = np.argsort(-(ref_queries @ reference.T), axis=1)[:, :10]
    rows = [["torch float32 (reference)", f"{len(passages) / fp32_seconds:.2f}", "1.00x", "1.00000 / 1.00000",
             "1.00", "0"]]  # fmt: skip
    backbone, pooling = pipeline_parts(emb.st)
    layers = int(backbone.config.num_hidden_layers)
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = Path(tmp) / "fp32.onnx"
        ids = torch.tensor([[5, 6, 7, 8], [0, 0, 6, 7]])
        mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
        batch, seq = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("seq", min=2, max=8192)
        with torch.no_grad():
            torch.onnx.export(
                PooledEncoder(backbone, pooling).eval(), (ids, mask), str(fp32_path),
                input_names=["input_ids", "attention_mask"], output_names=["pooled"],
                dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
                dynamo=True, external_data=True, verbose=False,
            )  # fmt: skip
        graph = onnx.load(str(fp32_path), load_external_data=False).graph
        torch_encoder = emb.encoder
        for label, reduce_range, keep in VARIANTS:
            path = fp32_path
            excluded: list[str] = []
            if reduce_range is not None:
                excluded = excluded_nodes(graph, layers, keep)
                path = Path(tmp) / f"q{len(rows)}.onnx"
                quantize_dynamic(
                    fp32_path, path, weight_type=QuantType.QInt8, per_channel=True, reduce_range=reduce_range,
                    op_types_to_quantize=["MatMul"], nodes_to_exclude=excluded, use_external_data_format=True,
                )  # fmt: skip
            emb.encoder = OnnxSentenceEncoder(emb.st, open_session(path, None), path.parent, False)
            emb.embed_documents(passages[:1])
            start = time.perf_counter()
            got = emb.embed_documents(passages)
            seconds = time.perf_counter() - start
            cosine = np.sum(reference * got, axis=1)
            top = np.argsort(-(emb.embed_queries(queries) @ got.T), axis=1)[:, :10]
            overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ref_top, top, strict=True)])
            agree = f"{cosine.mean():.5f} / {cosine.min():.5f}"
            speed = f"{fp32_seconds / seconds:.2f}x"
            rate = f"{len(passages) / seconds:.2f}"
            rows.append([label, rate, speed, agree, f"{overlap:.2f}", str(len(excluded))])
            print(rows[-1])
        emb.encoder = torch_encoder
    facts = bench.machine_facts(torch.get_num_threads())
    headers = ["variant", "passages/s", "vs torch fp32", "cosine to fp32 mean / worst",
               f"top-10 overlap ({args.queries} queries)", "float32 weight MatMuls"]  # fmt: skip
    sizes = f"{len(passages)} passages of 64-{args.max_length - 16} tokens"
    print(f"\nModel {args.model}, {sizes}, {layers} layers.")
    print("Machine: " + ", ".join(f"{k} {v}" for k, v in facts.items()) + ".\n")
    print(bench.markdown_table(headers, rows))


if __name__ == "__main__":
    main()
