"""The SQLite document store: patents, their passages with filter columns, and an indexing journal."""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from patentrank.chunking import Passage
from patentrank.corpus import Patent
from patentrank.errors import InputError, PatentrankError
from patentrank.families import Identity, identity
from patentrank.index.filters import PassageFields, SearchFilter

SCHEMA_VERSION = 1
DEFAULT_STAGES: tuple[str, ...] = ("lexical", "vector")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS patents (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    abstract TEXT NOT NULL,
    claims TEXT NOT NULL,            -- JSON list of strings
    description TEXT,
    priority_date TEXT,              -- ISO dates, NULL when unknown
    filing_date TEXT,
    publication_date TEXT,
    codes TEXT NOT NULL,             -- JSON list
    applicants TEXT NOT NULL,        -- JSON list
    language TEXT NOT NULL,
    jurisdiction TEXT NOT NULL,
    metadata TEXT NOT NULL,          -- JSON object
    content_hash TEXT NOT NULL       -- sha256 of the patent and its passages
);
CREATE TABLE IF NOT EXISTS passages (
    passage_id INTEGER PRIMARY KEY,
    patent_id TEXT NOT NULL REFERENCES patents(id),
    ordinal INTEGER NOT NULL,
    field TEXT NOT NULL,
    text TEXT NOT NULL,
    language TEXT NOT NULL,          -- the PassageFields columns that SearchFilter.to_sql() names
    jurisdiction TEXT NOT NULL,
    codes TEXT NOT NULL,             -- PassageFields.codes_text: '|A61B5/00|G06N3/08|'
    priority INTEGER NOT NULL,       -- YYYYMMDD, 0 = unknown
    filing INTEGER NOT NULL,
    publication INTEGER NOT NULL,
    UNIQUE (patent_id, ordinal)
);
CREATE INDEX IF NOT EXISTS passages_priority ON passages(priority);
CREATE INDEX IF NOT EXISTS passages_filing ON passages(filing);
CREATE INDEX IF NOT EXISTS passages_publication ON passages(publication);
CREATE INDEX IF NOT EXISTS passages_language ON passages(language);
CREATE INDEX IF NOT EXISTS passages_jurisdiction ON passages(jurisdiction);
-- What each index (stage) still has to do: 'index' a written passage or 'delete' a removed one.
CREATE TABLE IF NOT EXISTS pending (
    passage_id INTEGER NOT NULL,
    stage TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('index', 'delete')),
    PRIMARY KEY (passage_id, stage)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_stage ON pending(stage, action);
"""

_PASSAGE_COLUMNS = "passage_id, patent_id, ordinal, field, text"
_FIELD_COLUMNS = "patent_id, language, jurisdiction, codes, priority, filing, publication"
_JSON_IDS = "(SELECT value FROM json_each(?))"


@dataclass
class UpsertResult:
    """Counts of one `upsert_patents` call and the passage ids the indexes must act on."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed_ids: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # delete from indexes
    written_ids: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # (re)index these

    @property
    def counts(self) -> tuple[int, int, int]:
        return self.added, self.updated, self.unchanged


def _ids_json(ids: Iterable[int] | np.ndarray) -> str:
    # One JSON parameter with json_each() instead of thousands of '?': no SQLite variable limit.
    return orjson.dumps([int(i) for i in ids]).decode()


def _as_array(ids: Iterable[int]) -> np.ndarray:
    return np.array(sorted(set(ids)), dtype=np.int64)


def _fields_from_row(row: Sequence[Any]) -> PassageFields:
    patent_id, language, jurisdiction, codes_text, priority, filing, publication = row
    codes = tuple(codes_text.strip("|").split("|")) if codes_text else ()
    return PassageFields(patent_id, language, jurisdiction, codes, priority, filing, publication)


def _content_hash(patent: Patent, passages: Sequence[Passage]) -> str:
    # Passages count too: re-chunking with another budget must rewrite an otherwise identical patent.
    payload = [patent.to_dict(), [(p.passage_id, p.ordinal, p.field, p.text) for p in passages]]
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


