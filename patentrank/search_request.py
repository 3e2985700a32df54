"""One request schema for search, shared by HTTP, the web page and the CLI, with one set of limits.

`SearchBody` (with its `FilterBody`) is what a client sends: the HTTP body of POST /v1/search, and what
the web page's form and `patentrank search`'s options are turned into (`parse_search`). Its limits come
from `LIMITS`, which `SearchRequest.validate` checks too, so a request built in code meets the same
rules. `SearchBody.to_request` gives the pipeline's `SearchRequest`.

Example:
    >>> form = {"query": "锂电池负极材料", "filter": {"before": "2018-01-01", "ipc": ["H01M"]}}
    >>> request = parse_search(form)
    >>> request.mode, request.filter.before, request.filter.code_prefixes
    ('hybrid', datetime.date(2018, 1, 1), ['H01M'])
    >>> try:
    ...     parse_search({"query": "gears", "top_n": 0})
    ... except InputError as exc:
    ...     print(exc.field, "|", exc)
    top_n | top_n: must be an integer from 1 to 1000
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from patentrank.dates import parse_date
from patentrank.errors import InputError
from patentrank.fusion import (
    DEFAULT_DENSE_WEIGHT,
    DEFAULT_FUSION,
    DEFAULT_LEXICAL_WEIGHT,
    DEFAULT_RRF_K,
    FUSION_METHODS,
)
from patentrank.index.filters import SearchFilter

Mode = Literal["lexical", "dense", "hybrid"]
# (lowest, highest) for every integer field of a search.
LIMITS: dict[str, tuple[int, int]] = {
    "top_n": (1, 1000),
    "candidates": (1, 1000),
    "max_passage_tokens": (1, 8192),
    "retrieve_k": (1, 10_000),
    "passages_per_patent": (1, 100),
    "rrf_k": (1, 10_000),
}
MAX_TOP_N = LIMITS["top_n"][1]
MAX_CANDIDATES = LIMITS["candidates"][1]
MAX_RETRIEVE_K = LIMITS["retrieve_k"][1]  # also how far collapsing widens retrieval to keep a page full
MAX_PASSAGE_TOKENS = LIMITS["max_passage_tokens"][1]
MAX_QUERY_CHARS = 20_000
MAX_INSTRUCTION_CHARS = 2_000


@dataclass
class SearchRequest:
    """One search as the pipeline runs it: free text, or `patent_id` (or a publication number as the
    query) to search by patent. Clients send a `SearchBody`; code may build this directly.

    Example:
        >>> request = SearchRequest("锂电池负极材料", filter=SearchFilter(before="2018-01-01"), top_n=5)
        >>> request.mode, request.filter.before, request.validate()
        ('hybrid', '2018-01-01', None)
        >>> SearchRequest("", top_n=5).validate()
        Traceback (most recent call last):
        patentrank.errors.InputError: query must be a non-empty string (or give patent_id)
    """

    query: str = ""
    patent_id: str | None = None
    mode: Mode = "hybrid"
    filter: SearchFilter = field(default_factory=SearchFilter)
    top_n: int = 10
    rerank: bool = True
    candidates: int | None = None  # passages sent to the reranker; None: the pipeline's (the setting)
    max_passage_tokens: int | None = None  # cut each in the rerank prompt; None: the pipeline's
    retrieve_k: int = 200  # passages taken from each retriever
    passages_per_patent: int = 3  # at most this many of one patent's passages are reranked
    fusion: str = DEFAULT_FUSION  # "score" (normalised scores) or "rrf": patentrank/fusion.py
    lexical_weight: float = DEFAULT_LEXICAL_WEIGHT
    dense_weight: float = DEFAULT_DENSE_WEIGHT
    rrf_k: int = DEFAULT_RRF_K  # used by fusion="rrf" only
    instruction: str | None = None
    min_score: float | None = None
    highlight: bool = True  # mark matching terms in each best passage (costs an analysis per result)
    collapse: bool = True  # one result per invention (patentrank.families); top_n counts kept results

    def validate(self) -> None:
        if not (self.query or "").strip() and not self.patent_id:
            raise InputError("query must be a non-empty string (or give patent_id)", field="query")
        if self.mode not in ("lexical", "dense", "hybrid"):
            raise InputError("mode must be one of lexical, dense, hybrid", field="mode")
        if self.fusion not in FUSION_METHODS:
            raise InputError(f"fusion must be one of {', '.join(FUSION_METHODS)}", field="fusion")
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if value is None and name in ("candidates", "max_passage_tokens"):
                continue  # the pipeline's default
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InputError(f"{name} must be an integer from {low} to {high}", field=name)
        for name in ("lexical_weight", "dense_weight"):
            if getattr(self, name) < 0:
                raise InputError(f"{name} must be >= 0", field=name)
        if self.min_score is not None and not 0.0 <= self.min_score <= 1.0:
            raise InputError("min_score must be between 0 and 1", field="min_score")


def _limited(name: str, default: int | None, description: str | None = None) -> Any:
    low, high = LIMITS[name]
    return Field(default, ge=low, le=high, description=description)


class FilterBody(BaseModel):
    """Restrictions applied inside retrieval; lists mean "any of", fields combine with AND."""

    model_config = ConfigDict(extra="forbid")

    date_field: Literal["priority", "filing", "publication"] = "priority"
    before: dt.date | None = Field(None, description="Only patents dated strictly before this day")
    after: dt.date | None = Field(None, description="Only patents dated on or after this day")
    ipc: list[str] = Field(default_factory=list, description="IPC/CPC prefixes, e.g. ['H01M', 'G06T5']")
    languages: list[str] = Field(default_factory=list, description="e.g. ['zh', 'en']")
    jurisdictions: list[str] = Field(default_factory=list, description="e.g. ['CN', 'US', 'EP']")
    exclude: list[str] = Field(default_factory=list, description="Publication numbers to leave out")

    @field_validator("before", "after", mode="before")
    @classmethod
    def _date(cls, value: Any) -> Any:
        """The forms patent records use (`patentrank.dates.parse_date`): 2020-01-31, 20200131, 2020."""
        if isinstance(value, str | int) and not isinstance(value, bool):
            try:  # any ISO date is a valid cutoff (the schema says format: date); then the record forms
                return dt.date.fromisoformat(value) if isinstance(value, str) else parse_date(value)
            except ValueError:
                pass
            try:
                return parse_date(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a date: write it as YYYY-MM-DD") from None
        return value

    def to_filter(self) -> SearchFilter:
        return SearchFilter(
            date_field=self.date_field,
            before=self.before,
            after=self.after,
            code_prefixes=self.ipc,
            languages=self.languages,
            jurisdictions=self.jurisdictions,
            exclude_patents=self.exclude,
        )


class SearchBody(BaseModel):
    """A search: `query` text, or `patent_id` (or a publication number as the query) to search by patent."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field("", max_length=MAX_QUERY_CHARS)
    patent_id: str | None = None
    mode: Mode = "hybrid"
    filter: FilterBody = Field(default_factory=FilterBody)
    top_n: int = _limited("top_n", 10)
    rerank: bool = True
    candidates: int | None = _limited(
        "candidates", None, "Passages reranked (default PATENTRANK_RERANK_CANDIDATES)"
    )
    max_passage_tokens: int | None = _limited(
        "max_passage_tokens",
        None,
        "Cut each passage to this many tokens in the rerank prompt "
        "(default PATENTRANK_RERANK_PASSAGE_TOKENS: whole passages)",
    )
    retrieve_k: int = _limited("retrieve_k", 200, "Passages taken from each retriever")
    passages_per_patent: int = _limited(
        "passages_per_patent", 3, "At most this many of one patent's passages are reranked"
    )
    fusion: Literal["score", "rrf"] = Field(
        DEFAULT_FUSION,
        description="How the lexical and dense lists combine: 'score' (weighted normalised scores, the "
        "default) or 'rrf' (reciprocal-rank fusion); see docs/evaluation.md",
    )
    lexical_weight: float = Field(DEFAULT_LEXICAL_WEIGHT, ge=0)
    dense_weight: float = Field(DEFAULT_DENSE_WEIGHT, ge=0)
    rrf_k: int = _limited("rrf_k", DEFAULT_RRF_K, "RRF's k (fusion 'rrf' only)")
    instruction: str | None = Field(None, max_length=MAX_INSTRUCTION_CHARS)
    min_score: float | None = Field(None, ge=0, le=1)
    highlight: bool = True
    collapse: bool = Field(
        True,
        description="One result per invention: patents with one `family_id`, or the same normalised title "
        "+ abstract, are listed in `family_members` of the best-ranked one; `top_n` counts kept results. "
        "Searching by patent also leaves out the patent's own family and twins",
    )

    def to_request(self) -> SearchRequest:
        """The pipeline's request; fields left out (candidates, passage cap) take the pipeline's settings."""
        fields = self.model_dump(exclude={"filter"})
        return SearchRequest(**fields, filter=self.filter.to_filter())


def parse_search(fields: Mapping[str, Any]) -> SearchRequest:
    """A `SearchRequest` from a form's or the CLI's fields, checked exactly as the HTTP body is; a bad
    field raises InputError naming it (e.g. "filter.before: '31/12/2020' is not a date: ...")."""
    try:
        body = SearchBody.model_validate(dict(fields))
    except ValidationError as exc:
        raise _input_error(exc) from None
    request = body.to_request()
    request.validate()
    return request


def _input_error(exc: ValidationError) -> InputError:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] in ("greater_than_equal", "less_than_equal") and where in LIMITS:
        low, high = LIMITS[where]
        message = f"must be an integer from {low} to {high}"
    return InputError(f"{where}: {message}", field=where)
