"""`ClusterIndex` writes against a real `milvus-lite server`: idempotence, updates, deletes, long records,
writes interrupted at each step, concurrent writers, and Milvus going away and coming back. Rows are
counted in the collections directly (pymilvus), not through the index's own reads."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

pytest.importorskip("pymilvus", reason="pymilvus is not installed (pip install -e '.[milvus]')")
pytest.importorskip("milvus_lite", reason="milvus-lite is not installed (pip install -e '.[milvus]')")

from pymilvus import MilvusClient

from patentrank.corpus import Patent
from patentrank.index.cluster.connection import ClusterUnavailable
from patentrank.index.cluster.index import ClusterIndex
from patentrank.index.cluster.reads import ClusterVectors
from patentrank.index.cluster.schema import head_row, row_id, split_record
from patentrank.index.cluster.versions import CLAIM_PART, STALE_CLAIM_S, claim_row, record_rows
from patentrank.index.docstore_rows import content_hash
from patentrank.search import SearchPipeline, SearchRequest
from patentrank.server.testing import MilvusLiteServer


@pytest.fixture(scope="module")
def milvus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusLiteServer]:
    if MilvusLiteServer.binary() is None:
        pytest.skip("the milvus-lite command is not installed")
    with MilvusLiteServer(tmp_path_factory.mktemp("milvus")) as server:
        yield server


@pytest.fixture(scope="module")
def raw(milvus: MilvusLiteServer) -> Iterator[MilvusClient]:
    client = MilvusClient(milvus.uri)
    yield client
    client.close()


def rows(
    raw: MilvusClient, prefix: str, kind: str, patent_id: str, fields: list[str]
) -> list[dict[str, Any]]:
    return raw.query(f"{prefix}_{kind}", filter=f'patent_id == "{patent_id}"', output_fields=fields,
                     consistency_level="Strong")  # fmt: skip


def versions(raw: MilvusClient, prefix: str, patent_id: str) -> dict[str, Counter[int]]:
    """Rows of one patent by version: commit marks (part 0), record parts, claims (part -1), the head
    (the version it names), passages."""
    parts = rows(raw, prefix, "patents", patent_id, ["version", "part"])
    heads = raw.get(f"{prefix}_heads", [patent_id], consistency_level="Strong")
    return {
        "committed": Counter(r["version"] for r in parts if r["part"] == 0),
        "parts": Counter(r["version"] for r in parts if r["part"] >= 0),
        "claims": Counter(r["version"] for r in parts if r["part"] == CLAIM_PART),
        "heads": Counter(r["version"] for r in heads),
        "passages": Counter(r["version"] for r in rows(raw, prefix, "passages", patent_id, ["version"])),
    }


def only_version(
    raw: MilvusClient,
    prefix: str,
    index: ClusterIndex,
    patent: Patent,
    claims_left: tuple[int, ...] = (),
    head_may_name_a_removed_version: bool = False,
) -> int:
    """Assert that `patent` is stored as exactly one committed version with exactly its rows (and the
    claims of `claims_left`: uncommitted versions of killed writers, kept until they are stale), and
    that its head names that version. Racing writers may leave the head naming a version they removed
    (one's late repair after the other's check): readers then scan, as the reads below check."""
    found = versions(raw, prefix, patent.id)
    (version,) = found["committed"]
    parts = len(split_record(orjson.dumps(patent.to_dict()).decode()))
    assert found["parts"] == Counter({version: parts}), found
    assert found["claims"] == Counter({version: 1, **dict.fromkeys(claims_left, 1)}), found
    if head_may_name_a_removed_version:
        assert sum(found["heads"].values()) == 1, found  # this version, or one without part 0
    else:
        assert found["heads"] == Counter({version: 1}), found
    assert found["passages"] == Counter({version: len(index.passages_for(patent))}), found
    assert index.docstore.get_patent(patent.id) == patent
    assert [p.text for p in index.docstore.passages_of(patent.id)] == [
        p.text for p in index.passages_for(patent)
    ]
    return version


def make(i: int, tag: str, description: str | None = None) -> Patent:
    claims = [f"A gearbox comprising a {tag}word{i} shaft.", "A method of lubricating a gear."]
    return Patent(id=f"EP{3000000 + i}B1", title=f"Gearbox {tag}word{i}", abstract=f"A {tag}word gearbox.",
                  claims=claims, description=description, language="en")  # fmt: skip


def lexical_ids(index: ClusterIndex, query: str) -> list[str]:
    request = SearchRequest(query, mode="lexical", rerank=False, top_n=50, collapse=False)
    return [r.patent_id for r in SearchPipeline(index).search(request).results]


def test_re_add_update_and_delete(milvus: MilvusLiteServer, raw: MilvusClient) -> None:
    index = ClusterIndex(milvus.uri, prefix="writes")
    patents = [make(i, "alpha") for i in range(6)]
    report = index.add(patents, batch_size=4)
    expected = sum(len(index.passages_for(p)) for p in patents)
    assert (report.added, report.committed, report.passages_written) == (6, 6, expected)
    first = {p.id: only_version(raw, "writes", index, p) for p in patents}
    again = index.add(patents)
    assert (again.unchanged, again.added, again.updated, again.passages_written) == (6, 0, 0, 0)
    assert {p.id: only_version(raw, "writes", index, p) for p in patents} == first  # nothing rewritten

    new = make(2, "omega", description="The omegaword shaft.\nThe lubricant omegaword bath.")
    report = index.add([new])
    assert (report.updated, report.added, report.unchanged) == (1, 0, 0)
    assert only_version(raw, "writes", index, new) > first[new.id]
    assert lexical_ids(index, "alphaword2") == [] and lexical_ids(index, "omegaword") == [new.id]
    assert index.lexical.search("alphaword2", 10) == []  # the old rows are gone, not just hidden
    current = [*patents[:2], new, *patents[3:]]
    stats = index.stats()
    assert (stats["patents"], stats["passages"]) == (6, sum(len(index.passages_for(p)) for p in current))

    assert index.delete([patents[0].id, patents[1].id, "EP999B1"]) == [patents[0].id, patents[1].id]
    for patent in patents[:2]:
        assert not any(versions(raw, "writes", patent.id).values())  # not even its head
        assert index.docstore.get_patent(patent.id) is None and index.docstore.passages_of(patent.id) == []
    assert lexical_ids(index, "alphaword0 alphaword1") == []
    assert index.delete([patents[0].id]) == []
    stats = index.stats()
    assert (stats["patents"], stats["passages"]) == (4, sum(len(index.passages_for(p)) for p in current[2:]))
    index.close()


def test_long_records_and_a_patent_repeated_in_one_batch(milvus: MilvusLiteServer, raw: MilvusClient) -> None:
    index = ClusterIndex(milvus.uri, prefix="long")
    lines = [f"第{i}段：一种减速器的润滑油路，油泵将润滑油送至齿轮啮合处。Paragraph {i} of the gearbox." * 4
             for i in range(800)]  # fmt: skip
    long = make(1, "long", description="\n".join(lines))
    assert len(long.description.encode()) > 200_000
    index.add([long])
    assert len(split_record(orjson.dumps(long.to_dict()).decode())) >= 4
    only_version(raw, "long", index, long)  # every part, in order, and every passage
    shorter = make(1, "long", description="\n".join(lines[:100]))
    index.add([shorter])
    only_version(raw, "long", index, shorter)  # the longer record's extra parts are gone
    variants = [make(2, tag) for tag in ("one", "two", "three")]
    report = index.add(variants)
    assert (report.added, report.committed) == (1, 1)
    only_version(raw, "long", index, variants[-1])
    assert lexical_ids(index, "oneword2 twoword2") == [] and lexical_ids(index, "threeword2") == [
        variants[2].id
    ]
    index.close()


def test_a_bulk_ingest_checks_each_batch_with_the_next_ones_query_before_acknowledging_it(
    milvus: MilvusLiteServer, raw: MilvusClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = ClusterIndex(milvus.uri, prefix="bulk")
    index.add([make(i, "old") for i in range(7)])
    queries: list[list[str]] = []
    versions_of = index._versions
    monkeypatch.setattr(index, "_versions", lambda ids: queries.append(list(ids)) or versions_of(ids))

    new = [make(i, "new") for i in range(7)]
    again = make(5, "newer")  # patent 5 in the next batch too, checked by the query that lists it again
    stream = [*new[:6], again, new[6], new[2]]  # batches of 3; new[2] comes back unchanged

    def acknowledged(committed: int) -> None:  # the batch's step 3 ran: its patents' old versions are gone
        for patent in stream[:committed]:
            assert len(versions(raw, "bulk", patent.id)["committed"]) == 1, (committed, patent.id)

    report = index.add(stream, batch_size=3, on_commit=acknowledged)
    assert len(queries) == 4  # one per batch, and one for the last: was two per batch
    assert set(queries[1]) == {p.id for p in new[:6]}
    assert (report.updated, report.unchanged, report.committed) == (8, 1, 9)
    for patent in [*new[:5], again, new[6]]:
        only_version(raw, "bulk", index, patent)
    index.close()


def test_reads_go_by_primary_key_and_fall_back_to_a_scan_where_a_head_is_missing_or_wrong(
    milvus: MilvusLiteServer, raw: MilvusClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = ClusterIndex(milvus.uri, prefix="heads")
    filler = "\n".join(f"Bearing paragraph {i} about the housing and the seals." for i in range(1500))
    patents = [make(i, "head", filler) for i in range(4)]  # records in several parts
    index.add(patents)
    expressions: list[str] = []
    query = index._reader.query
    spy = lambda kind, expr, *rest: expressions.append(expr) or query(kind, expr, *rest)  # noqa: E731
    monkeypatch.setattr(index._reader, "query", spy)

    def reads(patent: Patent) -> list[str]:
        expressions.clear()
        assert index.docstore.get_patent(patent.id) == patent
        assert [p.text for p in index.docstore.passages_of(patent.id)] == [
            p.text for p in index.passages_for(patent)
        ]
        assert lexical_ids(index, patent.title.split()[1]) == [patent.id]  # "headword0" ...
        return [e for e in expressions if not e.startswith(("key in", "id in"))]

    assert reads(patents[0]) == []  # every read by primary key
    raw.delete("heads_heads", ids=[patents[1].id])  # as an index written before heads
    assert any("patent_id in" in e for e in reads(patents[1]))  # the control: a scan, same answers
    assert index.add([patents[1]]).unchanged == 1  # re-sending it writes the head back
    assert reads(patents[1]) == [] and only_version(raw, "heads", index, patents[1])

    old = only_version(raw, "heads", index, patents[2])
    newer = make(2, "newer", filler)
    newest = index._next_version()
    write_rows(index, newer, newest, commit=True)  # its writer killed after committing ...
    index._upsert("heads", [head_row(newer.id, old)])
    assert index.docstore.get_patent(newer.id) == patents[2]  # ... and an older writer's late head
    assert index.add([newer]).unchanged == 1  # the next write of the patent repairs it
    assert only_version(raw, "heads", index, newer) == newest and reads(newer) == []

    index._upsert("heads", [head_row(patents[3].id, 12345)])  # naming a removed version
    assert index.docstore.get_patent(patents[3].id) == patents[3]  # the scan finds the stored one
    assert any("patent_id in" in e for e in reads(patents[3]))
    index.close()


def write_rows(index: ClusterIndex, patent: Patent, version: int, *, commit: bool) -> None:
    """What `add` writes for one version, without its clean-up: a writer killed before (commit=False:
    claim, later record parts and passages, no part 0) or after the commit mark."""
    passages = index.passages_for(patent)
    digest = content_hash(patent, passages)
    rows = index._passage_rows([patent], {patent.id: passages}, None)
    parts = record_rows(patent, digest, version, len(passages))
    assert len(parts) >= 2
    index._upsert("patents", [claim_row(patent.id, version, len(parts), len(passages), digest), *parts[1:]])
    for row in rows:
        row["id"], row["version"] = row_id(patent.id, version, row["ordinal"]), version
    index._upsert("passages", rows)
    if commit:  # as `_write_version` commits: the head, then part 0
        index._upsert("heads", [head_row(patent.id, version)])
        index._upsert("patents", parts[:1])


def test_interrupted_writes_are_invisible_and_the_next_write_cleans_up(
    milvus: MilvusLiteServer, raw: MilvusClient
) -> None:
    index = ClusterIndex(milvus.uri, prefix="crash")
    filler = "\n".join(f"Bearing paragraph {i} about the housing and the seals." for i in range(1500))
    v1, other = make(0, "first", filler), make(1, "other")
    index.add([v1, other])
    first = only_version(raw, "crash", index, v1)

    v2 = make(0, "second", filler)  # killed before its commit mark
    orphan = index._next_version()
    write_rows(index, v2, orphan, commit=False)
    assert versions(raw, "crash", v1.id)["passages"].keys() == {first, orphan}
    assert index.docstore.get_patent(v1.id) == v1 and index.stats()["patents"] == 2
    assert [p.text for p in index.docstore.passages_of(v1.id)] == [p.text for p in index.passages_for(v1)]
    assert lexical_ids(index, "secondword0") == [] and lexical_ids(index, "firstword0") == [v1.id]
    report = index.add([v2])  # the batch re-sent: completed, and the leftovers removed
    assert report.updated == 1 and only_version(raw, "crash", index, v2, claims_left=(orphan,)) > orphan

    v3 = make(0, "third", filler)  # killed after its commit mark, before deleting the older version
    newer = index._next_version()
    write_rows(index, v3, newer, commit=True)
    assert len(versions(raw, "crash", v1.id)["passages"]) == 2
    assert index.docstore.get_patent(v1.id) == v3
    assert lexical_ids(index, "secondword0") == [] and lexical_ids(index, "thirdword0") == [v3.id]
    assert index.add([v3]).unchanged == 1
    assert only_version(raw, "crash", index, v3, claims_left=(orphan,)) == newer
    assert only_version(raw, "crash", index, other)

    v4 = make(0, "fourth", filler)  # killed before its commit mark, over an hour ago: its claim goes too
    stale = time.time_ns() - int(2 * STALE_CLAIM_S * 1e9)
    write_rows(index, v4, stale, commit=False)
    assert versions(raw, "crash", v1.id)["passages"].keys() == {newer, stale}
    assert index.add([v4]).updated == 1
    assert only_version(raw, "crash", index, v4, claims_left=(orphan,)) > newer
    index.close()


def test_a_writer_that_loses_the_race_removes_its_rows(
    milvus: MilvusLiteServer, raw: MilvusClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = ClusterIndex(milvus.uri, prefix="lost"), ClusterIndex(milvus.uri, prefix="lost")
    winner, loser = make(0, "winner"), make(0, "loser")
    b.add([winner])
    newest = only_version(raw, "lost", b, winner)
    monkeypatch.setattr(a, "_next_version", lambda: newest - 1000)  # a started first, committed last
    a.add([loser])
    assert only_version(raw, "lost", a, winner) == newest and lexical_ids(a, "loserword0") == []
    a.close()
    b.close()


def test_concurrent_writers_leave_one_version_of_each_patent(
    milvus: MilvusLiteServer, raw: MilvusClient
) -> None:
    writers = [ClusterIndex(milvus.uri, prefix="race") for _ in range(2)]
    barrier, errors, rounds = threading.Barrier(2), [], 10

    def run(index: ClusterIndex, name: str) -> None:
        try:
            barrier.wait()
            for r in range(rounds):
                index.add([make(i, f"{name}{r}x") for i in range(5)], batch_size=2)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w, n)) for w, n in zip(writers, "ab", strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    written = {
        f"Gearbox {n}{r}xword{i}": make(i, f"{n}{r}x") for n in "ab" for r in range(rounds) for i in range(5)
    }
    for i in range(5):
        final = writers[0].docstore.get_patent(make(i, "a0x").id)
        assert final is not None and final.title in written
        only_version(raw, "race", writers[1], written[final.title], head_may_name_a_removed_version=True)
    assert writers[1].stats()["passages"] == 5 * len(writers[0].passages_for(make(0, "a0x")))
    for writer in writers:
        writer.close()


def test_milvus_going_away_and_coming_back(milvus: MilvusLiteServer) -> None:
    index = ClusterIndex(milvus.uri, prefix="faults", timeout_s=5)
    index.add([make(i, "fault") for i in range(3)])
    before = index.lexical.search("gearbox faultword1", 10)
    vectors = ClusterVectors(index._reader, 8)
    milvus.stop()
    try:
        began = time.monotonic()
        calls = (lambda: index.lexical.search("gearbox", 10), lambda: index.docstore.get_patent("EP300B1"),
                 lambda: index.add([make(9, "down")]), lambda: lexical_ids(index, "gearbox"))  # fmt: skip
        for call in calls:
            with pytest.raises(ClusterUnavailable, match="unreachable"):
                call()
        for part in (index.docstore, index.lexical, vectors):
            health = part.health()
            assert health["ok"] is False and "unreachable" in str(health["detail"]), health
        late = ClusterIndex(milvus.uri, prefix="late", timeout_s=5)  # opening while down works
        with pytest.raises(ClusterUnavailable):
            late.lexical.search("gearbox", 10)
        assert time.monotonic() - began < 10
    finally:
        milvus.start()
    deadline = time.monotonic() + 30
    while True:  # the same objects, not reopened
        try:
            assert index.lexical.search("gearbox faultword1", 10) == before
            break
        except ClusterUnavailable:
            assert time.monotonic() < deadline, "no reconnection within 30 s"
            time.sleep(0.5)
    time.sleep(1.1)  # past the cached health probe
    assert index.docstore.health()["ok"] and index.lexical.health()["ok"]
    assert late.add([make(0, "late")]).added == 1 and lexical_ids(late, "lateword0") == ["EP3000000B1"]
    index.close()
    late.close()
