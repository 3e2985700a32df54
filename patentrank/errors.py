"""Exceptions that carry a message meant for the person using patentrank."""

from __future__ import annotations


class PatentrankError(Exception):
    """Base class: the message says what went wrong and what to do about it."""


class ModelLoadError(PatentrankError):
    """A model could not be loaded (offline, wrong path, wrong kind of model)."""


class InputError(PatentrankError, ValueError):
    """The caller's input is invalid; `field` names the offending field when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class StageUnavailable(PatentrankError):
    """A stage (rerank, embed, search) has no model: the message names it and says how to fix it."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage
