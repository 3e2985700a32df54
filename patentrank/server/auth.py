"""Optional API key: `Authorization: Bearer <key>`, compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from patentrank.server.errors import ApiError

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
