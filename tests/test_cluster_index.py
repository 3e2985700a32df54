"""`ClusterIndex` reads against a real `milvus-lite server`: the token encoding, every filter kind against
`SearchFilter.matches`, and a differential run against the embedded `PatentIndex` on the sample corpus
(lexical, dense, and the pipeline on top). Writes and faults: test_cluster_writes.py."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import random
import re
import types
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="pymilvus is not installed (pip install -e '.[milvus]')")
pytest.importorskip("milvus_lite", reason="milvus-lite is not installed (pip install -e '.[milvus]')")

from hypothesis import given, settings
from hypothesis import strategies as st
from pymilvus import MilvusClient

from patentrank.corpus import Patent, load_patents, sample_corpus_path
from patentrank.errors import PatentrankError
from patentrank.index.cluster import reads, schema
from patentrank.index.cluster.connection import ClusterError
from patentrank.index.cluster.index import ClusterIndex
from patentrank.index.cluster.schema import encode_token, token_text
from patentrank.index.filters import SearchFilter
from patentrank.index.location import open_patent_index
from patentrank.index.patent_index import PatentIndex
from patentrank.search import SearchPipeline, SearchRequest
from patentrank.server.testing import MilvusLiteServer
from patentrank.text import analyze

FLAT = {"index_type": "FLAT", "metric_type": "IP", "params": {}}


@pytest.fixture(scope="module")
def milvus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusLiteServer]:
    if MilvusLiteServer.binary() is None:
        pytest.skip("the milvus-lite command is not installed")
    with MilvusLiteServer(tmp_path_factory.mktemp("milvus")) as server:
        yield server


def fake_embedder(dim: int) -> Any:
    """Deterministic unit vectors from a hash of the text: enough to exercise vector filters and dims."""

    def embed(texts: list[str]) -> np.ndarray:
        seeds = [int(hashlib.md5(t.encode()).hexdigest()[:15], 16) for t in texts]
        rows = np.array([np.random.default_rng(seed).standard_normal(dim) for seed in seeds], np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    return types.SimpleNamespace(dim=dim, model_name=f"fake-{dim}", prompts={"document": "", "query": ""},
                                 embed_documents=embed)  # fmt: skip


# ---------------------------------------------------------------- token encoding


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=90), min_size=2, max_size=12, unique=True))
def test_encode_token_keeps_distinct_tokens_distinct_and_one_plain_word(tokens: list[str]) -> None:
    encoded = [encode_token(t) for t in tokens]
    assert len(set(encoded)) == len(tokens)
    for token, word in zip(tokens, encoded, strict=True):
        assert re.fullmatch(r"[a-z0-9]{1,63}", word), (token, word)  # one \w+ / UAX#29 word, lower case
    kept = [t for t in tokens if len(t.encode()) <= schema.MAX_TOKEN_BYTES]
    assert token_text(tokens).split() == [encode_token(t) for t in kept]


def _random_token(rng: random.Random) -> str:
    ranges = [(0x61, 0x7A), (0x30, 0x39), (0x21, 0x2F), (0xC0, 0x24F), (0x4E00, 0x9FFF), (0x600, 0x6FF),
              (0x300, 0x36F), (0x1F300, 0x1F64F), (0x3040, 0x30FF), (0xAC00, 0xD7A3)]  # fmt: skip
    low, high = rng.choice(ranges)
    return "".join(chr(rng.randint(low, high)) for _ in range(rng.choice([1, 2, 3, 4, 8, 21, 40])))


def test_distinct_tokens_stay_distinct_inside_milvus(milvus: MilvusLiteServer) -> None:
    """Each random token written as its own passage is found by itself and only by itself, also tokens
    that Milvus's own analysis would split or fold (negative control: the same tokens unencoded)."""
    rng = random.Random(7)
    tricky = ["Boiler", "boiler", "ph7.5", "ph7", "锂电池", "锂电", "x", "xa", "a-b", "a"]
    tokens = list(dict.fromkeys(tricky + [_random_token(rng) for _ in range(300)]))
    client = MilvusClient(milvus.uri)
    try:
        for name, encode in (("tok_encoded", token_text), ("tok_raw", " ".join)):
            client.create_collection(name, schema=schema.passages_schema(None),
                                     index_params=schema.index_params(client, "passages"))  # fmt: skip
            rows = [{"id": i, "patent_id": f"P{i}", "version": 1, "ordinal": 0, "field": "claim", "text": t,
                     "tokens": encode([t]), "language": "en", "jurisdiction": "US", "codes": "",
                     "priority": 0, "filing": 0, "publication": 0} for i, t in enumerate(tokens)]  # fmt: skip
            client.insert(name, rows)
        wrong = {}
        for name, encode in (("tok_encoded", token_text), ("tok_raw", " ".join)):
            queries = [encode([t]) for t in tokens]
            bm25 = {"metric_type": "BM25"}
            hits = client.search(name, data=queries, anns_field="sparse", limit=5, output_fields=["id"],
                                 search_params=bm25, consistency_level="Strong")  # fmt: skip
            wrong[name] = [tokens[i] for i, row in enumerate(hits) if [h["id"] for h in row] != [i]]
        assert wrong["tok_encoded"] == []
        assert {"Boiler", "boiler", "ph7", "a-b"} <= set(wrong["tok_raw"])  # the negative control
    finally:
        client.close()


