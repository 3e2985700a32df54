"""`patentrank rerank`: score documents against a query with the Qwen3 reranker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from patentrank.cli.app import app, fail, read_lines_from_stdin


@app.command()
def rerank(
    query: Annotated[str, typer.Argument(help="The query, e.g. a patent title or claim.")],
    documents: Annotated[
        list[str] | None,
        typer.Argument(help="Documents to rank; read from --file or stdin (one per line) if none."),
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Read documents from this file, one per line.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Hub id or local folder (default: PATENTRANK_RERANKER_MODEL or Qwen/Qwen3-Reranker-0.6B)."
        ),
    ] = None,
    instruction: Annotated[str | None, typer.Option(help="Task instruction, best in English.")] = None,
    top_n: Annotated[int | None, typer.Option("--top-n", min=1, help="Show only the best N.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    dtype: Annotated[str | None, typer.Option(help="auto, float32, bfloat16(-mixed), int8.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Rank documents by relevance to QUERY with Qwen3-Reranker or a cross-encoder (scores in 0..1).

    Example: patentrank rerank "图像去噪方法" "U-Net 去除图像噪声" "非局部均值滤波"
    """
    from patentrank.config import get_settings
    from patentrank.errors import PatentrankError

    docs = list(documents or [])
    if file is not None:
        try:
            docs += [
                line.rstrip("\n") for line in file.read_text(encoding="utf-8").splitlines() if line.strip()
            ]
        except OSError as exc:
            fail(f"cannot read --file {file}: {exc.strerror}")
    if not docs:
        docs = read_lines_from_stdin()
    if not query.strip():
        fail("QUERY must not be empty")
    if not docs:
        fail("no documents: give them as arguments, with --file, or one per line on stdin")

    settings = get_settings()
    updates = {k: v for k, v in {"reranker_model": model, "device": device, "dtype": dtype}.items() if v}
    try:
        settings = settings.model_copy(update=updates)
        from patentrank.models.factory import load_model  # remote when PATENTRANK_RERANKER_URL is set

        reranker = load_model("reranker", settings)
        out = reranker.compute(query, docs, instruction)
    except PatentrankError as exc:
        fail(str(exc))
    order = sorted(range(len(docs)), key=lambda i: -out.scores[i])[: top_n or None]
    if as_json:
        results = [{"index": i, "relevance_score": out.scores[i], "document": docs[i]} for i in order]
        usage = {"prompt_tokens": out.prompt_tokens, "truncated_documents": out.truncated}
        typer.echo(
            json.dumps({"model": reranker.model_name, "results": results, "usage": usage}, ensure_ascii=False)
        )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Query: {query}", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("Score", justify="right")
    table.add_column("Input", justify="right")
    table.add_column("Document", overflow="fold")
    for rank, i in enumerate(order, 1):
        table.add_row(str(rank), f"{out.scores[i]:.4f}", str(i), docs[i])
    console = Console()
    console.print(table)
    note = f" ({len(out.truncated)} truncated to {reranker.max_length} tokens)" if out.truncated else ""
    console.print(f"[dim]{reranker.model_name} · {out.prompt_tokens} prompt tokens{note}[/dim]")
