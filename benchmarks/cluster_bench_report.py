"""Helpers of `benchmarks/cluster_bench.py` (the server's RSS, digests, rates) and its markdown: the
section "Cluster mode: the whole index in Milvus (issue 11)" of docs/benchmarks-store.md."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common as bench
from benchmarks.search_report import machine_facts as search_facts
from benchmarks.search_tables import busy_mark
from benchmarks.synthetic_patents import FILTER_DOC, FILTERS


class ServerWatch:
    """RSS of the milvus-lite server process (and its children), sampled every `interval_s`; VmHWM too."""

    def __init__(self, pid: int, interval_s: float = 0.5) -> None:
        self.pid, self.interval_s, self.peak_bytes = pid, interval_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def pids(self) -> list[int]:
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                with contextlib.suppress(OSError):
                    todo += [int(c) for c in task.read_text().split()]
        return found

    def status(self, key: str) -> int:
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith(key + ":"):
                        total += int(line.split()[1]) * 1024
            except (OSError, ValueError):
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self.status("VmRSS"))
            self._stop.wait(self.interval_s)

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join()
        now = self.status("VmRSS")
        return {"rss_now": now, "rss_peak": max(self.peak_bytes, now), "hwm": self.status("VmHWM"),
                "processes": len(self.pids())}  # fmt: skip


def rows_digest(path: Path, dim: int) -> str:
    """Digest of a vector log's rows that ignores their order (sum of per-row hashes mod 2**64)."""
    total, rows = 0, np.fromfile(path, np.float32).reshape(-1, dim)
    for row in rows:
        total = (total + int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest())) % 2**64
    return f"{total:016x} ({len(rows):,} rows)"


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def rate_windows(curve: list[tuple[int, float]], parts: int = 10) -> list[dict[str, float]]:
    """Wall passages/s of `add()` per tenth of the run (by passages), to show how it changes with size."""
    done = curve[-1][0]
    out, last = [], curve[0]
    for i in range(1, parts + 1):
        point = next(p for p in curve if p[0] >= done * i / parts)
        if point[0] > last[0]:
            out.append({"from": last[0], "to": point[0], "rate": (point[0] - last[0]) / (point[1] - last[1])})
            last = point
    return out


SECTION = "Cluster mode: the whole index in Milvus (issue 11)"
SIDES = (("embedded", "embedded (PatentIndex)"), ("cluster", "cluster (ClusterIndex, Milvus Lite)"))
OVERHEAD = ("generation", "embedding", "benchmark hooks")  # not the index's own work


def machine_facts() -> dict[str, str]:
    import subprocess
    from importlib.metadata import version

    facts = search_facts()
    git = ["git", "-C", str(bench.REPO_ROOT)]
    head = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "patentrank"], capture_output=True, text=True)
    changed = ", ".join(line[3:] for line in dirty.stdout.splitlines())
    facts["commit"] = head + (f" (uncommitted changes in {changed})" if changed else "")
    for package in ("pymilvus", "milvus-lite"):
        try:
            facts[package] = version(package)
        except Exception:  # not installed: say so
            facts[package] = "not installed"
    return facts


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _lat(value: dict[str, Any] | None, queries: int) -> str:
    if not value:
        return "-"
    cut = f" ({value['n']} q)" if value["n"] < queries else ""
    return f"{value['p50']:.1f} / {value['p95']:.1f}{cut}{busy_mark(value)}"


def _n(r: dict[str, Any]) -> str:
    ingest = r.get("embedded_ingest") or r["cluster_ingest"]
    return f"{ingest['passages']:,}"


def _label(r: dict[str, Any]) -> str:
    """The passages column: the count, and which kind of run it was."""
    sides = r.get("sides", ["embedded", "cluster"])
    if sides == ["embedded"]:
        return f"{_n(r)} (embedded alone)"
    if sides == ["cluster"]:
        stopped = (r.get("cluster_ingest") or {}).get("stopped_by")
        partial = f", partial run of {r['size']:,}" if stopped else ""
        return f"{_n(r)} (cluster only{partial})"
    return _n(r)


def own_seconds(ingest: dict[str, Any]) -> float:
    return ingest["total_s"] - sum(ingest["stages_s"].get(s, 0.0) for s in OVERHEAD)


