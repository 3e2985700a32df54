"""Search benchmark: indexing throughput per stage, query latency per stage (p50/p95), FAISS recall@100.

Run from the repository root (one benchmark at a time):
    .venv/bin/python -m benchmarks.search_bench --sizes 10000          # validation, about 2 minutes
    .venv/bin/python -m benchmarks.search_bench                        # 10k, 100k and 1M passages

The system under test is the real pipeline: `PatentIndex.add` (chunking, SQLite docstore, BM25,
FaissStore) on a synthetic Chinese/English patent corpus with synthetic clustered vectors (embedding
is excluded), then `SearchPipeline.search` with rerank off and a synthetic query vector (model time
excluded), plus the raw stores, and HNSW recall@100 against exact search. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import gc
import json
import os
import platform
import random
import shutil
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `patentrank` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common as bench
from patentrank import text as text_module
from patentrank.chunking import approx_tokens
from patentrank.corpus import Patent, load_patents, sample_corpus_path
from patentrank.index import lexical as lexical_module
from patentrank.index.filters import SearchFilter
from patentrank.index.patent_index import PatentIndex

# IPC codes of each technical domain of `bench.DOMAINS` (image, battery, gearbox, radio).
DOMAIN_CODES = (
    ("G06T5/00", "G06T7/11", "G06N3/08", "G06V10/82", "H04N23/80"),
    ("H01M10/0525", "H01M4/58", "H01M50/20", "B60L58/12", "H02J7/00"),
    ("F16H57/04", "F16H3/44", "F16D13/52", "B60K17/04", "F16H61/00"),
    ("H04W72/04", "H04L5/00", "H04B7/06", "H04W36/00", "H01Q1/24"),
)
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
# Invented terms stand alone between punctuation, so each is its own jieba run (see MemoJieba).
TERM_SENTENCES = {
    "en": ("In one example the {a} is combined with the {b} (model {code}).",
           "Suitable materials include {a}, {b} and {c}, see specification {code}."),
    "zh": ("在一个示例中，采用：{a}、{b}（型号{code}）。", "所述材料选自：{a}、{b}、{c}；参见规范{code}。"),
}  # fmt: skip
EF_VALUES = (100, 128, 256, 512)
BUSY_CORES = 0.2  # other processes' CPU above which a measurement is marked unreliable
K = 100


# ---------------------------------------------------------------- synthetic corpus


@functools.lru_cache(maxsize=500_000)
def invented_term(rank: int, lang: str) -> str:
    """A deterministic made-up technical word for a Zipf rank: 'zirtelate', '锆钛掺涂层'."""
    rng = random.Random(rank * 2 + (lang == "zh"))
    if lang == "zh":
        return "".join(rng.choices(ZH_CHARS, k=rng.randint(2, 3))) + rng.choice(ZH_SUFFIXES)
    return "".join(rng.choices(EN_SYLLABLES.split(), k=rng.randint(2, 3))) + rng.choice(EN_SUFFIXES)


def sentence_pools(seed: int) -> dict[tuple[str, int], list[str]]:
    """Sentences per (language, domain): from `common.patent_passage`; domain -1 = the sample patents."""
    import re

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


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    m = rng.standard_normal((n, dim), dtype=np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def make_patent(i: int, rng: random.Random, pools: dict, domain: int, lang: str, terms: list[str],
                zipf: Callable[[], int]) -> Patent:  # fmt: skip
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
        id=f"{jurisdiction}{100_000_000 + i}A", language=lang, jurisdiction=jurisdiction,
        title=bench.patent_query(rng, domain, lang), abstract=para(3, 5), claims=claims,
        description="\n".join(para(2, 6) for _ in range(rng.randint(3, 12))), codes=codes,
        priority_date=None if rng.random() < 0.03 else priority, filing_date=filing,
        publication_date=filing + dt.timedelta(days=548), applicants=[f"Applicant {i % 997}"],
    )  # fmt: skip


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
        self.area_dirs = _unit(self.np_rng, len(bench.DOMAINS) * AREAS_PER_DOMAIN, dim)
        self.topic_dirs = _unit(self.np_rng, n_topics, dim)
        self.topic_terms = {(t, lang): [invented_term(10**8 + t * 8 + j, lang) for j in range(6)]
                            for t in range(n_topics) for lang in ("zh", "en")}  # fmt: skip
        self.topic_of_patent: dict[str, int] = {}
        self.generate_s = 0.0
        # Ranks of the rare terms; kept as an int64 array (a list of 40M Python ints would take 1.5 GB at 1M).
        self._zipf = map(int, np.minimum(self.np_rng.zipf(1.3, 40 * size), 10**7))

    def patents(self, passages_so_far: Callable[[], int]) -> Any:
        """Patents until `passages_so_far()` reaches the size (it counts what the index has chunked)."""
        while passages_so_far() < self.size:
            start = time.perf_counter()
            topic = int(self.np_rng.integers(len(self.topic_dirs)))
            domain = int(self.topic_area[topic]) // AREAS_PER_DOMAIN
            lang = "zh" if self.rng.random() < 0.55 else "en"
            terms = self.topic_terms[(topic, lang)]
            patent = make_patent(len(self.topic_of_patent), self.rng, self.pools, domain, lang, terms,
                                 self._zipf.__next__)  # fmt: skip
            self.topic_of_patent[patent.id] = topic
            self.generate_s += time.perf_counter() - start
            yield patent

    def vectors(self, patent_ids: Sequence[str]) -> np.ndarray:
        topics = np.array([self.topic_of_patent[p] for p in patent_ids])
        patent_dirs = {p: _unit(np.random.default_rng([self.seed, zlib.crc32(p.encode())]), 1, self.dim)[0]
                       for p in set(patent_ids)}  # fmt: skip
        v = W_AREA * self.area_dirs[self.topic_area[topics]] + W_TOPIC * self.topic_dirs[topics]
        v += W_PATENT * np.stack([patent_dirs[p] for p in patent_ids])
        v += W_NOISE * _unit(self.np_rng, len(patent_ids), self.dim)
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@dataclass
class Query:
    text: str
    vector: np.ndarray
    filter: SearchFilter


def make_queries(world: World, n: int) -> list[Query]:
    """Alternating zh/en title-like queries of a topic plus one of its terms; the vector is the topic's
    direction plus noise; the filter is a prior-art cutoff (2010-2022) and one IPC subclass of its domain."""
    rng, np_rng = random.Random(world.seed + 1), np.random.default_rng(world.seed + 1)
    topics = sorted(set(world.topic_of_patent.values()))
    queries = []
    for q in range(n):
        topic, lang = rng.choice(topics), ("zh", "en")[q % 2]
        domain = int(world.topic_area[topic]) // AREAS_PER_DOMAIN
        text = f"{bench.patent_query(rng, domain, lang)} {rng.choice(world.topic_terms[(topic, lang)])}"
        v = W_AREA * world.area_dirs[world.topic_area[topic]] + W_TOPIC * world.topic_dirs[topic]
        v = v + W_QUERY_NOISE * _unit(np_rng, 1, world.dim)[0]
        cutoff = dt.date(2010, 1, 1) + dt.timedelta(days=rng.randrange(13 * 365))
        flt = SearchFilter(before=cutoff.isoformat(), code_prefixes=[rng.choice(DOMAIN_CODES[domain])[:4]])
        queries.append(Query(text, (v / np.linalg.norm(v)).astype(np.float32), flt))
    return queries


# ---------------------------------------------------------------- indexing


class MemoJieba:
    """jieba with a cache per Han run. `analyze` cuts text into runs at every non-Han character and
    segments each run on its own, so cached runs give exactly the real analyzer's tokens; it pays off
    only where runs repeat (as in this corpus), so its speed is never reported as analysis speed."""

    def __init__(self, real: Any) -> None:
        self.real, self.cache = real, {}

    def tokenize(self, text: str, mode: str = "default", HMM: bool = True) -> list[tuple[str, int, int]]:
        if (hit := self.cache.get((text, mode))) is None:
            hit = self.cache[(text, mode)] = list(self.real.tokenize(text, mode=mode, HMM=HMM))
        return hit


class StageClock:
    """Wall time per stage of one real `PatentIndex.add`, from timing wrappers around its parts."""

    def __init__(self) -> None:
        self.laps: dict[str, list[float]] = {}
        self._undo: list[Callable[[], None]] = []

    def wrap(
        self, owner: Any, name: str, stage: str, after: Callable[[tuple, Any], None] | None = None
    ) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            result = original(*args, **kwargs)
            self.laps.setdefault(stage, []).append(time.perf_counter() - start)
            if after is not None:
                after(args, result)
            return result

        setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, original))

    def seconds(self, stage: str) -> float:
        return float(sum(self.laps.get(stage, [])))

    def undo(self) -> None:
        while self._undo:
            self._undo.pop()()


class SyntheticEmbedder:
    """Stands in for the embedder: each passage's clustered vector from `World` (no model runs)."""

    def __init__(self, world: World, patent_of_text: dict[str, str]) -> None:
        self.world, self.patent_of_text = world, patent_of_text
        self.dim, self.model_name = world.dim, f"synthetic-clustered-{world.dim}d"

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.world.vectors([self.patent_of_text[t] for t in texts])
        self.patent_of_text.clear()  # one call per PatentIndex batch, after its chunking
        return vectors


