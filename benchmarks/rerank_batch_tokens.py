"""The reranker's padded tokens per forward pass on CPU: `Reranker.score` time against the token budget.

The embedder's sweep (`embed_batch_tokens.py`) found 16384-token batches 1.2-2.9x slower than 1024 on
CPU; this is the same sweep for the Qwen3 reranker at the 0.6B shape (random weights, real tokenizer,
shared query prefix on): one query against 12 of embed_bench's mixed zh/en passages (64-496 tokens),
one warm-up pair per configuration. The default it informs is `reranker.CPU_BATCH_TOKENS`.

    .venv/bin/python -m benchmarks.rerank_batch_tokens --dtypes float32 --budgets 16384,8192,4096,2048,1024
    .venv/bin/python -m benchmarks.rerank_batch_tokens --dtypes auto,int8 --budgets 8192,2048,1024
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks import common as bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=bench.RESULTS_DIR / "embed-run" / "spec.json",
                        help="embed_bench's workload (its passages)")  # fmt: skip
    model = bench.RESULTS_DIR / "models" / "qwen3-reranker-0.6b-seed0"
    parser.add_argument("--model", type=Path, default=model, help="built on first use (0.6B, random)")
    parser.add_argument("--dtypes", default="float32,auto,int8")
    parser.add_argument("--budgets", default="8192,2048,1024")
    args = parser.parse_args()
    from patentrank.models.reranker import Reranker
    from patentrank.testing import build_random_qwen3

    documents = json.loads(args.spec.read_text())["passages"][:12]
    if not (args.model / "config.json").is_file():
        build_random_qwen3(args.model, "0.6b", "reranker")
    print(f"CPU {bench.cpu_model()}, ISA {' '.join(bench.cpu_isa_flags())}")
    for dtype in args.dtypes.split(","):
        for budget in (int(b) for b in args.budgets.split(",")):
            reranker = Reranker(str(args.model), device="cpu", dtype=dtype, batch_tokens=budget)
            reranker.score("lithium battery anode", documents[:1])
            start = time.perf_counter()
            reranker.score("锂电池负极材料 lithium battery anode", documents)
            seconds = time.perf_counter() - start
            print(f"| {dtype} ({reranker.precision.name}) | {budget} | {seconds:.2f} |", flush=True)
            del reranker


if __name__ == "__main__":
    main()
