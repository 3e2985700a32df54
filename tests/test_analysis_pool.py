"""Parallel analysis: the same tokens as `analyze`, in-process when jieba is replaced or one worker is set."""

from __future__ import annotations

import pytest

from patentrank import analysis_pool, text
from patentrank.corpus import load_patents, sample_corpus_path


def corpus_texts(n: int) -> list[str]:
    texts = [t for p in load_patents(sample_corpus_path()) for t in (p.title, p.abstract, *p.claims)]
    return [f"{texts[i % len(texts)]} {i}" for i in range(n)]


@pytest.fixture
def reference_jieba(monkeypatch: pytest.MonkeyPatch) -> None:
    """jieba alone, in this process and in the workers it starts (the pool pays only with it)."""
    monkeypatch.setenv("PATENTRANK_SEGMENTER", "jieba")
    monkeypatch.setattr(text, "_jieba_tokenizer", None)


def test_large_batches_on_worker_processes_give_exactly_analyze(
    monkeypatch: pytest.MonkeyPatch, reference_jieba: None
) -> None:
    monkeypatch.setenv("PATENTRANK_ANALYSIS_WORKERS", "2")
    texts = corpus_texts(analysis_pool.PARALLEL_MIN_TEXTS + 7)
    calls = []
    real_get_pool = analysis_pool._get_pool
    monkeypatch.setattr(analysis_pool, "_get_pool", lambda w: calls.append(w) or real_get_pool(w))
    assert analysis_pool.analyze_batch(texts) == [text.analyze(t) for t in texts]
    assert calls == [2], "the batch went to the pool"


def test_with_jieba_rs_large_batches_stay_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from patentrank.segmenter import RustJieba

    pytest.importorskip("rjieba")
    monkeypatch.setattr(text, "_jieba_tokenizer", RustJieba())
    monkeypatch.setattr(analysis_pool, "_get_pool", lambda w: pytest.fail("must not use the pool"))
    monkeypatch.setenv("PATENTRANK_ANALYSIS_WORKERS", "2")
    texts = corpus_texts(analysis_pool.PARALLEL_MIN_TEXTS + 7)
    assert analysis_pool.analyze_batch(texts) == [text.analyze(t) for t in texts]


def test_small_batches_one_worker_or_replaced_jieba_stay_in_process(
    monkeypatch: pytest.MonkeyPatch, reference_jieba: None
) -> None:
    monkeypatch.setattr(analysis_pool, "_get_pool", lambda w: pytest.fail("must not use the pool"))
    monkeypatch.setenv("PATENTRANK_ANALYSIS_WORKERS", "2")
    assert analysis_pool.analyze_batch(["heat pump"]) == [["heat", "pump"]]
    big = corpus_texts(analysis_pool.PARALLEL_MIN_TEXTS)
    monkeypatch.setenv("PATENTRANK_ANALYSIS_WORKERS", "1")
    assert len(analysis_pool.analyze_batch(big)) == len(big)
    monkeypatch.setenv("PATENTRANK_ANALYSIS_WORKERS", "2")

    class Stub:  # e.g. the benchmarks' memoized jieba: workers would not have it
        def tokenize(self, run: str, mode: str = "default", HMM: bool = True):
            yield run, 0, len(run)

    monkeypatch.setattr(text, "_jieba_tokenizer", Stub())
    assert analysis_pool.analyze_batch(big[:2000])[0] == text.analyze(big[0])
    monkeypatch.setenv("PATENTRANK_ANALYSIS_WORKERS", "many")
    assert analysis_pool.analysis_workers() == 1
