"""How fast a search-benchmark build went as the index grew: passages/s against passages indexed.

Reads the progress lines (`indexing: ... 1302620/10000000 [24:56<...`) that `search_bench` writes to
stderr, one log per build, and draws each build's rate over windows of `--window` passages. A log of
a build resumed after a stop holds several parts; each part's clock starts again, so each is drawn on.

    .venv/bin/python -m benchmarks.build_curve "label=log" ["label=log" ...] --out docs/build-rate.png

Example:
    >>> lines = "indexing: 1%| | 100/1000 [00:01<..]\\rindexing: 2%| | 300/1000 [00:02<..]"
    >>> progress_points(lines)
    [(100, 1.0), (300, 2.0)]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

_LINE = re.compile(r"indexing:[^|]*\|[^|]*\|\s*(\d+)/(\d+)\s*\[(?:(\d+):)?(\d+):(\d+)")


def progress_points(text: str) -> list[tuple[int, float]]:
    """(passages, seconds since the part started) of every progress line, in order."""
    points = []
    for match in _LINE.finditer(text.replace("\r", "\n")):
        done, _, hours, minutes, seconds = match.groups()
        points.append((int(done), int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)))
    return points


def rates(points: list[tuple[int, float]], window: int) -> list[tuple[float, float]]:
    """(passages at the window's middle, passages/s over the window). A clock that goes back starts a
    resumed part: its first line shows 0, its second the passages already stored, so the series starts
    again from that second line, after a (nan, nan) point that breaks the drawn line.

    Example (a part stopped at 300 passages, resumed from 250):
        >>> rates([(0, 0.0), (100, 1.0), (300, 3.0), (0, 0.0), (250, 1.0), (450, 3.0)], 150)
        [(150.0, 100.0), (nan, nan), (350.0, 100.0)]
    """
    out: list[tuple[float, float]] = []
    start: tuple[int, float] | None = points[0] if points else None
    last_seconds = start[1] if start else 0.0
    for done, seconds in points[1:]:
        if seconds < last_seconds:  # a new part: its clock restarted
            start = None
            if out:
                out.append((float("nan"), float("nan")))
        last_seconds = seconds
        if start is None:
            start = (done, seconds) if done > 0 else None
            continue
        if done - start[0] >= window and seconds > start[1]:
            out.append(((done + start[0]) / 2, (done - start[0]) / (seconds - start[1])))
            start = (done, seconds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("logs", nargs="+", help="label=path of a search_bench stderr log")
    parser.add_argument("--window", type=int, default=200_000, help="passages per rate point")
    parser.add_argument("--title", default="Indexing rate as the index grows (search benchmark, 2 cores)")
    parser.add_argument("--out", type=Path, default=Path("docs/build-rate.png"))
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    for item in args.logs:
        label, _, path = item.partition("=")
        series = rates(progress_points(Path(path).read_text(encoding="utf-8", errors="replace")), args.window)
        if not series:
            raise SystemExit(f"no progress lines in {path}")
        ax.plot([x / 1e6 for x, _ in series], [y for _, y in series], marker=".", label=label)
    ax.set_xlabel("passages indexed (millions)")
    ax.set_ylabel(f"passages/s over {args.window:,} passages")
    ax.set_title(args.title)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
