"""The web UI: a Gradio page (Search, Rerank, Index) mounted in the patentrank server at /ui."""

from __future__ import annotations

from patentrank.ui.app import build_ui, mount_ui

__all__ = ["build_ui", "mount_ui"]
