"""LexicalIndex: BM25 scores against a hand computation and bm25s, persistence, updates, filters, crashes."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import bm25s
import numpy as np
import pytest

from patentrank.errors import InputError, PatentrankError
from patentrank.index import lexical
from patentrank.index.lexical import LexicalIndex
from patentrank.text import analyze

DOCS = {
    10: "一种内燃机的废热回收系统，包括废热锅炉和换热器。",
    11: "A waste heat recovery boiler for a gas turbine, with a heat exchanger and a steam drum.",
    12: "Regenerative braking system for an electric vehicle that recovers braking energy.",
    13: "一种基于CNN的锅炉燃烧优化方法，采用U-Net网络预测炉膛温度。",
    14: "Heat exchanger tubes with fins; the exchanger recovers heat from flue gas of a boiler.",
    15: "一种电动汽车的再生制动能量回收系统。",
    16: "Cooling tower water recovery device using a heat exchanger in the moist air flow.",
}


def build(path: Path, docs: dict[int, str] = DOCS, **kw: float) -> LexicalIndex:
    index = LexicalIndex(path, **kw)
    index.add(list(docs), list(docs.values()))
    index.commit()
    return index


def hand_bm25(docs: list[list[str]], query: list[str], k1: float, b: float) -> list[float]:
    """Textbook BM25 with Lucene's idf and without the (k1 + 1) factor, as bm25s and Lucene 8+ do."""
    n = len(docs)
    avgdl = sum(len(d) for d in docs) / n
    scores = []
    for doc in docs:
        score = 0.0
        for term in query:
            df = sum(term in d for d in docs)
            tf = doc.count(term)
            if tf:
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                score += idf * tf / (tf + k1 * (1 - b + b * len(doc) / avgdl))
        scores.append(score)
    return scores


def test_scores_equal_a_hand_computation_on_three_documents(tmp_path: Path) -> None:
    docs = [["heat", "boiler", "heat"], ["boiler", "turbin"], ["brake", "energi", "recov", "heat", "vehicl"]]
    query = ["heat", "boiler"]
    index = LexicalIndex(tmp_path / "lex")
    index.add_tokens([0, 1, 2], docs)
    index.commit()
    got = dict(index.search_tokens(query, k=3))
    expected = hand_bm25(docs, query, k1=1.2, b=0.75)
    assert got.keys() == {0, 1, 2}
    for pid, score in got.items():
        assert score == pytest.approx(expected[pid], rel=1e-6)
    # Negative control: another k1 gives other scores, so the comparison above can fail.
    other = hand_bm25(docs, query, k1=2.0, b=0.75)
    assert any(abs(got[p] - other[p]) > 1e-3 for p in got)
    # Reopening with another k1 reweighs from the stored counts, without re-analysis.
    reweighed = dict(LexicalIndex(tmp_path / "lex", k1=2.0).search_tokens(query, k=3))
    assert all(reweighed[p] == pytest.approx(other[p], rel=1e-6) for p in reweighed)


def test_scores_equal_bm25s_on_mixed_chinese_english_text(tmp_path: Path) -> None:
    index = build(tmp_path / "lex")
    ids, tokens = list(DOCS), [analyze(t) for t in DOCS.values()]
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
        ranked = [pid for pid, _ in index.search(query, k=100)]
        assert ranked == sorted(want, key=lambda p: (-want[p], p))


def test_persists_across_reopen_and_uncommitted_changes_do_not(tmp_path: Path) -> None:
    index = build(tmp_path / "lex")
    before = index.search("heat exchanger", k=5)
    index.add([99], ["heat exchanger heat exchanger"])  # staged, never committed
    assert index.search("heat exchanger", k=5) == before, "staged passages are not searchable yet"
    index.close()
    reopened = LexicalIndex(tmp_path / "lex")
    assert reopened.count() == len(DOCS)
    assert reopened.search("heat exchanger", k=5) == before
    assert 99 not in reopened and 10 in reopened
    assert sorted(reopened.ids().tolist()) == sorted(DOCS)


