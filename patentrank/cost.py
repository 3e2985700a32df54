"""What long model work will cost: speed measured on the first batch, the total estimated from it.

`patentrank index`, `patentrank eval` and the web page's ingest and rerank time the model on its first
batch, extrapolate the work ahead in tokens (passages vary in length, so counting texts alone would
mislead), and say at once how long the rest will take; above an hour on a CPU they name the faster
options. A `WorkMeter` keeps measuring as the work goes on, so the estimate it reports refines itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from patentrank.chunking import approx_tokens

ONE_HOUR_S = 3600.0
EmbedObserver = Callable[[Sequence[str], float], None]
SMALL_EMBEDDER = "../shared/models/build-me5-small"


@dataclass(frozen=True, slots=True)
class Throughput:
    """Items (passages, pairs) and tokens done in `seconds` of model time."""

    items: int
    tokens: int
    seconds: float

    @property
    def items_per_s(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("inf")

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True, slots=True)
class Estimate:
    """The work ahead (`items` of `unit`, `tokens` in all, of which `done_tokens` are done) at `speed`.

    Example:
        >>> speed = Throughput(items=64, tokens=12_800, seconds=1.68)   # the first batch: 38 passages/s
        >>> e = Estimate("embedding", "passages", items=10_982, tokens=2_196_400, speed=speed)
        >>> print(e.line())  # doctest: +NORMALIZE_WHITESPACE
        embedding 10,982 passages: about 4.8 min on this CPU
        (38 passages/s, 7,619 tokens/s, measured on the first batch)
        >>> e.warning() is None
        True
    """

    task: str  # "embedding", "reranking"
    unit: str  # "passages", "pairs"
    items: int
    tokens: int
    speed: Throughput
    where: str = "this CPU"  # "this CPU", "the GPU", "the remote server"
    done_tokens: int = 0
    measured_on: str = "the first batch"
    projected_from: str = ""  # when the total is projected: from what, e.g. "the first 2% of the input"

    @property
    def seconds(self) -> float:
        """Time left: the tokens still to do at the measured token rate (attention makes long passages
        cost a little more per token; at the 512-token passages of an index the linear layers dominate)."""
        rate = self.speed.tokens_per_s
        return max(self.tokens - self.done_tokens, 0) / rate if rate > 0 else 0.0

    def line(self) -> str:
        left = format_duration(self.seconds)
        what = f"{self.items:,} {self.unit}"
        if self.projected_from:
            what = f"~{what} (projected from {self.projected_from})"
        return (
            f"{self.task} {what}: about {left} on {self.where} "
            f"({self.speed.items_per_s:,.0f} {self.unit}/s, {self.speed.tokens_per_s:,.0f} tokens/s, "
            f"measured on {self.measured_on})"
        )

    def warning(self) -> str | None:
        """The faster options, when the work would take over an hour on a CPU; else None."""
        if self.seconds <= ONE_HOUR_S or self.where != "this CPU":
            return None
        options = faster_options(self.task)
        return f"warning: {self.task} will take over an hour on this CPU; faster: {options}"


def faster_options(task: str) -> str:
    """What makes `task` ('embedding' or 'reranking') faster, with the setting that selects it."""
    role = "EMBEDDER" if task == "embedding" else "RERANKER"
    options = [
        "a GPU (PATENTRANK_DEVICE=cuda)",
        f"a remote vLLM server (PATENTRANK_{role}_URL=http://host:8000)",
    ]
    if task == "embedding":
        options.append(
            f"a smaller embedder such as multilingual-e5-small (PATENTRANK_EMBEDDER_MODEL={SMALL_EMBEDDER})"
        )
    else:
        options.append(
            "fewer rerank candidates (--candidates / PATENTRANK_RERANK_CANDIDATES, fewer --rerank-queries) "
            "or shorter passages (PATENTRANK_RERANK_PASSAGE_TOKENS)"
        )
    return "; ".join(options)


def format_duration(seconds: float) -> str:
    """A human duration: '40 s', '6.5 min', '2.3 h'.

    Example:
        >>> [format_duration(s) for s in (4, 390, 8280)]
        ['4 s', '6.5 min', '2.3 h']
    """
    if seconds < 90:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def where_it_runs(model: Any) -> str:
    """'the remote server', 'the GPU' or 'this CPU', from a loaded model (or None: this CPU)."""
    if getattr(model, "is_remote", False):
        return "the remote server"
    device = getattr(model, "device", None)
    return "the GPU" if getattr(device, "type", str(device)) == "cuda" else "this CPU"


def token_counter(model: Any) -> Callable[[Sequence[str]], int]:
    """Tokens of some texts in `model`'s own tokenizer when it has `count_tokens`, else estimated."""
    counter = getattr(model, "count_tokens", None)
    if callable(counter):
        return lambda texts: int(sum(counter(list(texts)))) if texts else 0
    return lambda texts: sum(approx_tokens(t) for t in texts)


