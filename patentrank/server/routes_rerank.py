"""POST /rerank, /v1/rerank, /v2/rerank (vLLM, Jina, Cohere v1/v2, TEI) and vLLM's /score."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from patentrank.engine import Engine, RerankResult
from patentrank.errors import PatentrankError
from patentrank.server.errors import ApiError, from_exception
from patentrank.server.limits import check_count, check_lengths, check_text_length, require_nonempty
from patentrank.server.schemas import (
    DocumentObject,
    FlexibleRerankRequest,
    RerankRequest,
    RerankResponse,
    ScoreRequest,
    ScoreResponse,
    TEIRankItem,
)

router = APIRouter(tags=["rerank"])
Flavour = Literal["rerank", "v1", "v2"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "Unknown model"},
    413: {"description": "Too many documents, or a document over PATENTRANK_MAX_DOCUMENT_CHARS"},
    422: {"description": "Invalid field (the message names it)"},
    429: {"description": "Queue full; see Retry-After"},
    503: {"description": "No reranker loaded, or the request waited past its deadline (Retry-After)"},
}


def json_response(body: Any) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


def _ranked_text(document: str | DocumentObject, index: int, rank_fields: list[str] | None) -> str:
    if isinstance(document, str):
        return document
    if not rank_fields or rank_fields == ["text"]:
        return document.text
    fields = {"text": document.text, **(document.model_extra or {})}
    lines = []
    for name in rank_fields:
        if name not in fields:
            raise ApiError(
                422, f"documents[{index}] has no field {name!r} named in rank_fields", field="rank_fields"
            )
        lines.append(f"{name}: {fields[name]}")
    return "\n".join(lines)


def _returned(document: str | DocumentObject) -> dict[str, Any]:
    return {"text": document} if isinstance(document, str) else document.model_dump()


async def _score(
    request: Request,
    query: str,
    texts: list[str],
    *,
    field: str,
    instruction: str | None = None,
    max_tokens_per_doc: int | None = None,
    tei: bool = False,
) -> RerankResult:
    """Check the limits, then score through the engine (cache, batching); errors keep the caller's shape."""
    engine: Engine = request.app.state.engine
    settings = request.app.state.settings
    require_nonempty(query, "query", tei=tei)
    check_text_length(query, "query", settings, tei=tei)
    check_count(len(texts), settings.max_documents, field, "MAX_DOCUMENTS", tei=tei)
    check_lengths(texts, field, settings, tei=tei)
    if instruction is not None:
        require_nonempty(instruction, "instruction", tei=tei)
        check_text_length(instruction, "instruction", settings, tei=tei)
    try:
        return await engine.rerank(
            query, texts, instruction=instruction, max_tokens_per_doc=max_tokens_per_doc
        )
    except PatentrankError as exc:
        raise from_exception(exc, tei=tei) from exc


def _order(result: RerankResult, body: RerankRequest) -> list[int]:
    order = sorted(range(len(result.scores)), key=lambda i: -result.scores[i])
    if body.min_score is not None:
        order = [i for i in order if result.scores[i] >= body.min_score]
    if body.top_n:
        order = order[: body.top_n]
    return order


async def _rerank(request: Request, body: RerankRequest, flavour: Flavour) -> Response:
    engine: Engine = request.app.state.engine
    texts_field = getattr(body, "texts", None)
    tei = texts_field is not None
    if tei and body.documents is not None:
        raise ApiError(422, "send documents or TEI's texts, not both", field="texts")
    if not tei and body.documents is None:
        raise ApiError(422, "documents: Field required (or TEI's texts)", field="documents")
    try:
        model = engine.check_model(body.model, "reranker")
    except PatentrankError as exc:
        raise from_exception(exc, tei=tei) from exc
    originals: list[Any] = list(texts_field if tei else body.documents or [])
    texts = [_ranked_text(doc, i, body.rank_fields) for i, doc in enumerate(originals)]
    result = await _score(
        request,
        body.query,
        texts,
        field="texts" if tei else "documents",
        instruction=body.instruction,
        max_tokens_per_doc=body.max_tokens_per_doc,
        tei=tei,
    )
    order = _order(result, body)
    if tei:
        assert isinstance(body, FlexibleRerankRequest)
        return json_response(
            [
                {
                    "index": i,
                    "score": result.logits[i] if body.raw_scores else result.scores[i],
                    **({"text": texts[i]} if body.return_text else {}),
                }
                for i in order
            ]
        )
    with_documents = body.return_documents if body.return_documents is not None else flavour != "v2"
    results = []
    for i in order:
        item: dict[str, Any] = {"index": i, "relevance_score": result.scores[i]}
        if with_documents:
            item["document"] = _returned(originals[i])
        results.append(item)
    return json_response(
        {
            "id": f"rerank-{uuid.uuid4().hex}",
            "model": model,
            "usage": {
                "prompt_tokens": result.prompt_tokens,
                "total_tokens": result.prompt_tokens,
                "truncated_documents": result.truncated,
                "cache_hits": result.cache_hits,
            },
            "results": results,
            "meta": {
                "api_version": {"version": "2" if flavour == "v2" else "1"},
                "billed_units": {"search_units": 1},
            },
        }
    )


_RERANK_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"model": RerankResponse}, **_ERRORS}


@router.post(
    "/rerank",
    summary="Rerank (vLLM/Jina shape; TEI shape when the body has `texts`)",
    responses={200: {"model": RerankResponse | list[TEIRankItem]}, **_ERRORS},
)
async def rerank(request: Request, body: FlexibleRerankRequest) -> Response:
    """Score `documents` against `query`, best first. With `texts` instead of `documents` the request and
    the answer (a bare list of `{index, score, text?}`) follow Hugging Face TEI."""
    return await _rerank(request, body, "rerank")


@router.post("/v1/rerank", summary="Rerank (vLLM, Jina, Cohere v1)", responses=_RERANK_RESPONSES)
async def rerank_v1(request: Request, body: RerankRequest) -> Response:
    """Score `documents` against `query`; documents are returned unless `return_documents` is false."""
    return await _rerank(request, body, "v1")


@router.post("/v2/rerank", summary="Rerank (Cohere v2)", responses=_RERANK_RESPONSES)
async def rerank_v2(request: Request, body: RerankRequest) -> Response:
    """Cohere v2: documents are returned only when `return_documents` is true."""
    return await _rerank(request, body, "v2")


@router.post("/score", summary="Score (vLLM)", responses={200: {"model": ScoreResponse}, **_ERRORS})
async def score(request: Request, body: ScoreRequest) -> Response:
    """vLLM's score API for one query: `text_1` (a string or a one-item list) against `text_2`."""
    engine: Engine = request.app.state.engine
    model = engine.check_model(body.model, "reranker")
    queries = [body.text_1] if isinstance(body.text_1, str) else body.text_1
    if len(queries) != 1:
        raise ApiError(422, "text_1 must be one query (a string or a one-item list)", field="text_1")
    documents = [body.text_2] if isinstance(body.text_2, str) else body.text_2
    result = await _score(
        request, queries[0], documents, field="text_2", max_tokens_per_doc=body.max_tokens_per_doc
    )
    return json_response(
        {
            "id": f"score-{uuid.uuid4().hex}",
            "object": "list",
            "created": int(time.time()),
            "model": model,
            "data": [{"index": i, "object": "score", "score": s} for i, s in enumerate(result.scores)],
            "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
        }
    )
