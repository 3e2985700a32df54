"""Embedder precision benchmark: ours in float32, dtype=auto, bfloat16 and int8 (Qwen3 0.6B shape, e5-small).

Run from the repository root (under `flock /tmp/patentrank-bench.lock`):
    .venv/bin/python -m benchmarks.embed_bench
The 0.6B model has random weights (real tokenizer); multilingual-e5-small is the real model, rebuilt by
`../shared/models/build-me5-small .cache/me5-small .venv/bin/python` (scripts/test does). Each
configuration runs in a fresh subprocess (its own peak RSS) on the same mixed-length patent passages;
the parent compares the vectors with float32's and writes the "Embedder precision (issue 13)" section of
docs/benchmarks.md (`--section` names another). int8 (ONNX Runtime) is exported in a first subprocess
when no export is cached (its time is the "export s" column), then measured in a second one that loads
the cached export.

Agreement: cosine of each passage's vector to its float32 vector (mean and worst), and, because
random-weight vectors can agree with float32 while all being alike, the Spearman correlation of all
passage-passage similarities with float32's (does the neighbourhood structure survive?).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common as bench
from patentrank.testing import me5_small_dir

CONFIGS = ("float32", "auto", "bfloat16", "int8")
COSINE_BAR = 0.999  # mean cosine to float32 that `auto` must keep (worst passage >= 0.995)


def model_dirs(args: argparse.Namespace) -> dict[str, Path]:
    from patentrank.testing import build_random_qwen3

    out: dict[str, Path] = {}
    if "qwen3" in args.models:
        folder = bench.RESULTS_DIR / "models" / "qwen3-embedding-0.6b-seed0"
        if not (folder / ".complete").is_file():
            print(f"building a random 0.6B embedder in {folder} (once) ...")
            build_random_qwen3(folder, shape="0.6b", kind="embedding", seed=0)
            (folder / ".complete").write_text("built by benchmarks/embed_bench.py\n")
        out["Qwen3-Embedding 0.6B shape (random weights)"] = folder
    if "e5" in args.models:
        e5 = Path(args.e5).expanduser()
        if (e5 / "config.json").is_file():
            out["multilingual-e5-small (real weights)"] = e5
        else:
            print(
                f"skipping e5-small: {e5} not built (../shared/models/build-me5-small {e5} .venv/bin/python)"
            )
    return out


def worker(spec_path: Path, result_path: Path) -> None:
    import numpy as np
    import torch

    from patentrank.models.embedder import Embedder

    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    torch.set_num_threads(spec["threads"])
    start = time.perf_counter()
    embedder = Embedder(spec["model_dir"], device="cpu", dtype=spec["dtype"], max_length=spec["max_length"])
    load_seconds = time.perf_counter() - start
    embedder.embed_documents(spec["passages"][:1])  # warm-up
    start = time.perf_counter()
    vectors = embedder.embed_documents(spec["passages"])
    seconds = time.perf_counter() - start
    np.save(result_path.with_suffix(".npy"), vectors)
    result = {
        "seconds": seconds,
        "load_seconds": load_seconds,
        "peak_rss_bytes": bench.process_peak_rss_bytes(),
        "tokens": sum(embedder.count_tokens(spec["passages"])),
        "exported": bool(getattr(embedder.encoder, "exported", False)),  # int8: this load ran the export
        **embedder.precision.describe(),
    }
    result_path.write_text(json.dumps(result), encoding="utf-8")


def agreement(reference: Any, other: Any) -> dict[str, float]:
    import numpy as np
    from scipy.stats import spearmanr

    cosine = np.sum(reference * other, axis=1)
    upper = np.triu_indices(len(reference), k=1)
    rho = spearmanr((reference @ reference.T)[upper], (other @ other.T)[upper]).statistic
    return {"cos_mean": float(cosine.mean()), "cos_min": float(cosine.min()), "sim_spearman": float(rho)}


def main(argv: list[str] | None = None) -> None:
    bench.quiet_environment()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="qwen3,e5", help="comma-separated: qwen3, e5")
    parser.add_argument("--e5", default=str(me5_small_dir() or bench.REPO_ROOT / ".cache" / "me5-small"))
    parser.add_argument("--passages", type=int, default=24, help="passages for the 0.6B model (e5: 4x)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ",".join(CONFIGS)
    )
    parser.add_argument("--section", default="Embedder precision (issue 13)", help="docs section to write")
    parser.add_argument("--out", default="docs/benchmarks.md", help="markdown file to update; '-' for none")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.spec, args.result)
        return

    import numpy as np
    import torch
    from transformers import AutoTokenizer

    threads = args.threads or torch.get_num_threads()
    configs = [c for c in CONFIGS if c in args.configs.split(",")]
    if "float32" not in configs:
        parser.error("--configs must include float32 (the reference)")
    work = bench.RESULTS_DIR / "embed-run"
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, folder in model_dirs(args).items():
        count = args.passages * (4 if "e5" in label else 1)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        workload = bench.rerank_workload(tokenizer, 2, count // 2, 64, args.max_length - 16, seed=0)
        passages = [d for docs in workload.documents for d in docs]
        vectors, results = {}, {}
        for dtype in configs:
            spec = {
                "model_dir": str(folder),
                "dtype": dtype,
                "passages": passages,
                "threads": threads,
                "max_length": args.max_length,
            }
            spec_path, result_path = work / "spec.json", work / f"result-{dtype}.json"
            spec_path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
            command = [
                sys.executable,
                "-m",
                "benchmarks.embed_bench",
                "--worker",
                "--spec",
                str(spec_path),
                "--result",
                str(result_path),
            ]
            if subprocess.run(command, cwd=bench.REPO_ROOT, check=False).returncode != 0:
                raise SystemExit(f"{label} {dtype} failed")
            results[dtype] = json.loads(result_path.read_text(encoding="utf-8"))
            export_seconds = None
            if results[dtype]["exported"]:  # measure a load of the cached export, as users get after once
                export_seconds = results[dtype]["load_seconds"]
                if subprocess.run(command, cwd=bench.REPO_ROOT, check=False).returncode != 0:
                    raise SystemExit(f"{label} {dtype} failed")
                results[dtype] = json.loads(result_path.read_text(encoding="utf-8"))
            results[dtype]["export_seconds"] = export_seconds
            vectors[dtype] = np.load(result_path.with_suffix(".npy"))
            r = results[dtype]
            print(f"{label} {dtype} ({r['dtype']}): {len(passages) / r['seconds']:.2f} passages/s")
        for dtype in configs:
            r, a = results[dtype], agreement(vectors["float32"], vectors[dtype])
            speed = results["float32"]["seconds"] / r["seconds"]
            rows.append(
                [
                    label,
                    dtype,
                    f"{r['dtype']} ({r['dtype_reason']})",
                    f"{len(passages) / r['seconds']:.2f}",
                    f"{r['tokens'] / r['seconds']:.0f}",
                    f"{speed:.2f}x",
                    f"{a['cos_mean']:.5f} / {a['cos_min']:.5f}",
                    f"{a['sim_spearman']:.4f}",
                    bench.gib(r["peak_rss_bytes"]),
                    f"{r['load_seconds']:.1f}",
                    "-" if r["export_seconds"] is None else f"{r['export_seconds']:.0f}",
                ]
            )
    headers = [
        "model",
        "dtype asked",
        "dtype chosen (why)",
        "passages/s",
        "tokens/s",
        "vs float32",
        "cosine to fp32 mean / worst",
        "Spearman of pairwise similarities vs fp32",
        "peak RSS",
        "load s",
        "export s (once)",
    ]
    facts = bench.machine_facts(threads)
    command = " ".join([".venv/bin/python -m benchmarks.embed_bench", *(argv or sys.argv[1:])])
    body = (
        "\n".join(
            [
                f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')} with "
                f"`flock /tmp/patentrank-bench.lock {command}`.",
                "",
                "Machine: " + ", ".join(f"{k} {v}" for k, v in facts.items()) + ".",
                "",
                f"Passages: synthetic mixed zh/en patent passages of 64-{args.max_length - 16} tokens (as "
                f"the reranker benchmark's), {args.passages} for the 0.6B shape, {4 * args.passages} for "
                "e5-small; one warm-up "
                "passage, then one `embed_documents` call. `auto` must keep the mean cosine to float32 >= "
                f"{COSINE_BAR} (worst passage >= 0.995). Peak RSS is the measured process's (for int8 a "
                "load of the cached export: the torch weights are read, then released).",
                "",
                bench.markdown_table(headers, rows),
            ]
        )
        + "\n"
    )
    print("\n" + body)
    if args.out != "-":
        bench.replace_markdown_section(bench.REPO_ROOT / args.out, args.section, body)


if __name__ == "__main__":
    main()
