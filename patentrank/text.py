"""Language-aware text analysis for lexical search: jieba for Chinese runs, stemmed words for Latin text."""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable, Iterator, Sequence

from tqdm.auto import tqdm

from patentrank.segmenter import Segmenter, jieba_search_segmenter

# Bump when analyze() changes its output: lexical indexes built with another version must be rebuilt.
ANALYZER_VERSION = "zh-jieba-search+en-snowball-1"

# Lucene's English stop set (the one bm25s uses for "en"): short, so that patent phrases such as
# "means for" or "in vivo" keep their content words and only pure function words go.
ENGLISH_STOPWORDS: frozenset[str] = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "  # noqa: SIM905
    "these they this to was will with".split()
)

# CJK ideographs: the unified block, extension A, the compatibility block and the supplementary planes.
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_KANA = "\u3040-\u30ff\u31f0-\u31ff"
_HANGUL = "\uac00-\ud7af\u1100-\u11ff"
# A text is cut into Han runs (segmented by jieba) and word runs (letters and digits of any other
# script); everything else (spaces, punctuation, "_") separates tokens and is dropped.
_RUN = re.compile(f"(?P<han>[{_HAN}]+)|(?P<word>[^\\W_{_HAN}]+)")
_WORD = re.compile(r"[^\W_]+")
_HAN_CHAR = re.compile(f"[{_HAN}]")
_KANA_CHAR = re.compile(f"[{_KANA}]")
_HANGUL_CHAR = re.compile(f"[{_HANGUL}]")
_COMPAT_HAN = re.compile("[\uf900-\ufaff]")  # compatibility ideographs, folded by NFKC
_LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u024f]+")

_jieba_lock = threading.Lock()
_jieba_tokenizer: Segmenter | None = None
_local = threading.local()  # PyStemmer stemmers are not thread-safe: one per thread


def _jieba() -> Segmenter:
    """The segmenter of Han runs (jieba's search mode; jieba-rs where it gives the same tokens, see
    `patentrank.segmenter`), initialised once."""
    global _jieba_tokenizer
    if _jieba_tokenizer is None:
        with _jieba_lock:
            if _jieba_tokenizer is None:
                _jieba_tokenizer = jieba_search_segmenter()
    return _jieba_tokenizer


def _stemmer():
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        import Stemmer

        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer


def detect_language(text: str) -> str:
    """The language of `text` by script counts (cheap, no model): the one rule for patents
    (`corpus.Patent.language`) and queries.

    Each CJK character (Han, kana, hangul) counts as much as one Latin-script word, since one Chinese
    character carries about a word's meaning: the text is CJK when those characters outnumber its
    Latin words, so a Chinese title quoting "CNN" or "anode material" stays "zh" and an English
    sentence quoting one Chinese term stays "en". CJK text is "ko" when hangul outnumbers Han and kana
    together, "ja" when kana is at least 5% of Han + kana (Japanese mixes kanji with kana), else
    "zh". Other text with Latin letters is "en" (give the language for German etc.); "" when there
    are no letters at all.

    Example:
        >>> detect_language("基于CNN的锂电池 anode material design"), detect_language("A heat exchanger (10)")
        ('zh', 'en')
        >>> detect_language("排熱回収システム"), detect_language("폐열 회수"), detect_language("(10) 12.5 %")
        ('ja', 'ko', '')
    """
    han, kana = len(_HAN_CHAR.findall(text)), len(_KANA_CHAR.findall(text))
    hangul = len(_HANGUL_CHAR.findall(text))
    latin_words = len(_LATIN_WORD.findall(text))
    if han + kana + hangul > latin_words:
        if hangul > han + kana:
            return "ko"
        return "ja" if kana >= 0.05 * (han + kana) else "zh"
    return "en" if latin_words else ""


def _normalize_word(word: str) -> list[str]:
    """Lower-case; full-width and compatibility forms ("ＣＮＮ", "ﬁ", "①") folded by NFKC first."""
    if word.isascii():
        return [word.lower()]
    return [w.lower() for w in _WORD.findall(unicodedata.normalize("NFKC", word))]


