"""`build_ui`: the Gradio page (Search, Rerank, Index tabs); `mount_ui`: it in the server at /ui."""

from __future__ import annotations

import hmac
import itertools
from typing import Any

from patentrank.config import DEFAULT_INSTRUCTION, PATENT_INSTRUCTION, Settings
from patentrank.runtime import Runtime
from patentrank.ui import style
from patentrank.ui.actions import UiActions
from patentrank.ui.chart_tab import chart_tab

INSTRUCTION_PRESETS: dict[str, str] = {
    "Prior art (patent default)": PATENT_INSTRUCTION,
    "Claim features (novelty)": "Given a patent claim, retrieve patent passages that disclose the "
    "features of the claim",
    "Chinese and English": "Given a patent search query in Chinese or English, retrieve patent passages "
    "in either language that describe the same technical solution",
    "Freedom to operate": "Given a description of a product, retrieve patent claims that could cover it",
    "Model card default (web search)": DEFAULT_INSTRUCTION,
}
EXAMPLE_QUERY = "一种基于深度学习的图像去噪方法"
EXAMPLE_DOCUMENTS = "\n".join(
    [
        "本发明公开了一种卷积神经网络结构用于低光照图像增强。",
        "提出了一种Transformer架构在医学图像分割中的应用。",
        "本技术方案采用U-Net结合注意力机制实现图像噪声去除。",
        "一种传统的非局部均值滤波算法用于图像平滑处理。",
    ]
)
INGEST_TYPES = [".jsonl", ".json", ".csv", ".tsv", ".gz"]
MAX_UPLOAD = "1gb"  # larger corpora: `patentrank index FILE` streams them without a browser upload
LOGIN_MESSAGE = (
    "This server requires its API key. Sign in with any user name and the API key "
    "(PATENTRANK_API_KEY) as the password."
)


_answers = itertools.count(1)


def numbered(html: str) -> str:
    """Wrap an answer with a serial number, so the page (and a test) can tell a new answer from the last
    one even when their content is identical."""
    return f'<div class="pr-answer" data-answer="{next(_answers)}">{html}</div>'


def _preset_picker(gr: Any, default: str) -> tuple[Any, Any]:
    """A preset dropdown that fills an editable instruction box."""
    names = list(INSTRUCTION_PRESETS)
    chosen = next((n for n, text in INSTRUCTION_PRESETS.items() if text == default), None)
    preset = gr.Dropdown(names, value=chosen, label="Instruction preset", scale=1)
    box = gr.Textbox(default, label="Instruction (tells the models what 'relevant' means)", lines=2, scale=3)
    preset.change(lambda name: INSTRUCTION_PRESETS.get(name, default), preset, box, api_visibility="private")
    return preset, box


def _search_tab(gr: Any, actions: UiActions, settings: Settings) -> None:
    with gr.Row():
        query = gr.Textbox(
            label="Query",
            placeholder="Free text, e.g. 一种基于深度学习的图像去噪方法, or a publication number such as "
            "CN113344556A to find its prior art",
            lines=2,
            scale=4,
            elem_id="search-query",
        )
        with gr.Column(scale=1, min_width=200):
            mode = gr.Radio(["lexical", "dense", "hybrid"], value="hybrid", label="Retrieval mode")
            rerank = gr.Checkbox(True, label="Rerank with the reranker", elem_id="search-rerank")
            collapse = gr.Checkbox(
                True, label="One result per invention (families, twins)", elem_id="search-collapse"
            )
    with gr.Row():
        top_n = gr.Slider(1, 50, value=10, step=1, label="Results (top_n)", scale=2, elem_id="search-top-n")
        button = gr.Button("Search", variant="primary", scale=1, elem_id="search-button")
    with gr.Accordion("Filters", open=False):
        with gr.Row():
            before = gr.Textbox(label="Date cutoff (before, YYYY-MM-DD)", placeholder="2020-01-01")
            date_field = gr.Radio(["priority", "filing", "publication"], value="priority", label="Date type")
        with gr.Row():
            codes = gr.Textbox(label="IPC/CPC prefixes", placeholder="G06T, H04L9")
            languages = gr.Textbox(label="Languages", placeholder="zh, en")
            jurisdictions = gr.Textbox(label="Jurisdictions", placeholder="CN, US, EP")
    with gr.Accordion("Instruction", open=False), gr.Row():
        _, instruction = _preset_picker(gr, settings.instruction)
    results = gr.HTML(elem_id="search-results", js_on_load=None)
    with gr.Row():
        csv_file = gr.DownloadButton("Download CSV", interactive=False, size="sm", elem_id="export-csv")
        jsonl_file = gr.DownloadButton("Download JSONL", interactive=False, size="sm", elem_id="export-jsonl")

    def run(
        q: str,
        instr: str,
        bef: str,
        field: str,
        cds: str,
        lng: str,
        jur: str,
        md: str,
        rr: bool,
        n: float,
        cl: bool,
    ) -> tuple[str, Any, Any]:
        html, csv_path, jsonl_path = actions.search(
            q,
            instruction=instr,
            date_before=bef,
            date_field=field,
            codes=cds,
            languages=lng,
            jurisdictions=jur,
            mode=md,
            rerank=rr,
            top_n=int(n),
            collapse=cl,
        )
        return (
            numbered(html),
            gr.DownloadButton(value=csv_path, interactive=csv_path is not None),
            gr.DownloadButton(value=jsonl_path, interactive=jsonl_path is not None),
        )

    inputs = [query, instruction, before, date_field, codes, languages, jurisdictions, mode, rerank, top_n]
    inputs += [collapse]  # run()'s last argument
    for trigger in (button.click, query.submit):
        trigger(run, inputs, [results, csv_file, jsonl_file], api_visibility="private", concurrency_limit=8)


