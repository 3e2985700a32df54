"""The Gradio UI in a real headless Chromium, served by the real app over the sample corpus (tiny models).

Set PATENTRANK_UI_SCREENSHOTS=docs/screenshots to refresh the documentation's screenshots.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from patentrank.config import PATENT_INSTRUCTION, Settings
from patentrank.engine import Engine
from patentrank.runtime import Runtime
from patentrank.search import SearchRequest
from patentrank.server import create_app
from patentrank.server.testing import serve_in_thread
from patentrank.ui import mount_ui
from patentrank.ui.actions import UiActions
from patentrank.ui.app import EXAMPLE_DOCUMENTS, EXAMPLE_QUERY
from patentrank.ui.export import csv_safe
from patentrank.ui.render import highlight_html
from patentrank.ui.status import status_line

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
API_KEY = "s3cret-key"
XSS_PATENT = "US2022345678A1"
TIMEOUT_MS = 60_000
SCREENSHOTS = os.environ.get("PATENTRANK_UI_SCREENSHOTS")


# ---------------------------------------------------------------- fixtures


def _sync_playwright() -> Any:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing (Debian package chromium; scripts/test installs it as root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is not installed (pip install -e '.[test]')")
    return sync_playwright


@pytest.fixture(scope="module")
def models(tiny_reranker_path: Path, tiny_embedder_path: Path) -> tuple[Any, Any]:
    from patentrank import Reranker
    from patentrank.models.embedder import Embedder

    return Reranker(str(tiny_reranker_path), device="cpu"), Embedder(str(tiny_embedder_path), device="cpu")


@pytest.fixture(scope="module")
def runtime(models: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """What the app serves: an engine, and a pipeline over the sample corpus wired to its batchers."""
    from patentrank.corpus import load_patents, sample_corpus_path
    from patentrank.index.patent_index import PatentIndex
    reranker, embedder = models
    settings = Settings(cache_size=0, rerank_candidates=20)
    index = PatentIndex(tmp_path_factory.mktemp("ui") / "index", embedder=embedder)
    index.add(load_patents(sample_corpus_path()))
    runtime = Runtime.serving(Engine(reranker=reranker, embedder=embedder, settings=settings), index)
    yield runtime
    runtime.close()


@pytest.fixture(scope="module")
def base_url(runtime: Runtime) -> Iterator[str]:
    app = mount_ui(create_app(runtime))
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for the module; every test gets a fresh context (cookies, storage)."""
    sync_playwright = _sync_playwright()
    with sync_playwright() as pw:
        # Playwright gives each launch a fresh temporary profile (it rejects --user-data-dir in args).
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


