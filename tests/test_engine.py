"""Engine, dynamic batching and score cache: exact batched scores, budgets, queue limits, deadlines."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from patentrank.batching import DynamicBatcher, Overloaded
from patentrank.cache import CachedScore, LRUScoreCache, NoCache, score_key
from patentrank.config import Settings
from patentrank.engine import Engine, StageUnavailable, UnknownModel
from patentrank.errors import InputError
from patentrank.models.names import model_aliases, served_name
from patentrank.models.prompt import format_document, format_query, parse_preformatted
from patentrank.runtime import Runtime, serve_runtime

QUERIES = ["image denoising with a neural network", "齿轮箱润滑系统", "battery thermal management"]
DOCS = [
    "A U-Net removes noise from images.",
    "一种齿轮箱，包括润滑油泵。",
    "A cooling plate between battery cells keeps them below 40 degrees.",
    "Helical gears reduce noise.",
    "word " * 120,
    "",
]
# Float32 GEMMs of different batch shapes round differently; anything above this is a real difference.
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def reranker(tiny_reranker_path: Path):
    from patentrank.models.reranker import Reranker

    return Reranker(str(tiny_reranker_path), device="cpu", max_length=128)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def with_engine(engine: Engine, body: Any) -> Any:
    await engine.start()
    try:
        return await body(engine)
    finally:
        await engine.stop()


# ---- DynamicBatcher on its own --------------------------------------------------------------------


class Recorder:
    """A batch function that records what each call received; optionally blocks until released."""

    def __init__(self, block: bool = False) -> None:
        self.calls: list[list[Any]] = []
        self.keys: list[Any] = []
        self.release = threading.Event()
        if not block:
            self.release.set()

    def __call__(self, key: Any, items: list[Any]) -> list[Any]:
        self.release.wait(30)
        self.calls.append(list(items))
        self.keys.append(key)
        return [f"{key}:{item}" for item in items]


def test_concurrent_requests_share_calls_and_get_their_own_results_in_order() -> None:
    recorder = Recorder()
    batcher = DynamicBatcher("t", recorder, batch_tokens=10_000, max_batch_size=64, max_wait_s=0.05)

    async def body() -> list[list[Any]]:
        await batcher.start()
        try:
            requests = [[f"r{r}d{d}" for d in range(3)] for r in range(10)]
            return await asyncio.gather(*(batcher.submit(items, [1] * 3) for items in requests))
        finally:
            await batcher.stop()

    results = run(body())
    assert results == [[f"None:r{r}d{d}" for d in range(3)] for r in range(10)]
    assert len(recorder.calls) < 10, "requests arriving together must share model calls"
    assert sum(len(c) for c in recorder.calls) == 30


def test_budget_limits_each_call() -> None:
    recorder = Recorder()
    batcher = DynamicBatcher("t", recorder, batch_tokens=100, max_batch_size=4, max_wait_s=0.05)

    async def body() -> list[Any]:
        await batcher.start()
        try:
            return await batcher.submit(list(range(10)), [30] * 10)
        finally:
            await batcher.stop()

    assert run(body()) == [f"None:{i}" for i in range(10)]
    # 3 items x 30 tokens fit in 100; 4 would not.
    assert [len(c) for c in recorder.calls] == [3, 3, 3, 1]


def test_keys_never_share_a_call() -> None:
    recorder = Recorder()
    batcher = DynamicBatcher("t", recorder, max_wait_s=0.05)

    async def body() -> list[Any]:
        await batcher.start()
        try:
            return await asyncio.gather(
                batcher.submit(["a"], [1], key="q"),
                batcher.submit(["b"], [1], key="d"),
                batcher.submit(["c"], [1], key="q"),
            )
        finally:
            await batcher.stop()

    assert run(body()) == [["q:a"], ["d:b"], ["q:c"]]
    for key, call in zip(recorder.keys, recorder.calls, strict=True):
        assert all(item in ("a", "c") for item in call) if key == "q" else call == ["b"]


def test_disabled_batching_runs_each_request_alone() -> None:
    recorder = Recorder()
    batcher = DynamicBatcher("t", recorder, max_wait_s=0.05, enabled=False)

    async def body() -> None:
        await batcher.start()
        try:
            await asyncio.gather(*(batcher.submit([i, i], [1, 1]) for i in range(5)))
        finally:
            await batcher.stop()

    run(body())
    assert sorted(recorder.calls) == [[i, i] for i in range(5)]


def test_full_queue_is_refused_at_once_with_retry_after() -> None:
    recorder = Recorder(block=True)
    batcher = DynamicBatcher("t", recorder, max_wait_s=0, max_queue=2, timeout_s=30)

    async def body() -> Overloaded:
        await batcher.start()
        try:
            held = [asyncio.ensure_future(batcher.submit([i], [1])) for i in range(2)]
            await asyncio.sleep(0.05)
            assert batcher.depth == 2
            with pytest.raises(Overloaded) as refused:
                await batcher.submit(["late"], [1])
            recorder.release.set()
            assert await asyncio.gather(*held) == [["None:0"], ["None:1"]]
            return refused.value
        finally:
            recorder.release.set()
            await batcher.stop()

    error = run(body())
    assert error.status == 429 and error.reason == "queue_full" and error.retry_after_s >= 1
    assert "late" not in [item for call in recorder.calls for item in call]


def test_deadline_gives_503_and_drops_the_unscheduled_items() -> None:
    recorder = Recorder(block=True)
    batcher = DynamicBatcher("t", recorder, max_batch_size=1, max_wait_s=0, timeout_s=0.2)

    async def body() -> Overloaded:
        await batcher.start()
        try:
            with pytest.raises(Overloaded) as late:
                await batcher.submit(["x0", "x1", "x2", "x3"], [1] * 4)
            recorder.release.set()
            # The server keeps serving: a fresh request is answered.
            assert await batcher.submit(["fresh"], [1]) == ["None:fresh"]
            return late.value
        finally:
            recorder.release.set()
            await batcher.stop()

    error = run(body())
    assert error.status == 503 and error.reason == "deadline" and error.retry_after_s >= 1
    computed = [item for call in recorder.calls for item in call]
    assert computed[0] == "x0" and "x3" not in computed, "items of an expired request must not be computed"


def test_a_failing_call_fails_its_requests_only() -> None:
    def flaky(key: Any, items: list[Any]) -> list[Any]:
        if "boom" in items:
            raise RuntimeError("model exploded")
        return items

    batcher = DynamicBatcher("t", flaky, max_wait_s=0)

    async def body() -> list[Any]:
        await batcher.start()
        try:
            with pytest.raises(RuntimeError, match="exploded"):
                await batcher.submit(["boom"], [1])
            return await batcher.submit(["fine"], [1])
        finally:
            await batcher.stop()

    assert run(body()) == ["fine"]


# ---- score cache --------------------------------------------------------------------------------


@pytest.mark.parametrize("position", range(6))
def test_score_key_depends_on_every_part(position: int) -> None:
    parts: list[Any] = ["model", "instruction", "query", "document", 8192, None]
    changed = list(parts)
    changed[position] = 64 if position == 5 else (4096 if position == 4 else parts[position] + "!")
    assert score_key(*parts) == score_key(*parts)
    assert score_key(*parts) != score_key(*changed)


def test_score_key_resists_shifting_text_between_fields() -> None:
    assert score_key("m", "i", "ab", "c", 1, None) != score_key("m", "i", "a", "bc", 1, None)


def test_lru_keeps_the_most_recently_used() -> None:
    cache = LRUScoreCache(max_entries=2)

    async def body() -> list[CachedScore | None]:
        await cache.set_many({"a": CachedScore(1.5, 10, False), "b": CachedScore(-2.0, 20, True)})
        await cache.get_many(["a"])  # a is now fresher than b
        await cache.set_many({"c": CachedScore(0.25, 30, False)})
        return await cache.get_many(["a", "b", "c"])

    assert run(body()) == [CachedScore(1.5, 10, False), None, CachedScore(0.25, 30, False)]


# ---- pre-formatted (vLLM-style) requests ----------------------------------------------------------


def test_preformatted_parse_inverts_the_formatting() -> None:
    query, docs = format_query("q\nwith lines", "Find prior art"), [format_document(d) for d in DOCS]
    assert parse_preformatted(query, docs) == ("Find prior art", "q\nwith lines", DOCS)
    assert parse_preformatted("plain query", DOCS) is None


@pytest.mark.parametrize(
    "query, docs, field",
    [
        (format_query("q", "I") + "extra", [format_document("d")], "query"),
        (format_query("q", "I"), ["<Document>: no suffix"], "documents[0]"),
        (format_query("q", "I").replace("<Instruct>: I", "<Instruct>: "), [format_document("d")], "query"),
    ],
)
def test_malformed_preformatted_requests_name_the_field(query: str, docs: list[str], field: str) -> None:
    with pytest.raises(InputError) as error:
        parse_preformatted(query, docs)
    assert error.value.field == field


# ---- the engine with a real (random-weight) reranker ------------------------------------------------


def test_concurrent_engine_scores_equal_sequential_reranker_scores(reranker) -> None:
    engine = Engine(reranker=reranker, settings=Settings(cache_size=0, batch_wait_ms=20))
    instructions = [None, "Find prior art for the patent query"]

    async def body(engine: Engine) -> list[Any]:
        jobs = [
            engine.rerank(q, DOCS, instruction=i) for q in QUERIES for i in instructions for _ in range(2)
        ]
        return await asyncio.gather(*jobs)

    results = run(with_engine(engine, body))
    expected = [reranker.compute(q, DOCS, i) for q in QUERIES for i in instructions for _ in range(2)]
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_allclose(got.logits, want.logits, atol=TOLERANCE, rtol=0)
        np.testing.assert_allclose(got.scores, want.scores, atol=TOLERANCE, rtol=0)
        assert got.prompt_tokens == want.prompt_tokens and got.truncated == want.truncated
    # Negative control: the instruction moves scores by far more than the tolerance.
    assert np.abs(np.subtract(expected[0].logits, expected[2].logits)).max() > 100 * TOLERANCE
    assert max(_histogram_counts(engine, "patentrank_batch_requests")) >= 2, "requests must share calls"


def _histogram_counts(engine: Engine, name: str) -> list[float]:
    """Observed values' upper bounds that got at least one observation (from the exposition)."""
    counts = []
    previous = 0.0
    for line in engine.metrics.render().decode().splitlines():
        if line.startswith(f"{name}_bucket") and 'le="+Inf"' not in line:
            bound = float(line.split('le="')[1].split('"')[0])
            total = float(line.rsplit(" ", 1)[1])
            if total > previous:
                counts.append(bound)
            previous = total
    return counts


