"""The document store's SQLite file: its tables, its schema version, and how a connection is opened."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import orjson

from patentrank.errors import PatentrankError
from patentrank.families import FAMILY_ID_KEY, stored_identity

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: the identities table (1 is migrated on open)

# What collapsing compares (`families.stored_identity`), one narrow row per patent written with it: a
# search reads ~200 of these instead of every candidate's title, abstract and metadata (which sits
# past the description) and normalising them again.
IDENTITIES = """
CREATE TABLE IF NOT EXISTS identities (
    id TEXT PRIMARY KEY,             -- patents.id
    family_id TEXT,                  -- NULL when none
    text_key TEXT NOT NULL           -- digest of the normalised title + abstract, '' when empty
) WITHOUT ROWID;
"""

SCHEMA = """
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
""" + IDENTITIES


def connect(path: Path, timeout_s: float) -> sqlite3.Connection:
    """A connection in WAL mode with explicit transactions (BEGIN IMMEDIATE) and foreign keys on.

    check_same_thread=False only so that `DocStore.close()` may close other threads' connections;
    each thread still uses its own.
    """
    try:
        conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: consistent after a crash
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.DatabaseError as exc:
        raise PatentrankError(f"cannot open the document store {path}: {exc}") from None
    return conn


# A writing connection's page cache and WAL size before a checkpoint. Passage ids are hashes, so each
# batch of inserts touches pages all over the table; with SQLite's defaults (2 MB cache, a checkpoint
# every 1,000 pages) every batch rewrote and synced those pages again. Writes of synthetic patents are
# 1.5x faster with these (docs/scale.md, "The document store"). Readers keep SQLite's defaults.
WRITER_CACHE_KIB = 65_536
WAL_CHECKPOINT_PAGES = 100_000  # ~400 MB of WAL at 4 KiB pages; truncated again at each checkpoint


def tune_for_writing(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
    conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
    conn.execute(f"PRAGMA journal_size_limit={64 * 1024 * 1024}")


def init_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Create the tables in a new file; refuse a file that is not a store or has another version.

    Example:
        >>> import sqlite3
        >>> conn = sqlite3.connect(":memory:", isolation_level=None)
        >>> init_schema(conn, Path(":memory:"))
        >>> conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        True
        >>> _ = conn.execute("PRAGMA user_version = 7")
        >>> init_schema(conn, Path("docs.sqlite"))
        Traceback (most recent call last):
        patentrank.errors.PatentrankError: docs.sqlite has schema version 7; this patentrank reads 1 and 2
    """
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise PatentrankError(f"{path} is not a patentrank document store: {exc}") from None
    if version not in (0, 1, SCHEMA_VERSION):
        raise PatentrankError(
            f"{path} has schema version {version}; this patentrank reads 1 and {SCHEMA_VERSION}"
        )
    if version == 0:
        conn.executescript(f"BEGIN; {SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
    elif version == 1:
        add_identities(conn, path)


def add_identities(conn: sqlite3.Connection, path: Path, batch: int = 10_000) -> None:
    """Version 1 -> 2: the identities table, filled from the stored patents in one transaction (a store
    interrupted here is still version 1, unchanged, and is migrated on its next open)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have migrated it between our first look and this lock.
        if conn.execute("PRAGMA user_version").fetchone()[0] == 1:
            total = conn.execute("SELECT COUNT(*) FROM patents").fetchone()[0]
            if total:
                log.info("%s: adding the identities of %s patents (once, for schema version 2)", path, total)
            conn.execute(IDENTITIES)  # one statement: executescript would commit the open transaction
            cursor = conn.execute("SELECT id, title, abstract, metadata FROM patents")
            while rows := cursor.fetchmany(batch):
                rows = [identity_row(i, t, a, orjson.loads(m).get(FAMILY_ID_KEY)) for i, t, a, m in rows]
                conn.executemany("INSERT OR REPLACE INTO identities VALUES (?,?,?)", rows)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def identity_row(patent_id: str, title: str, abstract: str, family_id: object) -> tuple[str, str | None, str]:
    """The `identities` row of a patent."""
    ident = stored_identity(title, abstract, family_id)
    return patent_id, ident.family_id, ident.text
