"""POST /v1/search (the two-stage pipeline) and /v1/patents ingest, get and delete."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from patentrank.corpus import patent_from_record
from patentrank.errors import InputError
from patentrank.index.report import IngestReport, Rejection
from patentrank.patent_ids import MAX_PATENT_ID_LENGTH, PATENT_ID_PATTERN, patent_id_problem
from patentrank.search_request import SearchBody
from patentrank.server.errors import ApiError
from patentrank.server.routes_rerank import json_response

router = APIRouter(tags=["search"])


class IngestBody(BaseModel):
    """Patents to add or update (same id = update; identical content = unchanged)."""

    model_config = ConfigDict(extra="forbid")

    patents: list[dict[str, Any]] = Field(..., min_length=1)
    field_map: dict[str, str] | None = Field(
        None, description="our field -> your field, e.g. {'id': 'pub_no'}"
    )


def _pipeline(request: Request) -> Any:
    return request.app.state.runtime.require_pipeline()


@router.post(
    "/v1/search",
    summary="Search patents: BM25 + dense retrieval, fused, filtered, reranked",
    responses={404: {"description": "The patent to search by (`patent_id`) is not in the index"}},
)
async def search(body: SearchBody, request: Request) -> Response:
    """One result per patent with its best passage (matching terms as [start, end) spans) and the score of
    every stage; `stages` says which stages ran and why the others did not. With `collapse` (default)
    one result per invention: the others are in its `family_members` (id, score, reason)."""
    pipeline = _pipeline(request)
    req = body.to_request()
    try:
        response = await asyncio.to_thread(pipeline.search, req)
    except InputError as exc:
        if exc.field == "patent_id":  # the patent to search by does not exist: a missing resource
            raise ApiError(404, str(exc), field="patent_id", kind="not_found") from exc
        raise
    metrics = request.app.state.engine.metrics
    for stage, info in response.stages.items():
        if info.get("ran") and "ms" in info:
            metrics.stage_seconds.labels(stage=f"search_{stage}").observe(info["ms"] / 1000)
    return json_response(response.as_dict())


@router.post("/v1/patents", summary="Add or update patents (idempotent by id)")
async def ingest(body: IngestBody, request: Request) -> Response:
    """Valid records are stored and indexed; invalid ones are listed in `rejected` with their position
    and the reason, and do not stop the others."""
    pipeline = _pipeline(request)
    limit = request.app.state.settings.max_inputs
    if len(body.patents) > limit:
        raise ApiError(413, f"at most {limit} patents per request (PATENTRANK_MAX_INPUTS)", field="patents")
    patents, rejected = [], []
    for position, record in enumerate(body.patents):
        try:
            patent = patent_from_record(record, body.field_map)
            problem = patent_id_problem(patent.id)
            if problem is not None:
                raise InputError(f"id {problem}", field="id")
            patents.append(patent)
        except InputError as exc:
            patent_id = record.get("id")
            where = f"patents[{position}]"
            rejected.append(
                Rejection(where, str(exc), exc.field, None if patent_id is None else str(patent_id), position)
            )
    report = await asyncio.to_thread(pipeline.index.add, patents) if patents else IngestReport()
    report.rejected += rejected
    result = report.as_dict()
    result["index"] = await asyncio.to_thread(pipeline.index.stats)
    return json_response(result)


PatentIdPath = Path(
    pattern=PATENT_ID_PATTERN,
    max_length=MAX_PATENT_ID_LENGTH,
    description="Letters, digits and . _ - : (at most 128); other stored ids go in the `id` query parameter",
)
# Ids stored before the rule (e.g. with a '/') stay reachable here: a query parameter round-trips any text.
# 1,000 characters percent-encode to at most 9 KB, inside uvicorn's 16 KB limit on a request's head.
StoredIdQuery = Query(min_length=1, max_length=1000, description="Any stored patent id, URL-encoded")
_NOT_FOUND = {404: {"description": "No patent with this id"}}
PATENT_METHODS = "GET, HEAD, DELETE, OPTIONS"


async def _get_patent(patent_id: str, request: Request) -> Response:
    pipeline = _pipeline(request)
    patent = await asyncio.to_thread(pipeline.index.docstore.get_patent, patent_id)
    if patent is None:
        raise ApiError(404, f"patent {patent_id!r} is not in the index", field="patent_id", kind="not_found")
    passages = await asyncio.to_thread(pipeline.index.docstore.passages_of, patent_id)
    body = patent.to_dict()
    body["passages"] = [
        {"passage_id": p.passage_id, "ordinal": p.ordinal, "field": p.field, "text": p.text} for p in passages
    ]
    return json_response(body)


async def _delete_patent(patent_id: str, request: Request) -> Response:
    pipeline = _pipeline(request)
    removed = await asyncio.to_thread(pipeline.index.delete, [patent_id])
    if not removed:
        raise ApiError(404, f"patent {patent_id!r} is not in the index", field="patent_id", kind="not_found")
    return json_response({"id": patent_id, "deleted": True})


@router.get("/v1/patents/{patent_id}", summary="One stored patent and its passages", responses=_NOT_FOUND)
async def get_patent(request: Request, patent_id: str = PatentIdPath) -> Response:
    return await _get_patent(patent_id, request)


@router.delete("/v1/patents/{patent_id}", summary="Remove a patent from every index", responses=_NOT_FOUND)
async def delete_patent(request: Request, patent_id: str = PatentIdPath) -> Response:
    return await _delete_patent(patent_id, request)


@router.get("/v1/patents", summary="One stored patent, any id (`?id=`)", responses=_NOT_FOUND)
async def get_patent_by_query(request: Request, id: str = StoredIdQuery) -> Response:
    """For ids the path cannot carry, e.g. ones with a '/' stored before ids were checked."""
    return await _get_patent(id, request)


@router.delete("/v1/patents", summary="Remove a patent, any id (`?id=`)", responses=_NOT_FOUND)
async def delete_patent_by_query(request: Request, id: str = StoredIdQuery) -> Response:
    return await _delete_patent(id, request)


@router.options("/v1/patents/{patent_id}", summary="Methods allowed on a patent", status_code=204)
async def patent_options(patent_id: str) -> Response:
    return Response(status_code=204, headers={"Allow": PATENT_METHODS})
