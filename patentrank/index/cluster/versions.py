"""The versions of patents in a cluster index as the patents collection lists them, and the rows that
removing a version deletes, all by primary key.

Every row of a version in the patents collection carries how many passages the version has, and a
version's passage ids follow from (patent id, version, ordinal): so one query on the (small) patents
collection finds every row of every version of a batch's patents, and nothing is ever deleted by a
filter expression over the (large) passages collection. That holds because a writer upserts a
version's *claim* (part -1) before any of its passages, and a removal deletes the claim last.

How a replica writes a batch, so that concurrent and interrupted writes stay consistent:

1. one query lists every row of the batch's patents in the patents collection (`versions_of`); patents
   whose content hash equals their current version's are left alone (idempotent re-sends), and the
   rows of their older versions are removed;
2. the others' passages are made (chunking, analysis, embedding); then they get one new version
   number (time-ordered) for this batch, and a *claim* row per patent (part -1: the version and its
   passage count) is upserted with the record's later parts, then the passages (text, tokens, vector,
   filter fields), then each patent's head naming this version (the heads collection), then part 0 of
   each record, which commits that version;
3. a second query lists these patents' rows again: a patent whose newest committed version is now
   someone else's newer one loses this batch's rows; the others lose their older versions. In a bulk
   ingest this query is the next batch's step 1 query (both lists of patents in one `in [...]`): on
   Milvus Lite every query but a primary-key lookup scans the collection (0.5 s at 350k rows). Last,
   a head that does not name the newest committed version is written again (a later writer's head
   landed before ours, or its commit failed after its head); so is an unchanged patent's, at step 1.

Readers only ever see the newest committed version's passages (`reads.py`), so a reader never mixes
versions, and a replica killed at any step leaves rows that no reader sees and the next write of that
patent removes. A batch is acknowledged only after step 3; re-sending it completes it.

Removals delete by primary key only (record parts, commit mark first; passages, whose ids follow from
patent id, version and ordinal; the claim last), nothing when no older version exists: a batch of new
patents costs one query on the small patents collection (two for a lone batch) and three upserts.
Why the claims find all that the former delete-by-expression over the passages collection found:

- a passage is upserted only after its version's claim is acknowledged, and a claim is deleted only
  after its passages, so step 1 and 3's queries list every version that may have passages: the passages
  of a writer killed before its part 0 are found and deleted by the next write of that patent;
- of two writers of one patent, the one whose step 3 query comes second lists the other's claim (each
  upserted its own before its query), so the older version loses, as before;
- a removal keeps another writer's uncommitted claim until it is `STALE_CLAIM_S` (an hour) old, as that
  writer may still be upserting passages the next write must find; it upserts none later than
  `WRITE_WINDOW_S` (ten minutes) after choosing its version, and fails the batch, unacknowledged, instead.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from patentrank.corpus import Patent
from patentrank.index.cluster.reads import QUERY_CHUNK, ClusterReader, _quoted
from patentrank.index.cluster.schema import head_row, row_id, split_record

CLAIM_PART = -1  # the row a writer upserts before any passage of its version
WRITE_WINDOW_S = 600.0  # a writer upserts no passage later than this after choosing its version
STALE_CLAIM_S = 3600.0  # an uncommitted version's claim outlives its writer's window, calls and clock skew


@dataclass
class Version:
    """The rows of one version of one patent seen in the patents collection."""

    patent_id: str
    version: int
    passages: int = 0
    keys: dict[int, str] = field(default_factory=dict)  # part -> key
    content_hash: str = ""

    @property
    def committed(self) -> bool:
        return 0 in self.keys


class Found(dict[str, dict[int, Version]]):
    """patent id -> version -> its rows, as one query listed them; `heads`: patent id -> the version
    its head named just after."""

    def __init__(self) -> None:
        super().__init__()
        self.heads: dict[str, int] = {}


def versions_of(reader: ClusterReader, patent_ids: Sequence[str]) -> Found:
    """Every row of these patents in the patents collection, by patent and version (one query), then
    their heads (by primary key)."""
    found = Found()
    fields = ["key", "patent_id", "version", "part", "passages", "content_hash"]
    for start in range(0, len(patent_ids), QUERY_CHUNK):
        chunk = list(patent_ids[start : start + QUERY_CHUNK])
        for row in reader.query("patents", f"patent_id in {_quoted(chunk)}", fields, "version query"):
            pid, number = row["patent_id"], int(row["version"])
            version = found.setdefault(pid, {}).setdefault(number, Version(pid, number))
            version.keys[int(row["part"])] = row["key"]
            version.passages = max(version.passages, int(row["passages"]))
            if int(row["part"]) == 0:
                version.content_hash = row["content_hash"]
    for row in reader.by_key("heads", list(patent_ids), ["key", "version"]):
        found.heads[row["key"]] = int(row["version"])
    return found


def newest_committed(versions: dict[int, Version]) -> Version | None:
    committed = [v for v in versions.values() if v.committed]
    return max(committed, key=lambda v: v.version) if committed else None


def heads_to_write(found: Found, patent_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Head rows for these patents where `found` shows the head not naming the newest committed
    version (a race, a writer killed between its commit and its check, or an index written before
    heads). Written at the end of a check, so the last check of a patent leaves its head right."""
    rows = []
    for pid in patent_ids:
        newest = newest_committed(found.get(pid, {}))
        if newest is not None and found.heads.get(pid) != newest.version:
            rows.append(head_row(pid, newest.version))
    return rows