@dataclass
class Ingested:
    index: PatentIndex
    stats: dict[str, Any]
    ids: np.ndarray
    vectors: np.ndarray
    fields: list[Any]
    sample_texts: list[str]


def ingest(world: World, folder: Path, memo_jieba: bool, hnsw_threshold: int = 200_000) -> Ingested:
    """`PatentIndex.add` end to end with the product's defaults (FAISS, HNSW past 200k, checkpoints of
    5,000 patents, the CLI's batches of 64 with an embedder), each stage timed inside that one run."""
    clock, patent_of_text = StageClock(), {}
    embedder = SyntheticEmbedder(world, patent_of_text)
    index = PatentIndex(folder, embedder=embedder, vector_options={"hnsw_threshold": hnsw_threshold})
    got: dict[str, Any] = {"passages": 0, "chars": 0, "ids": [], "vectors": [], "fields": [], "sample": []}
    kinds: list[str] = []

    def chunked(_: tuple, passages: list[Any]) -> None:
        got["passages"] += len(passages)
        got["chars"] += sum(len(p.text) for p in passages)
        patent_of_text.update((p.text, p.patent_id) for p in passages)
        if len(got["sample"]) < 3000:
            got["sample"] += [p.text for p in passages]

    def upserted(args: tuple, _: Any) -> None:
        for key, value in zip(("ids", "vectors", "fields"), args, strict=True):
            got[key].append(value)

    clock.wrap(index, "passages_for", "chunking", chunked)
    clock.wrap(index.docstore, "upsert_patents", "docstore upsert")
    clock.wrap(index.docstore, "clear_pending", "docstore journal")
    clock.wrap(lexical_module, "analyze", "bm25 analysis")
    clock.wrap(index.lexical, "add", "bm25 add")  # includes the analysis
    clock.wrap(index.lexical, "commit", "bm25 commit")
    clock.wrap(embedder, "embed_documents", "embedding")
    clock.wrap(index.vectors, "upsert", "vector upsert", upserted)
    clock.wrap(index.vectors, "save", "vector save", lambda *_: kinds.append(index.vectors.kind))
    real_jieba = text_module._jieba()
    if memo_jieba:
        text_module._jieba_tokenizer = MemoJieba(real_jieba)
    bar = bench_tqdm(world.size, "indexing")
    try:
        with bench.RssSampler(0.05) as rss, OthersCpu() as others:
            start = time.perf_counter()
            report = index.add(world.patents(lambda: got["passages"]), batch_size=64,
                               progress=lambda _: bar.update(got["passages"] - bar.n))  # fmt: skip
            total = time.perf_counter() - start
    finally:
        text_module._jieba_tokenizer = real_jieba
        clock.undo()
        bar.close()
    stages = {s: clock.seconds(s) for s in clock.laps}
    stages["bm25 staging"] = stages.pop("bm25 add") - stages["bm25 analysis"]
    stages["generation"] = world.generate_s
    stages["PatentIndex own work"] = total - sum(stages.values())
    before = ["flat", *kinds]  # the kind before each save
    converted = [i for i, kind in enumerate(kinds) if (before[i], kind) == ("flat", "hnsw")]
    stats = {
        "passages": got["passages"], "patents": report.added, "chars": got["chars"], "total_s": total,
        "stages_s": stages, "memo_jieba": memo_jieba, "rss_delta_bytes": rss.delta_bytes,
        "others_cores": others.cores,
        "bm25_commits": len(clock.laps["bm25 commit"]), "bm25_last_commit_s": clock.laps["bm25 commit"][-1],
        "vector_saves": len(kinds), "vector_kind": index.vectors.kind,
        "hnsw_conversion_s": clock.laps["vector save"][converted[0]] if converted else None,
        "bm25_terms": index.lexical.health()["terms"], "disk_bytes": disk_usage(folder),
    }  # fmt: skip
    ids = np.concatenate([np.asarray(i, np.int64) for i in got["ids"]])
    fields = [f for chunk in got["fields"] for f in chunk]
    return Ingested(index, stats, ids, np.concatenate(got["vectors"]), fields, got["sample"])


