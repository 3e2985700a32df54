"""Vector stores: one suite over FaissStore and MilvusStore (Milvus Lite), checked against brute force."""

from __future__ import annotations

import itertools
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from patentrank.config import Settings
from patentrank.errors import InputError
from patentrank.index.base import VectorStore
from patentrank.index.faiss_search import AllowedSlots
from patentrank.index.faiss_store import FIELDS_FILE, INDEX_FILE, RECENT_FILE, FaissStore
from patentrank.index.filters import PassageFields, SearchFilter
from patentrank.index.milvus_store import MilvusStore
from patentrank.index.stores import VectorStoreError, VectorStoreUnavailable, open_vector_store

DIM = 24
LANGUAGES = ("zh", "en", "ja", "de")
JURISDICTIONS = ("CN", "US", "EP", "JP", "WO")
CODES = ("H04L9/32", "H04L63/08", "G06N3/08", "G06T5/00", "A01B1/00", "H04W12/06")
FILTERS = [
    SearchFilter(before="2015-01-01"),
    SearchFilter(date_field="publication", after="2016-06-01"),
    SearchFilter(date_field="filing", after="2012-01-01", before="2014-01-01"),
    SearchFilter(code_prefixes=["H04L"]),
    SearchFilter(code_prefixes=["g06t", "A01B1/00"]),
    SearchFilter(languages=["zh"], jurisdictions=["cn", "wo"]),
    SearchFilter(exclude_patents=["P0", "P1", "P2", "P3", "P4", "P5", "P6", "P7"]),
    SearchFilter(before="2018-01-01", code_prefixes=["G06N"], languages=["en", "ja"]),
    SearchFilter(code_prefixes=["H04W12"], jurisdictions=["JP"]),  # a few dozen matches: fewer than k
    SearchFilter(languages=["fr"]),  # matches nothing
]


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def make_corpus(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[PassageFields]]:
    rng = np.random.default_rng(seed)
    ids = rng.choice(10**9, size=n, replace=False).astype(np.int64)
    vectors = unit(rng.normal(size=(n, DIM)))
    fields = []
    for i in range(n):
        dates = [int(rng.integers(2008, 2022)) * 10000 + int(rng.integers(1, 13)) * 100 + 1 for _ in range(3)]
        if rng.random() < 0.1:
            dates[0] = 0  # undated: excluded by any date filter
        n_codes = int(rng.integers(0, 3))
        fields.append(
            PassageFields(
                patent_id=f"P{i // 3}",
                language=str(rng.choice(LANGUAGES)),
                jurisdiction=str(rng.choice(JURISDICTIONS)),
                codes=tuple(str(c) for c in rng.choice(CODES, size=n_codes, replace=False)),
                priority=dates[0],
                filing=dates[1],
                publication=dates[2],
            )
        )
    return ids, vectors, fields


def brute_force(
    ids: np.ndarray, vectors: np.ndarray, fields: list[PassageFields], queries: np.ndarray, k: int,
    flt: SearchFilter | None = None,
) -> list[list[tuple[int, float]]]:  # fmt: skip
    """The reference: every score computed, the filter applied with `SearchFilter.matches`."""
    keep = np.array([flt is None or flt.matches(f) for f in fields], dtype=bool)
    scores = queries @ vectors[keep].T
    kept_ids = ids[keep]
    out = []
    for row in scores:
        order = np.argsort(-row, kind="stable")[:k]
        out.append([(int(kept_ids[j]), float(row[j])) for j in order])
    return out


