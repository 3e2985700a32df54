"""Claim-chart cost on CPU at the real reranker shape: a random-weight Qwen3-Reranker-0.6B-shaped
model (the speed of the real one; scores meaningless) charts claim 1 of CN113344556A against sample
references, with the tiny embedder as the first pass (its cost is reported separately).

Usage: flock /tmp/patentrank-bench.lock .venv/bin/python benchmarks/chart_bench.py --references 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks.common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common as bench
from patentrank.testing import build_random_qwen3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--references", type=int, default=2)
    parser.add_argument("--per-element", type=int, default=3, help="chart_passages_per_element")
    args = parser.parse_args()
    import torch

    from patentrank import Reranker
    from patentrank.claim_chart import ChartRequest, ClaimCharter, scorers_from_models
    from patentrank.config import Settings
    from patentrank.corpus import load_patents, sample_corpus_path
    from patentrank.index.patent_index import PatentIndex
    from patentrank.models.embedder import Embedder

    refs = ["CN111489305B", "US2021118123A1", "CN110992292A", "CN108765319A"][: args.references]
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        reranker = Reranker(str(build_random_qwen3(root / "r", "0.6b", "reranker")), device="cpu")
        embedder = Embedder(str(build_random_qwen3(root / "e", "tiny", "embedding", seed=1)), device="cpu")
        index = PatentIndex(root / "ix", embedder=embedder)
        index.add(load_patents(sample_corpus_path()))
        settings = Settings(chart_passages_per_element=args.per_element)
        charter = ClaimCharter(index.docstore, scorers_from_models(reranker, embedder), settings)
        began = time.perf_counter()
        chart = charter.chart(ChartRequest("claim 1 of CN113344556A", refs))
        seconds = time.perf_counter() - began
    print(
        json.dumps(
            {
                "cpu": bench.cpu_model(),
                "isa": " ".join(bench.cpu_isa_flags()),
                "torch_threads": torch.get_num_threads(),
                "reranker_shape": "Qwen3-Reranker-0.6B (random weights)",
                "references": len(refs),
                "elements": len(chart.elements),
                "reranked_pairs": chart.reranked_pairs,
                "seconds": round(seconds, 1),
                "seconds_per_pair": round(seconds / chart.reranked_pairs, 2),
                "estimate_20_refs_10_elements_s": round(600 * seconds / chart.reranked_pairs),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
