"""Memoized jieba for the search benchmark's large sizes, and the real analyzer's uncached rate.

`patentrank.text.analyze` cuts text into runs at every non-Han character and segments each run on its
own, so caching jieba per run gives exactly the real analyzer's tokens. It pays off only where runs
repeat (as in the synthetic corpus, far more than in real text), so its speed is never reported as
analysis speed: the report marks memoized analysis and estimates the uncached time from the real rate.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from patentrank import text as text_module


class MemoJieba:
    """A jieba tokenizer with a cache per (Han run, mode)."""

    def __init__(self, real: Any) -> None:
        self.real, self.cache = real, {}

    def tokenize(self, text: str, mode: str = "default", HMM: bool = True) -> list[tuple[str, int, int]]:
        if (hit := self.cache.get((text, mode))) is None:
            hit = self.cache[(text, mode)] = list(self.real.tokenize(text, mode=mode, HMM=HMM))
        return hit


@contextmanager
def memoized_jieba(enabled: bool = True) -> Iterator[MemoJieba | None]:
    """Within the block, the analyzer's jieba is memoized (when `enabled`); the real one after."""
    real = text_module._jieba()
    if not enabled:
        yield None
        return
    memo = MemoJieba(real)
    text_module._jieba_tokenizer = memo
    try:
        yield memo
    finally:
        text_module._jieba_tokenizer = real


def analysis_rate(texts: Sequence[str], others_cpu: Any) -> dict[str, float]:
    """The real analyzer (jieba search mode + Snowball), uncached, on a sample of the corpus;
    `others_cpu` is a context manager that measures other processes' CPU meanwhile."""
    text_module.analyze(texts[0])  # jieba's dictionary loads on first use
    start = time.perf_counter()
    with others_cpu() as others:
        for t in texts:
            text_module.analyze(t)
    seconds = time.perf_counter() - start
    return {
        "passages": len(texts),
        "chars_per_s": sum(map(len, texts)) / seconds,
        "passages_per_s": len(texts) / seconds,
        "others_cores": others.cores,
    }
