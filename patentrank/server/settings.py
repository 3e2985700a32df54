"""Server-only settings on top of `patentrank.config.Settings` (same PATENTRANK_* environment)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from patentrank.config import Settings


class ServerSettings(Settings):
    """`Settings` plus model aliases, the batching switch and the remote servers' API key.

    Lists may be given as comma-separated environment values.

    Example:
        >>> ServerSettings(reranker_aliases="qwen3-reranker-0.6b, rerank").reranker_aliases
        ['qwen3-reranker-0.6b', 'rerank']
    """

    reranker_aliases: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Extra names the reranker answers to in a request's `model` field"
    )
    embedder_aliases: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Extra names the embedder answers to"
    )
    dynamic_batching: bool = Field(True, description="Share model calls between concurrent requests")
    remote_api_key: str | None = Field(None, description="Bearer key sent to remote model servers")

    @field_validator("reranker_aliases", "embedder_aliases", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
