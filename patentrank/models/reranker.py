"""`Reranker`: scores (query, document) pairs with a Qwen3-style yes/no reranker, in-process."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from patentrank.config import DEFAULT_RERANKER
from patentrank.errors import InputError, ModelLoadError
from patentrank.models.loading import load_pretrained, resolve_device, resolve_precision
from patentrank.models.precision import apply_plan
from patentrank.models.prompt import EncodedPair, Qwen3Prompt
from patentrank.models.scorer import YesNoScorer

if TYPE_CHECKING:
    from patentrank.models.onnx_int8 import OnnxYesNoScorer


# Below this many documents per query, computing the query's prompt prefix once (one extra model call
# per query) costs more than it saves; such pairs are batched with the others (`score_encoded`).
PREFIX_SHARING_MIN_DOCS = 8
# A prefix that all pairs of a call share, shorter than this, is not worth a separate model call.
MIN_COMMON_PREFIX = 16


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


CPU_BATCH_TOKENS = 1024  # padded tokens per forward pass on CPU (docs/benchmarks.md, "Reranker batch size")


@dataclass(frozen=True, slots=True)
class RankResult:
    """One ranked document: its position in the input, its score and its text."""

    index: int
    score: float
    document: str


@dataclass(slots=True)
class RerankOutput:
    """Scores in input order plus the token usage of the call."""

    scores: list[float]
    logits: list[float]
    prompt_tokens: int
    truncated: list[int] = field(default_factory=list)


def validate_request(query: str, documents: Sequence[str]) -> None:
    """Reject what the model cannot answer: an empty query, no documents, non-string documents."""
    if not isinstance(query, str) or not query.strip():
        raise InputError("query must be a non-empty string", field="query")
    if isinstance(documents, str) or not isinstance(documents, Sequence):
        raise InputError("documents must be a list of strings", field="documents")
    if len(documents) == 0:
        raise InputError("documents must contain at least one document", field="documents")
    for i, doc in enumerate(documents):
        if not isinstance(doc, str):
            raise InputError(f"documents[{i}] must be a string", field=f"documents[{i}]")


class Ranking:
    """`compute`, `score` and `rank` for any reranker that implements `encode` and `score_encoded`
    (local or remote): a score is the sigmoid of the pair's relevance logit."""

    is_remote = False  # in-process; RemoteReranker says True (models/base.py: RerankerBackend)

    def encode(
        self,
        query: str,
        documents: Sequence[str],
        instruction: str | None = None,
        max_tokens_per_doc: int | None = None,
    ) -> Sequence[Any]:
        raise NotImplementedError

    def score_encoded(self, pairs: Sequence[Any]) -> np.ndarray:
        raise NotImplementedError

    def compute(
        self,
        query: str,
        documents: Sequence[str],
        instruction: str | None = None,
        max_tokens_per_doc: int | None = None,
    ) -> RerankOutput:
        """Scores, raw logits and token usage (a remote model's is estimated) for one query's documents."""
        pairs = self.encode(query, documents, instruction, max_tokens_per_doc)
        logits = np.asarray(self.score_encoded(pairs), dtype=np.float64)
        scores = 1.0 / (1.0 + np.exp(-logits))
        tokens = sum(p.num_tokens if hasattr(p, "num_tokens") else len(p.input_ids) for p in pairs)
        truncated = [i for i, p in enumerate(pairs) if getattr(p, "truncated", False)]
        return RerankOutput(scores.tolist(), logits.tolist(), tokens, truncated)

    def score(self, query: str, documents: Sequence[str], instruction: str | None = None) -> list[float]:
        """P(yes) for each document, in input order."""
        return self.compute(query, documents, instruction).scores

    def rank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        instruction: str | None = None,
    ) -> list[RankResult]:
        """Documents sorted by score (best first), each with its input index; `top_n` keeps the best n."""
        scores = self.score(query, documents, instruction)
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        if top_n is not None and top_n > 0:
            order = order[:top_n]
        return [RankResult(i, scores[i], documents[i]) for i in order]


