"""Reranker benchmark: the model card reference, sentence-transformers CrossEncoder, ours in fp32 and bf16.

Run from the repository root:  .venv/bin/python -m benchmarks.rerank_bench --shape 0.6b
Each configuration runs in a fresh subprocess (so its peak RSS is its own) on the same inputs; the
parent measures the GEMM ceiling, compares the scores and writes the "Reranker" section of
docs/benchmarks.md. See benchmarks/README.md for what is counted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks.common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common as bench

ScoreFn = Callable[[str, list[str]], list[float]]


@dataclass(frozen=True, slots=True)
class Config:
    label: str
    dtype: str
    share_prefix: bool = False


CONFIGS = {
    "a": Config("(a) model card reference: full logits, input order, batches of 8", "float32"),
    "b": Config(
        "(b) sentence-transformers CrossEncoder, chat template, batches of {st} length-sorted", "float32"
    ),
    "c": Config("(c) patentrank Reranker float32", "float32"),
    "d": Config("(d) patentrank Reranker bfloat16", "bfloat16"),
    "e": Config("(e) patentrank Reranker float32, shared query prefix computed once", "float32", True),
    "f": Config("(f) patentrank Reranker dtype=auto (the default), shared prefix", "auto", True),
    "g": Config("(g) patentrank Reranker dtype=int8 (ONNX Runtime)", "int8"),
}

# The Qwen3-Reranker prompt as a chat template for sentence-transformers' CrossEncoder, which maps a
# (query, document) pair to messages with roles "query" and "document" and a `prompt=` to a "system"
# message (used here as the instruction). The text is built with expressions only, because a template
# file loses one trailing newline and `trim_blocks` eats newlines after block tags.
ST_CHAT_TEMPLATE = (
    '{%- set ns = namespace(instruction="Given a web search query, retrieve relevant passages that answer '
    'the query", query="", document="") -%}\n'
    "{%- for message in messages -%}\n"
    '{%- if message.role == "system" -%}{%- set ns.instruction = message.content -%}\n'
    '{%- elif message.role == "query" -%}{%- set ns.query = message.content -%}\n'
    '{%- elif message.role == "document" -%}{%- set ns.document = message.content -%}\n'
    "{%- endif -%}\n"
    "{%- endfor -%}\n"
    '{{- "<|im_start|>system\\nJudge whether the Document meets the requirements based on the Query and '
    'the Instruct provided. Note that the answer can only be \\"yes\\" or \\"no\\".<|im_end|>\\n'
    '<|im_start|>user\\n<Instruct>: " + ns.instruction + "\\n<Query>: " + ns.query + "\\n<Document>: " '
    '+ ns.document + "<|im_end|>\\n<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n" -}}\n'
)


# ---------------------------------------------------------------- model folders


def model_folder(shape: str, seed: int, rebuild: bool = False) -> Path:
    """A random-weight Qwen3 reranker of `shape`, built once and cached under benchmarks/results/."""
    from patentrank.testing import build_random_qwen3

    folder = bench.RESULTS_DIR / "models" / f"qwen3-reranker-{shape}-seed{seed}"
    done = folder / ".complete"
    if rebuild or not done.is_file():
        shutil.rmtree(folder, ignore_errors=True)
        print(f"building a random {shape} reranker in {folder} (once) ...")
        build_random_qwen3(folder, shape=shape, kind="reranker", seed=seed)
        done.write_text("built by benchmarks/rerank_bench.py\n")
    return folder


def st_folder(model_dir: Path) -> Path:
    """A copy of the model folder (weights linked, not copied) with the query/document chat template."""
    folder = model_dir.with_name(model_dir.name + "-st")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for item in model_dir.iterdir():
        if item.is_file() and not item.name.startswith("."):
            (folder / item.name).symlink_to(item.resolve())
    (folder / "chat_template.jinja").write_text(ST_CHAT_TEMPLATE, encoding="utf-8")
    return folder


def shortest(lengths: list[int], count: int) -> list[int]:
    """Indices of the `count` shortest prompts, in input order."""
    return sorted(sorted(range(len(lengths)), key=lambda i: lengths[i])[:count])


def linear_params(cfg: dict[str, Any]) -> int:
    """Weights of the decoder layers' matmuls (q, k, v, o, gate, up, down); embeddings and norms excluded."""
    h, q_dim = cfg["hidden_size"], cfg["num_attention_heads"] * cfg["head_dim"]
    kv_dim = cfg["num_key_value_heads"] * cfg["head_dim"]
    per_layer = 2 * h * q_dim + 2 * h * kv_dim + 3 * h * cfg["intermediate_size"]
    return cfg["num_hidden_layers"] * per_layer