def test_cache_answers_repeats_without_the_model(reranker) -> None:
    engine = Engine(reranker=reranker, settings=Settings(cache_size=1000))

    async def body(engine: Engine) -> tuple[Any, Any, Any]:
        first = await engine.rerank(QUERIES[0], DOCS)
        second = await engine.rerank(QUERIES[0], DOCS)
        other = await engine.rerank(QUERIES[0], DOCS, instruction="Another task")
        return first, second, other

    first, second, other = run(with_engine(engine, body))
    assert first.cache_hits == 0 and second.cache_hits == len(DOCS) and other.cache_hits == 0
    assert second.scores == first.scores and second.prompt_tokens == first.prompt_tokens
    assert second.truncated == first.truncated == [4]  # "word " * 120 exceeds max_length 128
    assert other.scores != first.scores


def test_preformatted_request_scores_like_the_plain_one(reranker) -> None:
    engine = Engine(reranker=reranker, settings=Settings(cache_size=0))
    instruction = "Retrieve prior art"

    async def body(engine: Engine) -> tuple[Any, Any]:
        plain = await engine.rerank(QUERIES[1], DOCS, instruction=instruction)
        formatted = await engine.rerank(
            format_query(QUERIES[1], instruction), [format_document(d) for d in DOCS]
        )
        return plain, formatted

    plain, formatted = run(with_engine(engine, body))
    np.testing.assert_allclose(formatted.logits, plain.logits, atol=TOLERANCE, rtol=0)
    # Negative control: scoring the formatted strings as if they were plain text differs.
    raw = reranker.compute("x" + format_query(QUERIES[1], instruction), [format_document(d) for d in DOCS])
    assert np.abs(np.subtract(raw.logits, plain.logits)).max() > 100 * TOLERANCE


