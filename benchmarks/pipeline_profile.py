"""Where a search spends its time beyond the retrieval stages: cProfile over `SearchPipeline.search`.

Opens an index folder a benchmark kept (e.g. `search_bench --keep`), takes titles of stored patents as
queries, runs a few to warm up, then profiles the rest and prints the pipeline and stage p50 and the
functions by cumulative time. Lexical mode needs no embedder. Run one benchmark at a time:

    flock /tmp/patentrank-bench.lock .venv/bin/python -m benchmarks.pipeline_profile \\
        --index benchmarks/results/search-work/1000000/index
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import sqlite3
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `patentrank` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common as bench


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--index", required=True, help="an index folder (its docs.sqlite gives the queries)")
    parser.add_argument("--queries", type=int, default=50, help="profiled queries (after 10 warm-up ones)")
    parser.add_argument("--highlight", action="store_true", help="highlight the shown passages")
    parser.add_argument("--top", type=int, default=28, help="functions to print")
    args = parser.parse_args()
    from patentrank.index.patent_index import PatentIndex
    from patentrank.search import SearchPipeline, SearchRequest

    print(f"CPU {bench.cpu_model()}, ISA {' '.join(bench.cpu_isa_flags())}")
    with sqlite3.connect(f"file:{Path(args.index) / 'docs.sqlite'}?mode=ro", uri=True) as conn:
        titles = [r[0] for r in conn.execute("SELECT title FROM patents LIMIT 5000")]
    queries = random.Random(1).sample(titles, min(len(titles), args.queries + 10))
    index = PatentIndex(args.index, embedder=None)
    pipeline = SearchPipeline(index, embed_query=None)

    def search(text: str) -> float:
        request = SearchRequest(text, mode="lexical", rerank=False, highlight=args.highlight)
        return float(pipeline.search(request).stages["lexical"]["ms"])

    for text in queries[:10]:
        search(text)
    profile, total, stage = cProfile.Profile(), [], []
    for text in queries[10:]:
        start = time.perf_counter()
        profile.enable()
        stage.append(search(text))
        profile.disable()
        total.append((time.perf_counter() - start) * 1000)
    index.close()
    print(
        f"{len(total)} queries: pipeline p50 {statistics.median(total):.1f} ms, lexical stage p50 "
        f"{statistics.median(stage):.1f} ms (times include cProfile's overhead)"
    )
    pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