def useful_flops(cfg: dict[str, Any], prompt_lengths: list[int]) -> float:
    """2 x linear params x real tokens + causal attention (QK^T, AV over j <= i); no padding, no LM head."""
    attention = 2 * cfg["num_hidden_layers"] * cfg["num_attention_heads"] * cfg["head_dim"]
    return float(sum(2 * linear_params(cfg) * n + attention * n * (n + 1) for n in prompt_lengths))


# ---------------------------------------------------------------- worker side (one fresh process per config)


def check_sentence_transformers(ce: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """ST's token ids and scores against ours and the reference on the two shortest passages per query."""
    from transformers import AutoTokenizer

    from patentrank.models.prompt import Qwen3Prompt
    from patentrank.models.reference import reference_scores

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    prompt = Qwen3Prompt(tokenizer, max_length=spec["max_length"])
    same_ids, max_diff, pairs = True, 0.0, 0
    for query, docs in zip(spec["queries"], spec["documents"], strict=True):
        picked = sorted(docs, key=len)[:2]
        features = ce[0].preprocess([(query, d) for d in picked], prompt=spec["instruction"])
        rows = zip(features["input_ids"], features["attention_mask"], strict=True)
        st_ids = [ids[mask.bool()].tolist() for ids, mask in rows]
        ours = [p.input_ids for p in prompt.encode(query, picked, spec["instruction"])]
        same_ids &= st_ids == ours
        st_scores = ce.predict(
            [(query, d) for d in picked], prompt=spec["instruction"], show_progress_bar=False
        )
        ref = reference_scores(ce.model, tokenizer, query, picked, spec["instruction"], spec["max_length"])
        max_diff = max(max_diff, *(abs(float(s) - r) for s, r in zip(st_scores, ref, strict=True)))
        pairs += len(picked)
    ok = same_ids and max_diff <= 1e-4
    print(
        f"[b] check before timing: {pairs} pairs, token ids identical to the reference prompt: {same_ids}, "
        f"max |ST - reference| = {max_diff:.2e} -> {'EQUAL' if ok else 'NOT EQUAL'}"
    )
    seconds = time.perf_counter() - started
    return {
        "pairs": pairs,
        "same_token_ids": same_ids,
        "max_abs_diff": max_diff,
        "equal": ok,
        "seconds": seconds,
    }


def load_scorer(name: str, spec: dict[str, Any]) -> tuple[ScoreFn, dict[str, Any]]:
    import torch

    instruction, max_length = spec["instruction"], spec["max_length"]
    if name == "a":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from patentrank.models.reference import reference_scores

        tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
        model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32).eval()
        return lambda q, d: reference_scores(
            model, tokenizer, q, d, instruction, max_length, batch_size=8
        ), {}
    if name == "b":
        from sentence_transformers import CrossEncoder

        ce = CrossEncoder(
            spec["st_dir"], device="cpu", local_files_only=True, max_length=max_length,
            model_kwargs={"dtype": torch.float32},
        )  # fmt: skip
        check = check_sentence_transformers(ce, spec)
        size = spec["st_batch_size"]
        return (
            lambda q, d: ce.predict(
                [(q, x) for x in d], prompt=instruction, batch_size=size, show_progress_bar=False
            ).tolist(),
            {"st_check": check},
        )
    from patentrank.models.reranker import Reranker

    config = CONFIGS[name]
    reranker = Reranker(
        spec["model_dir"], device="cpu", dtype=config.dtype, max_length=max_length,
        share_prefix=config.share_prefix,
    )  # fmt: skip
    exported = getattr(reranker.scorer, "exported", None)  # int8: whether this load ran the export
    extra = {"precision": reranker.precision.describe(), "exported": exported}
    return lambda q, d: reranker.compute(q, d, instruction).scores, extra


def select(items: list[Any], subset: list[list[int]] | None, query: int) -> list[Any]:
    """The items of one query that a configuration scores: all, or those its subset names."""
    return items if subset is None else [items[j] for j in subset[query]]