def disk_usage(folder: Path) -> dict[str, int]:
    parts = {"docstore": folder.glob("docs.sqlite*"), "bm25": (folder / "lexical").rglob("*"),
             "faiss": (folder / "faiss").rglob("*")}  # fmt: skip
    return {name: sum(p.stat().st_size for p in files if p.is_file()) for name, files in parts.items()}


def analysis_rate(texts: list[str]) -> dict[str, float]:
    """The real analyzer (jieba search mode + Snowball), uncached, on a sample of the corpus."""
    text_module.analyze(texts[0])  # jieba's dictionary loads on first use
    start = time.perf_counter()
    with OthersCpu() as others:
        for t in texts:
            text_module.analyze(t)
    seconds = time.perf_counter() - start
    return {
        "passages": len(texts),
        "chars_per_s": sum(map(len, texts)) / seconds,
        "passages_per_s": len(texts) / seconds,
        "others_cores": others.cores,
    }


def build_store(kind: str, folder: Path, data: Ingested, batch: int = 512) -> tuple[Any, dict[str, float]]:
    """A standalone FaissStore, bulk loaded: 'flat' (exact) or 'hnsw' (built once by the save)."""
    from patentrank.index.faiss_store import FaissStore

    store = FaissStore(folder, data.vectors.shape[1], hnsw_threshold=sys.maxsize if kind == "flat" else 0)
    start = time.perf_counter()
    with OthersCpu() as others:
        for lo in range(0, len(data.ids), batch):
            hi = lo + batch
            store.upsert(data.ids[lo:hi], data.vectors[lo:hi], data.fields[lo:hi])
        upsert_s = time.perf_counter() - start
        store.save()
    save_s = time.perf_counter() - start - upsert_s
    per_s = len(data.ids) / (upsert_s + save_s)
    return store, {"upsert_s": upsert_s, "save_s": save_s, "per_s": per_s, "others_cores": others.cores}


