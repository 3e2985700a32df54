"""The names a served model answers to in a request's `model` field: its id, folder name and aliases."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePath

from patentrank.errors import InputError


def served_name(model: str) -> str:
    """The id a model is served under: a hub id as is, a local folder by its folder name.

    Example:
        >>> served_name("/models/Qwen3-Reranker-0.6B"), served_name("Qwen/Qwen3-Reranker-0.6B")
        ('Qwen3-Reranker-0.6B', 'Qwen/Qwen3-Reranker-0.6B')
    """
    if model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model:
        return PurePath(model.rstrip("/\\")).name or model
    return model


def model_aliases(model: str, extra: Sequence[str] = ()) -> set[str]:
    """Case-folded names that select `model`: its id, served name, basename, and configured aliases."""
    names = {model, served_name(model), model.rstrip("/").rsplit("/", 1)[-1], *extra}
    return {n.casefold() for n in names if n}


def resolve_model_name(
    requested: str | None, role: str, served: str, aliases: set[str], *, strict: bool = False
) -> str:
    """The served name a request's `model` field selects, or `UnknownModel` (404).

    With one model of a role served, any name selects it (as Hugging Face TEI does) and the answer
    carries the served name: clients hard-code names like `rerank-v3.5` or `text-embedding-3-small`.
    `strict` (PATENTRANK_STRICT_MODEL_NAMES) accepts only the served name, its basename and aliases.

    Example:
        >>> resolve_model_name("rerank-v3.5", "reranker", "tiny", {"tiny"})
        'tiny'
        >>> try:
        ...     resolve_model_name("rerank-v3.5", "reranker", "tiny", {"tiny"}, strict=True)
        ... except UnknownModel as exc:
        ...     print(exc.field, "PATENTRANK_RERANKER_ALIASES" in str(exc))
        model True
    """
    if not requested or requested.casefold() in aliases or not strict:
        return served
    setting = f"PATENTRANK_{role.upper()}_ALIASES"
    raise UnknownModel(
        f"model {requested!r} is not served here; the {role} answers to {sorted(aliases)} "
        f"(case-insensitive): add the name to {setting} (comma-separated), leave `model` out, or set "
        "PATENTRANK_STRICT_MODEL_NAMES=false to accept any name",
        field="model",
    )


class UnknownModel(InputError):
    """A request named a model this server does not serve."""
