"""Two levers for the lexical stage's latency at scale, measured on `lexical_scale`'s synthetic index.

docs/lexical.md names the cost at 10M passages: queries with near-universal terms, whose postings a
k = 200 top-k walks whole. This measures, on the same Zipf corpus and queries as `lexical_scale`:
- **repeats as duplicate clauses** instead of `boost_query` (a boosted clause is not a plain term
  scorer, which could keep tantivy from skipping blocks): same scores, is it faster?
- **an idf floor**: leave out query terms found in more than a share of the passages (0.9, 0.5) unless
  nothing else is left. Faster, but how much of the top 10 changes?

    .venv/bin/python -m benchmarks.lexical_levers --size 1000000   # builds once (about 2 min), reused
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tantivy

from benchmarks import common as bench
from benchmarks.lexical_scale import FILTERS, VOCABULARY, build
from patentrank.index.filters import SearchFilter
from patentrank.index.lexical import LexicalIndex
from patentrank.index.lexical_query import SCHEMA, filter_clauses, text_query

Hits = list[tuple[float, tuple[int, int]]]


def duplicate_clauses(counts: Counter[str]) -> tantivy.Query:
    clauses = [
        (tantivy.Occur.Should, tantivy.Query.term_query(SCHEMA, "tokens", t, index_option="freq"))
        for t, repeats in counts.items()
        for _ in range(repeats)
    ]
    return tantivy.Query.boolean_query(clauses)


def timed(
    searcher: tantivy.Searcher, queries: list[Counter[str]], make: Callable[[Counter[str]], tantivy.Query],
    flt: SearchFilter | None,
) -> tuple[float, float, list[Hits]]:  # fmt: skip
    latencies, results = [], []
    for counts in queries:
        start = time.perf_counter()
        query = make(counts)
        if flt is not None:
            query = tantivy.Query.boolean_query([(tantivy.Occur.Must, query), *filter_clauses(flt)])
        hits = searcher.search(query, 200, count=False).hits
        latencies.append((time.perf_counter() - start) * 1000)
        results.append([(score, (a.segment_ord, a.doc)) for score, a in hits])
    return float(np.percentile(latencies, 50)), float(np.percentile(latencies, 95)), results


def top10_overlap(reference: list[Hits], other: list[Hits]) -> float:
    shares = [
        len({d for _, d in a[:10]} & {d for _, d in b[:10]}) / max(1, min(10, len(a)))
        for a, b in zip(reference, other, strict=True)
    ]
    return float(np.mean(shares))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"patentrank-lexical-{args.size}"
    if not (folder / "built").is_file():
        print(f"building {args.size:,} passages in {folder} (once) ...")
        build(folder, args.size, seed=0)
        (folder / "built").write_text("lexical_scale seed 0\n")
    searcher = LexicalIndex(folder)._index.searcher()
    total = int(searcher.num_docs)
    rng = np.random.default_rng(1)  # lexical_scale's queries
    draws = [(rng.zipf(1.15, 8) - 1) % VOCABULARY for _ in range(args.queries)]
    queries = [Counter(f"w{int(r)}" for r in draw) for draw in draws]

    def floor(share: float) -> Callable[[Counter[str]], tantivy.Query]:
        def make(counts: Counter[str]) -> tantivy.Query:
            common = {t for t in counts if searcher.doc_freq("tokens", t) > share * total}
            kept = Counter({t: r for t, r in counts.items() if t not in common})
            return text_query(kept or counts)

        return make

    print(f"CPU {bench.cpu_model()}, ISA {' '.join(bench.cpu_isa_flags())}; {total:,} passages, k = 200")
    print("| filter | query | p50 ms | p95 ms | same scores / top-10 overlap with today's |")
    print("|---|---|---|---|---|")
    for name in ("none", "IPC H01M (~20%)"):
        flt = FILTERS[name]
        p50, p95, reference = timed(searcher, queries, text_query, flt)
        print(f"| {name} | today's (repeats boosted) | {p50:.1f} | {p95:.1f} | - |")
        p50, p95, dup = timed(searcher, queries, duplicate_clauses, flt)
        same = all(
            np.allclose([s for s, _ in a], [s for s, _ in b], rtol=1e-4)
            for a, b in zip(reference, dup, strict=True)
        )
        print(f"| {name} | repeats as duplicate clauses | {p50:.1f} | {p95:.1f} | same scores: {same} |")
        for share in (0.9, 0.5):
            p50, p95, floored = timed(searcher, queries, floor(share), flt)
            overlap = top10_overlap(reference, floored)
            label = f"idf floor: terms in > {share:.0%} left out"
            print(f"| {name} | {label} | {p50:.1f} | {p95:.1f} | {overlap:.3f} |")


if __name__ == "__main__":
    main()
