"""FaissStore's compressed kinds (HNSW over SQ8, IVF over SQ8) and the bands between them, at small
sizes with low thresholds: recall against brute force, filters against `SearchFilter.matches`,
replace/delete, conversion during a bulk load, save/reopen (memory-mapped too), crash recovery, and
files in the format earlier versions wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from patentrank.index import faiss_kinds
from patentrank.index.faiss_store import INDEX_FILE, RECENT_FILE, FaissStore
from patentrank.index.filters import PassageFields, SearchFilter

DIM = 32
N = 6000
K = 100
# Low thresholds so that each band is reached with a few thousand vectors.
KINDS: dict[str, dict[str, Any]] = {
    "hnsw_sq8": {"hnsw_threshold": 500, "ivf_threshold": None, "hnsw_m": 16},
    "ivf_sq8": {"hnsw_threshold": 500, "ivf_threshold": 1000, "nlist": 64, "nprobe": 16},
    "hnsw": {"hnsw_threshold": 500, "compressed": False, "hnsw_m": 16},  # float32 HNSW, the old kind
}
TEN_PERCENT = SearchFilter(languages=["ja"])
UNDER_ONE_PERCENT = SearchFilter(languages=["ko"])


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def clustered(n: int, seed: int) -> np.ndarray:
    """Vectors around n/100 centres: HNSW recall on iid random vectors says nothing."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(n // 100, 8), DIM))
    return unit(centres[rng.integers(0, len(centres), size=n)] + 0.35 * rng.normal(size=(n, DIM)))


def fields_for(n: int, seed: int = 1) -> list[PassageFields]:
    """10% ja, 0.5% ko (30 passages), the rest zh/en; dates and codes for the mixed filters."""
    rng = np.random.default_rng(seed)
    draw = rng.random(n)
    languages = np.where(draw < 0.005, "ko", np.where(draw < 0.105, "ja", np.where(draw < 0.5, "zh", "en")))
    return [
        PassageFields(
            f"P{i // 4}", language=str(lang), jurisdiction="CN" if i % 3 else "US",
            codes=("H04L9/32",) if i % 5 == 0 else ("G06N3/08",), priority=20000101 + (i % 20) * 10000,
        )
        for i, lang in enumerate(languages)
    ]  # fmt: skip


def brute_force(
    ids: np.ndarray, vectors: np.ndarray, fields: list[PassageFields], queries: np.ndarray, k: int,
    flt: SearchFilter | None = None,
) -> list[list[int]]:  # fmt: skip
    keep = np.array([flt is None or flt.matches(f) for f in fields], dtype=bool)
    scores = queries @ vectors[keep].T
    return [ids[keep][np.argsort(-row, kind="stable")[:k]].tolist() for row in scores]


def recall(got: list[list[tuple[int, float]]], want: list[list[int]]) -> float:
    return float(np.mean([len({i for i, _ in g} & set(w)) / len(w) for g, w in zip(got, want, strict=True)]))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, list[PassageFields], np.ndarray]:
    everything = clustered(N + 40, seed=3)
    ids = np.arange(N, dtype=np.int64) * 11 + 5  # ids unlike slots, so a slot/id mix-up shows
    return ids, everything[:N], fields_for(N), everything[N:]


def build(path: Path, kind: str, data: Any, batch: int = 1000, **extra: Any) -> FaissStore:
    ids, vectors, fields, _ = data
    store = FaissStore(path, DIM, **{**KINDS[kind], **extra})
    for lo in range(0, N, batch):
        store.upsert(ids[lo : lo + batch], vectors[lo : lo + batch], fields[lo : lo + batch])
    return store


@pytest.mark.parametrize("kind", list(KINDS))
def test_recall_and_filters_against_brute_force(tmp_path: Path, data: Any, kind: str) -> None:
    ids, vectors, fields, queries = data
    store = build(tmp_path / kind, kind, data)
    assert store.kind == kind
    by_id = dict(zip(ids.tolist(), fields, strict=True))
    mixed = SearchFilter(before="2010-01-01", code_prefixes=["H04L"])
    for flt in (None, TEN_PERCENT, UNDER_ONE_PERCENT, mixed):
        want = brute_force(ids, vectors, fields, queries, K, flt)
        got = store.search(queries, K, flt)
        assert recall(got, want) >= 0.95, (kind, flt)
        matching = sum(flt is None or flt.matches(f) for f in fields)
        assert all(len(row) == min(K, matching) for row in got), flt
        assert all(flt is None or flt.matches(by_id[i]) for row in got for i, _ in row), flt
        assert all(row[j][1] >= row[j + 1][1] for row in got for j in range(len(row) - 1))
        exact = {int(i): float(vectors[j] @ queries[0]) for j, i in enumerate(ids)}
        assert all(abs(s - exact[i]) < 0.03 for i, s in got[0])  # SQ8 scores stay close to exact
    # Negative control: the filtered truth differs from the unfiltered answer, so ignoring the filter
    # (or returning the unfiltered neighbours) fails the recall bar above.
    unfiltered = store.search(queries, K)
    assert recall(unfiltered, brute_force(ids, vectors, fields, queries, K, TEN_PERCENT)) < 0.5


