"""The search benchmark's synthetic zh/en patent corpus, its clustered vectors and its queries, streamed.

Everything is drawn from seeded generators in a fixed order, so a size and a seed always give the same
patents, passages and vectors; memory stays bounded at any size (no per-passage Python objects are kept:
a patent's topic lives in a numpy array, rare-term ranks are drawn lazily in blocks).

Check that the stream is what it was (prints a digest of passage ids, texts and vectors):
    .venv/bin/python -m benchmarks.synthetic_patents --size 10000
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import hashlib
import random
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `patentrank` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common as bench
from patentrank.chunking import approx_tokens
from patentrank.corpus import Patent, load_patents, sample_corpus_path
from patentrank.index.filters import SearchFilter

# IPC codes of each technical domain of `bench.DOMAINS` (image, battery, gearbox, radio).
DOMAIN_CODES = (
    ("G06T5/00", "G06T7/11", "G06N3/08", "G06V10/82", "H04N23/80"),
    ("H01M10/0525", "H01M4/58", "H01M50/20", "B60L58/12", "H02J7/00"),
    ("F16H57/04", "F16H3/44", "F16D13/52", "B60K17/04", "F16H61/00"),
    ("H04W72/04", "H04L5/00", "H04B7/06", "H04W36/00", "H01Q1/24"),
)
ALL_CODES = tuple(c for codes in DOMAIN_CODES for c in codes)
AREAS_PER_DOMAIN = 8  # technical areas: the coarsest level of the vector hierarchy
PASSAGES_PER_TOPIC = 250  # > k = 100, so a query's exact top-100 lies inside a graded neighbourhood
# Vector = sum of unit directions: area, topic, patent, own noise (same-patent cos 0.80, same topic 0.60).
W_AREA, W_TOPIC, W_PATENT, W_NOISE, W_QUERY_NOISE = 0.5, 0.7, 0.5, 0.5, 0.6
EN_SYLLABLES = "al an bor cal cen cy dex dor fen gal hex ion kar lan lex lor mag mer nal neo nit oct pan per "
EN_SYLLABLES += "phos por quin ram sil sul tan tel ter tri tro val ven xan zir zol"
EN_SUFFIXES = ("ite", "ane", "ium", "ate", "ase", "ene", "ol", "ide", "on")
ZH_CHARS = (
    "氮锆钛硅碳聚烯酰胺酯醇酸盐铝铜镍钴锰锂钠钾磷硫氟氯硼晶膜栅阵耦谐振腔滤波导绝缘纤维陶瓷掺杂纳微孔梯"
)
ZH_SUFFIXES = ("材料", "复合层", "组件", "模块", "电路", "结构", "薄膜", "涂层", "单元", "装置")
# Invented terms stand alone between punctuation, so each is its own jieba run (see analysis_cache).
TERM_SENTENCES = {
    "en": ("In one example the {a} is combined with the {b} (model {code}).",
           "Suitable materials include {a}, {b} and {c}, see specification {code}."),
    "zh": ("在一个示例中，采用：{a}、{b}（型号{code}）。", "所述材料选自：{a}、{b}、{c}；参见规范{code}。"),
}  # fmt: skip
ZIPF_DRAWS_PER_PASSAGE = 40  # the rank stream's length; its draws come before the per-patent ones
_ZIPF_BLOCK = 1 << 20
PATENT_NUMBER_BASE = 100_000_000  # patent i is f"{jurisdiction}{PATENT_NUMBER_BASE + i}A"


@functools.lru_cache(maxsize=500_000)
def invented_term(rank: int, lang: str) -> str:
    """A deterministic made-up technical word for a Zipf rank: 'zirtelate', '锆钛掺涂层'."""
    rng = random.Random(rank * 2 + (lang == "zh"))
    if lang == "zh":
        return "".join(rng.choices(ZH_CHARS, k=rng.randint(2, 3))) + rng.choice(ZH_SUFFIXES)
    return "".join(rng.choices(EN_SYLLABLES.split(), k=rng.randint(2, 3))) + rng.choice(EN_SUFFIXES)


def sentence_pools(seed: int) -> dict[tuple[str, int], list[str]]:
    """Sentences per (language, domain): from `common.patent_passage`; domain -1 = the sample patents."""
    rng, pools = random.Random(seed), {}
    cut = {"zh": re.compile(r"[^。；]+[。；]"), "en": re.compile(r"[^.;]+?[.;](?=\s|$)")}
    for lang in ("zh", "en"):
        for domain in range(len(bench.DOMAINS)):
            text = [bench.patent_passage(rng, domain, lang, 400, approx_tokens) for _ in range(40)]
            pools[(lang, domain)] = sorted({s.strip() for t in text for s in cut[lang].findall(t)[:-1]})
        samples = [p for p in load_patents(sample_corpus_path()) if p.language == lang]
        parts = [x for p in samples for x in (p.abstract, *p.claims, p.description or "")]
        pools[(lang, -1)] = sorted({s.strip() for t in parts for s in cut[lang].findall(t) if len(s) > 12})
    return pools


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    m = rng.standard_normal((n, dim), dtype=np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def make_patent(
    i: int, rng: random.Random, pools: dict, domain: int, lang: str, terms: list[str], zipf: Callable[[], int]
) -> Patent:
    """One patent of a topic: title like a query, abstract, 1-3 claim groups, 3-12 paragraphs."""
    own, general = pools[(lang, domain)], pools[(lang, -1)]

    def sentence() -> str:
        if rng.random() < 0.2:
            rare = [invented_term(zipf(), lang) for _ in range(2)]
            abc = dict(a=rng.choice(terms), b=rare[0], c=rare[1], code=f"{rng.randrange(26**2 * 10**4):X}")
            return rng.choice(TERM_SENTENCES[lang]).format(**abc)
        return rng.choice(own if rng.random() < 0.75 else general)

    join = "" if lang == "zh" else " "
    para = lambda lo, hi: join.join(sentence() for _ in range(rng.randint(lo, hi)))  # noqa: E731
    claims: list[str] = []
    for _ in range(rng.randint(1, 3)):
        parent = len(claims) + 1
        claims.append(para(1, 3))
        for _ in range(rng.randint(1, 4)):
            lead = (
                f"根据权利要求{parent}所述的装置，其特征在于，"
                if lang == "zh"
                else f"The device of claim {parent}, wherein "
            )
            claims.append(lead + para(1, 2))
    jurisdiction = ("CN" if rng.random() < 0.9 else "TW") if lang == "zh" else rng.choice(("US", "EP", "WO"))
    codes = list(rng.sample(DOMAIN_CODES[domain], rng.randint(1, 3)))
    if rng.random() < 0.15:
        codes.append(rng.choice(rng.choice(DOMAIN_CODES)))
    priority = dt.date(2000, 1, 1) + dt.timedelta(days=rng.randrange(24 * 365))
    filing = priority + dt.timedelta(days=rng.randrange(366))
    return Patent(
        id=f"{jurisdiction}{PATENT_NUMBER_BASE + i}A", language=lang, jurisdiction=jurisdiction,
        title=bench.patent_query(rng, domain, lang), abstract=para(3, 5), claims=claims,
        description="\n".join(para(2, 6) for _ in range(rng.randint(3, 12))), codes=codes,
        priority_date=None if rng.random() < 0.03 else priority, filing_date=filing,
        publication_date=filing + dt.timedelta(days=548), applicants=[f"Applicant {i % 997}"],
    )  # fmt: skip


def patent_number(patent_id: str) -> int:
    """The generation index i of a synthetic patent id ('CN100000042A' -> 42)."""
    return int(patent_id[2:-1]) - PATENT_NUMBER_BASE


class ZipfRanks:
    """The rare-term ranks, min(zipf(1.3), 1e7), read one by one from blocks drawn on a clone of the
    generator; the generator itself is advanced past all `n` draws, as one big draw would leave it
    (numpy draws zipf element by element, so blocks give exactly the values of one call). Past `n`
    (patents beyond the size, such as the benchmark's extra commit) ranks come from `overflow_seed`."""

    def __init__(self, rng: np.random.Generator, n: int, overflow_seed: int) -> None:
        self._clone = np.random.Generator(type(rng.bit_generator)())
        self._clone.bit_generator.state = rng.bit_generator.state
        for lo in range(0, n, _ZIPF_BLOCK):
            rng.zipf(1.3, min(_ZIPF_BLOCK, n - lo))
        self._left, self._block, self._at = n, np.zeros(0, np.int64), 0
        self._overflow_seed = overflow_seed

    def __call__(self) -> int:
        if self._at == len(self._block):
            if self._left <= 0:  # the stream of the size is used up: continue on a generator of its own
                self._clone, self._left = np.random.default_rng([self._overflow_seed, 1]), 1 << 62
            take = min(_ZIPF_BLOCK, self._left)
            self._block = np.minimum(self._clone.zipf(1.3, take), 10**7)
            self._at, self._left = 0, self._left - take
        self._at += 1
        return int(self._block[self._at - 1])


class World:
    """The synthetic corpus, streamed: patents of topics, and for each passage a clustered vector.

    A vector is the normalised sum of unit directions of its technical area, topic and patent and of
    its own noise, so similarity is graded (same patent > same topic > same area > unrelated) as in
    real embeddings; iid random vectors would make HNSW recall meaningless.
    """

    def __init__(self, size: int, dim: int, seed: int) -> None:
        self.size, self.dim, self.seed = size, dim, seed
        self.rng, self.np_rng = random.Random(seed), np.random.default_rng(seed)
        self.pools = sentence_pools(seed)
        n_topics = max(size // PASSAGES_PER_TOPIC, 4 * AREAS_PER_DOMAIN)
        self.topic_area = self.np_rng.integers(0, len(bench.DOMAINS) * AREAS_PER_DOMAIN, n_topics)
        self.area_dirs = unit_rows(self.np_rng, len(bench.DOMAINS) * AREAS_PER_DOMAIN, dim)
        self.topic_dirs = unit_rows(self.np_rng, n_topics, dim)
        self.topic_terms = {(t, lang): [invented_term(10**8 + t * 8 + j, lang) for j in range(6)]
                            for t in range(n_topics) for lang in ("zh", "en")}  # fmt: skip
        self._topics = np.zeros(1024, np.int32)  # topic of patent i (grown by doubling)
        self.patents_made = 0
        self.generate_s = 0.0
        self._zipf = ZipfRanks(self.np_rng, ZIPF_DRAWS_PER_PASSAGE * size, seed)

    def next_patent(self) -> Patent:
        start = time.perf_counter()
        topic = int(self.np_rng.integers(len(self.topic_dirs)))
        domain = int(self.topic_area[topic]) // AREAS_PER_DOMAIN
        lang = "zh" if self.rng.random() < 0.55 else "en"
        terms = self.topic_terms[(topic, lang)]
        patent = make_patent(self.patents_made, self.rng, self.pools, domain, lang, terms, self._zipf)
        if self.patents_made == len(self._topics):
            self._topics = np.concatenate([self._topics, np.zeros_like(self._topics)])
        self._topics[self.patents_made] = topic
        self.patents_made += 1
        self.generate_s += time.perf_counter() - start
        return patent

    def patents(self, passages_so_far: Callable[[], int]) -> Iterator[Patent]:
        """Patents until `passages_so_far()` reaches the size (it counts what the index has chunked)."""
        while passages_so_far() < self.size:
            yield self.next_patent()

    def topics_made(self) -> np.ndarray:
        return self._topics[: self.patents_made]

    def vectors(self, passages: Sequence[tuple[str, int]]) -> np.ndarray:
        """One vector per passage, given its (patent id, ordinal) in any order and batching.

        A pure function of the pair: the patent's direction and each passage's noise come from a
        generator of the patent's own (row 0: the patent, row 1 + ordinal: the passage), never from the
        stream the patents are drawn from, so two indexes that batch or order their embedding calls
        differently get the same vectors, and a run can regenerate any passage's vector."""
        import zlib

        patent_ids = [patent for patent, _ in passages]
        topics = self._topics[[patent_number(p) for p in patent_ids]].astype(np.int64)
        last: dict[str, int] = {}
        for patent, ordinal in passages:
            last[patent] = max(last.get(patent, -1), ordinal)
        rows = {
            p: unit_rows(np.random.default_rng([self.seed, zlib.crc32(p.encode())]), top + 2, self.dim)
            for p, top in last.items()
        }
        v = W_AREA * self.area_dirs[self.topic_area[topics]] + W_TOPIC * self.topic_dirs[topics]
        v += W_PATENT * np.stack([rows[p][0] for p in patent_ids])
        v += W_NOISE * np.stack([rows[p][1 + o] for p, o in passages])
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@dataclass
class Query:
    """A title-like query, its synthetic vector, and two filters: `common` (~10% of the passages:
    priority cutoff + IPC subclass) and `rare` (under 1%: a 5-year priority window, the same IPC
    subclass, language and jurisdiction)."""

    text: str
    vector: np.ndarray
    common: SearchFilter
    rare: SearchFilter

    def filter(self, name: str) -> SearchFilter:
        return {"none": SearchFilter(), "common": self.common, "rare": self.rare}[name]


FILTERS = ("none", "common", "rare")
FILTER_DOC = {
    "none": "no filter",
    "common": "priority date before a per-query cutoff (2010-2022) and one IPC subclass of the query's "
    "domain",
    "rare": "the *common* filter with the priority date also on or after the cutoff less 5 years, plus "
    "language = the query's and jurisdiction TW (Chinese queries) or EP (English ones)",
}


def make_queries(world: World, n: int) -> list[Query]:
    """Alternating zh/en title-like queries of a topic plus one of its terms; the vector is the topic's
    direction plus noise (text, vector and common filter: the stream this benchmark always used)."""
    rng, np_rng = random.Random(world.seed + 1), np.random.default_rng(world.seed + 1)
    topics = np.unique(world.topics_made()).tolist()
    queries = []
    for q in range(n):
        topic, lang = rng.choice(topics), ("zh", "en")[q % 2]
        domain = int(world.topic_area[topic]) // AREAS_PER_DOMAIN
        text = f"{bench.patent_query(rng, domain, lang)} {rng.choice(world.topic_terms[(topic, lang)])}"
        v = W_AREA * world.area_dirs[world.topic_area[topic]] + W_TOPIC * world.topic_dirs[topic]
        v = v + W_QUERY_NOISE * unit_rows(np_rng, 1, world.dim)[0]
        cutoff = dt.date(2010, 1, 1) + dt.timedelta(days=rng.randrange(13 * 365))
        common = SearchFilter(before=cutoff.isoformat(), code_prefixes=[rng.choice(DOMAIN_CODES[domain])[:4]])
        five_years_before = dt.date(cutoff.year - 5, cutoff.month, min(cutoff.day, 28))
        rare = SearchFilter(
            after=five_years_before.isoformat(),
            before=common.before,
            code_prefixes=common.code_prefixes,
            languages=[lang],
            jurisdictions=["TW" if lang == "zh" else "EP"],
        )
        queries.append(Query(text, (v / np.linalg.norm(v)).astype(np.float32), common, rare))
    return queries


def fingerprint(size: int, dim: int = 256, seed: int = 0, batch: int = 64) -> dict[str, object]:
    """sha256 of the corpus as `PatentIndex.add(batch_size=64)` consumes it: per batch of 64 patents,
    the passages (id, text) in chunking order, then their vectors (one embedding call per batch)."""
    from patentrank.chunking import DEFAULT_MAX_TOKENS, patent_passages

    world, digest, passages = World(size, dim, seed), hashlib.sha256(), 0
    while passages < size:
        chunked = [
            p
            for _ in range(batch)
            for p in patent_passages(world.next_patent(), approx_tokens, DEFAULT_MAX_TOKENS)
        ]
        for p in chunked:
            digest.update(f"{p.passage_id}\x1f{p.text}\x1e".encode())
        digest.update(world.vectors([(p.patent_id, p.ordinal) for p in chunked]).tobytes())
        passages += len(chunked)
    return {"size": size, "patents": world.patents_made, "passages": passages, "sha256": digest.hexdigest()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Digest of the synthetic corpus stream (passages, vectors).")
    parser.add_argument("--size", type=int, default=10_000, help="passages")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(fingerprint(args.size, args.dim, args.seed))
