"""Running every available pipeline stage over an evaluation collection and scoring it."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from patentrank.corpus import Patent, patent_from_record
from patentrank.cost import WorkMeter, token_counter
from patentrank.errors import InputError
from patentrank.evaluate import Collection, Results, evaluate_run
from patentrank.index.report import Rejection
from patentrank.search import SearchPipeline, SearchRequest

STAGES: tuple[str, ...] = ("lexical", "dense", "hybrid", "rerank")
STAGE_REQUESTS: dict[str, dict[str, Any]] = {
    "lexical": {"mode": "lexical", "rerank": False},
    "dense": {"mode": "dense", "rerank": False},
    "hybrid": {"mode": "hybrid", "rerank": False},
    "rerank": {"mode": "hybrid", "rerank": True},
}


@dataclass
class EvalReport:
    """Metrics per stage and language, plus what was skipped and how long each stage took."""

    results: Results = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    ms_per_query: dict[str, float] = field(default_factory=dict)
    queries: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "results": self.results,
            "skipped": self.skipped,
            "ms_per_query": self.ms_per_query,
            "queries": self.queries,
        }


def collection_patents(collection: Collection, rejected: list[Rejection] | None = None) -> list[Patent]:
    """The collection's documents as patents (records the loader cannot read are listed in `rejected`)."""
    patents = []
    for record in collection.corpus:
        try:
            patents.append(patent_from_record(record))
        except InputError as exc:
            if rejected is not None:
                patent_id = str(record.get("id"))
                rejected.append(Rejection(f"document {patent_id}", str(exc), exc.field, patent_id))
    return patents


def run_stage(
    pipeline: SearchPipeline,
    queries: Sequence[dict[str, Any]],
    stage: str,
    *,
    k: int = 100,
    candidates: int = 20,
    progress: bool = True,
    meter: WorkMeter | None = None,
    collapse: bool = False,
) -> tuple[dict[str, dict[str, float]], float]:
    """The run (query id -> patent id -> score) of one stage, and its mean latency in ms per query.

    Scores are derived from the final rank, because reranked and non-reranked results carry scores
    on different scales; the metrics only need the order. `meter` times the reranker's calls.
    `collapse` is off by default: the collections judge twin publications as documents of their own.
    """
    request_args = dict(STAGE_REQUESTS[stage])
    if stage == "rerank" and pipeline.embed_query is None:
        request_args["mode"] = "lexical"  # rerank what the stages that exist retrieved
    if meter is not None and pipeline.rerank is not None:
        pipeline = copy.copy(pipeline)  # the caller's pipeline keeps its own, untimed reranker
        pipeline.rerank = meter.timed_rerank(pipeline.rerank)
    run: dict[str, dict[str, float]] = {}
    start = time.perf_counter()
    for q in tqdm(queries, desc=stage, unit="query", disable=not progress):
        request = SearchRequest(
            q["text"],
            top_n=k,
            retrieve_k=max(3 * k, 300),
            candidates=candidates,
            highlight=False,
            collapse=collapse,
            **request_args,
        )
        response = pipeline.search(request)
        n = len(response.results)
        run[q["id"]] = {r.patent_id: float(n - i) for i, r in enumerate(response.results)}
    elapsed = (time.perf_counter() - start) * 1000 / max(len(queries), 1)
    return run, round(elapsed, 2)


def evaluate_pipeline(
    pipeline: SearchPipeline,
    collection: Collection,
    *,
    stages: Sequence[str] = STAGES,
    k: int = 100,
    candidates: int = 20,
    rerank_queries: int | None = None,
    progress: bool = True,
    on_stage: Callable[[str], None] | None = None,
    on_estimate: Callable[[str], None] | None = None,
    rerank_where: str = "this CPU",
    collapse: bool = False,
) -> EvalReport:
    """Every requested stage that can run, scored per language; `rerank_queries` limits the (slow)
    rerank stage to the first N queries, scored against their own judgments only. `on_estimate` gets
    the rerank stage's estimated time (measured on its first query, on `rerank_where`) at once."""
    report = EvalReport()
    missing = pipeline.missing_stages()
    langs = collection.query_langs()
    judged = [q for q in collection.queries if q["id"] in collection.qrels]
    for stage in stages:
        if stage not in STAGE_REQUESTS:
            raise InputError(f"unknown stage {stage!r}; choose from {', '.join(STAGES)}", field="stages")
        if stage in missing:
            report.skipped[stage] = missing[stage]
            continue
        if on_stage:
            on_stage(stage)
        queries = judged
        if stage == "rerank" and rerank_queries:
            queries = judged[:rerank_queries]
        meter = None
        if stage == "rerank" and on_estimate is not None:
            meter = WorkMeter(
                "reranking",
                "pairs",
                count_tokens=token_counter(None),
                report=on_estimate,
                where=rerank_where,
                total_items=len(queries) * candidates,  # at most: a query may retrieve fewer passages
                measured_on="the first query",
            )
        run, ms = run_stage(
            pipeline, queries, stage, k=k, candidates=candidates, progress=progress, meter=meter,
            collapse=collapse,
        )  # fmt: skip
        qrels = {q["id"]: collection.qrels[q["id"]] for q in queries}
        name = stage if len(queries) == len(judged) else f"{stage} (first {len(queries)} queries)"
        report.results[name] = evaluate_run(run, qrels, langs)
        report.ms_per_query[name] = ms
        report.queries[name] = len(queries)
    return report
