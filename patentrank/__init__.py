"""patentrank: patent search with hybrid retrieval and the Qwen3 reranker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from patentrank.config import Settings, get_settings
from patentrank.errors import InputError, ModelLoadError, PatentrankError

if TYPE_CHECKING:
    from patentrank.models.reranker import RankResult, Reranker, RerankOutput

__version__ = "0.1.0"

# Model classes import torch; load them on first use so `patentrank --help` stays fast.
_LAZY = {
    "Reranker": "patentrank.models.reranker",
    "RankResult": "patentrank.models.reranker",
    "RerankOutput": "patentrank.models.reranker",
    "Embedder": "patentrank.models.embedder",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'patentrank' has no attribute {name!r}")


__all__ = [
    "InputError",
    "ModelLoadError",
    "PatentrankError",
    "RankResult",
    "RerankOutput",
    "Reranker",
    "Settings",
    "__version__",
    "get_settings",
]
