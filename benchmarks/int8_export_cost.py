"""The one-time cost of `dtype=int8`: seconds and peak RSS of one load that exports (or reuses) the model.

Run from the repository root (under `flock /tmp/patentrank-bench.lock`), in a fresh process per model:
    .venv/bin/python -m benchmarks.int8_export_cost --kind reranker --model benchmarks/results/models/X
Prints one JSON line: kind, model, exported (False: a cached export was reused), seconds, peak RSS and
the export's size on disk. rerank_bench's (g) then loads the cached export, so its RSS is a user's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common as bench


def main(argv: list[str] | None = None) -> None:
    bench.quiet_environment()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kind", choices=("reranker", "embedder"), required=True)
    parser.add_argument("--model", required=True, help="a local model folder")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.kind == "reranker":
        from patentrank import Reranker

        model = Reranker(args.model, device="cpu", dtype="int8")
        folder, exported = model.scorer.folder, model.scorer.exported
    else:
        from patentrank.models.embedder import Embedder

        embedder = Embedder(args.model, device="cpu", dtype="int8")
        folder, exported = embedder.encoder.folder, embedder.encoder.exported
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
    record = {"kind": args.kind, "model": args.model, "exported": bool(exported), "s": round(seconds, 1),
              "peak_rss": bench.gib(bench.process_peak_rss_bytes()), "export_size": bench.gib(size),
              "isa": " ".join(bench.cpu_isa_flags())}  # fmt: skip
    print(json.dumps(record))


if __name__ == "__main__":
    main()