def worker(name: str, spec_path: Path, result_path: Path) -> None:
    import torch

    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    torch.set_num_threads(spec["threads"])
    load = bench.Stopwatch()
    with load.lap():
        score, extra = load_scorer(name, spec)
    load_seconds = load.seconds - extra.get("st_check", {}).get("seconds", 0.0)  # the check is not loading
    subsets = spec["subsets"]  # per configuration, per query: the pair indices it scores (else all)
    shortest = min(spec["documents"][0], key=len)
    score(spec["queries"][0], [shortest])  # warm-up: one-time kernel and allocator setup
    timer, scores, queries = bench.Stopwatch(), [], list(zip(spec["queries"], spec["documents"], strict=True))
    with bench.RssSampler() as rss:
        for i, (query, docs) in enumerate(queries):
            docs = select(docs, subsets.get(name), i)
            with timer.lap():
                scores.append([float(s) for s in score(query, docs)])
            tokens, seconds = sum(select(spec["prompt_lengths"][i], subsets.get(name), i)), timer.laps[-1]
            print(
                f"[{name}] query {i + 1}/{len(spec['queries'])}: {len(docs)} pairs, {tokens} tokens in "
                f"{seconds:.1f} s ({tokens / seconds:.0f} tokens/s)"
            )
    subset_timer = bench.Stopwatch()  # (c) also times (d)'s subset: the bf16 speed-up compares like with like
    for i, (query, docs) in enumerate(queries if name == "c" and "d" in subsets else []):
        with subset_timer.lap():
            score(query, select(docs, subsets["d"], i))
    result = {
        "scores": scores, "seconds": timer.seconds, "laps": timer.laps, "load_seconds": load_seconds,
        "subset_seconds": subset_timer.seconds,
        "peak_rss_bytes": bench.process_peak_rss_bytes(), "scoring_rss_delta_bytes": rss.delta_bytes, **extra,
    }  # fmt: skip
    result_path.write_text(json.dumps(result), encoding="utf-8")


# ---------------------------------------------------------------- parent side


def run_config(name: str, spec_path: Path, work: Path) -> dict[str, Any]:
    result_path = work / f"result-{name}.json"
    command = [sys.executable, "-m", "benchmarks.rerank_bench", "--worker", name]
    command += ["--spec", str(spec_path), "--result", str(result_path)]
    done = subprocess.run(command, cwd=bench.REPO_ROOT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"configuration ({name}) failed with exit code {done.returncode}")
    return json.loads(result_path.read_text(encoding="utf-8"))


METHOD_NOTE = (
    "Model FLOP/s counts useful work only: 2 x matmul parameters x real tokens + causal attention "
    "(2 x layers x heads x head_dim x L(L+1) per prompt); padding, the 151,669-way output layer of "
    "(a) and (b), embeddings and norms are not counted. Time is end to end from text (tokenisation "
    "included), after one warm-up pair; speed ratios are ratios of tokens/s. Peak RSS is the whole "
    "worker process (a fresh one per configuration, model load included); the delta is the sampled "
    "peak while scoring above the RSS just before scoring."
)
HEADERS = ["configuration", "dtype", "pairs/s", "tokens/s", "vs (a)", "scoring s", "model GFLOP/s",
           "of GEMM ceiling", "peak RSS", "RSS delta while scoring", "load s"]  # fmt: skip


def gemm_dtype(dtype: str, result: dict[str, Any]) -> str:
    """The GEMM ceiling a configuration is held to: bf16 for (mixed) bf16, else float32 (int8 included)."""
    chosen = (result.get("precision") or {}).get("dtype", dtype)
    return "bfloat16" if chosen.startswith("bfloat16") else "float32"


def verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


