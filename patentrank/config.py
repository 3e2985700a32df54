"""One Settings object for the whole package, read from PATENTRANK_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_RERANKER = "Qwen/Qwen3-Reranker-0.6B"
DEFAULT_EMBEDDER = "Qwen/Qwen3-Embedding-0.6B"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
PATENT_INSTRUCTION = (
    "Given a patent search query, retrieve patent passages that describe the same or a closely "
    "related technical solution (prior art)"
)


class Settings(BaseSettings):
    """Every knob of patentrank; each field is also `PATENTRANK_<NAME>` in the environment.

    Lists may be given as comma-separated environment values.

    Example:
        >>> Settings(reranker_model="/models/qwen3-reranker").reranker_model
        '/models/qwen3-reranker'
        >>> Settings(reranker_aliases="qwen3-reranker-0.6b, rerank").reranker_aliases
        ['qwen3-reranker-0.6b', 'rerank']
    """

    model_config = SettingsConfigDict(env_prefix="PATENTRANK_", extra="ignore")

    # Models: a hub id, a local folder, or "none" to disable the stage.
    reranker_model: str = DEFAULT_RERANKER
    embedder_model: str = DEFAULT_EMBEDDER
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "bfloat16-mixed", "float16", "int8"] = Field(
        "auto",
        description="auto: bf16 matmuls with a float32 residual stream on CPUs with AVX-512 BF16 / AMX, "
        "bf16 on CUDA, else float32; int8: the reranker on ONNX Runtime (the `int8` extra)",
    )
    max_length: int = Field(8192, ge=64, description="Reranker prompt length limit in tokens")
    embedder_max_length: int = Field(8192, ge=16)
    embedding_dim: int | None = Field(None, ge=32, description="MRL output size; None = model's full size")
    document_prompt: str | None = Field(
        None,
        description="Text put before every passage embedded; None = the model's own (its config's "
        "first non-empty 'document'/'passage'/'corpus' prompt, else its default prompt), '' = none",
    )
    query_prompt: str | None = Field(
        None,
        description="Text put before every query of a sentence-transformers embedder; None = the "
        "model's own 'query' prompt, '' = none (Qwen3-Embedding uses its instruction template instead)",
    )
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads; None = torch default")

    # Batching inside one model call.
    batch_tokens: int | None = Field(
        None,
        ge=64,
        description="Padded tokens per model forward pass (and per batch of concurrent "
        "requests); None = each model's default for its device: on CPU 1024 for the Qwen3 reranker and the "
        "embedder (measured fastest: docs/benchmarks.md, 'Embedder batch size on CPU'), 8192 for "
        "cross-encoders; on CUDA 65536",
    )
    max_batch_size: int = Field(64, ge=1)

    # Remote model servers (vLLM / OpenAI-compatible); a comma-separated list gives failover.
    reranker_url: str | None = None
    reranker_api: Literal["vllm", "tei", "infinity", "cohere"] = Field(
        "vllm",
        description="What the reranker server speaks: 'vllm' (Qwen3 prompts formatted client-side, "
        "/v1/rerank), or plain (query, document) texts for a cross-encoder: 'tei' (POST /rerank with "
        "texts), 'infinity' (POST /rerank with documents), 'cohere' (POST /v1/rerank: Cohere, Jina, vLLM)",
    )
    embedder_url: str | None = None
    remote_api_key: str | None = Field(None, description="Bearer key sent to remote model servers")
    remote_timeout_s: float = 60.0

    # Index and search.
    index_dir: Path | str = Field(
        Path(".patentrank/index"),
        description="An index folder (embedded), or a Milvus URI such as "
        "'http://milvus:19530' (cluster mode: the whole index in Milvus; docs/milvus.md)",
    )
    vector_store: str = Field(
        "faiss",
        description="Where an index folder keeps its vectors: 'faiss', or a Milvus URI / Milvus "
        "Lite path (vectors only; one writer). Ignored when PATENTRANK_INDEX_DIR is a Milvus URI",
    )
    milvus_token: str | None = Field(None, description="Milvus 'user:password' or API key")
    milvus_prefix: str = Field(
        "patentrank",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,200}$",
        description="Cluster mode: the collections are <prefix>_patents, <prefix>_passages, <prefix>_meta",
    )
    milvus_timeout_s: float = Field(
        10.0, gt=0, le=600, description="Cluster mode: timeout of every Milvus call"
    )
    rerank_candidates: int = Field(
        50,
        ge=1,
        le=1000,
        description="Passages a search reranks, when the request names no number; "
        "the rerank stage's time is linear in it (docs/benchmarks.md, 'Rerank cost')",
    )
    rerank_passage_tokens: int | None = Field(
        None,
        ge=16,
        le=8192,
        description="Cut each passage to this many tokens in a search's rerank "
        "prompt (its '<Document>: ' label included; the query and the prompt's end are never cut); "
        "None = whole passages. Saves time on passages longer than it (docs/benchmarks.md, 'Rerank cost')",
    )
    lexical_max_df: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Leave out of the BM25 query the terms found in more than this "
        "share of the passages (each adds at most ln(1 + (1 - s) / s) to a score: 0.105 at 0.9), unless "
        "nothing else is left; None = every term. Faster on large indexes whose commonest terms are in "
        "almost every passage (docs/lexical.md, 'At scale'); opt-in because it moves near-ties",
    )
    instruction: str = PATENT_INSTRUCTION

    # Claim charts and combination search (docs/api.md, "Claim charts").
    max_chart_references: int = Field(20, ge=1, le=200, description="References per claim chart")
    max_chart_elements: int = Field(40, ge=1, le=200, description="Claim elements per chart")
    chart_passages_per_element: int = Field(3, ge=1, le=50, description="Passages reranked per element")
    max_chart_passages: int = Field(400, ge=1, description="Passages read per reference")
    chart_threshold: float = Field(0.5, ge=0.0, le=1.0, description="Score at which an element is covered")

    # Server.
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    cors_origins: list[str] = Field(default_factory=list)
    max_documents: int = Field(1000, ge=1, description="Documents per rerank request")
    max_document_chars: int = Field(100_000, ge=1)
    max_inputs: int = Field(2048, ge=1, description="Inputs per embeddings request")
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    batch_wait_ms: float = Field(5.0, ge=0.0)
    queue_size: int = Field(256, ge=1)
    request_timeout_s: float = Field(120.0, gt=0)
    cache_size: int = Field(100_000, ge=0)
    cache_url: str | None = None
    dynamic_batching: bool = Field(True, description="Share model calls between concurrent requests")
    reranker_aliases: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Extra names the reranker answers to in a request's `model` field"
    )
    embedder_aliases: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Extra names the embedder answers to"
    )
    # Server hardening (docs/api.md, "Limits").
    strict_model_names: bool = Field(
        False,
        description="Refuse (404) a `model` that is not the served name or an alias; by default any name "
        "selects the one model of its kind, as TEI does",
    )
    read_timeout_s: float = Field(
        30.0, gt=0, description="A request's headers and body must arrive within this many seconds"
    )
    max_connections: int = Field(
        1000, ge=1, description="Open connections (and requests in flight); more are answered 503"
    )
    auth_failure_limit: int = Field(
        20, ge=1, description="Failed API-key or /ui/login attempts per client address per window, then 429"
    )
    auth_failure_window_s: float = Field(60.0, gt=0, description="Window of auth_failure_limit")

    @field_validator("index_dir", mode="before")
    @classmethod
    def _index_location(cls, value: Any) -> Any:
        from patentrank.index.location import index_location

        return index_location(value) if isinstance(value, str | Path) else value

    @field_validator("reranker_aliases", "embedder_aliases", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
