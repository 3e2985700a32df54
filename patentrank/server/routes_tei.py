"""Hugging Face TEI's embedding routes: POST /embed, /similarity, and TEI's catch-all POST /.

`huggingface_hub.InferenceClient(base_url=...)` sends every task to the base URL itself, as TEI's
`POST /` expects: `feature_extraction` as `{"inputs": ...}` (-> /embed), `sentence_similarity` as
`{"inputs": {"source_sentence", "sentences"}}` (-> /similarity), and a TEI reranker request
`{"query", "texts"}` goes to /rerank. `text_classification` needs a classification head, which the
served models do not have: it gets a 422 that says so. `/embed_all` (per-token vectors) is not served.
Errors use TEI's shape `{"error", "error_type"}`.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from patentrank.engine import Engine
from patentrank.errors import PatentrankError
from patentrank.server.errors import ApiError, from_exception
from patentrank.server.limits import check_count, check_lengths
from patentrank.server.routes_rerank import json_response, rerank
from patentrank.server.schemas import FlexibleRerankRequest, whole_number

router = APIRouter(tags=["embeddings"])
public_router = APIRouter(tags=["admin"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"description": "Too many inputs, or an input over PATENTRANK_MAX_DOCUMENT_CHARS"},
    422: {"description": "Invalid field (the message names it)"},
    503: {"description": "No embedder loaded"},
}
_CLASSIFICATION_KEYS = {"function_to_apply", "top_k"}


class EmbedParameters(BaseModel):
    model_config = ConfigDict(extra="ignore")

    normalize: StrictBool = Field(True, description="Only true: vectors are always unit length")
    prompt_name: Literal["query", "document"] | None = Field(
        None, description="'query' embeds with the query instruction"
    )
    truncate: StrictBool | None = Field(None, description="Accepted; long inputs are always truncated")
    truncation_direction: Literal["Right", "right"] | None = None
    dimensions: StrictInt | None = Field(None, ge=1, description="Keep the first d components (MRL)")

    _whole = field_validator("dimensions", mode="before")(whole_number)


class EmbedRequest(EmbedParameters):
    """TEI's /embed body; the options may also come inside `parameters` (huggingface_hub does that)."""

    inputs: StrictStr | list[StrictStr] = Field(description="A text or a list of texts")
    parameters: EmbedParameters | None = None


class SimilarityInputs(BaseModel):
    source_sentence: StrictStr
    sentences: list[StrictStr]


class SimilarityRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    inputs: SimilarityInputs
    parameters: dict[str, Any] | None = None


def _tei(exc: PatentrankError) -> ApiError:
    return from_exception(exc, tei=True)


async def _vectors(request: Request, texts: list[str], options: EmbedParameters) -> np.ndarray:
    engine: Engine = request.app.state.engine
    settings = request.app.state.settings
    check_count(len(texts), settings.max_inputs, "inputs", "MAX_INPUTS", tei=True)
    check_lengths(texts, "inputs", settings, tei=True)
    for i, text in enumerate(texts):
        if not text:
            raise ApiError(422, f"inputs[{i}] is an empty string", field=f"inputs[{i}]", tei=True)
    if not options.normalize:
        raise ApiError(
            422, "normalize=false is not supported: vectors are unit length", field="normalize", tei=True
        )
    try:
        result = await engine.embed(
            texts, input_type=options.prompt_name or "document", dimensions=options.dimensions
        )
    except PatentrankError as exc:
        raise _tei(exc) from exc
    return np.ascontiguousarray(result.vectors, dtype=np.float32)


def _merged(body: EmbedRequest) -> EmbedParameters:
    """Top-level options and those inside `parameters` together; `parameters` wins where both are set."""
    inner = body.parameters or EmbedParameters()
    return EmbedParameters(
        normalize=body.normalize and inner.normalize,
        prompt_name=inner.prompt_name or body.prompt_name,
        truncate=inner.truncate if inner.truncate is not None else body.truncate,
        truncation_direction=inner.truncation_direction or body.truncation_direction,
        dimensions=inner.dimensions if inner.dimensions is not None else body.dimensions,
    )


@router.post("/embed", summary="Embeddings (Hugging Face TEI)", responses=_ERRORS)
async def embed(request: Request, body: EmbedRequest) -> Response:
    """A list of unit-length vectors, one per input (a single string gives a list of one)."""
    options = _merged(body)
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    return json_response(await _vectors(request, texts, options))


@router.post("/similarity", summary="Sentence similarity (Hugging Face TEI)", responses=_ERRORS)
async def similarity(request: Request, body: SimilarityRequest) -> Response:
    """Cosine similarity of `source_sentence` to each of `sentences`, from the embedder."""
    if not body.inputs.sentences:
        raise ApiError(
            422, "inputs.sentences must contain at least one item", field="inputs.sentences", tei=True
        )
    texts = [body.inputs.source_sentence, *body.inputs.sentences]
    vectors = await _vectors(request, texts, EmbedParameters())
    return json_response((vectors[1:] @ vectors[0]).tolist())


@router.post("/", summary="TEI's catch-all route (huggingface_hub InferenceClient)", responses=_ERRORS)
async def tei_root(request: Request, body: dict[str, Any]) -> Response:
    """Dispatch on the body: `{"inputs": text(s)}` -> /embed, `{"inputs": {"source_sentence",
    "sentences"}}` -> /similarity, `{"query", "texts"}` -> /rerank."""
    inputs = body.get("inputs")
    if "query" in body and "texts" in body:
        return await rerank(request, _validated(FlexibleRerankRequest, body))
    if isinstance(inputs, dict):
        return await similarity(request, _validated(SimilarityRequest, body))
    parameters = body.get("parameters")
    if isinstance(parameters, dict) and (not parameters or set(parameters) & _CLASSIFICATION_KEYS):
        raise ApiError(
            422,
            "text classification is not served (no classification head): use /rerank for query-document "
            "relevance, or send {'inputs': ...} for embeddings",
            field="parameters",
            tei=True,
        )
    return await embed(request, _validated(EmbedRequest, body))


def _validated(model: type[Any], body: dict[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:  # the same 422 naming the field as the routes' own validation
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors, body=body) from None


@public_router.get("/", include_in_schema=False)
async def root(request: Request) -> Response:
    """The web page when it is mounted, else where the API is described."""
    if any(getattr(route, "path", None) == "/ui" for route in request.app.routes):
        return RedirectResponse("/ui/", status_code=307)
    return json_response({"name": "patentrank", "docs": "/docs", "openapi": "/openapi.json"})
