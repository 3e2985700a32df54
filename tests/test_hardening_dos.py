"""Issue 15, finding 6: slow clients are cut off, unauthenticated bodies are never read, failed logins
and 401s are rate-limited, /health tells strangers only the status, and connections are capped."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from patentrank.config import Settings
from patentrank.engine import Engine
from patentrank.server import create_app
from patentrank.server.testing import free_port, serve_in_thread

BODY = {"query": "gear", "documents": ["a gearbox", "a pump"]}
KEY = "s3cret"


def _reply(sock: socket.socket, timeout_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    began = time.monotonic()
    sock.settimeout(timeout_s)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data, time.monotonic() - began


def _open(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


@pytest.fixture(scope="module")
def reranker(tiny_reranker_path: Path):
    from patentrank.models.reranker import Reranker

    return Reranker(str(tiny_reranker_path), device="cpu", max_length=64)


@pytest.fixture(scope="module")
def impatient(reranker) -> Iterator[str]:
    settings = Settings(embedder_model="none", cache_size=0, read_timeout_s=2.0)
    engine = Engine(reranker=reranker, settings=settings)
    with serve_in_thread(create_app(engine, settings)) as url:
        yield url


def test_slow_bodies_and_headers_are_cut_off_and_others_still_served(impatient: str) -> None:
    slow = []
    for _ in range(40):  # each declares 1 MB and sends 12 bytes of it
        sock = _open(impatient)
        sock.sendall(
            b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000\r\n\r\n" + b'{"query": "q'
        )
        slow.append(sock)
    for _ in range(10):  # half a request line, or nothing at all
        sock = _open(impatient)
        sock.sendall(b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\n")
        slow.append(sock)
    slow.append(_open(impatient))
    began = time.monotonic()
    answered = httpx.post(f"{impatient}/v1/rerank", json=BODY, timeout=30)  # others are still served
    assert answered.status_code == 200
    for sock in slow:
        data, _ = _reply(sock, timeout_s=10)
        assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:100]
        if data:
            assert b'"type":"request_timeout"' in data and b"PATENTRANK_READ_TIMEOUT_S" in data
        sock.close()
    assert time.monotonic() - began < 2.0 + 5.0  # all closed by the deadline (plus scheduling slack)
    assert httpx.post(f"{impatient}/v1/rerank", json=BODY, timeout=30).status_code == 200


def test_a_steady_client_is_not_cut_off(impatient: str) -> None:  # the negative control
    sock = _open(impatient)
    payload = b'{"query": "gear", "documents": ["a gearbox"]}'
    sock.sendall(
        b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
        b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload[:10]
    )
    time.sleep(1.0)  # slow, but within the 2 s deadline
    sock.sendall(payload[10:])
    data, _ = _reply(sock, timeout_s=30)
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    sock.close()


# ---- authentication before the body ---------------------------------------------------------------


@pytest.fixture
def secured(reranker) -> Iterator[str]:
    settings = Settings(
        embedder_model="none", cache_size=0, api_key=KEY, auth_failure_limit=5, auth_failure_window_s=2.0
    )
    engine = Engine(reranker=reranker, settings=settings)
    with serve_in_thread(create_app(engine, settings)) as url:
        yield url


def test_401_comes_before_the_body_is_sent(secured: str) -> None:
    sock = _open(secured)
    sock.sendall(
        b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 20000000\r\n\r\n"
    )  # not one byte of the 20 MB body
    data, seconds = _reply(sock, timeout_s=10)
    sock.close()
    assert data.startswith(b"HTTP/1.1 401") and b"connection: close" in data.lower(), data[:300]
    assert seconds < 5


def test_failed_keys_are_rate_limited_per_address(secured: str) -> None:
    wrong = {"Authorization": "Bearer nope"}
    right = {"Authorization": f"Bearer {KEY}"}
    statuses = [httpx.post(f"{secured}/v1/rerank", json=BODY, headers=wrong).status_code for _ in range(7)]
    assert statuses == [401] * 5 + [429] * 2
    limited = httpx.post(f"{secured}/v1/rerank", json=BODY, headers=right)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1  # guessing stays slow
    assert limited.json()["error"]["type"] == "rate_limited"
    time.sleep(2.2)  # the window passes
    assert httpx.post(f"{secured}/v1/rerank", json=BODY, headers=right).status_code == 200


def test_health_without_the_key_is_status_only(secured: str) -> None:
    stranger = httpx.get(f"{secured}/health").json()
    assert stranger == {"status": "ok"}
    insider = httpx.get(f"{secured}/health", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert insider["status"] == "ok" and "models" in insider and "queue" in insider


def test_ui_login_is_rate_limited(reranker) -> None:
    pytest.importorskip("gradio")
    from patentrank.ui.app import mount_ui

    settings = Settings(
        embedder_model="none", api_key=KEY, auth_failure_limit=3, auth_failure_window_s=30
    )
    engine = Engine(reranker=reranker, settings=settings)
    app = mount_ui(create_app(engine, settings))
    with serve_in_thread(app) as url:
        form = {"username": "user", "password": "wrong"}
        statuses = [httpx.post(f"{url}/ui/login", data=form, timeout=30).status_code for _ in range(5)]
        assert statuses[:3] == [400] * 3 and statuses[3:] == [429, 429], statuses
        good = httpx.post(f"{url}/ui/login", data={"username": "u", "password": KEY}, timeout=30)
        assert good.status_code == 429  # the right password waits out the window too


# ---- the connection cap -----------------------------------------------------------------------------


def test_connections_over_the_cap_are_answered_503(reranker) -> None:
    settings = Settings(embedder_model="none", cache_size=0, max_connections=8)
    engine = Engine(reranker=reranker, settings=settings)
    with serve_in_thread(create_app(engine, settings)) as url:
        idle = [_open(url) for _ in range(8)]
        time.sleep(0.3)
        try:
            with httpx.Client(timeout=30) as client:
                assert client.get(f"{url}/health").status_code == 503
        finally:
            for sock in idle:
                sock.close()
        time.sleep(0.3)
        assert httpx.get(f"{url}/health", timeout=30).status_code == 200


# ---- memory under unauthenticated large bodies ------------------------------------------------------


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc to read the RSS")
def test_unauthenticated_20_mib_bodies_do_not_grow_the_server(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PATENTRANK_API_KEY": KEY, "PATENTRANK_AUTH_FAILURE_LIMIT": "1000"}
    command = [
        sys.executable, "-m", "patentrank", "serve", "--port", str(port), "--reranker-model", "none",
        "--embedder-model", "none", "--no-ui", "--index", str(tmp_path / "ix"), "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                httpx.get(f"{url}/health", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.2)
        before = _rss_mib(process.pid)
        chunk = b"x" * (1024 * 1024)
        answers = []
        for _ in range(20):
            sock = _open(url)
            sock.sendall(
                b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 20971520\r\n\r\n"
            )
            try:
                for _ in range(20):
                    sock.sendall(chunk)
            except OSError:  # the server closed after its 401: exactly what should happen
                pass
            data, _ = _reply(sock, timeout_s=10)
            answers.append(data[:12])
            sock.close()
        after = _rss_mib(process.pid)
        assert all(a in (b"HTTP/1.1 401", b"") for a in answers), answers
        assert answers.count(b"HTTP/1.1 401") >= 10
        assert after - before < 40, f"server RSS grew from {before:.0f} to {after:.0f} MiB"
    finally:
        process.terminate()
        process.communicate(timeout=30)