def test_bulk_load_converts_at_each_band_without_waiting_for_save(tmp_path: Path, data: Any) -> None:
    ids, vectors, fields, queries = data
    store = FaissStore(tmp_path / "bands", DIM, **KINDS["ivf_sq8"], recent_limit=300)
    seen = []
    for lo in range(0, N, 250):
        store.upsert(ids[lo : lo + 250], vectors[lo : lo + 250], fields[lo : lo + 250])
        seen.append((store.count(), store.kind))
        assert store.health()["recent"] <= 2 * 300, "upserts without a save keep the float32 part bounded"
    assert [kind for count, kind in seen if count <= 500] == ["flat", "flat"]
    assert {kind for count, kind in seen if 500 < count <= 1000} == {"hnsw_sq8"}
    assert {kind for count, kind in seen if count > 1000} == {"ivf_sq8"}
    assert store.dead == 0 and store.count() == N
    assert recall(store.search(queries, K), brute_force(ids, vectors, fields, queries, K)) >= 0.95
    store.save()
    assert FaissStore(tmp_path / "bands", DIM, **KINDS["ivf_sq8"]).kind == "ivf_sq8"


@pytest.mark.parametrize("kind", ["hnsw_sq8", "ivf_sq8"])
def test_replace_delete_and_compaction(tmp_path: Path, data: Any, kind: str) -> None:
    ids, vectors, fields, queries = data
    store = build(tmp_path / kind, kind, data)
    store.save()  # the first save writes the main index: every vector in it, none recent
    assert store.health()["recent"] == 0
    target = int(ids[10])
    moved = unit(-vectors[10:11])
    store.upsert([target], moved, [PassageFields("NEW", language="fr")])
    assert store.count() == N and store.dead == 1
    assert store.search(moved, 1)[0][0][0] == target
    assert target not in [i for i, _ in store.search(vectors[10], 5)[0]]
    assert [i for i, _ in store.search(moved, 5, SearchFilter(languages=["fr"]))[0]] == [target]
    gone = ids[: N // 4]
    store.delete(gone.tolist())
    assert store.count() == N - len(gone) and store.dead == len(gone) + 1
    rest = slice(N // 4, N)
    want = brute_force(ids[rest], vectors[rest], fields[rest], queries, K)
    got = store.search(queries, K)
    assert not {i for row in got for i, _ in row} & set(gone.tolist())
    assert recall(got, want) >= 0.95
    store.save()  # 25% dead: compacted, same kind
    assert (store.kind, store.dead, store.count()) == (kind, 0, N - len(gone))
    assert recall(store.search(queries, K), want) >= 0.95
    want = brute_force(ids[rest], vectors[rest], fields[rest], queries, K, TEN_PERCENT)
    assert recall(store.search(queries, K, TEN_PERCENT), want) >= 0.95


@pytest.mark.parametrize("kind", ["hnsw_sq8", "ivf_sq8"])
def test_save_and_reopen_memory_mapped(tmp_path: Path, data: Any, kind: str) -> None:
    ids, vectors, _, queries = data
    store = build(tmp_path / kind, kind, data)
    store.delete(ids[:100].tolist())
    store.save()
    before = store.search(queries, K), store.search(queries, K, TEN_PERCENT)
    store.close()
    for mmap in (False, True):
        reopened = FaissStore(tmp_path / kind, DIM, **KINDS[kind], mmap=mmap)
        assert reopened.kind == kind and reopened.count() == N - 100 and reopened.mapped is mmap
        assert (reopened.search(queries, K), reopened.search(queries, K, TEN_PERCENT)) == before
        maps = Path("/proc/self/maps").read_text()
        assert (str(tmp_path / kind / INDEX_FILE) in maps) is mmap, "mmap=True must map the index file"
        assert bool(reopened.health()["mapped"]) is mmap
        if mmap:  # a write goes to the recent vectors: the mapped index stays mapped until a merge
            reopened.upsert([1], vectors[:1], [PassageFields("X")])
            assert reopened.mapped is True and reopened.search(vectors[:1], 1)[0][0][0] == 1
            reopened.save()  # appends to the log only
            assert reopened.mapped is True and reopened.health()["recent"] == 1
            reopened.recent_limit = 0
            reopened.upsert([2], vectors[1:2], [PassageFields("Y")])
            reopened.save()  # a merge reads the index into RAM (adding to a mapped index would abort)
            reopened.wait_for_merge()
            assert reopened.mapped is False and reopened.health()["recent"] == 0
            assert reopened.search(vectors[1:2], 1)[0][0][0] == 2
        reopened.close()
    assert FaissStore(tmp_path / kind, DIM, **KINDS[kind]).count() == N - 98


def test_crash_between_index_write_and_side_table_commit(tmp_path: Path, data: Any) -> None:
    ids, vectors, fields, queries = data
    store = build(tmp_path / "crash", "hnsw_sq8", data)
    store.save()
    extra = clustered(200, seed=9)
    store.upsert(np.arange(200) + 10**9, extra, [PassageFields("LATE")] * 200)
    store._merge_recent()  # a merge into the main index (as past recent_limit)...
    faiss.write_index(store._index, str(tmp_path / "crash" / INDEX_FILE))  # ...written...
    store._db.rollback()  # ...and the process died before the side table committed
    reopened = FaissStore(tmp_path / "crash", DIM, **KINDS["hnsw_sq8"])
    assert reopened.count() == N and reopened.dead == 200  # the orphans are dead slots, never returned
    got = reopened.search(extra[:20], K)
    assert all(i < 10**9 for row in got for i, _ in row)
    assert recall(reopened.search(queries, K), brute_force(ids, vectors, fields, queries, K)) >= 0.95
    reopened.save()  # 200 of 6200 dead: below compact_fraction, kept
    assert FaissStore(tmp_path / "crash", DIM, **KINDS["hnsw_sq8"]).count() == N


@pytest.mark.parametrize("crash", ["log written, side table not", "torn record", "merged, log not removed"])
def test_a_commit_appends_to_the_log_and_survives_a_crash_at_each_step(
    tmp_path: Path, data: Any, crash: str
) -> None:
    ids, vectors, fields, queries = data
    folder = tmp_path / "log"
    store = build(folder, "hnsw_sq8", data)
    store.save()
    main_file, log_file = folder / INDEX_FILE, folder / RECENT_FILE
    written = main_file.stat().st_mtime_ns, main_file.stat().st_size
    extra, extra_ids = clustered(300, seed=9), np.arange(300) + 10**9
    store.upsert(extra_ids[:200], extra[:200], [PassageFields("A")] * 200)
    store.save()  # a small commit: appended to the log, the main index file untouched
    assert (main_file.stat().st_mtime_ns, main_file.stat().st_size) == written
    assert log_file.stat().st_size == 16 + 200 * (8 + 4 * DIM)
    assert store.health()["recent"] == 200 and store.dead == 0
    store.upsert(extra_ids[200:], extra[200:], [PassageFields("B")] * 100)
    committed = 200
    if crash == "log written, side table not":
        store._recent.persist()
        store._db.rollback()
    elif crash == "torn record":
        store._recent.persist()
        store._db.rollback()
        with open(log_file, "rb+") as log:
            log.truncate(log_file.stat().st_size - 50)
    else:
        logged = log_file.read_bytes()
        store.recent_limit = 0
        store.save()  # a background merge writes the main index; "crash" before the log is gone:
        store.wait_for_merge()
        assert not log_file.exists() and not log_file.with_name(log_file.name + ".merging").exists()
        log_file.write_bytes(logged)
        committed = 300
    reopened = FaissStore(folder, DIM, **KINDS["hnsw_sq8"])
    assert reopened.count() == N + committed and reopened.dead == 0  # nothing lost, nothing twice
    assert reopened.health()["recent"] == (200 if committed == 200 else 0)
    if crash == "torn record":
        assert log_file.stat().st_size == 16 + 299 * (8 + 4 * DIM)  # the torn 300th record cut off
    near = [{i for i, _ in row} for row in reopened.search(extra, 5)]
    assert all(int(extra_ids[j]) in near[j] for j in range(committed))  # SQ8 may swap near twins
    assert not set().union(*near) & set(extra_ids[committed:].tolist())  # never committed: never returned
    every = np.concatenate([ids, extra_ids[:committed]])
    truth = brute_force(
        every, np.concatenate([vectors, extra[:committed]]), [*fields] + [PassageFields("A")] * committed,
        queries, K,
    )  # fmt: skip
    assert recall(reopened.search(queries, K), truth) >= 0.95
    lone = unit(-vectors[:1])  # a new passage, unlike the rest
    reopened.upsert([1], lone, [PassageFields("C")])
    reopened.save()
    again = FaissStore(folder, DIM, **KINDS["hnsw_sq8"])
    # A skipped record's slot is never given out again (both records would replay: one vector too many).
    assert again.count() == N + committed + 1 and again.dead == 0
    assert again.search(lone, 1)[0][0][0] == 1


@pytest.mark.parametrize("old_kind", ["flat", "hnsw"])
def test_files_in_the_earlier_format_open_and_convert(tmp_path: Path, data: Any, old_kind: str) -> None:
    ids, vectors, fields, queries = data
    threshold = N if old_kind == "flat" else 500
    old = FaissStore(tmp_path / "old", DIM, hnsw_threshold=threshold, compressed=False, hnsw_m=16)
    old.upsert(ids, vectors, fields)
    old.save()
    old.close()
    head = (tmp_path / "old" / INDEX_FILE).read_bytes()[:41]
    assert head[:4] == b"IxM2" and head[37:41] == (b"IxFI" if old_kind == "flat" else b"IHNf")
    store = FaissStore(tmp_path / "old", DIM, hnsw_threshold=500, ivf_threshold=None, hnsw_m=16)
    assert store.kind == old_kind and store.count() == N
    want = brute_force(ids, vectors, fields, queries, K, TEN_PERCENT)
    assert recall(store.search(queries, K, TEN_PERCENT), want) >= 0.95
    store.upsert(ids[:10], vectors[:10], fields[:10])  # a write: a flat index past the band converts
    assert store.kind == ("hnsw_sq8" if old_kind == "flat" else "hnsw")
    store.delete(ids[: N // 3].tolist())
    store.save()  # the old float HNSW is compacted into the compressed kind
    assert store.kind == "hnsw_sq8" and store.dead == 0
    rest = slice(N // 3, N)
    want = brute_force(ids[rest], vectors[rest], fields[rest], queries, K)
    assert recall(store.search(queries, K), want) >= 0.95


@pytest.mark.parametrize("kind", ["hnsw_sq8", "hnsw"])
def test_brute_force_over_gathered_codes_equals_faiss_own(
    data: Any, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids, vectors, _, queries = data
    if kind == "hnsw_sq8":
        inner = faiss.IndexHNSWSQ(DIM, faiss.ScalarQuantizer.QT_8bit, 16, faiss.METRIC_INNER_PRODUCT)
        inner.train(vectors)
    else:
        inner = faiss.IndexHNSWFlat(DIM, 16, faiss.METRIC_INNER_PRODUCT)
    index = faiss.IndexIDMap(inner)
    index.add_with_ids(vectors, ids)
    monkeypatch.setattr(faiss_kinds, "DECODE_BLOCK", 256)  # several blocks, so their merge is tested
    rng = np.random.default_rng(5)

    def both(positions: np.ndarray, k: int) -> tuple[Any, Any]:
        mask = np.zeros(index.ntotal, dtype=bool)
        mask[positions] = True
        theirs = faiss_kinds.search_all_codes(index, queries, k, np.packbits(mask, bitorder="little"))
        return faiss_kinds.search_codes_at(index, queries, k, positions), theirs

    def agree(mine: Any, theirs: Any) -> bool:
        (scores, found), (their_scores, their_found) = mine, theirs
        real = their_found >= 0  # FAISS pads short rows with -1 and -FLT_MAX; we pad with -1 and -inf
        close = np.abs(np.where(real, scores - their_scores, 0)) < 1e-5
        # Ranks may swap only between scores that tie within float rounding (BLAS vs FAISS's kernel).
        return bool(close.all() and (found[~real] == -1).all() and (close | (found == their_found)).all())

    for size, k in ((0, 10), (7, 10), (150, 100), (3000, 100), (N, 10)):
        positions = np.sort(rng.choice(N, size, replace=False))
        mine, theirs = both(positions, k)
        assert agree(mine, theirs), (kind, size, k)
        assert ((mine[1] >= 0).sum(axis=1) == min(k, size)).all()
    # Negative control: a set one position off gives other neighbours, so the comparison can fail.
    positions = np.sort(rng.choice(N - 1, 3000, replace=False))
    mine, theirs = both(positions, 100)
    assert not agree(faiss_kinds.search_codes_at(index, queries, 100, positions + 1), theirs)
