"""The lexical engine alone at sizes the full search benchmark cannot reach here (10M passages).

`benchmarks/search_bench.py` measures the whole `PatentIndex` (chunking, analysis, SQLite, vectors);
at 10M passages that takes 5-7 hours on 2 cores, longer than a working session. This benchmark builds
only the tantivy `LexicalIndex` from synthetic pre-analysed passages (tokens drawn from a Zipf law
over 300k terms, 20-120 tokens, so the commonest terms are in almost every passage: harsher than the
search benchmark's corpus, whose lexical p50 at 1M was 8.5 ms against 9.7 ms here), then times
`search_tokens` with k = 200 (the pipeline's retrieve_k) without a filter and with filters of about
20-30%, 10% and below 1% (as the product runs it, its best 32 hits rescored with exact lengths, and
with tantivy's one-byte lengths alone), and one commit of 10,000 passages.

    .venv/bin/python -m benchmarks.lexical_scale --size 10000000   # about 20 min, 1.2 GB of disk
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import time
from pathlib import Path

import numpy as np

from benchmarks import common as bench
from patentrank.index.filters import PassageFields, SearchFilter
from patentrank.index.lexical import LexicalIndex

VOCABULARY = 300_000
CODES = ["H01M4/525", "H01M10/0525", "H04L9/32", "G06N3/08", "G06T7/11", "F01K23/10", "A61B5/00",
         "B60L7/10", "F28D21/00", "H02J7/00"]  # fmt: skip
FILTERS = {
    "none": None,
    "priority before 2000 (~29%)": SearchFilter(before="2000-01-01"),
    "IPC H01M (~20%)": SearchFilter(code_prefixes=["H01M"]),
    "language en + jurisdiction US (~8%)": SearchFilter(languages=["en"], jurisdictions=["US"]),
    "date + IPC + jurisdiction (<1%)": SearchFilter(
        before="1991-01-01", code_prefixes=["G06N"], jurisdictions=["CN"]
    ),
}  # fmt: skip


def build(path: Path, size: int, seed: int, batch: int = 20_000) -> float:
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(VOCABULARY)])
    shutil.rmtree(path, ignore_errors=True)
    index = LexicalIndex(path, writer_memory_mb=256)
    start = time.perf_counter()
    for first in range(0, size, batch):
        n = min(batch, size - first)
        lengths = rng.integers(20, 120, n)
        tokens = vocab[(rng.zipf(1.15, int(lengths.sum())) - 1) % VOCABULARY]
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        ids = np.arange(first, first + n)
        fields = [
            PassageFields(f"P{i // 10}", "zh" if i % 3 else "en", ("CN", "US", "EP", "JP")[i % 4],
                          (CODES[i % 10], CODES[(i * 7) % 10]), 19900101 + (i % 35) * 10000)
            for i in ids.tolist()
        ]  # fmt: skip
        index.add_tokens(ids, [tokens[offsets[i] : offsets[i + 1]].tolist() for i in range(n)], fields)
        if (first // batch) % 10 == 9:
            index.commit()  # a commit every 200k passages, as a bulk load checkpoints
    index.commit()
    index.close()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", type=Path, default=None, help="where to build (default: a temp folder)")
    args = parser.parse_args()
    folder = args.folder or Path(os.environ.get("TMPDIR", "/tmp")) / f"patentrank-lexical-{args.size}"
    print(f"CPU {bench.cpu_model()}, ISA {' '.join(bench.cpu_isa_flags())}, {os.cpu_count()} logical CPUs")
    seconds = build(folder, args.size, args.seed)
    print(
        f"built {args.size:,} passages in {seconds:.0f} s ({args.size / seconds:,.0f} /s, no analysis)"
    )
    index = LexicalIndex(folder)
    health = index.health()
    print(f"{health['passages']:,} passages in {health['segments']} segments")
    rng = np.random.default_rng(args.seed + 1)
    queries = [[f"w{int(r)}" for r in (rng.zipf(1.15, 8) - 1) % VOCABULARY] for _ in range(args.queries)]
    # The product rescores its best EXACT_TOP hits with exact lengths (lexical_exact.py); the same folder
    # opened with exact_top=0 is tantivy's one-byte-length BM25 alone: both timed, query by query.
    rounded = LexicalIndex(folder, exact_top=0, read_only=True)
    print(f"| filter | p50 / p95 ms, best {index.exact_top} exact (product) | p50 / p95 ms, rounded only |")
    print("|---|---|---|")
    for name, flt in FILTERS.items():
        latencies: dict[int, list[float]] = {0: [], 1: []}
        for query in queries:
            for side, engine in enumerate((index, rounded)):
                start = time.perf_counter()
                engine.search_tokens(query, k=200, flt=flt)
                latencies[side].append((time.perf_counter() - start) * 1000)
        cells = [f"{np.percentile(v, 50):.1f} / {np.percentile(v, 95):.1f}" for v in latencies.values()]
        print(f"| {name} | {cells[0]} | {cells[1]} |")
    start = time.perf_counter()
    index.add_tokens(np.arange(args.size, args.size + 10_000), [["w1", "w2", "w3"] * 20] * 10_000)
    index.commit()
    print(f"one commit of 10,000 passages: {time.perf_counter() - start:.2f} s")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB, "
          f"disk {sum(f.stat().st_size for f in folder.iterdir()) / 2**30:.2f} GiB")  # fmt: skip


if __name__ == "__main__":
    main()
