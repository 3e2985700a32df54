"""The SQLite document store: round trips, idempotent upserts, deletes, filters and the journal."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from patentrank.chunking import Passage, patent_passages
from patentrank.corpus import Patent, load_patents, sample_corpus_path
from patentrank.errors import InputError, PatentrankError
from patentrank.index.docstore import DocStore
from patentrank.index.filters import SearchFilter

SAMPLE = list(load_patents(sample_corpus_path()))
PASSAGES = {p.id: patent_passages(p) for p in SAMPLE}
ALL_IDS = np.array(sorted(x.passage_id for ps in PASSAGES.values() for x in ps), dtype=np.int64)


@pytest.fixture
def store(tmp_path: Path):
    with DocStore(tmp_path / "docs.sqlite") as s:
        s.upsert_patents(SAMPLE, PASSAGES)
        yield s


def _ids(passages: list[Passage]) -> set[int]:
    return {p.passage_id for p in passages}


def test_round_trip_of_patents_and_passages(store: DocStore) -> None:
    assert store.count_patents() == len(SAMPLE)
    assert store.count_passages() == len(ALL_IDS)
    for p in SAMPLE:
        assert store.get_patent(p.id) == p
        assert store.passages_of(p.id) == PASSAGES[p.id]
    assert store.get_patent("XX0000000A") is None
    wanted = [int(ALL_IDS[5]), 12345, int(ALL_IDS[0]), int(ALL_IDS[3])]
    assert [x.passage_id for x in store.get_passages(np.array(wanted))] == [wanted[0], wanted[2], wanted[3]]
    fields = store.get_fields(ALL_IDS)
    for p in SAMPLE:
        for x in PASSAGES[p.id]:
            assert fields[x.passage_id] == p.fields()
    markup = next(p for p in SAMPLE if "<script>" in p.title)
    assert store.get_patent(markup.id).title == markup.title  # stored verbatim, escaping is the UI's job


def test_upserting_identical_patents_changes_nothing(store: DocStore) -> None:
    pending_before = store.pending_ids("vector")
    result = store.upsert_patents(SAMPLE, PASSAGES)
    assert result.counts == (0, 0, len(SAMPLE))
    assert result.removed_ids.size == 0 and result.written_ids.size == 0
    np.testing.assert_array_equal(store.pending_ids("vector"), pending_before)


def test_first_upsert_counts_and_journals_every_passage(tmp_path: Path) -> None:
    with DocStore(tmp_path / "d.sqlite", stages=("lexical", "vector")) as s:
        result = s.upsert_patents(SAMPLE[:10], {p.id: PASSAGES[p.id] for p in SAMPLE[:10]})
        ids = sorted(x.passage_id for p in SAMPLE[:10] for x in PASSAGES[p.id])
        assert result.counts == (10, 0, 0)
        np.testing.assert_array_equal(result.written_ids, ids)
        for stage in ("lexical", "vector"):
            np.testing.assert_array_equal(s.pending_ids(stage), ids)
            assert s.pending_deletes(stage).size == 0


def test_changed_passages_report_the_removed_ids(store: DocStore) -> None:
    original = next(p for p in SAMPLE if len(PASSAGES[p.id]) >= 3)
    old = PASSAGES[original.id]
    for stage in store.stages:
        store.mark_indexed(ALL_IDS, stage)
    shorter = dataclasses.replace(original, claims=original.claims[:1], description=None)
    new = patent_passages(shorter)
    result = store.upsert_patents([shorter], {shorter.id: new})
    assert result.counts == (0, 1, 0)
    gone = _ids(old) - _ids(new)
    assert gone and set(result.removed_ids.tolist()) == gone
    assert set(result.written_ids.tolist()) == _ids(new)
    assert store.passages_of(shorter.id) == new
    assert store.get_passages(list(gone)) == []
    for stage in store.stages:
        assert set(store.pending_deletes(stage).tolist()) == gone
        assert set(store.pending_ids(stage).tolist()) == _ids(new)
    # Same patent, another chunk budget: the passages differ, so it counts as updated.
    rechunked = patent_passages(shorter, max_tokens=32)
    assert len(rechunked) > len(new)
    assert store.upsert_patents([shorter], {shorter.id: rechunked}).counts == (0, 1, 0)


def test_delete_returns_the_removed_passage_ids(store: DocStore) -> None:
    victims = [SAMPLE[0].id, SAMPLE[7].id, "NOT-STORED"]
    removed = store.delete_patents(victims)
    expected = sorted(_ids(PASSAGES[SAMPLE[0].id]) | _ids(PASSAGES[SAMPLE[7].id]))
    np.testing.assert_array_equal(removed, expected)
    assert store.get_patent(SAMPLE[0].id) is None
    assert store.count_patents() == len(SAMPLE) - 2
    assert store.count_passages() == len(ALL_IDS) - len(expected)
    assert set(expected) <= set(store.pending_deletes("lexical").tolist())
    assert not set(expected) & set(store.pending_ids("lexical").tolist())
    assert store.delete_patents([SAMPLE[0].id]).size == 0


FILTERS = [
    SearchFilter(before="2015-01-01"),
    SearchFilter(after="2020-01-01", date_field="publication"),
    SearchFilter(before="2019-06-30", after="2012-01-01", date_field="filing"),
    SearchFilter(code_prefixes=["G06T"]),
    SearchFilter(code_prefixes=["h01m 10", "F01K"]),
    SearchFilter(languages=["zh"]),
    SearchFilter(jurisdictions=["us", "EP"]),
    SearchFilter(exclude_patents=["CN113344556A", "US2021118123A1"]),
    SearchFilter(before="2022-01-01", code_prefixes=["G06"], languages=["zh", "en"], jurisdictions=["CN"]),
    SearchFilter(code_prefixes=["A61B5/0"]),
    SearchFilter(code_prefixes=["Z99"]),
    SearchFilter(),
]


def _reference(flt: SearchFilter) -> np.ndarray:
    return np.array(
        sorted(x.passage_id for p in SAMPLE if flt.matches(p.fields()) for x in PASSAGES[p.id]),
        dtype=np.int64,
    )


@pytest.mark.parametrize("flt", FILTERS, ids=[f"filter{i}" for i in range(len(FILTERS))])
def test_allowed_passage_ids_agree_with_the_reference_filter(store: DocStore, flt: SearchFilter) -> None:
    expected = _reference(flt)
    np.testing.assert_array_equal(store.allowed_passage_ids(flt), expected)
    if flt.is_empty():
        np.testing.assert_array_equal(store.allowed_passage_ids(None), ALL_IDS)
    elif flt.code_prefixes != ["Z99"]:
        assert 0 < expected.size < ALL_IDS.size  # each filter really selects something and leaves something


def test_date_filters_exclude_undated_patents(store: DocStore) -> None:
    undated = {p.id for p in SAMPLE if p.priority_date is None}
    assert undated, "the sample should contain a patent without a priority date"
    allowed = store.allowed_passage_ids(SearchFilter(before="2100-01-01"))
    undated_ids = {x.passage_id for pid in undated for x in PASSAGES[pid]}
    assert not undated_ids & set(allowed.tolist())


class _DropsDates(SearchFilter):
    """A deliberately wrong SQL translation: the date restriction is lost."""

    def to_sql(self) -> tuple[str, list[object]]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(SearchFilter)}
        return SearchFilter(**{**values, "before": None, "after": None}).to_sql()


def test_negative_control_a_wrong_translation_is_caught(store: DocStore) -> None:
    flt = _DropsDates(before="2015-01-01")
    assert not np.array_equal(store.allowed_passage_ids(flt), _reference(flt))


def test_pending_journal_survives_reopening_and_is_cleared_per_stage(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    with DocStore(path) as s:
        s.upsert_patents(SAMPLE[:5], PASSAGES)
        written = s.pending_ids("lexical")
        s.mark_indexed(written[:3], "lexical")
    with DocStore(path) as s:
        np.testing.assert_array_equal(s.pending_ids("lexical"), written[3:])
        np.testing.assert_array_equal(s.pending_ids("vector"), written)
        batches = list(s.iter_passages(batch_size=2, ids=s.pending_ids("lexical")))
        assert [x.passage_id for batch in batches for x, _ in batch] == written[3:].tolist()
        s.clear_pending("vector")
        assert s.pending_ids("vector").size == 0 and s.health()["pending"] == {"lexical": len(written) - 3}
        with pytest.raises(InputError, match="stage"):
            s.pending_ids("milvus")


def test_journal_is_intact_after_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    batch = 50
    script = textwrap.dedent(
        f"""
        import itertools
        from patentrank.chunking import patent_passages
        from patentrank.corpus import Patent, load_patents, sample_corpus_path
        from patentrank.index.docstore import DocStore
        patents = list(load_patents(sample_corpus_path()))
        store = DocStore({str(path)!r})
        store.upsert_patents(patents[:20], {{p.id: patent_passages(p) for p in patents}})
        store.mark_indexed(store.pending_ids("lexical"), "lexical")
        print("ready", flush=True)
        for start in itertools.count(0, {batch}):  # an indexing run that is killed at some point
            claims = ["A widget.", "The widget of claim 1."]
            numbers = range(start, start + {batch})
            extra = [Patent(id=f"US{{n:010d}}A1", title=f"Widget {{n}}", claims=claims) for n in numbers]
            store.upsert_patents(extra, {{p.id: patent_passages(p) for p in extra}})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with DocStore(path) as watcher:  # kill it mid-run, once a few batches have committed
            deadline = time.monotonic() + 60
            while watcher.count_patents() < 20 + 3 * batch and time.monotonic() < deadline:
                time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with DocStore(path) as s:
        assert s._conn().execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        extra = s.count_patents() - 20
        assert extra >= 3 * batch and extra % batch == 0  # whole batches or nothing
        stored = set(s.allowed_passage_ids().tolist())
        assert len(stored) == s.count_passages()
        first = {x.passage_id for p in SAMPLE[:20] for x in PASSAGES[p.id]}
        assert set(s.pending_ids("vector").tolist()) == stored  # nothing was vector-indexed
        assert set(s.pending_ids("lexical").tolist()) == stored - first  # what the killed run left


