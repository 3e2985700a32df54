"""The web page's Claim chart tab: split a claim (editable), chart it against references or a
search's results, list the best combinations, and download the chart as CSV, XLSX or HTML.

Charts go through the engine (`scorers_from_engine`), so the page, `/v1/claim-chart` and
`/v1/rerank` share one batcher and one score cache.
"""

from __future__ import annotations

import html
import tempfile
import uuid
from pathlib import Path
from typing import Any

from patentrank.chart_export import chart_table_html, write_chart
from patentrank.claim_chart import ChartRequest, ClaimChart, ClaimCharter, scorers_from_engine
from patentrank.combinations import combine
from patentrank.config import Settings
from patentrank.errors import InputError
from patentrank.runtime import Runtime
from patentrank.search import SearchRequest
from patentrank.ui.actions import attempt, parse_lines, split_list
from patentrank.ui.render import error_html

# The page's shared stylesheet is not this tab's to edit, so the table brings its own rules.
CHART_CSS = (
    "<style>.claim-chart{border-collapse:collapse;font-size:13px}"
    ".claim-chart td,.claim-chart th{border:1px solid #bbb;padding:4px;vertical-align:top;max-width:26em}"
    ".claim-chart td.covered{background:#dcf5e3}.claim-chart td.open{background:#fde8e7}</style>"
)