def test_adding_an_id_again_replaces_it(tmp_path: Path) -> None:
    index = build(tmp_path / "lex")
    assert 12 in dict(index.search("regenerative braking", k=5))
    index.add([12], ["Steam turbine blade cooling"])
    index.add([12], ["Steam turbine blade cooling with film holes"])  # the last staged version wins
    index.commit()
    assert index.count() == len(DOCS)
    assert 12 not in dict(index.search("regenerative braking", k=5))
    assert [pid for pid, _ in index.search("film holes", k=5)] == [12]
    assert [pid for pid, _ in LexicalIndex(tmp_path / "lex").search("film holes", k=5)] == [12]


def test_delete_removes_passages_and_their_terms(tmp_path: Path) -> None:
    index = build(tmp_path / "lex")
    index.delete([12, 15, 12345])  # an unknown id is ignored
    index.commit()
    assert index.count() == len(DOCS) - 2
    assert index.search("regenerative braking", k=5) == []
    assert index.search("再生制动", k=5) == []
    assert index.health()["terms"] < build(tmp_path / "full").health()["terms"], "unused terms are dropped"
    # Delete then re-add in one batch: the passage is back.
    index.delete([11])
    index.add([11], [DOCS[11]])
    index.commit()
    assert 11 in dict(index.search("gas turbine", k=5))


def test_idf_follows_deletes(tmp_path: Path) -> None:
    """After deletes the weights equal those of an index built from the survivors alone."""
    index = build(tmp_path / "lex")
    index.delete([10, 13])
    index.commit()
    survivors = {p: t for p, t in DOCS.items() if p not in (10, 13)}
    fresh = build(tmp_path / "fresh", survivors)
    for query in ["heat exchanger boiler", "回收系统"]:
        got, want = index.search(query, k=10), fresh.search(query, k=10)
        assert [p for p, _ in got] == [p for p, _ in want]
        assert [s for _, s in got] == pytest.approx([s for _, s in want], rel=1e-6)


def test_allowed_ids_restrict_results_inside_retrieval(tmp_path: Path) -> None:
    index = build(tmp_path / "lex")
    everything = dict(index.search("heat exchanger boiler 锅炉", k=100))
    allowed = np.array([14, 16, 13, 777], dtype=np.int64)  # 777 is not in the index
    hits = index.search("heat exchanger boiler 锅炉", k=100, allowed_ids=allowed)
    assert {pid for pid, _ in hits} == set(everything) & {14, 16, 13}
    assert all(score == pytest.approx(everything[pid]) for pid, score in hits), "filtering keeps scores"
    # k counts allowed passages only: passage 16 comes back alone although others outrank it.
    assert everything[16] < max(everything.values())
    only = index.search("heat exchanger boiler 锅炉", k=1, allowed_ids=np.array([16]))
    assert [pid for pid, _ in only] == [16] and only[0][1] == pytest.approx(everything[16])
    assert index.search("heat", k=10, allowed_ids=np.array([], dtype=np.int64)) == []
    batch = index.search_many(["heat exchanger", "回收"], k=10, allowed_ids=np.array([14, 15]))
    assert batch == [index.search(q, 10, np.array([14, 15])) for q in ["heat exchanger", "回收"]]
    assert {pid for hits in batch for pid, _ in hits} <= {14, 15}


def test_ranking_is_deterministic_and_ties_go_to_smaller_ids(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "lex")
    index.add(list(range(100, 0, -1)), ["same words here"] * 100)
    index.commit()
    hits = index.search("words", k=5)
    assert [pid for pid, _ in hits] == [1, 2, 3, 4, 5]
    assert len({score for _, score in hits}) == 1


