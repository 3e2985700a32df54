"""The search benchmark's resumable build (`benchmarks/search_resume.py`).

A 10M build outlasts a working session, so `search_bench --resume` goes on from the last commit of a
stopped build. What matters is that the resumed index and the benchmark's ground truth (the vector log)
hold exactly what an unbroken build holds: otherwise recall and every figure at 10M would be measured
on different data. The stop is real: SIGKILL to the benchmark's process group right after a commit
was recorded, with later patents already in the document store and their vectors in the log file.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SIZE = 6000  # passages: about 1,100 patents, so two commits of 500 during the build


def _bench(results: Path, *extra: str) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "benchmarks.search_bench", "--sizes", str(SIZE), "--queries", "4",
        "--pass-budget", "0.1", "--legacy-max", "0", "--keep", "--out", "-", "--checkpoint-every", "500",
        "--hnsw-threshold", "2000", "--results", str(results), *extra,
    ]  # fmt: skip
    return subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )


def _finish(process: subprocess.Popen[bytes]) -> None:
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err.decode()[-3000:]


def _built(results: Path) -> dict[str, object]:
    """What the build left: passage ids and vectors of the log (by id), and the stores' counts."""
    work = results / "search-work" / str(SIZE)
    record = json.loads((work / "build.json").read_text())
    ids = np.concatenate([np.load(f)["id"] for f in sorted((work / "vector-log-columns").glob("*.npz"))])
    vectors = np.fromfile(work / "vectors.f32", np.float32).reshape(-1, 256)
    assert len(ids) == len(vectors) == record["log"]["rows"]
    order = np.argsort(ids)
    with sqlite3.connect(work / "index" / "docs.sqlite") as db:
        counts = [db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("patents", "passages")]
    raw = json.loads(next(results.glob("search-*.json")).read_text())["results"][0]
    recall = {f: raw["recall"][f]["recall"] for f in ("none", "common", "rare")}
    return {
        "ids": ids[order],
        "vectors": vectors[order],
        "counts": counts,
        "stats": raw["stats"],
        "recall": recall,
        "parts": raw["ingest"]["parts"],
    }


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    results = tmp_path_factory.mktemp("unbroken")
    _finish(_bench(results))
    return _built(results)


def _stored_patents(work: Path) -> int:
    try:
        with sqlite3.connect(f"file:{work / 'index' / 'docs.sqlite'}?mode=ro", uri=True, timeout=5) as db:
            return int(db.execute("SELECT count(*) FROM patents").fetchone()[0])
    except sqlite3.Error:
        return 0


def _kill_between_commits(results: Path) -> tuple[int, int, int]:
    """Start a build and SIGKILL its whole process group after its first commit, once three more
    batches of 64 patents are in the document store (and their vectors in the log file) but not yet
    committed. Returns (patents committed, patents stored, vector rows recorded) at the stop."""
    work = results / "search-work" / str(SIZE)
    process = _bench(results)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        try:
            committed = json.loads((work / "build.json").read_text()).get("committed_patents", 0)
        except (OSError, ValueError):
            committed = 0
        if committed and _stored_patents(work) >= committed + 192:
            break
        time.sleep(0.01)
    assert process.poll() is None, "the build ended before it could be stopped"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    record = json.loads((work / "build.json").read_text())
    return record["committed_patents"], _stored_patents(work), record["log"]["rows"]


def test_a_killed_build_resumed_holds_what_an_unbroken_build_holds(
    unbroken: dict[str, object], tmp_path: Path
) -> None:
    committed, stored, rows = _kill_between_commits(tmp_path)
    work = tmp_path / "search-work" / str(SIZE)
    # The stop left work past the last commit: patents to sync, and vector rows to cut off the log.
    assert stored > committed > 0
    assert (work / "vectors.f32").stat().st_size > rows * 256 * 4
    _finish(_bench(tmp_path, "--resume"))
    resumed = _built(tmp_path)
    assert resumed["parts"] >= 2, "the second run started again instead of resuming"
    assert np.array_equal(resumed["ids"], unbroken["ids"])
    assert len(np.unique(resumed["ids"])) == len(resumed["ids"]), "a passage was logged twice"
    assert np.array_equal(resumed["vectors"], unbroken["vectors"])
    assert resumed["counts"] == unbroken["counts"]
    assert resumed["stats"] == unbroken["stats"] | {"path": resumed["stats"]["path"]}
    assert resumed["recall"] == unbroken["recall"]


def test_without_resume_a_stopped_build_starts_again(unbroken: dict[str, object], tmp_path: Path) -> None:
    """Negative control: the same stop, rerun without --resume, builds from nothing (one part), so the
    comparison above can tell a resumed build from a rebuilt one."""
    _kill_between_commits(tmp_path)
    _finish(_bench(tmp_path))
    rebuilt = _built(tmp_path)
    assert rebuilt["parts"] == 1
    assert np.array_equal(rebuilt["ids"], unbroken["ids"])
