"""`patentrank eval`: every stage's nDCG@10, Recall@100 and MRR on a collection, as a table and a chart."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from patentrank.cli.app import app, fail


@app.command("eval")
def evaluate(
    collection: Annotated[Path, typer.Option(help="Folder with corpus.jsonl, queries*.jsonl, qrels*.tsv.")],
    index_dir: Annotated[
        str | None,
        typer.Option(
            "--index", "-i", help="Where to cache the collection's index: a folder or a Milvus URI."
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="Which queries/qrels files: queries.<split>.jsonl.")] = "dev",
    stages: Annotated[str, typer.Option(help="Comma-separated: lexical,dense,hybrid,rerank.")] = (
        "lexical,dense,hybrid,rerank"
    ),
    candidates: Annotated[int, typer.Option(min=1, max=1000, help="Passages reranked per query.")] = 20,
    rerank_queries: Annotated[
        int | None, typer.Option(min=1, help="Rerank only the first N queries (reranking is slow on CPU).")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Write the bar chart here (default: in the index folder).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print {stage: {language: {metric: value}}} as JSON.")
    ] = False,
    collapse: Annotated[
        bool,
        typer.Option(
            help="Collapse families and same-text twins as search does (off: the collections judge twin "
            "publications as documents of their own, as the BM25 baselines count them)."
        ),
    ] = False,
) -> None:
    """Index a collection (cached) and report each stage's quality per query language.

    Example: patentrank eval --collection ../shared/data/wasteheat_zh_en_title2abs --stages lexical
    """
    from tqdm import tqdm

    from patentrank.config import get_settings
    from patentrank.cost import track_ingest, where_it_runs
    from patentrank.errors import PatentrankError
    from patentrank.eval_runner import collection_patents, evaluate_pipeline
    from patentrank.evaluate import format_table, load_collection, plot_results
    from patentrank.index.location import index_location
    from patentrank.index.report import Rejection
    from patentrank.runtime import open_runtime

    settings = get_settings()
    wanted = [s.strip() for s in stages.split(",") if s.strip()]
    roles = (["embedder"] if {"dense", "hybrid", "rerank"} & set(wanted) else []) + (
        ["reranker"] if "rerank" in wanted else []
    )
    say = (lambda line: typer.echo(line, err=True)) if not as_json else (lambda line: None)
    estimate = lambda line: tqdm.write(line, file=sys.stderr)  # noqa: E731  (also with --json)
    try:
        coll = load_collection(collection, split=split, show_progress=not as_json)
        folder = index_location(index_dir) if index_dir else Path(".patentrank/eval") / coll.name
        runtime = open_runtime(settings, folder, roles=roles, report=lambda line: typer.echo(line, err=True))
        if getattr(getattr(runtime.index, "lexical", None), "exact_lengths", True) is False:
            estimate(  # on stderr, with --json too: the cache predates exact lengths and scores a bit off
                f"{folder}: its lexical index is format 2 (passage lengths rounded to one byte, as before "
                f"exact BM25); `patentrank reindex --index {folder}` makes the best hits' scores exact"
            )
        rejected: list[Rejection] = []
        patents = collection_patents(coll, rejected)
        embedder = runtime.embedder if runtime.index.vectors is not None else None
        with tqdm(total=len(patents), desc="indexing", unit="doc", disable=as_json) as bar:
            # After the first batch: how long embedding the collection will take, then the time left.
            progress, on_embedded = track_ingest(bar, embedder, estimate)
            ingest = runtime.index.add(
                patents, progress=progress, on_embedded=on_embedded, batch_size=64 if embedder else 256
            )
        say(f"index {folder}: {ingest.added} added, {ingest.unchanged} cached, {len(rejected)} unreadable")
        report = evaluate_pipeline(
            runtime.pipeline,
            coll,
            stages=wanted,
            candidates=candidates,
            rerank_queries=rerank_queries,
            progress=not as_json,
            on_stage=lambda s: say(f"running {s}"),
            on_estimate=estimate,
            rerank_where=where_it_runs(runtime.reranker),
            collapse=collapse,
        )
    except PatentrankError as exc:
        fail(str(exc))
    if not report.results:
        fail("no stage could run: " + "; ".join(f"{s}: {r}" for s, r in report.skipped.items()))
    chart = plot_results(
        report.results, plot or _plot_folder(folder, coll.name) / f"eval-{coll.name}.png", title=coll.name
    )
    if as_json:
        typer.echo(json.dumps(report.results, ensure_ascii=False))
        return
    typer.echo(format_table(report.results))
    for stage, ms in report.ms_per_query.items():
        typer.echo(f"{stage}: {ms:.1f} ms/query over {report.queries[stage]} queries")
    for stage, reason in report.skipped.items():
        typer.echo(f"skipped {stage}: {reason}")
    typer.echo(f"chart: {chart}")


def _plot_folder(index: Path | str, collection: str) -> Path:
    """The index folder, or for an index in Milvus the default evaluation folder."""
    return index if isinstance(index, Path) else Path(".patentrank/eval") / collection