def test_a_failing_batch_stores_nothing(tmp_path: Path) -> None:
    with DocStore(tmp_path / "d.sqlite") as s:
        with pytest.raises(InputError, match="no passages given"):
            s.upsert_patents(SAMPLE[:3], {SAMPLE[0].id: PASSAGES[SAMPLE[0].id]})
        assert s.count_patents() == 0 and s.pending_ids("lexical").size == 0
        s.upsert_patents(SAMPLE[:1], PASSAGES)
        # A forged collision: another patent's passage reuses a stored id.
        stolen = PASSAGES[SAMPLE[0].id][0].passage_id
        intruder = Patent(id="US9999999B1", title="Intruder")
        forged = [Passage(stolen, intruder.id, 0, "title_abstract", "Intruder")]
        with pytest.raises(PatentrankError, match="collision"):
            s.upsert_patents(
                [SAMPLE[1], intruder], {SAMPLE[1].id: PASSAGES[SAMPLE[1].id], intruder.id: forged}
            )
        assert s.count_patents() == 1 and s.get_passages([stolen])[0].patent_id == SAMPLE[0].id
        with pytest.raises(InputError, match="belongs to"):
            s.upsert_patents([intruder], {intruder.id: PASSAGES[SAMPLE[0].id]})


def test_iter_passages_visits_every_passage_once_with_its_fields(store: DocStore) -> None:
    seen = []
    for batch in store.iter_passages(batch_size=7):
        assert 0 < len(batch) <= 7
        for passage, fields in batch:
            assert fields.patent_id == passage.patent_id
            seen.append(passage.passage_id)
    assert seen == ALL_IDS.tolist()