# ---------------------------------------------------------------- filters

CODES = ["H01M 4/525", "h01m 4/13", "H01M 10/0525", "H01L 21/02", "H04L 9/32", "H04W 72/04", "G06F 16/31",
         "G06N 3/08", "A61K 31/00", "B01J 29/40", "Y02E 60/10"]  # fmt: skip
DATES = [f"{y}-{md}" for y in (2005, 2012, 2016, 2019, 2021) for md in ("01-01", "06-15", "11-30")]


def random_patents(rng: random.Random, count: int) -> list[Patent]:
    def date() -> dt.date | None:
        return None if rng.random() < 0.15 else dt.date.fromisoformat(rng.choice(DATES))

    patents = []
    for i in range(count):
        claims = [f"A zeolite {rng.choice(['catalyst', 'membrane', 'sieve'])} number {i} part {j}."
                  for j in range(rng.randint(1, 3))]  # fmt: skip
        patents.append(Patent(
            id=f"XX{100000 + i}A1", title=f"Zeolite item {i}", abstract="A zeolite.", claims=claims,
            language=rng.choice(["en", "zh", "de", "fr"]), jurisdiction=rng.choice(["US", "EP", "CN", "JP"]),
            codes=rng.sample(CODES, rng.choice([0, 1, 1, 2, 3])),
            priority_date=date(), filing_date=date(), publication_date=date(),
        ))  # fmt: skip
    return patents


def random_filters(rng: random.Random, ids: list[str]) -> list[SearchFilter]:
    filters = []
    for field in ("priority", "filing", "publication"):
        for day in (DATES[4], DATES[9], "2013-03-03"):
            filters += [SearchFilter(date_field=field, before=day), SearchFilter(date_field=field, after=day)]
        filters.append(SearchFilter(date_field=field, after=DATES[3], before=DATES[12]))
    prefixes = ["H", "H01", "H01M", "H01M4", "h01m 4/5", "H01M4/525", "H01M 4/525", "H01M1", "G06N 3", "",
                "Y", "Z99", "A61K31/00"]  # fmt: skip
    filters += [SearchFilter(code_prefixes=[p]) for p in prefixes]
    filters += [SearchFilter(code_prefixes=["H04L", "G06N 3/08"]), SearchFilter(languages=["en"]),
                SearchFilter(languages=["zh", "de"]), SearchFilter(languages=["xx"]),
                SearchFilter(jurisdictions=["us"]), SearchFilter(jurisdictions=["EP", "cn"]),
                SearchFilter(exclude_patents=rng.sample(ids, 15))]  # fmt: skip
    for _ in range(25):  # combinations
        filters.append(SearchFilter(
            date_field=rng.choice(["priority", "filing", "publication"]),
            before=rng.choice([None, *DATES]), after=rng.choice([None, None, *DATES[:6]]),
            code_prefixes=rng.sample(prefixes, rng.choice([0, 1, 2])),
            languages=rng.sample(["en", "zh", "de", "fr"], rng.choice([0, 1, 2])),
            jurisdictions=rng.sample(["us", "EP", "CN", "jp"], rng.choice([0, 1, 3])),
            exclude_patents=rng.sample(ids, rng.choice([0, 5])),
        ))  # fmt: skip
    return filters


