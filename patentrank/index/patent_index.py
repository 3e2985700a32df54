"""`PatentIndex`: one index folder (documents, BM25, vectors) kept consistent through crashes."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from patentrank.chunking import DEFAULT_MAX_TOKENS, Passage, approx_tokens, patent_passages
from patentrank.corpus import Patent
from patentrank.errors import InputError, PatentrankError
from patentrank.index.base import VectorStore
from patentrank.index.docstore import DocStore
from patentrank.index.filters import PassageFields
from patentrank.index.lexical import LexicalIndex, LexicalIndexError
from patentrank.index.lexical_rebuild import LEXICAL_DIR, OLD_LEXICAL_DIR, finish_interrupted_swap
from patentrank.index.report import IngestReport, Rejection, loader_rejections  # noqa: F401 (re-exported)

META_FILE = "index.json"
LEXICAL, VECTOR = "lexical", "vector"
EmbedObserver = Callable[[Sequence[str], float], None]  # (passages embedded, seconds it took)


class PatentIndex:
    """An index folder: `docs.sqlite` (patents, passages, journal), `bm25/` (tantivy) and the vectors.

    Every write goes to the document store first, in one transaction that also journals what the
    BM25 and vector indexes must do; those indexes are committed at checkpoints, and only then is
    the journal cleared. A run killed at any point therefore leaves a consistent store, and the next
    `open` (or `sync`) finishes the journal: nothing reported as committed is lost.

    Without an embedder the index is lexical only; passages wait in the journal for vectors and are
    embedded by the first run that has an embedder.

    Example (lexical only: pass `embedder=Embedder(...)` for vectors as well):
        >>> import tempfile
        >>> from patentrank.corpus import load_patents, sample_corpus_path
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     index = PatentIndex(folder)
        ...     report = index.add(load_patents(sample_corpus_path()))
        ...     again = index.add(load_patents(sample_corpus_path()))  # idempotent by id
        ...     stats = index.stats()
        ...     index.close()
        >>> report.added, again.added, again.unchanged, stats["patents"], stats["vector_passages"]
        (49, 0, 49, 49, 0)
    """

    def __init__(
        self,
        path: str | Path,
        *,
        embedder: Any | None = None,
        embed_documents: Callable[[list[str]], np.ndarray] | None = None,
        vector_store: str = "faiss",
        vector_options: dict[str, Any] | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        read_only: bool = False,
    ) -> None:
        from patentrank.index.stores import open_vector_store

        self.path = Path(path).expanduser()
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"index path {str(self.path)!r} is a file, not a folder", field="index")
        self.path.mkdir(parents=True, exist_ok=True)
        self.max_tokens = max_tokens
        self.embedder = embedder
        # How passages are embedded: the embedder itself, or what the composition root injects (the
        # server's engine batcher, so ingest shares the searches' queue and tokenizer thread).
        self._embed_documents = embed_documents
        self._write_lock = threading.Lock()
        self._on_embedded: EmbedObserver | None = None
        self.meta = self._read_meta()
        self.docstore = DocStore(self.path / "docs.sqlite", stages=(LEXICAL, VECTOR))
        self.lexical = self._open_lexical()
        self.vectors: VectorStore | None = None
        if embedder is not None:
            self._check_embedder(embedder)
            self.vectors = open_vector_store(vector_store, self.path, embedder.dim, **(vector_options or {}))
        if not read_only:
            self.sync()

    # ------------------------------------------------------------ metadata

    def _open_lexical(self) -> LexicalIndex:
        finish_interrupted_swap(self.path)
        if (self.path / OLD_LEXICAL_DIR / "CURRENT").exists() and not (self.path / LEXICAL_DIR).exists():
            raise LexicalIndexError(
                f"the index at {self.path} has its lexical stage in the old format (before tantivy): "
                f"run `patentrank reindex --index {self.path}` once (documents and vectors are kept)"
            )
        return LexicalIndex(self.path / LEXICAL_DIR)

    def _read_meta(self) -> dict[str, Any]:
        file = self.path / META_FILE
        if not file.exists():
            return {}
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PatentrankError(f"{file} is damaged ({exc}); delete it to rebuild its record") from exc

    def _write_meta(self) -> None:
        tmp = self.path / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(self.meta, indent=2), encoding="utf-8")
        tmp.replace(self.path / META_FILE)

    def _check_embedder(self, embedder: Any) -> None:
        """Vectors from two models, or from one model with two document prompts, are not comparable:
        refuse an embedder other than the index's own. (The query prompt is applied at search time and
        is recorded for information only.)"""
        recorded = self.meta.get("embedder")
        prompts = dict(getattr(embedder, "prompts", None) or {"document": "", "query": ""})
        current = {"model": str(embedder.model_name), "dim": int(embedder.dim), "prompts": prompts}
        if recorded and (recorded["model"], recorded["dim"]) != (current["model"], current["dim"]):
            raise PatentrankError(
                f"the index at {self.path} holds vectors of {recorded['model']} ({recorded['dim']} dims) "
                f"but the embedder is {current['model']} ({current['dim']} dims): use the same model "
                "(PATENTRANK_EMBEDDER_MODEL / PATENTRANK_EMBEDDING_DIM), or index into a new folder"
            )
        # Indexes from before prompts were recorded embedded documents bare.
        built_with = (recorded or {}).get("prompts", {"document": ""})["document"]
        if recorded and built_with != prompts["document"]:
            raise PatentrankError(
                f"the index at {self.path} holds passages embedded with the document prompt {built_with!r} "
                f"but the embedder now puts {prompts['document']!r} before them: set "
                f"PATENTRANK_DOCUMENT_PROMPT={built_with!r} to search this index as it was built, or index "
                "into a new folder to use the new prompt"
            )
        if recorded != current:
            self.meta["embedder"] = current
            self._write_meta()

    @property
    def embedder_name(self) -> str | None:
        recorded = self.meta.get("embedder")
        return recorded["model"] if recorded else None

    # ------------------------------------------------------------ writes

    def passages_for(self, patent: Patent) -> list[Passage]:
        # A model-free token estimate keeps chunking (and so passage ids) the same whichever model is
        # loaded; the budget leaves room for the query in the reranker's prompt.
        return patent_passages(patent, approx_tokens, self.max_tokens)

    def add(
        self,
        patents: Iterable[Patent],
        *,
        batch_size: int = 256,
        checkpoint_every: int = 5000,
        progress: Callable[[int], None] | None = None,
        on_commit: Callable[[int], None] | None = None,
        on_embedded: EmbedObserver | None = None,
    ) -> IngestReport:
        """Add or update patents (same id = update; identical content = unchanged).

        `progress(n)` is called after every batch with the patents read; `on_commit(total)` each
        time a checkpoint makes them durable in every index; `on_embedded(texts, seconds)` after each
        embedder call (what `patentrank.cost.WorkMeter.observe` takes, to estimate the time left).
        """
        report = IngestReport()
        with self._write_lock, self._lexical_writer(), self._observing(on_embedded):
            since_checkpoint = 0
            batch: list[Patent] = []
            for patent in patents:
                batch.append(patent)
                if len(batch) >= batch_size:
                    since_checkpoint += self._add_batch(batch, report)
                    if progress:
                        progress(len(batch))
                    batch = []
                    if since_checkpoint >= checkpoint_every:
                        self._checkpoint(report, since_checkpoint, on_commit)
                        since_checkpoint = 0
            if batch:
                since_checkpoint += self._add_batch(batch, report)
                if progress:
                    progress(len(batch))
            self._checkpoint(report, since_checkpoint, on_commit)
        report.rejected += loader_rejections(patents)
        return report

    def _add_batch(self, patents: list[Patent], report: IngestReport) -> int:
        unique: dict[str, Patent] = {}
        for p in patents:
            unique[p.id] = p  # the last version of a patent repeated in one batch wins
        passages = {pid: self.passages_for(p) for pid, p in unique.items()}
        result = self.docstore.upsert_patents(unique.values(), passages)
        report.added += result.added
        report.updated += result.updated
        report.unchanged += result.unchanged
        report.passages_written += len(result.written_ids)
        report.passages_removed += len(result.removed_ids)
        by_id = {p.passage_id: (p, unique[p.patent_id].fields()) for ps in passages.values() for p in ps}
        written = [by_id[int(i)] for i in result.written_ids]
        self._apply(result.removed_ids, written)
        return len(unique)

    @contextlib.contextmanager
    def _observing(self, on_embedded: EmbedObserver | None) -> Iterator[None]:
        self._on_embedded = on_embedded
        try:
            yield
        finally:
            self._on_embedded = None

    def _embed(self, texts: list[str]) -> np.ndarray:
        assert self.embedder is not None
        began = time.perf_counter()
        vectors = (self._embed_documents or self.embedder.embed_documents)(texts)
        if self._on_embedded is not None:
            self._on_embedded(texts, time.perf_counter() - began)
        return vectors

    @contextlib.contextmanager
    def _lexical_writer(self) -> Iterator[None]:
        """Hold the lexical writer for one write call only, so other processes can write between calls
        (a server that ingested once must not lock `patentrank index` out)."""
        try:
            yield
        finally:
            self.lexical.release_writer()

    def _apply(self, removed: np.ndarray, written: Sequence[tuple[Passage, PassageFields]]) -> None:
        """Stage removals and writes in BM25 and, when there is an embedder, in the vector store."""
        if len(removed):
            self.lexical.delete(removed)
        if written:
            self.lexical.add(
                [p.passage_id for p, _ in written], [p.text for p, _ in written], [f for _, f in written]
            )
        if self.vectors is None or self.embedder is None:
            return
        if len(removed):
            self.vectors.delete(removed.tolist())
        if written:
            vectors = self._embed([p.text for p, _ in written])
            self.vectors.upsert([p.passage_id for p, _ in written], vectors, [f for _, f in written])

    def _checkpoint(self, report: IngestReport, newly: int, on_commit: Callable[[int], None] | None) -> None:
        """Make the staged index changes durable, then clear their journal entries."""
        self.lexical.commit()
        self.docstore.clear_pending(LEXICAL)
        if self.vectors is not None:
            self.vectors.save()
            self.docstore.clear_pending(VECTOR)
        report.committed += newly
        report.waiting_for_vectors = len(self.docstore.pending_ids(VECTOR))
        if on_commit:
            on_commit(report.committed)

    def delete(self, patent_ids: Sequence[str]) -> list[str]:
        """Remove patents from every index; returns the ids that were present."""
        with self._write_lock, self._lexical_writer():
            present = list(self.docstore.get_patents(patent_ids))
            removed = self.docstore.delete_patents(present)
            self._apply(removed, [])
            self._checkpoint(IngestReport(), 0, None)
        return present

    def sync(self, progress: Callable[[int], None] | None = None) -> int:
        """Finish what an interrupted run left in the journal; returns the passages handled."""
        with self._write_lock, self._lexical_writer():
            handled = 0
            stages = [LEXICAL] + ([VECTOR] if self.vectors is not None else [])
            for stage in stages:
                deletes = self.docstore.pending_deletes(stage)
                pending = self.docstore.pending_ids(stage)
                if not len(deletes) and not len(pending):
                    continue
                self._sync_stage(stage, deletes, pending, progress)
                handled += len(deletes) + len(pending)
            return handled

    def _sync_stage(
        self, stage: str, deletes: np.ndarray, pending: np.ndarray, progress: Callable[[int], None] | None
    ) -> None:
        if stage == LEXICAL:
            if len(deletes):
                self.lexical.delete(deletes)
            for batch in self.docstore.iter_passages(1000, ids=pending):
                self.lexical.add(
                    [p.passage_id for p, _ in batch], [p.text for p, _ in batch], [f for _, f in batch]
                )
                if progress:
                    progress(len(batch))
            self.lexical.commit()
        else:
            assert self.vectors is not None and self.embedder is not None
            if len(deletes):
                self.vectors.delete(deletes.tolist())
            for batch in self.docstore.iter_passages(256, ids=pending):
                vectors = self._embed([p.text for p, _ in batch])
                self.vectors.upsert([p.passage_id for p, _ in batch], vectors, [f for _, f in batch])
                if progress:
                    progress(len(batch))
            self.vectors.save()
        self.docstore.mark_indexed(np.concatenate([deletes, pending]), stage)

    # ------------------------------------------------------------ reads

    def stats(self) -> dict[str, Any]:
        """Sizes and state, for the CLI, /health and the UI."""
        return {
            "path": str(self.path),
            "patents": self.docstore.count_patents(),
            "passages": self.docstore.count_passages(),
            "lexical_passages": self.lexical.count(),
            "vector_passages": self.vectors.count() if self.vectors is not None else 0,
            "embedder": self.embedder_name,
            "waiting_for_vectors": len(self.docstore.pending_ids(VECTOR)),
        }

    def close(self) -> None:
        for part in (self.lexical, self.vectors, self.docstore):
            close = getattr(part, "close", None)
            if close:
                close()
