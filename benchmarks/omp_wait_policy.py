"""Model latency when the CPU is shared: OpenMP's wait policy and torch's thread count, side by side.

A server on a small machine shares its cores: with an indexer, with another request's model call, with
other programs. OpenMP's default (ACTIVE) has idle worker threads spin for a while before sleeping; when
another process holds a core, a parallel region waits for a thread that is not running, and short model
calls (one query's embedding) take many times longer. PASSIVE makes waiting threads sleep at once.

For each policy (ACTIVE, the default, and PASSIVE), torch thread count (all logical CPUs, and 1) and load
(idle, one busy process per logical CPU but one), a fresh process loads the embedder in float32 and
measures one-query embeddings (what a search waits for) and a batch of passages (what an ingest does).

    .venv/bin/python -m benchmarks.omp_wait_policy        # about 3 min; idle cores otherwise
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import common as bench
from patentrank.testing import me5_small_dir

SECTION = "Threads under load (OMP_WAIT_POLICY)"
BUSY = "import time\nend = time.time() + 600\nwhile time.time() < end: pass\n"


def worker(model: str, threads: int) -> dict[str, float]:
    import numpy as np
    import torch

    from patentrank.models.embedder import Embedder

    torch.set_num_threads(threads)
    embedder = Embedder(model, device="cpu", dtype="float32")
    queries = [f"lithium battery anode with a silicon carbon coating, variant {i}" for i in range(40)]
    passages = [" ".join(["一种锂离子电池硅碳负极材料及其制备方法，以纳米硅颗粒为核。"] * 4)] * 64
    embedder.embed_queries(queries[:3])  # warm-up
    latencies = []
    for query in queries:
        start = time.perf_counter()
        embedder.embed_queries([query])
        latencies.append((time.perf_counter() - start) * 1000)
    start = time.perf_counter()
    embedder.embed_documents(passages)
    batch_s = time.perf_counter() - start
    return {
        "p50": float(np.percentile(latencies, 50)),
        "p95": float(np.percentile(latencies, 95)),
        "max": float(max(latencies)),
        "passages_per_s": len(passages) / batch_s,
    }


def measure(model: str, policy: str, threads: int, busy: int) -> dict[str, float]:
    env = {**os.environ, **bench.QUIET_ENV}
    env.pop("OMP_WAIT_POLICY", None)
    if policy != "ACTIVE (default)":
        env["OMP_WAIT_POLICY"] = policy
    hogs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(busy)]
    try:
        command = [sys.executable, "-m", "benchmarks.omp_wait_policy", "--worker", model]
        done = subprocess.run(
            [*command, "--threads", str(threads)],
            env=env, cwd=bench.REPO_ROOT, capture_output=True, text=True, timeout=600, check=True,
        )  # fmt: skip
    finally:
        for hog in hogs:
            hog.kill()
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(me5_small_dir() or ""), help="embedder folder (e5-small)")
    parser.add_argument("--worker", metavar="MODEL", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="docs/benchmarks.md", help="'-' for none")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.threads)))
        return
    if not args.model or not Path(args.model).is_dir():
        sys.exit("no embedder folder: build one with ../shared/models/build-me5-small .cache/me5-small")
    cpus = os.cpu_count() or 1
    rows = []
    for busy in (0, max(cpus - 1, 1)):
        for threads in sorted({cpus, 1}, reverse=True):
            for policy in ("ACTIVE (default)", "PASSIVE"):
                result = measure(args.model, policy, threads, busy)
                load = "idle" if busy == 0 else f"{busy} busy process{'es' if busy > 1 else ''}"
                rows.append(
                    f"| {load} | {threads} | {policy} | {result['p50']:.1f} | {result['p95']:.1f} | "
                    f"{result['max']:.0f} | {result['passages_per_s']:.1f} |"
                )
                print(rows[-1], flush=True)
    body = "\n".join(
        [
            f"`python -m benchmarks.omp_wait_policy` on {bench.cpu_model()} ({cpus} logical CPUs, ISA "
            f"{' '.join(bench.cpu_isa_flags())}), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
            f"multilingual-e5-small in float32, 40 one-query embeddings (ms) and one batch of 64 Chinese "
            "passages of ~130 tokens; each row a fresh process; load = pure-Python busy loops beside it.",
            "",
            "| load | torch threads | OMP_WAIT_POLICY | query p50 ms | query p95 ms | query max ms "
            "| batch passages/s |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(body)
    if args.out != "-":
        bench.replace_markdown_section(bench.REPO_ROOT / args.out, SECTION, body)


if __name__ == "__main__":
    main()