def claim_key(patent_id: str, version: int) -> str:
    return f"{patent_id}|{version}|{CLAIM_PART}"


@dataclass
class Removal:
    """What removing some versions deletes, in this order: record parts with the commit mark first
    (readers stop seeing a version at once), then passages, then claims (last, so that a removal cut
    short leaves the claim that lets the next write find the passages)."""

    parts: list[str] = field(default_factory=list)
    passages: list[int] = field(default_factory=list)
    claims: list[str] = field(default_factory=list)


@dataclass
class Written:
    """A batch whose versions are committed (step 2 of `ClusterIndex`'s protocol), not yet checked."""

    batch: list[Patent]
    version: int
    ours: dict[str, Version]  # patent id -> the version this batch wrote
    changed: list[str]  # the patents it wrote


def stale_after_write(written: Written, found: dict[str, dict[int, Version]]) -> list[Version]:
    """Step 3, from `found`, a query made after `written`'s commit marks: a patent whose newest
    committed version is now someone else's newer one loses this batch's rows; the others lose their
    older versions."""
    stale: list[Version] = []
    for pid in written.changed:
        mine = found.get(pid, {})
        newest = newest_committed(mine)
        if newest is not None and newest.version > written.version:  # a newer one committed meanwhile
            stale.append(written.ours[pid])
        else:
            stale += [v for v in mine.values() if v.version < written.version]
    return stale


def removal(versions: Iterable[Version], now_ns: int | None = None) -> Removal:
    """The rows to delete for `versions`. The claim of a version that is not committed stays until it
    is STALE_CLAIM_S old: its writer may still be upserting passages, which the next write must then
    still find. Its passages are deleted now either way. (A writer removing its own version passes
    it with its part 0, as committed.)"""
    now = time.time_ns() if now_ns is None else now_ns
    plan = Removal()
    for v in versions:
        plan.parts += [v.keys[p] for p in sorted(v.keys) if p != CLAIM_PART]
        plan.passages += [row_id(v.patent_id, v.version, o) for o in range(v.passages)]
        if v.committed or (now - v.version) / 1e9 > STALE_CLAIM_S:
            plan.claims.append(v.keys.get(CLAIM_PART) or claim_key(v.patent_id, v.version))
    return plan


def claim_row(patent_id: str, version: int, parts: int, passages: int, digest: str) -> dict[str, Any]:
    return {"key": claim_key(patent_id, version), "patent_id": patent_id, "version": version,
            "part": CLAIM_PART, "parts": parts, "passages": passages, "content_hash": digest,
            "record": "", "dummy": [0.0, 0.0]}  # fmt: skip


def record_rows(patent: Patent, digest: str, version: int, passages: int) -> list[dict[str, Any]]:
    """The patent's JSON record in parts (`schema.split_record`); part 0 is its commit mark."""
    pieces = split_record(orjson.dumps(patent.to_dict()).decode())
    return [
        {"key": f"{patent.id}|{version}|{part}", "patent_id": patent.id, "version": version, "part": part,
         "parts": len(pieces), "passages": passages, "content_hash": digest, "record": piece,
         "dummy": [0.0, 0.0]}
        for part, piece in enumerate(pieces)
    ]  # fmt: skip
