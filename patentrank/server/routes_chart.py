"""POST /v1/claim-chart and /v1/combinations: a claim against references (or a search's results)."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from patentrank.chart_export import chart_csv, chart_html, chart_xlsx_bytes
from patentrank.claim_chart import (
    ChartRequest,
    ClaimChart,
    ClaimCharter,
    UnknownReference,
    scorers_from_engine,
)
from patentrank.combinations import MAX_COMBINATION_REFERENCES, combine
from patentrank.errors import InputError
from patentrank.search_request import SearchBody
from patentrank.server.errors import ApiError
from patentrank.server.routes_rerank import json_response

router = APIRouter(tags=["claim chart"])


class ChartBody(BaseModel):
    """A claim and its references: publication numbers, or a search whose results are the references."""

    model_config = ConfigDict(extra="forbid")

    claim: str = Field(..., max_length=50_000, description="Claim text, or 'claim N of PUBLICATION'")
    references: list[str] | None = Field(None, description="Publication numbers in the index")
    search: SearchBody | None = Field(
        None, description="A /v1/search body; an empty query searches the claim"
    )
    elements: list[str] | None = Field(None, description="Your own split of the claim into elements")
    instruction: str | None = Field(None, max_length=2_000)
    threshold: float | None = Field(
        None, ge=0, le=1, description="Score at which an element counts as covered"
    )

    @model_validator(mode="after")
    def _one_source(self) -> ChartBody:
        if (self.references is None) == (self.search is None):
            raise ValueError("give either `references` or `search`")
        return self


class CombinationsBody(ChartBody):
    size: Literal[2, 3] = Field(2, description="2 for pairs, 3 for triples")
    top: int = Field(MAX_COMBINATION_REFERENCES, ge=1, le=MAX_COMBINATION_REFERENCES)
    limit: int = Field(20, ge=1, le=200, description="Combinations returned")


def _reference_ids(body: ChartBody, claim_text: str, request: Request, limit: int) -> list[str]:
    if body.references is not None:
        return body.references
    assert body.search is not None
    s = body.search
    pipeline = request.app.state.runtime.require_pipeline()
    query = s.query or (claim_text if not s.patent_id else "")
    if s.top_n > limit:
        raise InputError(
            f"search.top_n {s.top_n} is more than the limit of {limit} references "
            "(PATENTRANK_MAX_CHART_REFERENCES)",
            field="search.top_n",
        )
    # The claim stands in for a missing query; the chart needs no highlights.
    request_ = s.model_copy(update={"query": query, "highlight": False}).to_request()
    response = pipeline.search(request_)
    return [r.patent_id for r in response.results]


def _run_chart(body: ChartBody, request: Request) -> ClaimChart:
    engine = request.app.state.engine
    settings = request.app.state.settings
    pipeline = request.app.state.runtime.require_pipeline()
    charter = ClaimCharter(pipeline.index.docstore, scorers_from_engine(engine), settings)
    claim, _ = charter.resolve_claim(body.claim)
    ids = _reference_ids(body, claim, request, settings.max_chart_references)
    if body.search is not None and not ids:
        raise InputError("the search found no references", field="search")
    return charter.chart(ChartRequest(body.claim, ids, body.elements, body.instruction, body.threshold))


async def _chart(body: ChartBody, request: Request) -> ClaimChart:
    try:
        return await asyncio.to_thread(_run_chart, body, request)
    except UnknownReference as exc:
        raise ApiError(404, str(exc), field=exc.field, kind="not_found") from None


@router.post("/v1/claim-chart", summary="Chart a claim's elements against references")
async def claim_chart(body: ChartBody, request: Request, format: str = "json") -> Response:
    """One cell per element per reference: the best passage and its reranker score; references ordered
    by coverage. `?format=csv|html|xlsx` returns the chart as a file instead of JSON."""
    if format not in ("json", "csv", "html", "xlsx"):
        raise ApiError(422, "format must be json, csv, html or xlsx", field="format")
    chart = await _chart(body, request)
    if format == "csv":
        return Response(chart_csv(chart), media_type="text/csv; charset=utf-8", headers=_attachment("csv"))
    if format == "html":
        return Response(chart_html(chart), media_type="text/html; charset=utf-8")
    if format == "xlsx":
        media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        return Response(chart_xlsx_bytes(chart), media_type=media, headers=_attachment("xlsx"))
    return json_response(chart.as_dict())


@router.post("/v1/combinations", summary="Pairs (or triples) of references that together cover the claim")
async def combinations(body: CombinationsBody, request: Request) -> Response:
    """From the chart's top references, the combinations whose union of covered elements is largest;
    `by_element` says which reference covers which element; the primary reference comes first."""
    chart = await _chart(body, request)
    combos = combine(chart, size=body.size, top=body.top, limit=body.limit)
    result: dict[str, Any] = {
        "elements": [{"index": i, "text": t} for i, t in enumerate(chart.elements)],
        "threshold": chart.threshold,
        "references": [{"id": r.id, "coverage": r.coverage, "covered": r.covered} for r in chart.references],
        "combinations": [c.as_dict() for c in combos],
        "reranked_pairs": chart.reranked_pairs,
        "took_ms": round(chart.took_ms, 1),
    }
    return json_response(result)


def _attachment(ext: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="claim-chart.{ext}"'}
