"""Test helpers: the lexical stage alone over an evaluation collection (the README's BM25 baselines)."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from patentrank.evaluate import Collection


def document_text(record: Mapping[str, Any]) -> str:
    """What a collection document contributes to the index: title + " " + abstract."""
    return f"{record.get('title') or ''} {record.get('abstract') or ''}".strip()


def bm25_run(
    collection: Collection, k: int = 100, show_progress: bool = False
) -> dict[str, dict[str, float]]:
    """Index the documents in a temporary `LexicalIndex` and run the queries: query id -> doc id -> score."""
    from patentrank.index.lexical import LexicalIndex

    with tempfile.TemporaryDirectory(prefix="patentrank-bm25-") as tmp:
        index = LexicalIndex(tmp)
        texts = [document_text(d) for d in collection.corpus]
        index.add(np.arange(len(texts)), texts, show_progress=show_progress)
        index.commit()
        queries = tqdm(collection.queries, disable=not show_progress, desc="BM25 search", unit="query")
        hits = [index.search(q["text"], k=k) for q in queries]
        index.close()
    doc_ids = [d["id"] for d in collection.corpus]
    return {
        query["id"]: {doc_ids[pid]: score for pid, score in found}
        for query, found in zip(collection.queries, hits, strict=True)
    }
