"""The versions of patents in a cluster index as the patents collection lists them, and the rows that
removing a version deletes, all by primary key.

Every row of a version in the patents collection carries how many passages the version has, and a
version's passage ids follow from (patent id, version, ordinal): so one query on the (small) patents
collection finds every row of every version of a batch's patents, and nothing is ever deleted by a
filter expression over the (large) passages collection. That holds because a writer upserts a
version's *claim* (part -1) before any of its passages, and a removal deletes the claim last.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from patentrank.corpus import Patent
from patentrank.index.cluster.reads import QUERY_CHUNK, ClusterReader, _quoted
from patentrank.index.cluster.schema import split_record

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


def versions_of(reader: ClusterReader, patent_ids: Sequence[str]) -> dict[str, dict[int, Version]]:
    """patent id -> version -> its rows, for every row of these patents in the patents collection."""
    found: dict[str, dict[int, Version]] = {}
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
    return found


def newest_committed(versions: dict[int, Version]) -> Version | None:
    committed = [v for v in versions.values() if v.committed]
    return max(committed, key=lambda v: v.version) if committed else None


def row_id(patent_id: str, version: int, ordinal: int) -> int:
    """A passage row's primary key: 63 bits of blake2b(patent id | version | ordinal)."""
    digest = hashlib.blake2b(f"{patent_id}|{version}|{ordinal}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


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
