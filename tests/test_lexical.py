"""LexicalIndex on tantivy: BM25 against a hand computation and bm25s, replace/delete, reopen, writers."""

from __future__ import annotations

import math
from pathlib import Path

import bm25s
import numpy as np
import pytest

from patentrank.corpus import load_patents
from patentrank.errors import InputError, PatentrankError
from patentrank.index.lexical import LexicalIndex, LexicalIndexError, quantized_length
from patentrank.text import analyze

SAMPLE = Path(__file__).resolve().parents[1] / "patentrank" / "sample" / "patents.jsonl"

DOCS = {
    10: "一种内燃机的废热回收系统，包括废热锅炉和换热器。",
    11: "A waste heat recovery boiler for a gas turbine, with a heat exchanger and a steam drum.",
    12: "Regenerative braking system for an electric vehicle that recovers braking energy.",
    13: "一种基于CNN的锅炉燃烧优化方法，采用U-Net网络预测炉膛温度。",
    14: "Heat exchanger tubes with fins; the exchanger recovers heat from flue gas of a boiler.",
    15: "一种电动汽车的再生制动能量回收系统。",
    16: "Cooling tower water recovery device using a heat exchanger in the moist air flow.",
}


def build(path: Path, docs: dict[int, str] = DOCS) -> LexicalIndex:
    index = LexicalIndex(path)
    index.add(list(docs), list(docs.values()))
    index.commit()
    return index


def reference_bm25(
    docs: list[list[str]], query: list[str], k1: float = 1.2, b: float = 0.75, quantize: bool = True
) -> list[float]:
    """Textbook BM25 (Lucene idf, no (k1 + 1) factor), optionally with Lucene's one-byte lengths."""
    n = len(docs)
    avgdl = sum(len(d) for d in docs) / n
    scores = []
    for doc in docs:
        length = quantized_length(len(doc)) if quantize else len(doc)
        score = 0.0
        for term in query:
            df = sum(term in d for d in docs)
            tf = doc.count(term)
            if tf:
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                score += idf * tf / (tf + k1 * (1 - b + b * length / avgdl))
        scores.append(score)
    return scores


def sample_passages() -> list[list[str]]:
    """Real passage-sized texts: the sample corpus's abstracts and claims, 8 to 200+ tokens each."""
    texts = []
    for patent in load_patents(SAMPLE):
        texts.extend([patent.abstract, *patent.claims])
    return [tokens for tokens in map(analyze, texts) if tokens]


def test_scores_equal_a_hand_computation_on_three_documents(tmp_path: Path) -> None:
    docs = [["heat", "boiler", "heat"], ["boiler", "turbin"], ["brake", "energi", "recov", "heat", "vehicl"]]
    query = ["heat", "boiler"]
    index = LexicalIndex(tmp_path / "lex")
    index.add_tokens([0, 1, 2], docs)
    index.commit()
    got = dict(index.search_tokens(query, k=3))
    expected = reference_bm25(docs, query)
    assert got.keys() == {0, 1, 2}
    for pid, score in got.items():
        assert score == pytest.approx(expected[pid], rel=1e-5)
    # Negative control: another k1 gives other scores, so the comparison above can fail.
    other = reference_bm25(docs, query, k1=2.0)
    assert any(abs(got[p] - other[p]) > 1e-3 for p in got)


def test_scores_equal_bm25s_on_mixed_chinese_english_text(tmp_path: Path) -> None:
    """Short passages (< 41 tokens, where one-byte lengths are exact): equal to bm25s "lucene"."""
    index = build(tmp_path / "lex")
    ids, tokens = list(DOCS), [analyze(t) for t in DOCS.values()]
    assert max(map(len, tokens)) < 41
    reference = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    reference.index(tokens, show_progress=False)
    for query in [
        "废热回收锅炉",
        "heat exchanger boiler",
        "CNN 网络 boiler",
        "制动能量回收 braking",
        "nothing",
    ]:
        query_tokens = analyze(query)
        expected = reference.get_scores(query_tokens) if query_tokens else np.zeros(len(ids))
        got = dict(index.search(query, k=100))
        want = {ids[i]: float(s) for i, s in enumerate(expected) if s > 0}
        assert got.keys() == want.keys(), query
        for pid in want:
            assert got[pid] == pytest.approx(want[pid], rel=1e-5), (query, pid)
        assert [pid for pid, _ in index.search(query, k=100)] == sorted(want, key=lambda p: (-want[p], p))


LONG_QUERIES = ["锂电池 负极材料", "heat exchanger recovering waste heat", "图像 分割 神经网络",
                "wireless charging coil", "heat heat exchanger"]  # fmt: skip