def checks_and_targets(
    results: dict[str, dict[str, Any]], tps: dict[str, float], share: float | None, bf16_speedup: float | None
) -> str:
    """Correctness checks (score agreement) and the issue's targets, as two markdown tables."""
    checks: list[list[str]] = []
    if "st_check" in results.get("b", {}):
        c = results["b"]["st_check"]
        what = f"(b) before timing, {c['pairs']} pairs: same token ids / max abs P(yes) diff vs the reference"
        checks.append([what, f"{c['same_token_ids']} / {c['max_abs_diff']:.1e}", verdict(c["equal"])])
    for left, right in (("a", "b"), ("a", "c")):
        if left in results and right in results:
            d = bench.score_agreement(results[left]["scores"], results[right]["scores"])
            what = f"({right}) vs ({left}), all pairs: max abs P(yes) diff (must be <= 1e-4)"
            checks.append([what, f"{d['max_abs']:.1e}", verdict(d["max_abs"] <= 1e-4)])
    bf16: dict[str, float] = {}
    if {"c", "d"} <= tps.keys():
        subset = results["d"]["subset"]
        fp32 = [select(q, subset, i) for i, q in enumerate(results["c"]["scores"])]
        bf16 = bench.score_agreement(fp32, results["d"]["scores"])
        what = (
            f"(d) bf16 vs (c) fp32, {bf16['pairs']:.0f} pairs: max abs P(yes) / logit diff; Spearman "
            "pooled / worst query; std of the fp32 logits (the spread a ranking must resolve)"
        )
        measured = f"{bf16['max_abs']:.3f} / {bf16['max_abs_logit']:.3f}; {bf16['spearman']:.4f} / "
        measured += f"{bf16['spearman_min_query']:.4f}; {bf16['logit_std']:.3f}"
        checks.append([what, measured, verdict(bf16["spearman"] >= 0.99)])
    targets: list[list[str]] = []
    if {"a", "c"} <= tps.keys():
        targets.append(
            ["ours fp32 >= 2x (a)", f"{tps['c'] / tps['a']:.2f}x", verdict(tps["c"] >= 2 * tps["a"])]
        )
    if {"b", "c"} <= tps.keys():
        targets.append(
            ["ours fp32 ahead of (b)", f"{tps['c'] / tps['b']:.2f}x", verdict(tps["c"] > tps["b"])]
        )
    if share is not None:
        targets.append(
            ["ours fp32 >= 70% of the float32 GEMM ceiling", f"{100 * share:.0f}%", verdict(share >= 0.7)]
        )
    if bf16 and bf16_speedup is not None:
        what = "bf16 >= 1.8x ours fp32 (same pairs)"
        targets.append([what, f"{bf16_speedup:.2f}x", verdict(bf16_speedup >= 1.8)])
        targets.append(
            ["bf16 Spearman vs fp32 >= 0.99", f"{bf16['spearman']:.4f}", verdict(bf16["spearman"] >= 0.99)]
        )
    return "\n".join([
        "### Correctness on these inputs", "", bench.markdown_table(["check", "measured", "ok"], checks), "",
        "### Targets", "", bench.markdown_table(["target", "measured", "met"], targets),
    ])  # fmt: skip


