"""The chart behind the default fusion weight: nDCG@10 of score fusion against its lexical weight.

One line per collection and query language over the dumps of benchmarks/fusion_runs.py; each line's
dotted level is the better single stage and its cross the old default (RRF, k=60, equal weights).

    .venv/bin/python benchmarks/fusion_plot.py /tmp/fusion-runs/*.json.gz --out docs/fusion-weight.png
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from benchmarks.fusion_study import convex, evaluate, rrf, single
from patentrank.fusion import DEFAULT_LEXICAL_WEIGHT


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dumps", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, default=Path("docs/fusion-weight.png"))
    args = parser.parse_args()
    alphas = [round(0.05 * i, 2) for i in range(1, 20)]
    fig, ax = plt.subplots(figsize=(9.5, 5), dpi=110)
    for path in args.dumps:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
        short = data["collection"].split("_")[0]
        curves = [evaluate(data, convex(a, "bound", "tail")) for a in alphas]
        lexical, dense = evaluate(data, single("lexical")), evaluate(data, single("dense"))
        old = evaluate(data, rrf(60, 1.0, 1.0))
        for cell in curves[0]:
            if short != "wasteheat" and cell != "all":
                continue
            (line,) = ax.plot(alphas, [c[cell] for c in curves], label=f"{short} {cell}")
            ax.axhline(max(lexical[cell], dense[cell]), color=line.get_color(), linestyle=":", linewidth=1)
            ax.plot([0.5], [old[cell]], marker="x", color=line.get_color())
    ax.axvline(DEFAULT_LEXICAL_WEIGHT, color="grey", linewidth=1)
    ax.set_xlabel("lexical weight w (dense weight 1 - w); grey: the default")
    ax.set_ylabel("nDCG@10 (dev queries)")
    ax.set_title("Score fusion with multilingual-e5-small: dotted = better single stage, x = RRF k=60")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
