"""The typer application object and helpers shared by every command."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any, NoReturn

import typer

# Offline and quiet by default: no hub retries, no telemetry from any library we use.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# transformers 5 prints a load report per model (e.g. "pooler.dense.weight MISSING" for e5, whose
# pooler sentence-transformers never uses): noise to a user; errors still show. Overridable.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# OpenMP threads that wait sleep instead of spinning: a model call sharing the cores (another request's
# model, an indexer, other programs) was 1.6x slower at p50 and 3.9x at p95 with spinning; idle, a
# one-query embedding costs ~4 ms more (docs/benchmarks.md, "Threads under load"). Read when torch
# loads, which is after this; OMP_WAIT_POLICY=ACTIVE restores spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

app = typer.Typer(
    name="patentrank",
    help="Patent search: hybrid retrieval (BM25 + Qwen3-Embedding) and Qwen3-Reranker.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line to stderr and exit; bad input and unloadable models exit with 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def settings_error(exc: Any, flags: Mapping[str, str] | None = None) -> str:
    """One line for a pydantic ValidationError of `Settings`, naming what the user set: the option of
    `flags` (field -> option) when the field came from the command line, else its PATENTRANK_* variable."""
    first = exc.errors()[0]
    name = ".".join(str(part) for part in first["loc"])
    where = (flags or {}).get(name) or f"PATENTRANK_{name.upper()} ({name})"
    return f"invalid setting {where}: {first['msg']}"


def check_environment() -> None:
    """Every command reads its settings from PATENTRANK_*: a bad value exits 2 in one line, up front."""
    from pydantic import ValidationError

    from patentrank.config import get_settings

    try:
        get_settings()
    except ValidationError as exc:
        fail(settings_error(exc))


def read_lines_from_stdin() -> list[str]:
    """Non-empty lines of stdin, or [] when stdin is a terminal (nothing piped)."""
    if sys.stdin is None or sys.stdin.isatty():
        return []
    return [line.rstrip("\n") for line in sys.stdin if line.strip()]


@app.callback()
def main() -> None:
    """Patent search: hybrid retrieval (BM25 + Qwen3-Embedding) and Qwen3-Reranker.

    Models come from PATENTRANK_RERANKER_MODEL / PATENTRANK_EMBEDDER_MODEL (hub id or local folder).
    """
    from patentrank.analysis_pool import enable_parallel_analysis

    check_environment()
    enable_parallel_analysis()  # the console script guards its main module, as "spawn" needs
