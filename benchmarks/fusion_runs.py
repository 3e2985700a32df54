"""Dump each dev query's lexical and dense passage lists (with the lexical bound) for fusion studies.

Fusion is tuned offline on these lists (benchmarks/fusion_study.py), so trying a method costs
milliseconds instead of re-running both retrievers. The lists come from the real pipeline's
retrievers over an index built by the same code `patentrank eval` uses (cached per collection).

    .venv/bin/python benchmarks/fusion_runs.py --embedder /tmp/models/me5-small \
        --collection ../shared/data/wasteheat_zh_en_title2abs --out /tmp/fusion-runs
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

from tqdm import tqdm

from patentrank.config import Settings
from patentrank.eval_runner import collection_patents
from patentrank.evaluate import load_collection
from patentrank.runtime import open_runtime
from patentrank.search import SearchRequest
from patentrank.text import analyze


def dump(collection: Path, embedder: str, out: Path, index_root: Path, k: int) -> Path:
    coll = load_collection(collection, split="dev")
    settings = Settings(embedder_model=embedder, reranker_model="none")
    folder = index_root / f"{coll.name}-{Path(embedder).name}"
    runtime = open_runtime(settings, folder, roles=["embedder"])
    patents = collection_patents(coll)
    start = time.perf_counter()
    with tqdm(total=len(patents), desc=f"indexing {coll.name}", unit="doc") as bar:
        report = runtime.index.add(patents, progress=bar.update)
    print(
        f"{coll.name}: {report.added} added, {report.unchanged} cached in {time.perf_counter() - start:.0f} s"
    )
    pipeline, index = runtime.pipeline, runtime.index
    langs = coll.query_langs()
    rows = []
    for q in tqdm([q for q in coll.queries if q["id"] in coll.qrels], desc="queries", unit="q"):
        req = SearchRequest(q["text"], retrieve_k=k, rerank=False)
        lexical = pipeline._lexical(req)
        dense = pipeline._dense(req, None)
        heads = index.docstore.get_passage_heads([p for p, _ in lexical] + [p for p, _ in dense])
        rows.append(
            {
                "id": q["id"],
                "lang": langs.get(q["id"], ""),
                "bound": index.lexical.best_possible_score(analyze(q["text"])),
                "lexical": [(p, heads[p][0], s) for p, s in lexical if p in heads],
                "dense": [(p, heads[p][0], s) for p, s in dense if p in heads],
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{coll.name}.json.gz"
    payload = {"collection": coll.name, "embedder": embedder, "qrels": coll.qrels, "queries": rows}
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        json.dump(payload, fh)
    runtime.index.close()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--collection", type=Path, action="append", required=True)
    parser.add_argument("--embedder", required=True, help="embedder folder or hub id")
    parser.add_argument("--out", type=Path, default=Path("/tmp/fusion-runs"))
    parser.add_argument("--index-root", type=Path, default=Path(".patentrank/fusion"))
    parser.add_argument("--k", type=int, default=300, help="passages taken from each retriever")
    args = parser.parse_args()
    for collection in args.collection:
        print(dump(collection, args.embedder, args.out, args.index_root, args.k))


if __name__ == "__main__":
    main()
