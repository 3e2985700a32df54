"""The fast yes/no scoring path: one-row head on the last real position, length-sorted token batches."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch


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
            longest = lengths[batch[0]]
            ids = torch.full((len(batch), longest), self.pad_id, dtype=torch.long)
            for row, index in enumerate(batch):
                ids[row, : lengths[index]] = torch.as_tensor(sequences[index], dtype=torch.long)
            last = torch.as_tensor([lengths[i] - 1 for i in batch], dtype=torch.long)
            hidden = self.backbone(input_ids=ids.to(self.device), use_cache=False).last_hidden_state
            picked = hidden[torch.arange(len(batch), device=hidden.device), last.to(hidden.device)]
            out[batch] = (picked.float() @ self.head).cpu().numpy()
            if progress is not None:
                progress(len(batch))
        return out

    def scores(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """P(yes) per sequence: sigmoid of the float32 logit difference."""
        return 1.0 / (1.0 + np.exp(-self.logits(sequences).astype(np.float64)))
