"""DocStore writes: `upsert_patents` + `mark_indexed` per batch of 64 synthetic patents, with the writer
tuning (`docstore_schema.tune_for_writing`: page cache, WAL checkpoint interval) and without it (SQLite's
defaults, as before), alternating, each in a fresh store. Run one benchmark at a time:

    flock /tmp/patentrank-bench.lock .venv/bin/python -m benchmarks.docstore_bench --patents 30000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `patentrank` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common as bench
from benchmarks.measure import OthersCpu
from benchmarks.synthetic_patents import World
from patentrank.chunking import DEFAULT_MAX_TOKENS, approx_tokens, patent_passages
from patentrank.index import docstore as docstore_module
from patentrank.index.docstore import DocStore


def run(batches: list, tuned: bool, folder: Path) -> tuple[int, float]:
    real = docstore_module.tune_for_writing
    if not tuned:
        docstore_module.tune_for_writing = lambda conn: None
    try:
        store = DocStore(folder / "docs.sqlite")
        start, rows = time.perf_counter(), 0
        for patents, passages in batches:
            written = store.upsert_patents(patents, passages).written_ids
            rows += len(written)
            for stage in store.stages:
                store.mark_indexed(written, stage)
        seconds = time.perf_counter() - start
        store.close()
    finally:
        docstore_module.tune_for_writing = real
    return rows, seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patents", type=int, default=30_000, help="synthetic patents (~5.4 passages each)")
    parser.add_argument("--rounds", type=int, default=2, help="before/after pairs")
    args = parser.parse_args()
    print(f"CPU {bench.cpu_model()}, ISA {' '.join(bench.cpu_isa_flags())}, logical CPUs {os.cpu_count()}")
    world = World(args.patents * 6, 8, 0)
    batches = []
    for _ in range(args.patents // 64):
        patents = [world.next_patent() for _ in range(64)]
        chunked = {p.id: patent_passages(p, approx_tokens, DEFAULT_MAX_TOKENS) for p in patents}
        batches.append((patents, chunked))
    rows_out = []
    bench.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    with OthersCpu() as others:
        for _ in range(args.rounds):
            for tuned in (False, True):
                with tempfile.TemporaryDirectory(dir=bench.RESULTS_DIR) as folder:
                    rows, seconds = run(batches, tuned, Path(folder))
                label = "tuned writer (now)" if tuned else "SQLite defaults (before)"
                rows_out.append([label, f"{rows:,}", f"{seconds:.1f} s", f"{rows / seconds:,.0f}"])
                print(rows_out[-1], flush=True)
    print(bench.markdown_table(["DocStore writer", "passages", "time", "passages/s"], rows_out))
    print(f"other processes' CPU meanwhile: {others.cores:.2f} cores")


if __name__ == "__main__":
    main()
