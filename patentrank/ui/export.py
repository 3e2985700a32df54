"""Search results as downloadable CSV and JSONL files, in a private temporary folder pruned by age."""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from patentrank.search import PatentResult, SearchResponse

CSV_COLUMNS = (
    "rank",
    "patent_id",
    "title",
    "score",
    "reranked",
    "rank_before_rerank",
    "rerank_score",
    "fused_score",
    "lexical_score",
    "lexical_rank",
    "dense_score",
    "dense_rank",
    "passage_field",
    "passage",
    "language",
    "jurisdiction",
    "priority_date",
    "publication_date",
    "codes",
    "applicants",
    "family_members",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula gets a leading apostrophe (OWASP advice)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def result_row(result: PatentResult) -> dict[str, Any]:
    """One CSV row: the patent, its best passage, and every stage's score."""
    hit = result.best_passage
    return {
        "rank": result.rank,
        "patent_id": result.patent_id,
        "title": result.title,
        "score": round(result.score, 6),
        "reranked": result.reranked,
        "rank_before_rerank": result.rank_before_rerank,
        "rerank_score": hit.rerank_score,
        "fused_score": hit.fused_score,
        "lexical_score": hit.lexical_score,
        "lexical_rank": hit.lexical_rank,
        "dense_score": hit.dense_score,
        "dense_rank": hit.dense_rank,
        "passage_field": hit.field,
        "passage": hit.text,
        "language": result.language,
        "jurisdiction": result.jurisdiction,
        "priority_date": result.priority_date,
        "publication_date": result.publication_date,
        "codes": ";".join(result.codes),
        "applicants": ";".join(result.applicants),
        "family_members": ";".join(f"{m.patent_id} ({m.reason})" for m in result.family_members),
    }


class ExportDir:
    """Writes each search's files into their own sub-folder; folders older than `max_age_s` are removed.

    Example:
        >>> csv_path, jsonl_path = ExportDir().write(response)   # doctest: +SKIP
    """

    def __init__(self, root: Path | None = None, max_age_s: float = 3600.0) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="patentrank-ui-"))
        self.max_age_s = max_age_s

    def _prune(self) -> None:
        cutoff = time.time() - self.max_age_s
        for folder in self.root.iterdir():
            try:
                if folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                continue  # removed by a concurrent prune

    def write(self, response: SearchResponse) -> tuple[str, str]:
        """(CSV path, JSONL path) for the response's results."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._prune()
        folder = self.root / uuid.uuid4().hex
        folder.mkdir()
        csv_path = folder / "patentrank-results.csv"
        with csv_path.open("w", encoding="utf-8-sig", newline="") as handle:  # BOM: Excel reads UTF-8
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for result in response.results:
                writer.writerow({k: csv_safe(v) for k, v in result_row(result).items()})
        jsonl_path = folder / "patentrank-results.jsonl"
        meta = {"query": response.query, "mode": response.mode, "by_patent": response.by_patent}
        with jsonl_path.open("w", encoding="utf-8") as handle:
            for result in response.results:
                record = {
                    **meta,
                    **result_row(result),
                    "abstract": result.abstract,
                    "highlights": result.best_passage.highlights,
                    "family_members": [asdict(m) for m in result.family_members],
                }
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        return str(csv_path), str(jsonl_path)
