"""Serving benchmark: /v1/rerank under 1-64 concurrent clients, dynamic batching off vs on, and the cache.

Run from the repository root:  .venv/bin/python -m benchmarks.serve_bench
Each mode gets its own server process (uvicorn on a free loopback port, random-weight Qwen3 reranker);
this process is the load generator: N clients, each sending one short request after another for a
fixed time. Results go to the "Serving" section of docs/benchmarks.md and benchmarks/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks.common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common as bench

MODES = {
    "off": ("one at a time (batching off, no cache)", {"batching": False, "cache_size": 0}),
    "on": ("dynamic batching, no cache", {"batching": True, "cache_size": 0}),
    "cache": ("dynamic batching + cache (repeated requests)", {"batching": True, "cache_size": 100_000}),
}
CACHE_POOL = 32  # distinct requests the "cache" mode cycles through


@dataclass(slots=True)
class LevelResult:
    mode: str
    clients: int
    seconds: float
    ok: int
    rejected: int
    errors: int
    throughput: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    pairs_per_call: float
    requests_per_call: float


# ---------------------------------------------------------------- the server process


def serve(args: argparse.Namespace) -> None:
    """Entry point of a server subprocess: one engine, one uvicorn, until killed."""
    bench.quiet_environment()
    import torch

    from patentrank.config import Settings
    from patentrank.engine import Engine
    from patentrank.models.reranker import Reranker
    from patentrank.server import create_app
    from patentrank.server.runner import run

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = Settings(
        embedder_model="none",
        cache_size=args.cache_size,
        dynamic_batching=args.batching == "on",
        batch_wait_ms=args.batch_wait_ms,
        queue_size=1024,
    )
    reranker = Reranker(args.serve_model, device="cpu", max_length=512)
    engine = Engine(reranker=reranker, settings=settings)
    # The limits `patentrank serve` applies (read timeout, connection cap), so the numbers include them.
    run(create_app(engine, settings), settings, host="127.0.0.1", port=args.port, log_level="warning")


def start_server(model: Path, mode: str, port: int, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    options = MODES[mode][1]
    command = [
        sys.executable,
        "-m",
        "benchmarks.serve_bench",
        "--serve-model",
        str(model),
        "--port",
        str(port),
        "--batching",
        "on" if options["batching"] else "off",
        "--cache-size",
        str(options["cache_size"]),
        "--batch-wait-ms",
        str(args.batch_wait_ms),
        "--threads",
        str(args.threads or 0),
    ]
    env = {**os.environ, **bench.QUIET_ENV}
    process = subprocess.Popen(command, cwd=bench.REPO_ROOT, env=env)
    import httpx

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the {mode} server exited with code {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the {mode} server did not start")


# ---------------------------------------------------------------- the load


def request_pool(seed: int) -> list[tuple[str, list[str]]]:
    """Short requests: a patent query with 1-4 short passages, Chinese or English."""
    rng = random.Random(seed)
    pool = []
    for i in range(512):
        lang = "zh" if i % 2 else "en"
        domain = rng.randrange(len(bench.DOMAINS))
        docs = [
            bench.patent_query(rng, rng.randrange(len(bench.DOMAINS)), lang) for _ in range(rng.randint(1, 4))
        ]
        pool.append((bench.patent_query(rng, domain, lang), docs))
    return pool


def batch_counters(url: str) -> tuple[float, float, float]:
    """(model calls, pairs, requests) scored so far, from the server's /metrics."""
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=10).text

    def value(name: str) -> float:
        match = re.search(rf'^{name}{{model="rerank"}} (\S+)$', text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    return (
        value("patentrank_batch_items_count"),
        value("patentrank_batch_items_sum"),
        value("patentrank_batch_requests_sum"),
    )


class Connection:
    """A minimal keep-alive HTTP/1.1 client: one per simulated client, so that the load generator's own
    overhead (httpx's pool costs grow with the number of connections) does not limit what is measured."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        try:
            self.writer.write(head.encode() + body)
            await self.writer.drain()
            status = int((await self.reader.readline()).split()[1])
            length = 0
            while (line := await self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await self.reader.readexactly(length)
            return status
        except (OSError, IndexError, ValueError, asyncio.IncompleteReadError):
            await self.close()
            return -1

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def run_level(port: int, clients: int, seconds: float, warmup: float, pool: list, repeat: bool) -> dict:
    """`clients` loops sending requests back to back; requests answered inside the window count."""
    counter = 0
    latencies: list[float] = []
    statuses: dict[str, int] = {"ok": 0, "rejected": 0, "errors": 0}
    began = time.perf_counter()
    window_start, window_end = began + warmup, began + warmup + seconds

    async def worker() -> None:
        nonlocal counter
        connection = Connection(port)
        try:
            while time.perf_counter() < window_end:
                counter += 1
                query, docs = pool[counter % (CACHE_POOL if repeat else len(pool))]
                if not repeat:
                    query = f"{query} ({counter})"  # unique: no two requests share a score
                body = json.dumps({"query": query, "documents": docs}, ensure_ascii=False).encode()
                sent = time.perf_counter()
                status = await connection.post("/v1/rerank", body)
                done = time.perf_counter()
                if not window_start <= done <= window_end:
                    continue
                if status == 200:
                    statuses["ok"] += 1
                    latencies.append(done - sent)
                elif status in (429, 503):
                    statuses["rejected"] += 1
                else:
                    statuses["errors"] += 1
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(clients)))
    latencies.sort()

    def pct(p: float) -> float:
        return (
            1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else float("nan")
        )

    return {
        **statuses,
        "throughput": statuses["ok"] / seconds if seconds > 0 else 0.0,
        "p50": pct(0.5),
        "p95": pct(0.95),
        "p99": pct(0.99),
    }


def measure_mode(model: Path, mode: str, args: argparse.Namespace, pool: list) -> list[LevelResult]:
    from patentrank.server.testing import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    print(f"[{mode}] starting server: {MODES[mode][0]}", flush=True)
    process = start_server(model, mode, port, args)
    results = []
    try:
        if mode == "cache":  # fill the cache once, as a warm production cache would be
            asyncio.run(run_level(port, 4, 0.0, 2.0, pool, repeat=True))
        for clients in args.clients:
            before = batch_counters(url)
            stats = asyncio.run(run_level(port, clients, args.seconds, args.warmup, pool, mode == "cache"))
            after = batch_counters(url)
            calls = max(after[0] - before[0], 1.0)
            result = LevelResult(
                mode=mode,
                clients=clients,
                seconds=args.seconds,
                ok=stats["ok"],
                rejected=stats["rejected"],
                errors=stats["errors"],
                throughput=stats["throughput"],
                p50_ms=stats["p50"],
                p95_ms=stats["p95"],
                p99_ms=stats["p99"],
                pairs_per_call=(after[1] - before[1]) / calls if after[0] > before[0] else 0.0,
                requests_per_call=(after[2] - before[2]) / calls if after[0] > before[0] else 0.0,
            )
            results.append(result)
            print(
                f"[{mode}] {clients:>3} clients: {result.throughput:7.1f} req/s  "
                f"p50 {result.p50_ms:7.1f} ms  p95 {result.p95_ms:7.1f}  p99 {result.p99_ms:7.1f}  "
                f"ok {result.ok}  rejected {result.rejected}  errors {result.errors}  "
                f"pairs/call {result.pairs_per_call:.1f}",
                flush=True,
            )
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
    return results


# ---------------------------------------------------------------- report


def report(results: list[LevelResult], args: argparse.Namespace, facts: dict[str, str]) -> str:
    by = {(r.mode, r.clients): r for r in results}
    modes = [m for m in MODES if any(r.mode == m for r in results)]
    headers = ["clients"]
    for mode in modes:
        headers += [f"{mode}: req/s", f"{mode}: p50 / p95 / p99 ms", f"{mode}: pairs per call"]
    rows = []
    for clients in args.clients:
        row: list[object] = [clients]
        for mode in modes:
            r = by.get((mode, clients))
            if r is None:
                row += ["-", "-", "-"]
                continue
            flag = f" ({r.rejected} rejected, {r.errors} errors)" if r.rejected or r.errors else ""
            row += [
                f"{r.throughput:.1f}{flag}",
                f"{r.p50_ms:.0f} / {r.p95_ms:.0f} / {r.p99_ms:.0f}",
                f"{r.pairs_per_call:.1f}",
            ]
        rows.append(row)
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with "
        f"`.venv/bin/python -m benchmarks.serve_bench {' '.join(sys.argv[1:])}`.",
        "",
        "Workload: POST /v1/rerank, each request a short patent query with 1-4 short passages (Chinese "
        "or English, about 15-40 tokens each); random-weight Qwen3 reranker, "
        f"shape **{args.shape}**, max_length 512, float32. Each mode runs its own server process; this "
        "process is the load generator on the same machine (loopback), so both share its CPUs. Every "
        "client sends its next request as soon as the last one is answered, "
        f"for {args.seconds:g} s after {args.warmup:g} s of warm-up; throughput and latency are those of "
        "the requests answered inside the window. Modes: "
        + "; ".join(f"**{m}** = {MODES[m][0]}" for m in modes)
        + f". Batch window {args.batch_wait_ms:g} ms.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in facts.items()) + ".",
        "",
        bench.markdown_table(headers, rows),
    ]
    if ("on", 32) in by and ("off", 32) in by:
        on, off = by[("on", 32)], by[("off", 32)]
        speedup = on.throughput / off.throughput if off.throughput else float("inf")
        met = speedup >= 3 and on.p50_ms <= off.p50_ms and on.errors == 0 and off.errors == 0
        lines += [
            "",
            f"At 32 clients dynamic batching serves **{speedup:.1f}x** the requests of one-at-a-time, p50 "
            f"{on.p50_ms:.0f} ms vs {off.p50_ms:.0f} ms, {on.requests_per_call:.1f} requests per model call. "
            f"Target (>= 3x, p50 no worse, no errors): **{'met' if met else 'not met'}**.",
        ]
    if ("cache", 32) in by and ("on", 32) in by:
        lines += [
            "",
            f"With every pair in the cache, 32 clients get {by[('cache', 32)].throughput:.1f} req/s "
            f"(p50 {by[('cache', 32)].p50_ms:.0f} ms): the HTTP and JSON cost without any model work.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="small", choices=["tiny", "small", "0.6b"])
    parser.add_argument("--clients", default="1,8,32,64", help="comma-separated concurrency levels")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window per level")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each window")
    parser.add_argument("--modes", default="off,on,cache", help=f"any of {','.join(MODES)}")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help=(
            "torch threads in the server (0: torch's default). On a 2-core machine shared with the load "
            "generator, 2 spinning OpenMP threads collapse (10x slower) whenever anything else runs"
        ),
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", default=str(bench.REPO_ROOT / "docs" / "benchmarks.md"), help="'-' writes nothing"
    )
    # Internal: run as a server subprocess.
    parser.add_argument("--serve-model", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--batching", choices=["on", "off"], help=argparse.SUPPRESS)
    parser.add_argument("--cache-size", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_model:
        serve(args)
        return
    bench.quiet_environment()
    args.clients = [int(c) for c in args.clients.split(",") if c.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {unknown}; choose from {list(MODES)}")
    from benchmarks.rerank_bench import model_folder

    model = model_folder(args.shape, args.seed)
    pool = request_pool(args.seed)
    results: list[LevelResult] = []
    for mode in modes:
        results += measure_mode(model, mode, args, pool)
    facts = {"CPU": bench.cpu_model(), "logical CPUs": str(os.cpu_count())}
    text = report(results, args, facts)
    print("\n" + text)
    if args.out != "-":
        bench.replace_markdown_section(Path(args.out), "Serving", text)
        bench.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        raw = bench.RESULTS_DIR / "serve_bench.json"
        raw.write_text(json.dumps([asdict(r) for r in results], indent=2), encoding="utf-8")
        print(f"wrote the 'Serving' section of {args.out} and {raw}")


if __name__ == "__main__":
    main()
