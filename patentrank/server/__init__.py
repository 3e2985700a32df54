"""The HTTP API: a FastAPI app built around an `Engine` by `create_app`."""

from __future__ import annotations

from patentrank.server.app import create_app

__all__ = ["create_app"]
