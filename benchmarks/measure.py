"""Measuring tools of the search benchmark: stage clocks, latency passes, other processes' CPU, disk."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

BUSY_CORES = 0.2  # other processes' CPU above which a measurement is marked unreliable


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def progress_bar(total: int, desc: str, unit: str = "passage") -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, mininterval=2.0, file=sys.stderr)


class OthersCpu:
    """CPU used by other processes while a block runs, in cores (from /proc/stat less our own CPU time):
    on a 2-core machine anything above ~0.2 makes latencies unreliable, so the report marks it."""

    cores = 0.0

    def __enter__(self) -> OthersCpu:
        self.start = (time.perf_counter(), _machine_busy_s(), sum(os.times()[:2]))
        return self

    def __exit__(self, *exc: object) -> None:
        self.cores = self.so_far()

    def so_far(self) -> float:
        now = (time.perf_counter(), _machine_busy_s(), sum(os.times()[:2]))
        wall, busy, own = (a - b for a, b in zip(now, self.start, strict=True))
        return max(0.0, (busy - own) / wall) if wall > 0 else 0.0


def _machine_busy_s() -> float:
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


class StageClock:
    """Self time per stage of real calls, from timing wrappers put around the parts of an object.

    A wrapped call nested inside another (the analyzer inside the lexical engine's `add`, `add` calling
    `add_tokens`) is charged to its own stage and subtracted from its caller's, so stages never count
    the same second twice and add up to the wrapped time. Parts missing from the object under test
    are skipped (`wrap` returns False), so the clock survives a refactoring of what it measures.

    Only totals are kept (a call per passage at 10M passages would otherwise fill lists), plus the
    wall time of each call of the methods named in `keep_calls` (commits, saves). Time spent in the
    `after` hooks (the benchmark's own bookkeeping) goes to the stage HOOKS, never to the caller.

    Example:
        >>> import types
        >>> box = types.SimpleNamespace(work=lambda: time.sleep(0.01))
        >>> clock = StageClock()
        >>> clock.wrap(box, "work", "w"), clock.wrap(box, "missing", "m")
        (True, False)
        >>> box.work(); clock.undo(); round(clock.seconds("w"), 2) >= 0.01
        True
    """

    HOOKS = "benchmark hooks"

    def __init__(self, keep_calls: Sequence[str] = ("commit", "save")) -> None:
        self.self_s: dict[str, float] = {}  # self time per stage
        self.wall: dict[str, list[float]] = {}  # wall time of each call, per "stage:method" in keep_calls
        self.wrapped: list[str] = []
        self._keep = set(keep_calls)
        self._undo: list[Callable[[], None]] = []
        self._local = threading.local()

    def wrap(
        self, owner: Any, name: str, stage: str, after: Callable[[tuple, Any], None] | None = None
    ) -> bool:
        original = getattr(owner, name, None)
        if original is None or not callable(original):
            return False
        keep = self.wall.setdefault(f"{stage}:{name}", []) if name in self._keep else None

        def timed(*args: Any, **kwargs: Any) -> Any:
            stack = self._local.__dict__.setdefault("stack", [])
            stack.append(0.0)  # time spent in wrapped calls nested inside this one
            start = time.perf_counter()
            try:
                result = original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                nested = stack.pop()
                if stack:
                    stack[-1] += elapsed
                self.self_s[stage] = self.self_s.get(stage, 0.0) + elapsed - nested
                if keep is not None:
                    keep.append(elapsed)
            if after is not None:
                start = time.perf_counter()
                after(args, result)
                spent = time.perf_counter() - start
                self.self_s[self.HOOKS] = self.self_s.get(self.HOOKS, 0.0) + spent
                if stack:
                    stack[-1] += spent
            return result

        setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, original))
        self.wrapped.append(f"{stage}:{name}")
        return True

    def seconds(self, stage: str) -> float:
        return self.self_s.get(stage, 0.0)

    def undo(self) -> None:
        while self._undo:
            self._undo.pop()()


def timed_pass(
    call: Callable[[Any], Any],
    items: Sequence[Any],
    warmup: int = 3,
    budget_s: float = float("inf"),
    keep: bool = False,
) -> dict[str, Any]:
    """p50 / p95 / mean ms of one call per item after a few warm-up calls (and the answers with
    `keep`); stops after `budget_s` once 20 items are done, so slow stages stay bounded ('n' says how
    many ran). `call` may return a dict with 'stage_ms' to report a part of the call as well."""
    for item in items[:warmup]:
        call(item)
    samples, parts, answers, began = [], [], [], time.perf_counter()
    with OthersCpu() as others:
        for item in items:
            if len(samples) >= 20 and time.perf_counter() - began > budget_s:
                break
            start = time.perf_counter()
            answer = call(item)
            samples.append((time.perf_counter() - start) * 1000)
            if isinstance(answer, dict) and "stage_ms" in answer:
                parts.append(answer["stage_ms"])
            if keep:
                answers.append(answer)
    p50, p95 = np.percentile(samples, [50, 95])
    out = {
        "p50": float(p50),
        "p95": float(p95),
        "mean": float(np.mean(samples)),
        "n": len(samples),
        "others_cores": others.cores,
    }
    if parts:
        out["stage_p50"], out["stage_p95"] = (float(x) for x in np.percentile(parts, [50, 95]))
    if keep:
        out["answers"] = answers
    return out


def disk_usage(folder: Path) -> dict[str, int]:
    """Bytes per top-level part of an index folder: SQLite files grouped by database, folders by name."""
    parts: dict[str, int] = {}
    if not folder.exists():
        return parts
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            size = sum(p.stat().st_size for p in entry.rglob("*") if p.is_file())
            name = entry.name + "/"
        else:
            size, name = (
                entry.stat().st_size,
                entry.name.split(".sqlite")[0] + (".sqlite" if ".sqlite" in entry.name else ""),
            )
        parts[name] = parts.get(name, 0) + size
    return parts
