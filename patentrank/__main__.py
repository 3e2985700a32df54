"""`python -m patentrank` runs the CLI."""

from patentrank.cli import app

app()
