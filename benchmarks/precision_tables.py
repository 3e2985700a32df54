"""The precision table of `rerank_bench` (configurations c-g): speed and agreement with float32."""

from __future__ import annotations

from typing import Any

from benchmarks import common as bench

# Each reduced-precision configuration is compared with the float32 run of the same scoring path:
# plain batches (c) or shared query prefix (e). int8 has no shared-prefix path, so it is also shown
# against (e), the float32 default a user would otherwise get.
BASELINE = {"c": "c", "d": "c", "e": "e", "f": "e", "g": "c"}
LABELS = {
    "c": "ours float32, plain batches",
    "d": "ours bfloat16 (plain), plain batches",
    "e": "ours float32, shared prefix (the fp32 default)",
    "f": "ours dtype=auto, shared prefix",
    "g": "ours int8 (ONNX Runtime), plain batches",
}
HEADERS = [
    "configuration",
    "dtype chosen (why)",
    "tokens/s",
    "vs fp32 same path",
    "vs (e)",
    "max abs dP",
    "Spearman pooled / worst query",
    "peak RSS",
    "load (+export) s",
]


def _tokens(lengths: list[list[int]], subset: list[list[int]] | None) -> int:
    if subset is None:
        return sum(map(sum, lengths))
    return sum(sum(q[j] for j in subset[i]) for i, q in enumerate(lengths))


def precision_section(results: dict[str, dict[str, Any]], lengths: list[list[int]], calibrated: bool) -> str:
    """Markdown: one row per configuration c-g present, then the issue 13 targets."""
    tps = {n: _tokens(lengths, r.get("subset")) / r["seconds"] for n, r in results.items()}
    rows, agreement = [], {}
    for name in "cdefg":
        if name not in results:
            continue
        r, base = results[name], BASELINE[name]
        precision = r.get("precision") or {}
        if base in results and base != name:
            ref = results[base]["scores"]
            agreement[name] = bench.score_agreement(ref, r["scores"])
        a = agreement.get(name)
        export = " (exported in this run)" if r.get("exported") else ""
        rows.append(
            [
                f"({name}) {LABELS[name]}",
                f"{precision.get('dtype', '?')} ({precision.get('dtype_reason', '')})",
                f"{tps[name]:.0f}",
                f"{tps[name] / tps[base]:.2f}x" if base in tps else "-",
                f"{tps[name] / tps['e']:.2f}x" if "e" in tps else "-",
                f"{a['max_abs']:.4f}" if a else "-",
                f"{a['spearman']:.4f} / {a['spearman_min_query']:.4f}" if a else "-",
                bench.gib(r["peak_rss_bytes"]),
                f"{r['load_seconds']:.1f}{export}",
            ]
        )
    targets = []
    if "f" in agreement:
        f, speed = agreement["f"], tps["f"] / tps["e"]
        ok = speed >= 2.2 and f["spearman"] >= 0.99
        targets.append(
            [
                "native-bf16 CPU: auto >= 2.2x our fp32 (e) at Spearman >= 0.99",
                f"{speed:.2f}x at {f['spearman']:.4f} (max abs dP {f['max_abs']:.4f})",
                "yes" if ok else "**no**",
            ]
        )
    if "g" in agreement:
        g = agreement["g"]
        for base in ("c", "e"):
            if base in tps:
                speed = tps["g"] / tps[base]
                ok = speed >= 1.8 and g["spearman"] >= 0.98
                targets.append(
                    [
                        f"any x86: INT8 >= 1.8x our fp32 ({base}) at Spearman >= 0.98",
                        f"{speed:.2f}x at {g['spearman']:.4f} (max abs dP {g['max_abs']:.4f})",
                        "yes" if ok else "**no**",
                    ]
                )
    spread = (
        "Scores come from the **calibrated** model (yes/no head along the main direction of passage "
        "variation, fp32 logit std 2.3: P(yes) over about [0.01, 0.99]; see benchmarks/precision_study.py)."
        if calibrated
        else "Scores come from the raw random model (all P(yes) near 0.5): dP understates errors."
    )
    return "\n".join(
        [
            "### Precision side by side (issue 13)",
            "",
            spread,
            "",
            bench.markdown_table(HEADERS, rows),
            "",
            "Agreement is against the float32 run of the same scoring path ((c) for plain batches, (e) "
            "for the shared prefix); Spearman over all pairs pooled and for the worst single query.",
            "",
            bench.markdown_table(["target", "measured", "met"], targets),
            "",
        ]
    )
