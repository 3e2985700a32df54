"""Issue 15, finding 8: one install for scripts/test and scripts/run, no deprecation noise from the
build, and a model-load hint that names options that exist."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from patentrank.cli import app
from patentrank.errors import ModelLoadError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A copy of scripts/setup and pyproject.toml with a .venv whose python only logs its arguments."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "setup", tmp_path / "scripts" / "setup")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text('#!/bin/sh\necho "$@" >> "$(dirname "$0")/../calls.log"\n')
    python.chmod(0o755)
    return tmp_path


def _installs(sandbox: Path, *extras: str) -> int:
    """How many pip runs `scripts/setup extras...` made."""
    log = sandbox / ".venv" / "calls.log"
    before = len(log.read_text().splitlines()) if log.exists() else 0
    subprocess.run([str(sandbox / "scripts" / "setup"), *extras], check=True, capture_output=True)
    after = len(log.read_text().splitlines()) if log.exists() else 0
    return after - before


def test_scripts_run_after_scripts_test_does_not_reinstall(sandbox: Path) -> None:
    assert _installs(sandbox, "test") == 3  # pip itself, torch, the package with the test extra
    assert _installs(sandbox) == 0  # what scripts/run asks for: covered by the test install
    assert _installs(sandbox, "test") == 0
    assert _installs(sandbox, "milvus") == 3  # an extra not installed yet: installs (the control)
    assert _installs(sandbox, "milvus") == 0


def test_a_changed_pyproject_reinstalls(sandbox: Path) -> None:
    assert _installs(sandbox) == 3
    with (sandbox / "pyproject.toml").open("a") as f:
        f.write("\n# changed\n")
    assert _installs(sandbox) == 3


def test_the_build_prints_no_deprecation_banner(tmp_path: Path) -> None:
    """What pip runs to install the package: it printed ~45 lines of `project.license` banners."""
    code = "from setuptools import build_meta; build_meta.prepare_metadata_for_build_editable"
    code += f"({str(tmp_path)!r})"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Deprecat" not in result.stderr and "!!" not in result.stderr, result.stderr[-2000:]


def test_the_model_load_hint_names_options_serve_has(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from patentrank.models import loading

    monkeypatch.setattr(loading, "_hub_reachable", lambda: False)
    with pytest.raises(ModelLoadError) as error:
        loading.locate_model("Qwen/Not-In-The-Cache-0.6B", "reranker")
    hint = str(error.value)
    assert "--model " not in hint and "huggingface-cli" not in hint
    assert (
        "--reranker-model DIR" in hint and "PATENTRANK_RERANKER_MODEL=DIR" in hint and "hf download" in hint
    )
    serve_help = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200).output
    assert "--reranker-model" in serve_help
