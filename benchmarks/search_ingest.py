"""The search benchmark's indexing: one real `PatentIndex.add` timed stage by stage, and one commit of
1,000 more patents into the built index."""

from __future__ import annotations

import inspect
import sys
import time
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common as bench
from benchmarks.analysis_cache import memoized_jieba
from benchmarks.measure import OthersCpu, StageClock, disk_usage, progress_bar
from benchmarks.synthetic_patents import World
from benchmarks.vector_log import VectorLog
from patentrank import text as text_module
from patentrank.corpus import Patent
from patentrank.index.patent_index import PatentIndex

# Stages of `PatentIndex.add`, each timed by wrappers around the index's parts (self time: the analyzer
# inside the lexical engine is charged to "analysis" only). "embedding" is the synthetic stand-in.
STAGES = ("chunking", "analysis", "docstore", "lexical engine", "vectors", "embedding", StageClock.HOOKS)
ANALYZER_FUNCTIONS = ("analyze", "analyze_many", "analyze_with_offsets")


class SyntheticEmbedder:
    """Stands in for the embedder: each passage's clustered vector from `World` (no model runs)."""

    def __init__(self, world: World, patent_of_text: dict[str, tuple[str, int]]) -> None:
        self.world, self.patent_of_text = world, patent_of_text
        self.dim, self.model_name = world.dim, f"synthetic-clustered-{world.dim}d"
        self.keep_texts = False  # while a resumed build's `sync` embeds the passages of many batches

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.world.vectors([self.patent_of_text[t] for t in texts])
        if not self.keep_texts:
            self.patent_of_text.clear()  # one call per PatentIndex batch, after its chunking
        return vectors


def _wrap_public(clock: StageClock, obj: Any, stage: str, skip: Sequence[str] = ()) -> list[str]:
    """Wrap every public method of `obj` (not properties); returns the names wrapped."""
    names = []
    for name in dir(type(obj)):
        if name.startswith("_") or name in skip:
            continue
        attr = inspect.getattr_static(type(obj), name, None)
        if isinstance(attr, types.FunctionType):
            try:
                if clock.wrap(obj, name, stage):
                    names.append(name)
            except AttributeError:  # a class with __slots__: its methods cannot be shadowed
                pass
    return names


@dataclass
class Probe:
    """The timing wrappers around one `PatentIndex`, and what they saw."""

    index: PatentIndex
    world: World
    vector_log: VectorLog
    clock: StageClock = field(default_factory=StageClock)
    passages: int = 0
    chars: int = 0
    sample: list[str] = field(default_factory=list)
    vector_kinds: list[str] = field(default_factory=list)
    captured_tokens: dict[str, list[str]] | None = None  # analyze(text) results, while set
    captured_passages: list[Any] | None = None  # chunked passages, while set

    def install(self) -> None:
        index, clock = self.index, self.clock
        patent_of_text = index.embedder.patent_of_text

        def chunked(_: tuple, passages: list[Any]) -> None:
            self.passages += len(passages)
            self.chars += sum(len(p.text) for p in passages)
            patent_of_text.update((p.text, (p.patent_id, p.ordinal)) for p in passages)
            if len(self.sample) < 3000:
                self.sample += [p.text for p in passages]
            if self.captured_passages is not None:
                self.captured_passages += passages

        def analysed(args: tuple, tokens: Any) -> None:
            if self.captured_tokens is not None and args and isinstance(args[0], str):
                self.captured_tokens[args[0]] = tokens

        if not clock.wrap(index, "passages_for", "chunking", chunked):
            module = sys.modules[type(index).__module__]
            assert clock.wrap(module, "patent_passages", "chunking", chunked), "no chunking hook found"
        _wrap_public(clock, index.docstore, "docstore")
        # The analyzer wherever the lexical engine's module bound it by name, and in its own module.
        analyzer = {name: getattr(text_module, name, None) for name in ANALYZER_FUNCTIONS}
        for module in (sys.modules[type(index.lexical).__module__], text_module):
            for name, function in analyzer.items():
                if function is not None and getattr(module, name, None) is function:
                    clock.wrap(module, name, "analysis", analysed if name == "analyze" else None)
        _wrap_public(clock, index.lexical, "lexical engine")
        clock.wrap(index.embedder, "embed_documents", "embedding")
        if index.vectors is not None:
            _wrap_public(clock, index.vectors, "vectors", skip=("upsert", "save"))
            clock.wrap(index.vectors, "upsert", "vectors", lambda args, _: self.vector_log.append(*args[:3]))
            clock.wrap(
                index.vectors,
                "save",
                "vectors",
                lambda *_: self.vector_kinds.append(str(getattr(index.vectors, "kind", "?"))),
            )

    def calls(self, stage: str, name: str) -> list[float]:
        """Wall time (not self time) of each call of one wrapped method (kept by the clock per name)."""
        return self.clock.wall.get(f"{stage}:{name}", [])


def _stage_seconds(clock: StageClock, total: float, generation: float) -> dict[str, float]:
    stages = {s: clock.seconds(s) for s in STAGES}
    stages["generation"] = generation
    stages["PatentIndex own work"] = max(0.0, total - sum(stages.values()))
    return stages


def open_index(
    world: World, folder: Path, hnsw_threshold: int | None, read_only: bool = False
) -> PatentIndex:
    options = {} if hnsw_threshold is None else {"hnsw_threshold": hnsw_threshold}
    return PatentIndex(
        folder, embedder=SyntheticEmbedder(world, {}), vector_options=options, read_only=read_only
    )


