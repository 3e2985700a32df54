"""The rerank stage's cost per query vs the number of candidates and vs the per-passage token cap.

Run from the repository root (one benchmark at a time):
    flock /tmp/patentrank-bench.lock .venv/bin/python -m benchmarks.rerank_cost --shape 0.6b
Writes the "Rerank cost: candidates and passage cap" section of docs/benchmarks.md, which documents
PATENTRANK_RERANK_CANDIDATES and PATENTRANK_RERANK_PASSAGE_TOKENS.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks.common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common as bench

SECTION = "Rerank cost: candidates and passage cap"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("0.6b", "small", "tiny"), default="0.6b")
    parser.add_argument("--dtype", default="float32", help="the reranker's dtype (auto, float32, ...)")
    parser.add_argument("--candidates", default="10,20,50", help="candidate counts, at the full length")
    parser.add_argument("--caps", default="128,256,512", help="passage caps in tokens, at --cap-candidates")
    parser.add_argument("--cap-candidates", type=int, default=20)
    parser.add_argument("--min-tokens", type=int, default=64, help="shortest passage, in tokens")
    parser.add_argument(
        "--max-tokens", type=int, default=512, help="longest passage (the index chunks at 512)"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--note", default="", help="what else ran on the machine meanwhile")
    parser.add_argument("--out", default="docs/benchmarks.md", help="markdown file to update; '-' for none")
    return parser.parse_args(argv)


def time_query(
    reranker: Any, query: str, docs: list[str], cap: int | None, instruction: str
) -> dict[str, Any]:
    """Seconds to rerank `docs` for `query` (tokenising included, as the search pipeline does it)."""
    began = time.perf_counter()
    out = reranker.compute(query, docs, instruction, max_tokens_per_doc=cap)
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "tokens": out.prompt_tokens, "truncated": len(out.truncated)}


def main(argv: list[str] | None = None) -> None:
    bench.quiet_environment()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import torch

    from benchmarks.rerank_bench import model_folder
    from patentrank.config import PATENT_INSTRUCTION
    from patentrank.models.reranker import Reranker

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    counts = [int(c) for c in args.candidates.split(",")]
    caps = [int(c) for c in args.caps.split(",")]
    model_dir = model_folder(args.shape, args.seed)
    began = time.perf_counter()
    reranker = Reranker(str(model_dir), device="cpu", dtype=args.dtype)
    load_s = time.perf_counter() - began
    chosen = getattr(reranker, "precision", None)
    dtype = chosen.describe().get("dtype", args.dtype) if chosen is not None else str(reranker.dtype)
    workload = bench.rerank_workload(
        reranker.tokenizer,
        1,
        max([*counts, args.cap_candidates]),
        args.min_tokens,
        args.max_tokens,
        args.seed,
    )
    query, docs = workload.queries[0], workload.documents[0]
    reranker.compute(query, docs[:2], PATENT_INSTRUCTION)  # warm-up: thread pools, first allocations
    print(f"{args.shape} reranker ({dtype}) loaded in {load_s:.1f} s; threads {threads}")

    rows: list[dict[str, Any]] = []
    for n in counts:
        result = time_query(reranker, query, docs[:n], None, PATENT_INSTRUCTION)
        rows.append({"candidates": n, "cap": None, **result})
        print(f"{n} candidates, no cap: {result['seconds']:.1f} s, {result['tokens']} tokens")
    for cap in caps:
        n = args.cap_candidates
        result = time_query(reranker, query, docs[:n], cap, PATENT_INSTRUCTION)
        rows.append({"candidates": n, "cap": cap, **result})
        print(f"{n} candidates, cap {cap}: {result['seconds']:.1f} s, {result['tokens']} tokens")

    facts = bench.machine_facts(threads)
    out_dir = bench.RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = {"shape": args.shape, "dtype": dtype, "facts": facts, "rows": rows, "note": args.note}
    (out_dir / "rerank_cost.json").write_text(json.dumps(raw, indent=2), encoding="utf-8")
    if args.out != "-":
        bench.replace_markdown_section(Path(args.out), SECTION, report(args, rows, facts, dtype, workload))
        print(f"wrote the {SECTION!r} section of {args.out}")


def report(
    args: argparse.Namespace, rows: list[dict[str, Any]], facts: dict[str, str], dtype: str, workload: Any
) -> str:
    full = {r["candidates"]: r for r in rows if r["cap"] is None}
    base = full.get(args.cap_candidates)
    lengths = workload.document_tokens[0]
    table = []
    for r in rows:
        versus = f"{r['seconds'] / base['seconds']:.2f}x" if base else "-"
        table.append(
            [
                r["candidates"],
                "full" if r["cap"] is None else r["cap"],
                f"{r['seconds']:.1f}",
                f"{r['seconds'] / r['candidates']:.2f}",
                f"{r['tokens']:,}",
                f"{r['tokens'] / r['seconds']:.0f}",
                r["truncated"],
                versus,
            ]
        )
    headers = ["candidates", "passage cap (tokens)", "s / query", "s / passage", "prompt tokens",
               "tokens/s", "passages cut", f"vs {args.cap_candidates} full"]  # fmt: skip
    command = (
        f"flock /tmp/patentrank-bench.lock .venv/bin/python -m benchmarks.rerank_cost --shape {args.shape} "
        f"--dtype {args.dtype}"
    )
    return "\n".join(
        [
            f"What `PATENTRANK_RERANK_CANDIDATES` (passages reranked per search, default 50) and "
            f"`PATENTRANK_RERANK_PASSAGE_TOKENS` (each passage cut to this many tokens in the reranker's "
            f"prompt, default none) cost: one query, {args.shape} shape (random weights, real tokenizer), "
            f"{dtype}, patent-like passages of {min(lengths)}-{max(lengths)} tokens (the index chunks "
            f"passages at 512), the patent instruction, one run each after a warm-up.",
            "",
            bench.markdown_table(headers, table),
            "",
            f"Machine: {facts['CPU']}, {facts['logical CPUs']} logical CPUs, torch threads "
            f"{facts['torch threads']}, torch {facts['torch']}. ISA: {facts['ISA']}."
            + (f" Load: {args.note}." if args.note else ""),
            "",
            "Reading it: the stage's time is linear in the candidates (each is one prompt of ~"
            "instruction + query + passage tokens; the shared prefix is computed once per query), and a cap "
            "saves time only on passages longer than it. Quality is not measured here (random weights): a "
            "cap drops the end of long passages, so check a cap with `patentrank eval` on your collection "
            "before relying on it. The query and the prompt's fixed suffix are never cut.",
            "",
            f"Reproduce: `{command}`",
        ]
    )


if __name__ == "__main__":
    main()
