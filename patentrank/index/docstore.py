"""The SQLite document store: patents, their passages with filter columns, and an indexing journal."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from patentrank.chunking import Passage
from patentrank.corpus import Patent
from patentrank.errors import InputError, PatentrankError
from patentrank.families import FAMILY_ID_KEY, Identity
from patentrank.index.docstore_rows import (
    FIELD_COLUMNS,
    JSON_IDS,
    PASSAGE_COLUMNS,
    as_array,
    content_hash,
    fields_from_row,
    ids_json,
    passage_rows,
    patent_from_row,
    patent_row,
)
from patentrank.index.docstore_schema import (
    SCHEMA_VERSION,
    connect,
    identity_row,
    init_schema,
    tune_for_writing,
)
from patentrank.index.filters import PassageFields, SearchFilter

__all__ = ["DEFAULT_STAGES", "SCHEMA_VERSION", "DocStore", "UpsertResult"]

DEFAULT_STAGES: tuple[str, ...] = ("lexical", "vector")


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
        >>> import datetime, tempfile
        >>> from patentrank.chunking import patent_passages
        >>> folder = tempfile.TemporaryDirectory()
        >>> store = DocStore(f"{folder.name}/docs.sqlite")
        >>> patents = [
        ...     Patent(id="CN103456789A", title="一种锂电池负极材料", claims=["一种负极材料，包括硅。"],
        ...            priority_date=datetime.date(2013, 5, 6)),
        ...     Patent(id="US2021118123A1", title="Silicon anode", priority_date=datetime.date(2019, 3, 1)),
        ... ]
        >>> result = store.upsert_patents(patents, {p.id: patent_passages(p) for p in patents})
        >>> result.counts, len(result.written_ids), len(store.pending_ids("lexical"))
        ((2, 0, 0), 3, 3)
        >>> allowed = store.allowed_passage_ids(SearchFilter(before="2015-01-01", languages=["zh"]))
        >>> [(p.patent_id, p.field) for p in store.get_passages(allowed)]
        [('CN103456789A', 'title_abstract'), ('CN103456789A', 'claim')]
        >>> store.upsert_patents(patents, {p.id: patent_passages(p) for p in patents}).counts  # unchanged
        (0, 0, 2)
        >>> store.close()
        >>> folder.cleanup()
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
            init_schema(self._conn(), self.path)

    # ------------------------------------------------------------ connections

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise PatentrankError(f"the document store {self.path} is closed")
        conn = connect(self.path, self._timeout_s)
        self._local.conn = conn
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            conn = self._conn()
            if not getattr(self._local, "writer", False):
                tune_for_writing(conn)
                self._local.writer = True
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
                digest = content_hash(patent, passages)
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
        result.removed_ids, result.written_ids = as_array(removed), as_array(written)
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
        conn.execute(
            "INSERT OR REPLACE INTO patents VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", patent_row(patent, digest)
        )
        family = patent.metadata.get(FAMILY_ID_KEY)
        conn.execute(
            "INSERT OR REPLACE INTO identities VALUES (?,?,?)",
            identity_row(patent.id, patent.title, patent.abstract, family),
        )
        try:
            conn.executemany(
                "INSERT INTO passages VALUES (?,?,?,?,?,?,?,?,?,?,?)", passage_rows(patent, passages)
            )
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
            sql = f"SELECT passage_id FROM passages WHERE patent_id IN {JSON_IDS}"
            removed = [r[0] for r in conn.execute(sql, params)]
            conn.execute(f"DELETE FROM passages WHERE patent_id IN {JSON_IDS}", params)
            conn.execute(f"DELETE FROM patents WHERE id IN {JSON_IDS}", params)
            conn.execute(f"DELETE FROM identities WHERE id IN {JSON_IDS}", params)
            self._journal(conn, removed, "delete")
        return as_array(removed)

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
                f"DELETE FROM pending WHERE stage = ? AND passage_id IN {JSON_IDS}",
                (stage, ids_json(ids)),
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
        sql = f"SELECT * FROM patents WHERE id IN {JSON_IDS}"
        cursor = self._conn().execute(sql, (orjson.dumps(list(ids)).decode(),))
        names = [c[0] for c in cursor.description]
        patents = (patent_from_row(names, row) for row in cursor)
        return {patent.id: patent for patent in patents}

    def get_identities(self, ids: Iterable[str]) -> dict[str, Identity]:
        """`families.stored_identity` (family id, digest of the normalised title + abstract) of the
        stored patents among `ids`, from the narrow identities table written with each patent."""
        sql = f"SELECT id, family_id, text_key FROM identities WHERE id IN {JSON_IDS}"
        rows = self._conn().execute(sql, (orjson.dumps(list(ids)).decode(),))
        return {r[0]: Identity(r[1], r[2]) for r in rows}

    def _select_ids(self, columns: str, ids: Iterable[int] | np.ndarray) -> sqlite3.Cursor:
        sql = f"SELECT {columns} FROM passages WHERE passage_id IN {JSON_IDS} ORDER BY passage_id"
        return self._conn().execute(sql, (ids_json(ids),))

    def get_passages(self, ids: Iterable[int] | np.ndarray) -> list[Passage]:
        """Passages in the order of `ids`; unknown ids are skipped."""
        ids = [int(i) for i in ids]
        found = {row[0]: Passage(*row) for row in self._select_ids(PASSAGE_COLUMNS, ids)}
        return [found[i] for i in ids if i in found]

    def get_passage_heads(self, ids: Iterable[int] | np.ndarray) -> dict[int, tuple[str, str]]:
        """(patent id, field) of these passages without their text, keyed by passage id."""
        return {r[0]: (r[1], r[2]) for r in self._select_ids("passage_id, patent_id, field", ids)}

    def get_fields(self, ids: Iterable[int] | np.ndarray) -> dict[int, PassageFields]:
        """The filter fields of these passages, keyed by passage id."""
        return {r[0]: fields_from_row(r[1:]) for r in self._select_ids(f"passage_id, {FIELD_COLUMNS}", ids)}

    def passages_of(self, patent_id: str) -> list[Passage]:
        sql = f"SELECT {PASSAGE_COLUMNS} FROM passages WHERE patent_id = ? ORDER BY ordinal"
        return [Passage(*row) for row in self._conn().execute(sql, (patent_id,))]

    def iter_passages(
        self, batch_size: int = 1000, ids: Iterable[int] | np.ndarray | None = None
    ) -> Iterator[list[tuple[Passage, PassageFields]]]:
        """Batches of (passage, fields) in passage id order: all passages, or only `ids` (e.g. pending)."""
        columns = f"{PASSAGE_COLUMNS}, {FIELD_COLUMNS}"
        if ids is not None:
            wanted = sorted({int(i) for i in ids})
            for start in range(0, len(wanted), batch_size):
                rows = self._select_ids(columns, wanted[start : start + batch_size])
                if batch := [(Passage(*r[:5]), fields_from_row(r[5:])) for r in rows]:
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
            yield [(Passage(*r[:5]), fields_from_row(r[5:])) for r in rows]
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