# ---------------------------------------------------------------- queries


class OthersCpu:
    """CPU used by other processes while a block runs, in cores (from /proc/stat less our own CPU time):
    on a 2-core machine anything above ~0.2 makes latencies unreliable, so the report marks it."""

    def __enter__(self) -> OthersCpu:
        self.start = (time.perf_counter(), _machine_busy_s(), sum(os.times()[:2]))
        return self

    def __exit__(self, *exc: object) -> None:
        now = (time.perf_counter(), _machine_busy_s(), sum(os.times()[:2]))
        wall, busy, own = (a - b for a, b in zip(now, self.start, strict=True))
        self.cores = max(0.0, (busy - own) / wall) if wall > 0 else 0.0


def _machine_busy_s() -> float:
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def timed_pass(
    call: Callable[[Query], Any], queries: list[Query], warmup: int = 3, budget_s: float = float("inf")
) -> dict[str, Any]:
    """p50 / p95 / mean ms of one call per query after a few warm-up calls, and the answers; stops
    after `budget_s` once 20 queries are done, so slow stages at 1M stay bounded ('n' says how many)."""
    for q in queries[:warmup]:
        call(q)
    samples, answers, began = [], [], time.perf_counter()
    with OthersCpu() as others:
        for q in queries:
            if len(samples) >= 20 and time.perf_counter() - began > budget_s:
                break
            start = time.perf_counter()
            answers.append(call(q))
            samples.append((time.perf_counter() - start) * 1000)
    p50, p95 = np.percentile(samples, [50, 95])
    return {"p50": float(p50), "p95": float(p95), "mean": float(np.mean(samples)), "n": len(samples),
            "others_cores": others.cores, "answers": answers}  # fmt: skip


def forget_filters(store: Any) -> None:
    # FaissStore keeps the masks of its last 32 filters; clear them so every pass pays for its filters
    # as a stream of distinct prior-art searches would.
    getattr(store, "_allowed_cache", {}).clear()


def pipeline_latency(
    index: PatentIndex, stores: dict[str, Any], queries: list[Query], budget_s: float
) -> dict:
    """`SearchPipeline.search` with rerank off; the query vector is looked up, so no model time."""
    from patentrank.search import SearchPipeline, SearchRequest

    vector_of = {q.text: q.vector for q in queries}
    pipeline = SearchPipeline(index, embed_query=lambda text, _instruction: vector_of[text])
    configs = [("lexical", "flat", False)] + [(m, s, False) for m in ("dense", "hybrid") for s in stores]
    out = {}
    for mode, store, highlight in [*configs, ("hybrid", "hnsw", True)]:
        index.vectors = stores[store]
        for filtered in (False, True):
            forget_filters(stores[store])
            label = f"{mode}{'' if mode == 'lexical' else ' ' + store}{' + highlight' if highlight else ''}"
            key = f"{label}|{'filter' if filtered else 'none'}"
            out[key] = timed_pass(
                lambda q, m=mode, f=filtered, h=highlight: pipeline.search(SearchRequest(
                    q.text, mode=m, filter=q.filter if f else SearchFilter(), rerank=False, highlight=h)),
                queries,
                budget_s=budget_s,
            )  # fmt: skip
            del out[key]["answers"]
            log(f"  pipeline {key:36s} {fmt_lat(out, label, filtered)}")
    return out


