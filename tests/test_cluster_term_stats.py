"""Document frequencies read back from Milvus's BM25 scores (`cluster/term_stats.py`) against tantivy's
own counts over the same passages, on a real `milvus-lite server`."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pymilvus", reason="pymilvus is not installed (pip install -e '.[milvus]')")
pytest.importorskip("milvus_lite", reason="milvus-lite is not installed (pip install -e '.[milvus]')")

from patentrank.corpus import Patent, load_patents, sample_corpus_path
from patentrank.index.cluster import term_stats
from patentrank.index.cluster.index import ClusterIndex
from patentrank.index.cluster.term_stats import TermStatistics
from patentrank.index.patent_index import PatentIndex
from patentrank.server.testing import MilvusLiteServer
from patentrank.text import analyze


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PatentIndex, ClusterIndex]]:
    if MilvusLiteServer.binary() is None:
        pytest.skip("the milvus-lite command is not installed")
    folder = tmp_path_factory.mktemp("term-stats")
    patents = SAMPLE
    with MilvusLiteServer(folder / "milvus") as milvus:
        embedded = PatentIndex(folder / "embedded")
        embedded.add(patents)
        cluster = ClusterIndex(milvus.uri, prefix="stats")
        cluster.add(patents)
        yield embedded, cluster
        cluster.close()
        embedded.close()


SAMPLE = list(load_patents(sample_corpus_path()))


def query_tokens() -> list[str]:
    """Every distinct token of the sample's titles and abstract openings: rare and common ones."""
    return sorted({t for p in SAMPLE for t in analyze(p.title + " " + p.abstract[:200])})


def no_counting(statistics: TermStatistics, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every TEXT_MATCH count the statistics fall back to."""
    counted: list[str] = []
    real = statistics.reader.count

    def count(kind: str, expr: str = "") -> int:
        if "TEXT_MATCH" in expr:
            counted.append(expr)
        return real(kind, expr)

    monkeypatch.setattr(statistics.reader, "count", count)
    return counted


@pytest.mark.parametrize("probe_hits", [2, 100])
def test_frequencies_equal_the_embedded_index(indexes: Any, probe_hits: int, monkeypatch: Any) -> None:
    """With 2 hits per probe almost every term is 'common' and its df is read back from scores; with
    100 nearly all are counted from hits. Either way every df is tantivy's exactly, with no counts."""
    embedded, cluster = indexes
    statistics = TermStatistics(cluster.lexical.reader, probe_hits=probe_hits)
    counted = no_counting(statistics, monkeypatch)
    tokens = query_tokens()
    total, dfs = statistics.frequencies(tokens)
    searcher = embedded.lexical._index.searcher()
    expected = {t: int(searcher.doc_freq("tokens", t)) for t in tokens}
    assert total == searcher.num_docs
    assert dfs == expected
    assert counted == []
    common = sum(df >= probe_hits for df in expected.values())
    assert len(tokens) > 150 and (probe_hits > 2 or common > 40), (len(tokens), common)


def test_fusion_bound_equals_the_embedded_one_from_scores(indexes: Any, monkeypatch: Any) -> None:
    embedded, cluster = indexes
    cluster.lexical.statistics = TermStatistics(cluster.lexical.reader, probe_hits=3)
    counted = no_counting(cluster.lexical.statistics, monkeypatch)
    texts = [p.abstract for p in SAMPLE[:8]] + ["waste heat boiler", "锅炉 余热 回收", "heat heat exchanger",
                                               "zzzz-not-a-word"]  # fmt: skip
    for text in texts:
        tokens = analyze(text)
        bound = embedded.lexical.best_possible_score(tokens)
        assert cluster.lexical.best_possible_score(tokens) == pytest.approx(bound, rel=1e-9), text
    assert counted == []


def test_a_wrong_length_normalisation_is_caught(indexes: Any, monkeypatch: Any) -> None:
    """Negative control: reading scores with the wrong b gives other document frequencies."""
    embedded, cluster = indexes
    monkeypatch.setattr(term_stats, "B", 0.5)
    statistics = TermStatistics(cluster.lexical.reader, probe_hits=2)
    tokens = query_tokens()
    searcher = embedded.lexical._index.searcher()
    _, dfs = statistics.frequencies(tokens)
    assert sum(dfs[t] != searcher.doc_freq("tokens", t) for t in tokens) > 10


def test_identical_hits_use_the_last_average_length_or_are_counted(tmp_path: Path, monkeypatch: Any) -> None:
    """When every hit read for a term has the same length and term frequency, scores cannot separate idf
    from the average length: the last solved average length stands in, and without one the terms are
    counted with TEXT_MATCH. Either way the frequencies are exact."""
    if MilvusLiteServer.binary() is None:
        pytest.skip("the milvus-lite command is not installed")
    same = "alpha beta gamma delta"
    patents = [Patent(id=f"US{i}A", title="", abstract=same, language="en") for i in range(6)]
    patents += [Patent(id=f"US{i}Z", title="", abstract="zeta " + "filler " * i * 3, language="en")
                for i in range(1, 5)]  # fmt: skip
    patents.append(Patent(id="US99A", title="", abstract="omega", language="en"))
    with MilvusLiteServer(tmp_path / "milvus") as milvus:
        cluster = ClusterIndex(milvus.uri, prefix="same")
        cluster.add(patents)
        fresh = TermStatistics(cluster.lexical.reader, probe_hits=3)
        counted = no_counting(fresh, monkeypatch)
        total, dfs = fresh.frequencies(["alpha", "beta", "omega", "missing"])
        assert total == 11 and dfs == {"alpha": 6, "beta": 6, "omega": 1, "missing": 0}
        assert len(counted) == 2  # alpha and beta: six identical passages each, no average length yet
        counted.clear()
        warm = TermStatistics(cluster.lexical.reader, probe_hits=3)
        counted = no_counting(warm, monkeypatch)
        assert warm.frequencies(["zeta", "filler"])[1] == {"zeta": 4, "filler": 4}  # solves avgdl
        assert warm.frequencies(["alpha", "gamma"])[1] == {"alpha": 6, "gamma": 6}
        assert counted == []
        cluster.close()


def test_df_of_idf_inverts_lucene_idf() -> None:
    for total in (1, 10, 1000, 10_000_000):
        for df in {0, 1, total // 3, total}:
            idf = math.log(1.0 + (total - df + 0.5) / (df + 0.5))
            assert term_stats.df_of_idf(idf, total) == df
