"""Helpers for tests and benchmarks: a real server on a free loopback port, and a throwaway redis-server."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REDIS_SERVER = "/usr/bin/redis-server"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_in_thread(app: Any, port: int | None = None, timeout_s: float = 30.0) -> Iterator[str]:
    """Run `app` with uvicorn in a background thread, with the limits `patentrank serve` applies (read
    timeout, connection cap; see `runner.uvicorn_config`); yields its base URL and stops it on exit.

    Example:
        >>> with serve_in_thread(create_app(engine)) as url:       # doctest: +SKIP
        ...     httpx.get(url + "/health").json()["status"]
        'ok'
    """
    import uvicorn

    from patentrank.config import Settings
    from patentrank.server.runner import uvicorn_config

    port = port or free_port()
    settings = getattr(getattr(app, "state", None), "settings", None) or Settings()
    config = uvicorn_config(app, settings, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the test server on port {port} did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)


class RedisServer:
    """A private redis-server on a free loopback port, without persistence; `stop()` kills only it.

    Example:
        >>> with RedisServer() as redis:                            # doctest: +SKIP
        ...     url = redis.url                                     # redis://127.0.0.1:PORT/0
    """

    def __init__(self, port: int | None = None, binary: str = REDIS_SERVER) -> None:
        self.port = port or free_port()
        self.binary = binary
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available(binary: str = REDIS_SERVER) -> bool:
        return Path(binary).is_file() or shutil.which("redis-server") is not None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        binary = self.binary if Path(self.binary).is_file() else (shutil.which("redis-server") or self.binary)
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
