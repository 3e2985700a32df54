"""The model card's reference scoring code, kept as the ground truth for tests and benchmarks.

It computes the full-vocabulary logits of every position with left padding, then log_softmax over
[no, yes] at position -1, exactly as Qwen3-Reranker's model card does. It is slow and memory-hungry
on purpose: the fast path in `scorer.py` must give the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from patentrank.models.prompt import ASSISTANT_SUFFIX, SYSTEM_PREFIX, format_body


@torch.inference_mode()
def reference_scores(
    model: Any,
    tokenizer: Any,
    query: str,
    documents: Sequence[str],
    instruction: str | None = None,
    max_length: int = 8192,
    batch_size: int = 8,
    padding_side: str = "left",
    suffix: str = ASSISTANT_SUFFIX,
) -> list[float]:
    """P(yes) per document, computed as the model card does (in input order, fixed-size batches).

    `padding_side` and `suffix` exist only so that negative-control tests can break the formula.
    """
    yes_id = tokenizer.convert_tokens_to_ids("yes")
    no_id = tokenizer.convert_tokens_to_ids("no")
    prefix_ids = tokenizer.encode(SYSTEM_PREFIX, add_special_tokens=False)
    suffix_ids = tokenizer.encode(suffix, add_special_tokens=False)
    device = next(model.parameters()).device
    out: list[float] = []
    for start in range(0, len(documents), batch_size):
        bodies = [format_body(query, d, instruction) for d in documents[start : start + batch_size]]
        inputs = tokenizer(
            bodies,
            padding=False,
            truncation="longest_first",
            return_attention_mask=False,
            max_length=max_length - len(prefix_ids) - len(suffix_ids),
            add_special_tokens=False,
            split_special_tokens=True,
        )
        inputs["input_ids"] = [prefix_ids + ids + suffix_ids for ids in inputs["input_ids"]]
        tokenizer.padding_side = padding_side
        try:
            batch = tokenizer.pad(inputs, padding=True, return_tensors="pt")
        finally:
            tokenizer.padding_side = "left"
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits[:, -1, :]
        pair = torch.stack([logits[:, no_id], logits[:, yes_id]], dim=1)
        out.extend(torch.nn.functional.log_softmax(pair, dim=1)[:, 1].exp().float().tolist())
    return out