def report(
    args: argparse.Namespace,
    facts: dict[str, str],
    gemm: dict[str, dict[str, float]],
    workload: Any,
    lengths: list[list[int]],
    cfg: dict[str, Any],
    results: dict[str, dict[str, Any]],
) -> str:
    """The markdown body of the Reranker section; also printed."""
    used = {n: [select(q, r["subset"], i) for i, q in enumerate(lengths)] for n, r in results.items()}
    tps = {n: sum(map(sum, used[n])) / r["seconds"] for n, r in results.items()}  # speeds: tokens/s
    flops = {n: useful_flops(cfg, [x for q in used[n] for x in q]) / r["seconds"] for n, r in results.items()}
    ceilings = {n: bench.ceiling(gemm, gemm_dtype(CONFIGS[n].dtype, r)) for n, r in results.items()}
    rows = []
    for name, r in results.items():
        spec, pairs, sub = CONFIGS[name], sum(map(len, used[name])), r["subset"]
        label = spec.label.format(st=args.st_batch_size) + (
            f" ({len(sub[0])} shortest pairs per query)" if sub else ""
        )
        rows.append([
            label, spec.dtype, f"{pairs / r['seconds']:.2f}", f"{tps[name]:.0f}",
            f"{tps[name] / tps['a']:.2f}x" if "a" in tps else "-", f"{r['seconds']:.1f}",
            f"{flops[name] / 1e9:.1f}", f"{100 * flops[name] / ceilings[name]:.0f}%",
            bench.gib(r["peak_rss_bytes"]), bench.gib(r["scoring_rss_delta_bytes"]),
            f"{r['load_seconds']:.1f}",
        ])  # fmt: skip
    gemm_rows = [[shape, *(f"{gemm[d][shape] / 1e9:.1f}" for d in gemm)] for shape in gemm["float32"]]
    doc_tokens = [n for q in workload.document_tokens for n in q]
    command = " ".join([".venv/bin/python -m benchmarks.rerank_bench", *args.argv])
    workload_line = (
        f"Workload: random-weight Qwen3 reranker, shape **{args.shape}** ({linear_params(cfg) / 1e6:.1f} M "
        f"matmul parameters in the decoder layers), real Qwen3 tokenizer; {len(lengths)} queries (Chinese "
        f"and English) x {args.docs_per_query} synthetic patent passages of mixed language, "
        f"{min(doc_tokens)}-{max(doc_tokens)} tokens (mean {sum(doc_tokens) / len(doc_tokens):.0f}); "
        f"{sum(map(len, lengths))} prompts, {sum(map(sum, lengths))} real prompt tokens (instruction and "
        "query included, no padding)."
    )
    share = flops["c"] / bench.ceiling(gemm, "float32") if "c" in flops else None
    bf16_speedup = None
    if {"c", "d"} <= results.keys():
        c_seconds = results["c"]["subset_seconds"] if results["d"]["subset"] else results["c"]["seconds"]
        bf16_speedup = c_seconds / results["d"]["seconds"]
    notes = [] if args.shape == "0.6b" else [
        f"**Validation run on the {args.shape} shape: it checks the benchmark, it says nothing about the "
        "speed of the 0.6B model (small GEMMs are overhead-bound, and the output layer dominates (a)).**", "",
    ]  # fmt: skip
    slowdown = bench.ceiling(gemm, "float32") / bench.ceiling(gemm, "bfloat16")
    if slowdown > 2:
        notes += [
            f"This CPU has no native bfloat16 (ISA: {facts['ISA']}): torch's bf16 GEMMs run {slowdown:.0f}x "
            "slower than float32 here, so (d) is measured on a subset and the bf16 speed target, which "
            "assumes AVX-512-BF16 or AMX, cannot be met on this machine.", "",
        ]  # fmt: skip
    return "\n".join([
        f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')} with `{command}`.", "", *notes, workload_line, "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in facts.items()) + ".", "",
        bench.markdown_table(["GEMM (GFLOP/s)", *gemm], gemm_rows), "",
        f"Ceilings used: float32 {bench.ceiling(gemm, 'float32') / 1e9:.1f} GFLOP/s, bfloat16 "
        f"{bench.ceiling(gemm, 'bfloat16') / 1e9:.1f} GFLOP/s (best shape, same thread count).", "",
        bench.markdown_table(HEADERS, rows), "", METHOD_NOTE, "",
        checks_and_targets(results, tps, share, bf16_speedup),
    ]) + "\n"  # fmt: skip


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", choices=("0.6b", "small", "tiny"), default="0.6b")
    parser.add_argument("--queries", type=int, default=2)
    parser.add_argument("--docs-per-query", type=int, default=24)
    parser.add_argument("--min-tokens", type=int, default=64, help="shortest passage, in tokens")
    parser.add_argument("--max-tokens", type=int, default=512, help="longest passage, in tokens")
    parser.add_argument("--configs", default="a,b,c,e,d", help="comma-separated subset of a,b,c,d,e,f,g")
    parser.add_argument(
        "--calibrated", action="store_true",
        help="score with the calibrated yes/no head (benchmarks/precision_study.py): realistic P(yes) spread",
    )  # fmt: skip
    parser.add_argument("--section", default="Reranker", help="the docs/benchmarks.md section to write")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--st-batch-size", type=int, default=8, help="CrossEncoder.predict batch size")
    parser.add_argument(
        "--bf16-pairs", type=int, default=None,
        help="(d) scores only the N shortest pairs per query; default: all, or 4 where the measured bf16 "
        "GEMM is under half the fp32 one (CPUs without native bf16 emulate it, 10-30x slower)",
    )  # fmt: skip
    parser.add_argument("--gemm-seconds", type=float, default=1.0, help="time per GEMM shape measured")
    parser.add_argument("--seed", type=int, default=0, help="seed of the passages and of the weights")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached random model")
    parser.add_argument("--out", default="docs/benchmarks.md", help="markdown file to update; '-' for none")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = [a for a in argv if not a.startswith("--worker")]
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    if not names or any(n not in CONFIGS for n in names):
        parser.error(f"--configs takes a comma-separated subset of {','.join(CONFIGS)}")
    args.names = sorted(set(names))
    return args


