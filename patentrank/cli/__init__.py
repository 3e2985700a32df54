"""The `patentrank` command line: one typer app, one small module per command group."""

from __future__ import annotations

from patentrank.cli.app import app

# Each module registers its commands on `app` when imported.
from patentrank.cli import eval, index, reindex, rerank, search, serve  # noqa: F401  isort: skip
from patentrank.cli import chart  # noqa: F401  isort: skip

__all__ = ["app"]
