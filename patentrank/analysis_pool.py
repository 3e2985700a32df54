"""Analysis of large batches on every core, when the segmenter is jieba's pure Python (threads would
not help).

With jieba alone (`PATENTRANK_SEGMENTER=jieba`, or without jieba-rs) indexing spends most of its time in
`patentrank.text.analyze` (jieba segments about 0.5 M characters per second on one core). With jieba-rs,
the default, one process analyses about 8,000 passages/s and two workers gain nothing once texts and
tokens are pickled both ways (docs/lexical.md, "The segmenter"), so analysis stays in-process. With
jieba alone, batches of at least `PARALLEL_MIN_TEXTS` texts (512) are analysed by a pool of worker
processes, started once per process with the "spawn" method (safe in a server with threads), each
initialising jieba once. The tokens are exactly those of `analyze`.

Opt-in, because "spawn" re-imports the program's main module in every worker: a script without an
`if __name__ == "__main__":` guard would run again there. The `patentrank` commands (whose console
script has that guard) turn it on with `enable_parallel_analysis()`; library users may call it too.
`PATENTRANK_ANALYSIS_WORKERS` overrides the number of workers: 0 or 1 keeps analysis in-process;
otherwise, once enabled, it is the number of usable cores, at most 4. A segmenter replaced
in-process (a memoized one in the benchmarks, a stub in tests) keeps analysis in-process too, so it
is never silently bypassed.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from patentrank import text

log = logging.getLogger(__name__)

PARALLEL_MIN_TEXTS = 512  # below this the hand-off costs more than it saves (PatentIndex batches: ~1,400)
_pool: ProcessPoolExecutor | None = None
_pool_workers = 0
_pool_lock = threading.Lock()
_enabled = False


def enable_parallel_analysis(enabled: bool = True) -> None:
    """Let large batches use worker processes (call it from a guarded main module only)."""
    global _enabled
    _enabled = enabled


def analysis_workers() -> int:
    """Worker processes that large batches use (1 = none: analysis stays in this process)."""
    setting = os.environ.get("PATENTRANK_ANALYSIS_WORKERS", "").strip()
    if not _enabled and not setting:
        return 1
    if setting:
        try:
            return max(int(setting), 1)
        except ValueError:
            log.warning("PATENTRANK_ANALYSIS_WORKERS=%r is not an integer: analysing in-process", setting)
            return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(min(cores, 4), 1)


def analyze_batch(texts: Sequence[str]) -> list[list[str]]:
    """`[analyze(t) for t in texts]`, on several processes when the batch is large.

    Example:
        >>> analyze_batch(["Heat exchangers", "废热锅炉"])
        [['heat', 'exchang'], ['废热', '锅炉']]
    """
    workers = analysis_workers()
    if len(texts) < PARALLEL_MIN_TEXTS or workers < 2 or not _pool_pays():
        return [text.analyze(t) for t in texts]
    pool = _get_pool(workers)
    size = -(-len(texts) // (workers * 4))  # a few chunks per worker evens out uneven texts
    chunks = [list(texts[i : i + size]) for i in range(0, len(texts), size)]
    try:
        return [tokens for part in pool.map(_analyze_chunk, chunks) for tokens in part]
    except Exception as exc:  # a worker killed by the OOM killer, a pool shut down at exit, ...
        log.warning("parallel analysis failed (%s): analysing in-process", exc)
        _shutdown()
        return [text.analyze(t) for t in texts]


def _analyze_chunk(texts: list[str]) -> list[list[str]]:
    return [text.analyze(t) for t in texts]


def _pool_pays() -> bool:
    """Only jieba's pure-Python segmenter is worth the hand-off (pickling texts and tokens): with jieba-rs
    two workers are no faster than one process (docs/lexical.md, "The segmenter"), and a segmenter
    replaced in-process (memoized in the benchmarks, a stub in tests) would not reach the workers."""
    import jieba

    return isinstance(text._jieba(), jieba.Tokenizer)


def _get_pool(workers: int) -> ProcessPoolExecutor:
    global _pool, _pool_workers
    with _pool_lock:
        if _pool is None or _pool_workers != workers:
            _shutdown()
            context = multiprocessing.get_context("spawn")
            _pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_warm_up)
            _pool_workers = workers
        return _pool


def _warm_up() -> None:
    text.analyze("预热 warm-up")  # loads jieba's dictionary once per worker


def _shutdown() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


atexit.register(_shutdown)
