"""Cluster mode against the embedded index: the same synthetic patents and vectors ingested into
`PatentIndex` (SQLite + tantivy + FAISS) and into `ClusterIndex` on a `milvus-lite server`, side by
side in one process: ingest rate, latency per mode and filter, dense recall@100 against exact search,
lexical top-k overlap, RSS of both processes and the server's disk.

Run from the repository root (one benchmark at a time, under the shared lock):
    flock /tmp/patentrank-bench.lock .venv/bin/python -m benchmarks.cluster_bench --sizes 10000
    flock /tmp/patentrank-bench.lock .venv/bin/python -m benchmarks.cluster_bench --sizes 100000,1000000

Embedding is excluded (synthetic clustered vectors, `benchmarks/search_ingest.py`); both indexes get
one embedding call per batch of 64 patents, drawn in the same order, so the vectors are identical
(checked: an order-free digest of each side's vector log is reported). The embedded index is queried
before the Milvus server starts (its background work would slow FAISS down). On 2 cores the cluster
side is slow (seconds per filtered search at 100k): `--cluster-queries`, `--cluster-modes`,
`--ingest-budget-s` and `--ingest-only` bound it. Milvus Lite is a test stand-in, not a production Milvus.
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

import numpy as np

from benchmarks import common as bench
from benchmarks.analysis_cache import memoized_jieba
from benchmarks.cluster_bench_report import (
    SECTION,
    ServerWatch,
    folder_bytes,
    machine_facts,
    rate_windows,
    render,
    rows_digest,
)
from benchmarks.measure import OthersCpu, StageClock, log, progress_bar
from benchmarks.search_ingest import SyntheticEmbedder, fresh_probe, ingest
from benchmarks.search_queries import MODES, RETRIEVE_K, recall, selectivity
from benchmarks.synthetic_patents import FILTERS, World, make_queries
from benchmarks.vector_log import VectorLog

BATCH = 64  # patents per add() batch, both sides (the CLI's with an embedder)
CLUSTER_STAGES = ("chunking", "analysis", "embedding", "rows", "milvus upsert", "milvus delete",
                  "milvus version queries", StageClock.HOOKS)  # fmt: skip


class PassageOrderEmbedder(SyntheticEmbedder):
    """`SyntheticEmbedder` for `ClusterIndex`, which embeds in chunking order: the vectors are a function of
    (patent id, ordinal), so both indexes get identical vectors whatever order each embeds in."""

    def __init__(self, world: World) -> None:
        super().__init__(world, {})
        self.chunked: list[Any] = []  # this batch's passages in chunking order

    def embed_documents(self, texts: Any) -> np.ndarray:
        batch, self.chunked = self.chunked, []
        assert [p.text for p in batch] == list(texts), "ClusterIndex embeds passages in chunking order"
        return self.world.vectors([(p.patent_id, p.ordinal) for p in batch])


def cluster_ingest(
    world: World, uri: str, log_path: Path, memo: bool, args: argparse.Namespace, watch: ServerWatch
) -> tuple:
    """`ClusterIndex.add` end to end (batches of 64 patents), each stage timed inside that one run; every
    row's id, vector and filter fields go to a VectorLog (the ground truth for its recall)."""
    from patentrank.index.cluster import index as cluster_module
    from patentrank.index.cluster.index import ClusterIndex

    embedder = PassageOrderEmbedder(world)
    dense = {"index_type": args.milvus_index, "metric_type": "IP", "params": json.loads(args.milvus_build)}
    search = {"metric_type": "IP", "params": json.loads(args.milvus_search)}
    index = ClusterIndex(uri, embedder=embedder, prefix="bench", timeout_s=600, dense_index=dense,
                         search_params=search)  # fmt: skip
    vector_log, clock, seen = VectorLog(log_path, world.dim), StageClock(), {"passages": 0, "chars": 0}

    def chunked(_: tuple, passages: list[Any]) -> None:
        seen["passages"] += len(passages)
        seen["chars"] += sum(len(p.text) for p in passages)
        embedder.chunked += passages

    def rows_made(call: tuple, _: None) -> None:  # _write_version(version, patents, passages, digests, rows)
        rows = call[4]
        fields = {p.id: p.fields() for p in call[1]}
        vectors = np.array([r["vector"] for r in rows], np.float32)
        vector_log.append([r["id"] for r in rows], vectors, [fields[r["patent_id"]] for r in rows])

    clock.wrap(index, "passages_for", "chunking", chunked)
    clock.wrap(cluster_module, "analyze_batch", "analysis")
    clock.wrap(embedder, "embed_documents", "embedding")
    clock.wrap(index, "_passage_rows", "rows")
    clock.wrap(index, "_write_version", "rows", rows_made)  # its upserts are timed on their own
    clock.wrap(index, "_upsert", "milvus upsert")
    clock.wrap(index, "_delete_keys", "milvus delete")
    clock.wrap(index, "_versions", "milvus version queries")
    calls: dict[str, int] = {}  # Milvus calls by the connection's op name
    original_call = index.connection.call

    def counted(op: str, fn: Any) -> Any:
        calls[op] = calls.get(op, 0) + 1
        return original_call(op, fn)

    index.connection.call = counted  # type: ignore[method-assign]
    bar = progress_bar(world.size, "cluster ingest")
    generated_before, curve, stopped, start = world.generate_s, [(0, 0.0)], [], time.perf_counter()
    limit = args.server_rss_limit_gib * 2**30

    def patents() -> Any:  # the corpus, until --ingest-budget-s or --server-rss-limit-gib is reached
        for patent in world.patents(lambda: seen["passages"]):
            if args.ingest_budget_s and time.perf_counter() - start > args.ingest_budget_s:
                stopped.append(f"the ingest time budget ({args.ingest_budget_s:.0f} s)")
            elif limit and watch.peak_bytes > limit:
                stopped.append(f"the server RSS limit ({args.server_rss_limit_gib} GiB)")
            if stopped:
                return
            yield patent

    def progress(_: int) -> None:
        bar.update(seen["passages"] - bar.n)
        curve.append((seen["passages"], time.perf_counter() - start))

    try:
        with memoized_jieba(memo), bench.RssSampler(0.05) as rss, OthersCpu() as others:
            start = time.perf_counter()
            report = index.add(patents(), batch_size=BATCH, progress=progress)
            total = time.perf_counter() - start
    finally:
        bar.close()
    stages = {s: clock.seconds(s) for s in CLUSTER_STAGES}
    stages["generation"] = world.generate_s - generated_before
    stages["ClusterIndex own work"] = max(0.0, total - sum(stages.values()))
    clock.undo()
    index.connection.call = original_call  # type: ignore[method-assign]
    vector_log.finish()
    stats = {"passages": seen["passages"], "patents": report.added, "chars": seen["chars"], "total_s": total,
             "stages_s": stages, "memo_jieba": memo, "rss_peak_bytes": rss.peak_bytes,
             "rss_delta_bytes": rss.delta_bytes, "others_cores": others.cores,
             "milvus_calls": dict(calls), "batches": -(-report.added // BATCH), "stopped_by": stopped[:1],
             "rate_windows": rate_windows(curve)}  # fmt: skip
    return index, vector_log, stats


def flush(index: Any) -> float:
    """Seal the passages' segments (a real server does it in the background); returns seconds."""
    start = time.perf_counter()
    name = index.names["passages"]
    index.connection.call("flush", lambda c: c.flush(name, timeout=3600))
    return time.perf_counter() - start


def index_state(index: Any) -> dict[str, Any]:
    """What Milvus says about the passages' vector index (indexed rows, pending rows, state)."""
    name = index.names["passages"]
    try:
        described = index.connection.call("describe index", lambda c: c.describe_index(name, "vector"))
    except Exception as exc:  # older servers name the index differently: report, never fail
        return {"error": str(exc)}
    keys = ("index_type", "total_rows", "indexed_rows", "pending_index_rows", "state")
    return {k: described.get(k) for k in keys if k in described}


def lexical_overlap(embedded: Any, cluster: Any, queries: list[Any]) -> dict[str, Any]:
    """Mean share of the embedded index's lexical top-10 / top-100 that the cluster index also returns
    (passages compared by patent id and ordinal, since the two number them differently)."""
    out: dict[str, Any] = {}
    for name in FILTERS:
        shares: dict[int, list[float]] = {10: [], 100: []}
        for q in queries:
            flt = None if name == "none" else q.filter(name)
            tops = []
            for idx in (embedded, cluster):
                ids = [pid for pid, _ in idx.lexical.search(q.text, 100, flt)]
                keys = {p.passage_id: (p.patent_id, p.ordinal) for p in idx.docstore.get_passages(ids)}
                tops.append([keys[i] for i in ids if i in keys])
            for k in shares:
                a, b = tops[0][:k], tops[1][:k]
                if a:
                    shares[k].append(len(set(a) & set(b)) / len(a))
        out[name] = {f"top{k}": float(np.mean(v)) if v else float("nan") for k, v in shares.items()}
        log(f"  lexical overlap {name:7s} {out[name]}")
    return out


def latency(
    index: Any, queries: list[Any], n: int, budget: float, warmup: int = 2, modes: tuple[str, ...] = MODES
) -> dict[str, dict[str, Any]]:
    """p50/p95 ms per call and filter over the first `n` queries (a pass stops after `budget` s once 5
    ran), after 2 warm-up queries from the end of the list: `SearchPipeline.search` (rerank and
    highlight off, query vector looked up) per mode, and the raw engines with k = 200."""
    from patentrank.search import SearchPipeline, SearchRequest

    vector_of = {q.text: q.vector for q in queries}
    pipeline = SearchPipeline(index, embed_query=lambda text, _instruction: vector_of[text])
    flt_of = lambda q, f: None if f == "none" else q.filter(f)  # noqa: E731
    calls: dict[tuple[str, str], Any] = {
        ("pipeline", m): lambda q, f, m=m: pipeline.search(
            SearchRequest(q.text, mode=m, filter=q.filter(f), rerank=False, highlight=False)
        )
        for m in MODES
        if m in modes
    }
    calls["stores", "lexical engine"] = lambda q, f: index.lexical.search(q.text, RETRIEVE_K, flt_of(q, f))
    calls["stores", "vector store"] = lambda q, f: index.vectors.search(
        q.vector[None], RETRIEVE_K, flt_of(q, f)
    )
    out: dict[str, dict[str, Any]] = {"pipeline": {}, "stores": {}}
    for (kind, name), call in calls.items():
        for flt in FILTERS:
            for q in queries[len(queries) - warmup :]:
                call(q, flt)
            samples, began = [], time.perf_counter()
            with OthersCpu() as others:
                for q in queries[:n]:
                    if len(samples) >= 5 and time.perf_counter() - began > budget:
                        break
                    start = time.perf_counter()
                    call(q, flt)
                    samples.append((time.perf_counter() - start) * 1000)
            p50, p95 = np.percentile(samples, [50, 95])
            r = {"p50": float(p50), "p95": float(p95), "n": len(samples), "mean": float(np.mean(samples)),
                 "others_cores": others.cores}  # fmt: skip
            out[kind][f"{name}|{flt}"] = r
            log(f"  {name:14s} {flt:7s} {r['p50']:9.2f} / {r['p95']:9.2f} ms ({r['n']} q)")
    return out


def bound_cost(lexical: Any, queries: list[Any]) -> dict[str, Any]:
    """`best_possible_score` (the fusion bound: document frequencies read from one BM25 probe search,
    `cluster/term_stats.py`) with its cache cleared before each query, as for a query whose terms are new."""
    from patentrank.text import analyze

    samples, terms = [], []
    for q in queries:
        tokens = analyze(q.text)
        lexical.statistics._cache.clear()
        start = time.perf_counter()
        lexical.best_possible_score(tokens)
        samples.append((time.perf_counter() - start) * 1000)
        terms.append(len(set(tokens)))
    p50, p95 = np.percentile(samples, [50, 95])
    out = {"p50": float(p50), "p95": float(p95), "n": len(samples), "terms_mean": float(np.mean(terms)),
           "ms_per_term": float(np.sum(samples) / np.sum(terms))}  # fmt: skip
    log(f"  fusion bound, cold df cache: {out}")
    return out


def measure(index: Any, vlog: VectorLog, queries: list[Any], n: int, args: argparse.Namespace) -> dict:
    with bench.RssSampler(0.05) as rss:
        modes = tuple(args.cluster_modes.split(",")) if hasattr(index.lexical, "statistics") else MODES
        out: dict[str, Any] = latency(index, queries, n, args.pass_budget, args.warmup, modes)
    out["rss_queries"] = rss.peak_bytes
    out["recall"] = recall(index, vlog, queries[: args.recall_queries])
    if hasattr(index.lexical, "statistics") and args.bound_queries:
        out["bound"] = bound_cost(index.lexical, queries[: args.bound_queries])
    return out


def run_size(size: int, args: argparse.Namespace) -> dict[str, Any]:
    """Both sides at one size (or only those in --sides), one after the other in this process: the
    embedded index is built and queried before the Milvus server starts, then the cluster side."""
    from patentrank.analysis_pool import enable_parallel_analysis
    from patentrank.server.testing import MilvusLiteServer

    enable_parallel_analysis()  # as the patentrank commands do; a memoized jieba stays in-process
    work = bench.RESULTS_DIR / "cluster-work" / str(size)
    shutil.rmtree(work, ignore_errors=True)
    started, memo, sides = time.perf_counter(), size > args.real_analysis_max, args.sides.split(",")
    result: dict[str, Any] = {"size": size, "dim": args.dim, "memo_jieba": memo, "sides": sides}
    logs: dict[str, VectorLog] = {}
    world = World(size, args.dim, args.seed)
    embedded = cluster = server = None
    if "embedded" in sides:
        log(f"== {size:,} passages, {args.dim}-d ({'jieba memoized' if memo else 'real analysis'}): embedded")
        probe = fresh_probe(world, work / "index", work / "embedded.f32", None)
        result["embedded_ingest"] = ingest(probe, memo)
        probe.clock.undo()
        probe.vector_log.finish()
        embedded, logs["embedded"] = probe.index, probe.vector_log
        log(f"  embedded: {result['embedded_ingest']}")
    queries = make_queries(world, args.queries) if embedded is not None else []
    if embedded is not None and not args.ingest_only:  # before the server starts: its CPU is not ours
        log("== queries: embedded")
        result["embedded"] = measure(embedded, logs["embedded"], queries, args.queries, args)
        result["embedded"]["stats"] = embedded.stats()
    if "cluster" in sides:
        server = MilvusLiteServer(work / "milvus").start()
        watch = ServerWatch(server.process.pid)
    try:
        if server is not None:
            log("== cluster (milvus-lite server)")
            cworld = World(size, args.dim, args.seed) if embedded is not None else world
            cluster, logs["cluster"], result["cluster_ingest"] = cluster_ingest(
                cworld, server.uri, work / "cluster.f32", memo, args, watch
            )
            result["cluster_ingest"]["server_rss_after_ingest"] = watch.status("VmRSS")
            result["cluster_ingest"]["flush_s"] = flush(cluster)
            result["cluster_ingest"]["vector_index"] = index_state(cluster)
            log(f"  cluster: {result['cluster_ingest']}")
        result["vector_digests"] = {side: rows_digest(work / f"{side}.f32", args.dim) for side in logs}
        queries = queries or make_queries(world, args.queries)
        result["selectivity"] = selectivity(next(iter(logs.values())), queries)
        if cluster is not None and not args.ingest_only:
            log("== queries: cluster")
            result["cluster"] = measure(cluster, logs["cluster"], queries, args.cluster_queries, args)
            result["cluster"]["stats"] = cluster.stats()
        if embedded is not None and cluster is not None and not args.ingest_only:
            result["lexical_overlap"] = lexical_overlap(embedded, cluster, queries[: args.recall_queries])
        if cluster is not None:
            cluster.close()
    finally:
        if server is not None:
            result["server"] = watch.stop()
            server.stop()
    if embedded is not None:
        embedded.close()
    for vlog in logs.values():
        vlog.close()
    result["disk_bytes"] = {"embedded": folder_bytes(work / "index"), "milvus": folder_bytes(work / "milvus")}
    result["peak_rss_bytes"] = bench.process_peak_rss_bytes()
    result["elapsed_s"] = time.perf_counter() - started
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    log(f"  {size:,} done in {result['elapsed_s']:.0f} s")
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000,1000000", help="comma-separated passage counts")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--queries", type=int, default=100, help="queries per latency/recall pass")
    p.add_argument("--sides", default="embedded,cluster", help="which indexes to build and query")
    p.add_argument("--cluster-queries", type=int, default=20, help="queries per latency pass, cluster side")
    p.add_argument("--recall-queries", type=int, default=100, help="queries of the recall and overlap passes")
    p.add_argument("--cluster-modes", default="lexical,dense,hybrid", help="pipeline modes, cluster side")
    p.add_argument("--ingest-only", action="store_true", help="build and measure ingest only, no queries")
    p.add_argument("--warmup", type=int, default=2, help="warm-up queries per latency pass")
    p.add_argument("--bound-queries", type=int, default=5, help="queries timing the cold fusion bound")
    p.add_argument("--ingest-budget-s", type=float, default=0, help="stop the cluster ingest after this")
    p.add_argument(
        "--server-rss-limit-gib", type=float, default=0, help="or when the server's RSS passes this"
    )
    p.add_argument("--pass-budget", type=float, default=30.0, help="a latency pass stops after this many s")
    p.add_argument("--real-analysis-max", type=int, default=100_000, help="larger sizes memoize jieba")
    p.add_argument("--milvus-index", default="HNSW", help="ClusterIndex dense index_type")
    p.add_argument(
        "--milvus-build", default='{"M": 32, "efConstruction": 200}', help="its build params (JSON)"
    )
    p.add_argument("--milvus-search", default='{"ef": 256}', help="its search params (JSON)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", action="store_true", help="keep the index folders in benchmarks/results")
    p.add_argument("--out", default="docs/benchmarks-store.md", help="markdown file to update; '-' for none")
    p.add_argument(
        "--render", default="", metavar="JSON", help="measure nothing: report an earlier raw result"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    bench.quiet_environment()
    args = parse_args(argv)
    if args.render:  # several raw files (e.g. 100k both sides, 1M cluster only) report as one
        runs = [json.loads(Path(p).read_text(encoding="utf-8")) for p in args.render.split(",")]
        results = sorted((r for run in runs for r in run["results"]), key=lambda r: r["size"])
        merged = {**runs[-1], "results": results,
                  "runs": [{k: run.get(k) for k in ("command", "measured_at", "elapsed_s", "load_before",
                                                    "load_after")} for run in runs]}  # fmt: skip
        write_section(merged, args.out)
        return
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    command = "flock /tmp/patentrank-bench.lock .venv/bin/python -m benchmarks.cluster_bench " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    bench.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    raw_path = (
        bench.RESULTS_DIR / f"cluster-{'-'.join(map(str, sizes))}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    start = time.perf_counter()
    raw = {"facts": machine_facts(), "args": vars(args), "command": command, "results": [], "load_before":
           Path("/proc/loadavg").read_text().split()[:3]}  # fmt: skip
    for size in sizes:  # each size in a fresh process, so its peak RSS is its own
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            raw["results"].append(pool.submit(run_size, size, args).result())
        raw["load_after"] = Path("/proc/loadavg").read_text().split()[:3]
        raw["elapsed_s"] = time.perf_counter() - start
        raw["measured_at"] = f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
        raw_path.write_text(json.dumps(raw, indent=1, default=str), encoding="utf-8")
        log(f"raw results: {raw_path}")
        write_section(raw, args.out)  # after every size, so a failure at 1M keeps what 100k measured


def write_section(raw: dict[str, Any], out: str) -> None:
    section = render(raw)
    print(section, flush=True)
    if out != "-":
        bench.replace_markdown_section(bench.REPO_ROOT / out, SECTION, section, "# Vector store benchmark")
        log(f"wrote the section {SECTION!r} of {out}")


if __name__ == "__main__":
    main()
