"""The fast segmenter (jieba-rs) gives jieba's own search-mode tokens, offsets included.

Differential: every Han run of the real collections in ../shared/data, the bundled sample corpus and the
benchmark's synthetic patents is segmented by `RustJieba` and by jieba itself (the reference); the
(word, start, end) sequences must be equal. A negative control shows the comparison catches a
segmenter that differs (jieba-rs without the fallback, on CJK extension characters).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmarks.segmenter_bench import DATA, collection_texts, han_runs
from patentrank import text
from patentrank.corpus import load_patents, sample_corpus_path
from patentrank.segmenter import RustJieba, jieba_search_segmenter, reference_jieba

pytest.importorskip("rjieba", reason="jieba-rs (PyPI rjieba) is not installed: the reference jieba is used")

EDGE_RUNS = [
    "㐀㐁㐂",  # CJK extension A
    "𠀀𠀁中文",  # extension B (supplementary plane) before common words
    "鿖鿗电池",  # the unified block's last ideographs, outside jieba's U+4E00-U+9FD5 class
    "中" * 3000,
    "的",
    "锂离子电池正极材料及其制备方法和应用",
    "長風破浪會有時直掛雲帆濟滄海",
    "一种基于深度学习的图像去噪方法及装置",
]


def sample_texts() -> list[str]:
    return [
        part
        for p in load_patents(sample_corpus_path())
        for part in (p.title, p.abstract, *p.claims, p.description or "")
    ]


def synthetic_texts(patents: int = 300) -> list[str]:
    from benchmarks.synthetic_patents import World

    world = World(5000, 8, 11)
    made = [world.next_patent() for _ in range(patents)]
    return [part for p in made for part in (p.title, p.abstract, *p.claims, p.description or "")]


def mismatches(segmenter: object, runs: list[str], mode: str = "search") -> list[str]:
    reference = reference_jieba()
    return [
        r
        for r in runs
        if [tuple(t) for t in segmenter.tokenize(r, mode=mode)] != list(reference.tokenize(r, mode=mode))
    ]


def test_same_tokens_as_jieba_on_the_real_collections() -> None:
    texts = collection_texts()
    if not texts:
        pytest.skip(f"the evaluation collections are not in {DATA}")
    runs = han_runs(texts)
    assert len(runs) > 10_000 and sum(map(len, runs)) > 200_000  # mostly Chinese text was read
    assert mismatches(RustJieba(), runs) == []


def test_same_tokens_on_sample_synthetic_and_edge_runs_in_both_modes() -> None:
    runs = han_runs(sample_texts() + synthetic_texts()) + EDGE_RUNS
    assert len(runs) > 5_000
    for mode in ("search", "default"):
        assert mismatches(RustJieba(), runs, mode) == []


def test_negative_control_jieba_rs_alone_differs_outside_jiebas_han_class() -> None:
    class WithoutFallback(RustJieba):
        def tokenize(self, unicode_sentence: str, mode: str = "default", HMM: bool = True):
            return self._fast.tokenize(unicode_sentence, mode, HMM)

    assert mismatches(WithoutFallback(), EDGE_RUNS[:3]) == EDGE_RUNS[:3]


def test_analyze_gives_the_same_tokens_with_either_segmenter(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = sample_texts() + synthetic_texts(60) + ["混合 text 基于CNN的方法 㐀㐁 and heat pumps"]
    monkeypatch.setattr(text, "_jieba_tokenizer", reference_jieba())
    expected = [text.analyze(t) for t in texts], [text.analyze_with_offsets(t) for t in texts]
    monkeypatch.setattr(text, "_jieba_tokenizer", RustJieba())
    assert ([text.analyze(t) for t in texts], [text.analyze_with_offsets(t) for t in texts]) == expected


def test_environment_selects_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    import jieba

    assert isinstance(jieba_search_segmenter(), RustJieba)
    monkeypatch.setenv("PATENTRANK_SEGMENTER", "jieba")
    assert isinstance(jieba_search_segmenter(), jieba.Tokenizer)


def test_segmenter_prints_nothing() -> None:
    """jieba-rs loads its dictionary silently, and the fallback jieba without its 'prefix dict' chatter."""
    code = "from patentrank.text import analyze; analyze('废热回收㐀'); print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok" and done.stderr == ""


def test_one_segmenter_serves_many_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's worker threads share the process's segmenter (jieba-rs objects must not be bound to
    the thread that made them)."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(text, "_jieba_tokenizer", RustJieba())
    texts = sample_texts() * 3
    expected = [text.analyze(t) for t in texts]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(text.analyze, texts)) == expected
