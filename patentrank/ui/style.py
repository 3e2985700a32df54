"""The UI's look: Gradio's default theme with local fonts only (CJK fallbacks named) and the card styles."""

from __future__ import annotations

from typing import Any

# System font names only: a name that is not installed is skipped by the browser; nothing is fetched.
CJK_FALLBACKS = (
    "PingFang SC",
    "Microsoft YaHei",
    "Noto Sans CJK SC",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
)

CSS = """
.pr-status { font-size: 0.9em; line-height: 1.7; }
.pr-status ul { margin: 0.3em 0 0 1.2em; color: var(--body-text-color-subdued); }
.pr-badge { display: inline-block; padding: 0 0.6em; margin: 0 0.3em 0.2em 0; border-radius: 999px;
  border: 1px solid var(--border-color-primary); white-space: nowrap; }
.pr-badge.ok { background: rgba(34, 197, 94, 0.12); }
.pr-badge.off { background: rgba(239, 68, 68, 0.14); }
.pr-results, .pr-rerank, .pr-ingest { display: flex; flex-direction: column; gap: 0.7em; }
.pr-card { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 0.7em 0.9em;
  background: var(--block-background-fill); }
.pr-card header { font-size: 1.05em; }
.pr-rank { color: var(--body-text-color-subdued); }
.pr-id { font-family: var(--font-mono); font-weight: 600; margin-right: 0.4em; }
.pr-title { font-weight: 600; }
.pr-facts, .pr-stages, .pr-stageline, .pr-rerank-meta, .pr-members { font-size: 0.85em;
  color: var(--body-text-color-subdued); }
.pr-scoreline, .pr-chart-row { display: flex; align-items: center; gap: 0.6em; margin: 0.3em 0; }
.pr-bar { flex: 0 0 14em; height: 0.7em; border-radius: 4px; background: var(--border-color-primary);
  overflow: hidden; }
.pr-bar > div { height: 100%; background: var(--color-accent); }
.pr-score { font-family: var(--font-mono); font-weight: 600; }
.pr-change { font-size: 0.85em; color: var(--body-text-color-subdued); }
.pr-move.up { color: #16a34a; } .pr-move.down { color: #dc2626; }
.pr-passage { white-space: pre-wrap; max-height: 11em; overflow: auto; line-height: 1.5;
  border-left: 3px solid var(--border-color-primary); padding-left: 0.6em; margin: 0.3em 0; }
.pr-passage mark { background: #fde68a; color: inherit; padding: 0 1px; border-radius: 2px; }
.pr-field { font-size: 0.75em; text-transform: uppercase; color: var(--body-text-color-subdued); }
.pr-ok { color: #16a34a; } .pr-off { color: #dc2626; }
.pr-error { border: 1px solid #dc2626; background: rgba(239, 68, 68, 0.08); border-radius: 6px;
  padding: 0.6em 0.8em; }
.pr-notice { border-left: 3px solid var(--color-accent); padding: 0.2em 0.6em; }
.pr-chart { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 0.5em 0.8em; }
.pr-chart-label { flex: 0 0 4.5em; font-size: 0.85em; }
.pr-rerank-list { margin: 0; padding-left: 1.4em; }
.pr-rerank-item { margin-bottom: 0.7em; }
.pr-rerank-score { font-family: var(--font-mono); font-weight: 700; }
.pr-rerank-doc { white-space: pre-wrap; }
.pr-rejects, .pr-info { border-collapse: collapse; font-size: 0.9em; }
.pr-rejects td, .pr-rejects th, .pr-info td, .pr-info th { border: 1px solid var(--border-color-primary);
  padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
"""


def theme() -> Any:
    """Gradio's default theme with its bundled (local) fonts first and CJK system fonts as fallbacks."""
    import gradio as gr

    font = [
        gr.themes.LocalFont("Source Sans Pro"),
        *CJK_FALLBACKS,
        "ui-sans-serif",
        "system-ui",
        "sans-serif",
    ]
    mono = [gr.themes.LocalFont("IBM Plex Mono"), "ui-monospace", "Consolas", "monospace"]
    return gr.themes.Default(font=font, font_mono=mono)