def _rerank_tab(gr: Any, actions: UiActions, settings: Settings) -> None:
    gr.Markdown("Score candidate documents against a query with the reranker; best first.")
    query = gr.Textbox(label="Query", lines=1, elem_id="rerank-query")
    documents = gr.Textbox(label="Candidate documents, one per line", lines=6, elem_id="rerank-documents")
    with gr.Accordion("Instruction", open=False), gr.Row():
        _, instruction = _preset_picker(gr, settings.instruction)
    with gr.Row():
        example = gr.Button("Load the example", size="sm", elem_id="rerank-example")
        button = gr.Button("Rerank", variant="primary", elem_id="rerank-button")
    results = gr.HTML(elem_id="rerank-results", js_on_load=None)
    example.click(
        lambda: (EXAMPLE_QUERY, EXAMPLE_DOCUMENTS), None, [query, documents], api_visibility="private"
    )

    def rerank(q: str, docs: str, instr: str, progress: Any = gr.Progress()) -> str:
        return numbered(actions.rerank(q, docs, instr, progress))  # many documents: an estimate first

    button.click(
        rerank,
        [query, documents, instruction],
        results,
        api_visibility="private",
        concurrency_limit=8,
    )


def _index_tab(gr: Any, actions: UiActions, status: Any) -> Any:
    gr.Markdown(
        "Add patents from a JSON Lines or CSV file (one patent per line or row: `id`, `title`, `abstract`, "
        "`claims`, dates, `codes`...). A patent already in the index is updated; bad lines are skipped "
        "and listed with their line numbers."
    )
    upload = gr.File(label="Patents file (.jsonl, .csv, optionally .gz)", file_types=INGEST_TYPES)
    button = gr.Button("Add to the index", variant="primary", elem_id="ingest-button")
    summary = gr.HTML(elem_id="ingest-summary", js_on_load=None)
    gr.Markdown("### Index and models")
    info = gr.HTML(elem_id="index-info", js_on_load=None)

    def ingest(path: str | None, progress: Any = gr.Progress()) -> tuple[str, str, str]:
        summary, info, status = actions.ingest(path, progress)
        return numbered(summary), info, status

    button.click(ingest, upload, [summary, info, status], api_visibility="private", concurrency_limit=1)
    return info


def build_ui(runtime: Runtime) -> Any:
    """The Gradio page over a serving `runtime`: Search, Rerank, Index and Claim chart tabs under a
    status line.

    Every tab calls the runtime's own objects (its pipeline, the engine's rerank batcher, its index),
    so the page and the HTTP API give the same answers. Pass `style.CSS` and `style.theme()` when
    launching it on its own; `mount_ui` does.

    Example:
        >>> from patentrank.engine import Engine
        >>> demo = build_ui(Runtime.serving(Engine(settings=Settings(cache_size=0))))
        >>> type(demo).__name__
        'Blocks'
    """
    import gradio as gr

    settings = runtime.settings
    actions = UiActions(runtime)
    with gr.Blocks(title="patentrank", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown("## patentrank · patent search with Qwen3 reranking")
        status = gr.HTML(elem_id="status-line", js_on_load=None)
        with gr.Tabs():
            with gr.Tab("Search", id="search"):
                _search_tab(gr, actions, settings)
            with gr.Tab("Rerank", id="rerank"):
                _rerank_tab(gr, actions, settings)
            with gr.Tab("Index", id="index"):
                info = _index_tab(gr, actions, status)
            with gr.Tab("Claim chart", id="chart"):
                chart_tab(gr, runtime, numbered)
        demo.load(
            lambda: (actions.status(), actions.index_info()), None, [status, info], api_visibility="private"
        )
    return demo


def mount_ui(app: Any, path: str = "/ui") -> Any:
    """Mount the page over the app's runtime (`create_app`'s) at `path` and redirect `/` there; with
    an API key set, Gradio asks for it.

    The browser cannot send the HTTP API's Bearer header, so the page has Gradio's own login: any
    user name, the API key as the password (compared in constant time); the session cookie then
    covers the page and its event calls. Nothing outside the server is contacted: analytics are off,
    fonts are Gradio's bundled ones or the system's, and server-side rendering (Node) is not used.

    Example:
        >>> from patentrank.engine import Engine
        >>> from patentrank.server import create_app
        >>> app = mount_ui(create_app(Engine(settings=Settings(cache_size=0))))
        >>> sorted(r.path for r in app.routes if getattr(r, "path", "") in ("/", "/ui"))
        ['/', '/ui']
    """
    import gradio as gr
    from fastapi.responses import RedirectResponse

    runtime: Runtime = app.state.runtime
    api_key = app.state.settings.api_key
    auth = None
    if api_key:
        expected = api_key.encode("utf-8")

        def auth(username: str, password: str) -> bool:
            return hmac.compare_digest((password or "").encode("utf-8"), expected)

    gr.mount_gradio_app(
        app,
        build_ui(runtime),
        path=path,
        auth=auth,
        auth_message=LOGIN_MESSAGE if api_key else None,
        footer_links=[],
        run_history=False,
        ssr_mode=False,
        mcp_server=False,
        enable_monitoring=False,
        pwa=False,
        show_error=False,
        max_file_size=MAX_UPLOAD,
        theme=style.theme(),
        css=style.CSS,
    )
    root = path.rstrip("/")
    if root and not any(getattr(route, "path", None) == "/" for route in app.routes):

        async def to_ui() -> RedirectResponse:
            return RedirectResponse(root + "/", status_code=307)

        app.add_api_route("/", to_ui, include_in_schema=False)
    return app
