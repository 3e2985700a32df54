"""FaissStore's filtered search on an index a benchmark kept: the filter's evaluation alone, then whole
searches, per filter kind (none, ~10%, <1%), k = 200 as the pipeline asks.

Queries are stored vectors (decoded from the index's own codes) plus noise, so they land among the data
as real queries do; filters are drawn like `search_bench`'s (a priority cutoff in 2010-2022 and an IPC
subclass; the rare one adds a five-year window, a language and a jurisdiction). Every search pays for
its filter: the store's filter cache is cleared before each call. Run the same command at two commits
to compare them on one index; it only reads the index.

    flock /tmp/patentrank-bench.lock .venv/bin/python -m benchmarks.filter_bench \\
        --index benchmarks/results/search-work/10000000/index
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.measure import log
from benchmarks.search_report import machine_facts
from patentrank.index.faiss_store import FaissStore
from patentrank.index.filters import SearchFilter


def make_filters(store: FaissStore, n: int, seed: int) -> list[dict[str, SearchFilter]]:
    rng = random.Random(seed)
    columns = store._columns
    subclasses = sorted({code[:4] for code in columns._postings if len(code) >= 4})
    languages = sorted(columns._language_codes)
    jurisdictions = sorted(columns._jurisdiction_codes)
    out = []
    for _ in range(n):
        cutoff = dt.date(2010, 1, 1) + dt.timedelta(days=rng.randrange(13 * 365))
        common = SearchFilter(before=cutoff.isoformat(), code_prefixes=[rng.choice(subclasses)])
        rare = SearchFilter(
            after=dt.date(cutoff.year - 5, cutoff.month, min(cutoff.day, 28)).isoformat(),
            before=common.before,
            code_prefixes=common.code_prefixes,
            languages=[rng.choice(languages)],
            jurisdictions=[rng.choice(jurisdictions)],
        )
        out.append({"none": SearchFilter(), "common": common, "rare": rare})
    return out


def make_queries(store: FaissStore, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    index = store._index
    positions = rng.choice(index.ntotal, n, replace=False)
    rows = np.stack([index.index.reconstruct(int(p)) for p in positions])
    rows += 0.5 * rng.normal(size=rows.shape).astype(np.float32) / np.sqrt(store.dim)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def row(r: dict[str, Any]) -> str:
    e, s = r["evaluate_ms"], r["search_ms"]
    return f"{e['p50']:.1f} / {e['p95']:.1f}, {s['p50']:.1f} / {s['p95']:.1f}"


def percentiles(ms: list[float]) -> dict[str, float]:
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)), "n": len(ms)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    store = FaissStore(Path(args.index) / "faiss", args.dim)
    opened_s = time.perf_counter() - start
    log(f"opened {store.count():,} passages ({store.kind}) in {opened_s:.0f} s")
    filters = make_filters(store, args.queries, args.seed)
    queries = make_queries(store, args.queries, args.seed)
    result: dict[str, Any] = {"passages": store.count(), "kind": store.kind, "open_s": opened_s}
    result["filters"] = {}
    for name in ("none", "common", "rare"):
        evaluate, search, shares = [], [], []
        for flts, vector in zip(filters, queries, strict=True):
            flt = flts[name]
            store._allowed_cache.clear()
            t0 = time.perf_counter()
            with store._lock:
                store._allowed(flt)
            evaluate.append(1000 * (time.perf_counter() - t0))
            store._allowed_cache.clear()
            t0 = time.perf_counter()
            store.search(vector[None], 200, flt)
            search.append(1000 * (time.perf_counter() - t0))
            if len(shares) < 10 and name != "none":
                shares.append(len(store.matching_ids(flt)) / store.count())
        result["filters"][name] = {
            "evaluate_ms": percentiles(evaluate),
            "search_ms": percentiles(search),
            "share": float(np.mean(shares)) if shares else 1.0,
        }
        log(f"  {name:6s} share {result['filters'][name]['share']:.2%}: {row(result['filters'][name])}")
    store.close()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--index", required=True, help="an index folder a benchmark kept (holds faiss/)")
    parser.add_argument("--dim", type=int, default=256, help="the vectors' dimension (default 256)")
    parser.add_argument("--queries", type=int, default=100, help="queries per filter kind (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the queries and filters")
    parser.add_argument("--out", default="benchmarks/results", help="folder for the raw JSON")
    args = parser.parse_args(argv)
    result = run(args)
    result.update(machine=machine_facts(), args=vars(args))
    out = Path(args.out) / f"filter-{result['passages']}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    facts = result["machine"]
    print(f"{result['passages']:,} passages ({result['kind']}), commit {facts['commit']}, ISA {facts['ISA']}")
    print("| filter | share | filter evaluation p50 / p95 ms | search p50 / p95 ms |\n|---|---|---|---|")
    for name, r in result["filters"].items():
        print(f"| {name} | {r['share']:.2%} | {row(r).replace(', ', ' | ')} |")
    log(f"raw results: {out}")


if __name__ == "__main__":
    main()
