"""`patentrank search`: the two-stage pipeline from the command line."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from patentrank.cli.app import app, fail
from patentrank.cli.index import IndexOption
from patentrank.fusion import DEFAULT_DENSE_WEIGHT, DEFAULT_FUSION, DEFAULT_LEXICAL_WEIGHT


def _marked(text: str, spans: list[tuple[int, int]], width: int = 300) -> str:
    """The passage with matching terms in bold (rich markup), cut around the first match."""
    from rich.markup import escape

    start = max(0, (spans[0][0] - 60) if spans else 0)
    end = min(len(text), start + width)
    out, pos = [], start
    for s, e in spans:
        if e <= start or s >= end:
            continue
        s, e = max(s, start), min(e, end)
        out += [escape(text[pos:s]), f"[bold yellow]{escape(text[s:e])}[/bold yellow]"]
        pos = e
    out.append(escape(text[pos:end]))
    return ("…" if start else "") + "".join(out).replace("\n", " ") + ("…" if end < len(text) else "")


@app.command()
def search(
    query: Annotated[
        str, typer.Argument(help="Free text, or a publication number in the index to search by patent.")
    ],
    index_dir: IndexOption = None,
    mode: Annotated[str, typer.Option(help="lexical, dense or hybrid.")] = "hybrid",
    top_n: Annotated[int, typer.Option("--top-n", "-n", min=1, max=1000, help="Patents to show.")] = 10,
    before: Annotated[
        str | None, typer.Option(help="Only patents dated before this day (YYYY-MM-DD).")
    ] = None,
    after: Annotated[str | None, typer.Option(help="Only patents dated on or after this day.")] = None,
    date_field: Annotated[str, typer.Option(help="priority, filing or publication.")] = "priority",
    ipc: Annotated[
        list[str] | None, typer.Option(help="IPC/CPC prefix, e.g. H04L (repeatable: any of).")
    ] = None,
    lang: Annotated[list[str] | None, typer.Option(help="Language code, e.g. zh (repeatable).")] = None,
    jurisdiction: Annotated[
        list[str] | None, typer.Option(help="Country/office code, e.g. CN (repeatable).")
    ] = None,
    rerank: Annotated[bool, typer.Option(help="Rerank the candidates with the reranker.")] = True,
    candidates: Annotated[
        int | None,
        typer.Option(min=1, max=1000, help="Passages to rerank (default: PATENTRANK_RERANK_CANDIDATES, 50)."),
    ] = None,
    instruction: Annotated[str | None, typer.Option(help="Task instruction for the models.")] = None,
    min_score: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Drop results under this score.")
    ] = None,
    collapse: Annotated[
        bool,
        typer.Option(help="One row per invention: family members and same-text twins listed on the best."),
    ] = True,
    fusion: Annotated[
        str, typer.Option(help="How hybrid combines the lists: score (normalised scores) or rrf.")
    ] = DEFAULT_FUSION,
    lexical_weight: Annotated[float, typer.Option(min=0.0, help="Weight of BM25 in the fusion.")] = (
        DEFAULT_LEXICAL_WEIGHT
    ),
    dense_weight: Annotated[float, typer.Option(min=0.0, help="Weight of the dense list in the fusion.")] = (
        DEFAULT_DENSE_WEIGHT
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print the full response as JSON.")] = False,
) -> None:
    """Search the index: BM25 + dense retrieval, fused, filtered, reranked; one row per patent.

    Example: patentrank search "锂电池负极材料" --before 2018-01-01 --ipc H01M --index ./myindex
    """
    from patentrank.config import get_settings
    from patentrank.errors import PatentrankError
    from patentrank.index.location import index_location, missing_index
    from patentrank.runtime import open_runtime
    from patentrank.search_request import parse_search

    settings = get_settings()
    path = index_location(index_dir or settings.index_dir)
    if why := missing_index(path):
        fail(why)
    form = {
        "query": query,
        "mode": mode,
        "filter": {
            "date_field": date_field,
            "before": before,
            "after": after,
            "ipc": ipc or [],
            "languages": lang or [],
            "jurisdictions": jurisdiction or [],
        },
        "top_n": top_n,
        "rerank": rerank,
        "candidates": candidates,
        "instruction": instruction,
        "min_score": min_score,
        "collapse": collapse,
        "fusion": fusion,
        "lexical_weight": lexical_weight,
        "dense_weight": dense_weight,
    }
    try:
        request = parse_search(form)  # the HTTP body's schema and limits
    except PatentrankError as exc:
        fail(f"bad {exc}")
    roles = ["embedder"] if mode != "lexical" else []
    roles += ["reranker"] if rerank else []
    try:
        runtime = open_runtime(settings, path, roles=roles, report=lambda line: typer.echo(line, err=True))
        response = runtime.pipeline.search(request)
    except PatentrankError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(response.as_dict(), ensure_ascii=False, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    title = f"by patent {response.by_patent}" if response.by_patent else f"query: {query}"
    table = Table(title=title, title_justify="left", show_lines=True)
    for column, justify in (
        ("#", "right"),
        ("Patent", "left"),
        ("Score", "right"),
        ("Was", "right"),
        ("Best passage", "left"),
    ):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for r in response.results:
        also = "".join(f"\n[dim]+ {m.patent_id} ({m.reason})[/dim]" for m in r.family_members)
        table.add_row(
            str(r.rank),
            f"{r.patent_id}\n{r.title}\n[dim]{r.priority_date or '?'} {' '.join(r.codes[:2])}[/dim]{also}",
            f"{r.score:.4f}",
            str(r.rank_before_rerank),
            _marked(r.best_passage.text, r.best_passage.highlights),
        )
    console.print(table)
    ran = [name for name, s in response.stages.items() if s.get("ran")]
    notes = [f"{name}: {s['reason']}" for name, s in response.stages.items() if not s.get("ran")]
    console.print(f"[dim]stages: {', '.join(ran)} · {response.took_ms:.0f} ms[/dim]")
    for note in notes:
        console.print(f"[dim]not run — {note}[/dim]")
