"""Rebuilding an index folder's lexical stage from its document store (`patentrank reindex`)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from patentrank.index.docstore import DocStore
from patentrank.index.lexical import LexicalIndex

LEXICAL_DIR = "bm25"  # the tantivy index of an index folder
OLD_LEXICAL_DIR = "lexical"  # format 1 (numpy BM25), read by nothing any more: `reindex` replaces it
_BUILDING, _BUILT, _REPLACED = "bm25.building", "bm25.built", "bm25.replaced"


def finish_interrupted_swap(index_dir: Path) -> None:
    """Complete a rebuild that was killed after it finished building but before the folders were swapped."""
    built, live, replaced = index_dir / _BUILT, index_dir / LEXICAL_DIR, index_dir / _REPLACED
    if built.is_dir():
        if live.exists():
            live.rename(replaced)
        built.rename(live)
    for debris in (replaced, index_dir / _BUILDING):
        shutil.rmtree(debris, ignore_errors=True)


def rebuild_lexical(
    index_dir: str | Path,
    *,
    progress: Callable[[int], None] | None = None,
    commit_every: int = 200_000,
) -> int:
    """Index every passage of the document store into a new tantivy index, then swap it in.

    The old lexical folder (either format) stays in use until the new one is complete: a run killed
    at any point leaves a working index, or a finished one that the next open swaps in. Vectors and
    documents are not touched. Journal entries for the lexical stage that existed when the rebuild
    started are cleared; later ones (another writer) stay for `PatentIndex.sync`. Returns the passages
    indexed. `progress(n)` is called after each batch of n passages.
    """
    index_dir = Path(index_dir).expanduser()
    docstore = DocStore(index_dir / "docs.sqlite")
    try:
        pending = docstore.pending_ids("lexical")
        deletes = docstore.pending_deletes("lexical")
        building = index_dir / _BUILDING
        shutil.rmtree(building, ignore_errors=True)
        fresh = LexicalIndex(building)
        total = since_commit = 0
        for batch in docstore.iter_passages(2000):
            fresh.add([p.passage_id for p, _ in batch], [p.text for p, _ in batch], [f for _, f in batch])
            total += len(batch)
            since_commit += len(batch)
            if since_commit >= commit_every:
                fresh.commit()
                since_commit = 0
            if progress:
                progress(len(batch))
        fresh.commit()
        fresh.close()
        building.rename(index_dir / _BUILT)
        finish_interrupted_swap(index_dir)
        shutil.rmtree(index_dir / OLD_LEXICAL_DIR, ignore_errors=True)
        docstore.mark_indexed([*pending.tolist(), *deletes.tolist()], "lexical")
        return total
    finally:
        docstore.close()
