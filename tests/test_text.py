"""Text analysis: jieba segmentation of Chinese runs, stemmed English, mixed text, highlight spans."""

from __future__ import annotations

import subprocess
import sys
import unicodedata
from concurrent.futures import ThreadPoolExecutor

import pytest
import Stemmer
from hypothesis import given, settings
from hypothesis import strategies as st

from patentrank.text import (
    ENGLISH_STOPWORDS,
    analyze,
    analyze_many,
    analyze_with_offsets,
    detect_language,
    highlight_terms,
)


def test_chinese_is_segmented_into_words_and_search_mode_subwords() -> None:
    tokens = analyze("一种内燃机的废热回收系统")
    assert {"内燃机", "废热", "回收", "系统"} <= set(tokens)
    # Search mode also emits the dictionary words inside a long word, so a query for either matches.
    tokens = analyze("中华人民共和国专利法")
    assert {"中华人民共和国", "中华", "人民", "共和国", "专利法"} <= set(tokens)
    assert "专利法" in tokens and "中华人民共和国专利法" not in tokens


def test_english_is_lower_cased_stemmed_and_stop_words_dropped() -> None:
    assert analyze("The Heat Exchangers of a boiler") == ["heat", "exchang", "boiler"]
    assert analyze("running runs") == ["run", "run"]  # repetitions are kept: BM25 counts tf
    assert analyze("heat exchanger") == analyze("Heat-Exchangers")
    assert not set(analyze(" ".join(sorted(ENGLISH_STOPWORDS)))), "stop-words must all be removed"


def test_mixed_text_is_analysed_run_by_run() -> None:
    tokens = analyze("一种基于U-Net和CNN的图像分割方法")
    assert {"u", "net", "cnn", "图像", "分割", "方法"} <= set(tokens)
    assert all(t == t.lower() for t in tokens)
    # An English word glued to Chinese still comes out whole, and stemmed like in English text.
    assert "exchang" in analyze("采用exchangers进行换热")
    # Full-width letters and digits (common in Chinese patents) fold to their ASCII forms.
    assert analyze("采用ＣＮＮ网络１２层") == analyze("采用CNN网络12层")


def test_empty_and_punctuation_only_text() -> None:
    assert analyze("") == []
    assert analyze("，。；（）——...!?") == []
    with pytest.raises(TypeError):
        analyze(None)  # type: ignore[arg-type]


def test_detect_language() -> None:
    assert detect_language("一种基于U-Net和CNN的图像分割方法") == "zh"
    assert detect_language("A heat exchanger (10) with a 中文 label") == "en"
    assert detect_language("Waste heat recovery system for an internal combustion engine") == "en"
    assert detect_language("排熱回収システムとボイラー") == "ja"
    assert detect_language("폐열 회수 시스템") == "ko"
    assert detect_language("(10) 12.5 %") == ""


def test_highlight_english_matches_by_stem() -> None:
    text = "Waste heat boilers recover heat from exhaust gas."
    spans = highlight_terms("boiler heat", text)
    assert [text[s:e] for s, e in spans] == ["heat", "boilers", "heat"]
    assert highlight_terms("turbine", text) == []
    assert highlight_terms("the of", text) == [], "a stop-word-only query highlights nothing"


def test_highlight_chinese_merges_overlapping_words() -> None:
    text = "本发明涉及废热回收系统，包括废热锅炉。"
    spans = highlight_terms("废热回收", text)
    assert [text[s:e] for s, e in spans] == ["废热回收", "废热"]
    # Mixed: an English query term inside a Chinese abstract.
    text = "一种基于CNN的方法"
    assert [text[s:e] for s, e in highlight_terms("cnn network", text)] == ["CNN"]


def test_offsets_point_at_the_source_text() -> None:
    text = "废热回收Heat Exchangers（ＣＮＮ）"
    stem = Stemmer.Stemmer("english")
    for token, start, end in analyze_with_offsets(text):
        piece = text[start:end]
        if "\u4e00" <= piece[0] <= "\u9fff":
            assert piece == token
        else:
            assert stem.stemWord(unicodedata.normalize("NFKC", piece).lower()) == token


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("废热回收锅炉系统abcXYZ -，。1２ｃ")), max_size=40))
def test_offsets_are_valid_for_any_mixed_text(text: str) -> None:
    with_offsets = analyze_with_offsets(text)
    assert [t for t, _, _ in with_offsets] == analyze(text)
    for token, start, end in with_offsets:
        assert 0 <= start < end <= len(text)
        assert token and not any(c.isspace() for c in token)
    for start, end in highlight_terms(text, text):
        assert 0 <= start < end <= len(text)


def test_threads_get_the_same_tokens_as_serial_calls() -> None:
    texts = [f"第{i}种废热回收锅炉 with {i} heat exchangers 和 CNN 网络" for i in range(200)]
    serial = analyze_many(texts)
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(analyze, texts))
    assert parallel == serial


def _stderr_of(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stderr


def test_jieba_initialises_quietly() -> None:
    assert _stderr_of("from patentrank.text import analyze; assert analyze('废热回收')") == ""
    # Negative control: jieba used directly announces its dictionary on stderr.
    assert "prefix dict" in _stderr_of("import jieba; jieba.lcut('废热回收')")


_MIXED = st.text(
    alphabet=st.sampled_from(
        list("heat exchangers THE of ＣＮＮ①ﬁ 锂电池负极材料废热回收锅炉豈更 ーカナ 한국 12,.;-_\n")
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(_MIXED)
def test_fast_analyze_equals_the_offset_path(text: str) -> None:
    """`analyze` skips building offsets; its tokens must be exactly those of `analyze_with_offsets`."""
    assert analyze(text) == [token for token, _, _ in analyze_with_offsets(text)]


def test_fast_analyze_equals_the_offset_path_on_the_sample_corpus() -> None:
    from patentrank.corpus import load_patents, sample_corpus_path

    texts = [t for p in load_patents(sample_corpus_path()) for t in (p.title, p.abstract, *p.claims)]
    assert all(analyze(t) == [tok for tok, _, _ in analyze_with_offsets(t)] for t in texts)
    # Negative control: dropping the stemming step is caught by the same comparison.
    unstemmed = [tok for tok, _, _ in analyze_with_offsets("heat exchangers recovering")]
    assert unstemmed != ["heat", "exchangers", "recovering"]
