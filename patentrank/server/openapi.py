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

from patentrank.server.auth import needs_key
from patentrank.server.errors import TEI_PATHS

# "Contains a character Python's str.strip() keeps", which is how the server tells blank texts: JSON
# Schema's \S differs (it keeps \x1c-\x1f and \x85, drops \ufeff), so the set is spelled out.
NON_BLANK = (
    "[^\\t\\n\\x0b\\x0c\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
)

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

NUMBER_MIN, NUMBER_MAX = -(2**63), 2**64 - 1  # what json_body.py lets through
JSON_VALUE_REF = {"$ref": "#/components/schemas/JsonValue"}
# Free-form values (extra document fields, patent records, ignored fields): any JSON the server can
# carry, i.e. integers within 64 bits (see json_body.py); non-integral numbers are any finite double.
JSON_VALUE_SCHEMA: dict[str, Any] = {
    "description": "Any JSON value; numbers within the 64-bit integer range",
    "anyOf": [
        {"type": "string"},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "number", "minimum": NUMBER_MIN, "maximum": NUMBER_MAX},
        {"type": "array", "items": JSON_VALUE_REF},
        {"type": "object", "additionalProperties": JSON_VALUE_REF},
    ],
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
    # TEI's routes answer in TEI's shape, except a 408 written before any route runs; /rerank in TEI's
    # shape when the body has `texts`.
    tei = path in TEI_PATHS or path == "/rerank"
    schema = {"oneOf": [ERROR_SCHEMA, TEI_ERROR_SCHEMA]} if tei else ERROR_SCHEMA
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


def _bound_free_values(node: Any) -> None:
    """Every object that admits extra fields admits them as `JsonValue`s; every number is bounded."""
    if isinstance(node, dict):
        if node.get("type") in ("integer", "number"):
            if "minimum" not in node and "exclusiveMinimum" not in node:
                node["minimum"] = NUMBER_MIN
            if "maximum" not in node and "exclusiveMaximum" not in node:
                node["maximum"] = NUMBER_MAX
        is_object = node.get("type") == "object" or "properties" in node
        if is_object and node.get("additionalProperties", True) not in (False,) and "$ref" not in node:
            extra = node.get("additionalProperties", True)
            if extra is True or extra == {}:
                node["additionalProperties"] = JSON_VALUE_REF
        for value in node.values():
            _bound_free_values(value)
    elif isinstance(node, list):
        for value in node:
            _bound_free_values(value)


def _constrain(components: dict[str, Any], app: FastAPI) -> None:
    settings = app.state.settings
    embedder = getattr(app.state.engine, "embedder", None)
    full = getattr(embedder, "full_dim", None) or getattr(embedder, "dim", None)
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
        components["EmbeddingRequest"]["not"] = {  # an instruction is for queries only
            "required": ["instruction", "input_type"],
            "properties": {"instruction": {"type": "string"}, "input_type": {"const": "document"}},
        }
    flexible = components.get("FlexibleRerankRequest")
    if flexible:  # documents or TEI's texts, not both
        documents, texts = (
            {"required": [n], "properties": {n: {"type": "array"}}} for n in ("documents", "texts")
        )
        flexible["anyOf"] = [documents, texts]
        flexible["not"] = {
            "required": ["documents", "texts"],
            "properties": {"documents": {"type": "array"}, "texts": {"type": "array"}},
        }
    tei_embed = components.get("EmbedRequest", {}).get("properties", {})
    if tei_embed:
        _text(_branch(tei_embed["inputs"], "string"), chars, non_blank=False)
        _text_list(tei_embed["inputs"], inputs, chars)
    for name in ("EmbedRequest", "EmbedParameters"):
        normalize = components.get(name, {}).get("properties", {}).get("normalize")
        if normalize is not None:
            normalize["enum"] = [True]  # vectors are always unit length
    for name in ("EmbeddingRequest", "EmbedRequest", "EmbedParameters"):
        dims = _branch(components.get(name, {}).get("properties", {}).get("dimensions", {}), "integer")
        if dims is not None and isinstance(full, int):
            dims["maximum"] = full
    similarity = components.get("SimilarityInputs", {}).get("properties", {})
    if similarity:
        _text(similarity["source_sentence"], chars, non_blank=False)
        _text_list(similarity["sentences"], inputs - 1, chars)
    search = components.get("SearchBody")
    if search:  # a query with a non-blank character, or a patent id
        search["anyOf"] = [
            {"required": ["query"], "properties": {"query": {"pattern": NON_BLANK}}},
            {"required": ["patent_id"], "properties": {"patent_id": {"type": "string", "minLength": 1}}},
        ]
    ingest = components.get("IngestBody", {}).get("properties", {})
    if ingest.get("patents", {}).get("type") == "array":
        ingest["patents"]["maxItems"] = inputs


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with the error responses and the Settings limits filled in."""
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components["Error"] = ERROR_SCHEMA
    guarded = bool(app.state.settings.api_key)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            statuses: dict[int, str] = dict(ALWAYS)
            if "requestBody" in operation:
                statuses.update(BODY_ERRORS)
            if any(p.get("in") in ("path", "query") for p in operation.get("parameters", [])):
                statuses[422] = BODY_ERRORS[422]
            if guarded and needs_key(method.upper(), path):
                statuses.update(AUTH_ERRORS)
            for status, description in statuses.items():
                entry = responses.setdefault(str(status), {"description": description})
                entry["content"] = _error_content(path)
            for status, entry in responses.items():  # the routes' own 4xx/5xx get the error body too
                if status[:1] in "45":
                    entry["content"] = _error_content(path)
    _constrain(components, app)
    _bound_free_values(schema.get("paths", {}))
    _bound_free_values(components)
    components["JsonValue"] = JSON_VALUE_SCHEMA
    root = schema.get("paths", {}).get("/", {}).get("post")
    if root:  # what the catch-all dispatches on (see routes_tei.tei_root)
        root["requestBody"]["content"]["application/json"]["schema"] = {
            "anyOf": [
                {  # parameters that are empty or name a classification option mean text_classification
                    "allOf": [{"$ref": "#/components/schemas/EmbedRequest"}],
                    "not": {
                        "required": ["parameters"],
                        "properties": {
                            "parameters": {
                                "type": "object",
                                "anyOf": [
                                    {"maxProperties": 0},
                                    {"required": ["function_to_apply"]},
                                    {"required": ["top_k"]},
                                ],
                            }
                        },
                    },
                },
                {"$ref": "#/components/schemas/SimilarityRequest"},
            ]
        }
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve `build_openapi`'s document at /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
