"""What the UI's buttons do: search, rerank and ingest through the same runtime objects as the HTTP API."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from patentrank.config import Settings
from patentrank.corpus import load_patents
from patentrank.cost import WorkMeter, token_counter, where_it_runs
from patentrank.engine import StageUnavailable
from patentrank.errors import InputError, PatentrankError
from patentrank.health import models_status
from patentrank.runtime import Runtime
from patentrank.search import SearchRequest, SearchResponse
from patentrank.search_request import parse_search
from patentrank.ui import render
from patentrank.ui.export import ExportDir
from patentrank.ui.status import index_stats, status_line

logger = logging.getLogger("patentrank.ui")
T = TypeVar("T")
ProgressFn = Callable[..., Any]
RERANK_PROBE = 8  # documents scored first to time the reranker when there are more than twice as many


def split_list(text: str | None) -> list[str]:
    """'G06T, H04L; g06n' -> ['G06T', 'H04L', 'g06n']: commas, semicolons or spaces separate items."""
    return [part for part in (text or "").replace(";", ",").replace(" ", ",").split(",") if part]


def parse_lines(text: str | None) -> list[str]:
    """One candidate document per non-blank line, stripped."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def attempt(action: str, call: Callable[[], T]) -> tuple[T | None, str | None]:
    """(value, None), or (None, message): a known error gives its own message, anything else one
    line for the page while the server log gets the trace. Never a stack trace in the browser."""
    try:
        return call(), None
    except (InputError, StageUnavailable, PatentrankError) as exc:
        return None, str(exc)
    except TimeoutError:
        return (
            None,
            f"{action} took too long (PATENTRANK_REQUEST_TIMEOUT_S); try fewer candidates or documents",
        )
    except Exception as exc:
        logger.exception("UI %s failed", action)
        return None, f"{action} failed: {type(exc).__name__}: {exc} (details in the server log)"


