"""Which parts of the 0.6B reranker must stay float32 for bf16 scores to agree with float32.

Run from the repository root (under `flock /tmp/patentrank-bench.lock`):
    .venv/bin/python -m benchmarks.precision_study --docs-per-query 10

A random-weight model scores every pair near P(yes) = 0.5, so its dP says nothing. The benchmark
model is therefore *calibrated*: its yes-minus-no head is set, on passages other than the measured
ones, to the direction along which the final hidden state varies most between passages (the first
principal component, centred so the mean logit is 0), scaled so that float32 logits have a standard
deviation of 2.3, i.e. P(yes) spread over about [0.01, 0.99] as a trained reranker's scores are. A
trained head reads a direction the model expresses strongly; bf16 noise, spread over all 1,024
directions, is then measured against a realistic signal. The raw random head is reported beside it
(Spearman only: its scores are all near 0.5).

Each variant is built from the float32 model and scores the same prompts (right-padded,
length-sorted batches, last real position, as `YesNoScorer`).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common as bench

TARGET_LOGIT_STD = 2.3  # P(yes) of +-2 std: 0.01 .. 0.99


def calibrated_folder(source: Path, shape_seed: int, prompts: list[list[int]]) -> Path:
    """A copy of the random reranker `source` with an untied, calibrated yes/no head (see module doc)."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = source.with_name(source.name + "-calibrated")
    if (folder / ".complete").is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    print(f"calibrating the yes/no head into {folder} (once) ...")
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(source)
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    with torch.inference_mode():
        hidden = last_hidden(model.get_decoder(), prompts).double().numpy()
    mean = hidden.mean(axis=0)
    _, _, vt = np.linalg.svd(hidden - mean, full_matrices=False)
    direction = vt[0] - (vt[0] @ mean) / (mean @ mean) * mean  # logit of the mean hidden state = 0
    direction *= TARGET_LOGIT_STD / float(np.std(hidden @ direction))
    head = model.model.embed_tokens.weight.detach().clone()
    head[yes] = head[no] + torch.as_tensor(direction, dtype=torch.float32)
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(head)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    reloaded = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    row = reloaded.get_output_embeddings().weight
    if not torch.allclose(row[yes] - row[no], torch.as_tensor(direction, dtype=torch.float32), atol=1e-5):
        raise RuntimeError("the calibrated head did not survive save/load (tied embeddings?)")
    (folder / ".complete").write_text(f"calibrated by benchmarks/precision_study.py, seed {shape_seed}\n")
    return folder


def calibration_prompts(source: Path, seed: int = 1000) -> list[list[int]]:
    """24 prompts (2 queries x 12 passages) from a seed other than the measured workload's."""
    from transformers import AutoTokenizer

    from patentrank.config import PATENT_INSTRUCTION
    from patentrank.models.prompt import Qwen3Prompt

    tokenizer = AutoTokenizer.from_pretrained(source)
    prompt = Qwen3Prompt(tokenizer, max_length=8192)
    w = bench.rerank_workload(tokenizer, 2, 12, 64, 512, seed)
    return [p.input_ids for q, d in zip(w.queries, w.documents, strict=True)
            for p in prompt.encode(q, d, PATENT_INSTRUCTION)]  # fmt: skip


def last_hidden(backbone: Any, prompts: list[list[int]], batch_tokens: int = 8192) -> Any:
    """Final hidden state at each prompt's last token, float32, in input order (as YesNoScorer batches)."""
    import torch

    from patentrank.models.scorer import plan_batches

    out = torch.empty(len(prompts), backbone.config.hidden_size)
    for batch in plan_batches([len(p) for p in prompts], batch_tokens, 64):
        lengths = [len(prompts[i]) for i in batch]
        ids = torch.zeros((len(batch), max(lengths)), dtype=torch.long)
        for row, index in enumerate(batch):
            ids[row, : lengths[row]] = torch.as_tensor(prompts[index])
        hidden = backbone(input_ids=ids, use_cache=False).last_hidden_state
        out[batch] = hidden[torch.arange(len(batch)), torch.as_tensor(lengths) - 1].float()
    return out


