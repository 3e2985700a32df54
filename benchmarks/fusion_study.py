"""Fusion methods compared offline on the dumped retriever lists of benchmarks/fusion_runs.py.

For each collection and query language: lexical, dense, and every fusion method over a small grid,
nDCG@10 (linear gains, as trec_eval) of the patents in first-passage order, the same aggregation the
pipeline does. Prints one table per method family and the best setting per method across all
collections (the mean over collection/language cells of the shortfall against max(lexical, dense)).

    .venv/bin/python benchmarks/fusion_study.py /tmp/fusion-runs/*.json.gz
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

Lists = dict[str, list[tuple[int, str, float]]]
Fuser = Callable[[dict[str, Any]], dict[int, float]]


def ndcg10(ranked: list[str], judged: dict[str, int]) -> float:
    gains = sorted((g for g in judged.values() if g > 0), reverse=True)[:10]
    ideal = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    if not ideal:
        return 0.0
    return sum(judged.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10])) / ideal


def patents_in_order(scores: dict[int, float], owner: dict[int, str]) -> list[str]:
    seen: dict[str, None] = {}
    for pid in sorted(scores, key=lambda p: (-scores[p], p)):
        seen.setdefault(owner[pid], None)
    return list(seen)


def single(name: str) -> Fuser:
    return lambda q: {p: s for p, _, s in q[name]}


def rrf(k: float, w_lex: float, w_dense: float) -> Fuser:
    def fuse(q: dict[str, Any]) -> dict[int, float]:
        out: dict[int, float] = {}
        for name, w in (("lexical", w_lex), ("dense", w_dense)):
            for rank, (p, _, _) in enumerate(q[name], 1):
                out[p] = out.get(p, 0.0) + w / (k + rank)
        return out

    return fuse


def _minmax(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    return lo, (hi - lo) or 1.0


def convex(alpha: float, lex_norm: str, dense_norm: str) -> Fuser:
    """alpha * lexical' + (1 - alpha) * dense', a retriever's missing passage counting as its 0."""

    def fuse(q: dict[str, Any]) -> dict[int, float]:
        out: dict[int, float] = {}
        lex = q["lexical"]
        if lex:
            if lex_norm == "bound":
                lo, span = 0.0, q["bound"] or 1.0
            elif lex_norm == "max":
                lo, span = 0.0, lex[0][2] or 1.0
            else:
                lo, span = _minmax([s for _, _, s in lex])
            for p, _, s in lex:
                out[p] = alpha * (s - lo) / span
        dense = q["dense"]
        if dense:
            scores = [s for _, _, s in dense]
            if dense_norm == "minmax":
                lo, span = _minmax(scores)
            elif dense_norm == "raw":
                lo, span = 0.0, 1.0
            else:  # "tail": the list's lowest score as 0 and the theoretical best (cosine 1) as 1
                lo, span = min(scores), (1.0 - min(scores)) or 1.0
            for p, _, s in dense:
                out[p] = out.get(p, 0.0) + (1 - alpha) * (s - lo) / span
        return out

    return fuse


def confident_rrf(k: float, w: float, tau: float) -> Fuser:
    """RRF whose lexical weight grows with the lexical confidence c = top score / bound: w * c / (c + tau)."""

    def fuse(q: dict[str, Any]) -> dict[int, float]:
        lex = q["lexical"]
        c = (lex[0][2] / q["bound"]) if lex and q["bound"] else 0.0
        return rrf(k, w * c / (c + tau), 1.0)(q)

    return fuse


def evaluate(data: dict[str, Any], fuser: Fuser) -> dict[str, float]:
    cells: dict[str, list[float]] = {}
    for q in data["queries"]:
        owner = {p: d for p, d, _ in q["lexical"]} | {p: d for p, d, _ in q["dense"]}
        value = ndcg10(patents_in_order(fuser(q), owner), data["qrels"].get(q["id"], {}))
        cells.setdefault("all", []).append(value)
        if q["lang"]:
            cells.setdefault(q["lang"], []).append(value)
    return (
        {lang: sum(v) / len(v) for lang, v in cells.items()}
        if len(cells) > 2
        else {"all": sum(cells["all"]) / len(cells["all"])}
    )


def methods() -> dict[str, Fuser]:
    grid: dict[str, Fuser] = {"lexical": single("lexical"), "dense": single("dense")}
    for k, ratio in itertools.product((10, 30, 60, 100), (0.5, 0.75, 1.0, 1.5, 2.0)):
        grid[f"rrf k={k} lex/dense={ratio}"] = rrf(k, ratio, 1.0)
    alphas = [round(0.2 + 0.05 * i, 2) for i in range(13)]  # 0.2 .. 0.8
    for alpha, ln, dn in itertools.product(alphas, ("bound", "max", "minmax"), ("minmax", "raw", "tail")):
        grid[f"convex a={alpha} lex={ln} dense={dn}"] = convex(alpha, ln, dn)
    for k, w, tau in itertools.product((30, 60), (1.0, 1.5, 2.0), (0.05, 0.1, 0.2)):
        grid[f"confident-rrf k={k} w={w} tau={tau}"] = confident_rrf(k, w, tau)
    return grid


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dumps", type=Path, nargs="+")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--half", choices=("even", "odd"), help="only every other query (a check that a choice generalises)"
    )
    args = parser.parse_args()
    grid = methods()
    table: dict[str, dict[str, float]] = {name: {} for name in grid}
    for path in args.dumps:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
        if args.half:
            data["queries"] = data["queries"][args.half == "odd" :: 2]
        short = data["collection"].split("_")[0]
        for name, fuser in grid.items():
            for lang, value in evaluate(data, fuser).items():
                table[name][f"{short} {lang}"] = value
    cells = list(table["lexical"])
    floor = {c: max(table["lexical"][c], table["dense"][c]) for c in cells}
    scored = []
    for name, row in table.items():
        shortfall = sum(max(0.0, floor[c] - row[c]) for c in cells)
        worst = min(row[c] - floor[c] for c in cells)
        scored.append((shortfall, -sum(row.values()) / len(row), worst, name))
    print("| method | " + " | ".join(cells) + " | mean | worst vs best single |")
    print("|---" * (len(cells) + 3) + "|")
    for name in ("lexical", "dense"):
        row = table[name]
        print(
            f"| {name} | "
            + " | ".join(f"{row[c]:.3f}" for c in cells)
            + f" | {sum(row.values()) / len(row):.3f} | |"
        )
    for _, mean, worst, name in sorted(scored)[: args.top]:
        row = table[name]
        print(
            f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in cells) + f" | {-mean:.3f} | {worst:+.3f} |"
        )


if __name__ == "__main__":
    main()