@pytest.fixture(scope="module")
def filtered(milvus: MilvusLiteServer) -> Iterator[Any]:
    rng = random.Random(11)
    patents = random_patents(rng, 130)
    index = ClusterIndex(milvus.uri, prefix="filters", embedder=fake_embedder(8), dense_index=FLAT)
    index.add(patents)
    fields = {p.id: p.fields() for p in patents}
    owner = {p.passage_id: p.patent_id for pat in patents for p in index.docstore.passages_of(pat.id)}
    filters = random_filters(rng, list(fields))
    yield types.SimpleNamespace(index=index, fields=fields, owner=owner, filters=filters)
    index.close()


def filter_mismatches(data: Any, filters: list[SearchFilter]) -> list[str]:
    index, tokens = data.index, analyze("zeolite")
    query = fake_embedder(8).embed_documents(["a query"])
    wrong = []
    for flt in filters:
        expected = {pid for pid, patent in data.owner.items() if flt.matches(data.fields[patent])}
        lexical = {pid for pid, _ in index.lexical.search_tokens(tokens, 5000, flt)}
        dense = {pid for pid, _ in index.vectors.search(query, 5000, flt)[0]}
        for name, got in (("lexical", lexical), ("dense", dense)):
            if got != expected:
                wrong.append(f"{name} {flt}: {len(got - expected)} extra, {len(expected - got)} missing")
    return wrong


def test_every_filter_kind_returns_exactly_what_searchfilter_matches_accepts(filtered: Any) -> None:
    assert len(filtered.owner) >= 300 and filtered.index.stats()["passages"] == len(filtered.owner)
    assert filter_mismatches(filtered, [SearchFilter()]) == []  # every passage holds the query term
    sizes = [sum(f.matches(x) for x in filtered.fields.values()) for f in filtered.filters]
    assert sum(0 < s < len(filtered.fields) for s in sizes) >= 0.8 * len(sizes)  # filters that select
    assert filter_mismatches(filtered, filtered.filters) == []


