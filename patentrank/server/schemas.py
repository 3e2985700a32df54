"""Request and response bodies of the rerank and embeddings APIs, as the existing clients speak them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)


def whole_number(value: Any) -> Any:
    """2.0 is an integer in JSON (and JSON Schema): take it as 2; "2" and 2.5 stay errors.

    A `mode="before"` field validator rather than an annotated type, so that the JSON schema keeps
    its `minimum` (pydantic writes a bare `ge` for constraints behind a before-validator).
    """
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


class DocumentObject(BaseModel):
    """A document as an object (Cohere v1): `text` is ranked, every other field is returned as given."""

    model_config = ConfigDict(extra="allow")
    text: StrictStr


class RerankRequest(BaseModel):
    """The vLLM/Jina and Cohere v1/v2 request; unknown fields are ignored, as vLLM and Cohere do."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "qwen3-reranker-0.6b",
                    "query": "image denoising with a neural network",
                    "documents": ["A U-Net removes noise from images.", "A gearbox with helical gears."],
                    "top_n": 1,
                    "return_documents": True,
                }
            ]
        }
    )

    query: StrictStr = Field(description="The query; must not be empty")
    documents: list[StrictStr | DocumentObject] = Field(
        description="Documents to rank: strings or objects with a `text` field"
    )
    model: StrictStr | None = Field(None, description="The loaded reranker's id, basename or an alias")
    top_n: StrictInt | None = Field(None, ge=0, description="Return the best n; 0 or absent returns all")
    return_documents: StrictBool | None = Field(
        None, description="Include each document: default true on /rerank and /v1/rerank, false on /v2/rerank"
    )
    max_tokens_per_doc: StrictInt | None = Field(
        None, ge=1, description="Cut each document to this many tokens"
    )
    instruction: StrictStr | None = Field(None, description="Task instruction (extension), best in English")
    min_score: StrictFloat | None = Field(None, description="Drop results scoring below this (extension)")
    rank_fields: list[StrictStr] | None = Field(
        None,
        description="Cohere v1: object fields to rank on; every object document must have each of them "
        "(else 422 naming rank_fields)",
    )
    max_chunks_per_doc: StrictInt | None = Field(None, ge=1, description="Cohere v1: accepted, not used")
    truncate_prompt_tokens: StrictInt | None = Field(
        None, description="vLLM: accepted, not used; prompts are always cut to the model's max_length"
    )

    _whole = field_validator(
        "top_n", "max_tokens_per_doc", "max_chunks_per_doc", "truncate_prompt_tokens", mode="before"
    )(whole_number)


class FlexibleRerankRequest(RerankRequest):
    """POST /rerank: the request above, or Hugging Face TEI's (`texts` instead of `documents`)."""

    documents: list[StrictStr | DocumentObject] | None = Field(  # type: ignore[assignment]
        None, description="Documents to rank (vLLM/Jina/Cohere); leave out when sending `texts`"
    )
    texts: list[StrictStr] | None = Field(
        None, description="TEI's name for `documents`; selects TEI's response shape"
    )
    raw_scores: StrictBool = Field(False, description="TEI: return the raw logit instead of P(yes)")
    return_text: StrictBool = Field(False, description="TEI: include each text in the answer")
    truncate: StrictBool | None = Field(None, description="TEI: accepted; long texts are always truncated")
    truncation_direction: Literal["Right", "right"] | None = Field(
        None, description="TEI: only 'Right' (cut the end of the document)"
    )


class ScoreRequest(BaseModel):
    """vLLM's `/score`: one query (`text_1`) against documents (`text_2`)."""

    text_1: StrictStr | list[StrictStr]
    text_2: StrictStr | list[StrictStr]
    model: StrictStr | None = None
    max_tokens_per_doc: StrictInt | None = Field(None, ge=1, description="Cut each document (extension)")
    truncate_prompt_tokens: StrictInt | None = Field(None, description="Accepted, not used")

    _whole = field_validator("max_tokens_per_doc", "truncate_prompt_tokens", mode="before")(whole_number)


class RerankDocument(BaseModel):
    model_config = ConfigDict(extra="allow")
    text: str


class RerankResultItem(BaseModel):
    index: int = Field(description="Position of the document in the request")
    relevance_score: float = Field(description="P(yes) in 0..1")
    document: RerankDocument | None = Field(None, description="Present when documents are returned")


class RerankUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int
    truncated_documents: list[int] = Field(description="Input positions of documents cut to fit the model")
    cache_hits: int = Field(description="Pairs answered from the score cache")


class RerankResponse(BaseModel):
    id: str
    model: str
    usage: RerankUsage
    results: list[RerankResultItem] = Field(description="Sorted by relevance_score, best first")
    meta: dict[str, Any] = Field(description="Cohere's api_version and billed_units")


class TEIRankItem(BaseModel):
    index: int
    score: float
    text: str | None = None


class ScoreItem(BaseModel):
    index: int
    object: Literal["score"] = "score"
    score: float


class ScoreResponse(BaseModel):
    id: str
    object: Literal["list"] = "list"
    created: int
    model: str
    data: list[ScoreItem]
    usage: dict[str, int]


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request, plus `input_type` and `instruction` for queries (extensions)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"input": ["A U-Net removes noise from images."], "encoding_format": "float"},
                {"input": "image denoising", "input_type": "query", "dimensions": 256},
            ]
        }
    )

    input: StrictStr | list[StrictStr] = Field(
        description="A text or a list of texts (token ids are not accepted)"
    )
    model: StrictStr | None = None
    encoding_format: Literal["float", "base64"] = Field("float", description="base64: little-endian float32")
    dimensions: StrictInt | None = Field(
        None, ge=1, description="Keep the first d components (MRL), re-normalised"
    )
    user: StrictStr | None = Field(None, description="Accepted, not used")
    input_type: Literal["query", "document"] | None = Field(
        None, description="'query' wraps each input in the query instruction; default 'document'"
    )
    instruction: StrictStr | None = Field(
        None, description="Task instruction for queries (implies input_type query)"
    )

    _whole = field_validator("dimensions", mode="before")(whole_number)

    @field_validator("input", mode="before")
    @classmethod
    def _no_token_ids(cls, value: Any) -> Any:
        if isinstance(value, list) and value and all(isinstance(v, int | list) for v in value):
            raise ValueError("token-id input is not supported: send the text itself")
        return value


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: dict[str, int]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "patentrank"
    type: Literal["reranker", "embedding"]
    aliases: list[str]
    backend: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