class DocStore:
    """Patents and passages in one SQLite file (WAL mode; JSON columns, never pickle).

    Thread safety: each thread gets its own connection (readers run concurrently under WAL);
    writes are serialised by a process-wide lock and SQLite's busy timeout guards against other
    processes. Every write is one transaction, so a kill -9 leaves either all or none of it.

    The `pending` journal is written in the same transaction as the passages. An indexer calls
    `mark_indexed(ids, stage)` after its own index has durably stored them; on the next start,
    `pending_ids(stage)` / `pending_deletes(stage)` list what an interrupted run left undone.
    Run one indexer per stage at a time: a re-upsert between reading and marking is not detected.

    Example:
        >>> store = DocStore("index/docs.sqlite")
        >>> result = store.upsert_patents([patent], {patent.id: patent_passages(patent)})
        >>> store.allowed_passage_ids(SearchFilter(before="2015-01-01", languages=["zh"]))
    """

    def __init__(self, path: str | Path, *, stages: Sequence[str] = DEFAULT_STAGES, timeout_s: float = 30.0):
        self.path = Path(path)
        self.stages = tuple(stages)
        self._timeout_s = timeout_s
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._write_lock:
            self._init_schema(self._conn())

    # ------------------------------------------------------------ connections

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise PatentrankError(f"the document store {self.path} is closed")
        try:
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE in _write).
            # check_same_thread=False only so that close() may close other threads' connections.
            conn = sqlite3.connect(
                self.path, timeout=self._timeout_s, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: consistent after a crash
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            raise PatentrankError(f"cannot open the document store {self.path}: {exc}") from None
        self._local.conn = conn
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise PatentrankError(f"{self.path} is not a patentrank document store: {exc}") from None
        if version not in (0, SCHEMA_VERSION):
            raise PatentrankError(
                f"{self.path} has schema version {version}; this patentrank reads version {SCHEMA_VERSION}"
            )
        if version == 0:
            conn.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close every thread's connection; the store cannot be used afterwards."""
        self._closed = True
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    def __enter__(self) -> DocStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ writes

    def upsert_patents(
        self, patents: Iterable[Patent], passages_by_patent: Mapping[str, Sequence[Passage]]
    ) -> UpsertResult:
        """Add or replace patents with their passages, in one transaction.

        An identical patent with identical passages is left alone ('unchanged'); a changed one has
        all its passages rewritten and journaled for indexing, and the ids it no longer has are
        returned in `removed_ids` (and journaled as deletes).
        """
        result = UpsertResult()
        removed: set[int] = set()
        written: set[int] = set()
        with self._write() as conn:
            for patent in patents:
                passages = self._checked_passages(patent, passages_by_patent)
                digest = _content_hash(patent, passages)
                row = conn.execute("SELECT content_hash FROM patents WHERE id = ?", (patent.id,)).fetchone()
                if row and row[0] == digest:
                    result.unchanged += 1
                    continue
                new_ids = {p.passage_id for p in passages}
                if row:
                    result.updated += 1
                    old = conn.execute("SELECT passage_id FROM passages WHERE patent_id = ?", (patent.id,))
                    removed.update(pid for (pid,) in old if pid not in new_ids)
                    conn.execute("DELETE FROM passages WHERE patent_id = ?", (patent.id,))
                else:
                    result.added += 1
                self._insert(conn, patent, passages, digest)
                removed.difference_update(new_ids)  # removed earlier in this batch, back again now
                written.update(new_ids)
            self._journal(conn, removed, "delete")
            self._journal(conn, written, "index")
        result.removed_ids, result.written_ids = _as_array(removed), _as_array(written)
        return result

    @staticmethod
    def _checked_passages(
        patent: Patent, passages_by_patent: Mapping[str, Sequence[Passage]]
    ) -> list[Passage]:
        if patent.id not in passages_by_patent:
            raise InputError(f"no passages given for patent {patent.id}", field="passages_by_patent")
        passages = list(passages_by_patent[patent.id])
        for p in passages:
            if p.patent_id != patent.id:
                raise InputError(f"passage {p.passage_id} belongs to {p.patent_id}, not {patent.id}")
        return passages

    def _insert(self, conn: sqlite3.Connection, patent: Patent, passages: list[Passage], digest: str) -> None:
        d = patent.to_dict()
        conn.execute(
            "INSERT OR REPLACE INTO patents VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                *(d[k] for k in ("id", "title", "abstract")),
                orjson.dumps(d["claims"]).decode(),
                *(d[k] for k in ("description", "priority_date", "filing_date", "publication_date")),
                orjson.dumps(d["codes"]).decode(),
                orjson.dumps(d["applicants"]).decode(),
                d["language"],
                d["jurisdiction"],
                orjson.dumps(d["metadata"]).decode(),
                digest,
            ),
        )
        f = patent.fields()
        shared = (f.language, f.jurisdiction, f.codes_text, f.priority, f.filing, f.publication)
        rows = [(p.passage_id, p.patent_id, p.ordinal, p.field, p.text, *shared) for p in passages]
        try:
            conn.executemany("INSERT INTO passages VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
        except sqlite3.IntegrityError as exc:
            raise PatentrankError(
                f"cannot store the passages of {patent.id}: {exc} (a passage id collision or a duplicate "
                "ordinal); nothing from this batch was stored"
            ) from None

    def _journal(self, conn: sqlite3.Connection, ids: Iterable[int], action: str) -> None:
        rows = [(pid, stage, action) for pid in ids for stage in self.stages]
        conn.executemany("INSERT OR REPLACE INTO pending VALUES (?,?,?)", rows)

    def delete_patents(self, ids: Iterable[str]) -> np.ndarray:
        """Remove patents and their passages; returns the removed passage ids (journaled as deletes)."""
        params = (orjson.dumps(list(ids)).decode(),)
        with self._write() as conn:
            sql = f"SELECT passage_id FROM passages WHERE patent_id IN {_JSON_IDS}"
            removed = [r[0] for r in conn.execute(sql, params)]
            conn.execute(f"DELETE FROM passages WHERE patent_id IN {_JSON_IDS}", params)
            conn.execute(f"DELETE FROM patents WHERE id IN {_JSON_IDS}", params)
            self._journal(conn, removed, "delete")
        return _as_array(removed)

    # ------------------------------------------------------------ journal

    def _check_stage(self, stage: str) -> None:
        if stage not in self.stages:
            raise InputError(
                f"unknown index stage {stage!r}; this store journals {self.stages}", field="stage"
            )

    def _pending(self, stage: str, action: str) -> np.ndarray:
        self._check_stage(stage)
        sql = "SELECT passage_id FROM pending WHERE stage = ? AND action = ? ORDER BY passage_id"
        return np.fromiter((r[0] for r in self._conn().execute(sql, (stage, action))), dtype=np.int64)

    def pending_ids(self, stage: str) -> np.ndarray:
        """Passage ids written but not yet marked as indexed by `stage`."""
        return self._pending(stage, "index")

    def pending_deletes(self, stage: str) -> np.ndarray:
        """Passage ids removed here that `stage`'s index may still hold."""
        return self._pending(stage, "delete")

    def mark_indexed(self, ids: Iterable[int] | np.ndarray, stage: str) -> None:
        """Clear the journal for these ids once `stage`'s index has durably applied them."""
        self._check_stage(stage)
        with self._write() as conn:
            conn.execute(
                f"DELETE FROM pending WHERE stage = ? AND passage_id IN {_JSON_IDS}",
                (stage, _ids_json(ids)),
            )

    def clear_pending(self, stage: str) -> None:
        """Forget all of `stage`'s journal, e.g. after rebuilding its index from `iter_passages`."""
        self._check_stage(stage)
        with self._write() as conn:
            conn.execute("DELETE FROM pending WHERE stage = ?", (stage,))

    # ------------------------------------------------------------ reads

    def get_patent(self, patent_id: str) -> Patent | None:
        return self.get_patents([patent_id]).get(patent_id)

    def get_patents(self, ids: Iterable[str]) -> dict[str, Patent]:
        """The stored patents among `ids`, keyed by id (unknown ids are absent)."""
        sql = f"SELECT * FROM patents WHERE id IN {_JSON_IDS}"
        cursor = self._conn().execute(sql, (orjson.dumps(list(ids)).decode(),))
        names = [c[0] for c in cursor.description]
        out: dict[str, Patent] = {}
        for row in cursor:
            d = dict(zip(names, row, strict=True))
            d.pop("content_hash")
            for key in ("claims", "codes", "applicants", "metadata"):
                d[key] = orjson.loads(d[key])
            for key in ("priority_date", "filing_date", "publication_date"):
                d[key] = dt.date.fromisoformat(d[key]) if d[key] else None
            out[d["id"]] = Patent(**d)
        return out

    def get_identities(self, ids: Iterable[str]) -> dict[str, Identity]:
        """`families.Identity` (family id, normalised title + abstract) of the stored patents among
        `ids`; reads only those columns, so collapsing a few hundred candidates stays cheap."""
        sql = (
            "SELECT id, title, abstract, json_extract(metadata, '$.family_id') FROM patents "
            f"WHERE id IN {_JSON_IDS}"
        )
        rows = self._conn().execute(sql, (orjson.dumps(list(ids)).decode(),))
        return {r[0]: identity(r[1], r[2], r[3]) for r in rows}

    def _select_ids(self, columns: str, ids: Iterable[int] | np.ndarray) -> sqlite3.Cursor:
        sql = f"SELECT {columns} FROM passages WHERE passage_id IN {_JSON_IDS} ORDER BY passage_id"
        return self._conn().execute(sql, (_ids_json(ids),))

    def get_passages(self, ids: Iterable[int] | np.ndarray) -> list[Passage]:
        """Passages in the order of `ids`; unknown ids are skipped."""
        ids = [int(i) for i in ids]
        found = {row[0]: Passage(*row) for row in self._select_ids(_PASSAGE_COLUMNS, ids)}
        return [found[i] for i in ids if i in found]

    def get_passage_heads(self, ids: Iterable[int] | np.ndarray) -> dict[int, tuple[str, str]]:
        """(patent id, field) of these passages without their text, keyed by passage id."""
        return {r[0]: (r[1], r[2]) for r in self._select_ids("passage_id, patent_id, field", ids)}

    def get_fields(self, ids: Iterable[int] | np.ndarray) -> dict[int, PassageFields]:
        """The filter fields of these passages, keyed by passage id."""
        return {r[0]: _fields_from_row(r[1:]) for r in self._select_ids(f"passage_id, {_FIELD_COLUMNS}", ids)}

    def passages_of(self, patent_id: str) -> list[Passage]:
        sql = f"SELECT {_PASSAGE_COLUMNS} FROM passages WHERE patent_id = ? ORDER BY ordinal"
        return [Passage(*row) for row in self._conn().execute(sql, (patent_id,))]

    def iter_passages(
        self, batch_size: int = 1000, ids: Iterable[int] | np.ndarray | None = None
    ) -> Iterator[list[tuple[Passage, PassageFields]]]:
        """Batches of (passage, fields) in passage id order: all passages, or only `ids` (e.g. pending)."""
        columns = f"{_PASSAGE_COLUMNS}, {_FIELD_COLUMNS}"
        if ids is not None:
            wanted = sorted({int(i) for i in ids})
            for start in range(0, len(wanted), batch_size):
                rows = self._select_ids(columns, wanted[start : start + batch_size])
                if batch := [(Passage(*r[:5]), _fields_from_row(r[5:])) for r in rows]:
                    yield batch
            return
        last = -1  # keyset pagination: stable and cheap however large the table
        while (
            rows := self._conn()
            .execute(
                f"SELECT {columns} FROM passages WHERE passage_id > ? ORDER BY passage_id LIMIT ?",
                (last, batch_size),
            )
            .fetchall()
        ):
            yield [(Passage(*r[:5]), _fields_from_row(r[5:])) for r in rows]
            last = rows[-1][0]

    def allowed_passage_ids(self, flt: SearchFilter | None = None) -> np.ndarray:
        """Sorted ids of the passages that satisfy `flt` (all passages when it is None or empty)."""
        where, params = flt.to_sql() if flt is not None else ("1=1", [])
        cursor = self._conn().execute(
            f"SELECT passage_id FROM passages WHERE {where} ORDER BY passage_id", params
        )
        return np.fromiter((r[0] for r in cursor), dtype=np.int64)

    def count_patents(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM patents").fetchone()[0]

    def count_passages(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM passages").fetchone()[0]

    def health(self) -> dict[str, object]:
        """{'ok', 'detail', 'patents', 'passages', 'pending'} for /health; never raises."""
        try:
            conn = self._conn()
            pending = dict(conn.execute("SELECT stage, COUNT(*) FROM pending GROUP BY stage").fetchall())
            return {
                "ok": True,
                "detail": str(self.path),
                "patents": self.count_patents(),
                "passages": self.count_passages(),
                "pending": pending,
            }
        except Exception as exc:  # health must report, not raise
            return {"ok": False, "detail": f"{self.path}: {exc}"}