def raw_latency(index: PatentIndex, stores: dict[str, Any], queries: list[Query], budget_s: float) -> dict:
    """The stores alone, k = 200 as the pipeline asks: BM25, the docstore's SQL filter, FAISS (with its
    default OpenMP threads and with one)."""
    import faiss

    lexical, docstore = index.lexical, index.docstore
    out = {"bm25 search|none": timed_pass(lambda q: lexical.search(q.text, 200), queries)}
    sql = timed_pass(lambda q: docstore.allowed_passage_ids(q.filter), queries, budget_s=budget_s)
    allowed = dict(zip(map(id, queries), sql["answers"], strict=False))  # the budget may stop it early
    out["docstore filter SQL|filter"] = sql
    done = queries[: len(allowed)]
    out["bm25 search|filter"] = timed_pass(lambda q: lexical.search(q.text, 200, allowed[id(q)]), done)
    threads = faiss.omp_get_max_threads()
    for name, store, omp in [
        (n, s, t) for t in sorted({threads, 1}, reverse=True) for n, s in stores.items()
    ]:
        faiss.omp_set_num_threads(omp)  # OpenMP threads wait on each other when cores are busy
        for filtered in (False, True):
            forget_filters(store)
            label = f"faiss {name}" + ("" if omp == threads else f", {omp} OpenMP thread")
            out[f"{label}|{'filter' if filtered else 'none'}"] = timed_pass(
                lambda q, s=store, f=filtered: s.search(q.vector, 200, q.filter if f else None), queries
            )
    faiss.omp_set_num_threads(threads)
    for key, value in out.items():
        del value["answers"]
        log(f"  raw {key:32s} {value['p50']:8.2f} / {value['p95']:8.2f} ms")
    return {**out, "selectivity": float(np.mean([len(a) for a in allowed.values()]) / lexical.count())}


def recall(stores: dict[str, Any], queries: list[Query]) -> tuple[list[dict[str, Any]], dict[int, float]]:
    """HNSW recall@100 against the flat (exact) store on the same vectors, per efSearch, +/- filter; and
    the queries' mean cosine to their exact neighbours at ranks 1, 100 and 1000 (how hard the data is)."""
    flat, rows = stores["flat"], []
    exact = {
        f: [flat.search(q.vector, K, q.filter if f else None)[0] for q in queries] for f in (False, True)
    }
    n_allowed = [len(flat.matching_ids(q.filter)) for q in queries]
    profile = np.array([[d for _, d in flat.search(q.vector, 1000)[0]] for q in queries])
    for name, store in stores.items():
        if name == "flat" or store.kind != "hnsw":
            continue
        graph = np.mean([a > store.exact_filter_limit and a >= 0.02 * store.count() for a in n_allowed])
        default_ef = store.ef_search
        for ef, filtered in [(ef, f) for ef in EF_VALUES for f in (False, True)]:
            store.ef_search = ef
            forget_filters(store)
            lat = timed_pass(lambda q, s=store, f=filtered: s.search(q.vector, K, q.filter if f else None)[0],
                             queries, warmup=0)  # fmt: skip
            hits = [len({i for i, _ in got} & {i for i, _ in want}) / len(want)
                    for got, want in zip(lat.pop("answers"), exact[filtered], strict=True)
                    if want]  # fmt: skip
            rows.append({"store": name, "ef": ef, "filtered": filtered, "recall": float(np.mean(hits)),
                         "p50_ms": lat["p50"], "graph_share": float(graph) if filtered else 1.0,
                         "others_cores": lat["others_cores"]})  # fmt: skip
            log(f"  recall@{K} {name} ef {ef} {'filter' if filtered else 'none'}: {rows[-1]['recall']:.4f}")
        store.ef_search = default_ef
    return rows, {rank: float(profile[:, rank - 1].mean()) for rank in (1, 100, 1000)}


def fmt_lat(results: dict[str, Any], label: str, filtered: bool, queries: int = 0) -> str:
    """'p50 / p95', with the number of queries when a time budget cut the pass short."""
    value = results.get(f"{label}|{'filter' if filtered else 'none'}")
    if not value:
        return "-"
    cut = f" ({value['n']} q)" if value["n"] < queries else ""
    return f"{value['p50']:.1f} / {value['p95']:.1f}{cut}" + (
        " !" if value["others_cores"] > BUSY_CORES else ""
    )


def bench_tqdm(total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="passage", mininterval=2.0, file=sys.stderr)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- run and report


def run_size(size: int, args: argparse.Namespace) -> dict[str, Any]:
    folder = bench.RESULTS_DIR / "search-work" / str(size)
    shutil.rmtree(folder, ignore_errors=True)
    started, memo = time.perf_counter(), size > args.real_analysis_max
    log(f"== {size:,} passages, {args.dim}-d: indexing ({'jieba memoized' if memo else 'real analysis'})")
    world = World(size, args.dim, args.seed)
    data = ingest(world, folder / "index", memo, args.hnsw_threshold)
    log(f"  indexed {data.stats['passages']:,} passages in {data.stats['total_s']:.1f} s")
    result = {
        "size": size,
        "dim": args.dim,
        "ingest": data.stats,
        "analysis": analysis_rate(data.sample_texts),
    }
    stores, result["bulk"] = {}, {}
    for kind in ("flat", "hnsw"):
        stores[kind], result["bulk"][kind] = build_store(kind, folder / kind, data)
        log(f"  bulk {kind}: {result['bulk'][kind]}")
    queries = make_queries(world, args.queries)
    product = data.index.vectors
    result["pipeline"] = pipeline_latency(data.index, stores, queries, args.pass_budget)
    data.index.vectors = product
    result["raw"] = raw_latency(data.index, stores, queries, args.pass_budget)
    result["recall"], result["cosine_at_rank"] = recall({**stores, "product": product}, queries)
    for store in stores.values():
        store.close()
    data.index.close()
    result["peak_rss_bytes"] = bench.process_peak_rss_bytes()
    result["elapsed_s"] = time.perf_counter() - started
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    log(f"  {size:,} done in {result['elapsed_s']:.0f} s")
    return result