def main(argv: list[str] | None = None) -> None:
    bench.quiet_environment()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress lines appear at once
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.worker:
        worker(args.worker, args.spec, args.result)
        return

    import torch
    from transformers import AutoTokenizer

    from patentrank.config import PATENT_INSTRUCTION
    from patentrank.models.prompt import Qwen3Prompt

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    model_dir = model_folder(args.shape, args.seed, args.rebuild)
    if args.calibrated:
        from benchmarks.precision_study import calibrated_folder, calibration_prompts

        model_dir = calibrated_folder(model_dir, args.seed, calibration_prompts(model_dir))
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    workload = bench.rerank_workload(
        tokenizer, args.queries, args.docs_per_query, args.min_tokens, args.max_tokens, args.seed
    )
    prompt = Qwen3Prompt(tokenizer, max_length=8192)
    lengths = [[len(p.input_ids) for p in prompt.encode(q, d, PATENT_INSTRUCTION)]
               for q, d in zip(workload.queries, workload.documents, strict=True)]  # fmt: skip
    print(f"workload: {sum(map(len, lengths))} prompts, {sum(map(sum, lengths))} tokens; threads {threads}")

    h, inter, q_dim = (
        cfg["hidden_size"],
        cfg["intermediate_size"],
        cfg["num_attention_heads"] * cfg["head_dim"],
    )
    shapes = [bench.GemmShape(1024, 1024, 1024), bench.GemmShape(2048, h, inter, True),
              bench.GemmShape(2048, inter, h, True), bench.GemmShape(2048, h, q_dim, True)]  # fmt: skip
    print("measuring the GEMM ceilings ...")
    gemm = bench.measure_gemm_ceilings(list(dict.fromkeys(shapes)), seconds=args.gemm_seconds)
    fp32, bf16 = bench.ceiling(gemm, "float32"), bench.ceiling(gemm, "bfloat16")
    print(f"GEMM ceiling: float32 {fp32 / 1e9:.1f} GFLOP/s, bfloat16 {bf16 / 1e9:.1f} GFLOP/s")
    bf16_pairs = args.bf16_pairs
    if bf16_pairs is None and bf16 < 0.5 * fp32:
        bf16_pairs = 4
        if "d" in args.names:
            print("bf16 GEMM is under half of fp32 here (no native bf16): (d) scores only the 4 shortest "
                  "pairs per query; --bf16-pairs N changes that")  # fmt: skip

    work = bench.RESULTS_DIR / "rerank-run"
    work.mkdir(parents=True, exist_ok=True)
    spec = {
        "model_dir": str(model_dir), "st_dir": str(st_folder(model_dir)) if "b" in args.names else None,
        "queries": workload.queries, "documents": workload.documents, "prompt_lengths": lengths,
        "instruction": PATENT_INSTRUCTION, "max_length": 8192, "threads": threads,
        "st_batch_size": args.st_batch_size,
        "subsets": {} if bf16_pairs is None else {"d": [shortest(q, bf16_pairs) for q in lengths]},
    }  # fmt: skip
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    results: dict[str, dict[str, Any]] = {}
    for name in args.names:
        print(f"== {CONFIGS[name].label.format(st=args.st_batch_size)} ...")
        r = results[name] = run_config(name, spec_path, work)
        r["subset"] = spec["subsets"].get(name)
        tokens = sum(sum(select(q, r["subset"], i)) for i, q in enumerate(lengths))
        print(f"== ({name}) {r['seconds']:.1f} s scoring, {tokens / r['seconds']:.0f} tokens/s, "
              f"peak RSS {bench.gib(r['peak_rss_bytes'])}")  # fmt: skip

    body = report(args, bench.machine_facts(threads), gemm, workload, lengths, cfg, results)
    if {"f", "g"} & results.keys():
        from benchmarks.precision_tables import precision_section

        body += "\n" + precision_section(results, lengths, args.calibrated)
    print("\n" + body)
    raw = {"args": args.argv, "gemm": gemm, "prompt_lengths": lengths, "results": results}
    raw_path = bench.RESULTS_DIR / f"rerank-{args.shape}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    raw_path.write_text(json.dumps(raw), encoding="utf-8")
    if args.out != "-":
        bench.replace_markdown_section(bench.REPO_ROOT / args.out, args.section, body)
        print(f"wrote the {args.section} section of {args.out}; raw results in {raw_path}")


if __name__ == "__main__":
    main()
