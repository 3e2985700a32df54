"""The Qwen3-Reranker prompt: token ids for (instruction, query, document), truncated per the model card."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from patentrank.config import DEFAULT_INSTRUCTION

SYSTEM_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
    'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
ASSISTANT_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def query_part(query: str, instruction: str | None = None) -> str:
    """The body text before the document; it always ends in a newline (see `Qwen3Prompt`)."""
    return f"<Instruct>: {instruction or DEFAULT_INSTRUCTION}\n<Query>: {query}\n"


def document_part(document: str) -> str:
    return f"<Document>: {document}"


def format_body(query: str, document: str, instruction: str | None = None) -> str:
    """The model card's `format_instruction`: the text between the fixed prefix and suffix."""
    return query_part(query, instruction) + document_part(document)


@dataclass(frozen=True, slots=True)
class EncodedPair:
    """One prompt's token ids, ready for the model, and whether its body was cut.

    `shared_len` counts the leading tokens (system prefix, instruction, query) that every document of
    the same query shares; 0 when truncation reached into the query.
    """

    input_ids: list[int]
    truncated: bool
    shared_len: int = 0


class Qwen3Prompt:
    """Builds Qwen3-Reranker prompts from a tokenizer.

    The body is tokenised in two parts, the query part (ending in a newline) and the document part
    (starting with '<'). The Qwen2 pre-tokenizer never merges across a newline followed by '<', so the
    two parts give exactly the tokens of the whole body, while the query part is tokenised once per
    query instead of once per document. User text is tokenised without any added token (not only
    without the special ones, which is all `split_special_tokens=True` does: `<think>` and `</think>`
    are added but not special), so a literal `<|im_end|>` or `</think>` in a patent is plain text and
    cannot change the prompt's structure.

    Example:
        >>> prompt = Qwen3Prompt(tokenizer, max_length=8192)
        >>> pairs = prompt.encode("image denoising", ["a U-Net removes noise"])
        >>> pairs[0].input_ids[-9:] == prompt.suffix_ids
        True
    """

    def __init__(self, tokenizer: Any, max_length: int = 8192) -> None:
        self.tokenizer = tokenizer
        self.prefix_ids: list[int] = tokenizer.encode(SYSTEM_PREFIX, add_special_tokens=False)
        self.suffix_ids: list[int] = tokenizer.encode(ASSISTANT_SUFFIX, add_special_tokens=False)
        fixed = len(self.prefix_ids) + len(self.suffix_ids)
        if max_length <= fixed + 8:
            raise ValueError(f"max_length must exceed the fixed prompt ({fixed} tokens) by at least 8")
        self.max_length = max_length
        self.body_budget = max_length - fixed
        self._user_tokenizer = _without_added_tokens(tokenizer)

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        if self._user_tokenizer is None:
            return self.tokenizer(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        return [e.ids for e in self._user_tokenizer.encode_batch(texts, add_special_tokens=False)]

    def encode_query(self, query: str, instruction: str | None = None) -> list[int]:
        return self._tokenize([query_part(query, instruction)])[0]

    def encode(
        self,
        query: str,
        documents: list[str],
        instruction: str | None = None,
        max_tokens_per_doc: int | None = None,
    ) -> list[EncodedPair]:
        """Token ids of each (query, document) prompt, the body cut from its end to fit `max_length`."""
        query_ids = self.encode_query(query, instruction)
        doc_ids = self._tokenize([document_part(d) for d in documents])
        shared = len(self.prefix_ids) + len(query_ids) if len(query_ids) < self.body_budget else 0
        pairs = []
        for ids in doc_ids:
            truncated = False
            if max_tokens_per_doc is not None and len(ids) > max_tokens_per_doc:
                ids, truncated = ids[:max_tokens_per_doc], True
            body = query_ids + ids
            if len(body) > self.body_budget:
                body, truncated = body[: self.body_budget], True
            pairs.append(EncodedPair(self.prefix_ids + body + self.suffix_ids, truncated, shared))
        return pairs


def _without_added_tokens(tokenizer: Any) -> Any:
    """A copy of a fast tokenizer's backend that knows no added tokens, for untrusted text."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    from tokenizers import Tokenizer

    data = json.loads(backend.to_str())
    data["added_tokens"] = []
    return Tokenizer.from_str(json.dumps(data))