def machine_facts() -> dict[str, str]:
    import sqlite3

    import faiss
    import jieba

    return {"CPU": bench.cpu_model(), "ISA": " ".join(bench.cpu_isa_flags()) or "unknown",
            "logical CPUs": str(os.cpu_count()), "FAISS OpenMP threads": str(faiss.omp_get_max_threads()),
            "faiss": faiss.__version__, "numpy": np.__version__, "SQLite": sqlite3.sqlite_version,
            "jieba": jieba.__version__, "python": platform.python_version()}  # fmt: skip


def _rate(seconds: float, n: int) -> str:
    return f"{seconds:,.1f} s ({n / seconds:,.0f}/s)" if seconds >= 0.05 else f"{seconds:.2f} s"


STAGES = {
    "chunking": "chunking (`patent_passages`)",
    "docstore upsert": "docstore upsert (SQLite + journal)",
    "docstore journal": "docstore journal clear (checkpoints)",
    "bm25 analysis": "BM25 analysis (jieba + Snowball)",
    "bm25 staging": "BM25 staging (term counts)",
    "bm25 commit": "BM25 commits (weights, atomic write)",
    "vector upsert": "vector upsert (FaissStore)",
    "vector save": "vector saves (incl. HNSW conversion)",
    "PatentIndex own work": "PatentIndex own work",
}


def indexing_rows(r: dict[str, Any], chars_per_s: float) -> list[str]:
    """One column of the indexing table; `chars_per_s` estimates uncached analysis where it was memoized."""
    i, st, a = r["ingest"], r["ingest"]["stages_s"], r["analysis"]
    n, uncached_s = i["passages"], i["chars"] / chars_per_s
    cells = [f"{i['patents']:,} / {i['chars'] / 1e6:,.1f} M"]
    for key in STAGES:
        memo = key == "bm25 analysis" and i["memo_jieba"]
        cells.append(
            f"{st[key]:,.1f} s memoized; **est. {uncached_s:,.0f} s**" if memo else _rate(st[key], n)
        )
    together = i["total_s"] - st["generation"] - st["embedding"]
    estimate = together - st["bm25 analysis"] + uncached_s
    cells += [
        f"**{_rate(together, n)}**",
        f"**est. {_rate(estimate, n)}**" if i["memo_jieba"] else "(as measured)",
        f"{st['generation']:.1f} s / {st['embedding']:.1f} s",
        f"{a['chars_per_s'] / 1e3:,.0f} k chars/s ({a['passages_per_s']:,.0f}/s)"
        + ("" if i["memo_jieba"] else f"; in the run {i['chars'] / st['bm25 analysis'] / 1e3:,.0f} k"),
        f"{i['bm25_commits']} / {i['bm25_last_commit_s']:.2f} s",
        f"{i['vector_kind']} / {i['vector_saves']} / "
        + (f"{i['hnsw_conversion_s']:.1f} s" if i["hnsw_conversion_s"] else "-"),
        f"{i['bm25_terms']:,}",
        " / ".join(f"{v / 2**20:,.0f}" for v in i["disk_bytes"].values()),
        f"{bench.gib(i['rss_delta_bytes'])} / {bench.gib(r['peak_rss_bytes'])}",
        f"{i['others_cores']:.2f} / {a['others_cores']:.2f}",
    ]
    return cells


INDEXING_LABELS = [
    "patents / characters",
    *STAGES.values(),
    "**together**: `add` wall time less generation and embedding",
    "together with uncached analysis",
    "excluded: corpus generation / synthetic embedding",
    "analyzer alone, uncached, 3,000 passages (chars/s)",
    "BM25 commits / the last one",
    "vector store at the end / saves / HNSW conversion",
    "BM25 vocabulary (terms)",
    "on disk, MiB: docstore / BM25 / FAISS",
    "RSS growth while indexing / process peak",
    "other processes' CPU, cores: indexing / analyzer sample",
]


def latency_table(results: list[dict[str, Any]], part: str, queries: int) -> str:
    labels = list(dict.fromkeys(k.split("|")[0] for r in results for k in r[part] if "|" in k))
    head = ["stage", *[f"{r['ingest']['passages']:,} {f}" for r in results for f in ("none", "filter")]]
    cells = lambda label: [fmt_lat(r[part], label, f, queries) for r in results for f in (False, True)]  # noqa: E731
    return bench.markdown_table(head, [[label, *cells(label)] for label in labels])


