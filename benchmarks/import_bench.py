"""Bulk XML import: throughput and peak memory of `load_xml_patents` on a synthetic weekly file made
by repeating the real USPTO grant in ../shared/data/patent_formats (renumbered), so memory can be
seen not to grow with the file; plus the cost of combination search over a 20-reference chart.

Usage: flock /tmp/patentrank-bench.lock .venv/bin/python benchmarks/import_bench.py --copies 2000
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks.common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common as bench
from patentrank.importers import load_xml_patents
from patentrank.testing import find_shared_dir


def weekly_file(target: Path, copies: int) -> int:
    shared = find_shared_dir()
    if shared is None:
        raise SystemExit("../shared is absent: the benchmark repeats a real USPTO grant from it")
    grant = (shared / "data/patent_formats/raw/uspto-grant/US08926509B2.xml").read_bytes()
    with target.open("wb") as out:
        for i in range(copies):
            out.write(
                grant.replace(
                    b"<doc-number>08926509</doc-number>",
                    f"<doc-number>{9000000 + i}</doc-number>".encode(),
                    1,
                )
            )
    return target.stat().st_size


def combination_cost() -> dict[str, float]:
    import random

    from patentrank.claim_chart import Cell, ClaimChart, ReferenceChart
    from patentrank.combinations import combine

    rng = random.Random(0)
    elements = [f"element {i}" for i in range(12)]
    refs = [
        ReferenceChart(f"R{r}", "", [Cell(i, i, "", rng.random()) for i in range(12)], 0.5) for r in range(20)
    ]
    chart = ClaimChart("claim", elements, refs, 0.5, "")
    out = {}
    for size in (2, 3):
        began = time.perf_counter()
        combine(chart, size=size, limit=20)
        out[f"combine_{size}_ms"] = round((time.perf_counter() - began) * 1000, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copies", type=int, default=2000, help="Documents in the synthetic weekly file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ipg_synthetic.xml"
        size = weekly_file(path, args.copies)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        began = time.perf_counter()
        stream = load_xml_patents(path)
        count = sum(1 for _ in stream)
        seconds = time.perf_counter() - began
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {
        "cpu": bench.cpu_model(),
        "isa": " ".join(bench.cpu_isa_flags()),
        "file_mb": round(size / 1e6, 1),
        "documents": count,
        "rejected": len(stream.report.rejected),
        "seconds": round(seconds, 2),
        "documents_per_s": round(count / seconds, 1),
        "mb_per_s": round(size / 1e6 / seconds, 2),
        "peak_rss_mb_before": round(before / 1024, 1),
        "peak_rss_mb_after": round(peak / 1024, 1),
        **combination_cost(),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