def fresh_probe(world: World, folder: Path, log_path: Path, hnsw_threshold: int | None) -> Probe:
    """A new index in `folder` with the timing probe installed and an empty vector log."""
    probe = Probe(open_index(world, folder, hnsw_threshold), world, VectorLog(log_path, world.dim))
    probe.install()
    return probe


def ingest(
    probe: Probe, memo_jieba: bool, record: Any = None, batch_size: int = 64, checkpoint_every: int = 5000
) -> dict[str, Any]:
    """`PatentIndex.add` end to end with the product's defaults (checkpoints of 5,000 patents, the CLI's
    batches of 64 with an embedder), each stage timed inside that one run; `record` (a
    `search_resume.BuildRecord`, optional) is written at every commit. A resumed build first finishes
    the journal (`sync`, as opening an index after a crash does), on the clock."""
    index, world = probe.index, probe.world
    if record is not None:
        record.begin_part(probe)
    bar = progress_bar(world.size, "indexing")
    bar.update(probe.passages)
    try:
        with memoized_jieba(memo_jieba), bench.RssSampler(0.05) as rss, OthersCpu() as others:
            start = time.perf_counter()
            synced = index.sync()
            if record is not None:
                record.fill_log_gaps(probe)
            report = index.add(
                world.patents(lambda: probe.passages),
                batch_size=batch_size,
                checkpoint_every=checkpoint_every,
                progress=lambda _: bar.update(probe.passages - bar.n),
                on_commit=None
                if record is None
                else lambda _: record.checkpoint(probe, rss.peak_bytes, others, time.perf_counter() - start),
            )
            merge_wait = wait_for_background_merge(index)  # the last merge is part of the build
            total = time.perf_counter() - start
    finally:
        bar.close()
    stages = _stage_seconds(probe.clock, total, world.generate_s)
    commits = _commit_laps(probe)
    stats = {
        "passages": probe.passages,
        "patents": world.patents_made,
        "chars": probe.chars,
        "synced_at_start": synced,
        "final_merge_wait_s": merge_wait,
        "added_in_last_part": report.added,
        "total_s": total,
        "stages_s": stages,
        "memo_jieba": memo_jieba,
        "rss_peak_bytes": rss.peak_bytes,
        "rss_delta_bytes": rss.delta_bytes,
        "others_cores": others.cores,
        "lexical_commits": len(commits),
        "lexical_last_commit_s": commits[-1] if commits else None,
        "vector_saves": len(probe.vector_kinds),
        "vector_kind": str(getattr(index.vectors, "kind", "?")),
        "lexical_health": _lexical_health(index),
        "lexical_dir": Path(index.lexical.path).name + "/",
        "disk_bytes": disk_usage(Path(index.path)),
        "wrapped": probe.clock.wrapped,
    }
    return stats


def wait_for_background_merge(index: PatentIndex) -> float:
    """Seconds spent waiting for the vector store's background merge, if it runs one (FaissStore since
    325e1fa); that work is in no stage's self time (it runs on its own thread)."""
    wait = getattr(index.vectors, "wait_for_merge", None)
    if wait is None:
        return 0.0
    began = time.perf_counter()
    wait()
    return time.perf_counter() - began


def _commit_laps(probe: Probe) -> list[float]:
    return probe.calls("lexical engine", "commit")


def _lexical_health(index: PatentIndex) -> dict[str, Any]:
    """What the engine says about itself (terms, segments...), without its free-text detail."""
    try:
        health = index.lexical.health()
    except Exception:  # an engine without health() just has nothing to add
        return {}
    return {k: v for k, v in health.items() if k not in ("ok", "detail")} if isinstance(health, dict) else {}


def commit_batch(probe: Probe, patents: list[Patent], legacy: Any | None) -> dict[str, Any]:
    """Time `PatentIndex.add` of new patents (one checkpoint, so one commit) end to end on the built
    index, with the real (uncached) analyzer; then the same passages into the legacy BM25 index,
    given the tokens the analyzer produced for the new engine, so analysis is not paid twice."""
    index, clock = probe.index, probe.clock
    before = dict(clock.self_s)
    commits_before = len(probe.calls("lexical engine", "commit"))
    passages_before = probe.passages
    probe.captured_tokens, probe.captured_passages = {}, []
    try:
        with bench.RssSampler(0.05) as rss, OthersCpu() as others:
            start = time.perf_counter()
            report = index.add(patents, batch_size=64)
            total = time.perf_counter() - start
            merge_after = wait_for_background_merge(index)
        tokens, new_passages = probe.captured_tokens, probe.captured_passages
    finally:
        probe.captured_tokens = probe.captured_passages = None
    stages = {s: clock.seconds(s) - before.get(s, 0.0) for s in STAGES}
    stages["PatentIndex own work"] = max(0.0, total - sum(stages.values()))
    commit_calls = probe.calls("lexical engine", "commit")[commits_before:]
    out = {
        "patents": report.added,
        "passages": probe.passages - passages_before,
        "total_s": total,
        "stages_s": stages,
        "background_merge_after_s": merge_after,  # a merge this commit started: searches wait for it
        "lexical_commit_s": float(sum(commit_calls)),
        "lexical_commits": len(commit_calls),
        "rss_peak_bytes": rss.peak_bytes,
        "others_cores": others.cores,
        "analysed_chars": sum(len(t) for t in tokens),
    }
    if legacy is not None:
        ids = [p.passage_id for p in new_passages]
        toks = [tokens[p.text] if p.text in tokens else text_module.analyze(p.text) for p in new_passages]
        start = time.perf_counter()
        legacy.add_tokens(ids, toks)
        staged = time.perf_counter() - start
        legacy.commit()
        out["legacy"] = {
            "staging_s": staged,
            "commit_s": time.perf_counter() - start - staged,
            "passages": legacy.count(),
        }
    return out
