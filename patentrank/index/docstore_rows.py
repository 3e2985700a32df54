"""The document store's rows and back: `Patent`, `Passage` and `PassageFields` as SQLite columns."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import orjson

from patentrank.chunking import Passage
from patentrank.corpus import Patent
from patentrank.index.filters import PassageFields

PATENT_COLUMNS = (
    *("id", "title", "abstract", "claims", "description", "priority_date", "filing_date"),
    *("publication_date", "codes", "applicants", "language", "jurisdiction", "metadata", "content_hash"),
)  # the `patents` table, in order
PASSAGE_COLUMNS = "passage_id, patent_id, ordinal, field, text"  # the fields of `Passage`, in order
FIELD_COLUMNS = "patent_id, language, jurisdiction, codes, priority, filing, publication"
JSON_IDS = "(SELECT value FROM json_each(?))"  # `IN {JSON_IDS}` with one `ids_json(...)` parameter
_JSON_LISTS = ("claims", "codes", "applicants", "metadata")
_DATES = ("priority_date", "filing_date", "publication_date")


def ids_json(ids: Iterable[int] | np.ndarray) -> str:
    """Ids as one JSON parameter for `JSON_IDS`: no SQLite variable limit, however many ids."""
    return orjson.dumps([int(i) for i in ids]).decode()


def as_array(ids: Iterable[int]) -> np.ndarray:
    """Sorted unique int64 ids."""
    return np.array(sorted(set(ids)), dtype=np.int64)


def content_hash(patent: Patent, passages: Sequence[Passage]) -> str:
    """sha256 of the patent and its passages: an upsert with the same hash changes nothing.

    Passages count too: re-chunking with another budget must rewrite an otherwise identical patent.
    """
    payload = [patent.to_dict(), [(p.passage_id, p.ordinal, p.field, p.text) for p in passages]]
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


def patent_row(patent: Patent, digest: str) -> tuple[Any, ...]:
    """The `patents` row of a patent (list and object fields as JSON, dates as ISO strings).

    Example:
        >>> patent = Patent(id="EP3456789B1", title="Battery pack", codes=["H01M 10/60"])
        >>> row = patent_row(patent, content_hash(patent, []))
        >>> row[PATENT_COLUMNS.index("codes")]
        '["H01M 10/60"]'
        >>> patent_from_row(PATENT_COLUMNS, row) == patent
        True
    """
    d = patent.to_dict()
    return (
        *(d[k] for k in ("id", "title", "abstract")),
        orjson.dumps(d["claims"]).decode(),
        *(d[k] for k in ("description", "priority_date", "filing_date", "publication_date")),
        orjson.dumps(d["codes"]).decode(),
        orjson.dumps(d["applicants"]).decode(),
        d["language"],
        d["jurisdiction"],
        orjson.dumps(d["metadata"]).decode(),
        digest,
    )


def passage_rows(patent: Patent, passages: Sequence[Passage]) -> list[tuple[Any, ...]]:
    """The `passages` rows: each passage with the filter fields its patent gives every passage."""
    f = patent.fields()
    shared = (f.language, f.jurisdiction, f.codes_text, f.priority, f.filing, f.publication)
    return [(p.passage_id, p.patent_id, p.ordinal, p.field, p.text, *shared) for p in passages]


def patent_from_row(names: Sequence[str], row: Sequence[Any]) -> Patent:
    """The `Patent` of a `SELECT * FROM patents` row whose column names are `names`."""
    d = dict(zip(names, row, strict=True))
    d.pop("content_hash")
    for key in _JSON_LISTS:
        d[key] = orjson.loads(d[key])
    for key in _DATES:
        d[key] = dt.date.fromisoformat(d[key]) if d[key] else None
    return Patent(**d)


def fields_from_row(row: Sequence[Any]) -> PassageFields:
    """`PassageFields` from the `FIELD_COLUMNS` of a passage row.

    Example:
        >>> fields_from_row(("CN1", "zh", "CN", "|H04L9/32|G06N3/08|", 20190301, 0, 0)).codes
        ('H04L9/32', 'G06N3/08')
    """
    patent_id, language, jurisdiction, codes_text, priority, filing, publication = row
    codes = tuple(codes_text.strip("|").split("|")) if codes_text else ()
    return PassageFields(patent_id, language, jurisdiction, codes, priority, filing, publication)
