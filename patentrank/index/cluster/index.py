"""`ClusterIndex`: the whole index (patents, passages, BM25, vectors) in Milvus, so that any number of
stateless server replicas can search and ingest at once.

How a replica writes a batch, so that concurrent and interrupted writes stay consistent, and why
it does: `versions.py`.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import orjson

from patentrank.analysis_pool import analyze_batch
from patentrank.chunking import DEFAULT_MAX_TOKENS, Passage, approx_tokens, patent_passages
from patentrank.corpus import Patent
from patentrank.errors import PatentrankError
from patentrank.index.cluster import schema, versions
from patentrank.index.cluster.connection import ClusterError, ClusterUnavailable, MilvusConnection
from patentrank.index.cluster.reads import (
    ClusterDocStore,
    ClusterLexical,
    ClusterReader,
    ClusterVectors,
    key_expressions,
)
from patentrank.index.cluster.schema import row_id
from patentrank.index.cluster.versions import Version, Written, newest_committed, removal
from patentrank.index.docstore_rows import content_hash
from patentrank.index.report import IngestReport, loader_rejections

EmbedObserver = Callable[[Sequence[str], float], None]
DEFAULT_DENSE_INDEX: dict[str, Any] = {
    "index_type": "HNSW",
    "metric_type": "IP",
    "params": {"M": 32, "efConstruction": 200},
}
LITE_FLUSH_PATENTS = 2048  # Lite scans unflushed rows: see `_settle`
ROWS_PER_CALL = 500  # rows per upsert: well inside gRPC's message limit with 4 KB vectors and long texts


class ClusterIndex:
    """A patent index in Milvus: the same reads (`docstore`, `lexical`, `vectors`) and writes (`add`,
    `delete`, `stats`) as `PatentIndex`, with nothing on local disk.

    `uri` is a Milvus server (``http://host:19530``; a ``milvus-lite server`` too); the collections are
    ``<prefix>_patents``, ``<prefix>_passages`` and ``<prefix>_meta``. Every Milvus call has a
    timeout of `timeout_s`; an unreachable Milvus raises `ClusterUnavailable` (HTTP 503) and the next
    call reconnects. Opening while Milvus is down succeeds, and the checks run once it answers.
    """

    def __init__(
        self,
        uri: str,
        *,
        embedder: Any | None = None,
        embed_documents: Callable[[list[str]], np.ndarray] | None = None,
        token: str | None = None,
        prefix: str = "patentrank",
        timeout_s: float = 10.0,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        dense_index: dict[str, Any] | None = None,
        search_params: dict[str, Any] | None = None,
        consistency: str = "Strong",
        create: bool = True,
    ) -> None:
        self.uri = uri
        self.path = uri  # what messages and stats call the index's location
        self.names = schema.collection_names(prefix)
        self.embedder = embedder
        self.max_tokens = max_tokens
        self._embed_documents = embed_documents
        self._dense_index = dict(dense_index or DEFAULT_DENSE_INDEX)
        self._create = create
        self._checked = False
        self._stored_dim: int | None = None
        self.is_lite = False  # Milvus Lite, as its version string says: see `_settle`
        self._write_lock = threading.Lock()
        self._last_version = 0
        self.meta: dict[str, Any] = {}
        self.connection = MilvusConnection(uri, token=token, timeout_s=timeout_s, setup=self._setup)
        self._reader = ClusterReader(self.connection, self.names, consistency)
        self.docstore = ClusterDocStore(self._reader)
        self.lexical = ClusterLexical(self._reader)
        self.vectors: ClusterVectors | None = None
        if embedder is not None:
            self.vectors = ClusterVectors(self._reader, int(embedder.dim), search_params)
        # Down now: searches answer 503 until Milvus is back; the checks run on the first connection.
        with contextlib.suppress(ClusterUnavailable):
            self.connection.client()

    # ------------------------------------------------------------ set-up on every connection

    def _setup(self, client: Any) -> None:
        timeout = self.connection.timeout_s
        existing = set(client.list_collections(timeout=timeout))
        missing = [kind for kind in ("meta", "patents", "passages") if self.names[kind] not in existing]
        if missing and not self._create:
            where = self.connection.where
            raise ClusterError(
                f"there is no patentrank index with the prefix {self.names['meta'][:-5]!r} at {where}: "
                f"ingest into it first (patentrank index FILE --index {where})"
            )
        with contextlib.suppress(Exception):  # e.g. 'milvus_lite-3.2.2'
            self.is_lite = "lite" in str(client.get_server_version(timeout=timeout)).lower()
        self._reader.is_lite = self.is_lite
        dim = int(self.embedder.dim) if self.embedder is not None else None
        if self.names["heads"] not in existing:  # also in an index from before heads: reads scan until
            missing.append("heads")  # each patent's next write
        for kind in missing:
            self._create_collection(client, kind, dim)
        for name in self.names.values():
            client.load_collection(name, timeout=max(timeout, 60.0))
        if not self._checked:
            self._check_embedder(client)
            self._checked = True

    def _create_collection(self, client: Any, kind: str, dim: int | None) -> None:
        made = {"meta": schema.meta_schema, "patents": schema.patents_schema, "heads": schema.heads_schema}
        built = made[kind]() if kind in made else schema.passages_schema(dim)
        dense = {**self._dense_index, "metric_type": "IP"} if (kind == "passages" and dim) else None
        try:
            client.create_collection(
                self.names[kind], schema=built, index_params=schema.index_params(client, kind, dense),
                timeout=max(self.connection.timeout_s, 60.0),
            )  # fmt: skip
        except Exception:
            if not client.has_collection(self.names[kind]):  # another replica may have just made it
                raise

    def _check_embedder(self, client: Any) -> None:
        """As `PatentIndex._check_embedder`: vectors of one model and one document prompt only."""
        described = client.describe_collection(self.names["passages"], timeout=self.connection.timeout_s)
        vector = next((f for f in described.get("fields", []) if f["name"] == "vector"), None)
        stored_dim = int((vector.get("params") or {}).get("dim", 0)) if vector else None
        rows = client.query(self.names["meta"], filter='key == "embedder"', output_fields=["value"],
                            consistency_level="Strong", timeout=self.connection.timeout_s)  # fmt: skip
        recorded = orjson.loads(rows[0]["value"]) if rows else None
        self.meta = {"embedder": recorded} if recorded else {}
        self._stored_dim = stored_dim
        if self.embedder is None:
            if stored_dim is None or recorded is None:
                self.vectors = None
            return
        where = f"the index at {self.connection.where} ({self.names['passages']})"
        if stored_dim is None:
            raise PatentrankError(
                f"{where} was created without vectors (lexical only): index into another prefix "
                "(PATENTRANK_MILVUS_PREFIX) to add dense search"
            )
        prompts = dict(getattr(self.embedder, "prompts", None) or {"document": "", "query": ""})
        current = {"model": str(self.embedder.model_name), "dim": int(self.embedder.dim), "prompts": prompts}
        if stored_dim != current["dim"] or (recorded and recorded["model"] != current["model"]):
            model = recorded["model"] if recorded else "another model"
            raise PatentrankError(
                f"{where} holds vectors of {model} ({stored_dim} dims) but the embedder is "
                f"{current['model']} ({current['dim']} dims): use the same model, or another prefix"
            )
        if recorded and recorded.get("prompts", {}).get("document", "") != prompts["document"]:
            raise PatentrankError(
                f"{where} holds passages embedded with the document prompt "
                f"{recorded['prompts']['document']!r}, not {prompts['document']!r}: set "
                "PATENTRANK_DOCUMENT_PROMPT to the recorded one, or index into another prefix"
            )
        if recorded is None:
            value = orjson.dumps(current).decode()
            client.upsert(self.names["meta"], [{"key": "embedder", "value": value, "dummy": [0.0, 0.0]}],
                          timeout=self.connection.timeout_s)  # fmt: skip
            self.meta = {"embedder": current}

    @property
    def embedder_name(self) -> str | None:
        recorded = self.meta.get("embedder")
        return recorded["model"] if recorded else None

    # ------------------------------------------------------------ writes

    def passages_for(self, patent: Patent) -> list[Passage]:
        return patent_passages(patent, approx_tokens, self.max_tokens)

    def add(
        self,
        patents: Iterable[Patent],
        *,
        batch_size: int = 256,
        checkpoint_every: int = 0,
        progress: Callable[[int], None] | None = None,
        on_commit: Callable[[int], None] | None = None,
        on_embedded: EmbedObserver | None = None,
    ) -> IngestReport:
        """Add or update patents (same id = update, identical content = unchanged); every batch is
        committed in Milvus before the next starts (`checkpoint_every` is accepted and ignored)."""
        report = IngestReport()
        self.connection.client()  # fail now, in one line, when Milvus is down
        with self._write_lock:
            written: Written | None = None  # the last batch written, not yet checked nor acknowledged
            unflushed = 0  # patents written since the patents collection was last flushed
            for batch in _batches(patents, batch_size):
                written = self._add_batch(batch, written, report, on_embedded, progress, on_commit)
                unflushed += len(batch)
                if self.is_lite and unflushed >= LITE_FLUSH_PATENTS:
                    self._settle(("patents",))
                    unflushed = 0
            if written is not None:
                self._check(written, self._versions(written.changed))
                self._acknowledge(written, report, progress, on_commit)
            if report.passages_written:
                self._settle()
        report.rejected += loader_rejections(patents)
        return report

    def _settle(self, kinds: tuple[str, ...] = ("passages", "patents")) -> None:
        """On Milvus Lite, flush after writing: Lite searches rows it has not flushed by brute force (a
        search over 6,000 unflushed passages took 1.4-2.9 s, 19 ms after a flush). A Milvus server
        seals segments itself and indexes growing ones, and rate-limits flushes: nothing to do there.
        Every row is durable before this; a failed flush only leaves searches slower. During a long
        ingest the patents collection alone is flushed every `LITE_FLUSH_PATENTS` patents, since every
        batch queries it twice."""
        if not self.is_lite:
            return
        timeout = max(self.connection.timeout_s, 60.0)
        for kind in kinds:
            name = self.names[kind]
            with contextlib.suppress(Exception):
                self.connection.call("flush", lambda c, n=name: c.flush(n, timeout=timeout))

    @staticmethod
    def _acknowledge(written: Written, report: IngestReport, progress: Any, on_commit: Any) -> None:
        report.committed += len({p.id for p in written.batch})
        if progress:
            progress(len(written.batch))
        if on_commit:
            on_commit(report.committed)

    def _next_version(self) -> int:
        """Time-ordered and unique across replicas (microseconds, then 3 random digits)."""
        version = time.time_ns() // 1000 * 1000 + random.randrange(1000)
        self._last_version = max(version, self._last_version + 1)
        return self._last_version

    def _add_batch(
        self,
        patents: list[Patent],
        previous: Written | None,
        report: IngestReport,
        on_embedded: EmbedObserver | None,
        progress: Any,
        on_commit: Any,
    ) -> Written:
        """Write one batch (steps 1 and 2); its step 3 shares the next batch's step 1 query, so that a
        bulk ingest costs one version query per batch. `previous` is checked and acknowledged here,
        after that query and before this batch writes anything."""
        unique = {p.id: p for p in patents}  # the last version of a patent repeated in one batch wins
        passages = {pid: self.passages_for(p) for pid, p in unique.items()}
        digests = {pid: content_hash(p, passages[pid]) for pid, p in unique.items()}
        asked = list(dict.fromkeys([*unique, *(previous.changed if previous else [])]))
        found = self._versions(asked)
        if previous is not None:
            self._check(previous, found)
            self._acknowledge(previous, report, progress, on_commit)
            # the check may have removed versions listed in `found`: removing them again is harmless
        current = {pid: v for pid in unique if (v := newest_committed(found.get(pid, {}))) is not None}
        changed = [pid for pid in unique if pid not in current or current[pid].content_hash != digests[pid]]
        same = [pid for pid in unique if pid not in changed]
        report.unchanged += len(same)
        report.added += sum(pid not in current for pid in changed)
        report.updated += sum(pid in current for pid in changed)
        # rows an interrupted earlier write of an unchanged patent left behind, and its head if wrong
        self._remove([v for p in same for v in found[p].values() if v.version < current[p].version])
        self._upsert("heads", versions.heads_to_write(found, same))
        if not changed:
            return Written(patents, 0, {}, [])
        rows = self._passage_rows([unique[pid] for pid in changed], passages, on_embedded)
        version = self._next_version()
        ours = self._write_version(version, [unique[pid] for pid in changed], passages, digests, rows)
        report.passages_written += len(rows)
        return Written(patents, version, ours, changed)

    def _check(self, written: Written, found: versions.Found) -> None:
        """Step 3 for a written batch, from a query made after its commit marks; then the heads that
        do not name the newest committed version (another writer's commit landed after ours)."""
        self._remove(versions.stale_after_write(written, found))
        self._upsert("heads", versions.heads_to_write(found, written.changed))

    def _versions(self, patent_ids: list[str]) -> versions.Found:
        return versions.versions_of(self._reader, patent_ids)

    def _write_version(
        self,
        version: int,
        patents: list[Patent],
        passages: dict[str, list[Passage]],
        digests: dict[str, str],
        rows: list[dict[str, Any]],
    ) -> dict[str, Version]:
        """Claims and later record parts, then passages, then the commit marks (part 0); returns the
        versions written."""
        chosen = time.monotonic()
        for row in rows:
            row["id"] = row_id(row["patent_id"], version, row["ordinal"])
            row["version"] = version
        parts = {p.id: versions.record_rows(p, digests[p.id], version, len(passages[p.id])) for p in patents}
        claims = [
            versions.claim_row(pid, version, len(rows_), len(passages[pid]), digests[pid])
            for pid, rows_ in parts.items()
        ]
        self._upsert("patents", claims + [row for rows_ in parts.values() for row in rows_[1:]])
        self._upsert("passages", rows, deadline=chosen + versions.WRITE_WINDOW_S)
        self._upsert("heads", [schema.head_row(pid, version) for pid in parts])  # before the commit marks:
        self._upsert("patents", [rows_[0] for rows_ in parts.values()])  # a head without one is skipped
        return {
            pid: Version(pid, version, len(passages[pid]), {r["part"]: r["key"] for r in [*rows_, claim]})
            for (pid, rows_), claim in zip(parts.items(), claims, strict=True)
        }

    def _passage_rows(
        self,
        patents: list[Patent],
        passages: dict[str, list[Passage]],
        on_embedded: EmbedObserver | None,
    ) -> list[dict[str, Any]]:
        """Passage rows without their id and version (`_write_version` sets them)."""
        if self.vectors is None and self._has_dense():
            raise ClusterError(
                f"the index at {self.connection.where} stores vectors of {self.embedder_name}: configure "
                "that embedder (PATENTRANK_EMBEDDER_MODEL) to ingest into it"
            )
        ordered = [(p, passage) for p in patents for passage in passages[p.id]]
        texts = [passage.text for _, passage in ordered]
        vectors = self._embed(texts, on_embedded) if self.vectors is not None else None
        tokens = analyze_batch(texts)  # large batches on every core, as the embedded index
        fields = {p.id: p.fields() for p in patents}
        rows = [
            schema.passage_row(fields[p.id], passage, tokens[i]) for i, (p, passage) in enumerate(ordered)
        ]
        for row, vector in zip(rows, vectors if vectors is not None else [], strict=False):
            row["vector"] = vector.tolist()
        return rows

    def _has_dense(self) -> bool:
        return bool(self._stored_dim)

    def _embed(self, texts: list[str], on_embedded: EmbedObserver | None) -> np.ndarray:
        assert self.embedder is not None
        began = time.perf_counter()
        embed = self._embed_documents or self.embedder.embed_documents
        vectors = np.asarray(embed(texts), dtype=np.float32)
        if on_embedded is not None:
            on_embedded(texts, time.perf_counter() - began)
        return vectors

    def _upsert(self, kind: str, rows: list[dict[str, Any]], deadline: float | None = None) -> None:
        name, timeout = self.names[kind], self.connection.timeout_s
        for start in range(0, len(rows), ROWS_PER_CALL):
            if deadline is not None and time.monotonic() > deadline:
                raise ClusterError(
                    f"writing one batch took over {versions.WRITE_WINDOW_S:.0f} s: it was not committed; "
                    "send it again"
                )
            chunk = rows[start : start + ROWS_PER_CALL]
            self.connection.call("upsert", lambda c, ch=chunk: c.upsert(name, ch, timeout=timeout))

    def _remove(self, stale: list[Version]) -> None:
        """Delete these versions' rows by primary key, in `versions.Removal`'s order."""
        if not stale:
            return
        plan = removal(stale)
        self._delete_keys("patents", plan.parts)
        self._delete_keys("passages", plan.passages)
        self._delete_keys("patents", plan.claims)

    def _delete_keys(self, kind: str, keys: Sequence[str] | Sequence[int]) -> None:
        name, timeout = self.names[kind], self.connection.timeout_s
        for expr in key_expressions(kind, keys):
            self.connection.call("delete", lambda c, e=expr: c.delete(name, filter=e, timeout=timeout))

    def delete(self, patent_ids: Sequence[str]) -> list[str]:
        """Remove patents (every version and passage); returns the ids that were present."""
        ids = list(dict.fromkeys(str(p) for p in patent_ids))
        with self._write_lock:
            found = self._versions(ids)
            present = [pid for pid in ids if newest_committed(found.get(pid, {})) is not None]
            self._remove([v for pid in ids for v in found.get(pid, {}).values()])
            self._delete_keys("heads", [pid for pid in ids if pid in found.heads])
        return present

    def sync(self, progress: Callable[[int], None] | None = None) -> int:
        """Nothing is journaled locally: Milvus holds every acknowledged write."""
        return 0

    # ------------------------------------------------------------ reads

    def stats(self) -> dict[str, Any]:
        passages = self.docstore.count_passages()
        return {
            "path": self.connection.where,
            "backend": "milvus",
            "collections": dict(self.names),
            "patents": self.docstore.count_patents(),
            "passages": passages,
            "lexical_passages": passages,
            "vector_passages": passages if self.vectors is not None else 0,
            "embedder": self.embedder_name,
            "waiting_for_vectors": 0,
        }

    def close(self) -> None:
        self.lexical.close()
        self.connection.close()


def _batches(patents: Iterable[Patent], size: int) -> Iterator[list[Patent]]:
    batch: list[Patent] = []
    for patent in patents:
        batch.append(patent)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
