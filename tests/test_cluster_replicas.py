"""Cluster mode with real processes: one `milvus-lite server` and `patentrank serve` replicas that keep
the whole index in it (`PATENTRANK_INDEX_DIR=<milvus uri>`), with nothing written to their own disks.

Ingest on one replica, search and delete on another; concurrent overlapping ingests; a replica killed
(SIGKILL) mid-ingest; Milvus stopped and restarted under a running replica, and a replica started
while Milvus is down. The replicas are lexical-only (no models): dense search is not the point here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from functools import partial
from itertools import combinations
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from patentrank.chunking import DEFAULT_MAX_TOKENS, approx_tokens, patent_passages
from patentrank.corpus import load_patents, patent_from_record, sample_corpus_path
from patentrank.server.testing import MilvusLiteServer, free_port

pytest.importorskip("pymilvus", reason="pymilvus is not installed (pip install -e '.[milvus]')")
pytest.importorskip("milvus_lite", reason="milvus-lite is not installed (pip install -e '.[milvus]')")

pytestmark = pytest.mark.slow

QUERIES = (
    "waste heat boiler",
    "lithium battery negative electrode",
    "图像去噪",
    "gear transmission vibration",
)
SAMPLE = [orjson.loads(line) for line in sample_corpus_path().read_bytes().splitlines() if line.strip()]


class Replica:
    """One `patentrank serve` process in its own working folder, lexical only, on a free port."""

    def __init__(self, root: Path, name: str, uri: str, prefix: str, env: dict[str, str]) -> None:
        self.name, self.workdir = name, root / name
        self.workdir.mkdir(parents=True)
        self.log = root / f"{name}.log"  # outside the working folder, which must stay empty
        self.url = f"http://127.0.0.1:{free_port()}"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PATENTRANK_")}
        env = {
            **clean, "HF_HUB_OFFLINE": "1", "PATENTRANK_INDEX_DIR": uri, "PATENTRANK_MILVUS_PREFIX": prefix,
            "PATENTRANK_EMBEDDER_MODEL": "none", "PATENTRANK_RERANKER_MODEL": "none", **env,
        }  # fmt: skip
        command = [sys.executable, "-m", "patentrank", "serve", "--port", self.url.rsplit(":", 1)[1],
                   "--no-ui", "--log-level", "warning"]  # fmt: skip
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, cwd=self.workdir, env=env, stdout=log, stderr=log)

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.process.poll() is None, f"{self.name} exited: {self.log.read_text()}"
            try:
                httpx.get(f"{self.url}/health", timeout=5)
                return
            except httpx.TransportError:
                assert time.monotonic() < deadline, f"{self.name} did not come up: {self.log.read_text()}"
                time.sleep(0.2)

    def search(self, query: str, **options: Any) -> httpx.Response:
        body = {"query": query, "mode": "lexical", "rerank": False, "top_n": 10, **options}
        return httpx.post(f"{self.url}/v1/search", json=body, timeout=60)

    def ids(self, query: str, **options: Any) -> list[str]:
        response = self.search(query, **options)
        assert response.status_code == 200, response.text
        return [hit["patent_id"] for hit in response.json()["results"]]

    def ingest(self, records: list[dict[str, Any]], timeout_s: float = 300) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/v1/patents", json={"patents": records}, timeout=timeout_s)
        assert response.status_code == 200, response.text
        return response.json()

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/health", timeout=30).json()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture(scope="module")
def milvus(tmp_path_factory: pytest.TempPathFactory):
    with MilvusLiteServer(tmp_path_factory.mktemp("milvus") / "data") as server:
        yield server


@pytest.fixture
def start(tmp_path: Path):
    """start(uri, prefix, *names, **env) -> started replicas, each ready; all stopped at the end, and
    then none may have written an index folder (docs.sqlite, bm25, the default .patentrank/index)."""
    started: list[Replica] = []

    def start(uri: str, prefix: str, *names: str, wait: bool = True, **env: str) -> list[Replica]:
        new = [Replica(tmp_path, name, uri, prefix, env) for name in names]
        started.extend(new)
        for replica in new if wait else ():
            replica.wait_ready()
        return new

    yield start
    for replica in started:
        replica.stop()
    for replica in started:
        written = [p for p in replica.workdir.rglob("*") if p.name in ("docs.sqlite", "bm25", ".patentrank")]
        assert not written and not (replica.workdir / ".patentrank" / "index").exists(), written


def milvus_rows(
    uri: str, kind: str, patent_ids: list[str], fields: list[str], only: bool = True
) -> list[dict[str, Any]]:
    """Rows of these patents in `kind`, read with pymilvus directly (with `only`: and there are no others)."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri, timeout=30, dedicated=True)
    where = "part == 0" if kind.endswith("_patents") else "ordinal >= 0"
    try:
        rows: list[dict[str, Any]] = []
        for start in range(0, len(patent_ids), 500):
            chunk = orjson.dumps(patent_ids[start : start + 500]).decode()
            rows += client.query(kind, filter=f"patent_id in {chunk} and {where}", output_fields=fields,
                                 consistency_level="Strong")  # fmt: skip
        total = client.query(kind, filter=where, output_fields=["count(*)"], consistency_level="Strong")
        assert not only or total[0]["count(*)"] == len(rows), f"{kind} holds rows of other patents"
        return rows
    finally:
        client.close()


