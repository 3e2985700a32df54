"""The cost of one 1,000-patent commit into a large index, commit after commit, stage by stage.

Takes an index folder a benchmark built from the synthetic corpus (`World(size, dim, seed)`, e.g. the
one `cluster_bench --keep` or `search_bench --keep` leaves), copies it to a scratch folder, and adds
batches of new synthetic patents through `PatentIndex.add` with the real (uncached) analyzer, timing
each commit as `search_bench` does. First `--commits` commits with the vector store's defaults (new
vectors to the recent log; a merge into the main index when more than `recent_limit` gather), then
`--before-commits` with ``recent_limit = 0``: every commit merges and rewrites the main index file,
which is what FaissStore did before the log (the same insertion and write, done at every commit).

    flock /tmp/patentrank-bench.lock .venv/bin/python -m benchmarks.commit_bench \\
        --index benchmarks/results/cluster-work/1000000/index --size 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import faiss

from benchmarks import common as bench
from benchmarks.measure import log
from benchmarks.search_ingest import Probe, commit_batch, open_index
from benchmarks.synthetic_patents import World
from benchmarks.vector_log import VectorLog


def run(args: argparse.Namespace) -> dict[str, Any]:
    from patentrank import analysis_pool

    analysis_pool.enable_parallel_analysis()  # as the patentrank commands do
    if args.parallel_min_texts is not None:
        analysis_pool.PARALLEL_MIN_TEXTS = args.parallel_min_texts
    scratch = Path(args.scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    log(f"copying {args.index} to {scratch}")
    shutil.copytree(args.index, scratch / "index")
    world = World(args.size, args.dim, args.seed)
    index = open_index(world, scratch / "index", None)
    stored = index.docstore.count_patents()
    log(f"generating the {stored:,} patents already stored, so that new ones get new ids")
    for _ in range(stored):
        world.next_patent()
    probe = Probe(index, world, VectorLog(scratch / "vectors.f32", args.dim))
    probe.install()
    store = index.vectors
    main_file = Path(store.path) / "vectors.faiss"
    rows: list[dict[str, Any]] = []
    phases = [("log", args.commits, None), ("rewrite every commit", args.before_commits, 0)]
    for phase, commits, limit in phases:
        if limit is not None:
            store.recent_limit = limit
        for n in range(commits):
            patents = [world.next_patent() for _ in range(args.patents)]
            recent_before, written_before = store.health()["recent"], main_file.stat().st_mtime_ns
            result = commit_batch(probe, patents, None)
            result.update(
                phase=phase,
                passages_in_index=store.count(),
                recent_before=recent_before,
                recent_after=store.health()["recent"],
                main_rewritten=main_file.stat().st_mtime_ns != written_before,
                main_file_bytes=main_file.stat().st_size,
                kind=store.kind,
            )
            rows.append(result)
            stages = result["stages_s"]
            log(
                f"  {phase} #{n + 1}: {result['total_s']:.2f} s (vectors {stages['vectors']:.2f} s, "
                f"analysis {stages['analysis']:.2f} s), recent {recent_before} -> {result['recent_after']}, "
                f"main rewritten: {result['main_rewritten']}"
            )
    index.close()
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "size": args.size,
        "dim": args.dim,
        "commits": rows,
        "parallel_min_texts": analysis_pool.PARALLEL_MIN_TEXTS,
        "analysis_workers": analysis_pool.analysis_workers(),
        "machine": {
            "CPU": bench.cpu_model(),
            "ISA": " ".join(bench.cpu_isa_flags()) or "unknown",
            "logical CPUs": os.cpu_count(),
            "faiss": faiss.__version__,
            "python": platform.python_version(),
        },
        "command": " ".join(["python -m benchmarks.commit_bench", *sys.argv[1:]]),
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def table(raw: dict[str, Any]) -> str:
    """One row per commit: end to end, the vector store's part, the rest, and what the log did."""
    rows = []
    for n, c in enumerate(raw["commits"], 1):
        stages = c["stages_s"]
        busy = " !" if c["others_cores"] > 0.2 else ""
        rows.append([
            n, c["phase"], f"{c['passages_in_index']:,}", f"{c['passages']:,}",
            f"**{c['total_s']:.2f} s**{busy}",
            f"{stages['vectors']:.2f} s", f"{stages['analysis']:.2f} s", f"{stages['docstore']:.2f} s",
            f"{c['recent_before']:,} -> {c['recent_after']:,}", "yes" if c["main_rewritten"] else "no",
        ])  # fmt: skip
    headers = [
        "#", "vector store", "passages after", "passages added", "`PatentIndex.add` end to end",
        "vectors", "analysis (real)", "docstore", "recent vectors before -> after", "main file rewritten",
    ]  # fmt: skip
    return bench.markdown_table(headers, rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", required=True, help="an index folder built from World(size, dim, seed)")
    p.add_argument("--size", type=int, required=True, help="the World size it was built with (passages)")
    p.add_argument("--dim", type=int, default=256, help="vector dimension it was built with")
    p.add_argument("--seed", type=int, default=0, help="World seed it was built with")
    p.add_argument("--patents", type=int, default=1000, help="patents per commit")
    p.add_argument("--commits", type=int, default=10, help="commits with the defaults (the recent log)")
    p.add_argument("--before-commits", type=int, default=4, help="commits rewriting the main index each time")
    p.add_argument(
        "--parallel-min-texts", type=int, help="batches of this many texts or more are analysed by workers"
    )
    p.add_argument("--scratch", default=str(bench.RESULTS_DIR / "commit-work"), help="copy of the index")
    p.add_argument("--keep", action="store_true", help="keep the scratch copy")
    args = p.parse_args(argv)
    if not Path(args.index, "index.json").exists():
        p.error(f"--index {args.index!r} is not an index folder (no index.json)")
    bench.quiet_environment()
    raw = run(args)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = bench.RESULTS_DIR / f"commit-{args.size}-{stamp}.json"
    out.write_text(json.dumps(raw, indent=1))
    print(table(raw))
    log(f"raw results: {out}")


if __name__ == "__main__":
    main()
