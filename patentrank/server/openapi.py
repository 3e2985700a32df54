"""The OpenAPI document as the server behaves: every status it answers, every limit it enforces.

FastAPI derives the schema from the pydantic models, which cannot know the limits in Settings
(documents per request, characters per text), the loaded embedder's size, that a query must have a
non-blank character, or the errors the middleware answers (400, 401, 408, 413, 415, 429). This
post-processing adds them, so that a client generated from /openapi.json (or schemathesis) sees the
same contract the server enforces.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from patentrank.server.auth import PUBLIC_PATHS, PUBLIC_PREFIXES

NON_BLANK = r"\S"  # JSON Schema patterns search: "contains a non-space character"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "field": {"type": ["string", "null"]},
                "param": {"type": ["string", "null"]},
                "code": {"type": "integer"},
            },
        }
    },
}
TEI_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "error_type"],
    "properties": {"error": {"type": "string"}, "error_type": {"type": "string"}},
}

BODY_ERRORS = {
    400: "The body is not UTF-8, not JSON, or nests too deeply",
    408: "The request did not arrive within PATENTRANK_READ_TIMEOUT_S",
    413: "The body, a list or a text is over its limit (the message names the setting)",
    415: "The body is not sent as application/json",
    422: "Invalid field (the message names it)",
}
AUTH_ERRORS = {
    401: "Missing or wrong API key",
    429: "Too many failed authentications from this address, or the queue is full; see Retry-After",
}
ALWAYS = {500: "A bug: please report it with the server log", 503: "Unavailable; see the message"}


def _error_content(path: str) -> dict[str, Any]:
    schema = {"oneOf": [ERROR_SCHEMA, TEI_ERROR_SCHEMA]} if path == "/rerank" else ERROR_SCHEMA
    return {"application/json": {"schema": schema}}


def _branch(prop: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The member of `prop` (itself, or inside anyOf) of JSON type `kind`."""
    if prop.get("type") == kind:
        return prop
    for member in prop.get("anyOf", []):
        if member.get("type") == kind:
            return member
    return None


def _text(prop: dict[str, Any] | None, max_chars: int, *, non_blank: bool = True) -> None:
    if prop is not None:
        prop.update({"minLength": 1, "maxLength": max_chars})
        if non_blank:
            prop["pattern"] = NON_BLANK


def _text_list(prop: dict[str, Any] | None, max_items: int, max_chars: int, *, min_items: int = 1) -> None:
    array = _branch(prop, "array") if prop is not None else None
    if array is None:
        return
    array.update({"minItems": min_items, "maxItems": max_items})
    items = array.get("items", {})
    _text(_branch(items, "string"), max_chars, non_blank=False)


def _constrain(components: dict[str, Any], app: FastAPI) -> None:
    settings = app.state.settings
    chars, docs, inputs = settings.max_document_chars, settings.max_documents, settings.max_inputs
    for name in ("RerankRequest", "FlexibleRerankRequest"):
        props = components.get(name, {}).get("properties", {})
        if not props:
            continue
        _text(_branch(props["query"], "string"), chars)
        _text_list(props.get("documents"), docs, chars)
        _text_list(props.get("texts"), docs, chars)
        _text(_branch(props.get("instruction", {}), "string"), chars)
    score = components.get("ScoreRequest", {}).get("properties", {})
    if score:
        _text(_branch(score["text_1"], "string"), chars)
        one = _branch(score["text_1"], "array")
        if one is not None:
            one.update({"minItems": 1, "maxItems": 1})
            _text(_branch(one.get("items", {}), "string"), chars)
        _text(_branch(score["text_2"], "string"), chars, non_blank=False)
        _text_list(score["text_2"], docs, chars)
    embed = components.get("EmbeddingRequest", {}).get("properties", {})
    if embed:
        _text(_branch(embed["input"], "string"), chars, non_blank=False)
        _text_list(embed["input"], inputs, chars)
        _text(_branch(embed.get("instruction", {}), "string"), chars)
        embedder = getattr(app.state.engine, "embedder", None)
        full = getattr(embedder, "full_dim", None) or getattr(embedder, "dim", None)
        dims = _branch(embed.get("dimensions", {}), "integer")
        if dims is not None and isinstance(full, int):
            dims["maximum"] = full
    ingest = components.get("IngestBody", {}).get("properties", {})
    if ingest.get("patents", {}).get("type") == "array":
        ingest["patents"]["maxItems"] = inputs


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with the error responses and the Settings limits filled in."""
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components["Error"] = ERROR_SCHEMA
    guarded = bool(app.state.settings.api_key)
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            statuses: dict[int, str] = dict(ALWAYS)
            if "requestBody" in operation:
                statuses.update(BODY_ERRORS)
            if any(p.get("in") in ("path", "query") for p in operation.get("parameters", [])):
                statuses[422] = BODY_ERRORS[422]
            if guarded and path not in PUBLIC_PATHS and not path.startswith(PUBLIC_PREFIXES):
                statuses.update(AUTH_ERRORS)
            for status, description in statuses.items():
                entry = responses.setdefault(str(status), {"description": description})
                entry["content"] = _error_content(path)
            for status, entry in responses.items():  # the routes' own 4xx/5xx get the error body too
                if status[:1] in "45":
                    entry["content"] = _error_content(path)
    _constrain(components, app)
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve `build_openapi`'s document at /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