def test_a_wrong_filter_translation_is_caught(filtered: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: inclusive `before`, and undated patents let through, both show up."""
    right = schema.filter_expression
    dates = [f for f in filtered.filters if f.before and not f.code_prefixes][:6]
    for broken in (
        lambda f: right(f).replace(" < ", " <= "),
        lambda f: right(f).replace(" > 0 and ", " >= 0 and "),
    ):
        monkeypatch.setattr(reads, "filter_expression", broken)
        assert filter_mismatches(filtered, dates), "the check did not notice a wrong expression"


# ---------------------------------------------------------------- differential against PatentIndex


@pytest.fixture(scope="module")
def sample(milvus: MilvusLiteServer, tmp_path_factory: pytest.TempPathFactory, request: Any) -> Iterator[Any]:
    """The sample corpus in the embedded index and in Milvus (with the tiny embedder when available)."""
    try:
        from patentrank.models.embedder import Embedder

        embedder = Embedder(str(request.getfixturevalue("tiny_embedder_path")), device="cpu")
    except pytest.skip.Exception:
        embedder = None
    cache: dict[str, np.ndarray] = {}

    def embed(texts: list[str]) -> np.ndarray:
        if missing := [t for t in dict.fromkeys(texts) if t not in cache]:
            cache.update(zip(missing, embedder.embed_documents(missing), strict=True))
        return np.stack([cache[t] for t in texts])

    patents = list(load_patents(sample_corpus_path()))
    options = {"embedder": embedder, "embed_documents": embed if embedder else None}
    embedded = PatentIndex(tmp_path_factory.mktemp("embedded") / "ix", **options)
    embedded.add(patents)
    cluster = ClusterIndex(milvus.uri, prefix="sample", dense_index=FLAT, **options)
    cluster.add(patents)
    yield types.SimpleNamespace(embedded=embedded, cluster=cluster, patents=patents, embedder=embedder)
    embedded.close()
    cluster.close()


def keyed(index: Any, hits: list[tuple[int, float]]) -> list[tuple[tuple[str, int], float]]:
    """Hits as ((patent id, ordinal), score): passage ids differ between the two indexes."""
    passages = {
        p.passage_id: (p.patent_id, p.ordinal) for p in index.docstore.get_passages([i for i, _ in hits])
    }
    return [(passages[i], score) for i, score in hits]


def queries(patents: list[Patent]) -> list[str]:
    return [p.title for p in patents] + [p.claims[0][:300] for p in patents[::3] if p.claims]


def test_chinese_words_find_exactly_the_passages_holding_that_jieba_word(sample: Any) -> None:
    tokens = {(p.patent_id, p.ordinal): set(analyze(p.text)) for pat in sample.patents
              for p in sample.cluster.passages_for(pat)}  # fmt: skip
    chinese = sorted({t for ts in tokens.values() for t in ts if re.search(r"[\u4e00-\u9fff]", t)})
    assert len(chinese) > 100
    for word in [*random.Random(3).sample(chinese, 25), "锂电池", "图像"]:
        expected = {key for key, ts in tokens.items() if word in ts}
        got = {key for key, _ in keyed(sample.cluster, sample.cluster.lexical.search_tokens([word], 500))}
        assert got == expected, word
    texts = " ".join(p.title + p.abstract for p in sample.patents if p.language == "zh")
    every = set().union(*tokens.values())
    pairs = (texts[i : i + 2] for i in range(len(texts)))
    absent = next(p for p in pairs if re.fullmatch(r"[\u4e00-\u9fff]{2}", p) and p not in every)
    assert sample.cluster.lexical.search_tokens([absent], 500) == []  # in the text, never a jieba word


def exact_bm25(passages: dict[Any, list[str]], tokens: list[str]) -> dict[Any, float]:
    """Textbook BM25 (k1 1.2, b 0.75, exact lengths) divided by (k1 + 1), as both indexes document."""
    n, df = len(passages), Counter(t for ts in passages.values() for t in set(ts))
    avgdl, k1, b = sum(map(len, passages.values())) / n, schema.K1, schema.B
    scores = {}
    for key, ts in passages.items():
        tf, norm = Counter(ts), k1 * (1 - b + b * len(ts) / avgdl)
        score = sum(r * math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) * tf[t] / (tf[t] + norm)
                    for t, r in Counter(tokens).items() if tf[t])  # fmt: skip
        if score:
            scores[key] = score
    return scores


def test_lexical_matches_exact_bm25_and_the_embedded_index(sample: Any) -> None:
    """Milvus's scores are textbook BM25, and so are the embedded index's best `exact_top` hits (tantivy's
    one-byte lengths replaced by exact ones, lexical_exact.py): there the two agree to float precision.
    Below them the embedded scores keep one-byte lengths, within a few percent."""
    passages = {(p.patent_id, p.ordinal): analyze(p.text) for pat in sample.patents
                for p in sample.cluster.passages_for(pat)}  # fmt: skip
    exact_top = sample.embedded.lexical.exact_top
    identical, gaps, top_gaps, worst_exact, texts = 0, [0.0], [0.0], 0.0, queries(sample.patents)
    for text in texts:
        tokens = analyze(text)
        lexical = sample.embedded.lexical
        ranked = keyed(sample.embedded, lexical.search_tokens(tokens, 80))
        lexical.exact_top = 0  # tantivy's own scores: the best one not rescored bounds what is certified
        try:
            rounded = [score for _, score in lexical.search_tokens(tokens, 80)]
        finally:
            lexical.exact_top = exact_top
        ceiling = rounded[exact_top] if len(rounded) > exact_top else 0.0
        a, rescored = dict(ranked), {key for key, score in ranked if score > ceiling}
        b = keyed(sample.cluster, sample.cluster.lexical.search_tokens(tokens, 40))
        exact = exact_bm25(passages, tokens)
        worst_exact = max([worst_exact, *(abs(s - exact[key]) / exact[key] for key, s in b)])
        gaps += [abs(s - a[key]) / a[key] for key, s in b]
        top_gaps += [abs(s - a[key]) / a[key] for key, s in b if key in rescored]
        for rank, (key, _) in enumerate(b):  # swaps, and a different 40th, only between near-equal scores
            assert a[key] == pytest.approx(list(a.values())[rank], rel=0.05), (text, rank, key)
        # Passages with equal scores (family members' same text) go to the smaller patent id, as the
        # pipeline breaks such ties; passage ids differ between the backends.
        top = [top_patents(pairs) for pairs in (list(a.items()), b)]
        identical += top[0] == top[1]
        bound = sample.embedded.lexical.best_possible_score(tokens)
        assert sample.cluster.lexical.best_possible_score(tokens) == pytest.approx(bound, rel=1e-9), text
    message = (f"{identical}/{len(texts)} identical top-10 patent lists; max relative gap to the embedded "
               f"scores {max(gaps):.4f} ({max(top_gaps):.2e} in its best {exact_top}), to exact BM25 "
               f"{worst_exact:.2e}")  # fmt: skip
    print(message)
    assert len(texts) >= 60 and identical >= 0.95 * len(texts), message
    assert worst_exact < 1e-5 and max(top_gaps) < 1e-5 and max(gaps) < 0.05, message


def top_patents(pairs: list[tuple[tuple[str, int], float]], n: int = 10) -> list[str]:
    ordered = sorted(pairs, key=lambda pair: (-round(pair[1], 5), pair[0][0]))
    return list(dict.fromkeys(patent for (patent, _), _ in ordered))[:n]


def fake_rerank(query: str, documents: list[str], instruction: str | None = None, **_: Any) -> list[float]:
    return [int(hashlib.md5(d.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF for d in documents]


def shortened(patent: Patent) -> Patent:
    """At most 40 tokens a passage, where tantivy's document lengths are exact: both indexes then score
    textbook BM25, so the pipelines must agree on everything but the order of exactly tied results.
    Lengths vary (20-40 tokens), so that two passages rarely tie exactly."""
    seed = int(hashlib.md5(patent.id.encode()).hexdigest(), 16)

    def cut(prefix: str, text: str, limit: int) -> str:
        while len(analyze(prefix + text)) > limit:
            text = text[: len(text) - 3]
        return text

    claim = cut("1. ", patent.claims[0], 20 + seed % 21) if patent.claims else ""
    abstract = cut(patent.title + "\n", patent.abstract, 20 + (seed >> 8) % 21)
    return replace(patent, abstract=abstract, claims=[claim] if claim else [], description=None)


@pytest.fixture(scope="module")
def short(milvus: MilvusLiteServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    patents = [shortened(p) for p in load_patents(sample_corpus_path())]
    embedded = PatentIndex(tmp_path_factory.mktemp("short") / "ix")
    embedded.add(patents)
    cluster = ClusterIndex(milvus.uri, prefix="short")
    cluster.add(patents)
    assert max(len(analyze(p.text)) for pat in patents for p in cluster.passages_for(pat)) <= 40
    yield types.SimpleNamespace(embedded=embedded, cluster=cluster, patents=patents)
    embedded.close()
    cluster.close()


def tied_groups(response: Any) -> list[set[tuple[Any, ...]]]:
    """Results as groups of equal score (in order), each result with its best passage and highlights."""
    groups: list[set[tuple[Any, ...]]] = []
    last = None
    for r in response.results:
        hit = r.best_passage
        row = (r.patent_id, hit.field, hit.text, tuple(hit.highlights), r.reranked)
        if last is None or abs(r.score - last) > 1e-5:
            groups.append(set())
        groups[-1].add(row)
        last = r.score
    return groups


def test_the_pipeline_gives_the_same_answers_on_both(short: Any) -> None:
    embedded, cluster = (SearchPipeline(ix, rerank=fake_rerank) for ix in (short.embedded, short.cluster))
    lexical = {"mode": "lexical", "rerank": False}
    requests = [
        SearchRequest("lithium battery 锂电池负极材料", **lexical),
        SearchRequest("图像去噪", **lexical, filter=SearchFilter(before="2021-01-01", languages=["zh"])),
        SearchRequest("heat recovery battery", **lexical, filter=SearchFilter(code_prefixes=["F", "H01M"])),
        SearchRequest("neural network 神经网络", **lexical, filter=SearchFilter(jurisdictions=["cn", "us"])),
        SearchRequest("system 方法", **lexical, filter=SearchFilter(date_field="filing", after="2019-06-01")),
        SearchRequest("battery electrode", mode="lexical", rerank=True, min_score=0.5, candidates=20),
        SearchRequest("image 图像", mode="lexical", rerank=True, candidates=30, top_n=5),
        *[SearchRequest(patent_id=p.id, **lexical) for p in short.patents[::7]],
    ]  # fmt: skip
    for request in requests:
        a, b = embedded.search(request), cluster.search(request)
        assert a.results and a.by_patent == b.by_patent, request
        assert tied_groups(a) == tied_groups(b), request
        assert [r.score for r in a.results] == pytest.approx([r.score for r in b.results], rel=1e-5)
        if request.patent_id:
            own = short.cluster.docstore.get_patent(request.patent_id)
            assert own.id not in [r.patent_id for r in b.results]
            assert all(r.priority_date < own.priority_date.isoformat() for r in b.results)
        if request.min_score:
            assert all(r.score >= 0.5 for r in b.results) and 0 < len(b.results) < 10
        for r in b.results:
            assert request.filter.matches(short.cluster.docstore.get_patent(r.patent_id).fields())
    assert any(r.best_passage.highlights for r in cluster.search(requests[0]).results)


def test_dense_matches_the_embedded_index_with_a_flat_index(sample: Any) -> None:
    if sample.embedder is None:
        pytest.skip("the tiny embedder needs ../shared (the Qwen3 tokenizer)")
    texts = queries(sample.patents)[:30]
    vectors = sample.embedder.embed_queries(texts)
    a = sample.embedded.vectors.search(vectors, 10)
    b = sample.cluster.vectors.search(vectors, 10)
    for text, row_a, row_b in zip(texts, a, b, strict=True):
        ka, kb = keyed(sample.embedded, row_a), keyed(sample.cluster, row_b)
        assert [k for k, _ in ka] == [k for k, _ in kb], text
        assert np.allclose([s for _, s in ka], [s for _, s in kb], atol=1e-4), text
    embed_query = lambda q, i: sample.embedder.embed_queries([q], instruction=i)[0]  # noqa: E731
    pipes = [SearchPipeline(ix, embed_query=embed_query) for ix in (sample.embedded, sample.cluster)]
    for text in texts[:8]:
        request = SearchRequest(text, mode="dense", rerank=False, filter=SearchFilter(languages=["en", "zh"]))
        a, b = (p.search(request) for p in pipes)
        assert tied_groups(a) == tied_groups(b) and a.results, text
        assert [r.score for r in a.results] == pytest.approx([r.score for r in b.results], abs=1e-4)


# ---------------------------------------------------------------- opening: embedders, prefixes, location


def test_embedders_prefixes_and_locations(
    milvus: MilvusLiteServer, filtered: Any, short: Any, tmp_path: Path
) -> None:
    """The index of `filtered` holds 8-d vectors of "fake-8"; that of `short` is lexical only."""
    ClusterIndex(milvus.uri, prefix="filters", embedder=fake_embedder(8)).close()  # the same model: fine
    with pytest.raises(PatentrankError, match=r"fake-8 \(8 dims\).*fake-16 \(16 dims\)") as info:
        ClusterIndex(milvus.uri, prefix="filters", embedder=fake_embedder(16))
    assert "\n" not in str(info.value) and "unreachable" not in str(info.value)
    with pytest.raises(PatentrankError, match="without vectors"):
        ClusterIndex(milvus.uri, prefix="short", embedder=fake_embedder(8))
    config = types.SimpleNamespace(milvus_token=None, milvus_prefix="nothing_here", milvus_timeout_s=5.0)
    with pytest.raises(ClusterError, match="ingest into it first") as info:
        open_patent_index(milvus.uri, settings=config, read_only=True)
    assert "\n" not in str(info.value)
    assert not [c for c in MilvusClient(milvus.uri).list_collections() if "nothing_here" in c]  # made nothing
    config.milvus_prefix = "filters"
    opened = open_patent_index(f" {milvus.uri} ", settings=config, embedder=fake_embedder(8), read_only=True)
    assert isinstance(opened, ClusterIndex) and opened.stats()["patents"] == len(filtered.fields)
    opened.close()
    folder = open_patent_index(tmp_path / "ix")
    assert isinstance(folder, PatentIndex)
    folder.close()
