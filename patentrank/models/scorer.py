"""The fast yes/no scoring path: one-row head on the last real position, length-sorted token batches."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import numpy as np
import torch
from transformers.cache_utils import DynamicLayer


def plan_batches(lengths: Sequence[int], batch_tokens: int, max_batch_size: int) -> list[list[int]]:
    """Group sequence indices into batches whose padded size (count x longest) fits `batch_tokens`.

    Sorting by length first keeps padding small; the longest batch comes first so that a memory
    problem shows at once. A sequence longer than the budget gets a batch of its own.

    Example:
        >>> plan_batches([5, 100, 7, 98], batch_tokens=200, max_batch_size=8)
        [[1, 3], [2, 0]]
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = lengths[current[0]] if current else lengths[index]
        if current and ((len(current) + 1) * longest > batch_tokens or len(current) >= max_batch_size):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


class YesNoScorer:
    """Scores token sequences with a causal LM as sigmoid(l_yes - l_no) at the last real token.

    Instead of the 151,669-way output layer it applies one row, W[yes] - W[no], in float32 to the
    final hidden state of the last real position only. Sequences are right-padded and the last real
    position is gathered: under a causal mask real tokens never see the padding after them, so no
    attention mask is needed and the fused causal attention kernel (memory linear in length) is used.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        yes_id: int,
        no_id: int,
        pad_id: int,
        batch_tokens: int = 16384,
        max_batch_size: int = 64,
    ) -> None:
        output = model.get_output_embeddings().weight
        self.head = (output[yes_id].float() - output[no_id].float()).detach().clone()
        self.backbone = model.get_decoder()
        self.pad_id = pad_id
        self.batch_tokens = batch_tokens
        self.max_batch_size = max_batch_size
        self.device = output.device
        # transformers renamed `past_key_values` to `cache` in 5.x; accept both spellings.
        params = inspect.signature(self.backbone.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    def _forward_last(
        self, sequences: Sequence[Sequence[int]], batch: list[int], cache: object | None = None
    ) -> np.ndarray:
        """Logit differences for one batch: right-pad, run the backbone, gather each last real token."""
        lengths = [len(sequences[i]) for i in batch]
        ids = torch.full((len(batch), max(lengths)), self.pad_id, dtype=torch.long)
        for row, index in enumerate(batch):
            ids[row, : lengths[row]] = torch.as_tensor(sequences[index], dtype=torch.long)
        last = torch.as_tensor(lengths, dtype=torch.long) - 1
        kwargs = {self._cache_kw: cache} if cache is not None else {}
        hidden = self.backbone(
            input_ids=ids.to(self.device), use_cache=cache is not None, **kwargs
        ).last_hidden_state
        picked = hidden[torch.arange(len(batch), device=hidden.device), last.to(hidden.device)]
        return (picked.float() @ self.head).cpu().numpy()

    @torch.inference_mode()
    def logits_shared_prefix(
        self,
        prefix: Sequence[int],
        tails: Sequence[Sequence[int]],
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Like `logits` for the sequences prefix + tail, computing the shared prefix only once.

        The prefix's keys and values (system prompt, instruction and query: the same for every document
        of a query) are computed once and prepended, read-only, to each batch's attention; positions
        continue after the prefix, so the result equals running every full sequence.
        """
        from transformers import DynamicCache

        prefix_ids = torch.as_tensor([list(prefix)], dtype=torch.long, device=self.device)
        prefix_out = self.backbone(input_ids=prefix_ids, use_cache=True)
        prefix_cache = getattr(prefix_out, "cache", None) or prefix_out.past_key_values
        layers = [(layer.keys, layer.values) for layer in prefix_cache.layers]
        lengths = [len(t) for t in tails]
        out = np.empty(len(tails), dtype=np.float32)
        # Each row also attends over the prefix: count it in the budget so memory stays bounded.
        budget = max(self.batch_tokens - len(prefix), 1)
        for batch in plan_batches(lengths, budget, self.max_batch_size):
            cache = DynamicCache()
            cache.layers = [_PrefixLayer(k, v, len(batch)) for k, v in layers]
            out[batch] = self._forward_last(tails, batch, cache)
            if progress is not None:
                progress(len(batch))
        return out

    @torch.inference_mode()
    def logits(
        self,
        sequences: Sequence[Sequence[int]],
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Raw l_yes - l_no per sequence, in input order, as float32."""
        lengths = [len(s) for s in sequences]
        out = np.empty(len(sequences), dtype=np.float32)
        for batch in plan_batches(lengths, self.batch_tokens, self.max_batch_size):
            out[batch] = self._forward_last(sequences, batch)
            if progress is not None:
                progress(len(batch))
        return out

    def scores(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """P(yes) per sequence: sigmoid of the float32 logit difference."""
        return 1.0 / (1.0 + np.exp(-self.logits(sequences).astype(np.float64)))


class _PrefixLayer(DynamicLayer):
    """A KV-cache layer holding a fixed prefix: it prepends the prefix to each batch's keys and values
    but stores nothing, so one prefix serves any number of batches and memory stays per-layer."""

    is_sliding = False
    is_compileable = False
    is_initialized = True

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, batch_size: int) -> None:
        super().__init__()
        self.is_initialized = True
        self.keys = keys.expand(batch_size, -1, -1, -1)
        self.values = values.expand(batch_size, -1, -1, -1)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object):
        return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)

    def get_seq_length(self) -> int:
        return self.keys.shape[-2]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    def get_max_length(self) -> int:
        return -1