def recall_table(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        by = {(x["store"], x["ef"], x["filtered"]): x for x in r["recall"]}
        for store, ef in dict.fromkeys((x["store"], x["ef"]) for x in r["recall"]):
            none, flt = by[(store, ef, False)], by[(store, ef, True)]
            mark = lambda x: f"{x['p50_ms']:.2f}" + (" !" if x["others_cores"] > BUSY_CORES else "")  # noqa: E731
            rows.append([f"{r['ingest']['passages']:,}", store, ef, f"{none['recall']:.4f}", mark(none),
                         f"{flt['recall']:.4f}", mark(flt), f"{flt['graph_share']:.0%}"])  # fmt: skip
    head = [
        "passages",
        "store",
        "efSearch",
        "recall@100",
        "p50 ms",
        "filtered recall@100",
        "p50 ms",
        "on graph",
    ]
    profile = "; ".join(
        f"{' / '.join(f'{v:.2f}' for v in r['cosine_at_rank'].values())} at {r['ingest']['passages']:,}"
        for r in results
    )
    return (
        bench.markdown_table(head, rows)
        + f"\n\nMean cosine of a query to its exact neighbours at rank 1 / 100 / 1000: {profile}."
    )


def observations(results: list[dict[str, Any]]) -> str:
    """A few ratios a reader would otherwise compute from the tables, per size."""
    lines = []
    for r in results:
        pipe, raw, st = r["pipeline"], r["raw"], dict(r["ingest"]["stages_s"])
        for excluded in ("generation", "embedding"):
            st.pop(excluded)
        if r["ingest"]["memo_jieba"]:
            st["bm25 analysis (memoized)"] = st.pop("bm25 analysis")
        top = ", ".join(f"{k} ({st[k] / sum(st.values()):.0%})" for k in sorted(st, key=st.get)[:-4:-1])
        sql = raw["docstore filter SQL|filter"]["p50"] / pipe["lexical|filter"]["p50"]
        hnsw, bm25 = raw["faiss hnsw|none"]["p50"], raw["bm25 search|none"]["p50"]
        dense, hybrid = pipe["dense hnsw|none"]["p50"] - hnsw, pipe["hybrid hnsw|none"]["p50"] - hnsw - bm25
        lines.append(
            f"- {r['ingest']['passages']:,} passages: the docstore's filter SQL is {sql:.0%} of a filtered "
            f"lexical search (p50); the pipeline adds {dense:.1f} ms (dense) and {hybrid:.1f} ms (hybrid) to "
            f"the raw stores (fetching passages and patents, fusion); the largest indexing stages are {top}."
        )
    return "\n".join(lines)


REPORT = """\
Measured {when} UTC with `.venv/bin/python -m benchmarks.search_bench {argv}` ({minutes:.0f} min).
Machine: {machine}.

A latency marked "!" was measured while other processes used more than {busy} of a
core on average (the machine is shared; FAISS's OpenMP threads suffer most): treat it as unreliable.

Synthetic patent corpus (55% Chinese, 45% English, chunked by `PatentIndex` itself) and {dim}-d clustered
synthetic vectors; **embedding is excluded** (a lookup stands in for the model) and so is query embedding.
How the corpus, vectors and queries are made: `benchmarks/README.md`. The embedder's own CPU speed is a
separate matter: the 0.6B model runs at about 150-300 tokens/s here (`/work/shared/docs/dependencies.md`).

### Indexing: one real `PatentIndex.add` per size, stage by stage

Product defaults (FAISS store that converts to HNSW past {threshold:,} passages, a checkpoint every 5,000
patents, batches of 64 patents as the CLI uses with an embedder). Each stage is timed by wrappers around the
index's own parts during that one run, so the stages add up to the total; rates are passages/s.

{indexing}

{measured}

Standalone FaissStores bulk loaded from the same vectors (upserts of 512, then one save, which builds the
HNSW graph: M 32, efConstruction 200):

{bulk}

### Query latency: `SearchPipeline.search`, ms p50 / p95

{queries} queries per pass (a pass stops after {budget:.0f} s once 20 are done: "(n q)"),
`SearchRequest(rerank=False)`, top_n 10, retrieve_k 200; `embed_query` returns the query's synthetic
vector: **no model time**. *filter*: priority date before a per-query cutoff and one IPC subclass
(selectivity {selectivity}). *flat* / *hnsw*: exact / HNSW FaissStore (efSearch 128) over the
same vectors. Highlight is off except where named. The rerank stage's cost: see the "Reranker" section.

{pipeline}

The stores alone (k = 200; BM25 includes analysing the query; *docstore filter SQL* is
`DocStore.allowed_passage_ids`, which the lexical stage runs for every filtered query; *bm25 search filter*
is given those ids; FAISS with its default OpenMP threads and with one):

{raw}

### FAISS recall@100: HNSW against exact search

`FaissStore.search(k=100)` on an HNSW store against the flat store, same vectors and filters. *hnsw* is built
once from all vectors; *product* is the index's own store where ingestion made it HNSW (converted past the
threshold, then grown batch by batch). A filtered search uses the graph (efSearch widened by 1/selectivity,
at most 4096) only when over 20,000 and at least 2% of the passages match, otherwise it is exact: *on graph*
is the share of filtered queries that used the graph.

{recall}

### Reading the numbers

{observations}
"""


def render(
    results: list[dict[str, Any]], facts: dict[str, str], args: argparse.Namespace, seconds: float
) -> str:
    memo = [f"{r['ingest']['passages']:,}" for r in results if r["ingest"]["memo_jieba"]]
    real = [r["ingest"] for r in results if not r["ingest"]["memo_jieba"]]
    if real:  # the rate inside a real run is lower than on a sample alone (cache pressure from the rest)
        ref = real[-1]
        rate = ref["chars"] / ref["stages_s"]["bm25 analysis"]
        source = (
            f"the real rate inside this run at {ref['passages']:,} passages ({rate / 1e3:,.0f} k chars/s)"
        )
    else:
        rate = min(r["analysis"]["chars_per_s"] for r in results)
        source = f"the slowest uncached rate on a 3,000-passage sample ({rate / 1e3:,.0f} k chars/s)"
    measured = (
        f"**Measured vs estimated.** At {', '.join(memo)} passages jieba was memoized per run of Han "
        "characters (exactly the real tokens, since `analyze` segments each run on its own) to keep the run "
        "feasible; every other stage ran for real. The uncached analysis time there is **estimated** as "
        f"characters / {source}."
        if memo
        else "**Measured vs estimated.** Everything in this table was measured; nothing is extrapolated."
    )
    columns = [indexing_rows(r, rate) for r in results]
    indexing = bench.markdown_table(
        ["stage", *[f"{r['ingest']['passages']:,} passages" for r in results]],
        [[label, *[c[i] for c in columns]] for i, label in enumerate(INDEXING_LABELS)],
    )
    bulk = bench.markdown_table(
        ["passages", "flat: upsert + save", "HNSW: upsert + build and save"],
        [[f"{r['ingest']['passages']:,}", *[
            f"{b['upsert_s']:.1f} s + {b['save_s']:.1f} s ({b['per_s']:,.0f}/s)"
            + (" !" if b["others_cores"] > BUSY_CORES else "") for b in r["bulk"].values()
        ]] for r in results],
    )  # fmt: skip
    return REPORT.format(
        when=f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}", argv=" ".join(sys.argv[1:]), minutes=seconds / 60,
        machine=", ".join(f"{k} {v}" for k, v in facts.items()), dim=args.dim, indexing=indexing,
        measured=measured, bulk=bulk, queries=args.queries, budget=args.pass_budget,
        pipeline=latency_table(results, "pipeline", args.queries), threshold=args.hnsw_threshold,
        selectivity=", ".join(f"{r['raw']['selectivity']:.1%} at {r['ingest']['passages']:,}"
                              for r in results),
        raw=latency_table(results, "raw", args.queries), recall=recall_table(results), busy=BUSY_CORES,
        observations=observations(results),
    )  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated passage counts")
    parser.add_argument("--dim", type=int, default=256, help="vector dimension (1024 = Qwen3-Embedding-0.6B)")
    parser.add_argument("--queries", type=int, default=100, help="queries per latency/recall pass")
    parser.add_argument("--pass-budget", type=float, default=60.0,
                        help="a latency pass stops after this many seconds (once 20 are done)")  # fmt: skip
    parser.add_argument("--real-analysis-max", type=int, default=100_000,
                        help="larger sizes memoize jieba and estimate the analysis time")  # fmt: skip
    parser.add_argument("--hnsw-threshold", type=int, default=200_000,
                        help="the index's FaissStore turns HNSW past this (product default)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the index folders in benchmarks/results")
    parser.add_argument("--out", default="docs/benchmarks.md", help="markdown file to update; '-' for none")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    bench.quiet_environment()
    args = parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    start = time.perf_counter()
    results = []
    for size in sizes:
        results.append(run_size(size, args))
        gc.collect()
    facts, elapsed = machine_facts(), time.perf_counter() - start
    bench.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    raw_path = bench.RESULTS_DIR / f"search-{'-'.join(map(str, sizes))}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    raw_path.write_text(
        json.dumps({"facts": facts, "args": vars(args), "results": results}, indent=1), encoding="utf-8"
    )
    log(f"raw results: {raw_path}")
    if args.out != "-":
        bench.replace_markdown_section(
            bench.REPO_ROOT / args.out, "Search", render(results, facts, args, elapsed)
        )
        log(f"wrote the Search section of {args.out}")


if __name__ == "__main__":
    main()
