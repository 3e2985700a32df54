"""FaissStore's side table (``fields.sqlite``): passage id -> slot and the passage's filterable fields.

The SQL lives here so that the store reads as what it does with vectors; every statement takes its
ids in chunks of `SQL_CHUNK` (SQLite allows 32766 parameters).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import numpy as np

from patentrank.index.filters import PassageFields

SQL_CHUNK = 10_000  # ids per `IN (...)` list
LOAD_CHUNK = 200_000  # rows per step when loading every row (the filter columns, on open)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS passages (
    id INTEGER PRIMARY KEY, slot INTEGER NOT NULL UNIQUE, patent_id TEXT NOT NULL,
    language TEXT NOT NULL, jurisdiction TEXT NOT NULL, codes TEXT NOT NULL,
    priority INTEGER NOT NULL, filing INTEGER NOT NULL, publication INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS passages_patent ON passages (patent_id);
"""


def chunks(values: np.ndarray) -> list[np.ndarray]:
    return [values[i : i + SQL_CHUNK] for i in range(0, len(values), SQL_CHUNK)]


def marks(count: int) -> str:
    return ",".join("?" * count)


def slots_of(db: sqlite3.Connection, ids: np.ndarray) -> np.ndarray:
    """The slots of these passage ids (unknown ids have none)."""
    found: list[int] = []
    for chunk in chunks(ids):
        sql = f"SELECT slot FROM passages WHERE id IN ({marks(len(chunk))})"
        found.extend(row[0] for row in db.execute(sql, chunk.tolist()))
    return np.array(found, dtype=np.int64)


def slots_of_patents(db: sqlite3.Connection, patent_ids: Sequence[str]) -> list[int]:
    slots: list[int] = []
    for i in range(0, len(patent_ids), SQL_CHUNK):
        chunk = list(patent_ids[i : i + SQL_CHUNK])
        sql = f"SELECT slot FROM passages WHERE patent_id IN ({marks(len(chunk))})"
        slots.extend(row[0] for row in db.execute(sql, chunk))
    return slots


def delete_ids(db: sqlite3.Connection, ids: np.ndarray) -> None:
    for chunk in chunks(ids):
        db.execute(f"DELETE FROM passages WHERE id IN ({marks(len(chunk))})", chunk.tolist())


def fields_of(db: sqlite3.Connection, ids: np.ndarray) -> dict[int, PassageFields]:
    """The stored fields of these passages (unknown ids are absent)."""
    out: dict[int, PassageFields] = {}
    for chunk in chunks(ids):
        sql = (
            "SELECT id, patent_id, language, jurisdiction, codes, priority, filing, publication "
            f"FROM passages WHERE id IN ({marks(len(chunk))})"
        )
        for pid, patent, lang, juris, codes, pri, fil, pub in db.execute(sql, chunk.tolist()):
            codes_tuple = tuple(c for c in codes.split("|") if c)
            out[int(pid)] = PassageFields(patent, lang, juris, codes_tuple, pri, fil, pub)
    return out
