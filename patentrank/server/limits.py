"""Request limits from Settings: too many or too long inputs are a 413 naming the field and the setting."""

from __future__ import annotations

from collections.abc import Sequence

from patentrank.config import Settings
from patentrank.server.errors import ApiError


def require_nonempty(value: str, field: str, *, tei: bool = False) -> None:
    """A query (or other required text) must have a non-blank character."""
    if not value.strip():
        raise ApiError(422, f"{field} must not be empty", field=field, kind="empty_input", tei=tei)


def check_count(count: int, limit: int, field: str, setting: str, *, tei: bool = False) -> None:
    """At least one item, and no more than `limit`."""
    if count == 0:
        raise ApiError(
            422, f"{field} must contain at least one item", field=field, kind="empty_input", tei=tei
        )
    if count > limit:
        raise ApiError(
            413,
            f"{field} has {count} items, more than the limit of {limit} (PATENTRANK_{setting}); "
            "split the request",
            field=field,
            kind="too_many_inputs",
            tei=tei,
        )


def check_lengths(texts: Sequence[str], field: str, settings: Settings, *, tei: bool = False) -> None:
    """Every text within max_document_chars; longer token sequences are truncated later, not refused."""
    limit = settings.max_document_chars
    for i, text in enumerate(texts):
        if len(text) > limit:
            name = f"{field}[{i}]"
            raise ApiError(
                413,
                f"{name} has {len(text)} characters, more than the limit of {limit} "
                "(PATENTRANK_MAX_DOCUMENT_CHARS); texts under the limit but over the model's token limit are "
                "truncated, not refused",
                field=name,
                kind="input_too_long",
                tei=tei,
            )


def check_text_length(text: str, field: str, settings: Settings, *, tei: bool = False) -> None:
    """One text (a query or an instruction) within max_document_chars."""
    if len(text) > settings.max_document_chars:
        raise ApiError(
            413,
            f"{field} has {len(text)} characters, more than the limit of {settings.max_document_chars} "
            "(PATENTRANK_MAX_DOCUMENT_CHARS)",
            field=field,
            kind="input_too_long",
            tei=tei,
        )