class Reranker(Ranking):
    """A Qwen3-Reranker (0.6B, 4B, 8B, or any Qwen3-style yes/no reranker) loaded in-process.

    Scores follow the model card exactly: P(yes) = sigmoid(l_yes - l_no) at the last prompt token,
    computed in float32 whatever the model's dtype.

    Example (needs the model's weights, so not run by the doctests; `tests/test_reranker.py` checks
    the scores against the model card's reference code):
        >>> reranker = Reranker("Qwen/Qwen3-Reranker-0.6B")  # or a local folder      # doctest: +SKIP
        >>> scores = reranker.score("image denoising", ["U-Net removes noise", "a gearbox"])  # doctest: +SKIP
        >>> best = reranker.rank("image denoising", ["a gearbox", "U-Net removes noise"])[0]  # doctest: +SKIP
        >>> # scores: one P(yes) in (0, 1) per document; best.index: the document ranked first
    """

    def __init__(
        self,
        model: str = DEFAULT_RERANKER,
        *,
        device: str = "auto",
        dtype: str | torch.dtype | None = None,
        max_length: int = 8192,
        batch_tokens: int | None = None,
        max_batch_size: int = 64,
        num_threads: int | None = None,
        share_prefix: bool = True,
    ) -> None:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        self.model_name = model
        self.device = resolve_device(device)
        self.precision = resolve_precision(dtype, self.device)  # .describe(): what /health reports
        self.dtype = self.precision.load_dtype
        if num_threads:
            torch.set_num_threads(num_threads)
        config = load_pretrained(AutoConfig, model, "reranker")
        if not any(a.endswith("ForCausalLM") for a in (config.architectures or [])):
            raise ModelLoadError(
                f"reranker model {model!r} is a {config.architectures}, not a causal LM: patentrank needs a "
                "Qwen3-style yes/no reranker such as Qwen/Qwen3-Reranker-0.6B"
            )
        self.tokenizer = load_pretrained(AutoTokenizer, model, "reranker")
        yes_id = self.tokenizer.convert_tokens_to_ids("yes")
        no_id = self.tokenizer.convert_tokens_to_ids("no")
        im_end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        unknown = self.tokenizer.unk_token_id
        if None in (yes_id, no_id, im_end) or unknown in (yes_id, no_id, im_end):
            raise ModelLoadError(
                f"reranker model {model!r} has no 'yes'/'no'/'<|im_end|>' tokens: not a Qwen3-style reranker"
            )
        pad_id = self.tokenizer.pad_token_id
        if batch_tokens is None:
            # Small batches on CPU: 8192-token batches measured 1.4x (float32) to 2.0x (bf16-mixed) slower
            # than 1024 at the 0.6B shape (benchmarks/rerank_batch_tokens.py).
            batch_tokens = 65536 if self.device.type == "cuda" else CPU_BATCH_TOKENS
        self.scorer: YesNoScorer | OnnxYesNoScorer
        if self.precision.backend == "onnx-int8":
            from patentrank.models.onnx_int8 import load_int8_scorer

            self.scorer = load_int8_scorer(
                model, yes_id, no_id, pad_id if pad_id is not None else 0, batch_tokens, max_batch_size,
                num_threads or torch.get_num_threads(),
            )  # fmt: skip
            share_prefix = False  # the exported graph has no KV-cache input
        else:
            lm = load_pretrained(AutoModelForCausalLM, model, "reranker", dtype=self.dtype)
            apply_plan(lm, self.precision)
            lm.to(self.device).eval()
            self.scorer = YesNoScorer(
                lm, yes_id, no_id, pad_id if pad_id is not None else 0, batch_tokens, max_batch_size
            )
        self.prompt = Qwen3Prompt(self.tokenizer, max_length=max_length)
        self.max_length = max_length
        self.config = config
        self.share_prefix = share_prefix

    @classmethod
    def from_settings(cls, settings: object | None = None) -> Reranker:
        """Build from a `Settings` (the environment's by default)."""
        from patentrank.config import get_settings

        s = settings or get_settings()
        return cls(
            s.reranker_model,  # type: ignore[attr-defined]
            device=s.device,  # type: ignore[attr-defined]
            dtype=s.dtype,  # type: ignore[attr-defined]
            max_length=s.max_length,  # type: ignore[attr-defined]
            batch_tokens=s.batch_tokens,  # type: ignore[attr-defined]
            max_batch_size=s.max_batch_size,  # type: ignore[attr-defined]
            num_threads=s.num_threads,  # type: ignore[attr-defined]
        )

    def encode(
        self,
        query: str,
        documents: Sequence[str],
        instruction: str | None = None,
        max_tokens_per_doc: int | None = None,
    ) -> list[EncodedPair]:
        """Prompt token ids for each document; the batching layer scores these with `score_encoded`."""
        validate_request(query, documents)
        return self.prompt.encode(query, list(documents), instruction, max_tokens_per_doc)

    def score_encoded(
        self, pairs: Sequence[EncodedPair], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Raw logit differences l_yes - l_no for already encoded prompts, in order.

        The one prefix-sharing policy, for a lone request and for the engine's batches that mix many
        requests' pairs alike: a query with at least `PREFIX_SHARING_MIN_DOCS` documents has its own
        prompt prefix (system, instruction, query) computed once; all other pairs go through the model
        together, with the prefix they all share (the system prompt, and the instruction and query
        when they are the same) computed once when it is at least `MIN_COMMON_PREFIX` tokens.
        """
        out = np.empty(len(pairs), dtype=np.float32)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, pair in enumerate(pairs):
            shared = pair.shared_len if self.share_prefix else 0
            groups.setdefault(tuple(pair.input_ids[:shared]) if shared else (-1 - i,), []).append(i)
        rest: list[int] = []
        for prefix, members in groups.items():
            if prefix[0] < 0 or len(members) < PREFIX_SHARING_MIN_DOCS:
                rest.extend(members)
                continue
            tails = [pairs[i].input_ids[len(prefix) :] for i in members]
            out[members] = self.scorer.logits_shared_prefix(prefix, tails, progress=progress)
        if rest:
            rest.sort()
            sequences = [pairs[i].input_ids for i in rest]
            shared = common_prefix_length(sequences) if self.share_prefix and len(rest) > 1 else 0
            if shared >= MIN_COMMON_PREFIX:
                tails = [s[shared:] for s in sequences]
                out[rest] = self.scorer.logits_shared_prefix(sequences[0][:shared], tails, progress=progress)
            else:
                out[rest] = self.scorer.logits(sequences, progress=progress)
        return out

