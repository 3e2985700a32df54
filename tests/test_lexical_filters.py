"""Filters inside the tantivy query give exactly what `SearchFilter.matches` (the reference) allows."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from patentrank.index.filters import PassageFields, SearchFilter
from patentrank.index.lexical import LexicalIndex

CODES = ["H01M4/525", "H01M10/0525", "H01M", "H04L9/32", "G06N3/08", "G06T7/11", "F01K23/10", "A61B5/00"]


def random_fields(rng: random.Random, i: int) -> PassageFields:
    def date() -> int:
        return 0 if rng.random() < 0.1 else rng.randint(1995, 2024) * 10000 + rng.randint(1, 12) * 100 + 15

    return PassageFields(
        patent_id=f"P{i // 3}",  # three passages per patent
        language=rng.choice(["zh", "en", "ja", ""]),
        jurisdiction=rng.choice(["CN", "US", "EP", "JP", ""]),
        codes=tuple(rng.sample(CODES, rng.randint(0, 3))),
        priority=date(),
        filing=date(),
        publication=date(),
    )


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[LexicalIndex, dict[int, PassageFields]]:
    rng = random.Random(7)
    fields = {pid: random_fields(rng, pid) for pid in range(600)}
    index = LexicalIndex(tmp_path_factory.mktemp("lex"))
    words = ["heat", "boiler", "battery", "anode", "image", "network"]
    # Every passage holds "patent", so the unfiltered query returns all of them with distinct scores.
    texts = [
        f"patent {' '.join(rng.choices(words, k=rng.randint(1, 12)))} {'patent ' * (pid % 5)}"
        for pid in fields
    ]
    index.add(list(fields), texts, list(fields.values()))
    index.commit()
    return index, fields


FILTERS = [
    SearchFilter(before="2010-01-01"),
    SearchFilter(after="2015-06-01", date_field="filing"),
    SearchFilter(after="2001-01-01", before="2003-01-01", date_field="publication"),
    SearchFilter(before="20100101"),
    SearchFilter(code_prefixes=["H01M"]),
    SearchFilter(code_prefixes=["h01m 4"]),  # normalised: spaces and case
    SearchFilter(code_prefixes=["H01M4/5"]),  # any string prefix, not only a hierarchy level
    SearchFilter(code_prefixes=["H"]),
    SearchFilter(code_prefixes=["G06N3/08", "F01K"]),  # OR
    SearchFilter(code_prefixes=[""]),  # any code at all
    SearchFilter(code_prefixes=["Z99"]),  # nothing
    SearchFilter(languages=["zh"]),
    SearchFilter(languages=["en", "ja"]),
    SearchFilter(languages=[""]),
    SearchFilter(jurisdictions=["cn", "EP"]),  # upper-cased like the reference
    SearchFilter(exclude_patents=["P1", "P2", "P77"]),
    SearchFilter(
        before="2020-01-01",
        code_prefixes=["H01M", "G06"],
        languages=["zh", "en"],
        jurisdictions=["CN", "US"],
        exclude_patents=["P3"],
    ),
]


@pytest.mark.parametrize("flt", FILTERS, ids=lambda f: repr(f)[12:80])
def test_filter_equals_reference(
    indexed: tuple[LexicalIndex, dict[int, PassageFields]], flt: SearchFilter
) -> None:
    index, fields = indexed
    everything = dict(index.search("patent", k=1000))
    assert everything.keys() == fields.keys()
    got = index.search("patent", k=1000, flt=flt)
    expected = {pid for pid, f in fields.items() if flt.matches(f)}
    assert {pid for pid, _ in got} == expected
    assert 0 < len(expected) < len(fields) or flt.code_prefixes == ["Z99"], (
        "each filter must change the answer"
    )
    for pid, score in got:  # filters change nothing in the score
        assert score == everything[pid]
    # k counts matching passages only: the best matching ones come back, however far down they were.
    top = sorted(expected, key=lambda p: (-everything[p], p))[:5]
    assert [pid for pid, _ in index.search("patent", k=5, flt=flt)] == top


def test_negative_control_a_wrong_translation_is_caught(
    indexed: tuple[LexicalIndex, dict[int, PassageFields]],
) -> None:
    """An inclusive 'before' (a plausible bug) gives another answer on these data."""
    index, fields = indexed
    cutoff = next(f.priority for f in fields.values() if f.priority)
    wrong = {pid for pid, f in fields.items() if f.priority and f.priority <= cutoff}
    got = {pid for pid, _ in index.search("patent", k=1000, flt=SearchFilter(before=str(cutoff)))}
    assert got != wrong


def test_filters_hold_after_replace_and_delete(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "lex")
    index.add(
        [1, 2], ["heat", "heat"], [PassageFields("A", language="zh"), PassageFields("B", language="en")]
    )
    index.commit()
    index.add([1], ["heat"], [PassageFields("A", language="en")])  # a replaced passage takes its new fields
    index.delete([2])
    index.commit()
    assert index.search("heat", k=10, flt=SearchFilter(languages=["zh"])) == []
    assert [p for p, _ in index.search("heat", k=10, flt=SearchFilter(languages=["en"]))] == [1]
    assert index.search("heat", k=10, flt=SearchFilter(exclude_patents=["A"])) == []
