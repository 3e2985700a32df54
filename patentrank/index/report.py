"""What an ingest did, and the one shape of a record that was not stored (`Rejection`), for every
caller: `patentrank index` (text and --json), POST /v1/patents, the web page's upload and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple


class Rejection(NamedTuple):
    """One record that was not stored: where it was, why, and what is known of it.

    `where` names the record in its source: "line 3" of a JSONL/CSV file, "document 2" of an XML file,
    "patents[1]" of an HTTP request. `position` is its index there (the line or document number, or
    the request's list index), `field` the offending field when one is to blame.

    Example:
        >>> bad = Rejection("patents[1]", "id has a '/'", field="id", patent_id="a/b", position=1)
        >>> bad.as_dict()
        {'where': 'patents[1]', 'reason': "id has a '/'", 'field': 'id', 'id': 'a/b', 'index': 1}
    """

    where: str
    reason: str
    field: str | None = None
    patent_id: str | None = None
    position: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "reason": self.reason,
            "field": self.field,
            "id": self.patent_id,
            "index": self.position,
        }


@dataclass
class IngestReport:
    """What `PatentIndex.add` did; `committed` counts patents durably in every available index."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    committed: int = 0
    passages_written: int = 0
    passages_removed: int = 0
    waiting_for_vectors: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": [r.as_dict() for r in self.rejected],
            "committed": self.committed,
            "passages_written": self.passages_written,
            "passages_removed": self.passages_removed,
            "waiting_for_vectors": self.waiting_for_vectors,
        }


def loader_rejections(patents: object) -> list[Rejection]:
    """A `Rejection` for each record a loader stream skipped (`corpus.PatentStream` counts lines, the
    XML importers documents); nothing for a plain list of patents."""
    loaded = getattr(patents, "report", None)
    unit = getattr(patents, "unit", "record")
    return [
        Rejection(f"{unit} {where}", str(reason), position=int(where))
        for where, reason in getattr(loaded, "rejected", ())
    ]
