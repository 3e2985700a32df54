"""Optional API key: `Authorization: Bearer <key>`, compared in constant time, checked before the body
is read; failed attempts are rate-limited per client address."""

from __future__ import annotations

import hmac
import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

from fastapi import Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from patentrank.server.errors import TEI_PATHS, ApiError, error_response

_bearer = HTTPBearer(
    auto_error=False,
    description="The server's API key (PATENTRANK_API_KEY), sent as `Authorization: Bearer <key>`",
)


def make_auth(api_key: str | None) -> Callable[..., Awaitable[None]] | None:
    """A FastAPI dependency that rejects requests without the key; None when no key is configured.

    Example:
        >>> check = make_auth("s3cret")   # app.include_router(router, dependencies=[Depends(check)])
    """
    if not api_key:
        return None
    expected = api_key.encode("utf-8")

    async def require_api_key(credentials: HTTPAuthorizationCredentials | None = Security(_bearer)) -> None:
        # ASGI headers arrive as bytes that Starlette decodes as latin-1: undo that to get the raw bytes.
        given = credentials.credentials.encode("latin-1", "replace") if credentials is not None else b""
        if not (given and hmac.compare_digest(given, expected)):
            raise ApiError(
                401,
                "missing or wrong API key: send the header 'Authorization: Bearer <PATENTRANK_API_KEY>'",
                field="Authorization",
                kind="unauthorized",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return require_api_key


def key_matches(authorization: str | None, expected: bytes) -> bool:
    """Whether an `Authorization` header carries the key, compared in constant time."""
    if not authorization:
        return False
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    # ASGI headers arrive as bytes that Starlette decodes as latin-1: undo that to get the raw bytes.
    return hmac.compare_digest(token.strip().encode("latin-1", "replace"), expected)


class FailureLimiter:
    """Failed authentications per client address in a sliding window; over the limit, the address waits.

    Memory is bounded: at most `max_clients` addresses are tracked (the oldest are forgotten first).

    Example:
        >>> limiter = FailureLimiter(limit=2, window_s=60)
        >>> limiter.record("10.0.0.1"); limiter.record("10.0.0.1")
        >>> limiter.retry_after("10.0.0.1") > 0, limiter.retry_after("10.0.0.2")
        (True, 0)
    """

    def __init__(self, limit: int, window_s: float, max_clients: int = 10_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def record(self, client: str) -> None:
        now = time.monotonic()
        times = self._failures.pop(client, None) or deque()
        times.append(now)
        while len(times) > self.limit:
            times.popleft()
        self._failures[client] = times
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)

    def retry_after(self, client: str) -> int:
        """Seconds until `client` may try again; 0 when it may now."""
        times = self._failures.get(client)
        if not times or len(times) < self.limit:
            return 0
        wait = times[0] + self.window_s - time.monotonic()
        if wait <= 0:
            del self._failures[client]
            return 0
        return max(1, math.ceil(wait))


# Open without the key (GET/HEAD only): liveness, the API description, the root redirect; and the web
# page under /ui, which has its own login.
PUBLIC_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/"})
PUBLIC_PREFIXES = ("/ui",)


def needs_key(method: str, path: str) -> bool:
    """Whether a request must carry the API key (when one is configured)."""
    if path.startswith(PUBLIC_PREFIXES):
        return False
    return not (method in ("GET", "HEAD") and path in PUBLIC_PATHS)


def _is_login(method: str, path: str) -> bool:
    return method == "POST" and path.startswith(PUBLIC_PREFIXES) and path.rstrip("/").endswith("/login")


class AuthMiddleware:
    """Check the API key before the body is read, and limit failed attempts per client address.

    A request without the right key is answered 401 at once (and its connection closed when it has a
    body), so an unauthenticated client cannot make the server buffer megabytes. Each 401, and each
    failed web-page login (`POST /ui/login` answered 4xx), counts against the address; past
    `limiter.limit` failures in the window it gets 429 with Retry-After, even with the right key,
    until the window has passed. `scope["state"]["authenticated"]` tells routes (e.g. /health) the
    outcome; it is true for everyone when no key is configured.
    """

    def __init__(self, app: ASGIApp, api_key: str | None, limiter: FailureLimiter) -> None:
        self.app = app
        self.expected = api_key.encode("utf-8") if api_key else None
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        authenticated = self.expected is None or key_matches(headers.get("authorization"), self.expected)
        scope.setdefault("state", {})["authenticated"] = authenticated
        path, method = scope["path"], scope["method"]
        login = _is_login(method, path)
        guarded = self.expected is not None and needs_key(method, path)
        if not (login or guarded):
            await self.app(scope, receive, send)
            return
        client = scope["client"][0] if scope.get("client") else "unknown"
        has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
        close = {"Connection": "close"} if has_body else {}
        wait = self.limiter.retry_after(client)
        if wait:
            message = f"too many failed authentication attempts from {client}; retry in {wait} s"
            await error_response(
                429,
                message,
                field="Authorization",
                kind="rate_limited",
                headers={"Retry-After": str(wait), **close},
                tei=path in TEI_PATHS,
            )(scope, receive, send)
            return
        if guarded and not authenticated:
            self.limiter.record(client)
            await error_response(
                401,
                "missing or wrong API key: send the header 'Authorization: Bearer <PATENTRANK_API_KEY>'",
                field="Authorization",
                kind="unauthorized",
                headers={"WWW-Authenticate": "Bearer", **close},
                tei=path in TEI_PATHS,
            )(scope, receive, send)
            return
        if not login:
            await self.app(scope, receive, send)
            return

        async def watching_send(message: Message) -> None:
            if message["type"] == "http.response.start" and int(message["status"]) >= 400:
                self.limiter.record(client)
            await send(message)

        await self.app(scope, receive, watching_send)
