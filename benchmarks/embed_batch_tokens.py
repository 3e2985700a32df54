"""The embedder's padded tokens per forward pass on CPU: `embed_documents` time against the token budget.

Large batches keep a GPU busy; on a CPU a batch of 32 passages of ~500 tokens spills the attention
scores and FFN activations out of cache. This sweeps the budget (`Embedder(batch_tokens=...)`) for each
dtype on the same mixed-length passages as `embed_bench` (64-496 tokens), one process, one warm-up
passage per configuration, and writes the "Embedder batch size on CPU" section of docs/benchmarks.md.
The default it informs is `embedder.CPU_BATCH_TOKENS`.

    .venv/bin/python -m benchmarks.embed_batch_tokens       # about 10 min; run embed_bench once first
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks import common as bench
from patentrank.testing import me5_small_dir

BUDGETS = (16384, 4096, 2048, 1024)
SECTION = "Embedder batch size on CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=bench.RESULTS_DIR / "embed-run" / "spec.json",
                        help="embed_bench's workload (its passages)")  # fmt: skip
    qwen = bench.RESULTS_DIR / "models" / "qwen3-embedding-0.6b-seed0"  # embed_bench builds it
    parser.add_argument("--qwen", type=Path, default=qwen)
    parser.add_argument("--dtypes", default="float32,auto,int8")
    parser.add_argument("--out", default="docs/benchmarks.md", help="'-' for none")
    args = parser.parse_args()
    import torch

    from patentrank.models.embedder import CPU_BATCH_TOKENS, Embedder

    spec = json.loads(args.spec.read_text())
    models = {"Qwen3-Embedding 0.6B shape (random weights)": (args.qwen, 12)}
    if me5_small_dir() is not None:
        models["multilingual-e5-small (real weights)"] = (me5_small_dir(), 48)
    rows = []
    for label, (folder, count) in models.items():
        passages = spec["passages"][:count]
        for dtype in args.dtypes.split(","):
            seconds = {}
            for budget in BUDGETS:
                embedder = Embedder(str(folder), device="cpu", dtype=dtype, max_length=spec["max_length"],
                                    batch_tokens=budget)  # fmt: skip
                embedder.embed_documents(passages[:1])
                start = time.perf_counter()
                embedder.embed_documents(passages)
                seconds[budget] = time.perf_counter() - start
                name = embedder.precision.name
                print(f"{label} {dtype} ({name}) {budget}: {seconds[budget]:.2f} s", flush=True)
                del embedder
            best = min(seconds, key=seconds.__getitem__)
            cells = " | ".join(f"{seconds[b]:.2f}" + (" **best**" if b == best else "") for b in BUDGETS)
            speedup = seconds[16384] / seconds[CPU_BATCH_TOKENS]
            rows.append(f"| {label} | {dtype} | {count} | {cells} | {speedup:.2f}x |")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    budgets = " | ".join(f"{b} tokens" for b in BUDGETS)
    body = "\n".join(
        [
            f"`python -m benchmarks.embed_batch_tokens`, {when}, on {bench.cpu_model()} (ISA "
            f"{' '.join(bench.cpu_isa_flags())}), {torch.get_num_threads()} torch threads: seconds for one "
            "`embed_documents` call over embed_bench's mixed zh/en passages of 64-496 tokens, by padded "
            "tokens per forward pass (`batch_tokens`; 16384 was the CPU default).",
            "",
            f"| model | dtype | passages | {budgets} | default ({CPU_BATCH_TOKENS}) vs 16384 |",
            "|---|---|---|" + "---|" * len(BUDGETS) + "---|",
            *rows,
        ]
    )
    print(body)
    if args.out != "-":
        bench.replace_markdown_section(bench.REPO_ROOT / args.out, SECTION, body)


if __name__ == "__main__":
    main()
