"""HTML for the UI: every piece of text is escaped here, so patent text and queries are shown, never run."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from patentrank.index.report import Rejection
from patentrank.search import PatentResult, SearchResponse

MAX_SHOWN_REJECTS = 50


def esc(value: object) -> str:
    """Text (or anything printable) as HTML text, quotes included so it is safe inside attributes too."""
    return escape("" if value is None else str(value), quote=True)


def highlight_html(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """`text` with the [start, end) `spans` wrapped in <mark>; every segment is escaped on its own."""
    parts: list[str] = []
    position = 0
    for start, end in sorted(spans):
        start, end = max(start, position), min(end, len(text))
        if end <= start:
            continue
        parts.append(esc(text[position:start]))
        parts.append(f"<mark>{esc(text[start:end])}</mark>")
        position = end
    parts.append(esc(text[position:]))
    return "".join(parts)


def error_html(message: str) -> str:
    """A readable error box (the message is escaped; never a stack trace)."""
    return f'<div class="pr-error" role="alert"><strong>Error:</strong> {esc(message)}</div>'


def notice_html(message: str) -> str:
    return f'<div class="pr-notice">{esc(message)}</div>'


def bar_html(fraction: float, label: str = "") -> str:
    """A horizontal bar filled to `fraction` (clamped to 0..1)."""
    width = 0.0 if not math.isfinite(fraction) else min(max(fraction, 0.0), 1.0) * 100
    return (
        f'<div class="pr-bar" role="meter" aria-valuemin="0" aria-valuemax="100" '
        f'aria-valuenow="{width:.0f}" aria-label="{esc(label)}"><div style="width:{width:.1f}%"></div></div>'
    )


def _fmt(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


# ---------------------------------------------------------------- search


def _rank_change(result: PatentResult) -> str:
    before = result.rank_before_rerank
    if not result.reranked:
        return f"first-stage rank {before}"
    moved = before - result.rank
    arrow = f"▲{moved}" if moved > 0 else f"▼{-moved}" if moved < 0 else "="
    cls = "up" if moved > 0 else "down" if moved < 0 else "same"
    return f'rank before rerank {before} <span class="pr-move {cls}">{arrow}</span>'


def _stage_scores(result: PatentResult) -> str:
    hit = result.best_passage
    parts = []
    if hit.rerank_score is not None:
        parts.append(f"rerank {_fmt(hit.rerank_score)}")
    if hit.lexical_score is not None:
        parts.append(f"BM25 {_fmt(hit.lexical_score, 3)} (#{hit.lexical_rank})")
    if hit.dense_score is not None:
        parts.append(f"dense {_fmt(hit.dense_score)} (#{hit.dense_rank})")
    parts.append(f"fused {_fmt(hit.fused_score)}")
    return " · ".join(parts)


def result_card(result: PatentResult, top_first_stage: float) -> str:
    """One patent: number, title, facts, score bar, best passage with matches marked, stage scores."""
    hit = result.best_passage
    if result.reranked:
        fraction, kind = result.score, "rerank score (P(yes))"
    else:
        fraction, kind = (result.score / top_first_stage if top_first_stage > 0 else 0.0), "first-stage score"
    facts = [result.language, result.jurisdiction]
    if result.priority_date:
        facts.append(f"priority {result.priority_date}")
    if result.publication_date:
        facts.append(f"published {result.publication_date}")
    if result.codes:
        facts.append(", ".join(result.codes[:6]) + (" …" if len(result.codes) > 6 else ""))
    if result.applicants:
        facts.append("; ".join(result.applicants[:3]))
    field = hit.field.replace("_", " ")
    return (
        f'<article class="pr-card" data-patent-id="{esc(result.patent_id)}" data-rank="{result.rank}">'
        f'<header><span class="pr-rank">#{result.rank}</span> '
        f'<span class="pr-id">{esc(result.patent_id)}</span> '
        f'<span class="pr-title">{esc(result.title)}</span></header>'
        f'<div class="pr-facts">{" · ".join(esc(f) for f in facts if f)}</div>'
        f'<div class="pr-scoreline">{bar_html(fraction, kind)}'
        f'<span class="pr-score" title="{esc(kind)}">{result.score:.4f}</span>'
        f'<span class="pr-change">{_rank_change(result)}</span></div>'
        f'<div class="pr-passage"><span class="pr-field">{esc(field)}</span> '
        f"{highlight_html(hit.text, hit.highlights)}</div>"
        f'<div class="pr-stages">{_stage_scores(result)}</div>'
        f"{_members_html(result)}"
        "</article>"
    )


def _members_html(result: PatentResult) -> str:
    """The publications collapsed into this result (same family or same text), best first."""
    if not result.family_members:
        return ""
    items = ", ".join(
        f'<span class="pr-member" data-patent-id="{esc(m.patent_id)}">{esc(m.patent_id)} '
        f"({esc(m.reason)}, {m.score:.4f})</span>"
        for m in result.family_members
    )
    return f'<div class="pr-members">Also published as: {items}</div>'


def stages_html(stages: Mapping[str, Mapping[str, Any]], took_ms: float) -> str:
    """Which stages ran (with timings) and why the others did not."""
    parts = []
    for name, info in stages.items():
        if info.get("ran"):
            extra = [f"{info['ms']:.0f} ms"] if "ms" in info else []
            extra += [f"{info[k]} {k}" for k in ("hits", "pairs") if k in info]
            parts.append(f'<span class="pr-ok">✓ {esc(name)}</span> ({esc(", ".join(extra))})')
        else:
            parts.append(
                f'<span class="pr-off">✗ {esc(name)}</span>: {esc(info.get("reason", "did not run"))}'
            )
    parts.append(f"total {took_ms:.0f} ms")
    return '<div class="pr-stageline">' + " · ".join(parts) + "</div>"


def search_html(response: SearchResponse) -> str:
    """The whole result list, headed by what was searched and which stages ran."""
    head = [stages_html(response.stages, response.took_ms)]
    if response.by_patent:
        cutoff = response.applied_filter.get("before")
        head.append(
            notice_html(
                f"Searching by patent {response.by_patent}: its title, abstract and first claim, "
                "excluding the patent itself"
                + (f", restricted to documents dated before {cutoff}" if cutoff else "")
                + "."
            )
        )
    if not response.results:
        head.append(notice_html("No patents matched. Try fewer filters or another mode."))
        return '<div class="pr-results">' + "".join(head) + "</div>"
    first_stage = [r.score for r in response.results if not r.reranked]
    top = max(first_stage) if first_stage else 0.0
    cards = "".join(result_card(r, top) for r in response.results)
    return '<div class="pr-results">' + "".join(head) + cards + "</div>"


# ---------------------------------------------------------------- rerank


def rerank_html(documents: Sequence[str], scores: Sequence[float], truncated: Sequence[int] = ()) -> str:
    """A bar chart of all scores, then each document under `Score: 0.xxxx`, best first."""
    order = sorted(range(len(documents)), key=lambda i: (-scores[i], i))
    chart = "".join(
        f'<div class="pr-chart-row"><span class="pr-chart-label">doc {i + 1}</span>'
        f'{bar_html(scores[i], f"document {i + 1}")}<span class="pr-score">{scores[i]:.4f}</span></div>'
        for i in order
    )
    cut = set(truncated)
    items = "".join(
        f'<li class="pr-rerank-item" data-index="{i}">'
        f'<div class="pr-rerank-score">Score: {scores[i]:.4f}</div>'
        f'<div class="pr-rerank-meta">document {i + 1} of {len(documents)}'
        f"{' · truncated to fit the model' if i in cut else ''}</div>"
        f'<div class="pr-rerank-doc">{esc(documents[i])}</div></li>'
        for i in order
    )
    return (
        f'<div class="pr-rerank"><div class="pr-chart" aria-label="scores">{chart}</div>'
        f'<ol class="pr-rerank-list">{items}</ol></div>'
    )


# ---------------------------------------------------------------- index and status


def ingest_html(
    source: str,
    report: Mapping[str, Any],
    rejected: Sequence[Rejection],
    took_s: float,
) -> str:
    """What an upload did: counts, then each rejected record with its line number and reason."""
    counts = " · ".join(
        f'<span class="pr-count" data-kind="{k}">{esc(k)}: <b>{int(report.get(k, 0))}</b></span>'
        for k in ("added", "updated", "unchanged")
    )
    rows = "".join(
        f"<tr><td>{esc(where)}</td><td>{esc(reason)}</td></tr>"
        for where, reason, *_ in rejected[:MAX_SHOWN_REJECTS]
    )
    more = len(rejected) - MAX_SHOWN_REJECTS
    table = (
        f'<table class="pr-rejects"><thead><tr><th>where</th><th>reason</th></tr></thead><tbody>{rows}'
        f"</tbody></table>" + (f"<p>… and {more} more</p>" if more > 0 else "")
        if rejected
        else ""
    )
    waiting = int(report.get("waiting_for_vectors", 0))
    note = (
        notice_html(f"{waiting} passages wait for vectors (no embedder): they are searchable by BM25 now.")
        if waiting
        else ""
    )
    return (
        f'<div class="pr-ingest"><div>{esc(source)} indexed in {took_s:.1f} s: {counts} · '
        f'<span class="pr-count" data-kind="rejected">rejected: <b>{len(rejected)}</b></span></div>'
        f"{table}{note}</div>"
    )


def index_info_html(stats: Mapping[str, Any] | None, models: Mapping[str, Mapping[str, Any]]) -> str:
    """The index's size and the models in use, as a small table."""
    rows: list[tuple[str, str]] = []
    if stats is None:
        rows.append(("index", "none loaded"))
    else:
        rows += [
            ("index folder", str(stats.get("path", ""))),
            ("patents", str(stats.get("patents", 0))),
            ("passages", str(stats.get("passages", 0))),
            ("passages with vectors", str(stats.get("vector_passages", 0))),
            ("index embedder", str(stats.get("embedder") or "none (lexical only)")),
        ]
    for role, info in models.items():
        rows.append((role, str(info.get("model") or "not loaded") + _backend(info)))
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f'<table class="pr-info">{body}</table>'


def _backend(info: Mapping[str, Any]) -> str:
    return f" ({info['backend']})" if info.get("backend") else ""


def status_html(items: Sequence[tuple[str, bool, str]], problems: Sequence[str]) -> str:
    """One line of ready/not-ready badges, then what each missing piece means and how to fix it."""
    badges = " ".join(
        f'<span class="pr-badge {"ok" if ok else "off"}" data-stage="{esc(name)}">'
        f"{'✓' if ok else '✗'} {esc(name)}{': ' + esc(detail) if detail else ''}</span>"
        for name, ok, detail in items
    )
    details = "".join(f"<li>{esc(p)}</li>" for p in problems)
    return f'<div class="pr-status">{badges}' + (f"<ul>{details}</ul>" if details else "") + "</div>"
