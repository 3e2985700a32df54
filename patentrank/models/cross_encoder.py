"""`CrossEncoderReranker`: any sequence-classification cross-encoder (bge-reranker, ms-marco MiniLM, ...)
behind the same API as the Qwen3 `Reranker`, and `load_reranker`, which picks one from config.json."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from patentrank.config import DEFAULT_RERANKER
from patentrank.errors import ModelLoadError
from patentrank.models.loading import load_pretrained, locate_model, resolve_device, resolve_dtype
from patentrank.models.reranker import Ranking, validate_request
from patentrank.models.scorer import plan_batches

RerankerKind = Literal["yes-no", "cross-encoder"]
SUPPORTED = (
    "a Qwen3-style yes/no reranker (*ForCausalLM, e.g. Qwen/Qwen3-Reranker-0.6B) or a "
    "sequence-classification cross-encoder with a built-in transformers architecture "
    "(*ForSequenceClassification, e.g. "
    "BAAI/bge-reranker-v2-m3, cross-encoder/ms-marco-MiniLM-L6-v2, mixedbread-ai/mxbai-rerank-base-v1)"
)


def model_file(model: str, filename: str, role: str = "reranker") -> Path | None:
    """The path of one file of a model folder or hub id (downloaded if need be), or None if it has none."""
    name, local_only = locate_model(model, role)
    if Path(name).exists():
        path = Path(name) / filename
        return path if path.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(name, filename, local_files_only=local_only))
    except Exception:  # no such file in the repository, or not cached: the caller decides
        return None


def read_model_json(model: str, filename: str, role: str = "reranker") -> dict[str, Any] | None:
    """A JSON object file of a model (None when it has none), read without running any model code."""
    path = model_file(model, filename, role)
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{role} model {model!r}: {filename} is not readable JSON ({exc})") from exc
    return data if isinstance(data, dict) else None


def reranker_kind(config: dict[str, Any], model: str) -> RerankerKind:
    """Which reranker a config.json describes, from its `architectures` and `model_type`.

    Example:
        >>> reranker_kind({"architectures": ["XLMRobertaForSequenceClassification"],
        ...                "model_type": "xlm-roberta"}, "BAAI/bge-reranker-v2-m3")
        'cross-encoder'
        >>> reranker_kind({"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3"}, "q")
        'yes-no'
        >>> try:
        ...     reranker_kind({"architectures": ["BertModel"], "model_type": "bert"}, "all-MiniLM-L6-v2")
        ... except ModelLoadError as exc:
        ...     print(str(exc).split(":")[0])
        reranker model 'all-MiniLM-L6-v2' is a BertModel (model_type 'bert')
    """
    from transformers import CONFIG_MAPPING

    architectures = [str(a) for a in config.get("architectures") or []]
    model_type = config.get("model_type")
    found = f"{', '.join(architectures) or 'model without architectures'} (model_type {model_type!r})"
    if any(a.endswith("ForCausalLM") for a in architectures):
        return "yes-no"
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        if model_type not in CONFIG_MAPPING:
            # e.g. jina-reranker-v2 ("XLMRoberta" with its own flash-attention code in auto_map).
            raise ModelLoadError(
                f"reranker model {model!r} is a {found} that needs its own model code (config.json "
                f"auto_map: {sorted((config.get('auto_map') or {}).values()) or 'none'}); patentrank never "
                "enables trust_remote_code. Serve it with Infinity or TEI and set PATENTRANK_RERANKER_URL "
                "and PATENTRANK_RERANKER_API, or use " + SUPPORTED
            )
        return "cross-encoder"
    raise ModelLoadError(f"reranker model {model!r} is a {found}: patentrank needs {SUPPORTED}")


def load_reranker(settings: Any) -> Ranking:
    """The in-process reranker `settings.reranker_model` names, of the kind its config.json declares."""
    model = settings.reranker_model
    config = read_model_json(model, "config.json")
    if config is None:
        raise ModelLoadError(f"reranker model {model!r} has no readable config.json")
    if reranker_kind(config, model) == "cross-encoder":
        return CrossEncoderReranker.from_settings(settings)
    from patentrank.models.reranker import Reranker

    return Reranker.from_settings(settings)


@dataclass(frozen=True, slots=True)
class ClassifierPair:
    """One (query, document) pair as the cross-encoder's tokenizer encodes it (special tokens included)."""

    input_ids: list[int]
    token_type_ids: list[int] | None
    truncated: bool