def _stages(ingest: dict[str, Any]) -> str:
    own = own_seconds(ingest)
    parts = {k: v for k, v in ingest["stages_s"].items() if k not in OVERHEAD and v >= 0.005 * own}
    return ", ".join(f"{k} {v / own:.0%}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]))


def ingest_table(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        for side, label in SIDES:
            ing = r.get(f"{side}_ingest")
            if not ing:
                continue
            own = own_seconds(ing)
            flush = f"{ing['flush_s']:.1f} s" if "flush_s" in ing else "-"
            if side == "cluster":
                server = r.get("server", {})
                rss = (f"ours {_mib(ing['rss_peak_bytes'])} (+{_mib(ing['rss_delta_bytes'])} here); "
                       f"server {_mib(ing.get('server_rss_after_ingest', 0))} after ingest, peak "
                       f"{_mib(server.get('rss_peak', 0))} (VmHWM {_mib(server.get('hwm', 0))})")  # fmt: skip
                disk = r.get("disk_bytes", {}).get("milvus")
                calls = ", ".join(f"{k} {v:,}" for k, v in ing.get("milvus_calls", {}).items())
                state = ing.get("vector_index") or {}
                if "indexed_rows" in state:
                    indexed, total = state["indexed_rows"], state.get("total_rows", 0)
                    calls += (
                        f"; vector index: {indexed:,} of {total:,} rows indexed, {state.get('state', '')}"
                    )
            else:
                rss, disk = f"ours {_mib(ing['rss_peak_bytes'])}", r.get("disk_bytes", {}).get("embedded")
                calls = f"{ing.get('vector_kind', '?')}, {ing.get('lexical_commits', 0)} BM25 commits"
            rows.append([_label(r), label, f"{ing['patents']:,}", f"{ing['total_s']:,.0f} s",
                         f"**{ing['passages'] / own:,.0f}**{busy_mark(ing)}", _stages(ing), flush, rss,
                         _mib(disk) if disk is not None else "-", calls])  # fmt: skip
    table = bench.markdown_table(
        ["passages", "index", "patents", "add() wall", "passages/s without embedding", "own time by stage",
         "flush", "RSS", "disk", "notes / Milvus calls"],
        rows,
    )  # fmt: skip
    curves = []
    for r in results:
        ing = r.get("cluster_ingest") or {}
        if ing.get("rate_windows"):
            rates = ", ".join(f"{w['rate']:,.0f}" for w in ing["rate_windows"])
            stop = f" (**partial**: stopped by {ing['stopped_by'][0]})" if ing.get("stopped_by") else ""
            curves.append(f"{_n(r)}{stop}: {rates}")
    if curves:
        table += (
            "\n\nCluster `add()` wall passages/s by tenth of the run (generation and embedding included, "
            "so slightly under the table's rate): " + "; ".join(curves) + "."
        )
    return table


def latency_table(results: list[dict[str, Any]], queries: int) -> str:
    paths = [("pipeline", f"{m}|{{}}", f"SearchPipeline {m}") for m in ("lexical", "dense", "hybrid")]
    paths += [("stores", "lexical engine|{}", "raw lexical.search(text, 200)"),
              ("stores", "vector store|{}", "raw vectors.search(v, 200)")]  # fmt: skip
    rows = []
    for r in results:
        for kind, key, label in paths:
            if not any(side in r for side, _ in SIDES):
                continue  # an ingest-only run
            row = [_label(r), label]
            for side, _ in SIDES:
                got = r.get(side, {}).get(kind, {})
                row += [_lat(got.get(key.format(f)), queries) for f in FILTERS]
            rows.append(row)
    heads = [f"{s} {f} p50 / p95 ms" for s, _ in SIDES for f in FILTERS]
    return bench.markdown_table(["passages", "call", *heads], rows)


def quality_table(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        for f in FILTERS:
            sel = "100%" if f == "none" else f"{r['selectivity'][f]['mean']:.2%}"
            if not any(side in r for side, _ in SIDES):
                continue
            row = [_label(r), f, sel]
            for side, _ in SIDES:
                rec = r.get(side, {}).get("recall", {})
                got = rec.get(f)
                row.append(f"{got['recall']:.4f} ({got['misses']} missed){busy_mark(got)}" if got else "-")
            ov = r.get("lexical_overlap", {}).get(f)
            row += [f"{ov['top10']:.3f}", f"{ov['top100']:.3f}"] if ov else ["-", "-"]
            rows.append(row)
    return bench.markdown_table(
        ["passages", "filter", "selectivity", "dense recall@100 embedded", "dense recall@100 cluster",
         "lexical top-10 overlap", "lexical top-100 overlap"], rows)  # fmt: skip


def render(raw: dict[str, Any]) -> str:
    results, facts, args = raw["results"], raw["facts"], raw["args"]
    q = args["queries"]
    memo = [_n(r) for r in results if r["memo_jieba"]]
    memo_note = (f"Jieba was **memoized** at {', '.join(memo)} passages (exactly the real "
                 "tokens; the synthetic corpus repeats Han runs far more than real text, so analysis is "
                 "cheaper there than it would be) and ran for real at the other sizes." if memo
                 else "Jieba ran for real (uncached) at every size, on both sides.")  # fmt: skip
    kinds = {_n(r): r["embedded"]["recall"].get("kind", "?") for r in results if "embedded" in r}
    digests = "; ".join(f"{_n(r)}: " + ", ".join(f"{k} {v}" for k, v in r["vector_digests"].items())
                        for r in results if r.get("vector_digests"))  # fmt: skip
    machine = ", ".join(f"{k} {v}" for k, v in facts.items() if k != "ISA")
    runs = raw.get("runs") or [raw]
    ran = "; ".join(
        f"`{run['command']}` at {run.get('measured_at', '?')} in {(run.get('elapsed_s') or 0) / 60:.0f} min, "
        f"load average {' '.join(run.get('load_before') or [])} before, "
        f"{' '.join(run.get('load_after') or [])} after (1, 5, 15 min)" for run in runs
    )  # fmt: skip
    bounds = "; ".join(
        f"{_n(r)}: p50 {b['p50']:,.0f} ms, p95 {b['p95']:,.0f} ms over {b['n']} queries of "
        f"{b['terms_mean']:.1f} distinct terms ({b['ms_per_term']:,.0f} ms per term)"
        for r in results if (b := r.get("cluster", {}).get("bound"))
    )  # fmt: skip
    return "\n".join([
        f"Measured by {ran}.",
        "",
        f"Machine: {machine}; ISA: {facts['ISA']}. Other engineers' test "
        "processes may have run beside it: a latency or rate marked ! ran while other processes used over "
        "0.2 of a core on average. On the cluster side the milvus-lite server (the system under test) is "
        "one of those processes, so ! is always set there and says nothing about other jobs.",
        "",
        "**Milvus Lite is a test stand-in, not a production figure.** `milvus-lite server` runs the Milvus "
        "gRPC API in one local process on these same 2 cores; a real Milvus standalone or distributed "
        "server has other costs (network hops between proxy, query and data nodes, segment sealing, "
        "index building and compaction in the background, object storage) and other resources.",
        "",
        "Same patents, same vectors, same queries on both sides, in one process per size: synthetic "
        f"zh/en patents chunked by each index (`benchmarks/synthetic_patents.py`), {args['dim']}-d synthetic "
        "clustered vectors injected as the embedder (model time excluded; digests of the vectors each side "
        f"stored: {digests}). {memo_note} "
        "Embedded: `PatentIndex.add(batch_size=64)` with the product's defaults (vector store kind by "
        f"size: {', '.join(f'{n} {k}' for n, k in kinds.items())}). "
        "Cluster: `ClusterIndex.add(batch_size=64)` "
        f"on a `MilvusLiteServer` (dense index {args['milvus_index']} {args['milvus_build']}, search "
        f"{args['milvus_search']}; BM25 on Milvus's sparse index); `add()` flushes by itself on Milvus Lite "
        "(since 2c16ab4), and the "
        "benchmark's extra `flush` after it is timed apart.",
        "",
        "### Ingest and resources",
        "",
        "passages/s counts the index's own work: `add()` wall time less corpus generation, the synthetic "
        "embedding and the benchmark's hooks. Stages are self time inside that one run (cluster: rows = "
        "building Milvus rows; milvus upsert / delete / version queries = the gRPC calls, server work "
        "included). RSS: our process (peak while ingesting; the cluster ingest runs after the embedded one, "
        "so its baseline includes the open embedded index), and the milvus-lite server process sampled "
        "every 0.5 s. Disk: the index folder / the server's data dir after the flush and all queries.",
        "",
        ingest_table(results),
        "",
        "### Latency",
        "",
        f"Embedded: {q} queries per pass, cluster: the first {args['cluster_queries']} of them (its passes "
        "take seconds per query; '(n q)' says how many ran, a pass stops after "
        f"{args['pass_budget']:.0f} s once 5 ran); queries alternate zh/en; p50 / p95 ms after "
        f"{args.get('warmup', 2)} warm-up queries (the last of the list) per pass. "
        f"Cluster pipeline modes timed: {args.get('cluster_modes', 'lexical,dense,hybrid')} ('-': not run). "
        "`SearchPipeline.search(SearchRequest(..., rerank=False))` with the query vector looked up; raw = "
        "the engines' own `lexical.search` (query analysis included) and `vectors.search` with k = 200 "
        "(the pipeline's retrieve_k). Filters: common = " + FILTER_DOC["common"] + "; rare = "
        + FILTER_DOC["rare"] + ".",
        "",
        latency_table(results, q),
        "",
        "Cluster hybrid search (score fusion) also reads the lexical fusion bound: the query terms' "
        "document frequencies from one BM25 probe search, and the tokens of common terms' top hits "
        "(`cluster/term_stats.py`, cached per term for 5 minutes); with that cache empty before each query "
        "it took " + (bounds or "-") + ".",
        "",
        "### Recall and agreement",
        "",
        "Dense recall@100 of each side's vector search against exact inner-product search (brute force "
        "over the same vectors, each side's ids, filter applied to the ground truth by `SearchFilter` "
        "rules). Lexical overlap: the share of the embedded index's top-10 / top-100 (`lexical.search`, "
        "same filter) that the cluster index also returns, passages matched by (patent, ordinal).",
        "",
        quality_table(results),
    ])  # fmt: skip
