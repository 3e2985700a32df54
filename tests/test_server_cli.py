"""`patentrank serve` as a real process: a model that fails to load is one line; search, the models
that loaded and the web page serve."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from patentrank.server.testing import free_port

# Until patentrank/cli/__init__.py imports the module, register `serve` explicitly.
LAUNCH = "import patentrank.cli.serve; from patentrank.cli.app import app; app()"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCH, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


def test_help_lists_the_options() -> None:
    process = run_cli("serve", "--help")
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    for option in ("--host", "--port", "--index", "--reranker-model", "--embedder-model"):
        assert option in out


def test_serve_degrades_gracefully_when_a_model_fails(tiny_reranker_path: Path, tmp_path: Path) -> None:
    port = free_port()
    process = run_cli(
        "serve",
        "--port",
        str(port),
        "--reranker-model",
        str(tiny_reranker_path),
        "--embedder-model",
        str(tmp_path / "no-such-embedder"),
        "--device",
        "cpu",
        "--index",
        str(tmp_path / "ix"),
        "--log-level",
        "warning",
        env={"PATENTRANK_API_KEY": "k", "PATENTRANK_RERANKER_ALIASES": "qwen3-reranker-0.6b"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                health = httpx.get(f"{url}/health", headers={"Authorization": "Bearer k"}).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.2)
        assert health["status"] == "degraded" and health["failed"] == ["embedder"]
        assert httpx.get(f"{url}/health").json() == {"status": "degraded"}  # no paths without the key
        assert "does not exist" in health["models"]["embedder"]["error"]
        headers = {"Authorization": "Bearer k"}
        payload = {
            "model": "qwen3-reranker-0.6b",
            "query": "gear",
            "documents": ["a gearbox"],
            "return_documents": True,
        }
        ranked = httpx.post(f"{url}/rerank", json=payload, headers=headers)
        assert ranked.status_code == 200 and ranked.json()["results"][0]["document"]["text"] == "a gearbox"
        missing = httpx.post(f"{url}/v1/embeddings", json={"input": "gear"}, headers=headers)
        assert missing.status_code == 503 and "--embedder-model" in missing.json()["error"]["message"]
        assert health["stages"]["search"] is True
        search = httpx.post(f"{url}/v1/search", json={"query": "gear"}, headers=headers, timeout=60)
        assert search.status_code == 200, search.text
        assert httpx.get(f"{url}/ui/", timeout=60).status_code == 200  # the page (its login, with a key)
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and warnings[0].startswith("warning: embedder not loaded"), err
    assert "Traceback" not in err


def test_bad_setting_is_one_line_and_exit_2() -> None:
    process = run_cli("serve", "--device", "tpu")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert err.strip().startswith("error: invalid setting --device:") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args", [("search", "gear"), ("stats",), ("index", "x.jsonl"), ("rerank", "q", "d"), ("serve",)]
)
def test_a_bad_environment_value_is_one_line_naming_the_variable(args: tuple[str, ...]) -> None:
    """Every command reads PATENTRANK_*: a bad value exits 2 naming the variable, never a traceback."""
    process = run_cli(*args, env={"PATENTRANK_RERANK_CANDIDATES": "0"})
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2, err
    assert err.strip() == (
        "error: invalid setting PATENTRANK_RERANK_CANDIDATES (rerank_candidates): "
        "Input should be greater than or equal to 1"
    )


def test_the_command_makes_openmp_threads_sleep_unless_told_otherwise() -> None:
    """Set before torch loads (docs/benchmarks.md, "Threads under load"); a user's value wins."""
    probe = (
        "import os, sys, patentrank.cli.app; assert 'torch' not in sys.modules; "
        "print(os.environ['OMP_WAIT_POLICY'])"
    )

    def policy(env: dict[str, str]) -> str:
        command = [sys.executable, "-c", probe]
        return subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout.strip()

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert policy(env) == "PASSIVE"
    assert policy({**env, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"