def assert_same_results(got: list[list[tuple[int, float]]], want: list[list[tuple[int, float]]]) -> None:
    assert [[i for i, _ in row] for row in got] == [[i for i, _ in row] for row in want]
    for g_row, w_row in zip(got, want, strict=True):
        np.testing.assert_allclose([s for _, s in g_row], [s for _, s in w_row], atol=1e-5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----- fixtures: one Milvus Lite server for the whole session, a fresh collection per store ----------


@pytest.fixture(scope="session")
def lite_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    uri = str(tmp_path_factory.mktemp("milvus") / "stores.db")
    keeper = MilvusStore(uri, 4, collection="keeper", index_type="FLAT")  # keeps the server up between tests
    yield uri
    keeper.close()


_names = itertools.count()


@pytest.fixture(params=["faiss", "milvus"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., VectorStore]]:
    """make_store(dim=DIM, name=None, **options) -> a new (or, with the same name, reopened) store."""
    opened: list[Any] = []

    def make(dim: int = DIM, name: str | None = None, **options: Any) -> VectorStore:
        name = name or f"s{next(_names)}"
        if request.param == "faiss":
            store: Any = FaissStore(tmp_path / name, dim, **options)
        else:
            options.setdefault("index_type", "FLAT")
            store = MilvusStore(request.getfixturevalue("lite_uri"), dim, collection=f"t_{name}", **options)
        opened.append(store)
        return store

    make.backend = request.param  # type: ignore[attr-defined]
    yield make
    for store in opened:
        store.close()


@pytest.fixture(scope="module")
def corpus() -> tuple[np.ndarray, np.ndarray, list[PassageFields]]:
    return make_corpus(2000)


# ----- the shared suite ---------------------------------------------------------------------------


def test_upsert_then_search_finds_exact_neighbours(make_store, corpus) -> None:
    ids, vectors, fields = corpus
    store = make_store()
    assert isinstance(store, VectorStore)
    assert store.search(vectors[:2], 5) == [[], []]
    store.upsert(ids, vectors, fields)
    assert store.count() == len(ids)
    queries = unit(vectors[:7] + 0.1)
    got = store.search(queries, 10)
    assert_same_results(got, brute_force(ids, vectors, fields, queries, 10))
    assert all(row[0][1] >= row[-1][1] for row in got)
    assert store.search(vectors[3], 1)[0][0][0] == ids[3]  # a 1-D query is one query
    health = store.health()
    assert health["ok"] is True and health["count"] == len(ids)


def test_filters_agree_with_brute_force(make_store, corpus) -> None:
    ids, vectors, fields = corpus
    store = make_store()
    store.upsert(ids, vectors, fields)
    queries = unit(np.random.default_rng(5).normal(size=(4, DIM)))
    unfiltered = brute_force(ids, vectors, fields, queries, 20)
    for flt in FILTERS:
        want = brute_force(ids, vectors, fields, queries, 20, flt)
        # Negative control: every filter changes the answer, so a store that ignored it would fail.
        assert want != unfiltered, flt
        got = store.search(queries, 20, flt)
        assert_same_results(got, want)
        matching = sum(flt.matches(f) for f in fields)
        assert all(len(row) == min(20, matching) for row in got), flt


def test_replace_and_delete(make_store, corpus) -> None:
    ids, vectors, fields = corpus
    ids, vectors, fields = ids[:300], vectors[:300], fields[:300]
    store = make_store()
    store.upsert(ids, vectors, fields)
    target = int(ids[10])
    moved = unit(-vectors[10:11])
    store.upsert([target], moved, [PassageFields("NEW", language="fr", codes=("Z99Z1/00",))])
    assert store.count() == 300
    assert store.search(moved, 1)[0][0] == (target, pytest.approx(1.0, abs=1e-5))
    assert target not in [i for i, _ in store.search(vectors[10], 5)[0]]
    assert [i for i, _ in store.search(moved, 5, SearchFilter(languages=["fr"]))[0]] == [target]
    assert store.search(moved, 5, SearchFilter(code_prefixes=["Z99"]))[0][0][0] == target
    store.delete([target, int(ids[11]), 123456789012])  # the unknown id is ignored
    assert store.count() == 298
    remaining_ids = np.delete(ids, [10, 11])
    remaining = np.delete(vectors, [10, 11], axis=0)
    got = store.search(vectors[:20], 10)
    want = brute_force(remaining_ids, remaining, [f for j, f in enumerate(fields) if j not in (10, 11)],
                       vectors[:20], 10)  # fmt: skip
    assert_same_results(got, want)
    assert store.search(moved, 5, SearchFilter(languages=["fr"])) == [[]]


def test_results_survive_save_and_reopen(make_store, corpus) -> None:
    ids, vectors, fields = corpus
    store = make_store(name="persist")
    store.upsert(ids, vectors, fields)
    store.delete(ids[:50].tolist())
    store.save()
    flt = SearchFilter(before="2016-01-01", code_prefixes=["H04"])
    before = store.search(vectors[:5], 10), store.search(vectors[:5], 10, flt)
    store.close()
    reopened = make_store(name="persist")
    assert reopened.count() == len(ids) - 50
    assert (reopened.search(vectors[:5], 10), reopened.search(vectors[:5], 10, flt)) == before


def test_bad_input_is_rejected_clearly(make_store, corpus) -> None:
    ids, vectors, fields = corpus
    store = make_store()
    with pytest.raises(InputError):
        store.upsert(ids[:3], vectors[:3, :10], fields[:3])
    with pytest.raises(InputError):
        store.upsert(ids[:3], vectors[:2], fields[:3])
    with pytest.raises(InputError):
        store.upsert(ids[:1], np.full((1, DIM), np.nan, dtype=np.float32), fields[:1])
    with pytest.raises(InputError):
        store.search(vectors[:1], 0)
    with pytest.raises(InputError):
        store.search(vectors[:1, :5], 3)
    store.upsert([7, 7], vectors[:2], fields[:2])  # a repeated id in one batch: the last row wins
    assert store.count() == 1
    assert store.search(vectors[1], 1)[0][0][0] == 7


def test_reopening_with_another_dimension_is_refused(make_store) -> None:
    store = make_store(dim=8, name="dims")
    store.upsert([1], unit(np.ones((1, 8))), [PassageFields("P")])
    store.save()
    with pytest.raises(VectorStoreError, match="8-d"):
        make_store(dim=16, name="dims")


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    """Realistic (clustered) vectors: HNSW recall on iid random vectors says nothing."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(n // 100, 8), dim))
    return unit(centres[rng.integers(0, len(centres), size=n)] + 0.35 * rng.normal(size=(n, dim)))


def recall(got: list[list[tuple[int, float]]], want: list[list[tuple[int, float]]]) -> float:
    pairs = zip(got, want, strict=True)
    return float(np.mean([len({i for i, _ in g} & {i for i, _ in w}) / len(w) for g, w in pairs]))


def test_hnsw_recall_against_exact(make_store) -> None:
    n, dim = 8000, 64
    data = clustered(n + 50, dim, seed=3)
    vectors, queries = data[:n], data[n:]
    ids = np.arange(n, dtype=np.int64) * 7 + 1
    rng = np.random.default_rng(4)
    languages = ["ja" if i % 200 == 0 else "zh" if rng.random() < 0.3 else "en" for i in range(n)]
    fields = [PassageFields(f"P{i}", language=lang) for i, lang in enumerate(languages)]
    if make_store.backend == "faiss":
        # float32 HNSW: its exact fallback must equal brute force (the SQ8 kinds: test_faiss_compressed)
        store = make_store(dim=dim, hnsw_threshold=1000, hnsw_m=16, exact_filter_limit=500, compressed=False)
    else:
        store = make_store(dim=dim, index_type="HNSW", index_params={"M": 16, "efConstruction": 200})
    store.upsert(ids, vectors, fields)
    store.save()
    if make_store.backend == "faiss":
        assert store.kind == "hnsw"
    assert recall(store.search(queries, 10), brute_force(ids, vectors, fields, queries, 10)) >= 0.9
    zh = SearchFilter(languages=["zh"])  # 30% of passages: searched inside HNSW with a selector
    got = store.search(queries, 10, zh)
    assert recall(got, brute_force(ids, vectors, fields, queries, 10, zh)) >= 0.9
    assert all(len(row) == 10 for row in got)
    rare = SearchFilter(languages=["ja"])  # 40 passages: FAISS searches them exactly
    want = brute_force(ids, vectors, fields, queries, 10, rare)
    assert_same_results(store.search(queries, 10, rare), want)
    if make_store.backend == "milvus":  # the exact answer Lite falls back to when its HNSW comes back short
        assert_same_results(store._lite_exact(queries, 10, rare.to_milvus()), want)


# ----- the two stores agree ------------------------------------------------------------------------


def test_exact_search_is_identical_in_faiss_and_milvus(tmp_path: Path, lite_uri: str, corpus) -> None:
    ids, vectors, fields = corpus
    with (
        FaissStore(tmp_path / "f", DIM) as fs,
        MilvusStore(lite_uri, DIM, collection="same", index_type="FLAT") as ms,
    ):
        fs.upsert(ids, vectors, fields)
        ms.upsert(ids, vectors, fields)
        queries = unit(np.random.default_rng(9).normal(size=(6, DIM)))
        for flt in [None, *FILTERS[:6]]:
            assert_same_results(ms.search(queries, 15, flt), fs.search(queries, 15, flt))


# ----- FAISS specifics -----------------------------------------------------------------------------


def test_faiss_filter_columns_agree_with_matches_and_the_side_table_sql(tmp_path: Path, corpus) -> None:
    ids, vectors, fields = corpus
    store = FaissStore(tmp_path / "cols", DIM)
    store.upsert(ids, vectors, fields)
    store.upsert(ids[:5], vectors[:5], [PassageFields("X", language="fr", jurisdiction="cn")] * 5)
    store.delete(ids[5:10].tolist())
    store.save()
    current = dict(zip(ids.tolist(), fields, strict=True))
    current.update(dict.fromkeys(ids[:5].tolist(), PassageFields("X", language="fr", jurisdiction="cn")))
    for i in ids[5:10].tolist():
        del current[i]
    side_table = sqlite3.connect(tmp_path / "cols" / FIELDS_FILE)
    many = [  # more than four wanted codes take numpy's isin instead of equality tests
        SearchFilter(languages=["fr", "zh", "en", "de", "ja", "xx"]),
        SearchFilter(jurisdictions=["CN", "US", "EP", "JP", "KR", "TW", "ZZ"], after="2005-01-01"),
    ]
    for flt in [*FILTERS, SearchFilter(languages=["fr"]), SearchFilter(jurisdictions=["CN"]), *many]:
        want = sorted(i for i, f in current.items() if flt.matches(f))
        assert store.matching_ids(flt).tolist() == want, flt
        where, params = flt.to_sql()
        assert (
            sorted(r[0] for r in side_table.execute(f"SELECT id FROM passages WHERE {where}", params)) == want
        )
    side_table.close()
    store.close()
    reopened = FaissStore(tmp_path / "cols", DIM)  # columns rebuilt from the side table
    assert reopened.matching_ids(FILTERS[7]).tolist() == sorted(
        i for i, f in current.items() if FILTERS[7].matches(f)
    )


def test_allowed_slots_count_and_list_the_mask_at_every_boundary() -> None:
    rng = np.random.default_rng(3)
    for size in (1, 7, 8, 9, 63, 64, 1001):
        mask = rng.random(size) < 0.3
        allowed = AllowedSlots(mask)
        assert allowed.total == mask.sum() and allowed.slots().tolist() == np.flatnonzero(mask).tolist()
        for end in {0, 1, 7, 8, 9, size // 2, size - 1, size, size + 5}:
            assert allowed.count_below(end) == mask[:end].sum(), (size, end)
            assert allowed.slots_below(end).tolist() == np.flatnonzero(mask[:end]).tolist(), (size, end)


def test_faiss_unsaved_changes_are_dropped_consistently_after_a_crash(tmp_path: Path, corpus) -> None:
    ids, vectors, fields = corpus
    store = FaissStore(tmp_path / "crash", DIM)
    store.upsert(ids[:100], vectors[:100], fields[:100])
    store.save()
    store.upsert(ids[100:200], vectors[100:200], fields[100:200])
    # A crash after the vector log was appended and the index file replaced (a merge), but before the
    # side table committed.
    store._recent.persist()
    store._merge_recent()
    faiss.write_index(store._index, str(tmp_path / "crash" / INDEX_FILE))
    store._db.rollback()
    reopened = FaissStore(tmp_path / "crash", DIM)
    assert reopened.count() == 100
    assert reopened.health()["ok"] is True
    got = reopened.search(vectors[100:110], 5)
    assert_same_results(got, brute_force(ids[:100], vectors[:100], fields[:100], vectors[100:110], 5))
    assert reopened.get_fields([int(ids[0]), int(ids[150])]) == {int(ids[0]): fields[0]}
    # The other way round: an older index file beside a newer side table (e.g. restored from backup).
    older = [(tmp_path / "crash" / name).read_bytes() for name in (INDEX_FILE, RECENT_FILE)]
    reopened.upsert(ids[200:300], vectors[200:300], fields[200:300])
    reopened.save()
    reopened.close()
    for name, content in zip((INDEX_FILE, RECENT_FILE), older, strict=True):
        (tmp_path / "crash" / name).write_bytes(content)
    restored = FaissStore(tmp_path / "crash", DIM)
    assert restored.count() == 100 and restored.matching_ids().tolist() == sorted(ids[:100].tolist())
    assert restored.search(vectors[250], 1)[0][0][0] in set(ids[:100].tolist())


def test_faiss_hnsw_compacts_dead_slots_on_save(tmp_path: Path) -> None:
    vectors = clustered(3000, 32, seed=1)
    ids = np.arange(3000)
    store = FaissStore(tmp_path / "h", 32, hnsw_threshold=500, compact_fraction=0.2)
    store.upsert(ids, vectors, [PassageFields(f"P{i}") for i in ids])
    store.save()
    store.delete(ids[:1000].tolist())
    assert (store.kind, store.dead, store.count()) == ("hnsw_sq8", 1000, 2000)
    assert all(i >= 1000 for row in store.search(vectors[:50], 10) for i, _ in row)
    store.save()
    assert (store.kind, store.dead, store.count()) == ("hnsw_sq8", 0, 2000)
    store.close()
    health = store.health()  # closed: reports, never raises
    assert health["ok"] is False


# ----- Milvus that goes away and comes back ---------------------------------------------------------


def test_milvus_down_gives_a_clear_error_and_reconnects(tmp_path: Path) -> None:
    from milvus_lite.adapter.grpc.server import start_server_in_thread

    port = free_port()
    server, db, _ = start_server_in_thread(str(tmp_path / "server"), port=port)
    store = MilvusStore(f"http://127.0.0.1:{port}", 8, collection="remote", index_type="FLAT", timeout_s=2)
    try:
        vectors = unit(np.random.default_rng(0).normal(size=(20, 8)))
        store.upsert(np.arange(20), vectors, [PassageFields(f"P{i}") for i in range(20)])
        store.save()
        assert store.search(vectors[3], 1)[0][0][0] == 3
        server.stop(grace=0)
        db.close()
        start = time.monotonic()
        with pytest.raises(VectorStoreUnavailable, match="unreachable"):
            store.search(vectors[3], 1)
        health = store.health()
        assert health["ok"] is False and "unreachable" in str(health["detail"])
        assert time.monotonic() - start < 10  # no hang
        server, db, _ = start_server_in_thread(str(tmp_path / "server"), port=port)
        assert store.search(vectors[3], 1)[0][0][0] == 3  # reconnected (and reloaded the collection)
        assert store.health()["ok"] is True
    finally:
        store.close()
        server.stop(grace=0)
        db.close()


def test_unreachable_milvus_fails_fast() -> None:
    start = time.monotonic()
    with pytest.raises(VectorStoreUnavailable, match="unreachable"):
        MilvusStore(f"http://127.0.0.1:{free_port()}", 8, timeout_s=2)
    assert time.monotonic() - start < 10


# ----- the factory ---------------------------------------------------------------------------------


def test_open_vector_store_picks_the_backend(tmp_path: Path, lite_uri: str) -> None:
    store = open_vector_store("faiss", tmp_path / "index", 8)
    assert isinstance(store, FaissStore) and store.path == tmp_path / "index" / "faiss"
    store.close()
    settings = Settings(vector_store="vectors.db", index_dir=tmp_path / "my-index")
    lite = open_vector_store(settings, settings.index_dir, 8, index_type="FLAT")
    assert isinstance(lite, MilvusStore) and lite.is_lite
    assert lite.collection == "patentrank_my_index"
    assert Path(lite.uri) == tmp_path / "my-index" / "vectors.db"
    lite.close()
    with pytest.raises(VectorStoreUnavailable):
        open_vector_store(f"http://127.0.0.1:{free_port()}", tmp_path, 8, timeout_s=2)
    with pytest.raises(InputError) as err:
        open_vector_store("redis://nowhere", tmp_path, 8)
    assert err.value.field == "vector_store"