def test_rerank_sync_from_a_worker_thread(reranker) -> None:
    engine = Engine(reranker=reranker, settings=Settings(cache_size=0))

    async def body(engine: Engine) -> Any:
        return await asyncio.to_thread(engine.rerank_sync, QUERIES[2], DOCS[:2])

    result = run(with_engine(engine, body))
    np.testing.assert_allclose(result.scores, reranker.score(QUERIES[2], DOCS[:2]), atol=TOLERANCE, rtol=0)


def test_missing_stages_and_unknown_models_have_clear_errors(reranker) -> None:
    engine = Engine(
        reranker=reranker,
        settings=Settings(),
        load_errors={"embedder": "could not load embedder model '/x': no config.json"},
        reranker_aliases=["qwen3-reranker-0.6b"],
    )
    with pytest.raises(
        StageUnavailable, match=r"embed stage is unavailable: could not load .*PATENTRANK_EMBEDDER"
    ):
        engine.require_embedder()
    with pytest.raises(StageUnavailable, match="--index"):
        Runtime.serving(engine).require_pipeline()
    name = served_name(reranker.model_name)
    assert engine.check_model(None, "reranker") == name
    assert engine.check_model("QWEN3-Reranker-0.6B", "reranker") == name
    assert engine.check_model(name.upper(), "reranker") == name
    assert engine.check_model("gpt-4", "reranker") == name  # one reranker served: any name selects it
    engine.settings = engine.settings.model_copy(update={"strict_model_names": True})
    with pytest.raises(UnknownModel, match=r"not served here.*PATENTRANK_RERANKER_ALIASES"):
        engine.check_model("gpt-4", "reranker")
    health = Runtime.serving(engine).health()
    assert health["status"] == "degraded" and health["failed"] == ["embedder"]
    assert health["models"]["embedder"]["error"].startswith("could not load")
    engine.close()


