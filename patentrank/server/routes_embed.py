"""POST /v1/embeddings: OpenAI's embeddings API, with query instructions as an extension."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response

from patentrank.engine import Engine
from patentrank.server.errors import ApiError
from patentrank.server.limits import check_count, check_lengths, check_text_length, require_nonempty
from patentrank.server.routes_rerank import json_response
from patentrank.server.schemas import EmbeddingRequest, EmbeddingResponse

router = APIRouter(tags=["embeddings"])


@router.post(
    "/v1/embeddings",
    summary="Embeddings (OpenAI)",
    responses={
        200: {"model": EmbeddingResponse},
        404: {"description": "Unknown model"},
        413: {"description": "Too many inputs, or an input over PATENTRANK_MAX_DOCUMENT_CHARS"},
        422: {"description": "Invalid field (the message names it)"},
        429: {"description": "Queue full; see Retry-After"},
        503: {"description": "No embedder loaded, or the request waited past its deadline"},
    },
)
async def embeddings(request: Request, body: EmbeddingRequest) -> Response:
    """Unit-length vectors; `input_type: "query"` (or an `instruction`) embeds queries with the instruction
    template `Instruct: {instruction}\\nQuery:{text}`, documents get none."""
    engine: Engine = request.app.state.engine
    settings = request.app.state.settings
    model = engine.check_model(body.model, "embedder")
    texts = [body.input] if isinstance(body.input, str) else body.input
    check_count(len(texts), settings.max_inputs, "input", "MAX_INPUTS")
    for i, text in enumerate(texts):
        if not text:
            raise ApiError(422, f"input[{i}] is an empty string", field=f"input[{i}]", kind="empty_input")
    check_lengths(texts, "input", settings)
    if body.instruction is not None:
        require_nonempty(body.instruction, "instruction")
        check_text_length(body.instruction, "instruction", settings)
    input_type = body.input_type or ("query" if body.instruction is not None else "document")
    result = await engine.embed(
        texts, input_type=input_type, instruction=body.instruction, dimensions=body.dimensions
    )
    vectors = np.ascontiguousarray(result.vectors, dtype="<f4")
    data: list[dict[str, Any]] = []
    for i, vector in enumerate(vectors):
        value: Any = (
            base64.b64encode(vector.tobytes()).decode("ascii") if body.encoding_format == "base64" else vector
        )
        data.append({"object": "embedding", "index": i, "embedding": value})
    return json_response(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
        }
    )