class WorkMeter:
    """Times each model call of one long job and reports its estimate once, after the first call.

    `observe(texts, seconds)` records one call; `total_items` / `total_tokens` give the work in all
    when known, `fraction_done()` projects it from the share read so far when not. `report(line)`
    gets the estimate (and the warning) at once; `estimate()` is the refined one at any later time.

    Example:
        >>> lines = []
        >>> meter = WorkMeter("embedding", "passages", count_tokens=lambda t: 10 * len(t),
        ...                   total_items=1000, report=lines.append)
        >>> meter.observe(["a"] * 50, seconds=2.0)
        >>> print(lines[0])  # doctest: +NORMALIZE_WHITESPACE
        embedding 1,000 passages: about 38 s on this CPU
        (25 passages/s, 250 tokens/s, measured on the first batch)
    """

    def __init__(
        self,
        task: str,
        unit: str,
        *,
        count_tokens: Callable[[Sequence[str]], int],
        report: Callable[[str], None],
        where: str = "this CPU",
        total_items: int | None = None,
        total_tokens: int | None = None,
        fraction_done: Callable[[], float | None] | None = None,
        measured_on: str = "the first batch",
    ) -> None:
        self.task, self.unit, self.where = task, unit, where
        self.count_tokens = count_tokens
        self.report = report
        self.total_items, self.total_tokens = total_items, total_tokens
        self.fraction_done = fraction_done
        self.measured_on = measured_on
        self.items = self.tokens = 0
        self.seconds = 0.0
        self.first: Estimate | None = None
        self.started = time.perf_counter()

    def observe(self, texts: Sequence[str], seconds: float) -> None:
        """Record one model call over `texts`; the estimate is reported as soon as it can be made."""
        self.items += len(texts)
        self.tokens += self.count_tokens(texts)
        self.seconds += seconds
        if self.fraction_done is None or self._fraction():
            self.checkpoint()

    def checkpoint(self) -> None:
        """Call after each batch is read in full (e.g. from a progress callback): the first call after a
        model call reports the estimate, or, when the total cannot be known, the measured speed."""
        if self.first is not None or not self.items:
            return
        estimate = self.estimate(first=True)
        if estimate is not None:
            self.first = estimate
            self.report(estimate.line())
            warning = estimate.warning()
            if warning:
                self.report(warning)
            return
        speed = Throughput(self.items, self.tokens, self.seconds)
        self.first = Estimate(self.task, self.unit, self.items, self.tokens, speed, self.where)
        self.report(
            f"{self.task}: {speed.items_per_s:,.0f} {self.unit}/s, {speed.tokens_per_s:,.0f} tokens/s on "
            f"{self.where} (measured on {self.measured_on}; the total is not known ahead)"
        )

    def _fraction(self) -> float | None:
        fraction = self.fraction_done() if self.fraction_done is not None else None
        return fraction if fraction and fraction > 0 else None

    def estimate(self, first: bool = False) -> Estimate | None:
        """The work ahead at the speed measured so far (None before any call, or with no total)."""
        if not self.items:
            return None
        items, tokens, projected = self.total_items, self.total_tokens, ""
        fraction = self._fraction()
        if tokens is None and items is not None:
            tokens = round(items * self.tokens / self.items)  # this far's tokens per item, for the rest
        if tokens is None and fraction:
            tokens, items = round(self.tokens / fraction), round(self.items / fraction)
            projected = f"the first {fraction:.1%} of the input" if fraction < 1 else ""
        if tokens is None or items is None:
            return None
        speed = Throughput(self.items, self.tokens, self.seconds)
        on = self.measured_on if first else f"{self.items:,} {self.unit} so far"
        return Estimate(
            self.task, self.unit, max(items, self.items), max(tokens, self.tokens), speed, self.where,
            done_tokens=self.tokens, measured_on=on, projected_from=projected,
        )  # fmt: skip

    def timed_rerank(self, call: Callable[..., Any]) -> Callable[..., Any]:
        """A `rerank(query, documents, instruction)` callable whose calls are observed (pairs = documents)."""

        def wrapper(query: str, documents: list[str], instruction: str | None = None) -> Any:
            began = time.perf_counter()
            out = call(query, documents, instruction)
            self.observe([f"{query}\n{d}" for d in documents], time.perf_counter() - began)
            return out

        return wrapper

    def eta(self) -> str:
        """A short postfix for a progress bar: the token-weighted time left, e.g. 'embedding 5.2 min left'."""
        estimate = self.estimate()
        return f"{self.task} {format_duration(estimate.seconds)} left" if estimate is not None else ""


def track_ingest(
    bar: Any, embedder: Any, report: Callable[[str], None], *, bar_counts_patents: bool = True
) -> tuple[Callable[[int], None], EmbedObserver | None]:
    """`progress` and `on_embedded` for `PatentIndex.add` under a tqdm `bar` whose total is the input's
    size (patents, or bytes of XML that its reader counts itself): the estimate is reported after the
    first batch, projected from the share of the input read, and the bar's postfix shows the
    token-weighted time left from then on. A disabled bar (--json) still counts patents here.

    Without an embedder there is nothing slow to estimate: (the bar's update, None).
    """
    read = [0]

    def count(patents: int) -> None:
        read[0] += patents
        if bar_counts_patents:
            bar.update(patents)

    if embedder is None:
        return count, None

    def fraction_done() -> float | None:
        if not bar.total:
            return None
        return (read[0] if bar_counts_patents else bar.n) / bar.total

    meter = WorkMeter(
        "embedding",
        "passages",
        count_tokens=token_counter(embedder),
        report=report,
        where=where_it_runs(embedder),
        fraction_done=fraction_done,
    )

    def progress(patents: int) -> None:
        count(patents)
        meter.checkpoint()
        postfix = meter.eta()
        if postfix:
            bar.set_postfix_str(postfix, refresh=False)

    return progress, meter.observe
