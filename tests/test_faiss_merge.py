"""FaissStore's background merges (`patentrank/index/faiss_merge.py`): a commit past `recent_limit` returns
without waiting for the graph insertion, commits go on while a merge runs, searches see every vector
exactly once, a failed merge loses nothing, and a process killed mid-merge loses nothing committed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_faiss_compressed import DIM, KINDS, K, N, brute_force, clustered, fields_for, recall

from patentrank.index import faiss_merge
from patentrank.index.faiss_store import FaissStore, VectorStoreError
from patentrank.index.filters import PassageFields

HNSW = KINDS["hnsw_sq8"]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, list[PassageFields], np.ndarray]:
    everything = clustered(N + 40, seed=5)
    return np.arange(N, dtype=np.int64) * 7 + 3, everything[:N], fields_for(N), everything[N:]


def _load(store: FaissStore, ids: np.ndarray, vectors: np.ndarray, fields: list[PassageFields]) -> None:
    for lo in range(0, len(ids), 500):
        store.upsert(ids[lo : lo + 500], vectors[lo : lo + 500], fields[lo : lo + 500])
        store.save()


def _check(
    store: FaissStore, ids: np.ndarray, vectors: np.ndarray, fields: list, queries: np.ndarray
) -> None:
    got = store.search(queries, K)
    assert all(len({i for i, _ in row}) == len(row) for row in got), "a vector was returned twice"
    assert store.count() == len(ids) and store.dead == 0
    assert recall(got, brute_force(ids, vectors, fields, queries, K)) >= 0.95


class _HeldWrite:
    """Holds background merges just before they write the main file, until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reached, self.release = threading.Event(), threading.Event()
        real = faiss_merge.write_index_file

        def held(index: Any, file: Path) -> None:
            if threading.current_thread().name == "faiss-merge":  # save()'s own writes are not held
                self.reached.set()
                assert self.release.wait(60)
            real(index, file)

        monkeypatch.setattr(faiss_merge, "write_index_file", held)


def test_commits_go_on_while_a_merge_runs_and_every_vector_is_found_once(
    tmp_path: Path, data: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids, vectors, fields, queries = data
    held = _HeldWrite(monkeypatch)
    store = FaissStore(tmp_path / "s", DIM, **HNSW, recent_limit=2000)
    _load(store, ids[:3500], vectors[:3500], fields[:3500])  # the conversion to HNSW, then a merge
    assert held.reached.wait(30) and store.merging
    # The merge holds the main index, inserted and not yet written: commits do not wait for it.
    began = time.monotonic()
    _load(store, ids[3500:], vectors[3500:], fields[3500:])
    assert time.monotonic() - began < 20 and store.merging
    assert store.health()["merging"] is True
    held.release.set()
    store.wait_for_merge()
    assert not store.merging
    _check(store, ids, vectors, fields, queries)
    store.close()
    again = FaissStore(tmp_path / "s", DIM, **HNSW)
    _check(again, ids, vectors, fields, queries)
    again.close()


def test_searches_during_merges_return_each_vector_once(tmp_path: Path, data: Any) -> None:
    ids, vectors, fields, queries = data
    store = FaissStore(tmp_path / "s", DIM, **HNSW, recent_limit=400)
    _load(store, ids[:1000], vectors[:1000], fields[:1000])
    stop, seen = threading.Event(), []

    def search_all_along() -> None:
        while not stop.is_set():
            seen.append(store.search(queries[:5], 50))

    searcher = threading.Thread(target=search_all_along)
    searcher.start()
    _load(store, ids[1000:], vectors[1000:], fields[1000:])  # several merges, searched throughout
    stop.set()
    searcher.join()
    store.wait_for_merge()
    assert seen and all(len({i for i, _ in row}) == len(row) for rows in seen for row in rows)
    _check(store, ids, vectors, fields, queries)
    store.close()


def test_a_failed_merge_is_reported_and_loses_nothing(
    tmp_path: Path, data: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids, vectors, fields, queries = data

    real = faiss_merge.write_index_file

    def full_disk(index: Any, file: Path) -> None:
        if threading.current_thread().name != "faiss-merge":
            return real(index, file)
        raise OSError(28, "No space left on device")

    store = FaissStore(tmp_path / "s", DIM, **HNSW, recent_limit=1000)
    _load(store, ids[:1000], vectors[:1000], fields[:1000])
    monkeypatch.setattr(faiss_merge, "write_index_file", full_disk)
    store.upsert(ids[1000:2500], vectors[1000:2500], fields[1000:2500])
    store.save()  # past recent_limit: the merge starts, and fails
    with pytest.raises(VectorStoreError, match=r"background merge .* failed .*No space left"):
        store.wait_for_merge()
    assert (tmp_path / "s" / "vectors.recent.merging").exists()
    monkeypatch.undo()
    _load(store, ids[2500:], vectors[2500:], fields[2500:])
    store.wait_for_merge()
    _check(store, ids, vectors, fields, queries)
    store.close()
    assert not (tmp_path / "s" / "vectors.recent.merging").exists()
    again = FaissStore(tmp_path / "s", DIM, **HNSW)
    _check(again, ids, vectors, fields, queries)
    again.close()


CHILD = """
import sys, threading, time, numpy as np
sys.path.insert(0, {tests!r})
from test_faiss_compressed import DIM, KINDS, N, clustered, fields_for
from patentrank.index import faiss_merge
from patentrank.index.faiss_store import FaissStore
real = faiss_merge.write_index_file
def slow(index, file):
    if threading.current_thread().name != "faiss-merge":
        return real(index, file)
    open({marker!r} + ".merging", "w").close()
    time.sleep(600)  # killed in here: the merge inserted, the main file not written
faiss_merge.write_index_file = slow
everything = clustered(N + 40, seed=5)
ids, vectors, fields = np.arange(N, dtype=np.int64) * 7 + 3, everything[:N], fields_for(N)
store = FaissStore({folder!r}, DIM, **KINDS["hnsw_sq8"], recent_limit=2500)
for lo in range(0, N, 500):
    store.upsert(ids[lo : lo + 500], vectors[lo : lo + 500], fields[lo : lo + 500])
    store.save()
    open({marker!r}, "w").write(str(lo + 500))
time.sleep(600)
"""


def test_a_process_killed_during_a_merge_loses_nothing_committed(tmp_path: Path, data: Any) -> None:
    ids, vectors, fields, queries = data
    folder, marker = tmp_path / "s", tmp_path / "committed"
    code = CHILD.format(tests=str(Path(__file__).parent), marker=str(marker), folder=str(folder))
    child = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        merging = Path(str(marker) + ".merging")  # the merge reached the main file's write
        while time.monotonic() < deadline and not (
            merging.exists() and marker.exists() and marker.read_text() == str(N)
        ):
            assert child.poll() is None, "the child died before it was killed"
            time.sleep(0.05)
        assert merging.exists(), "no merge was running"
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(30)
    assert (folder / "vectors.recent.merging").exists()
    reopened = FaissStore(folder, DIM, **HNSW)
    _check(reopened, ids, vectors, fields, queries)
    reopened.close()
