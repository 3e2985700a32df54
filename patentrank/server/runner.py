"""Run the app under uvicorn with the server's connection limits: a read timeout and a connection cap.

uvicorn itself waits forever for a request's headers and body, so a client that opens connections and
sends a few bytes on each holds them open indefinitely (slowloris). `TimedH11Protocol` gives every
request `read_timeout_s` from its first byte (or from the connection's opening) until its body is
complete; past it the client gets a 408 and the connection is closed. `limit_concurrency` (uvicorn's)
answers 503 once `max_connections` connections or requests are open.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import orjson
from uvicorn.protocols.http.h11_impl import H11Protocol

from patentrank.config import Settings

KEEP_ALIVE_S = 5


def _timeout_response(seconds: float) -> bytes:
    body = orjson.dumps(
        {
            "error": {
                "message": f"the request did not arrive within {seconds:g} s (PATENTRANK_READ_TIMEOUT_S)",
                "type": "request_timeout",
                "field": "body",
                "param": "body",
                "code": 408,
            }
        }
    )
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on reading each request (headers and body)."""

    read_timeout_s: float = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._read_deadline: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._read_deadline = self.loop.call_later(self.read_timeout_s, self._read_timed_out)

    def _disarm(self) -> None:
        if getattr(self, "_read_deadline", None) is not None:
            self._read_deadline.cancel()  # type: ignore[union-attr]
            self._read_deadline = None

    def data_received(self, data: bytes) -> None:
        if self._read_deadline is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the next request on a kept-alive connection starts its own clock
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE and self.conn.their_state is not h11.SEND_BODY:
            self._disarm()  # the request is complete (or the connection is ending)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(_timeout_response(self.read_timeout_s))
        self.transport.close()


def protocol_for(settings: Settings) -> type[TimedH11Protocol]:
    """A protocol class bound to `settings.read_timeout_s` (uvicorn instantiates it per connection)."""
    return type("TimedH11Protocol", (TimedH11Protocol,), {"read_timeout_s": settings.read_timeout_s})


def uvicorn_config(app: Any, settings: Settings, *, host: str, port: int, log_level: str = "info") -> Any:
    """uvicorn's Config with the read timeout, the connection cap and a short keep-alive.

    Example:
        >>> uvicorn.Server(uvicorn_config(app, settings, host="127.0.0.1", port=8000)).run()  # doctest: +SKIP
    """
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        http=protocol_for(settings),
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=KEEP_ALIVE_S,
    )


def run(app: Any, settings: Settings, *, host: str, port: int, log_level: str = "info") -> None:
    """Serve `app` until interrupted, with the limits above."""
    import uvicorn

    uvicorn.Server(uvicorn_config(app, settings, host=host, port=port, log_level=log_level)).run()
