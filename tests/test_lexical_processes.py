"""The tantivy lexical stage across processes: kill -9 while committing, a reader seeing another
process's commits without reopening, and `patentrank reindex` on a folder of the old format."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from patentrank.corpus import Patent, load_patents, sample_corpus_path
from patentrank.index.lexical import LexicalIndex, LexicalIndexError
from patentrank.index.patent_index import LEXICAL, PatentIndex
from patentrank.search import SearchPipeline, SearchRequest

WRITER = textwrap.dedent(
    """
    import sys
    from patentrank.index.lexical import LexicalIndex
    index = LexicalIndex(sys.argv[1])
    batch = index.count() // 300  # carry on where the killed writer's last commit ended
    while True:  # every commit adds one batch of 300 passages whose text names their batch
        ids = range(batch * 300, (batch + 1) * 300)
        index.add(list(ids), [f"passage {i} batch{batch} heat exchanger boiler" for i in ids])
        index.commit()
        print(batch, flush=True)
        batch += 1
    """
)


def test_kill_9_during_commits_keeps_exactly_the_committed_batches(tmp_path: Path) -> None:
    path = tmp_path / "lex"
    reported = -1
    for delay in (0.0, 0.13, 0.41):  # kill at different moments of a commit cycle
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:  # wait for two commits of this run, then kill at some later moment
            if int(line) >= reported + 2:
                reported = int(line)
                break
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        index = LexicalIndex(path)
        batches, rest = divmod(index.count(), 300)
        assert rest == 0, "a commit is all or nothing"
        assert batches >= reported + 1, "a reported commit was lost"
        for batch in (0, reported, batches - 1):
            assert len(index.search(f"batch{batch}", k=1000)) == 300, "nothing duplicated, nothing missing"
        reported = batches - 1
        index.close()


def test_a_reader_sees_commits_of_patentrank_index_in_another_process(tmp_path: Path) -> None:
    path = tmp_path / "ix"
    server_side = PatentIndex(path)  # what a running server holds open
    server_side.add(list(load_patents(sample_corpus_path()))[:3])
    pipeline = SearchPipeline(server_side)
    request = SearchRequest("quasar turbocharger flywheel", mode="lexical", rerank=False)
    assert pipeline.search(request).results == []
    new = tmp_path / "new.jsonl"
    patent = {"id": "US77777777A1", "title": "Quasar turbocharger flywheel", "abstract": "A flywheel."}
    new.write_text(json.dumps(patent) + "\n")
    if not Path(sys.executable).with_name("patentrank").exists():
        pytest.skip("the patentrank console script is not installed in this environment")
    cli = [str(Path(sys.executable).with_name("patentrank"))]
    done = subprocess.run([*cli, "index", str(new), "--index", str(path), "--no-embed"], capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    deadline = time.monotonic() + 5  # tantivy polls meta.json; the docstore is read fresh
    while time.monotonic() < deadline and not pipeline.search(request).results:
        time.sleep(0.1)
    assert [r.patent_id for r in pipeline.search(request).results] == ["US77777777A1"]
    # ...and the server side can still write after the other process is done.
    server_side.add([Patent(id="US88888888A1", title="Quasar flywheel brake", abstract="x")])
    assert {r.patent_id for r in pipeline.search(request).results} == {"US77777777A1", "US88888888A1"}


def make_old_format(path: Path) -> None:
    """Turn an index folder into what the numpy-BM25 versions left: `lexical/` with CURRENT."""
    shutil.rmtree(path / "bm25")
    (path / "lexical" / "gen-00000002").mkdir(parents=True)
    (path / "lexical" / "CURRENT").write_text("gen-00000002\n")


def test_old_format_is_detected_and_reindex_rebuilds_it(tmp_path: Path) -> None:
    path = tmp_path / "ix"
    sample = list(load_patents(sample_corpus_path()))
    index = PatentIndex(path)
    index.add(sample)
    before = [
        r.patent_id for r in SearchPipeline(index).search(SearchRequest("锂电池", mode="lexical")).results
    ]
    passages = index.docstore.count_passages()
    index.close()
    make_old_format(path)
    with pytest.raises(LexicalIndexError, match="patentrank reindex --index"):
        PatentIndex(path)
    exe = Path(sys.executable).with_name("patentrank")
    if not exe.exists():
        pytest.skip("the patentrank console script is not installed in this environment")
    opened = subprocess.run(
        [str(exe), "search", "锂电池", "--index", str(path)], capture_output=True, text=True
    )
    assert opened.returncode == 2 and "patentrank reindex" in opened.stderr, "one line saying what to do"
    done = subprocess.run([str(exe), "reindex", "--index", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"from {passages} passages" in done.stdout
    assert not (path / "lexical").exists()
    index = PatentIndex(path)
    assert index.lexical.count() == passages and len(index.docstore.pending_ids(LEXICAL)) == 0
    after = [
        r.patent_id for r in SearchPipeline(index).search(SearchRequest("锂电池", mode="lexical")).results
    ]
    assert after == before


def test_a_rebuild_killed_after_building_is_finished_on_open(tmp_path: Path) -> None:
    path = tmp_path / "ix"
    index = PatentIndex(path)
    index.add(list(load_patents(sample_corpus_path()))[:5])
    count = index.lexical.count()
    index.close()
    shutil.copytree(path / "bm25", path / "bm25.built")  # a complete build, killed before the swap
    shutil.rmtree(path / "bm25")
    assert PatentIndex(path).lexical.count() == count
    assert not (path / "bm25.built").exists()
