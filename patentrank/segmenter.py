"""Chinese word segmentation for the analyzer: jieba's search mode, computed by jieba-rs where it agrees.

`patentrank.text.analyze` cuts each Han run with jieba's `tokenize(run, mode="search")`. jieba-rs (PyPI
`rjieba`, the same dictionary, DAG, HMM and search-mode rules in Rust) gives the same (word, start,
end) about 5x faster, for runs whose characters all lie in jieba's own Han class (U+4E00-U+9FD5): on
characters outside it (CJK extensions A-G, the last unified ideographs) the two differ, so such runs
go to jieba itself. tests/test_segmenter.py checks the equality on the real collections, the sample
corpus and the benchmark's synthetic text, with a negative control.

`PATENTRANK_SEGMENTER=jieba` uses jieba alone (the reference); otherwise jieba-rs is used when installed.

Example:
    >>> [w for w, _, _ in jieba_search_segmenter().tokenize("锂离子电池", mode="search")]
    ['离子', '锂离子', '电池']
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from typing import Any, Protocol

# jieba's `re_han_default` letters that are ideographs: the characters jieba-rs treats the same way.
_OUTSIDE_JIEBA_HAN = re.compile("[^\u4e00-\u9fd5]")


class Segmenter(Protocol):
    """What the analyzer calls on a Han run: jieba's tokenize signature."""

    def tokenize(self, unicode_sentence: str, mode: str = "default", HMM: bool = True) -> Iterable[Any]: ...


def reference_jieba() -> Any:
    """A private jieba.Tokenizer (words added to jieba's global one do not leak in), without its stderr
    chatter; initialised from jieba's cache (about a second)."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return tokenizer


class RustJieba:
    """jieba's `tokenize` by jieba-rs, falling back to jieba for runs with characters jieba-rs treats
    differently (created on first such run)."""

    name = "jieba-rs"

    def __init__(self) -> None:
        import rjieba

        self._fast = rjieba.Jieba()
        self._reference: Any | None = None

    def tokenize(self, unicode_sentence: str, mode: str = "default", HMM: bool = True) -> Iterable[Any]:
        if _OUTSIDE_JIEBA_HAN.search(unicode_sentence):
            if self._reference is None:
                self._reference = reference_jieba()
            return self._reference.tokenize(unicode_sentence, mode=mode, HMM=HMM)
        return self._fast.tokenize(unicode_sentence, mode, HMM)


def jieba_search_segmenter() -> Segmenter:
    """jieba-rs with the jieba fallback, or jieba alone (`PATENTRANK_SEGMENTER=jieba`, or no rjieba)."""
    if os.environ.get("PATENTRANK_SEGMENTER", "auto").strip().lower() != "jieba":
        try:
            return RustJieba()
        except ImportError:
            pass
    return reference_jieba()
