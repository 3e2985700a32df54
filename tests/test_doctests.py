"""The docstring examples of every patentrank module run and print what they show (issue 10).

A module listed in NOT_YET_RUNNABLE still has examples that cannot run (a real model or server
without `# doctest: +SKIP`, a result that is not printed as shown); it is skipped by name, so a new
module is covered from its first commit, and the list only shrinks."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import patentrank
from patentrank.testing import qwen3_tokenizer_dir

MODULES = sorted(info.name for info in pkgutil.walk_packages(patentrank.__path__, "patentrank."))
NOT_YET_RUNNABLE: set[str] = set()
# Examples that use the real Qwen3 tokenizer from ../shared/tokenizers/qwen3 (random-weight models).
NEEDS_SHARED_TOKENIZER = {"patentrank.engine", "patentrank.models.prompt", "patentrank.testing"}
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def test_the_lists_name_real_modules() -> None:
    named = NOT_YET_RUNNABLE | NEEDS_SHARED_TOKENIZER
    assert set(MODULES) >= named, sorted(named - set(MODULES))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if name in NOT_YET_RUNNABLE:
        pytest.skip(f"{name}: its examples cannot run yet (tests/test_doctests.py NOT_YET_RUNNABLE)")
    if name in NEEDS_SHARED_TOKENIZER and qwen3_tokenizer_dir() is None:
        pytest.skip(f"{name}: its examples need the Qwen3 tokenizer in ../shared/tokenizers/qwen3")
    module = importlib.import_module(name)
    monkeypatch.chdir(tmp_path)  # examples that write relative paths write here
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report: list[str] = []
    for test in doctest.DocTestFinder().find(module, name):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


def test_a_wrong_example_fails() -> None:
    """The negative control: an example whose output is wrong is reported."""
    parser = doctest.DocTestParser()
    test = parser.get_doctest(">>> 1 + 1\n3\n", {}, "wrong", None, 0)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(test, out=lambda _: None)
    assert runner.failures == 1