def assert_consistent(
    uri: str, prefix: str, final: dict[str, dict[str, Any] | None], only: bool = True
) -> None:
    """Each patent of `final` (id -> its last written record, or None) committed exactly once (with
    `only`, and no other patent); every stored passage belongs to its patent's committed version, and
    that version's passages are complete: ordinals 0..n-1, n what the record chunks into."""
    ids = list(final)
    commits = milvus_rows(uri, f"{prefix}_patents", ids, ["patent_id", "version"], only)
    twice = [pid for pid, n in Counter(r["patent_id"] for r in commits).items() if n > 1]
    assert not twice and len(commits) == len(ids), f"not each patent once: {twice[:5]}, {len(commits)}"
    committed = {r["patent_id"]: r["version"] for r in commits}
    passages = milvus_rows(uri, f"{prefix}_passages", ids, ["patent_id", "version", "ordinal"], only)
    orphans = [r for r in passages if committed.get(r["patent_id"]) != r["version"]]
    assert not orphans, f"{len(orphans)} passages of uncommitted versions, e.g. {orphans[:3]}"
    ordinals: dict[str, list[int]] = defaultdict(list)
    for row in passages:
        ordinals[row["patent_id"]].append(row["ordinal"])
    for pid, record in final.items():
        n = len(ordinals[pid]) if record is None else passage_count(record)
        assert n and sorted(ordinals[pid]) == list(range(n)), pid


def passage_count(record: dict[str, Any]) -> int:
    """How many passages a record chunks into (as `ClusterIndex.passages_for`)."""
    return len(patent_passages(patent_from_record(record), approx_tokens, DEFAULT_MAX_TOKENS))


def synthetic(prefix: str, n: int, shared: str) -> list[dict[str, Any]]:
    """`n` small English patents, each with a unique word (`word(prefix, i)`) and the word `shared`."""
    topics = ("valve", "gearbox", "electrode", "antenna", "sensor", "turbine", "membrane", "circuit")
    records = []
    for i in range(n):
        topic, other = topics[i % 8], topics[(i * 3 + 1) % 8]
        records.append({
            "id": f"{prefix.upper()}-{i:05d}", "language": "en",
            "title": f"{topic.title()} assembly with {other} control {word(prefix, i)}",
            "abstract": f"A {topic} assembly {shared} comprising a housing, a {other} and a controller "
                        f"that regulates the {topic} in response to a measured load. " * 3,
            "claims": [f"A {topic} assembly comprising a housing and a {other}.",
                       f"The assembly of claim 1, wherein the {other} is driven by the controller."],
            "description": f"The {topic} of this example is made of steel and coupled to the {other}. " * 40,
            "codes": ["F16K1/00"] if i % 2 else ["H01M4/00"], "publication_date": "2020-01-01",
        })  # fmt: skip
    return records


def word(prefix: str, i: int) -> str:
    """A letters-only word unique to patent `i` (the analyzer keeps it whole)."""
    letters = "".join("abcdefghijklmnopqrstuvwxyz"[int(d)] for d in f"{i:05d}")
    return f"{prefix}q{letters}"


