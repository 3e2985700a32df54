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


class MilvusLiteServer:
    """A `milvus-lite server` process (the Milvus gRPC API over a local folder) on a free loopback port,
    as tests and benchmarks use for a Milvus cluster. `stop()` then `start()` restarts it on the same
    folder and port, as a Milvus that went away and came back.

    Example:
        >>> with MilvusLiteServer(tmp_path / "milvus") as milvus:   # doctest: +SKIP
        ...     index = ClusterIndex(milvus.uri)                    # http://127.0.0.1:PORT
    """

    def __init__(self, data_dir: str | Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def binary() -> str | None:
        import sys

        beside = Path(sys.executable).with_name("milvus-lite")
        return str(beside) if beside.is_file() else shutil.which("milvus-lite")

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> MilvusLiteServer:
        binary = self.binary()
        if binary is None:
            raise RuntimeError("the milvus-lite command is not installed: pip install 'patentrank[milvus]'")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            binary,
            "server",
            "--data-dir",
            str(self.data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self._answers():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"milvus-lite server did not start on port {self.port}")

    def _answers(self) -> bool:
        from pymilvus import MilvusClient

        try:
            client = MilvusClient(self.uri, timeout=1.0, dedicated=True)
        except Exception:
            return False
        try:
            client.list_collections(timeout=1.0)
            return True
        except Exception:
            return False
        finally:
            client.close()

    def stop(self, grace_s: float = 60.0) -> None:
        """Stop it (SIGTERM, then SIGKILL after `grace_s`); its folder stays for a restart. Lite writes
        its segments out on SIGTERM, which takes seconds on a loaded machine, and a SIGKILL in the middle
        leaves files it cannot read back ("Not an Arrow file" on the next start)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def __enter__(self) -> MilvusLiteServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
