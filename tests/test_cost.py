"""Cost before long work: the token-weighted estimate, its warning, where the commands print it, and the
rerank settings (candidates, passage cap) as the search pipeline uses them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tqdm import tqdm

from patentrank.config import Settings
from patentrank.corpus import Patent, load_patents, sample_corpus_path
from patentrank.cost import ONE_HOUR_S, Estimate, Throughput, WorkMeter, track_ingest, where_it_runs
from patentrank.search import SearchRequest

QUERY = "一种基于深度学习的图像去噪方法"


# ---------------------------------------------------------------- the arithmetic


def test_the_estimate_weighs_the_work_ahead_by_tokens_not_by_texts() -> None:
    # The first batch: 10 short passages (100 tokens) in 1 s. The 10 left are ten times longer.
    speed = Throughput(items=10, tokens=100, seconds=1.0)
    estimate = Estimate("embedding", "passages", items=20, tokens=1100, speed=speed, done_tokens=100)
    assert estimate.seconds == pytest.approx(10.0)
    by_texts = (20 - 10) / speed.items_per_s  # what counting passages alone would promise
    assert by_texts == pytest.approx(1.0) and estimate.seconds != pytest.approx(by_texts)
    assert "20 passages: about 10 s on this CPU (10 passages/s, 100 tokens/s" in estimate.line()


def test_a_meter_projects_the_total_from_the_share_read_and_refines_with_every_call() -> None:
    lines: list[str] = []
    share = [0.0]
    meter = WorkMeter(
        "embedding", "passages", count_tokens=lambda texts: sum(len(t) for t in texts),
        report=lines.append, fraction_done=lambda: share[0],
    )  # fmt: skip
    meter.observe(["x" * 10] * 5, seconds=0.5)  # the batch's patents are not counted as read yet
    assert lines == [], "no estimate before the batch is read in full"
    share[0] = 0.25
    meter.checkpoint()
    (line,) = lines
    assert line.startswith("embedding ~20 passages (projected from the first 25.0% of the input)")
    first = meter.estimate()
    assert first is not None and first.seconds == pytest.approx(1.5)  # 150 tokens left at 100 tokens/s
    meter.observe(["x" * 30] * 5, seconds=0.5)  # longer passages, same speed per token
    share[0] = 0.5
    meter.checkpoint()
    assert len(lines) == 1, "reported once"
    later = meter.estimate()
    assert later is not None and later.tokens == 400 and later.seconds == pytest.approx(1.0)
    assert meter.eta() == "embedding 1 s left"


def test_a_total_that_cannot_be_known_reports_the_measured_speed() -> None:
    lines: list[str] = []
    meter = WorkMeter(
        "embedding", "passages", count_tokens=len, report=lines.append, fraction_done=lambda: None
    )
    meter.observe(["a", "b"], seconds=1.0)
    meter.checkpoint()
    assert lines == ["embedding: 2 passages/s, 2 tokens/s on this CPU (measured on the first batch; "
                     "the total is not known ahead)"]  # fmt: skip


@pytest.mark.parametrize(
    ("task", "names"),
    [
        ("embedding", ["PATENTRANK_DEVICE=cuda", "PATENTRANK_EMBEDDER_URL", "multilingual-e5-small",
                       "../shared/models/build-me5-small"]),
        ("reranking", ["PATENTRANK_DEVICE=cuda", "PATENTRANK_RERANKER_URL", "PATENTRANK_RERANK_CANDIDATES",
                       "PATENTRANK_RERANK_PASSAGE_TOKENS"]),
    ],
)  # fmt: skip
def test_over_an_hour_on_a_cpu_warns_and_names_the_faster_options(task: str, names: list[str]) -> None:
    speed = Throughput(items=1, tokens=1, seconds=1.0)  # 1 token/s: the tokens left are the seconds

    def estimate(tokens_left: float, where: str = "this CPU") -> Estimate:
        return Estimate(task, "passages", 1, int(tokens_left), speed, where=where)

    assert estimate(ONE_HOUR_S).warning() is None
    warning = estimate(ONE_HOUR_S + 1).warning()
    assert warning is not None and warning.startswith(f"warning: {task} will take over an hour on this CPU")
    for name in names:
        assert name in warning
    assert estimate(10 * ONE_HOUR_S, "the GPU").warning() is None
    assert estimate(10 * ONE_HOUR_S, "the remote server").warning() is None


def test_where_it_runs_follows_the_model() -> None:
    class RemoteEmbedder:
        is_remote = True

    class OnGpu:
        device = type("Device", (), {"type": "cuda"})()

    assert where_it_runs(None) == "this CPU"
    assert where_it_runs(RemoteEmbedder()) == "the remote server"
    assert where_it_runs(OnGpu()) == "the GPU"


# ---------------------------------------------------------------- the index: after the first batch


def many_patents(count: int) -> list[Patent]:
    """`count` patents from the sample corpus under fresh ids (so several batches of 64 are embedded)."""
    sample = list(load_patents(sample_corpus_path()))
    return [
        Patent.from_dict({**sample[i % len(sample)].to_dict(), "id": f"CN{120000000 + i}A"})
        for i in range(count)
    ]


def test_ingest_reports_after_the_first_batch_and_projects_the_passages(
    tmp_path: Path, tiny_embedder_path: Path
) -> None:
    from patentrank.index.patent_index import PatentIndex
    from patentrank.models.embedder import Embedder

    index = PatentIndex(tmp_path / "ix", embedder=Embedder(str(tiny_embedder_path), device="cpu"))
    patents = many_patents(192)  # 3 batches of 64
    calls: list[int] = []
    reported_at: list[int] = []
    lines: list[str] = []

    def report(line: str) -> None:
        lines.append(line)
        reported_at.append(len(calls))

    bar = tqdm(total=len(patents), disable=True)  # as with --json: the meter counts patents itself
    progress, on_embedded = track_ingest(bar, index.embedder, report)
    assert on_embedded is not None

    def observe(texts: list[str], seconds: float) -> None:
        calls.append(len(texts))
        on_embedded(texts, seconds)

    report = index.add(patents, batch_size=64, progress=progress, on_embedded=observe)
    assert reported_at == [1] and len(calls) == 3, "estimated after the first of three embedder calls"
    (line,) = lines
    projected = int(line.split("~")[1].split(" ")[0].replace(",", ""))
    assert abs(projected - report.passages_written) <= 0.1 * report.passages_written
    assert "(projected from the first 33.3% of the input): about" in line and "on this CPU" in line


# ---------------------------------------------------------------- the commands print it before the work


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "patentrank", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PATENTRANK_DEVICE": "cpu", **env},
    )


def write_jsonl(path: Path, rows: list[dict]) -> Path:  # type: ignore[type-arg]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_index_prints_the_embedding_estimate_on_stderr(tmp_path: Path, tiny_embedder_path: Path) -> None:
    source = write_jsonl(tmp_path / "p.jsonl", [p.to_dict() for p in many_patents(130)])
    done = run_cli(
        {"PATENTRANK_EMBEDDER_MODEL": str(tiny_embedder_path)},
        "index",
        str(source),
        "--index",
        str(tmp_path / "ix"),
    )
    assert done.returncode == 0, done.stderr
    estimates = [ln for ln in done.stderr.replace("\r", "\n").splitlines() if ln.startswith("embedding ~")]
    assert len(estimates) == 1, done.stderr
    assert "(projected from the first 49.2% of the input): about" in estimates[0]
    assert "passages/s" in estimates[0] and "tokens/s, measured on the first batch)" in estimates[0]
    lexical_only = run_cli({}, "index", str(source), "--index", str(tmp_path / "lx"), "--no-embed")
    assert lexical_only.returncode == 0 and "embedding" not in lexical_only.stderr


def test_eval_prints_each_estimate_before_its_stage_runs(
    tmp_path: Path, tiny_embedder_path: Path, tiny_reranker_path: Path
) -> None:
    collection = tmp_path / "coll"
    collection.mkdir()
    patents = many_patents(100)
    write_jsonl(collection / "corpus.jsonl", [p.to_dict() for p in patents])
    queries = [{"id": f"q{i}", "text": p.title} for i, p in enumerate(patents[:4])]
    write_jsonl(collection / "queries.dev.jsonl", queries)
    (collection / "qrels.dev.tsv").write_text(
        "".join(f"q{i}\t{p.id}\t1\n" for i, p in enumerate(patents[:4])), encoding="utf-8"
    )
    env = {
        "PATENTRANK_EMBEDDER_MODEL": str(tiny_embedder_path),
        "PATENTRANK_RERANKER_MODEL": str(tiny_reranker_path),
    }
    done = run_cli(
        env, "eval", "--collection", str(collection), "--index", str(tmp_path / "ix"),
        "--stages", "lexical,rerank", "--candidates", "5", "--plot", str(tmp_path / "c.png"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [ln.strip() for ln in done.stderr.replace("\r", "\n").splitlines() if ln.strip()]

    def first(prefix: str) -> int:
        return next(i for i, ln in enumerate(lines) if ln.startswith(prefix))

    embedding, indexed = first("embedding ~"), first(f"index {tmp_path / 'ix'}:")
    rerank_starts, reranking = first("running rerank"), first("reranking 20 pairs: about")
    assert embedding < indexed < rerank_starts < reranking, "\n".join(lines)
    assert "measured on the first query" in lines[reranking]
    # The rerank bar (queries) is still to finish when its estimate is printed.
    assert any(ln.startswith("rerank: 100%") for ln in lines[reranking:]), "\n".join(lines[reranking:])


# ---------------------------------------------------------------- the rerank settings in the pipeline


def test_the_rerank_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATENTRANK_RERANK_CANDIDATES", "7")
    monkeypatch.setenv("PATENTRANK_RERANK_PASSAGE_TOKENS", "96")
    settings = Settings()
    assert (settings.rerank_candidates, settings.rerank_passage_tokens) == (7, 96)
    assert Settings(_env_file=None).rerank_passage_tokens == 96
    monkeypatch.delenv("PATENTRANK_RERANK_PASSAGE_TOKENS")
    assert Settings().rerank_passage_tokens is None, "whole passages by default"


@pytest.fixture(scope="module")
def spied_runtime(tmp_path_factory: pytest.TempPathFactory, tiny_reranker_path: Path):  # type: ignore[no-untyped-def]
    """A lexical index of the sample corpus with the tiny reranker, its prompts recorded as encoded."""
    from patentrank.runtime import open_runtime

    settings = Settings(
        reranker_model=str(tiny_reranker_path), embedder_model="none", device="cpu",
        rerank_candidates=7, rerank_passage_tokens=24,
    )  # fmt: skip
    runtime = open_runtime(settings, tmp_path_factory.mktemp("cost") / "ix", roles=["reranker"])
    runtime.index.add(load_patents(sample_corpus_path()))
    encoded: list = []  # type: ignore[type-arg]
    real_encode = runtime.reranker.encode

    def encode(*args, **kwargs):  # type: ignore[no-untyped-def]
        pairs = real_encode(*args, **kwargs)
        encoded.append(pairs)
        return pairs

    runtime.reranker.encode = encode
    return runtime, encoded


def test_a_search_reranks_exactly_the_configured_candidates_unless_it_names_its_own(spied_runtime) -> None:  # type: ignore[no-untyped-def]
    runtime, encoded = spied_runtime
    encoded.clear()
    response = runtime.pipeline.search(SearchRequest(QUERY, mode="lexical", top_n=5))
    assert response.stages["rerank"]["pairs"] == 7 and len(encoded[-1]) == 7
    explicit = runtime.pipeline.search(SearchRequest(QUERY, mode="lexical", top_n=5, candidates=3))
    assert explicit.stages["rerank"]["pairs"] == 3 and len(encoded[-1]) == 3
    with pytest.raises(Exception, match="candidates must be an integer from 1 to 1000"):
        runtime.pipeline.search(SearchRequest(QUERY, candidates=0))


def test_each_passage_is_capped_in_the_prompt_and_the_query_and_suffix_stay_whole(spied_runtime) -> None:  # type: ignore[no-untyped-def]
    runtime, encoded = spied_runtime
    prompt = runtime.reranker.prompt
    instruction = runtime.pipeline.default_instruction
    head = prompt.prefix_ids + prompt.encode_query(QUERY, instruction)
    suffix = prompt.suffix_ids

    def passage_lengths(pairs) -> list[int]:  # type: ignore[no-untyped-def]
        for pair in pairs:
            assert pair.input_ids[: len(head)] == head, "the query is intact"
            assert pair.input_ids[-len(suffix) :] == suffix, "the prompt's end is intact"
        return [len(p.input_ids) - len(head) - len(suffix) for p in pairs]

    capped = runtime.pipeline.search(SearchRequest(QUERY, mode="lexical", top_n=5))
    lengths = passage_lengths(encoded[-1])
    assert max(lengths) == 24 and capped.stages["rerank"]["passage_tokens"] == 24
    whole = runtime.pipeline.search(SearchRequest(QUERY, mode="lexical", top_n=5, max_passage_tokens=8192))
    uncapped = passage_lengths(encoded[-1])
    assert max(uncapped) > 24, "negative control: the same passages are longer without the cap"
    assert [min(n, 24) for n in uncapped] == lengths, "a cap cuts each passage at its end, nothing else"
    assert whole.stages["rerank"]["pairs"] == capped.stages["rerank"]["pairs"] == 7


def test_the_pages_ingest_shows_the_estimate_while_it_runs_and_beneath_the_summary(
    tmp_path: Path, tiny_embedder_path: Path
) -> None:
    from patentrank.engine import Engine
    from patentrank.index.patent_index import PatentIndex
    from patentrank.models.embedder import Embedder
    from patentrank.runtime import Runtime
    from patentrank.ui.actions import UiActions

    settings = Settings(reranker_model="none", device="cpu")
    embedder = Embedder(str(tiny_embedder_path), device="cpu")
    engine = Engine(embedder=embedder, settings=settings)
    runtime = Runtime.serving(engine, PatentIndex(tmp_path / "ix", embedder=embedder))
    source = write_jsonl(tmp_path / "p.jsonl", [p.to_dict() for p in many_patents(130)])
    shown: list[str] = []
    summary, _, _ = UiActions(runtime).ingest(
        str(source), progress=lambda step, desc="", unit="": shown.append(desc)
    )
    assert shown[0] == "Indexing", "nothing is promised before the first batch is measured"
    assert shown[1].startswith("Indexing — embedding ~") and "on this CPU" in shown[1]
    assert all(desc == shown[1] for desc in shown[1:]), "the first estimate stays in view while it runs"
    assert "estimated first: embedding ~" in summary and 'class="pr-notice"' in summary