class ChartActions:
    """The tab's handlers over a serving runtime; each returns HTML (and file paths) for the page."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.engine = runtime.engine
        self.settings: Settings = runtime.settings
        self.folder = Path(tempfile.mkdtemp(prefix="patentrank-charts-"))

    def _charter(self) -> ClaimCharter:
        pipeline = self.runtime.require_pipeline()
        return ClaimCharter(pipeline.index.docstore, scorers_from_engine(self.engine), self.settings)

    def split(self, claim: str) -> tuple[str, str]:
        """(elements one per line, message HTML) for the editable split."""

        def go() -> str:
            charter = ClaimCharter(self.runtime.require_pipeline().index.docstore, None, self.settings)  # type: ignore[arg-type]
            text, _ = charter.resolve_claim(claim)
            return "\n".join(charter.elements_of(text, None))

        elements, error = attempt("split", go)
        return (elements or "", error_html(error) if error else "")

    def _chart(
        self, claim: str, references: str, search_top_n: int, elements: str, threshold: float
    ) -> ClaimChart:
        charter = self._charter()
        ids = split_list(references)
        if not ids:
            if not search_top_n:
                raise InputError("enter reference publication numbers, or a number of search results to use")
            text, _ = charter.resolve_claim(claim)
            if search_top_n > self.settings.max_chart_references:
                raise InputError(
                    f"{search_top_n} search results is more than the limit of "
                    f"{self.settings.max_chart_references} references (PATENTRANK_MAX_CHART_REFERENCES)"
                )
            found = self.runtime.require_pipeline().search(
                SearchRequest(text, top_n=int(search_top_n), highlight=False)
            )
            ids = [r.patent_id for r in found.results]
        chosen = parse_lines(elements) or None
        return charter.chart(ChartRequest(claim, ids, chosen, None, float(threshold)))

    def chart(
        self, claim: str, references: str, search_top_n: int, elements: str, threshold: float
    ) -> tuple[str, list[str] | None]:
        """The chart table and the CSV/XLSX/HTML downloads."""

        def go() -> tuple[str, list[str]]:
            result = self._chart(claim, references, search_top_n, elements, threshold)
            stem = self.folder / f"claim-chart-{uuid.uuid4().hex[:8]}"
            files = [str(write_chart(result, stem.with_suffix(s))) for s in (".csv", ".xlsx", ".html")]
            return CHART_CSS + _summary(result) + chart_table_html(result), files

        outcome, error = attempt("claim chart", go)
        return outcome if outcome is not None else (error_html(error or "claim chart failed"), None)

    def combinations(
        self, claim: str, references: str, search_top_n: int, elements: str, threshold: float, size: int
    ) -> str:
        def go() -> str:
            result = self._chart(claim, references, search_top_n, elements, threshold)
            return CHART_CSS + combinations_html(result, combine(result, size=int(size), limit=10))

        outcome, error = attempt("combinations", go)
        return outcome if outcome is not None else error_html(error or "combination search failed")


def _summary(chart: ClaimChart) -> str:
    esc = html.escape
    refs = ", ".join(f"{esc(r.id)} {r.coverage:.0%}" for r in chart.references)
    source = f"{esc(chart.source)} · " if chart.source else ""
    return (
        f'<p class="pr-notice">{source}{len(chart.elements)} elements · '
        f"covered at score ≥ {chart.threshold:g} · "
        f"references by coverage: {refs} · {chart.reranked_pairs} reranked pairs, {chart.took_ms:.0f} ms</p>"
    )


def combinations_html(chart: ClaimChart, combos: list[Any]) -> str:
    """One row per combination: references (primary first), covered elements and who covers which."""
    esc = html.escape
    rows = []
    for rank, combo in enumerate(combos, 1):
        owners = "; ".join(f"{i}: {esc(ref)}" for i, ref in combo.by_element.items())
        missing = ", ".join(str(i) for i in combo.uncovered) or "none"
        rows.append(
            f"<tr><td>{rank}</td><td>{' + '.join(esc(r) for r in combo.references)}</td>"
            f"<td>{len(combo.covered)}/{len(chart.elements)}</td><td>{combo.score:.2f}</td>"
            f"<td>{owners}</td><td>{missing}</td></tr>"
        )
    return (
        "<table class='claim-chart combinations'><tr><th>#</th><th>References</th><th>Covered</th>"
        f"<th>Score</th><th>Element: reference</th><th>Not covered</th></tr>{''.join(rows)}</table>"
    )


def chart_tab(gr: Any, runtime: Runtime, numbered: Any) -> None:
    """Build the tab's components inside the current `gr.Tab`."""
    actions = ChartActions(runtime)
    gr.Markdown(
        "Chart a claim against prior art: each element of the claim against the passage of each reference "
        "that best discloses it (reranker score; shaded green when covered). Write the claim, or "
        "`claim 1 of CN113344556A` to take it from the index; edit the split if you like."
    )
    claim = gr.Textbox(label="Claim", lines=4, elem_id="chart-claim")
    with gr.Row():
        split = gr.Button("Split into elements", size="sm", elem_id="chart-split")
    elements = gr.Textbox(label="Elements, one per line (edit freely)", lines=6, elem_id="chart-elements")
    split_note = gr.HTML(elem_id="chart-split-note", js_on_load=None)
    with gr.Row():
        references = gr.Textbox(
            label="References (publication numbers; empty = take them from a search of the claim)",
            elem_id="chart-references",
        )
        search_top_n = gr.Number(
            label="Search results to use", value=5, precision=0, minimum=0, elem_id="chart-top-n"
        )
        threshold = gr.Slider(
            0.0, 1.0, value=runtime.settings.chart_threshold, step=0.01, label="Covered at score ≥"
        )
    with gr.Row():
        button = gr.Button("Chart", variant="primary", elem_id="chart-button")
        size = gr.Radio([2, 3], value=2, label="Combine", elem_id="chart-size")
        combo_button = gr.Button("Find combinations", elem_id="combinations-button")
    results = gr.HTML(elem_id="chart-results", js_on_load=None)
    files = gr.File(
        label="Download the chart (CSV, XLSX, HTML)", file_count="multiple", elem_id="chart-files"
    )
    combos = gr.HTML(elem_id="combinations-results", js_on_load=None)
    split.click(actions.split, claim, [elements, split_note], api_visibility="private")
    inputs = [claim, references, search_top_n, elements, threshold]

    def run(*values: Any) -> tuple[str, Any]:
        table, paths = actions.chart(*values)
        return numbered(table), paths

    button.click(run, inputs, [results, files], api_visibility="private", concurrency_limit=4)
    combo_button.click(
        lambda *v: numbered(actions.combinations(*v)),
        [*inputs, size],
        combos,
        api_visibility="private",
        concurrency_limit=4,
    )