class CrossEncoderReranker(Ranking):
    """A sequence-classification cross-encoder loaded in-process, scoring as sentence-transformers does.

    Pairs are tokenised exactly as `sentence_transformers.CrossEncoder` tokenises them (the tokenizer's
    pair template, `truncation="longest_first"` at the model's length, the model's default prompt, if
    its config_sentence_transformers.json names one, before the query). The relevance logit is the
    single output (1 label) or `l1 - l0` (2 labels: not relevant / relevant); the score is its sigmoid,
    which equals `CrossEncoder.predict` with its default activation for 1 label (whatever activation the
    model's config stores) and `predict(apply_softmax=True)[:, 1]` for 2.

    `instruction` is accepted and ignored: a plain cross-encoder was trained on bare (query, document)
    pairs, and sentence-transformers, TEI and Infinity give it none either. There is no `scorer`
    attribute: prompt-prefix sharing is a causal-LM trick, so the engine's batcher sends mixed batches
    straight to `score_encoded`, which sorts them by length under a token budget.

    Example:
        >>> reranker = CrossEncoderReranker("BAAI/bge-reranker-v2-m3")  # or a folder  # doctest: +SKIP
        >>> scores = reranker.score("image denoising", ["U-Net removes noise", "a gearbox"])  # doctest: +SKIP
        >>> # scores: sigmoid of each pair's relevance logit, as sentence-transformers' CrossEncoder gives
    """

    kind: RerankerKind = "cross-encoder"

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
    ) -> None:
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        self.model_name = model
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        if num_threads:
            torch.set_num_threads(num_threads)
        config = read_model_json(model, "config.json")
        if config is None or reranker_kind(config, model) != "cross-encoder":
            raise ModelLoadError(f"reranker model {model!r} is not a sequence-classification cross-encoder")
        hf_config = load_pretrained(AutoConfig, model, "reranker")
        self.num_labels = int(hf_config.num_labels)
        if self.num_labels not in (1, 2):
            raise ModelLoadError(
                f"reranker model {model!r} classifies into {self.num_labels} labels: a relevance "
                "cross-encoder has 1 (a relevance logit) or 2 (not relevant, relevant)"
            )
        self.tokenizer = load_pretrained(AutoTokenizer, model, "reranker")
        network, info = load_pretrained(
            AutoModelForSequenceClassification,
            model,
            "reranker",
            config=hf_config,
            dtype=self.dtype,
            output_loading_info=True,
        )
        missing = list(info.get("missing_keys") or [])
        if missing:  # a random classifier or encoder would give random scores without any warning
            raise ModelLoadError(
                f"reranker model {model!r}: {len(missing)} weights of {type(network).__name__} are not in "
                f"the checkpoint (e.g. {missing[0]!r}); its weights need the model's own code, which "
                "patentrank never runs (trust_remote_code)"
            )
        self.network = network.to(self.device).eval()
        self.config = network.config
        self.max_length = min(max_length, self._model_max_length())
        self.query_prompt = _default_prompt(model)
        self.batch_tokens = batch_tokens or (65536 if self.device.type == "cuda" else 8192)
        self.max_batch_size = max_batch_size
        pad_id = self.tokenizer.pad_token_id
        self.pad_id = int(pad_id) if pad_id is not None else 0
        self._specials = int(self.tokenizer.num_special_tokens_to_add(pair=True))

    @classmethod
    def from_settings(cls, settings: object | None = None) -> CrossEncoderReranker:
        """Build from a `Settings` (the environment's by default)."""
        from patentrank.config import get_settings

        s: Any = settings or get_settings()
        return cls(
            s.reranker_model,
            device=s.device,
            dtype=s.dtype,
            max_length=s.max_length,
            batch_tokens=s.batch_tokens,
            max_batch_size=s.max_batch_size,
            num_threads=s.num_threads,
        )

    def _model_max_length(self) -> int:
        """sentence-transformers' limit: the tokenizer's model_max_length capped by the position table
        (less the offset of models that number positions after the padding index, like XLM-R)."""
        limit = int(getattr(self.config, "max_position_embeddings", 0) or 0) or 1 << 30
        embeddings = getattr(self.network.base_model, "embeddings", None)
        padding_idx = getattr(embeddings, "padding_idx", None)
        table = getattr(embeddings, "position_embeddings", None)
        if isinstance(padding_idx, int) and isinstance(table, torch.nn.Embedding):
            limit = min(limit, table.num_embeddings - padding_idx - 1)
        return min(limit, int(self.tokenizer.model_max_length))

    def _cut_documents(self, documents: list[str], max_tokens: int) -> tuple[list[str], list[bool]]:
        """Each document cut to its first `max_tokens` tokens (at the character where the last one ends)."""
        encoded = self.tokenizer(
            documents, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        texts, cut = [], []
        for doc, offsets in zip(documents, encoded["offset_mapping"], strict=True):
            long = len(offsets) > max_tokens
            texts.append(doc[: offsets[max_tokens - 1][1]] if long and max_tokens > 0 else doc)
            cut.append(long)
        return texts, cut

    def encode(
        self,
        query: str,
        documents: Sequence[str],
        instruction: str | None = None,
        max_tokens_per_doc: int | None = None,
    ) -> list[ClassifierPair]:
        """Token ids of each (query, document) pair; `instruction` is ignored (see the class docstring)."""
        validate_request(query, documents)
        docs = list(documents)
        cut = [False] * len(docs)
        if max_tokens_per_doc is not None:
            docs, cut = self._cut_documents(docs, max_tokens_per_doc)
        query_text = self.query_prompt + query
        encoded = self.tokenizer(
            [query_text] * len(docs), docs, truncation="longest_first", max_length=self.max_length
        )
        # The pair template adds the same special tokens to every pair: full length = both parts + them.
        counted = self.tokenizer([query_text, *docs], add_special_tokens=False, verbose=False)["input_ids"]
        query_len, doc_lens = len(counted[0]), [len(ids) for ids in counted[1:]]
        types = encoded.get("token_type_ids")
        return [
            ClassifierPair(
                list(ids),
                list(types[i]) if types is not None else None,
                cut[i] or query_len + doc_lens[i] + self._specials > self.max_length,
            )
            for i, ids in enumerate(encoded["input_ids"])
        ]

    @torch.inference_mode()
    def _forward(self, pairs: Sequence[ClassifierPair], batch: list[int]) -> np.ndarray:
        """Relevance logits of one batch: right-padded, with an attention mask."""
        width = max(len(pairs[i].input_ids) for i in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        with_types = pairs[batch[0]].token_type_ids is not None
        types = torch.zeros((len(batch), width), dtype=torch.long) if with_types else None
        for row, index in enumerate(batch):
            pair = pairs[index]
            ids[row, : len(pair.input_ids)] = torch.as_tensor(pair.input_ids)
            mask[row, : len(pair.input_ids)] = 1
            if types is not None and pair.token_type_ids is not None:
                types[row, : len(pair.token_type_ids)] = torch.as_tensor(pair.token_type_ids)
        inputs = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
        if types is not None:
            inputs["token_type_ids"] = types.to(self.device)
        logits = self.network(**inputs).logits.float()
        relevance = logits[:, 0] if self.num_labels == 1 else logits[:, 1] - logits[:, 0]
        return relevance.cpu().numpy()

    def score_encoded(
        self, pairs: Sequence[ClassifierPair], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Relevance logits for encoded pairs of any queries, in order (length-sorted token batches)."""
        out = np.empty(len(pairs), dtype=np.float32)
        lengths = [len(p.input_ids) for p in pairs]
        for batch in plan_batches(lengths, self.batch_tokens, self.max_batch_size):
            out[batch] = self._forward(pairs, batch)
            if progress is not None:
                progress(len(batch))
        return out


def _default_prompt(model: str) -> str:
    """The prompt CrossEncoder puts before every query by default: config_sentence_transformers.json's
    `prompts[default_prompt_name]` in a sentence-transformers folder (one with modules.json), or none."""
    if model_file(model, "modules.json") is None:
        return ""
    st_config = read_model_json(model, "config_sentence_transformers.json") or {}
    name = st_config.get("default_prompt_name")
    prompts = st_config.get("prompts") or {}
    return str(prompts.get(name) or "") if name else ""