@pytest.mark.parametrize("exact_top", [3, 8, 1000])
def test_best_hits_equal_bm25s_and_the_rest_use_lucene_lengths(tmp_path: Path, exact_top: int) -> None:
    """Real passages of every length: the first `exact_top` hits score as bm25s (exact lengths) to 1e-5,
    the hits below them as the formula with Lucene's one-byte lengths; the hits at or above the best
    unexamined one are bm25s's top hits in its order (the certificate of lexical_exact.py)."""
    from patentrank.index.lexical_exact import certified

    docs = sample_passages()
    assert max(map(len, docs)) > 100, "the sample must have long passages for this test to mean anything"
    index = LexicalIndex(tmp_path / "lex", exact_top=exact_top)
    index.add_tokens(list(range(len(docs))), docs)
    index.commit()
    reference = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    reference.index(docs, show_progress=False)
    for query in LONG_QUERIES:
        tokens = analyze(query)
        hits = index.search_tokens(tokens, k=len(docs))
        rounded = reference_bm25(docs, tokens)
        exact = [float(s) for s in reference.get_scores(tokens)]
        assert {pid for pid, _ in hits} == {i for i, s in enumerate(rounded) if s > 0}, query
        examined = index_order(rounded)[:exact_top]
        for pid, score in hits:
            want = exact[pid] if pid in examined else rounded[pid]
            assert score == pytest.approx(want, rel=1e-5, abs=1e-6), (query, pid)
        sure = certified([s for _, s in hits][:exact_top], sorted(rounded, reverse=True), exact_top)
        assert [pid for pid, _ in hits[:sure]] == index_order(exact)[:sure], query
        if exact_top == 1000:
            assert sure == len(hits)


def test_rounded_lengths_alone_differ_from_bm25s(tmp_path: Path) -> None:
    """Negative control: with no hit rescored, long passages' scores are measurably off bm25s's, so the
    1e-5 checks above can fail; and a search still equals the one-byte formula."""
    docs = sample_passages()
    index = LexicalIndex(tmp_path / "lex", exact_top=0)
    index.add_tokens(list(range(len(docs))), docs)
    index.commit()
    reference = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    reference.index(docs, show_progress=False)
    off = 0
    for query in LONG_QUERIES:
        tokens = analyze(query)
        got = dict(index.search_tokens(tokens, k=len(docs)))
        rounded, exact = reference_bm25(docs, tokens), reference.get_scores(tokens)
        for pid, score in got.items():
            assert score == pytest.approx(rounded[pid], rel=1e-5, abs=1e-6), (query, pid)
        off += sum(abs(got[p] - exact[p]) > 1e-3 * exact[p] for p in got)
    assert off > 10


def index_order(scores: list[float]) -> list[int]:
    """Passage ids by score, best first, ties by id (the index's order)."""
    return sorted((i for i, s in enumerate(scores) if s > 0), key=lambda i: (-scores[i], i))


def test_quantized_length_is_lucene_smallfloat() -> None:
    assert [quantized_length(n) for n in range(41)] == list(range(41))
    table = {quantized_length(n) for n in range(10_000)}
    assert sorted(table)[:45] == [*range(41), 42, 44, 46, 48]
    assert all(quantized_length(n) <= n < quantized_length(n) * 1.13 + 1 for n in range(1, 100_000, 97))


def test_persists_across_reopen_and_uncommitted_changes_do_not(tmp_path: Path) -> None:
    index = build(tmp_path / "lex")
    before = index.search("heat exchanger", k=5)
    index.add([99], ["heat exchanger heat exchanger"])  # staged, never committed
    assert index.search("heat exchanger", k=5) == before, "staged passages are not searchable yet"
    index.close()
    reopened = LexicalIndex(tmp_path / "lex")
    assert reopened.count() == len(DOCS)
    assert reopened.search("heat exchanger", k=5) == before


def test_adding_an_id_again_replaces_it(tmp_path: Path) -> None:
    index = build(tmp_path / "lex")
    assert 12 in dict(index.search("regenerative braking", k=5))
    index.add([12], ["Steam turbine blade cooling"])
    index.add([12], ["Steam turbine blade cooling with film holes"])  # the last staged version wins
    index.commit()
    assert index.count() == len(DOCS)
    assert 12 not in dict(index.search("regenerative braking", k=5))
    assert [pid for pid, _ in index.search("film holes", k=5)] == [12]
    index.close()
    assert [pid for pid, _ in LexicalIndex(tmp_path / "lex").search("film holes", k=5)] == [12]


def test_delete_by_passage_and_by_patent(tmp_path: Path) -> None:
    from patentrank.index.filters import PassageFields

    index = build(tmp_path / "lex")
    index.delete([12, 15, 12345])  # an unknown id is ignored
    index.commit()
    assert index.count() == len(DOCS) - 2
    assert index.search("regenerative braking", k=5) == []
    assert index.search("再生制动", k=5) == []
    index.delete([11])
    index.add([11], [DOCS[11]])  # delete then re-add in one batch: the passage is back
    index.commit()
    assert 11 in dict(index.search("gas turbine", k=5))
    index.add(
        [40, 41], ["Organic Rankine cycle", "Rankine turbine"], [PassageFields("US9"), PassageFields("US9")]
    )
    index.commit()
    assert len(index.search("rankine", k=5)) == 2
    index.delete_patents(["US9", "NOPE"])
    index.commit()
    assert index.search("rankine", k=5) == [] and index.count() == len(DOCS) - 2


