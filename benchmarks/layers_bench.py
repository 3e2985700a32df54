"""Before/after check of a change to the wiring: `patentrank serve` from two checkouts, side by side.

Run from the repository root:
    .venv/bin/python -m benchmarks.layers_bench --before <git-ref> [--seconds 8 --rounds 3]

The checkout at `--before` is put in a temporary git worktree; both servers are the real CLI
(`python -m patentrank serve`) with the same random-weight tiny Qwen3 reranker and embedder, each over
its own copy of one index of the bundled sample corpus (built once, with vectors). Rounds alternate
before/after so that load from elsewhere on the machine falls on both alike. Per round and server:
POST /v1/search (hybrid, rerank 20 candidates) and POST /v1/rerank (8 short documents) at 1 and 4
clients. Tiny models keep the model's share small, so what is measured is the layers around it
(HTTP, thread hops, batching, the pipeline). Results go to the "Layers before/after" section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common as bench

QUERIES = ["图像去噪 深度学习", "lithium battery anode material", "waste heat recovery boiler", "齿轮箱润滑"]
DOCS = [f"passage {i}: a gearbox with an oil pump and a cooling loop, variant {i}" for i in range(8)]


def build_models(folder: Path) -> tuple[Path, Path]:
    from patentrank.testing import build_random_qwen3

    return (
        build_random_qwen3(folder / "reranker", shape="tiny", kind="reranker"),
        build_random_qwen3(folder / "embedder", shape="tiny", kind="embedder"),
    )


def build_index(folder: Path, embedder: Path) -> Path:
    env = {
        **os.environ,
        **bench.QUIET_ENV,
        "PATENTRANK_EMBEDDER_MODEL": str(embedder),
        "PATENTRANK_DEVICE": "cpu",
    }
    sample = bench.REPO_ROOT / "patentrank" / "sample" / "patents.jsonl"
    subprocess.run(
        [sys.executable, "-m", "patentrank", "index", str(sample), "--index", str(folder), "--json"],
        check=True,
        env=env,
        cwd=bench.REPO_ROOT,
        stdout=subprocess.DEVNULL,
    )
    return folder


def start(checkout: Path, index: Path, port: int, models: tuple[Path, Path]) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **bench.QUIET_ENV,
        "PYTHONPATH": str(checkout),  # this checkout's package, ahead of the venv's editable install
        "PATENTRANK_RERANKER_MODEL": str(models[0]),
        "PATENTRANK_EMBEDDER_MODEL": str(models[1]),
        "PATENTRANK_DEVICE": "cpu",
        "PATENTRANK_CACHE_SIZE": "0",
        "PATENTRANK_NUM_THREADS": "1",
    }
    command = [
        sys.executable,
        "-m",
        "patentrank",
        "serve",
        "--index",
        str(index),
        "--port",
        str(port),
        "--no-ui",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, cwd=checkout, env=env, stderr=subprocess.DEVNULL)
    import httpx

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server from {checkout} exited with code {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("the server did not start within 300 s")


async def load(url: str, kind: str, clients: int, seconds: float) -> list[float]:
    import httpx

    latencies: list[float] = []
    stop = time.monotonic() + seconds

    async def client(number: int) -> None:
        async with httpx.AsyncClient(timeout=120) as http:
            i = number
            while time.monotonic() < stop:
                query = QUERIES[i % len(QUERIES)] + f" {i}"  # no two requests alike
                if kind == "search":
                    body = {"query": query, "mode": "hybrid", "rerank": True, "candidates": 20, "top_n": 10}
                    path = "/v1/search"
                else:
                    body, path = {"query": query, "documents": DOCS}, "/v1/rerank"
                began = time.perf_counter()
                response = await http.post(url + path, json=body)
                response.raise_for_status()
                latencies.append((time.perf_counter() - began) * 1000)
                i += clients

    await asyncio.gather(*(client(n) for n in range(clients)))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git ref of the 'before' code (e.g. main~5)")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per load level")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", default="1,4")
    parser.add_argument("--out", default="docs/benchmarks.md", help="'-' for none")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="layers-bench-"))
    before = work / "before"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(before), args.before],
        check=True,
        cwd=bench.REPO_ROOT,
        stdout=subprocess.DEVNULL,
    )
    servers: dict[str, subprocess.Popen[bytes]] = {}
    try:
        models = build_models(work / "models")
        index = build_index(work / "index", models[1])
        checkouts = {"before": before, "after": bench.REPO_ROOT}
        for n, (name, checkout) in enumerate(checkouts.items()):
            copy = work / f"index-{name}"
            shutil.copytree(index, copy)
            servers[name] = start(checkout, copy, 18650 + n, models)
        levels = [int(c) for c in args.clients.split(",")]
        results: dict[tuple[str, str, int], list[float]] = {}
        for _ in range(args.rounds):
            for kind in ("search", "rerank"):
                for clients in levels:
                    for n, name in enumerate(checkouts):
                        url = f"http://127.0.0.1:{18650 + n}"
                        asyncio.run(load(url, kind, clients, 1.0))  # warm-up, unmeasured
                        got = asyncio.run(load(url, kind, clients, args.seconds))
                        results.setdefault((kind, name, clients), []).extend(got)
        report(results, levels, args)
    finally:
        for process in servers.values():
            process.kill()
        subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=bench.REPO_ROOT)
        shutil.rmtree(work, ignore_errors=True)


def report(
    results: dict[tuple[str, str, int], list[float]], levels: list[int], args: argparse.Namespace
) -> None:
    facts = bench.machine_facts(1)
    rows = []
    for kind in ("search", "rerank"):
        for clients in levels:
            cells: list[object] = [kind, clients]
            p50s = {}
            for name in ("before", "after"):
                values = sorted(results[(kind, name, clients)])
                p50s[name] = statistics.median(values)
                p95 = values[int(0.95 * (len(values) - 1))]
                rate = len(values) / (args.seconds * args.rounds)
                cells += [f"{p50s[name]:.1f}", f"{p95:.1f}", f"{rate:.1f}"]
            cells.append(f"{p50s['after'] / p50s['before']:.2f}")
            rows.append(cells)
    headers = [
        "request",
        "clients",
        "before p50 ms",
        "before p95 ms",
        "before req/s",
        "after p50 ms",
        "after p95 ms",
        "after req/s",
        "after/before p50",
    ]
    table = bench.markdown_table(headers, rows)
    body = (
        f"`python -m benchmarks.layers_bench --before {args.before} --seconds {args.seconds:g} "
        f"--rounds {args.rounds}`: `patentrank serve` from the two checkouts, tiny random Qwen3 reranker and "
        "embedder (so the layers around the model dominate), the sample corpus, rounds alternating.\n\n"
        f"CPU: {facts['CPU']}; ISA: {facts['ISA']}; torch {facts['torch']}; 1 torch thread "
        "per server.\n\n" + table + "\n"
    )
    print(body)
    if args.out != "-":
        bench.replace_markdown_section(bench.REPO_ROOT / args.out, "Layers before/after", body)


if __name__ == "__main__":
    main()
