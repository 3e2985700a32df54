"""PatentIndex: idempotent updates, deletes, journal recovery after kill -9, vectors kept in step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from patentrank.corpus import load_patents, sample_corpus_path
from patentrank.index.patent_index import LEXICAL, VECTOR, PatentIndex


@pytest.fixture(scope="module")
def sample() -> list:
    return list(load_patents(sample_corpus_path()))


@pytest.fixture(scope="module")
def tiny_embedder(tiny_embedder_path: Path):
    from patentrank.models.embedder import Embedder

    return Embedder(str(tiny_embedder_path), device="cpu")


def lexical_ids(index: PatentIndex, query: str) -> set[str]:
    hits = index.lexical.search(query, k=100)
    return {p.patent_id for p in index.docstore.get_passages([pid for pid, _ in hits])}


def test_reindexing_is_idempotent_and_updates_replace(tmp_path: Path, sample: list) -> None:
    index = PatentIndex(tmp_path / "ix")
    first = index.add(sample)
    assert (first.added, first.updated, first.unchanged) == (len(sample), 0, 0)
    passages = index.docstore.count_passages()
    again = index.add(sample)
    assert (again.added, again.updated, again.unchanged) == (0, 0, len(sample))
    assert index.docstore.count_passages() == passages == index.lexical.count()

    target = next(p for p in sample if p.language == "en")
    changed = replace(target, abstract="A zirconium flux capacitor energises the quantum gearbox.")
    report = index.add([changed])
    assert report.updated == 1
    assert target.id in lexical_ids(index, "zirconium flux capacitor")
    stored = index.docstore.get_patent(target.id)
    assert stored is not None and stored.abstract.startswith("A zirconium")
    assert index.lexical.count() == index.docstore.count_passages()


def test_delete_removes_from_every_index(tmp_path: Path, sample: list, tiny_embedder) -> None:
    index = PatentIndex(tmp_path / "ix", embedder=tiny_embedder)
    index.add(sample[:10])
    assert index.vectors is not None and index.vectors.count() == index.docstore.count_passages()
    victim = sample[0]
    assert index.delete([victim.id, "XX000"]) == [victim.id]
    assert index.docstore.get_patent(victim.id) is None
    assert victim.id not in lexical_ids(index, victim.title)
    assert index.vectors.count() == index.docstore.count_passages() == index.lexical.count()


def test_embedder_mismatch_is_refused(tmp_path: Path, sample: list, tiny_embedder) -> None:
    from patentrank.errors import PatentrankError

    PatentIndex(tmp_path / "ix", embedder=tiny_embedder).add(sample[:2])

    class Other:
        model_name, dim = "another-model", tiny_embedder.dim

    with pytest.raises(PatentrankError, match="holds vectors of"):
        PatentIndex(tmp_path / "ix", embedder=Other())


def test_lexical_only_index_gets_vectors_later(tmp_path: Path, sample: list, tiny_embedder) -> None:
    index = PatentIndex(tmp_path / "ix")
    report = index.add(sample[:5])
    assert report.waiting_for_vectors == index.docstore.count_passages() > 0
    index.close()
    with_vectors = PatentIndex(tmp_path / "ix", embedder=tiny_embedder)  # sync embeds what waited
    assert with_vectors.vectors is not None
    assert with_vectors.vectors.count() == with_vectors.docstore.count_passages()
    assert len(with_vectors.docstore.pending_ids(VECTOR)) == 0


WRITER = textwrap.dedent(
    """
    import sys, json
    from patentrank.corpus import Patent
    from patentrank.index.patent_index import PatentIndex
    index = PatentIndex(sys.argv[1])
    def patents():
        for i in range(100000):
            yield Patent(id=f"US{10000000 + i}A1", title=f"Widget number {i}",
                         abstract=f"A widget with feature w{i} and a common gear train {i % 7}.",
                         claims=[f"A widget comprising feature w{i}.", "The widget of claim 1, blue."])
    index.add(patents(), batch_size=50, checkpoint_every=100,
              on_commit=lambda n: print(json.dumps({"committed": n}), flush=True))
    """
)


def test_kill_minus_nine_loses_nothing_committed(tmp_path: Path) -> None:
    path = tmp_path / "ix"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    committed = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        committed = json.loads(line)["committed"]
        if committed >= 300:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert committed >= 300, "the writer died before committing anything"

    index = PatentIndex(path)  # opening finishes the journal left by the killed run
    assert len(index.docstore.pending_ids(LEXICAL)) == 0
    assert index.docstore.count_passages() == index.lexical.count()
    stored = index.docstore.count_patents()
    assert stored >= committed
    for i in (0, committed // 2, committed - 1):
        assert f"US{10000000 + i}A1" in lexical_ids(index, f"w{i}")
    # Running the same job again completes it without duplicates.
    report = index.add(load_first(path, stored))
    assert report.added == 0 and report.unchanged == stored


def load_first(path: Path, n: int) -> list:
    index = PatentIndex(path, read_only=True)
    ids = [f"US{10000000 + i}A1" for i in range(n)]
    return list(index.docstore.get_patents(ids).values())