def test_ranking_is_deterministic_and_ties_go_to_smaller_ids(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "lex")
    index.add(list(range(20, 0, -1)), ["same words here"] * 20)
    index.commit()
    hits = index.search("words", k=20)
    assert [pid for pid, _ in hits] == list(range(1, 21))
    assert len({score for _, score in hits}) == 1


def test_repeated_query_tokens_count_repeatedly(tmp_path: Path) -> None:
    index = build(tmp_path / "lex")
    once = dict(index.search_tokens(["heat", "boiler"], k=10))
    twice = dict(index.search_tokens(["heat", "heat", "boiler"], k=10))
    heat_only = dict(index.search_tokens(["heat"], k=10))
    for pid in once:
        assert twice[pid] == pytest.approx(once[pid] + heat_only.get(pid, 0.0), rel=1e-5)


def test_empty_index_and_bad_input(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "lex")
    assert index.count() == 0 and index.search("heat", k=10) == []
    assert index.search("", k=10) == [] and index.search("the of and", k=10) == []
    with pytest.raises(InputError) as err:
        index.add([1, 2], ["only one text"])
    assert err.value.field == "texts"
    with pytest.raises(InputError):
        index.add(["a"], ["text"])  # type: ignore[list-item]
    with pytest.raises(InputError):
        index.add([1.5], ["text"])  # type: ignore[list-item]
    with pytest.raises(InputError) as err:
        index.add_tokens([1], [["x"]], fields=["not fields"])  # type: ignore[list-item]
    assert err.value.field == "fields"
    index = build(tmp_path / "lex2")
    for bad_k in (0, -1, 2.5):
        with pytest.raises(InputError) as err:
            index.search("heat", k=bad_k)  # type: ignore[arg-type]
        assert err.value.field == "k"
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError):
        LexicalIndex(tmp_path / "file")


def test_a_giant_token_does_not_break_indexing_or_search(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "lex")
    blob = "a" * 70_000  # tantivy refuses terms over 65,530 bytes
    index.add([1, 2], [f"heat {blob} exchanger", "heat pump"])
    index.commit()
    assert {pid for pid, _ in index.search(f"exchanger {blob}", k=5)} == {1}


def test_one_writer_at_a_time_and_readers_see_commits(tmp_path: Path) -> None:
    writer = build(tmp_path / "lex")
    reader = LexicalIndex(tmp_path / "lex", read_only=True)
    other_writer = LexicalIndex(tmp_path / "lex")
    with pytest.raises(PatentrankError, match="another process"):
        other_writer.add([1], ["x"])
    writer.add([20], ["Organic Rankine cycle turbine"])
    writer.commit()
    reader.refresh()
    assert [pid for pid, _ in reader.search("rankine", k=3)] == [20]
    with pytest.raises(LexicalIndexError, match="read-only"):
        reader.add([2], ["y"])
    writer.close()
    other_writer.add([21], ["Stirling engine"])  # the lock is free now
    other_writer.commit()
    assert other_writer.count() == len(DOCS) + 2


def test_old_format_folder_is_refused_with_what_to_do(tmp_path: Path) -> None:
    old = tmp_path / "lexical"
    (old / "gen-00000003").mkdir(parents=True)
    (old / "CURRENT").write_text("gen-00000003\n")
    with pytest.raises(LexicalIndexError, match="patentrank reindex"):
        LexicalIndex(old)


def test_a_format_2_folder_is_read_and_written_with_rounded_lengths(tmp_path: Path) -> None:
    """Folders written before exact lengths (format 2, no `length` field) keep working, scored with
    one-byte lengths throughout, and /health says that `patentrank reindex` makes the best hits exact."""
    import json

    import tantivy

    from patentrank.index import lexical as lexical_module
    from patentrank.index.lexical_query import SCHEMA_FORMAT_2

    folder = tmp_path / "lex"
    folder.mkdir()
    tantivy.Index(SCHEMA_FORMAT_2, path=str(folder))
    marker = {"format": 2, "analyzer": lexical_module.ANALYZER_VERSION}
    (folder / lexical_module.MARKER_FILE).write_text(json.dumps(marker))
    docs = sample_passages()
    index = LexicalIndex(folder)
    assert not index.exact_lengths
    index.add_tokens(list(range(len(docs))), docs)
    index.commit()
    tokens = analyze("heat exchanger recovering waste heat")
    rounded = reference_bm25(docs, tokens)
    for pid, score in index.search_tokens(tokens, k=20):
        assert score == pytest.approx(rounded[pid], rel=1e-5, abs=1e-6)
    assert "patentrank reindex" in str(index.health()["detail"])
    index.close()
    assert json.loads((folder / lexical_module.MARKER_FILE).read_text())["format"] == 2
