"""ASGI middleware: per-route request metrics and the request body size limit."""

from __future__ import annotations

import time
from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from patentrank.metrics import Metrics
from patentrank.server.errors import TEI_PATHS, error_response


class MetricsMiddleware:
    """Count requests by route template (bounded label set) and status, and time them."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route: Any = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(route=name, status=str(status)).inc()
            self.metrics.request_seconds.labels(route=name).observe(time.perf_counter() - began)


class BodyLimitMiddleware:
    """Refuse request bodies over `max_bytes` with a JSON 413: at once from Content-Length, else while
    the body streams in (FastAPI's own limit answers in plain text, which clients cannot parse)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _error(self, path: str) -> Response:
        return error_response(
            413,
            f"the request body exceeds {self.max_bytes} bytes (PATENTRANK_MAX_BODY_BYTES)",
            field="body",
            kind="payload_too_large",
            tei=path in TEI_PATHS,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._error(scope["path"])(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if started:
                raise
            await self._error(scope["path"])(scope, receive, send)


class _TooLarge(StarletteHTTPException):
    """Raised from `receive`; an HTTPException so that FastAPI lets it through unchanged."""

    def __init__(self) -> None:
        super().__init__(413, "the request body is too large")