class Page:
    """A page plus what it saw: dialogs (alert() must never fire) and every requested URL."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.on("request", lambda r: self.requests.append(r.url))


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    yield Page(context.new_page())
    context.close()


def open_ui(page: Page, base_url: str, tab: str | None = None) -> Any:
    p = page.page
    p.goto(base_url + "/ui/")
    p.locator("#status-line .pr-badge").first.wait_for()
    if tab:
        p.get_by_role("tab", name=tab).click()
    return p


def screenshot(p: Any, name: str, tmp_path: Path) -> Path:
    """Every screenshot is taken (1280 wide); it lands in docs only when asked to."""
    target = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{name}.png"
    p.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def expect_value(locator: Any, value: str) -> None:
    from playwright.sync_api import expect

    expect(locator).to_have_value(value, timeout=TIMEOUT_MS)


def click_and_wait(p: Any, button: str, output: str) -> Any:
    """Click, then wait for a new answer in `output` (each answer carries a fresh serial number)."""
    before = p.locator(f"{output} [data-answer]").first
    previous = before.get_attribute("data-answer") if before.count() else None
    p.locator(button).click()
    p.wait_for_function(
        "([sel, prev]) => { const e = document.querySelector(sel + ' [data-answer]');"
        " return e !== null && e.dataset.answer !== prev; }",
        arg=[output, previous],
    )
    return p.locator(output)


def search(
    p: Any, query: str, *, mode: str = "hybrid", rerank: bool = True, jurisdictions: str = "", top_n: int = 10
) -> None:
    p.locator("#search-query textarea").fill(query)
    top = p.locator("#search-top-n input[type=number]")
    if top.input_value() != str(top_n):
        top.fill(str(top_n))
        top.press("Tab")
    p.get_by_label(mode, exact=True).check()
    box = p.locator("#search-rerank input[type=checkbox]")
    if box.is_checked() != rerank:
        box.click()
    if jurisdictions:
        p.get_by_text("Filters", exact=True).click()
        p.get_by_label("Jurisdictions").fill(jurisdictions)
    click_and_wait(p, "#search-button", "#search-results")


def shown_ids(p: Any) -> list[str]:
    return p.locator("#search-results .pr-card").evaluate_all("els => els.map(e => e.dataset.patentId)")


# ---------------------------------------------------------------- without a browser


def test_highlights_escape_each_segment_and_mark_only_the_spans() -> None:
    text = "a <b>gear</b> & <script>x</script> gear"
    last = text.rindex("gear")
    html = highlight_html(text, [(5, 9), (last, last + 4)])
    assert (
        html
        == "a &lt;b&gt;<mark>gear</mark>&lt;/b&gt; &amp; &lt;script&gt;x&lt;/script&gt; <mark>gear</mark>"
    )
    assert highlight_html("abc", [(1, 99), (0, 2)]) == "<mark>ab</mark><mark>c</mark>"


def test_csv_cells_that_a_spreadsheet_would_run_get_an_apostrophe() -> None:
    assert [csv_safe(v) for v in ("=SUM(A1)", "+1", "@x", "plain", "图像", 3)] == [
        "'=SUM(A1)",
        "'+1",
        "'@x",
        "plain",
        "图像",
        3,
    ]


def test_missing_models_are_explained_with_a_fix_and_rerank_says_why(tiny_reranker_path: Path) -> None:
    engine = Engine(
        settings=Settings(cache_size=0),
        load_errors={"reranker": "no model at /models/missing", "embedder": "no embedder is configured"},
    )
    runtime = Runtime.serving(engine)
    runtime.disabled = {"embedder"}  # switched off by settings, as serve_runtime records it
    status = status_line(runtime)
    assert "no model at /models/missing" in status and "PATENTRANK_RERANKER_MODEL" in status
    assert "first-stage" in status, "says what the missing reranker means for search"
    assert 'data-stage="embedder"' in status and "✗ embedder: off" in status
    assert "build an index" in status
    html = UiActions(runtime).rerank("query", "a document")
    assert 'class="pr-error"' in html and "rerank stage is unavailable" in html
    html, csv_path, _ = UiActions(runtime).search("query")
    assert "search stage is unavailable" in html and csv_path is None


def test_root_redirects_to_the_ui(base_url: str) -> None:
    response = httpx.get(base_url + "/", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "/ui/"
    assert httpx.get(base_url + "/health").json()["stages"]["search"] is True


# ---------------------------------------------------------------- in the browser


@pytest.mark.browser
def test_search_shows_the_pipelines_ranking_with_highlights_and_stage_scores(
    page: Page, base_url: str, runtime: Runtime, tmp_path: Path
) -> None:
    p = open_ui(page, base_url)
    assert "49 patents" in p.locator("#status-line").inner_text()
    search(p, "图像去噪 深度学习", mode="lexical", rerank=False)
    expected = runtime.require_pipeline().search(
        SearchRequest("图像去噪 深度学习", mode="lexical", rerank=False, top_n=10)
    )
    assert shown_ids(p) == [r.patent_id for r in expected.results]
    assert shown_ids(p)[0] == "CN113344556A"
    first = p.locator("#search-results .pr-card").first
    assert first.locator(".pr-title").inner_text() == expected.results[0].title  # Chinese intact
    marks = first.locator(".pr-passage mark").all_inner_texts()
    assert marks and all(any(t in m for t in ("图像", "去噪", "深度", "学习")) for m in marks)
    assert "BM25" in first.locator(".pr-stages").inner_text()
    assert "rerank was turned off" in p.locator("#search-results .pr-stageline").inner_text()

    search(p, "图像去噪 深度学习", mode="hybrid", rerank=True, top_n=5)
    stage_line = p.locator("#search-results .pr-stageline").inner_text()
    assert all(f"✓ {stage}" in stage_line for stage in ("lexical", "dense", "rerank"))
    card_text = p.locator("#search-results .pr-card").first.inner_text()
    assert "rank before rerank" in card_text and "rerank " in card_text and "dense " in card_text
    assert len(shown_ids(p)) == 5
    scores = [float(s) for s in p.locator("#search-results .pr-score").all_inner_texts()]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    screenshot(p, "search", tmp_path)
    assert page.dialogs == []


@pytest.mark.browser
def test_search_by_publication_number_excludes_the_patent_and_cuts_at_its_priority(
    page: Page, base_url: str
) -> None:
    p = open_ui(page, base_url)
    search(p, "cn 113344556a", mode="lexical", rerank=False)
    notice = p.locator("#search-results .pr-notice").first.inner_text()
    assert "Searching by patent CN113344556A" in notice
    cutoff = re.search(r"dated before (\d{4}-\d\d-\d\d)", notice)
    assert cutoff, "a search by patent is cut off at its priority date"
    ids = shown_ids(p)
    assert ids and "CN113344556A" not in ids
    facts = p.locator("#search-results .pr-facts").all_inner_texts()
    priorities = [re.search(r"priority (\S+)", f).group(1) for f in facts]  # type: ignore[union-attr]
    assert all(d < cutoff.group(1) for d in priorities)


@pytest.mark.browser
def test_filters_restrict_results_and_bad_input_is_an_error_in_the_page(page: Page, base_url: str) -> None:
    p = open_ui(page, base_url)
    search(p, "battery cooling gear image", mode="lexical", rerank=False, jurisdictions="US")
    ids = shown_ids(p)
    assert ids and all(i.startswith("US") for i in ids)
    p.get_by_label("Date cutoff (before, YYYY-MM-DD)").fill("31/12/2020")
    click_and_wait(p, "#search-button", "#search-results")
    error = p.locator("#search-results .pr-error")
    assert "YYYY-MM-DD" in error.inner_text() and "Traceback" not in p.content()


@pytest.mark.browser
def test_results_export_as_csv_and_jsonl(page: Page, base_url: str, tmp_path: Path) -> None:
    p = open_ui(page, base_url)
    search(p, "heat exchanger", mode="lexical", rerank=False)
    ids = shown_ids(p)
    assert ids
    files = {}
    for kind in ("csv", "jsonl"):
        with p.expect_download() as download:
            p.locator(f"#export-{kind}").click()
        files[kind] = tmp_path / f"results.{kind}"
        download.value.save_as(files[kind])
    with files["csv"].open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["patent_id"] for r in rows] == ids
    assert rows[0]["rank"] == "1" and rows[0]["passage"]
    records = [json.loads(line) for line in files["jsonl"].read_text(encoding="utf-8").splitlines()]
    assert [r["patent_id"] for r in records] == ids and records[0]["query"] == "heat exchanger"


@pytest.mark.browser
def test_patent_text_with_html_and_script_renders_as_literal_text(page: Page, base_url: str) -> None:
    p = open_ui(page, base_url)
    search(p, "sanitising user-supplied HTML script alert bold", mode="lexical", rerank=False)
    card = p.locator(f'#search-results .pr-card[data-patent-id="{XSS_PATENT}"]')
    title = card.locator(".pr-title")
    assert "<script>alert(1)</script>" in title.inner_text() and "<b>bold</b>" in title.inner_text()
    assert title.locator("b, script").count() == 0
    assert p.locator("#search-results script, #search-results .pr-passage b").count() == 0
    # The same through the Rerank tab, with markup typed by the user.
    p.get_by_role("tab", name="Rerank").click()
    p.locator("#rerank-query textarea").fill("<img src=x onerror=alert(2)>")
    p.locator("#rerank-documents textarea").fill('<b>bold</b>\n<img src=x onerror="alert(3)">')
    click_and_wait(p, "#rerank-button", "#rerank-results")
    docs = p.locator("#rerank-results .pr-rerank-doc").all_inner_texts()
    assert sorted(docs) == sorted(["<b>bold</b>", '<img src=x onerror="alert(3)">'])
    assert p.locator("#rerank-results img, #rerank-results b").count() == 0
    p.wait_for_timeout(300)  # an onerror handler would have fired by now
    assert page.dialogs == []
    if SCREENSHOTS:
        p.get_by_role("tab", name="Search").click()
        card.screenshot(path=str(Path(SCREENSHOTS) / "escaping.png"))
    # Negative control: the same title inserted raw does create a <b> and does fire alert().
    raw_title = title.inner_text()
    p.set_content(f'<div id="raw">{raw_title}</div>')
    assert p.locator("#raw b").count() == 1
    p.wait_for_timeout(300)
    assert page.dialogs == ["1"], "the dialog recorder catches a script that runs"


@pytest.mark.browser
def test_rerank_tab_scores_the_original_designs_example_sorted(
    page: Page, base_url: str, models: tuple[Any, Any], tmp_path: Path
) -> None:
    p = open_ui(page, base_url, tab="Rerank")
    p.locator("#rerank-example").click()
    expect_value(p.locator("#rerank-query textarea"), EXAMPLE_QUERY)
    click_and_wait(p, "#rerank-button", "#rerank-results")
    items = p.locator("#rerank-results .pr-rerank-item")
    assert items.count() == 4
    heads = p.locator("#rerank-results .pr-rerank-score").all_inner_texts()
    assert all(re.fullmatch(r"Score: [01]\.\d{4}", h) for h in heads)
    shown = [float(h.split()[1]) for h in heads]
    assert shown == sorted(shown, reverse=True)
    documents = EXAMPLE_DOCUMENTS.splitlines()
    expected = models[0].score(EXAMPLE_QUERY, documents, instruction=PATENT_INSTRUCTION)
    order = sorted(range(4), key=lambda i: -expected[i])
    assert p.locator("#rerank-results .pr-rerank-doc").all_inner_texts() == [documents[i] for i in order]
    assert shown == pytest.approx([expected[i] for i in order], abs=1e-4)
    assert p.locator("#rerank-results .pr-chart-row").count() == 4
    screenshot(p, "rerank", tmp_path)


@pytest.mark.browser
def test_rerank_errors_are_shown_in_the_page(page: Page, base_url: str) -> None:
    p = open_ui(page, base_url, tab="Rerank")
    p.locator("#rerank-documents textarea").fill("a document")
    click_and_wait(p, "#rerank-button", "#rerank-results")
    assert "enter a query" in p.locator("#rerank-results .pr-error").inner_text()
    p.locator("#rerank-query textarea").fill("gear")
    p.locator("#rerank-documents textarea").fill("  \n\n ")
    click_and_wait(p, "#rerank-button", "#rerank-results")
    assert "enter at least one candidate document" in p.locator("#rerank-results .pr-error").inner_text()
    assert "Traceback" not in p.content()


@pytest.mark.browser
def test_upload_reports_added_and_rejected_lines_and_the_patents_become_searchable(
    page: Page, base_url: str, tmp_path: Path
) -> None:
    upload = tmp_path / "new-patents.jsonl"
    good = {
        "id": "US2030111111A1",
        "title": "Zeppelin mooring mast with a rotating nose cone",
        "abstract": "A mooring mast for airships whose nose cone rotates with the wind.",
        "priority_date": "2029-01-02",
    }
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({"id": "CN2030222222A", "title": "一种飞艇系留塔", "abstract": "飞艇系留塔的旋转锥。"}),
        json.dumps({"title": "no id here"}),
    ]
    upload.write_text("\n".join(lines) + "\n", encoding="utf-8")
    p = open_ui(page, base_url, tab="Index")
    p.locator("input[type=file]").set_input_files(str(upload))
    summary = click_and_wait(p, "#ingest-button", "#ingest-summary").locator(".pr-ingest")
    assert summary.locator('[data-kind="added"] b').inner_text() == "2"
    assert summary.locator('[data-kind="rejected"] b').inner_text() == "2"
    rejects = summary.locator(".pr-rejects tbody tr").all_inner_texts()
    assert rejects[0].startswith("line 2") and "JSON" in rejects[0]
    assert rejects[1].startswith("line 4") and "missing id" in rejects[1]
    assert "51" in p.locator("#index-info").inner_text()  # 49 sample patents + 2
    assert "51 patents" in p.locator("#status-line").inner_text()
    screenshot(p, "index", tmp_path)
    p.get_by_role("tab", name="Search").click()
    search(p, "zeppelin mooring mast", mode="lexical", rerank=False)
    assert shown_ids(p)[0] == "US2030111111A1"


@pytest.mark.browser
def test_the_page_contacts_nothing_outside_the_server(page: Page, base_url: str) -> None:
    p = open_ui(page, base_url)
    search(p, "gear", mode="lexical", rerank=False)
    p.get_by_role("tab", name="Index").click()
    p.wait_for_load_state("networkidle")
    outside = [u for u in page.requests if not u.startswith((base_url, "data:", "blob:"))]
    assert outside == []
    assert any("/ui/" in u for u in page.requests), "the recorder saw the page's own requests"


# ---------------------------------------------------------------- API key mode


@pytest.fixture(scope="module")
def keyed_url(models: tuple[Any, Any]) -> Iterator[str]:
    settings = Settings(cache_size=0, api_key=API_KEY, embedder_model="none")
    engine = Engine(
        reranker=models[0],
        settings=settings,
        load_errors={"embedder": "no embedder is configured (PATENTRANK_EMBEDDER_MODEL=none)"},
    )
    runtime = Runtime.serving(engine)
    runtime.disabled = {"embedder"}
    with serve_in_thread(mount_ui(create_app(runtime, settings))) as url:
        yield url
    engine.close()


def test_with_an_api_key_gradio_and_the_api_refuse_callers_without_it(keyed_url: str) -> None:
    with httpx.Client(base_url=keyed_url, timeout=30) as client:
        assert client.get("/ui/config").status_code == 401
        assert client.post("/ui/gradio_api/queue/join", json={}).status_code == 401
        assert client.get("/ui/gradio_api/file=" + __file__).status_code == 401
        assert client.post("/ui/gradio_api/upload", files={"files": ("a.jsonl", b"{}")}).status_code == 401
        bearer = {"Authorization": f"Bearer {API_KEY}"}
        assert client.get("/ui/config", headers=bearer).status_code == 401, "the page needs its login"
        body = {"query": "gear", "documents": ["a gear"]}
        assert client.post("/v1/rerank", json=body).status_code == 401
        assert client.post("/v1/rerank", json=body, headers=bearer).status_code == 200
        assert client.post("/ui/login", data={"username": "x", "password": "wrong"}).status_code == 400
        assert client.post("/ui/login", data={"username": "x", "password": API_KEY}).status_code == 200
        assert client.get("/ui/config").status_code == 200, "the login cookie opens the page's routes"


@pytest.mark.browser
def test_with_an_api_key_the_page_asks_for_it_then_works(page: Page, keyed_url: str, tmp_path: Path) -> None:
    p = page.page
    p.goto(keyed_url + "/ui/")
    p.get_by_text("API key (PATENTRANK_API_KEY)").wait_for()
    screenshot(p, "login", tmp_path)
    p.get_by_label("username").fill("examiner")
    p.get_by_label("password").fill("not-the-key")
    p.get_by_role("button", name="Login").click()
    p.get_by_text("Incorrect Credentials").wait_for()
    p.get_by_label("username").fill("examiner")
    p.get_by_label("password").fill(API_KEY)
    p.get_by_role("button", name="Login").click()
    p.locator("#status-line .pr-badge").first.wait_for()
    status = p.locator("#status-line").inner_text()
    assert "✗ index" in status and "✗ embedder: off" in status
    p.get_by_role("tab", name="Rerank").click()
    p.locator("#rerank-example").click()
    expect_value(p.locator("#rerank-query textarea"), EXAMPLE_QUERY)
    click_and_wait(p, "#rerank-button", "#rerank-results")
    assert p.locator("#rerank-results .pr-rerank-item").count() == 4
