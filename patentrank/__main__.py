"""`python -m patentrank` runs the CLI."""

from patentrank.cli import app

if __name__ == "__main__":  # worker processes ("spawn") import this module again: they must not run the CLI
    app()
