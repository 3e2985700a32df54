"""API key on and off (Bearer, constant-time compare, SDKs), and CORS off unless configured."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from patentrank.config import Settings
from patentrank.engine import Engine
from patentrank.server import create_app
from patentrank.server.testing import serve_in_thread

KEY = "s3cret-key-ÿ"  # non-ASCII on purpose: compared as UTF-8 bytes
ASCII_KEY = "s3cret-key"
BODY = {"query": "gear", "documents": ["a gearbox", "a pump"]}


@pytest.fixture(scope="module")
def reranker(tiny_reranker_path: Path):
    from patentrank.models.reranker import Reranker

    return Reranker(str(tiny_reranker_path), device="cpu", max_length=96)


@pytest.fixture(scope="module")
def secured(reranker) -> Iterator[str]:
    settings = Settings(api_key=ASCII_KEY, embedder_model="none", cors_origins=["https://app.example"])
    engine = Engine(reranker=reranker, settings=settings)
    with serve_in_thread(create_app(engine, settings)) as url:
        yield url


@pytest.fixture(scope="module")
def open_server(reranker) -> Iterator[str]:
    settings = Settings(embedder_model="none")
    engine = Engine(reranker=reranker, settings=settings)
    with serve_in_thread(create_app(engine, settings)) as url:
        yield url


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {ASCII_KEY}x"},
        {"Authorization": f"Basic {ASCII_KEY}"},
        {"Authorization": ASCII_KEY},
        {"Authorization": "Bearer"},
    ],
)
@pytest.mark.parametrize("method, path", [("POST", "/v1/rerank"), ("GET", "/v1/models"), ("GET", "/metrics")])
def test_missing_or_wrong_key_is_401(secured: str, headers: dict, method: str, path: str) -> None:
    response = httpx.request(method, secured + path, json=BODY if method == "POST" else None, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in response.json()["error"]["message"]


def test_right_key_works_and_health_stays_open(secured: str) -> None:
    headers = {"Authorization": f"Bearer {ASCII_KEY}"}
    assert httpx.post(f"{secured}/v1/rerank", json=BODY, headers=headers).status_code == 200
    assert httpx.get(f"{secured}/metrics", headers=headers).status_code == 200
    assert httpx.get(f"{secured}/health").status_code == 200
    assert httpx.get(f"{secured}/docs").status_code == 200
    schemes = httpx.get(f"{secured}/openapi.json").json()["components"]["securitySchemes"]
    assert any(s.get("scheme") == "bearer" for s in schemes.values())


def test_sdks_send_the_key(secured: str) -> None:
    import cohere

    good = cohere.ClientV2(ASCII_KEY, base_url=secured)
    assert len(good.rerank(model="", query="gear", documents=["a gearbox"]).results) == 1
    bad = cohere.ClientV2("wrong", base_url=secured)
    with pytest.raises(Exception) as error:
        bad.rerank(model="", query="gear", documents=["a gearbox"])
    assert "401" in str(error.value)


def test_non_ascii_key_is_compared_as_bytes(reranker) -> None:
    settings = Settings(api_key=KEY, embedder_model="none")
    with serve_in_thread(create_app(Engine(reranker=reranker, settings=settings), settings)) as url:
        good = httpx.post(f"{url}/v1/rerank", json=BODY, headers={"Authorization": f"Bearer {KEY}".encode()})
        bad = httpx.post(f"{url}/v1/rerank", json=BODY, headers={"Authorization": b"Bearer s3cret-key-\xc3"})
    assert good.status_code == 200 and bad.status_code == 401


def test_no_key_configured_means_open(open_server: str) -> None:
    assert httpx.post(f"{open_server}/v1/rerank", json=BODY).status_code == 200
    assert (
        httpx.post(f"{open_server}/v1/rerank", json=BODY, headers={"Authorization": "Bearer any"}).status_code
        == 200
    )
    assert "securitySchemes" not in httpx.get(f"{open_server}/openapi.json").json().get("components", {})


def test_cors_only_when_configured(secured: str, open_server: str) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    allowed = httpx.options(f"{secured}/v1/rerank", headers=preflight)
    assert allowed.headers.get("access-control-allow-origin") == "https://app.example"
    other = httpx.options(f"{secured}/v1/rerank", headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    closed = httpx.post(f"{open_server}/v1/rerank", json=BODY, headers={"Origin": "https://app.example"})
    assert closed.status_code == 200 and "access-control-allow-origin" not in closed.headers
