"""`patentrank reindex`: rebuild the lexical stage of an index folder from its document store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from patentrank.cli.app import app, fail


@app.command()
def reindex(
    index_dir: Annotated[
        str | None,
        typer.Option(
            "--index", "-i", help="Index folder (default: PATENTRANK_INDEX_DIR or .patentrank/index)."
        ),
    ] = None,
) -> None:
    """Rebuild the BM25 (tantivy) stage from the stored passages, keeping documents and vectors.

    Needed once for index folders made before the tantivy engine (their `lexical/` folder), or after
    an analyzer change. The old lexical stage serves until the new one is complete; a run killed
    midway can simply be run again. Stop other writers first.

    Example: patentrank reindex --index ./myindex
    """
    from tqdm import tqdm

    from patentrank.config import get_settings
    from patentrank.errors import PatentrankError
    from patentrank.index.cluster import is_cluster_uri
    from patentrank.index.docstore import DocStore
    from patentrank.index.lexical_rebuild import rebuild_lexical

    location = index_dir or get_settings().index_dir
    if is_cluster_uri(location):
        fail(f"{location} is an index in Milvus, which computes BM25 itself: there is nothing to reindex")
    path = Path(location).expanduser()
    if not (path / "docs.sqlite").exists():
        fail(f"no index at {path}: build one with `patentrank index FILE --index {path}`")
    try:
        store = DocStore(path / "docs.sqlite")
        total = store.count_passages()
        store.close()
        # About 3-5k passages/s on one core (Chinese segmentation dominates): say so before a long run.
        if total > 500_000:
            typer.echo(f"reindexing {total:,} passages: about {total / 4000 / 60:.0f} minutes", err=True)
        with tqdm(total=total, desc="reindex", unit="passage") as bar:
            done = rebuild_lexical(path, progress=bar.update)
    except PatentrankError as exc:
        fail(str(exc))
    typer.echo(f"index {path}: lexical stage rebuilt from {done} passages (vectors kept)")
