"""Every error as a JSON body that names the field: no tracebacks, no bare 500s for bad input."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from patentrank.batching import Overloaded
from patentrank.engine import StageUnavailable, UnknownModel
from patentrank.errors import InputError, ModelLoadError, PatentrankError
from patentrank.index.stores import VectorStoreUnavailable
from patentrank.models.remote import RemoteError

logger = logging.getLogger("patentrank.server")

# Union members show up in pydantic error locations ('str', 'DocumentObject', 'list[str]'); field
# names in our schemas are all lower-case identifiers, so anything else is a type tag to drop.
_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


class ApiError(Exception):
    """An HTTP error with a message for the caller; `tei` selects Hugging Face TEI's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        kind: str = "invalid_request",
        headers: Mapping[str, str] | None = None,
        tei: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.kind = kind
        self.headers = dict(headers or {})
        self.tei = tei


def error_response(
    status: int,
    message: str,
    *,
    field: str | None = None,
    kind: str = "invalid_request",
    headers: Mapping[str, str] | None = None,
    tei: bool = False,
) -> Response:
    """OpenAI's error shape `{"error": {"message", "type", "field", "param", "code"}}`, or TEI's."""
    if tei:
        body: dict[str, Any] = {"error": message, "error_type": kind}
    else:
        body = {"error": {"message": message, "type": kind, "field": field, "param": field, "code": status}}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def from_exception(exc: BaseException, *, tei: bool = False) -> ApiError:
    """Translate the package's exceptions into HTTP errors."""
    if isinstance(exc, ApiError):
        return exc
    message = str(exc) or type(exc).__name__
    if isinstance(exc, UnknownModel):
        return ApiError(404, message, field="model", kind="model_not_found", tei=tei)
    if isinstance(exc, InputError):
        return ApiError(422, message, field=exc.field, tei=tei)
    if isinstance(exc, Overloaded):
        headers = {"Retry-After": str(exc.retry_after_s)}
        return ApiError(exc.status, message, kind="overloaded", headers=headers, tei=tei)
    if isinstance(exc, StageUnavailable | ModelLoadError):
        return ApiError(503, message, kind="unavailable", tei=tei)
    if isinstance(exc, RemoteError):
        return ApiError(502, message, kind="upstream_error", tei=tei)
    if isinstance(exc, VectorStoreUnavailable):  # Milvus down: retry later, the rest still serves
        return ApiError(503, message, kind="unavailable", headers={"Retry-After": "5"}, tei=tei)
    if isinstance(exc, PatentrankError):
        return ApiError(500, message, kind="server_error", tei=tei)
    return ApiError(
        500, "internal server error (details are in the server log)", kind="server_error", tei=tei
    )


def field_path(loc: Sequence[Any]) -> str:
    """('body', 'documents', 3, 'DocumentObject', 'text') -> 'documents[3].text'."""
    path = ""
    for position, part in enumerate(loc):
        if position == 0 and part in ("body", "path", "query", "header"):
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and (part.lower() in _TYPE_TAGS or "[" in part or part[:1].isupper()):
            continue
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


TEI_PATHS = ("/embed", "/similarity", "/")  # always TEI's error shape; /rerank when it has `texts`


def is_tei(path: str, body: Any) -> bool:
    """Whether errors for this request take TEI's shape `{"error", "error_type"}`."""
    return path in TEI_PATHS or (path == "/rerank" and isinstance(body, dict) and "texts" in body)


def _is_tei(request: Request, body: Any) -> bool:
    return is_tei(request.url.path, body)


def validation_error(request: Request, exc: RequestValidationError) -> ApiError:
    """The first few problems, each with its field; malformed JSON is a 400."""
    errors = list(exc.errors())
    tei = _is_tei(request, getattr(exc, "body", None))
    if any(e.get("type") == "json_invalid" for e in errors):
        first = next(e for e in errors if e.get("type") == "json_invalid")
        detail = first.get("ctx", {}).get("error", first.get("msg", "invalid JSON"))
        return ApiError(400, f"the request body is not valid JSON: {detail}", field="body", tei=tei)
    content_type = request.headers.get("content-type", "")
    if "json" not in content_type.lower() and any(tuple(e.get("loc", ())) == ("body",) for e in errors):
        return ApiError(
            415,
            "send the body as JSON with the header 'Content-Type: application/json'"
            + (f" (got {content_type!r})" if content_type else ""),
            field="body",
            kind="unsupported_media_type",
            tei=tei,
        )
    # Union members fail separately at one location: merge them into one "should be A or B".
    by_field: dict[str, list[str]] = {}
    for error in errors:
        name = field_path(error.get("loc", ()))
        text = str(error.get("msg", "invalid value"))
        if error.get("type") == "missing" and name == "body":
            text = "the request needs a JSON object body"
        seen = by_field.setdefault(name, [])
        if text not in seen:
            seen.append(text)
    fields = list(by_field)
    messages = [
        f"{name}: " + " or ".join([texts[0]] + [t.removeprefix("Input should be ") for t in texts[1:]])
        for name, texts in by_field.items()
    ]
    shown = "; ".join(messages[:3]) + (f" (and {len(messages) - 3} more)" if len(messages) > 3 else "")
    return ApiError(422, shown, field=fields[0] if fields else None, tei=tei)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every failure into a JSON error body."""

    async def on_api_error(request: Request, exc: Exception) -> Response:
        error = from_exception(exc)
        if error.status >= 500 and error.status not in (502, 503):
            logger.error("request %s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
        return error_response(
            error.status,
            error.message,
            field=error.field,
            kind=error.kind,
            headers=error.headers,
            tei=error.tei,
        )

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        error = validation_error(request, exc)
        return error_response(error.status, error.message, field=error.field, kind=error.kind, tei=error.tei)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        kinds = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}; see /docs for the API"
        return error_response(
            exc.status_code,
            message,
            kind=kinds.get(exc.status_code, "http_error"),
            headers=getattr(exc, "headers", None),
        )

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(PatentrankError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_api_error)
