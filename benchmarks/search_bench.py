"""Search benchmark: indexing rate per stage, one 1,000-patent commit, query latency per mode and filter
(p50/p95), recall@100 of the vector store, peak RSS and disk; before/after against the numpy BM25.

Run from the repository root (one benchmark at a time, under the shared lock):
    flock /tmp/patentrank-bench.lock .venv/bin/python -m benchmarks.search_bench --sizes 10000   # ~3 min
    flock /tmp/patentrank-bench.lock .venv/bin/python -m benchmarks.search_bench --sizes 100000,1000000

The system under test is the real product: `PatentIndex.add` (chunking, SQLite docstore, the lexical
engine, the vector store) on a synthetic Chinese/English patent corpus with synthetic clustered vectors
(embedding is excluded), then `SearchPipeline.search` with rerank off and a synthetic query vector
(model time excluded). At sizes up to --legacy-max the numpy BM25 of commit 19128a7
(`benchmarks/legacy_lexical.py`) is built from the same passages in the same run, as the baseline.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `patentrank` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common as bench
from benchmarks.analysis_cache import analysis_rate
from benchmarks.measure import OthersCpu, disk_usage, log
from benchmarks.search_ingest import commit_batch, ingest
from benchmarks.search_legacy import build_legacy, legacy_latency
from benchmarks.search_queries import pipeline_latency, recall, selectivity, store_latency
from benchmarks.search_report import machine_facts, render
from benchmarks.search_resume import BuildRecord, with_earlier_parts
from benchmarks.synthetic_patents import World, make_queries

COMMIT_PATENTS = 1000


def run_size(size: int, args: argparse.Namespace) -> dict[str, Any]:
    from patentrank.analysis_pool import enable_parallel_analysis

    enable_parallel_analysis()  # as the patentrank commands do; a memoized jieba stays in-process
    work = Path(args.results) / "search-work" / str(size)
    started, memo = time.perf_counter(), size > args.real_analysis_max
    record = BuildRecord.saved(work, size, args.dim, args.seed, args.hnsw_threshold) if args.resume else None
    if record is None:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        record = BuildRecord.new(work, size, args.dim, args.seed, args.hnsw_threshold)
    log(f"== {size:,} passages, {args.dim}-d: indexing ({'jieba memoized' if memo else 'real analysis'})")
    world = World(size, args.dim, args.seed)
    probe = record.open(world, args.hnsw_threshold)
    index = probe.index
    if record.data["built"] is None:
        stats = ingest(probe, memo, record, checkpoint_every=args.checkpoint_every)
        stats = with_earlier_parts(stats, record.earlier_parts())
        record.data["built"] = stats
        record.write()
    else:  # built by an earlier part; finish what a stop during the commit below left in the journal
        stats = record.data["built"]
        index.sync()
        record.fill_log_gaps(probe)
    log(f"  indexed {stats['passages']:,} passages in {stats['total_s']:.1f} s: {stats['stages_s']}")
    result: dict[str, Any] = {
        "size": size,
        "dim": args.dim,
        "ingest": stats,
        "analysis": analysis_rate(probe.sample, OthersCpu),
        "rss": {},
    }
    result["rss"]["indexing"] = stats["rss_peak_bytes"]
    legacy = None
    if size <= args.legacy_max:
        per_checkpoint = round(stats["passages"] / max(stats["patents"], 1) * args.checkpoint_every)
        with bench.RssSampler(0.05) as rss:
            legacy, result["legacy_build"] = build_legacy(index, work / "legacy-lexical", per_checkpoint)
        result["rss"]["legacy build"] = rss.peak_bytes
    if record.data["commit"] is None:
        new_patents = [world.next_patent() for _ in range(COMMIT_PATENTS)]  # made before the clock starts
        record.data["commit"] = commit_batch(probe, new_patents, legacy)
        record.committed(probe)
    result["commit"] = record.data["commit"]
    result["rss"]["1,000-patent commit"] = result["commit"]["rss_peak_bytes"]
    log(f"  one commit of {COMMIT_PATENTS:,} patents: {result['commit']}")
    probe.clock.undo()  # queries run without the timing wrappers
    probe.vector_log.finish()
    queries = make_queries(world, args.queries)
    result["selectivity"] = selectivity(probe.vector_log, queries)
    log(f"  filter selectivity: {result['selectivity']}")
    with bench.RssSampler(0.05) as rss:
        result["pipeline"] = pipeline_latency(index, queries, args.pass_budget)
        result["stores"] = store_latency(index, queries, args.pass_budget)
    result["rss"]["queries"] = rss.peak_bytes
    if legacy is not None:
        result["legacy"] = legacy_latency(legacy, index, queries, args.pass_budget)
        legacy.close()
    result["recall"] = recall(index, probe.vector_log, queries)
    result["rss"]["exact search (benchmark only)"] = result["recall"].get("exact_rss_peak_bytes", 0)
    result["stats"] = index.stats()
    index.close()
    probe.vector_log.close()
    result["disk_bytes"] = {
        **disk_usage(work / "index"),
        "benchmark: legacy BM25 (baseline)": sum(disk_usage(work / "legacy-lexical").values()),
        "benchmark: vector log (ground truth)": (work / "vectors.f32").stat().st_size,
    }
    result["peak_rss_bytes"] = bench.process_peak_rss_bytes()
    result["elapsed_s"] = time.perf_counter() - started
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    log(f"  {size:,} done in {result['elapsed_s']:.0f} s")
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000,1000000,10000000", help="comma-separated passage counts")
    parser.add_argument("--dim", type=int, default=256, help="vector dimension (1024 = Qwen3-Embedding-0.6B)")
    parser.add_argument("--queries", type=int, default=100, help="queries per latency/recall pass")
    parser.add_argument(
        "--pass-budget",
        type=float,
        default=60.0,
        help="a latency pass stops after this many seconds (once 20 are done)",
    )
    parser.add_argument(
        "--real-analysis-max",
        type=int,
        default=100_000,
        help="larger sizes memoize jieba (exact tokens) and estimate uncached analysis",
    )
    parser.add_argument(
        "--legacy-max",
        type=int,
        default=100_000,
        help="sizes up to this also build and query the numpy BM25 baseline",
    )
    parser.add_argument(
        "--hnsw-threshold",
        type=int,
        default=None,
        help="override the FaissStore's hnsw_threshold (default: the product's)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=5000,
        help="patents per commit of the build (default: PatentIndex.add's)",
    )
    parser.add_argument(
        "--results", default=str(bench.RESULTS_DIR), help="folder of the raw results and the index folders"
    )
    parser.add_argument("--keep", action="store_true", help="keep the index folders in benchmarks/results")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="go on from the last commit of a stopped build of this size (see benchmarks/search_resume.py)",
    )
    parser.add_argument("--out", default="docs/benchmarks.md", help="markdown file to update; '-' for none")
    parser.add_argument(
        "--render", default="", metavar="JSON[,JSON...]", help="measure nothing: report earlier raw results"
    )
    return parser.parse_args(argv)


def write_outputs(results: list[dict[str, Any]], args: argparse.Namespace, command: str, seconds: float,
                  raw_path: Path) -> None:  # fmt: skip
    """Raw JSON (everything measured) and the Search section of the markdown, for the results so far."""
    facts = machine_facts()
    raw = {"facts": facts, "args": vars(args), "command": command, "elapsed_s": seconds, "results": results,
           "measured_at": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}"}  # fmt: skip
    raw_path.write_text(json.dumps(raw, indent=1, default=str), encoding="utf-8")
    log(f"raw results: {raw_path}")
    if args.out != "-":
        section = render(results, facts, args, seconds, command)
        bench.replace_markdown_section(bench.REPO_ROOT / args.out, "Search", section)
        log(f"wrote the Search section of {args.out}")


def render_saved(paths: list[Path], out: str) -> None:
    """Render the report from raw JSON files of earlier runs (e.g. 100k and 1M in one run, 10M in
    another), as if they were one run: results by size, the commands joined."""
    runs = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    results = sorted((r for run in runs for r in run["results"]), key=lambda r: r["size"])
    args = argparse.Namespace(**{**runs[0]["args"], "out": out})
    commands = [
        run.get("command", "python -m benchmarks.search_bench (command not recorded)") for run in runs
    ]
    seconds = sum(run.get("elapsed_s", sum(r["elapsed_s"] for r in run["results"])) for run in runs)
    when = " and ".join(run["measured_at"] for run in runs if "measured_at" in run) or None
    facts = dict(runs[-1]["facts"])
    facts["commit"] = ", ".join(dict.fromkeys(run["facts"].get("commit", "not recorded") for run in runs))
    section = render(results, facts, args, seconds, "` and `".join(commands), when)
    bench.replace_markdown_section(bench.REPO_ROOT / out, "Search", section)
    log(f"wrote the Search section of {out} from {len(runs)} runs")


def main(argv: list[str] | None = None) -> None:
    bench.quiet_environment()
    args = parse_args(argv)
    if args.render:
        render_saved([Path(p) for p in args.render.split(",")], args.out)
        return
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    command = ".venv/bin/python -m benchmarks.search_bench " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    results_dir = Path(args.results)
    results_dir.mkdir(parents=True, exist_ok=True)
    raw_path = results_dir / f"search-{'-'.join(map(str, sizes))}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    start = time.perf_counter()
    results = []
    for size in sizes:  # each size in a fresh process, so its peak RSS is its own
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            results.append(pool.submit(run_size, size, args).result())
        # Written after every size, so a failure at 10M keeps what 100k and 1M measured.
        write_outputs(results, args, command, time.perf_counter() - start, raw_path)


if __name__ == "__main__":
    main()
