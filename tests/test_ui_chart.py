"""The Claim chart tab in a real headless Chromium: split, edit, chart, download, combinations, errors.

Set PATENTRANK_UI_SCREENSHOTS=docs/screenshots to refresh docs/screenshots/chart.png.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from patentrank.claims import split_elements
from patentrank.config import Settings
from patentrank.engine import Engine
from patentrank.server import create_app
from patentrank.server.testing import serve_in_thread
from patentrank.ui import mount_ui

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
TIMEOUT_MS = 120_000
SCREENSHOTS = os.environ.get("PATENTRANK_UI_SCREENSHOTS")
REFS = "CN111489305B, US2021118123A1, CN110992292A"


@pytest.fixture(scope="module")
def base_url(
    tiny_reranker_path: Path, tiny_embedder_path: Path, tmp_path_factory
) -> Iterator[tuple[str, Any]]:
    from patentrank import Reranker
    from patentrank.corpus import load_patents, sample_corpus_path
    from patentrank.index.patent_index import PatentIndex
    from patentrank.models.embedder import Embedder
    from patentrank.runtime import Runtime

    embedder = Embedder(str(tiny_embedder_path), device="cpu")
    index = PatentIndex(tmp_path_factory.mktemp("ui-chart") / "ix", embedder=embedder)
    index.add(load_patents(sample_corpus_path()))
    settings = Settings(cache_size=10_000)
    engine = Engine(
        reranker=Reranker(str(tiny_reranker_path), device="cpu"), embedder=embedder, settings=settings
    )
    runtime = Runtime.serving(engine, index)
    app = mount_ui(create_app(runtime, settings))
    with serve_in_thread(app) as url:
        yield url, index


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing (Debian package chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is not installed")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, base_url: tuple[str, Any]) -> Iterator[tuple[Any, list[str]]]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    p = context.new_page()
    dialogs: list[str] = []
    p.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    p.goto(base_url[0] + "/ui/")
    p.locator("#status-line .pr-badge").first.wait_for()
    p.get_by_role("tab", name="Claim chart").click()
    yield p, dialogs
    context.close()


def click_and_wait(p: Any, button: str, output: str) -> Any:
    before = p.locator(f"{output} [data-answer]").first
    previous = before.get_attribute("data-answer") if before.count() else None
    p.locator(button).click()
    p.wait_for_function(
        "([sel, prev]) => { const e = document.querySelector(sel + ' [data-answer]');"
        " return e !== null && e.dataset.answer !== prev; }",
        arg=[output, previous],
    )
    return p.locator(output)


def test_split_edit_chart_download_and_combine(page, base_url, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    p, dialogs = page
    _, index = base_url
    p.locator("#chart-claim textarea").fill("claim 1 of CN113344556A")
    p.locator("#chart-split").click()
    expected = split_elements(index.docstore.get_patent("CN113344556A").claims[0])
    expect(p.locator("#chart-elements textarea")).to_have_value("\n".join(expected))
    edited = [*expected[:3], "<img src=x onerror=alert(1)> a noise residual"]  # the user's own split
    p.locator("#chart-elements textarea").fill("\n".join(edited))
    p.locator("#chart-references textarea").fill(REFS)
    results = click_and_wait(p, "#chart-button", "#chart-results")
    table = results.locator("table.claim-chart")
    assert table.locator("tr").count() == len(edited) + 1
    assert table.locator("tr").first.locator("th").count() == 2 + 3  # #, element, three references
    assert "<img src=x onerror=alert(1)>" in table.inner_text()  # shown as text, never run
    files = p.locator("#chart-files a[href*='claim-chart-']")
    files.first.wait_for()
    hrefs = files.evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert sorted({Path(h.split("?")[0]).suffix for h in hrefs}) == [".csv", ".html", ".xlsx"]
    download = httpx.get(hrefs[0] if hrefs[0].startswith("http") else base_url[0] + hrefs[0], timeout=30)
    assert download.status_code == 200 and len(download.content) > 100
    combos = click_and_wait(p, "#combinations-button", "#combinations-results")
    assert combos.locator("table.combinations tr").count() == 1 + 3  # C(3, 2) pairs
    if SCREENSHOTS:
        target = Path(SCREENSHOTS)
        target.mkdir(parents=True, exist_ok=True)
        p.screenshot(path=str(target / "chart.png"), full_page=True)
    assert dialogs == []


def test_errors_are_shown_in_the_page(page) -> None:
    p, dialogs = page
    p.locator("#chart-claim textarea").fill("A lamp comprising: a base; a bulb")
    p.locator("#chart-references textarea").fill("US0000000X9")
    results = click_and_wait(p, "#chart-button", "#chart-results")
    assert "not in the index" in results.locator(".pr-error").inner_text()
    p.locator("#chart-claim textarea").fill("   ")
    results = click_and_wait(p, "#chart-button", "#chart-results")
    assert "claim is empty" in results.locator(".pr-error").inner_text()
    assert dialogs == []
