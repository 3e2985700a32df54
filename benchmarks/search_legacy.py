"""The baseline: the numpy BM25 of commit 19128a7 (`legacy_lexical.py`), built from the same passages
and queried the way that pipeline used it (allowed ids computed in SQL by the document store)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.analysis_cache import memoized_jieba
from benchmarks.legacy_lexical import LexicalIndex as LegacyLexicalIndex
from benchmarks.measure import OthersCpu, disk_usage, log, progress_bar, timed_pass
from benchmarks.synthetic_patents import FILTERS, Query
from patentrank.index.patent_index import PatentIndex
from patentrank.text import analyze

K = 200  # what the pipeline asks each retriever for (SearchRequest.retrieve_k)


def build_legacy(
    index: PatentIndex, folder: Path, passages_per_checkpoint: int
) -> tuple[LegacyLexicalIndex, dict[str, Any]]:
    """Every passage of the document store, in id order, into the legacy index, committed every
    `passages_per_checkpoint` passages as the old `PatentIndex` did every 5,000 patents. Analysis is
    the same analyzer as the new engine's, memoized here (exact tokens; its time is not compared)."""
    legacy = LegacyLexicalIndex(folder)
    analysis_s = staging_s = 0.0
    commits: list[float] = []
    since, total = 0, index.docstore.count_passages()
    bar = progress_bar(total, "legacy BM25")
    with memoized_jieba(True), OthersCpu() as others:
        for batch in index.docstore.iter_passages(1000):
            start = time.perf_counter()
            tokens = [analyze(p.text) for p, _ in batch]
            analysis_s += time.perf_counter() - start
            start = time.perf_counter()
            legacy.add_tokens([p.passage_id for p, _ in batch], tokens)
            staging_s += time.perf_counter() - start
            since += len(batch)
            bar.update(len(batch))
            if since >= passages_per_checkpoint:
                start = time.perf_counter()
                legacy.commit()
                commits.append(time.perf_counter() - start)
                since = 0
        start = time.perf_counter()
        legacy.commit()
        commits.append(time.perf_counter() - start)
    bar.close()
    stats = {
        "passages": legacy.count(),
        "analysis_s": analysis_s,
        "staging_s": staging_s,
        "commits": len(commits),
        "commit_s": sum(commits),
        "last_commit_s": commits[-1],
        "terms": legacy.health()["terms"],
        "others_cores": others.cores,
        "disk_bytes": sum(disk_usage(folder).values()),
    }
    log(f"  legacy BM25: {stats}")
    return legacy, stats


def legacy_latency(
    legacy: LegacyLexicalIndex, index: PatentIndex, queries: list[Query], budget_s: float
) -> dict[str, Any]:
    """The old pipeline's lexical stage per query: `DocStore.allowed_passage_ids(filter)` (SQL) when
    filtered, then `LexicalIndex.search(text, 200, allowed)`, which analyses the query."""
    docstore, out = index.docstore, {}

    def stage(q: Query, name: str) -> dict[str, float]:
        flt = q.filter(name)
        start = time.perf_counter()
        allowed = None if flt.is_empty() else docstore.allowed_passage_ids(flt)
        sql_ms = (time.perf_counter() - start) * 1000
        legacy.search(q.text, K, allowed)
        return {"stage_ms": sql_ms}

    for name in FILTERS:
        out[name] = timed_pass(lambda q, n=name: stage(q, n), queries, budget_s=budget_s)
        out[name]["sql_p50"] = out[name].pop("stage_p50", 0.0)
        out[name]["sql_p95"] = out[name].pop("stage_p95", 0.0)
        log(
            f"  legacy lexical {name:7s} {out[name]['p50']:8.2f} / {out[name]['p95']:8.2f} ms "
            f"(SQL {out[name]['sql_p50']:.1f} ms p50)"
        )
    return out