def test_search_many_matches_search(tmp_path: Path) -> None:
    index = build(tmp_path / "lex")
    queries = ["废热回收", "heat exchanger", "", "CNN"]
    assert index.search_many(queries, k=3) == [index.search(q, k=3) for q in queries]


def test_empty_index_and_bad_input(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "lex")
    assert index.count() == 0 and index.search("heat", k=10) == []
    assert not (tmp_path / "lex").exists(), "opening to read creates nothing"
    with pytest.raises(InputError) as err:
        index.add([1, 2], ["only one text"])
    assert err.value.field == "texts"
    with pytest.raises(InputError):
        index.add(["a"], ["text"])  # type: ignore[list-item]
    with pytest.raises(InputError):
        index.add([1.5], ["text"])  # type: ignore[list-item]
    index = build(tmp_path / "lex2")
    for bad_k in (0, -1, 2.5):
        with pytest.raises(InputError) as err:
            index.search("heat", k=bad_k)  # type: ignore[arg-type]
        assert err.value.field == "k"
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError):
        LexicalIndex(tmp_path / "file")


def test_one_writer_at_a_time_and_readers_refresh(tmp_path: Path) -> None:
    writer = build(tmp_path / "lex")
    reader = LexicalIndex(tmp_path / "lex")
    other_writer = LexicalIndex(tmp_path / "lex")
    with pytest.raises(PatentrankError, match="another process"):
        other_writer.add([1], ["x"])
    writer.add([20], ["Organic Rankine cycle turbine"])
    writer.commit()
    assert reader.search("rankine", k=3) == []
    assert reader.refresh() is True and reader.refresh() is False
    assert [pid for pid, _ in reader.search("rankine", k=3)] == [20]
    writer.close()
    other_writer.add([21], ["Stirling engine"])  # the lock is free now
    other_writer.commit()
    assert other_writer.count() == len(DOCS) + 2


def test_a_commit_that_fails_midway_leaves_the_previous_index(tmp_path: Path, monkeypatch) -> None:
    index = build(tmp_path / "lex")
    before = index.search("heat exchanger", k=10)
    real_save = np.save
    calls = {"n": 0}

    def failing_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("disk full")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(lexical.np, "save", failing_save)
    index.add([30], ["heat exchanger heat exchanger heat exchanger"])
    with pytest.raises(OSError, match="disk full"):
        index.commit()
    monkeypatch.undo()
    reopened = LexicalIndex(tmp_path / "lex")
    assert reopened.count() == len(DOCS) and reopened.search("heat exchanger", k=10) == before
    index.commit()  # the staged change is still there and the retry succeeds
    assert [pid for pid, _ in LexicalIndex(tmp_path / "lex").search("heat exchanger", k=1)] == [30]
    assert len(list((tmp_path / "lex").glob("gen-*"))) == 1, "debris of the failed commit is cleaned"


WRITER = textwrap.dedent(
    """
    import sys
    from patentrank.index.lexical import LexicalIndex
    index = LexicalIndex(sys.argv[1])
    batch = index.count() // 300  # carry on where the killed writer's last commit ended
    while True:  # every commit adds one batch of 300 passages whose text names their batch
        ids = range(batch * 300, (batch + 1) * 300)
        index.add(list(ids), [f"passage {i} batch{batch} heat exchanger boiler" for i in ids])
        index.commit()
        batch += 1
    """
)


def test_kill_9_during_commits_never_leaves_a_broken_index(tmp_path: Path) -> None:
    path = tmp_path / "lex"
    for delay in (1.6, 2.1, 2.6):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stderr=subprocess.PIPE)
        time.sleep(delay)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        index = LexicalIndex(path)
        batches, rest = divmod(index.count(), 300)
        assert rest == 0, "a commit is all or nothing"
        for batch in range(batches):
            assert len(index.search(f"batch{batch}", k=1000)) == 300
        assert len(list(path.glob("gen-*"))) <= 2  # the current one, maybe one half-written leftover
    assert batches > 0, "the writer never committed: the test proved nothing"
