"""The same pipeline on Milvus Lite instead of FAISS: only the vector_store setting changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from patentrank.corpus import load_patents, sample_corpus_path
from patentrank.index.filters import SearchFilter
from patentrank.index.patent_index import PatentIndex
from patentrank.search import SearchPipeline, SearchRequest

pytest.importorskip("pymilvus", reason="pymilvus is not installed (pip install -e '.[milvus]')")
pytest.importorskip("milvus_lite", reason="milvus-lite is not installed (pip install -e '.[milvus]')")


@pytest.fixture(scope="module")
def embedder(tiny_embedder_path: Path):
    from patentrank.models.embedder import Embedder

    return Embedder(str(tiny_embedder_path), device="cpu")


def pipeline_on(store: str, folder: Path, embedder) -> SearchPipeline:
    options = {"index_type": "FLAT"} if store.endswith(".db") else {}
    index = PatentIndex(folder, embedder=embedder, vector_store=store, vector_options=options)
    index.add(load_patents(sample_corpus_path()))
    return SearchPipeline(index, embed_query=lambda q, i: embedder.embed_queries([q], instruction=i)[0])


def test_dense_and_hybrid_search_give_the_same_answers_on_milvus_and_faiss(
    tmp_path_factory: pytest.TempPathFactory, embedder
) -> None:
    faiss = pipeline_on("faiss", tmp_path_factory.mktemp("faiss") / "ix", embedder)
    lite_dir = tmp_path_factory.mktemp("milvus")
    milvus = pipeline_on(str(lite_dir / "vectors.db"), lite_dir / "ix", embedder)
    assert milvus.index.vectors is not None and type(milvus.index.vectors).__name__ == "MilvusStore"
    assert (
        milvus.index.vectors.count() == faiss.index.vectors.count() == faiss.index.docstore.count_passages()
    )
    requests = [
        SearchRequest("image denoising 图像去噪", mode="dense", rerank=False, top_n=20),
        SearchRequest("lithium battery", mode="hybrid", rerank=False, top_n=20),
        SearchRequest("heat recovery", mode="dense", rerank=False, top_n=20,
                      filter=SearchFilter(before="2016-01-01", code_prefixes=["F01K", "F27D"])),
    ]  # fmt: skip
    for request in requests:
        a = [(r.patent_id, round(r.score, 4)) for r in faiss.search(request).results]
        b = [(r.patent_id, round(r.score, 4)) for r in milvus.search(request).results]
        assert a == b and a, request
    # Deletes reach Milvus through the same journal.
    victim = faiss.search(requests[0]).results[0].patent_id
    milvus.index.delete([victim])
    assert victim not in [r.patent_id for r in milvus.search(requests[0]).results]
    assert milvus.index.vectors.count() == milvus.index.docstore.count_passages()
    from patentrank.config import Settings
    from patentrank.runtime import Runtime

    health = Runtime(Settings(), index=milvus.index, pipeline=milvus).health()
    assert health["index"]["vectors"]["ok"] and health["stages"]["search"]
    milvus.index.close()
