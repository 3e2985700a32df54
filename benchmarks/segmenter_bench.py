"""The analyzer's segmenter: jieba against jieba-rs (`patentrank.segmenter.RustJieba`) on the same text.

Prints, for the Han runs of the real collections in ../shared/data (when present) and of synthetic
patent passages: how many runs give identical (word, start, end) sequences, and the time of each
segmenter; then `analyze` over the synthetic passages with each; then `analysis_pool.analyze_batch`
with jieba-rs on 1 and 2 worker processes. Run one benchmark at a time:

    flock /tmp/patentrank-bench.lock .venv/bin/python -m benchmarks.segmenter_bench
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `patentrank` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common as bench
from benchmarks.measure import OthersCpu

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def han_runs(texts: list[str]) -> list[str]:
    """The Han runs `patentrank.text.analyze` gives the segmenter, in order."""
    from patentrank import text

    run = re.compile(text._RUN.pattern)
    return [m.group() for t in texts for m in run.finditer(t) if m.lastgroup == "han"]


def collection_texts(limit_per_file: int = 4000) -> list[str]:
    """Text of the two collections with Chinese in ../shared/data (corpus and dev queries); [] if absent."""
    texts = []
    for name in ("wasteheat_zh_en_title2abs", "xling_zh2en_chanemo"):
        for file in ("corpus.jsonl", "queries.dev.jsonl"):
            path = DATA / name / file
            if not path.exists():
                continue
            with path.open(encoding="utf-8") as lines:
                for n, line in enumerate(lines):
                    if n >= limit_per_file:
                        break
                    row = json.loads(line)
                    texts.append(" ".join(v for v in row.values() if isinstance(v, str)))
    return texts


def synthetic_passages(patents: int) -> list[str]:
    from benchmarks.synthetic_patents import World
    from patentrank.chunking import DEFAULT_MAX_TOKENS, approx_tokens, patent_passages

    world = World(30_000, 8, 0)
    return [
        p.text
        for _ in range(patents)
        for p in patent_passages(world.next_patent(), approx_tokens, DEFAULT_MAX_TOKENS)
    ]


def timed(function: object, items: list[str]) -> tuple[list[object], float]:
    start = time.perf_counter()
    out = [list(function(x)) for x in items]  # type: ignore[operator]
    return out, time.perf_counter() - start


def compare_runs(name: str, runs: list[str]) -> list[object]:
    from patentrank.segmenter import RustJieba, reference_jieba

    jieba, fast = reference_jieba(), RustJieba()
    expected, jieba_s = timed(lambda r: jieba.tokenize(r, mode="search"), runs)
    got, fast_s = timed(lambda r: map(tuple, fast.tokenize(r, mode="search")), runs)
    same = sum(a == b for a, b in zip(expected, got, strict=True))
    chars = sum(map(len, runs))
    return [name, f"{len(runs):,}", f"{chars / 1e6:.2f} M", f"{same:,}", f"{jieba_s:.2f} s",
            f"{fast_s:.2f} s", f"{jieba_s / fast_s:.1f}x"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patents", type=int, default=1000, help="synthetic patents (~5.4 passages each)")
    parser.add_argument("--pool-copies", type=int, default=3, help="the passages repeated for the pool pass")
    args = parser.parse_args()
    bench.quiet_environment()
    from patentrank import analysis_pool, text
    from patentrank.segmenter import RustJieba, reference_jieba

    print(f"CPU {bench.cpu_model()}, ISA {' '.join(bench.cpu_isa_flags())}, logical CPUs {os.cpu_count()}")
    passages = synthetic_passages(args.patents)
    rows = []
    with OthersCpu() as others:
        real = han_runs(collection_texts())
        if real:
            rows.append(compare_runs("real collections (wasteheat, xling: corpus + dev queries)", real))
        rows.append(compare_runs(f"synthetic passages ({len(passages):,})", han_runs(passages)))
    print(bench.markdown_table(["Han runs of", "runs", "chars", "identical", "jieba", "jieba-rs", "speed-up"],
                               rows))  # fmt: skip
    chars = sum(map(len, passages))
    rows = []
    for name, segmenter in (("jieba", reference_jieba()), ("jieba-rs", RustJieba())):
        text._jieba_tokenizer = segmenter
        text.analyze(passages[0])
        _, seconds = timed(lambda p: text.analyze(p), passages)
        rows.append([name, f"{len(passages):,}", f"{seconds:.2f} s", f"{chars / seconds / 1e3:,.0f} k",
                     f"{len(passages) / seconds:,.0f}"])  # fmt: skip
    print(bench.markdown_table(["analyze with", "passages", "time", "chars/s", "passages/s"], rows))
    batch, rows = passages * args.pool_copies, []
    analysis_pool.enable_parallel_analysis()
    text._jieba_tokenizer = None  # the product's choice (jieba-rs when installed)
    for workers in ("1", "2"):
        os.environ["PATENTRANK_ANALYSIS_WORKERS"] = workers
        analysis_pool.analyze_batch(batch[:600])  # starts the pool, if any
        start = time.perf_counter()
        if workers == "2":  # forced onto the pool, to show what it would cost
            pool = analysis_pool._get_pool(2)
            size = -(-len(batch) // 8)
            chunks = [batch[i : i + size] for i in range(0, len(batch), size)]
            list(pool.map(analysis_pool._analyze_chunk, chunks))
        else:
            analysis_pool.analyze_batch(batch)
        seconds = time.perf_counter() - start
        rows.append([workers, f"{len(batch):,}", f"{seconds:.2f} s", f"{len(batch) / seconds:,.0f}"])
    print(bench.markdown_table(["jieba-rs, worker processes", "texts", "time", "texts/s"], rows))
    print(f"other processes' CPU during the comparison: {others.cores:.2f} cores")


if __name__ == "__main__":
    main()