def at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls in threads released together; their results (or the first exception, raised)."""
    barrier, results = threading.Barrier(len(calls)), [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # raised below, in the test's thread
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def test_ingest_on_one_replica_search_and_delete_on_the_other(milvus, start, tmp_path: Path) -> None:
    from patentrank.index.patent_index import PatentIndex
    from patentrank.search import SearchPipeline, SearchRequest

    a, b = start(milvus.uri, "basic", "a", "b")
    report = a.ingest(SAMPLE)
    assert report["added"] == len(SAMPLE) and report["index"]["patents"] == len(SAMPLE), report
    assert report["index"]["backend"] == "milvus"

    # The embedded index's BM25 (tantivy) keeps document lengths on one byte (lexical.py): scores agree
    # within that rounding, so only near ties may swap; the top 10 are the same patents.
    embedded = PatentIndex(tmp_path / "embedded")
    embedded.add(load_patents(sample_corpus_path()))
    pipeline = SearchPipeline(embedded)
    for query in QUERIES:
        hits = pipeline.search(SearchRequest(query, mode="lexical", rerank=False, top_n=10)).results
        expected = {h.patent_id: h.score for h in hits}
        on_a, on_b = (r.search(query).json()["results"] for r in (a, b))
        assert on_a == on_b and on_a, query  # same index, same answer, scores and passages included
        assert {h["patent_id"] for h in on_a} == set(expected), query
        assert all(h["score"] == pytest.approx(expected[h["patent_id"]], rel=0.15) for h in on_a), query
        ranked = [h["patent_id"] for h in on_a]
        swapped = [(x, y) for x, y in combinations(ranked, 2) if expected[x] < 0.9 * expected[y]]
        assert not swapped, (query, swapped)  # x above y here, far below it in the embedded index
    embedded.close()

    victim = b.ids(QUERIES[0])[0]
    passages_before = b.health()["index"]["docstore"]["passages"]
    victim_passages = len(httpx.get(f"{a.url}/v1/patents/{victim}", timeout=30).json()["passages"])
    deleted = httpx.delete(f"{b.url}/v1/patents/{victim}", timeout=30)
    assert deleted.status_code == 200 and deleted.json() == {"id": victim, "deleted": True}
    assert victim not in a.ids(QUERIES[0], top_n=50)
    assert httpx.get(f"{a.url}/v1/patents/{victim}", timeout=30).status_code == 404
    for replica in (a, b):
        health = replica.health()
        assert health["status"] == "ok", health
        docstore = health["index"]["docstore"]
        assert docstore["ok"] and docstore["backend"] == "milvus" and "Milvus" in docstore["detail"]
        assert health["index"]["lexical"]["ok"] and health["index"]["lexical"]["engine"] == "milvus"
        assert docstore["patents"] == len(SAMPLE) - 1
        assert docstore["passages"] == passages_before - victim_passages
    final = {r["id"]: r for r in SAMPLE if r["id"] != victim}
    assert_consistent(milvus.uri, "basic", final)


def test_concurrent_overlapping_ingests_leave_one_consistent_version(milvus, start) -> None:
    a, b = start(milvus.uri, "race", "a", "b")
    markers = {"a": ("quokkalite", "numbatite", "wombatite"), "b": ("dingoclase", "emuclase", "kiwiclase")}
    overlap = {r["id"] for r in SAMPLE[15:36]}
    filler: dict[str, dict[str, Any]] = {}

    def send(replica: Replica, round_: int, slow: bool, delay_s: float) -> dict[str, Any]:
        """The replica's part of the sample, its text on the overlap; `slow`: with 220 more patents in
        the same batch, so its version (taken first) commits after a later, faster one."""
        records = SAMPLE[:36] if replica is a else SAMPLE[15:]
        marker = markers[replica.name][round_]
        records = [
            {**r, "abstract": f"{r['abstract']} {marker}"} if r["id"] in overlap else r for r in records
        ]
        if slow:
            extra = synthetic(f"fill{replica.name}", 220, ("roundzero", "roundone", "roundtwo")[round_])
            filler.update((r["id"], r) for r in extra)
            records += extra
        time.sleep(delay_s)
        return replica.ingest(records)

    # Rounds 0 and 1: the slow replica takes its version first and (most runs) commits after the other's
    # newer one, the case of step 4 in index.py; round 2 side by side. Checked after every round, as a
    # later round repairs what an earlier one left.
    for round_, (slow, late) in enumerate(((a, b), (b, a), (None, None))):
        report_a, report_b = at_once(
            *(partial(send, r, round_, r is slow, 0.6 if r is late else 0.0) for r in (a, b))
        )
        assert report_a["committed"] == 36 + 220 * (slow is a)
        assert report_b["committed"] == len(SAMPLE) - 15 + 220 * (slow is b)
        assert_consistent(milvus.uri, "race", dict.fromkeys([*(r["id"] for r in SAMPLE), *filler]))

    final: dict[str, dict[str, Any]] = {**{r["id"]: r for r in SAMPLE}, **filler}
    winners: dict[str, list[str]] = defaultdict(list)
    for pid in sorted(overlap):
        stored = httpx.get(f"{b.url}/v1/patents/{pid}", timeout=30).json()
        won = [m for m in (markers["a"][-1], markers["b"][-1]) if stored["abstract"].endswith(f" {m}")]
        assert len(won) == 1, (pid, stored["abstract"][-40:])
        winners[won[0]].append(pid)
        final[pid] = {**final[pid], "abstract": stored["abstract"]}
    assert_consistent(milvus.uri, "race", final)
    for replica in (a, b):
        for marker in markers["a"] + markers["b"]:  # only the final versions' words are found
            found = replica.ids(marker, top_n=100, collapse=False)
            assert sorted(found) == sorted(winners.get(marker, [])), (replica.name, marker)


def test_a_replica_killed_mid_ingest_loses_nothing_acknowledged(milvus, start) -> None:
    a, b = start(milvus.uri, "kill", "a", "b", PATENTRANK_MAX_INPUTS="10000")
    early = synthetic("early", 200, "earlyshared")
    a.ingest(SAMPLE)
    assert a.ingest(early)["committed"] == len(early)
    acknowledged = len(SAMPLE) + len(early)
    big = synthetic("big", 1500, "bigshared")  # 6 batches of 256
    outcome: dict[str, Any] = {}

    def send() -> None:
        try:
            outcome["response"] = httpx.post(f"{a.url}/v1/patents", json={"patents": big}, timeout=300)
        except httpx.TransportError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=send)
    thread.start()
    deadline = time.monotonic() + 240
    while b.health()["index"]["docstore"].get("patents", 0) <= acknowledged:  # A committed a batch of big
        assert thread.is_alive() and time.monotonic() < deadline, "the big ingest ended before the kill"
        time.sleep(0.05)
    os.kill(a.process.pid, signal.SIGKILL)
    thread.join(60)
    assert "response" not in outcome and isinstance(outcome.get("error"), httpx.TransportError), outcome
    assert a.process.wait(10) == -signal.SIGKILL
    assert_consistent(milvus.uri, "kill", {r["id"]: r for r in [*SAMPLE, *early]}, only=False)

    found = b.ids("earlyshared", top_n=1000, retrieve_k=2000, collapse=False)
    assert sorted(found) == sorted(r["id"] for r in early)
    for i in (0, 137, 199):
        assert b.ids(word("early", i), collapse=False) == [early[i]["id"]]
    assert all(b.ids(query) for query in QUERIES)
    committed_by_a = b.health()["index"]["docstore"]["patents"] - acknowledged
    assert 0 < committed_by_a < len(big)

    report = b.ingest(big)
    assert report["unchanged"] == committed_by_a and report["added"] == len(big) - committed_by_a, report
    assert report["index"]["patents"] == acknowledged + len(big)
    assert_consistent(milvus.uri, "kill", {r["id"]: r for r in [*SAMPLE, *early, *big]})
    for i in (0, 750, 1499):
        assert b.ids(word("big", i), collapse=False) == [big[i]["id"]]


def test_milvus_down_is_a_quick_503_and_replicas_recover_without_restart(start, tmp_path: Path) -> None:
    milvus = MilvusLiteServer(tmp_path / "milvus-faults").start()
    try:
        (b,) = start(milvus.uri, "faults", "b")
        b.ingest(SAMPLE)
        before = {query: b.ids(query) for query in QUERIES}
        milvus.stop()

        for _ in range(2):  # the call that finds the connection broken, then a fresh connect
            began = time.monotonic()
            response = b.search(QUERIES[0])
            assert time.monotonic() - began < 10
            assert response.status_code == 503 and response.headers.get("Retry-After"), response.text
            assert "Milvus" in response.json()["error"]["message"]
        began = time.monotonic()
        health = b.health()
        assert time.monotonic() - began < 10
        assert health["status"] == "degraded" and "index" in health["failed"], health
        assert (
            health["index"]["docstore"]["ok"] is False and "Milvus" in health["index"]["docstore"]["detail"]
        )

        (c,) = start(milvus.uri, "faults", "c")  # a replica started while Milvus is down
        response = c.search(QUERIES[0])
        assert response.status_code == 503 and "Milvus" in response.json()["error"]["message"], response.text

        milvus.start()  # same folder, same port
        for replica in (b, c):
            deadline = time.monotonic() + 20
            while (response := replica.search(QUERIES[0])).status_code != 200:
                assert response.status_code == 503 and time.monotonic() < deadline, response.text
                time.sleep(0.2)
            assert {query: replica.ids(query) for query in QUERIES} == before, replica.name
            assert replica.health()["status"] == "ok"
    finally:
        milvus.stop()