def test_concurrent_readers_and_a_writer(tmp_path: Path) -> None:
    store = DocStore(tmp_path / "d.sqlite")
    store.upsert_patents(SAMPLE[:25], PASSAGES)
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                ids = store.allowed_passage_ids(SearchFilter(languages=["zh"]))
                assert len(store.get_passages(ids)) <= len(ids)  # rows may vanish between calls
                store.get_patent(SAMPLE[0].id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for t in readers:
        t.start()
    for _ in range(5):
        store.upsert_patents(SAMPLE[25:], PASSAGES)
        store.delete_patents([p.id for p in SAMPLE[25:]])
    stop.set()
    for t in readers:
        t.join()
    assert errors == []
    assert store.count_patents() == 25
    store.close()
    with pytest.raises(PatentrankError, match="closed"):
        store.count_patents()


def test_opening_a_file_that_is_not_a_store_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(PatentrankError, match=r"junk\.sqlite"):
        DocStore(junk)


def test_health_reports_counts(store: DocStore) -> None:
    health = store.health()
    assert health["ok"] is True
    assert (health["patents"], health["passages"]) == (len(SAMPLE), len(ALL_IDS))


def _identity_reference(patents: list[Patent]) -> dict:
    from patentrank.families import stored_identity

    return {p.id: stored_identity(p.title, p.abstract, p.metadata.get("family_id")) for p in patents}


def test_identities_follow_writes_updates_and_deletes(tmp_path: Path) -> None:
    """Collapsing reads each patent's stored identity; it must equal what the patent's own title,
    abstract and family id give, after every kind of write (negative control: a stale row is seen)."""
    import sqlite3

    twins = [
        dataclasses.replace(SAMPLE[0], id="CN900000001A", metadata={"family_id": 77}),
        dataclasses.replace(SAMPLE[0], id="CN900000002A", title=SAMPLE[0].title.upper() + " ", metadata={}),
    ]
    patents = SAMPLE + twins
    with DocStore(tmp_path / "docs.sqlite") as s:
        s.upsert_patents(patents, {p.id: patent_passages(p) for p in patents})
        ids = [p.id for p in patents]
        assert s.get_identities(ids) == _identity_reference(patents)
        assert s.get_identities(["CN900000001A"])["CN900000001A"].family_id == "77"
        changed = dataclasses.replace(twins[1], abstract="Another abstract.", metadata={"family_id": "F1"})
        s.upsert_patents([changed], {changed.id: patent_passages(changed)})
        assert s.get_identities(ids) == _identity_reference([*SAMPLE, twins[0], changed])
        s.delete_patents([twins[0].id])
        assert twins[0].id not in s.get_identities(ids)
        assert s.get_identities(ids) == _identity_reference([*SAMPLE, changed])
    with sqlite3.connect(tmp_path / "docs.sqlite") as conn:
        conn.execute("UPDATE identities SET text_key = 'stale' WHERE id = ?", (SAMPLE[1].id,))
    with DocStore(tmp_path / "docs.sqlite") as s:
        assert s.get_identities(ids) != _identity_reference([*SAMPLE, changed])


def test_a_version_1_store_gets_its_identities_on_open(tmp_path: Path) -> None:
    import sqlite3

    from patentrank.index.docstore_schema import SCHEMA_VERSION

    path = tmp_path / "docs.sqlite"
    with DocStore(path) as s:
        s.upsert_patents(SAMPLE, PASSAGES)
    with sqlite3.connect(path) as conn:  # what version 1 wrote: no identities table
        conn.execute("DROP TABLE identities")
        conn.execute("PRAGMA user_version = 1")
    with DocStore(path) as s:
        assert s.get_identities([p.id for p in SAMPLE]) == _identity_reference(SAMPLE)
        assert np.array_equal(s.pending_ids("lexical"), ALL_IDS)  # nothing else touched
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
