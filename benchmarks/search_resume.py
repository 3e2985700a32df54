"""The search benchmark's build record: what a stopped build needs to go on, written at every commit.

A 10M build takes about three hours on two cores, longer than a working session here, and a session's
end stops its processes. So at every commit of `PatentIndex.add` (5,000 patents) the build writes the
vector log's new rows (the benchmark's ground truth) and its clocks so far to `build.json` in the size's
work folder. `search_bench --resume` then goes on from the last commit:

1. the synthetic corpus is replayed up to the patents the document store holds (generation only, not
   timed), so its generators stand where they stood;
2. the index is opened as the product opens one after a crash: the journal's pending passages are
   indexed again (`PatentIndex.sync`), and that time is counted as indexing;
3. patents are added from there, and the report sums the parts: the work a stopped part did after its
   last commit is not counted; the same work redone is.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any

from benchmarks.measure import OthersCpu, StageClock, log
from benchmarks.search_ingest import STAGES, Probe, open_index
from benchmarks.synthetic_patents import World
from benchmarks.vector_log import VectorLog

RECORD_FILE = "build.json"
LOG_COLUMNS = "vector-log-columns"


class BuildRecord:
    """`build.json` of one size's work folder: the identity of the run, one entry per part (as of its
    last commit), the vector log's saved state, and the results of the finished steps."""

    def __init__(self, work: Path, data: dict[str, Any]) -> None:
        self.work, self.data = work, data
        self.uncommitted: list[Any] = []  # passages of the patents stored after the last commit
        self.unlogged: list[Any] = []  # of those, the ones already in the vector store
        self._part_started: str | None = None
        self._chars_from = 0

    @classmethod
    def new(cls, work: Path, size: int, dim: int, seed: int, hnsw_threshold: int | None) -> BuildRecord:
        identity = {"size": size, "dim": dim, "seed": seed, "hnsw_threshold": hnsw_threshold}
        return cls(work, {**identity, "parts": [], "log": None, "built": None, "commit": None})

    @classmethod
    def saved(
        cls, work: Path, size: int, dim: int, seed: int, hnsw_threshold: int | None
    ) -> BuildRecord | None:
        """The record of an earlier build of the same size, dimension, seed and threshold, if any."""
        file = work / RECORD_FILE
        if not file.exists():
            return None
        data = json.loads(file.read_text(encoding="utf-8"))
        same = (data.get("size"), data.get("dim"), data.get("seed"), data.get("hnsw_threshold"))
        if same != (size, dim, seed, hnsw_threshold) or data.get("log") is None:
            log(f"  {file} is of another run or has no commit yet: starting again")
            return None
        return cls(work, data)

    def write(self) -> None:
        tmp = self.work / (RECORD_FILE + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str), encoding="utf-8")
        os.replace(tmp, self.work / RECORD_FILE)  # a stop mid-write leaves the previous record

    # ------------------------------------------------------------------ resuming

    def open(self, world: World, hnsw_threshold: int | None) -> Probe:
        """The index and vector log as of the last recorded commit, with the timing probe installed
        and `world` replayed to the patents the document store holds."""
        index_dir, log_path = self.work / "index", self.work / "vectors.f32"
        index = open_index(world, index_dir, hnsw_threshold, read_only=True)  # sync runs under the clock
        if self.data["log"] is None:
            probe = Probe(index, world, VectorLog(log_path, world.dim))
            probe.install()
            return probe
        stored = index.docstore.count_patents()
        committed = int(self.data.get("committed_patents", stored))
        began = time.perf_counter()
        # Keep only the patents needed below: a list of every replayed patent (10 GB of text at 6M
        # passages) stays in the process's heap after it is freed and evicts the index from the page cache.
        first_patent, patents_after = None, []
        for number in range(stored):
            patent = world.next_patent()
            first_patent = first_patent or patent
            if number >= committed:
                patents_after.append(patent)
        replay_s = time.perf_counter() - began
        world.generate_s -= replay_s  # the replay is not indexing work
        vector_log = VectorLog.reopen(log_path, world.dim, self.work / LOG_COLUMNS, self.data["log"])
        probe = Probe(index, world, vector_log)
        probe.install()
        # The patents after the last commit: their passages wait in the journal, and the synthetic
        # embedder finds each one's vector by its text when `sync` embeds them.
        uncommitted = [p for patent in patents_after for p in index.passages_for(patent)]
        index.embedder.patent_of_text.update((p.text, (p.patent_id, p.ordinal)) for p in uncommitted)
        index.embedder.keep_texts = True
        probe.sample = [p.text for p in index.passages_for(first_patent)] if first_patent else []
        probe.sample += [p.text for p in uncommitted[:3000]]
        probe.passages = index.docstore.count_passages()
        committed_chars = sum(int(part.get("chars", 0)) for part in self.data["parts"])
        probe.chars = committed_chars + sum(len(p.text) for p in uncommitted)
        self.uncommitted = uncommitted
        waiting = set(index.docstore.pending_ids("vector").tolist())  # what `sync` embeds (and logs)
        self.unlogged = [p for p in uncommitted if p.passage_id not in waiting]
        log(
            f"  resuming: {stored:,} patents ({probe.passages:,} passages) stored, {committed:,} committed; "
            f"replayed in {replay_s:.0f} s; vector log at {vector_log.rows:,} rows"
        )
        return probe

    def fill_log_gaps(self, probe: Probe) -> int:
        """After `sync`: log the uncommitted passages that were already in the vector store (a stop
        between the store's save and this record), so the ground truth holds every stored vector."""
        missing = self.unlogged
        if missing:
            vectors = probe.world.vectors([(p.patent_id, p.ordinal) for p in missing])
            fields = probe.index.docstore.get_fields([p.passage_id for p in missing])
            ids = [p.passage_id for p in missing]
            probe.vector_log.append(ids, vectors, [fields[i] for i in ids])
        probe.index.embedder.keep_texts = False
        probe.index.embedder.patent_of_text.clear()
        return len(missing)

    # ------------------------------------------------------------------ recording

    def checkpoint(self, probe: Probe, rss_peak: int, others: OthersCpu, wall_s: float) -> None:
        """After a commit: save the log's new rows, then this part's clocks (replacing its last entry)."""
        began = time.perf_counter()
        part = {
            "started_at": self._part_started,
            "wall_s": wall_s,
            "passages": probe.passages,
            "patents": probe.world.patents_made,
            "chars": probe.chars - self._chars_from,
            "stages_s": {**{s: probe.clock.seconds(s) for s in STAGES}, "generation": probe.world.generate_s},
            "rss_peak_bytes": rss_peak,
            "others_cores": others.so_far(),
        }
        self.data["log"] = probe.vector_log.save_new_rows(self.work / LOG_COLUMNS)
        self.data["committed_patents"] = probe.world.patents_made
        parts = self.data["parts"]
        if parts and parts[-1].get("started_at") == part["started_at"]:
            parts[-1] = part
        else:
            parts.append(part)
        self.write()
        clock = probe.clock
        clock.self_s[StageClock.HOOKS] = clock.self_s.get(StageClock.HOOKS, 0.0) + time.perf_counter() - began

    def committed(self, probe: Probe) -> None:
        """After a commit outside the build (the timed 1,000-patent one): the log's rows and the count."""
        self.data["log"] = probe.vector_log.save_new_rows(self.work / LOG_COLUMNS)
        self.data["committed_patents"] = probe.world.patents_made
        self.write()

    def begin_part(self, probe: Probe) -> None:
        self._part_started = f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S}"
        self._chars_from = probe.chars - sum(len(p.text) for p in self.uncommitted)

    def earlier_parts(self) -> list[dict[str, Any]]:
        """The parts before this process's, as of their last commits."""
        return [p for p in self.data["parts"] if p.get("started_at") != self._part_started]