class UiActions:
    """The UI's event handlers, bound to a serving `Runtime`; each returns HTML (and files) for the page.

    Example (a lexical search over the sample corpus, no models):
        >>> import tempfile
        >>> from patentrank.corpus import load_patents, sample_corpus_path
        >>> from patentrank.runtime import serve_runtime
        >>> folder = tempfile.mkdtemp()
        >>> settings = Settings(index_dir=folder, reranker_model="none", embedder_model="none", cache_size=0)
        >>> runtime = serve_runtime(settings)
        >>> runtime.index.add(load_patents(sample_corpus_path())).added
        49
        >>> html, csv_path, jsonl_path = UiActions(runtime).search("图像去噪", mode="lexical", top_n=5)
        >>> html.count('class="pr-card"'), csv_path.endswith(".csv")
        (5, True)
        >>> print(UiActions(runtime).search("gears", date_before="31/12/2020")[0])  # the HTTP body's rules
        <div class="pr-error" role="alert"><strong>Error:</strong> filter.before:
        &#x27;31/12/2020&#x27; is not a date: write it as YYYY-MM-DD</div>
        >>> runtime.close()
    """

    def __init__(self, runtime: Runtime) -> None:
        if runtime.engine is None:
            raise ValueError("the page needs a serving runtime (patentrank.runtime.serve_runtime)")
        self.runtime = runtime
        self.engine = runtime.engine
        self.settings: Settings = runtime.settings
        self.exports = ExportDir()

    # ------------------------------------------------------------ status

    def status(self) -> str:
        return status_line(self.runtime)

    def index_info(self) -> str:
        return render.index_info_html(
            index_stats(self.runtime),
            models_status(self.runtime.reranker, self.runtime.embedder, self.runtime.errors),
        )

    # ------------------------------------------------------------ search

    def build_request(
        self,
        query: str,
        *,
        instruction: str | None = None,
        date_before: str | None = None,
        date_field: str = "priority",
        codes: str | None = None,
        languages: str | None = None,
        jurisdictions: str | None = None,
        mode: str = "hybrid",
        rerank: bool = True,
        top_n: int = 10,
        collapse: bool = True,
    ) -> SearchRequest:
        """The `SearchRequest` the form describes; a malformed field raises InputError naming it."""
        query = (query or "").strip()
        if not query:
            raise InputError("enter a query: free text, or a publication number such as CN113344556A")
        form = {
            "query": query,
            "mode": mode,
            "filter": {
                "date_field": date_field,
                "before": date_before,
                "ipc": split_list(codes),
                "languages": [lang.lower() for lang in split_list(languages)],
                "jurisdictions": [j.upper() for j in split_list(jurisdictions)],
            },
            "top_n": int(top_n),
            "rerank": bool(rerank),
            "instruction": (instruction or "").strip() or None,
            "collapse": bool(collapse),
        }
        return parse_search(form)  # the HTTP body's schema and limits

    def run_search(self, request: SearchRequest) -> SearchResponse:
        """The search itself: the runtime's own pipeline, as the HTTP search route uses it."""
        return self.runtime.require_pipeline().search(request)

    def search(self, query: str, **form: Any) -> tuple[str, str | None, str | None]:
        """Results HTML plus the CSV and JSONL export paths (None when there is nothing to export)."""

        def go() -> tuple[str, str | None, str | None]:
            response = self.run_search(self.build_request(query, **form))
            files = self.exports.write(response) if response.results else (None, None)
            return render.search_html(response), *files

        outcome, error = attempt("search", go)
        return outcome if outcome is not None else (render.error_html(error or "search failed"), None, None)

    # ------------------------------------------------------------ rerank

    def rerank(
        self,
        query: str,
        documents_text: str,
        instruction: str | None = None,
        progress: ProgressFn | None = None,
    ) -> str:
        """Score each line of `documents_text` against `query`; sorted results or an error box.

        Many documents are scored in two calls: the first few time the reranker, and the estimate for
        the rest is shown in the progress bar at once, and beneath the results."""
        query = (query or "").strip()
        documents = parse_lines(documents_text)
        s = self.settings
        if not query:
            return render.error_html("enter a query")
        if not documents:
            return render.error_html("enter at least one candidate document, one per line")
        if len(documents) > s.max_documents:
            return render.error_html(
                f"{len(documents)} documents is more than the limit of {s.max_documents} "
                "(PATENTRANK_MAX_DOCUMENTS)"
            )
        for i, doc in enumerate(documents, 1):
            if len(doc) > s.max_document_chars:
                return render.error_html(
                    f"document {i} has {len(doc)} characters, more than the limit of "
                    f"{s.max_document_chars} (PATENTRANK_MAX_DOCUMENT_CHARS)"
                )

        def go() -> str:
            reranker = self.engine.require_reranker()
            instr = (instruction or "").strip() or None
            if len(documents) <= 2 * RERANK_PROBE:
                result = self.engine.rerank_sync(query, documents, instruction=instr)
                return render.rerank_html(documents, result.scores, result.truncated)
            notes: list[str] = []
            meter = WorkMeter(
                "reranking", "documents", count_tokens=token_counter(None), report=notes.append,
                where=where_it_runs(reranker), total_items=len(documents),
                measured_on=f"the first {RERANK_PROBE}",
            )  # fmt: skip
            began = time.perf_counter()
            head = self.engine.rerank_sync(query, documents[:RERANK_PROBE], instruction=instr)
            meter.observe([f"{query}\n{d}" for d in documents[:RERANK_PROBE]], time.perf_counter() - began)
            if progress is not None:
                progress((RERANK_PROBE, len(documents)), desc=" ".join(notes), unit="documents")
            tail = self.engine.rerank_sync(query, documents[RERANK_PROBE:], instruction=instr)
            scores = head.scores + tail.scores
            truncated = head.truncated + [RERANK_PROBE + i for i in tail.truncated]
            took = f"estimated first: {' '.join(notes)}; took {time.perf_counter() - began:.1f} s"
            return render.rerank_html(documents, scores, truncated) + render.notice_html(took)

        outcome, error = attempt("rerank", go)
        return outcome if outcome is not None else render.error_html(error or "rerank failed")

    # ------------------------------------------------------------ ingest

    def ingest(self, path: str | None, progress: ProgressFn | None = None) -> tuple[str, str, str]:
        """Add an uploaded JSONL/CSV file to the index; returns (summary, index info, status line)."""

        def go() -> str:
            if not path:
                raise InputError("choose a .jsonl or .csv file of patents first")
            index = self.runtime.require_pipeline().index
            source = Path(path)
            total = _estimate_records(source)
            stream = load_patents(source, strict=False)
            done = 0
            notes: list[str] = []  # the embedding estimate, shown in the progress bar once measured
            meter = None
            if index.vectors is not None and index.embedder is not None:
                meter = WorkMeter(
                    "embedding", "passages", count_tokens=token_counter(index.embedder),
                    report=notes.append, where=where_it_runs(index.embedder),
                    fraction_done=lambda: done / total if total else None,
                )  # fmt: skip

            def after_batch(count: int) -> None:
                nonlocal done
                done += count
                if meter is not None:
                    meter.checkpoint()
                if progress is not None:
                    desc = "Indexing" + (f" — {' '.join(notes)}" if notes else "")
                    progress((min(done, total or done), total or None), desc=desc, unit="patents")

            if progress is not None:
                progress((0, total or None), desc="Indexing", unit="patents")
            began = time.perf_counter()
            try:
                on_embedded = meter.observe if meter is not None else None
                report = index.add(stream, batch_size=64, progress=after_batch, on_embedded=on_embedded)
            except PatentrankError:
                index.sync()  # finish what was journaled before the failure: nothing stored is lost
                raise
            rejected = list(report.rejected)  # the loader's skipped lines included
            took = time.perf_counter() - began
            html = render.ingest_html(source.name, report.as_dict(), rejected, took)
            return html + (render.notice_html(f"estimated first: {' '.join(notes)}") if notes else "")

        outcome, error = attempt("indexing", go)
        summary = outcome if outcome is not None else render.error_html(error or "indexing failed")
        return summary, self.index_info(), self.status()


def _estimate_records(path: Path) -> int:
    """Non-blank lines (less a CSV header): exact for JSONL, close for CSV; 0 for compressed files."""
    if path.suffix == ".gz":
        return 0
    try:
        with path.open("rb") as handle:
            lines = sum(1 for line in handle if line.strip())
    except OSError:
        return 0
    return max(lines - 1, 0) if path.suffix.lower() in (".csv", ".tsv") else lines
