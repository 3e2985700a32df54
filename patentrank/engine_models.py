"""The engine's models: loading them from Settings, the names they answer to, scoring mixed batches."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import PurePath
from typing import Any

import numpy as np

from patentrank.config import Settings
from patentrank.errors import InputError, ModelLoadError

DISABLED = ("", "none", "off", "false", "0")
# Below this many documents per query, computing the shared prompt prefix once (one extra model call
# per query) costs more than it saves; such pairs go into one plain batch across all their queries.
PREFIX_SHARING_MIN_DOCS = 8
# A common prefix shorter than this is not worth a separate model call.
MIN_COMMON_PREFIX = 16
ROLES = ("reranker", "embedder")


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


def load_model(role: str, settings: Settings) -> Any:
    """One configured model: remote when `<role>_url` is set, else in-process."""
    url = getattr(settings, f"{role}_url")
    name = getattr(settings, f"{role}_model")
    remote_name = name if name and name.lower() not in DISABLED else None
    common = {"api_key": settings.remote_api_key, "timeout_s": settings.remote_timeout_s}
    if role == "reranker":
        if url:
            from patentrank.models.remote import RemoteReranker

            api = settings.reranker_api
            return RemoteReranker(url, remote_name, max_length=settings.max_length, api=api, **common)
        from patentrank.models.cross_encoder import load_reranker  # Qwen3 yes/no or a cross-encoder

        return load_reranker(settings)
    if url:
        from patentrank.models.remote import RemoteEmbedder

        return RemoteEmbedder(
            url, remote_name, dimensions=settings.embedding_dim, instruction=settings.instruction, **common
        )
    from patentrank.models.embedder import Embedder

    return Embedder.from_settings(settings)


def load_models(
    settings: Settings, report: Callable[[str], None] | None = None
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """(models by role, load errors by role, roles switched off); each failure is reported in one line."""
    say = report or (lambda line: print(line, file=sys.stderr))
    models: dict[str, Any] = {}
    errors: dict[str, str] = {}
    disabled: list[str] = []
    for role in ROLES:
        name = getattr(settings, f"{role}_model") or ""
        if not getattr(settings, f"{role}_url") and name.strip().lower() in DISABLED:
            errors[role] = f"no {role} is configured (PATENTRANK_{role.upper()}_MODEL={name or 'none'})"
            disabled.append(role)
            continue
        try:
            models[role] = load_model(role, settings)
        except (ModelLoadError, InputError, OSError, ValueError) as exc:
            text = str(exc).strip()
            errors[role] = text.splitlines()[0] if text else type(exc).__name__
            say(f"warning: {role} not loaded, serving without it: {errors[role]}")
    return models, errors, disabled


def pair_cost(pair: Any) -> int:
    """Tokens of one encoded pair (estimated for a remote model's pairs), for batch budgets."""
    tokens = getattr(pair, "num_tokens", None)
    return int(tokens) if tokens is not None else len(pair.input_ids)


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Leading tokens every sequence shares, leaving each at least its last token.

    Example:
        >>> common_prefix_length([[1, 2, 3, 4], [1, 2, 5]])
        2
    """
    limit = min(len(s) for s in sequences) - 1
    first = sequences[0]
    length = 0
    while length < limit and all(s[length] == first[length] for s in sequences):
        length += 1
    return length


def score_mixed(reranker: Any, pairs: Sequence[Any]) -> np.ndarray:
    """Logits for pairs from many requests, computing shared prompt prefixes once.

    Queries with many documents go through `score_encoded` (their system + instruction + query
    prefix computed once per query). The pairs of all other queries go through the model together,
    with the prefix they all share (system prompt, and the instruction when it is the same) computed
    once per call: on short requests that is most of each prompt. Pairs of a single query take
    `score_encoded` as a whole, so a lone request scores exactly as `Reranker.compute` does.

    Example:
        >>> pairs = reranker.encode("q1", ["a", "b"]) + reranker.encode("q2", ["c"])  # doctest: +SKIP
        >>> score_mixed(reranker, pairs).shape                                      # doctest: +SKIP
        (3,)
    """
    scorer = getattr(reranker, "scorer", None)
    if scorer is None or not pairs:  # a remote model: its server does its own batching
        return np.asarray(reranker.score_encoded(pairs))
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, pair in enumerate(pairs):
        shared = getattr(pair, "shared_len", 0)
        groups.setdefault(tuple(pair.input_ids[:shared]) if shared else (-1 - i,), []).append(i)
    if len(groups) == 1:  # one query (e.g. a lone request): exactly `Reranker.compute`'s path
        return np.asarray(reranker.score_encoded(pairs))
    by_query = [i for members in groups.values() if len(members) >= PREFIX_SHARING_MIN_DOCS for i in members]
    rest = sorted(set(range(len(pairs))) - set(by_query))
    out = np.empty(len(pairs), dtype=np.float32)
    if by_query:
        out[by_query] = reranker.score_encoded([pairs[i] for i in by_query])
    if rest:
        sequences = [pairs[i].input_ids for i in rest]
        shared = common_prefix_length(sequences) if len(rest) > 1 else 0
        if shared >= MIN_COMMON_PREFIX:
            out[rest] = scorer.logits_shared_prefix(sequences[0][:shared], [s[shared:] for s in sequences])
        else:
            out[rest] = scorer.logits(sequences)
    return out
