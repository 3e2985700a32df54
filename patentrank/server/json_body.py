"""Check a JSON request body before FastAPI parses it, so that no body can cause a 500.

Python's `json` (which FastAPI uses) accepts what the responses then cannot carry: lone UTF-16
surrogates (`"\\ud800"`, common in PDF-extracted text and JavaScript strings), integers of any size,
`NaN`, `Infinity` and `1e400`, and nesting deep enough to exhaust the stack. Here:

- lone surrogates are replaced by U+FFFD everywhere (the text stays usable; one odd character does
  not sink a request of a thousand documents);
- numbers outside the 64-bit integer range (-2^63 .. 2^64-1), integers or not, and NaN/Infinity
  are a 422 naming the field (JSON Schema cannot tell 1e20 from 100000000000000000000, so neither
  can we);
- non-UTF-8 bytes, invalid JSON and nesting over `MAX_JSON_DEPTH` are a 400 with `field: "body"`.

A body without any of these goes through untouched after one orjson pass (microseconds for the
usual request); only suspicious bodies take the slow path that finds the field.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

import orjson
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from patentrank.server.errors import TEI_PATHS, error_response

MAX_JSON_DEPTH = 100  # nested objects/arrays; responses echo documents a few levels deeper
# orjson refuses to serialise past 254 levels: wrapping a body in this many lists makes that limit ours.
_DEPTH_PROBE = 254 - MAX_JSON_DEPTH
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
# A possible surrogate escape (\uD800-\uDFFF), 19+ digits in a row, or an exponent of 10 or more (a
# possibly out-of-range number): any of these sends the body down the slow path, which decides.
_SUSPICIOUS = re.compile(rb"\\u[dD][89a-fA-F]|\d{19}|[eE]\+?0*[1-9]\d")
_SURROGATE = re.compile("[\ud800-\udfff]")
_BODY_METHODS = {"POST", "PUT", "PATCH"}


class BadBody(Exception):
    def __init__(self, status: int, message: str, field: str = "body") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


class _BadNumber:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _parse_int(text: str) -> int | _BadNumber:
    if len(text) > 21:  # also spares int() its quadratic conversion of huge digit strings
        return _BadNumber(text)
    value = int(text)
    return value if INT_MIN <= value <= INT_MAX else _BadNumber(text)


def _parse_float(text: str) -> float | _BadNumber:
    value = float(text)
    return value if math.isfinite(value) and INT_MIN <= value <= INT_MAX else _BadNumber(text)


def _walk(value: Any, path: str = "", depth: int = 1) -> Iterator[tuple[str, Any, int]]:
    yield path, value, depth
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}" if path else str(key), depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]", depth + 1)


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value) if _has_surrogate(value) else value
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    return value


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def checked_body(body: bytes) -> bytes:
    """`body` itself when it is safe, the body with U+FFFD for lone surrogates, or `BadBody`.

    Example:
        >>> checked_body(b'{"query": "q\\\\ud800"}').decode() == '{"query": "q\\ufffd"}'
        True
    """
    if not _SUSPICIOUS.search(body):
        try:
            probe: Any = orjson.loads(body)
            for _ in range(_DEPTH_PROBE):
                probe = [probe]
            orjson.dumps(probe)
            return body
        except (orjson.JSONDecodeError, orjson.JSONEncodeError, TypeError):
            pass
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody(400, f"the request body is not valid UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(
            text,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_BadNumber,
        )
    except json.JSONDecodeError as exc:
        raise BadBody(400, f"the request body is not valid JSON: {exc.msg} at position {exc.pos}") from None
    except RecursionError:
        raise BadBody(400, f"the request body nests deeper than {MAX_JSON_DEPTH} levels") from None
    surrogates = False
    for path, item, depth in _walk_bounded(value):
        if isinstance(item, _BadNumber):
            raise BadBody(
                422,
                f"{path or 'body'}: {item.text[:30]} must be a finite number within the 64-bit "
                "integer range (-2^63 .. 2^64-1)",
                path or "body",
            )
        if (isinstance(item, str) and _has_surrogate(item)) or (
            isinstance(item, dict) and any(_has_surrogate(k) for k in item)
        ):
            surrogates = True
        if depth > MAX_JSON_DEPTH and isinstance(item, dict | list):
            raise BadBody(400, f"the request body nests deeper than {MAX_JSON_DEPTH} levels")
    if not surrogates:
        return body
    return json.dumps(_replace_surrogates(value), ensure_ascii=False).encode("utf-8")


def _walk_bounded(value: Any) -> Iterator[tuple[str, Any, int]]:
    try:
        yield from _walk(value)
    except RecursionError:
        raise BadBody(400, f"the request body nests deeper than {MAX_JSON_DEPTH} levels") from None


def _is_json(headers: Headers) -> bool:
    content_type = headers.get("content-type")
    if content_type is None:
        return True  # FastAPI parses a body without a content type as JSON
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


class JsonBodyMiddleware:
    """Read a JSON request body, check it with `checked_body`, and hand the app the checked bytes.

    Paths under `skip_prefixes` (the Gradio page, which has its own protocol) are left alone.
    """

    def __init__(self, app: ASGIApp, skip_prefixes: tuple[str, ...] = ("/ui",)) -> None:
        self.app = app
        self.skip_prefixes = skip_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in _BODY_METHODS
            or scope["path"].startswith(self.skip_prefixes)
            or not _is_json(Headers(scope=scope))
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body:
            try:
                body = checked_body(body)
            except BadBody as bad:
                tei = scope["path"] in TEI_PATHS or (scope["path"] == "/rerank" and b'"texts"' in body)
                kind = "invalid_request"
                await error_response(bad.status, bad.message, field=bad.field, kind=kind, tei=tei)(
                    scope, receive, send
                )
                return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        if scope.get("headers") is not None:
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode("ascii")))
            scope["headers"] = headers  # in place: outer middleware reads scope["route"] afterwards
        await self.app(scope, replay, send)