def test_serve_runtime_reports_a_failed_model_once_and_starts_without_it(tmp_path: Path) -> None:
    lines: list[str] = []
    settings = Settings(reranker_model=str(tmp_path / "missing"), embedder_model="none")
    runtime = serve_runtime(settings, report=lines.append, with_index=False)
    engine = runtime.engine
    assert engine is not None and engine.reranker is None and engine.embedder is None
    assert len(lines) == 1 and "reranker not loaded" in lines[0] and "\n" not in lines[0]
    health = runtime.health()
    assert health["failed"] == ["reranker"] and health["models"]["embedder"]["error"].startswith(
        "no embedder"
    )
    engine.close()


def test_aliases_and_served_names() -> None:
    assert served_name("/models/Qwen3-Reranker-0.6B/") == "Qwen3-Reranker-0.6B"
    assert served_name("Qwen/Qwen3-Reranker-0.6B") == "Qwen/Qwen3-Reranker-0.6B"
    assert "qwen3-reranker-0.6b" in model_aliases("Qwen/Qwen3-Reranker-0.6B")
    assert "rr" in model_aliases("/m/x", ["RR"])


def test_no_cache_never_hits() -> None:
    async def body() -> list[Any]:
        cache = NoCache()
        await cache.set_many({"k": CachedScore(1.0, 1, False)})
        return await cache.get_many(["k"])

    assert run(body()) == [None]


def test_mixed_batches_score_like_one_query_at_a_time(reranker) -> None:
    """Many-document queries take the shared-prefix path, the rest one plain batch: same scores."""
    from patentrank.models.reranker import PREFIX_SHARING_MIN_DOCS

    many = [f"{d} ({i})" for i in range(PREFIX_SHARING_MIN_DOCS) for d in DOCS[:1]]
    requests = [(QUERIES[0], many, None), (QUERIES[1], DOCS[:2], None), (QUERIES[2], DOCS[2:3], "Find art")]
    pairs = [p for q, docs, i in requests for p in reranker.encode(q, docs, i)]
    got = reranker.score_encoded(pairs)  # one policy: the engine's mixed batches take this path too
    want = np.concatenate([reranker.compute(q, docs, i).logits for q, docs, i in requests])
    np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)
    assert np.abs(np.diff(want)).max() > 100 * TOLERANCE  # negative control: the rows really differ


def test_common_prefix_leaves_every_sequence_its_last_token() -> None:
    from patentrank.models.reranker import common_prefix_length

    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert common_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2
    assert common_prefix_length([[7, 1], [8, 1]]) == 0


def test_a_lone_request_is_not_held_for_the_window() -> None:
    """Requests arriving one at a time skip the batching window (here 30 s, so waiting would show)."""
    batcher = DynamicBatcher("t", Recorder(), max_wait_s=30.0)

    async def body() -> float:
        await batcher.start()
        try:
            began = asyncio.get_running_loop().time()
            for i in range(3):
                assert await batcher.submit([i], [1]) == [f"None:{i}"]
            return asyncio.get_running_loop().time() - began
        finally:
            await batcher.stop()

    assert run(body()) < 10.0
