"""The opt-in idf floor (PATENTRANK_LEXICAL_MAX_DF): terms in more than that share of the passages leave
the BM25 query, unless nothing else is left; the rest of the scores are untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from patentrank.config import Settings
from patentrank.corpus import Patent
from patentrank.index.lexical import LexicalIndex
from patentrank.runtime import open_runtime
from patentrank.search_request import SearchRequest

# "gear" is in 9 of 10 passages (share 0.9), "pump" in 2, "valve" in 1.
TOKENS = [["gear", "pump"], ["gear", "pump", "valve"], ["valve"]] + [["gear", f"w{i}"] for i in range(7)]


@pytest.fixture
def index(tmp_path: Path) -> LexicalIndex:
    lexical = LexicalIndex(tmp_path / "lex")
    lexical.add_tokens(list(range(len(TOKENS))), TOKENS)
    lexical.commit()
    return lexical


def test_terms_above_the_share_leave_the_query(index: LexicalIndex) -> None:
    query = ["gear", "pump", "gear"]
    assert index.without_common_terms(query, None) == query
    assert index.without_common_terms(query, 0.95) == query  # 0.9 is not above 0.95
    assert index.without_common_terms(query, 0.5) == ["pump"]
    assert index.without_common_terms(["gear"], 0.5) == ["gear"]  # never an empty query


def test_the_kept_terms_score_as_before(index: LexicalIndex) -> None:
    full = dict(index.search_tokens(["gear", "pump"], k=20))
    floored = dict(index.search_tokens(index.without_common_terms(["gear", "pump"], 0.5), k=20))
    pump_only = dict(index.search_tokens(["pump"], k=20))
    assert floored == pump_only and set(floored) == {0, 1}
    # The negative control: without the floor, the passages with only the common term match too.
    assert len(full) == 9 and full[0] > floored[0]


def test_the_setting_reaches_the_search_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    patents = [Patent(id="CN1A", title="gear pump", abstract="A gear pump with a relief valve.")]
    for i in range(2, 10):
        patents.append(Patent(id=f"CN{i}A", title=f"gear train {i}", abstract=f"A gear train, {i}."))

    def ids(settings: Settings) -> list[str]:
        runtime = open_runtime(settings, tmp_path / "ix")
        try:
            if runtime.index is not None and runtime.index.stats()["patents"] == 0:
                runtime.index.add(patents)
            assert runtime.pipeline is not None
            request = SearchRequest("gear pump", mode="lexical", rerank=False, top_n=20)
            response = runtime.pipeline.search(request)
            return [r.patent_id for r in response.results]
        finally:
            runtime.close()

    off = Settings(reranker_model="none", embedder_model="none")
    assert len(ids(off)) == 9  # every patent has "gear"
    monkeypatch.setenv("PATENTRANK_LEXICAL_MAX_DF", "0.5")
    assert ids(Settings(reranker_model="none", embedder_model="none")) == ["CN1A"]
