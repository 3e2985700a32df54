"""Loading the configured models from `Settings`: remote when a URL is set, else in-process."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from patentrank.config import Settings
from patentrank.errors import InputError, ModelLoadError

DISABLED = ("", "none", "off", "false", "0")
ROLES = ("reranker", "embedder")


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