def _raw_tokens(text: str) -> Iterator[tuple[str, int, int, bool]]:
    """(token, start, end, stemmable) over `text`, run by run; offsets index the original string."""
    for match in _RUN.finditer(text):
        start = match.start()
        han = match.group("han")
        if han is not None:
            if _COMPAT_HAN.search(han):
                han = unicodedata.normalize("NFKC", han)  # compatibility ideographs map one to one
            for word, s, e in _jieba().tokenize(han, mode="search"):
                yield word, start + s, start + e, False
        else:
            end = match.end()
            for word in _normalize_word(match.group("word")):
                if word not in ENGLISH_STOPWORDS:
                    yield word, start, end, True


def analyze_with_offsets(text: str) -> list[tuple[str, int, int]]:
    """The tokens of `analyze(text)` with the [start, end) span each came from in `text`."""
    raw = list(_raw_tokens(text))
    stemmable = [t for t, _, _, stem in raw if stem]
    stems = iter(_stemmer().stemWords(stemmable)) if stemmable else iter(())
    return [(next(stems) if stem else t, s, e) for t, s, e, stem in raw]


def analyze(text: str) -> list[str]:
    """Index/query tokens of `text`: Chinese runs cut by jieba's search mode (words plus the dictionary
    words inside them), other words lower-cased, Lucene English stop-words removed, Snowball-stemmed.

    Tokens keep their repetitions (BM25 counts term frequency). Mixed text is handled run by run, so
    "基于CNN的方法" gives jieba's words for the Chinese and "cnn" for the acronym.

    Example:
        >>> analyze("Heat exchangers for the boiler")
        ['heat', 'exchang', 'boiler']
    """
    if not isinstance(text, str):
        raise TypeError(f"analyze() takes a str, not {type(text).__name__}")
    # The same tokens as analyze_with_offsets, without building offsets: this runs once per indexed
    # passage, and the per-token tuples and generator frames were most of its cost.
    tokens: list[str] = []
    to_stem: list[int] = []
    stopwords = ENGLISH_STOPWORDS
    for match in _RUN.finditer(text):
        run = match.group()
        if match.lastgroup == "han":
            if _COMPAT_HAN.search(run):
                run = unicodedata.normalize("NFKC", run)
            tokens.extend([word for word, _, _ in _jieba().tokenize(run, mode="search")])
        elif run.isascii():
            word = run.lower()
            if word not in stopwords:
                to_stem.append(len(tokens))
                tokens.append(word)
        else:
            for word in _normalize_word(run):
                if word not in stopwords:
                    to_stem.append(len(tokens))
                    tokens.append(word)
    if to_stem:
        for i, stem in zip(to_stem, _stemmer().stemWords([tokens[i] for i in to_stem]), strict=True):
            tokens[i] = stem
    return tokens


def analyze_many(
    texts: Iterable[str], show_progress: bool = False, total: int | None = None
) -> list[list[str]]:
    """`analyze` over many texts, with a tqdm bar when `show_progress`."""
    if total is None and isinstance(texts, Sequence):
        total = len(texts)
    return [
        analyze(t) for t in tqdm(texts, total=total, disable=not show_progress, desc="Analysing", unit="doc")
    ]


def highlight_terms(query: str, text: str) -> list[tuple[int, int]]:
    """[start, end) spans of `text` whose analysed tokens are among the query's, sorted; overlapping or
    touching spans are merged (so "废热回收" is one span when "废热" and "回收" both match).

    Example:
        >>> text = "Waste heat boilers recover heat."
        >>> [text[s:e] for s, e in highlight_terms("boiler heat", text)]
        ['heat', 'boilers', 'heat']
    """
    wanted = set(analyze(query))
    if not wanted or not text:
        return []
    spans = sorted((s, e) for t, s, e in analyze_with_offsets(text) if t in wanted)
    merged: list[tuple[int, int]] = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged
