"""The search benchmark's queries: `SearchPipeline.search` latency per mode and filter, the vector store
alone, filter selectivity, and recall@100 of the index's vector store against exact search."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks import common as bench
from benchmarks.measure import OthersCpu, log, progress_bar, timed_pass
from benchmarks.synthetic_patents import FILTERS, Query
from benchmarks.vector_log import VectorLog, exact_neighbours
from patentrank.index.patent_index import PatentIndex

K_RECALL = 100
RETRIEVE_K = 200  # SearchRequest's default retrieve_k
TIE = 1e-5  # inner products this close to the k-th exact one count as tied with it
MODES = ("lexical", "dense", "hybrid")
STAGE_OF_MODE = {"lexical": ("lexical",), "dense": ("dense",), "hybrid": ("lexical", "dense")}


def forget_filters(store: Any) -> None:
    # FaissStore keeps the masks of its last filters; clear them so every pass pays for its filters
    # as a stream of distinct prior-art searches would.
    cache = getattr(store, "_allowed_cache", None)
    if hasattr(cache, "clear"):
        cache.clear()


def selectivity(log_: VectorLog, queries: list[Query]) -> dict[str, dict[str, float]]:
    """Share of the passages each query's filter lets through: mean, min, max per filter kind."""
    out = {}
    for name in FILTERS[1:]:
        shares = np.array([log_.mask(q.filter(name)).mean() for q in queries])
        out[name] = {
            "mean": float(shares.mean()),
            "min": float(shares.min()),
            "max": float(shares.max()),
            "passages": float(shares.mean() * log_.rows),
        }
    return out


def pipeline_latency(index: PatentIndex, queries: list[Query], budget_s: float) -> dict[str, Any]:
    """`SearchPipeline.search` with rerank and highlight off and the query vector looked up (no model
    time), per mode and filter; 'stage' is the retrieval stages' own time as the response reports it."""
    from patentrank.search import SearchPipeline, SearchRequest

    vector_of = {q.text: q.vector for q in queries}
    pipeline = SearchPipeline(index, embed_query=lambda text, _instruction: vector_of[text])
    modes = MODES if index.vectors is not None else ("lexical",)
    runs = [(m, f, False) for m in modes for f in FILTERS] + [("hybrid", "none", True)] * ("hybrid" in modes)
    out: dict[str, Any] = {}

    def call(q: Query, mode: str, flt: str, highlight: bool) -> dict[str, float]:
        response = pipeline.search(
            SearchRequest(q.text, mode=mode, filter=q.filter(flt), rerank=False, highlight=highlight)
        )
        ran = [response.stages.get(s, {}) for s in STAGE_OF_MODE[mode]]
        return {"stage_ms": sum(float(s.get("ms", 0.0)) for s in ran)}

    for mode, flt, highlight in runs:
        forget_filters(index.vectors)
        label = mode + (" + highlight" if highlight else "")
        out[f"{label}|{flt}"] = timed_pass(
            lambda q, m=mode, f=flt, h=highlight: call(q, m, f, h), queries, budget_s=budget_s
        )
        r = out[f"{label}|{flt}"]
        log(
            f"  pipeline {label:20s} {flt:7s} {r['p50']:8.2f} / {r['p95']:8.2f} ms "
            f"(stage {r.get('stage_p50', 0):.2f} ms p50)"
        )
    return out


def store_latency(index: PatentIndex, queries: list[Query], budget_s: float) -> dict[str, Any]:
    """The lexical engine (`search(text, 200, filter)`, query analysis included) and the vector store
    (`search(vector, 200, filter)`) alone, k = 200 as the pipeline asks, per filter."""
    out: dict[str, Any] = {}
    lexical, store = index.lexical, index.vectors
    calls = {"lexical engine": lambda q, f: lexical.search(q.text, RETRIEVE_K, f)}
    if store is not None:
        calls["vector store"] = lambda q, f: store.search(q.vector.reshape(1, -1), RETRIEVE_K, f)
    for part, call in calls.items():
        for flt in FILTERS:
            forget_filters(store)
            out[f"{part}|{flt}"] = r = timed_pass(
                lambda q, c=call, f=flt: c(q, None if f == "none" else q.filter(f)),
                queries,
                budget_s=budget_s,
            )
            log(f"  {part:14s} {flt:7s} {r['p50']:8.2f} / {r['p95']:8.2f} ms")
    return out


def recall(index: PatentIndex, log_: VectorLog, queries: list[Query]) -> dict[str, Any]:
    """recall@100 of the index's own vector store (its kind and settings as built) against exact
    inner-product search over every vector it was given, per filter kind; and the queries' mean cosine
    to their exact neighbours at ranks 1, 100 and 1000 (how hard these vectors are)."""
    store = index.vectors
    if store is None:
        return {}
    q = np.stack([x.vector for x in queries])
    cases = [(name, x) for name in FILTERS for x in queries]
    bar = progress_bar(log_.rows, "exact search")
    with bench.RssSampler(0.05) as rss:
        exact = exact_neighbours(
            log_,
            np.concatenate([q] * len(FILTERS)),
            [None if n == "none" else x.filter(n) for n, x in cases],
            K_RECALL,
            lambda n: bar.update(n),
        )
    bar.close()
    profile = _cosine_profile(log_, q)
    out: dict[str, Any] = {
        "kind": str(getattr(store, "kind", "?")),
        "plan": str(getattr(store, "plan", "")),
        "cosine_at_rank": profile,
        "exact_rss_peak_bytes": rss.peak_bytes,
    }
    for i, name in enumerate(FILTERS):
        forget_filters(store)
        want = exact[i * len(queries) : (i + 1) * len(queries)]
        flt = lambda x, n=name: None if n == "none" else x.filter(n)  # noqa: E731
        with OthersCpu() as others:
            got = [store.search(x.vector.reshape(1, -1), K_RECALL, flt(x))[0] for x in queries]
        hits, misses, at_cut = [], 0, 0
        for g, (ids, scores) in zip(got, want, strict=True):
            if not len(ids):
                continue
            missed = ~np.isin(ids, [pid for pid, _ in g])
            hits.append(1.0 - missed.mean())
            misses += int(missed.sum())
            # A miss whose exact score equals the k-th one to float precision is a tie at the cut, not an
            # approximation error (two BLAS kernels round near-equal scores differently).
            at_cut += int((missed & (scores >= scores[-1] - TIE)).sum())
        out[name] = {
            "recall": float(np.mean(hits)) if hits else float("nan"),
            "queries": len(hits),
            "misses": misses,
            "misses_at_cut": at_cut,
            "others_cores": others.cores,
        }
        log(f"  recall@{K_RECALL} {out['kind']} {name:7s} {out[name]['recall']:.4f}")
    return out


def _cosine_profile(log_: VectorLog, q: np.ndarray) -> dict[int, float]:
    """Mean cosine of the queries to their exact neighbours at ranks 1, 100 and 1000 (on a sample of
    at most 2M vectors at the largest sizes, where exact top-1000 per query would take long)."""
    rows = min(log_.rows, 2_000_000)
    top = np.zeros((len(q), 1000), np.float32) - np.inf
    for lo in range(0, rows, 131_072):
        block = log_.read(lo, min(lo + 131_072, rows)) @ q.T
        take = min(1000, len(block))
        part = -np.partition(-block, take - 1, axis=0)[:take].T
        top = -np.partition(-np.concatenate([top, part], axis=1), 999, axis=1)[:, :1000]
    top = -np.sort(-top, axis=1)
    return {rank: float(top[:, rank - 1].mean()) for rank in (1, 100, 1000) if rank <= rows}