def with_earlier_parts(stats: dict[str, Any], earlier: list[dict[str, Any]]) -> dict[str, Any]:
    """This part's indexing statistics with the earlier parts' times added in (wall, stages) and their
    peaks taken; counts (passages, patents, characters) are the whole build's already."""
    if not earlier:
        return {**stats, "parts": 1}
    out = dict(stats)
    out["total_s"] = stats["total_s"] + sum(p["wall_s"] for p in earlier)
    out["stages_s"] = dict(stats["stages_s"])
    for part in earlier:
        for stage, seconds in part["stages_s"].items():
            if stage in out["stages_s"] and stage != "PatentIndex own work":
                out["stages_s"][stage] += seconds
    named = sum(v for k, v in out["stages_s"].items() if k != "PatentIndex own work")
    out["stages_s"]["PatentIndex own work"] = max(0.0, out["total_s"] - named)
    out["rss_peak_bytes"] = max([stats["rss_peak_bytes"], *(p["rss_peak_bytes"] for p in earlier)])
    weights = [p["wall_s"] for p in earlier] + [stats["total_s"]]
    cores = [p["others_cores"] for p in earlier] + [stats["others_cores"]]
    out["others_cores"] = sum(w * c for w, c in zip(weights, cores, strict=True)) / max(sum(weights), 1e-9)
    out["parts"] = len(earlier) + 1
    out["part_list"] = [*earlier, {"wall_s": stats["total_s"], "passages": stats["passages"]}]
    return out