# ---------------------------------------------------------------- variants


def _cast_input_hook(dtype: Any) -> Callable[..., Any]:
    def hook(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(a.to(dtype) if hasattr(a, "dtype") and a.is_floating_point() else a for a in args)

    return hook


def _register_fp32_attention() -> str:
    """An attention function that runs torch's sdpa on float32 copies of q, k, v (returns the input dtype)."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    def fp32_sdpa(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any) -> Any:
        out, weights = sdpa_attention_forward(module, query.float(), key.float(), value.float(),
                                              attention_mask, **kwargs)  # fmt: skip
        return out.to(query.dtype), weights

    AttentionInterface.register("sdpa_fp32", fp32_sdpa)
    return "sdpa_fp32"


def build_variant(fp32_model: Any, name: str) -> Any:
    import torch

    from patentrank.models.precision import mix_bf16_linears

    model = copy.deepcopy(fp32_model)
    layers = model.config.num_hidden_layers
    if name == "float32":
        return model
    if name.startswith("bf16"):
        model.to(torch.bfloat16)
        if "norm" in name:  # final RMSNorm in float32, fed float32
            model.model.norm.float().register_forward_pre_hook(_cast_input_hook(torch.float32))
        if "attn" in name:
            model.set_attn_implementation(_register_fp32_attention())
        return model
    skip = frozenset({0, layers - 1}) if "first-last" in name else frozenset()
    mix_bf16_linears(model, skip_layers=skip)
    return model


VARIANTS = {
    "float32": "float32 (reference)",
    "bf16 head-bf16": "plain bf16, yes/no head applied in bf16 (what a bf16 lm_head does)",
    "bf16": "plain bf16 weights and activations; yes-minus-no head in fp32 (ours)",
    "bf16 norm": "plain bf16 + final norm in fp32",
    "bf16 attn": "plain bf16 + attention (sdpa) on fp32 q/k/v",
    "bf16 norm attn": "plain bf16 + final norm and attention in fp32",
    "mixed": "mixed: bf16 matmul weights; fp32 residual stream, norms, rotary, attention, head",
    "mixed first-last": "mixed, first and last decoder layers fully fp32",
    "int8": "ONNX Runtime dynamic INT8 (MatMul weights per channel; embeddings, norms, softmax, head fp32)",
}


def markdown(summary: dict[str, Any]) -> str:
    """The variant table as docs/benchmarks.md shows it."""
    headers = ["variant", "tokens/s", "vs fp32", "max abs dP", "Spearman pooled / worst query",
               "meets the bar (rho >= 0.99, dP <= 0.01)", "raw random head: Spearman"]  # fmt: skip
    rows = []
    for r in summary["rows"]:
        ok = r["spearman"] >= 0.99 and r["max_abs"] <= 0.01
        raw = "-" if r["raw_head_spearman"] != r["raw_head_spearman"] else f"{r['raw_head_spearman']:.4f}"
        rho = f"{r['spearman']:.4f} / {r['spearman_min_query']:.4f}"
        speed = [f"{r['tokens_per_s']:.0f}", f"{r['speedup']:.2f}x"]
        rows.append([r["what"], *speed, f"{r['max_abs']:.4f}", rho, "yes" if ok else "**no**", raw])
    return bench.markdown_table(headers, rows)


def main(argv: list[str] | None = None) -> None:
    bench.quiet_environment()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    raw_text = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw_text)
    parser.add_argument("--shape", default="0.6b", choices=("0.6b", "small", "tiny"))
    parser.add_argument("--queries", type=int, default=2)
    parser.add_argument("--docs-per-query", type=int, default=10)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", default="benchmarks/results/precision-study.json")
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from benchmarks.rerank_bench import model_folder
    from patentrank.config import PATENT_INSTRUCTION
    from patentrank.models.prompt import Qwen3Prompt

    source = model_folder(args.shape, 0)
    tokenizer = AutoTokenizer.from_pretrained(source)
    prompt = Qwen3Prompt(tokenizer, max_length=8192)

    def prompts_of(seed: int, queries: int, docs: int) -> list[list[list[int]]]:
        w = bench.rerank_workload(tokenizer, queries, docs, 64, 512, seed)
        return [[p.input_ids for p in prompt.encode(q, d, PATENT_INSTRUCTION)]
                for q, d in zip(w.queries, w.documents, strict=True)]  # fmt: skip

    folder = calibrated_folder(source, 0, calibration_prompts(source))
    per_query = prompts_of(0, args.queries, args.docs_per_query)
    flat = [p for q in per_query for p in q]
    bounds = np.cumsum([0, *map(len, per_query)])
    fp32_model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    out = fp32_model.get_output_embeddings().weight
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    head = (out[yes] - out[no]).detach().float()
    embed = fp32_model.model.embed_tokens.weight  # the random model's own (tied) head rows
    random_head = (embed[yes] - embed[no]).detach().float()
    rows, reference = [], {}
    tokens = sum(map(len, flat))
    for name in [v.strip() for v in args.variants.split(",")]:
        if name == "int8":
            from patentrank.models.onnx_int8 import load_int8_scorer

            start = time.perf_counter()
            scorer = load_int8_scorer(str(folder), yes, no, 0, 8192, 64, torch.get_num_threads())
            print(f"int8 load (export if not cached): {time.perf_counter() - start:.0f} s")
            scorer.logits([flat[0][:64]])  # warm-up
            start = time.perf_counter()
            logits = scorer.logits(flat)
            seconds = time.perf_counter() - start
            raw = reference["raw"] * np.nan  # the export carries the calibrated head only
        else:
            model = build_variant(fp32_model, name)
            with torch.inference_mode():
                last_hidden(model.get_decoder(), [flat[0][:64]])  # warm-up
                start = time.perf_counter()
                hidden = last_hidden(model.get_decoder(), flat)
                seconds = time.perf_counter() - start
            del model
            if name == "bf16 head-bf16":  # the head itself in bf16, on a bf16 hidden state
                logits = (hidden.bfloat16() @ head.bfloat16()).float().numpy()
            else:
                logits = (hidden @ head).numpy()
            raw = (hidden @ random_head).numpy()
        p = 1 / (1 + np.exp(-logits.astype(np.float64)))
        if name == "float32":
            reference = {"p": p, "raw": raw, "seconds": seconds}
        split = [p[a:b].tolist() for a, b in itertools.pairwise(bounds)]
        ref_split = [reference["p"][a:b].tolist() for a, b in itertools.pairwise(bounds)]
        agree = bench.score_agreement(ref_split, split)
        from scipy.stats import spearmanr

        raw_rho = float(spearmanr(reference["raw"], raw).statistic)
        row = {"variant": name, "what": VARIANTS[name], "seconds": seconds, "tokens_per_s": tokens / seconds,
               "speedup": reference["seconds"] / seconds, "raw_head_spearman": raw_rho, **agree}  # fmt: skip
        rows.append(row)
        print(f"{name:18s} {seconds:6.1f} s {row['speedup']:.2f}x  max|dP| {agree['max_abs']:.4f}  "
              f"rho {agree['spearman']:.4f} worst q {agree['spearman_min_query']:.4f}  "
              f"raw-head rho {raw_rho:.4f}  P range {p.min():.3f}-{p.max():.3f}")  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    summary = {"tokens": tokens, "prompts": len(flat), "isa": bench.cpu_isa_flags(), "rows": rows}
    Path(args.out).write_text(json.dumps(summary, indent=1))
    print("\n" + markdown(summary))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
