"""`patentrank chart`: a claim chart (and optionally the best combinations) from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from patentrank.cli.app import app, fail
from patentrank.cli.index import IndexOption

if TYPE_CHECKING:
    from patentrank.claim_chart import ClaimChart
    from patentrank.combinations import Combination


@app.command()
def chart(
    claim: Annotated[str, typer.Argument(help="Claim text, or 'claim N of PUBLICATION' from the index.")],
    ref: Annotated[
        list[str] | None, typer.Option("--ref", "-r", help="Reference publication number (repeatable).")
    ] = None,
    search: Annotated[
        str | None,
        typer.Option(help="Take the references from this search ('' searches the claim itself)."),
    ] = None,
    top_n: Annotated[int, typer.Option("--top-n", "-n", min=1, help="References taken from --search.")] = 10,
    element: Annotated[
        list[str] | None,
        typer.Option("--element", "-e", help="Your own claim element (repeatable, in order)."),
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Score at which an element counts as covered.")
    ] = None,
    instruction: Annotated[str | None, typer.Option(help="Reranker instruction for the chart.")] = None,
    combinations: Annotated[
        int, typer.Option(min=0, max=3, help="Also list combinations: 2 = pairs, 3 = triples, 0 = none.")
    ] = 0,
    out: Annotated[
        list[Path] | None, typer.Option("--out", "-o", help="Write the chart: .csv, .xlsx, .html or .json.")
    ] = None,
    index_dir: IndexOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the chart as JSON.")] = False,
) -> None:
    """Chart each element of a claim against the best passage of each reference (reranker scores),
    with coverage per reference; --combinations 2 adds the reference pairs covering most elements.

    Example: patentrank chart "claim 1 of CN113344556A" -r CN111489305B -r US2021118123A1 -o chart.xlsx
    """
    from patentrank.chart_export import write_chart
    from patentrank.claim_chart import ChartRequest, ClaimCharter, scorers_from_models
    from patentrank.combinations import combine
    from patentrank.config import get_settings
    from patentrank.errors import PatentrankError
    from patentrank.index.location import index_location, missing_index
    from patentrank.runtime import open_runtime
    from patentrank.search import SearchRequest

    settings = get_settings()
    path = index_location(index_dir or settings.index_dir)
    if why := missing_index(path):
        fail(why)
    if (ref is None) == (search is None):
        fail("give the references with --ref, or --search to take them from a search")
    for target in out or []:
        if target.suffix.lower() not in (".csv", ".xlsx", ".html", ".htm", ".json"):
            fail(f"--out {target}: write .csv, .xlsx, .html or .json")
    if combinations == 1:
        fail("--combinations must be 2 (pairs), 3 (triples) or 0")
    try:
        runtime = open_runtime(settings, path, report=lambda line: typer.echo(line, err=True))
        if runtime.reranker is None:
            fail(f"a claim chart needs the reranker: {runtime.errors.get('reranker', 'none is configured')}")
        charter = ClaimCharter(
            runtime.index.docstore, scorers_from_models(runtime.reranker, runtime.embedder), settings
        )
        references = list(ref or [])
        if search is not None:
            text, _ = charter.resolve_claim(claim)
            if top_n > settings.max_chart_references:
                fail(f"--top-n {top_n} is more than the limit of {settings.max_chart_references} references")
            found = runtime.pipeline.search(SearchRequest(search or text, top_n=top_n, highlight=False))
            references = [r.patent_id for r in found.results]
            if not references:
                fail("the search found no references")
        result = charter.chart(ChartRequest(claim, references, element, instruction, threshold))
        combos = combine(result, size=combinations) if combinations else []
    except PatentrankError as exc:
        fail(str(exc))
    for target in out or []:
        write_chart(result, target)
        typer.echo(f"wrote {target}", err=True)
    if as_json:
        body = result.as_dict()
        if combinations:
            body["combinations"] = [c.as_dict() for c in combos]
        typer.echo(json.dumps(body, ensure_ascii=False))
        return
    _print(result, combos)


def _print(chart: ClaimChart, combos: list[Combination]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    table = Table(title=chart.source or "claim chart", title_justify="left", show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("Element", overflow="fold")
    for r in chart.references:
        table.add_column(f"{r.id}\n{r.coverage:.0%} covered", overflow="fold")
    for index, text in enumerate(chart.elements):
        row = [str(index), escape(text)]
        for r in chart.references:
            cell = r.cells[index]
            mark = "green" if cell.score >= chart.threshold else "red"
            row.append(f"[{mark}]{cell.score:.3f}[/{mark}] {escape(cell.text[:160])}")
        table.add_row(*row)
    console.print(table)
    for c in combos:
        d = c.as_dict()
        console.print(
            f"{' + '.join(d['references'])}: covers {len(d['covered'])}/{len(chart.elements)} "
            f"(score {d['score']:.3f}) by element {d['by_element']}"
        )
    console.print(f"[dim]{chart.reranked_pairs} reranked pairs · {chart.took_ms:.0f} ms[/dim]")
