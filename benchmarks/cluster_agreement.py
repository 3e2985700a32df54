"""Does the cluster index (everything in Milvus) answer as the embedded one (SQLite + tantivy + FAISS)?

Builds both from the same collection, runs every query through `SearchPipeline` in each, and reports
the share of queries whose top-10 patents are the same (as a set, and in the same order), the
nDCG@10 / Recall@100 of both, and each differing query with the patents that moved and their
BM25 scores on both sides, so every difference can be explained.

    python -m benchmarks.cluster_agreement --collection ../shared/data/wasteheat_zh_en_title2abs
    python -m benchmarks.cluster_agreement --modes lexical,dense,hybrid --embedder .cache/me5-small

Without --collection it uses the bundled sample corpus, with its patents' titles as queries. Dense
runs use a FLAT index in Milvus, so dense differences can only come from the vectors' float order.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from patentrank.corpus import load_patents, sample_corpus_path
from patentrank.eval_runner import collection_patents, run_stage
from patentrank.evaluate import evaluate_run, load_collection
from patentrank.index.cluster.index import ClusterIndex
from patentrank.index.patent_index import PatentIndex
from patentrank.search import SearchPipeline
from patentrank.server.testing import MilvusLiteServer

FLAT = {"index_type": "FLAT", "metric_type": "IP", "params": {}}
NEAR_TIE = 0.01  # relative score difference at the 10th place counted as a tie


def _pipeline(index: Any, embedder: Any | None) -> SearchPipeline:
    embed = (lambda q, i: embedder.embed_queries([q], instruction=i)[0]) if embedder is not None else None
    return SearchPipeline(index, embed_query=embed)


def _top(run: dict[str, dict[str, float]], qid: str, n: int = 10) -> list[str]:
    return [d for d, _ in sorted(run.get(qid, {}).items(), key=lambda kv: -kv[1])[:n]]


def compare(args: argparse.Namespace) -> dict[str, Any]:
    embedder = None
    if args.embedder:
        from patentrank.models.embedder import Embedder

        embedder = Embedder(args.embedder, device="cpu")
    if args.collection:
        collection = load_collection(args.collection)
        patents = collection_patents(collection)
        queries, qrels = collection.queries, collection.qrels
        name = collection.name
    else:
        patents = list(load_patents(sample_corpus_path()))
        queries = [{"id": p.id, "text": p.title, "lang": p.language} for p in patents if p.title]
        qrels, name = {}, "sample"
    folder = Path(tempfile.mkdtemp(prefix="patentrank-agreement-"))
    report: dict[str, Any] = {"collection": name, "patents": len(patents), "queries": len(queries)}
    with MilvusLiteServer(folder / "milvus") as milvus:
        started = time.perf_counter()
        embedded = PatentIndex(folder / "embedded", embedder=embedder)
        embedded.add(patents)
        report["embedded_build_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        cluster = ClusterIndex(milvus.uri, embedder=embedder, prefix="agreement", dense_index=FLAT)
        cluster.add(patents)
        report["cluster_build_s"] = round(time.perf_counter() - started, 1)
        for mode in args.modes.split(","):
            runs = {}
            for side, index in (("embedded", embedded), ("cluster", cluster)):
                runs[side], ms = run_stage(_pipeline(index, embedder), queries, mode, progress=False)
                report.setdefault(mode, {})[f"{side}_ms_per_query"] = ms
            report[mode].update(_agreement(runs, queries, qrels, embedded, cluster, mode))
        cluster.close()
        embedded.close()
    return report


def _agreement(
    runs: dict[str, Any], queries: list[dict[str, Any]], qrels: Any, embedded: Any, cluster: Any, mode: str
) -> dict[str, Any]:
    same_set = same_order = 0
    differences = []
    for q in queries:
        a, b = _top(runs["embedded"], q["id"]), _top(runs["cluster"], q["id"])
        same_set += set(a) == set(b)
        same_order += a == b
        if set(a) != set(b):
            differences.append(_difference(q, a, b, embedded, cluster, mode))
    ties = sum(d.get("near_tie", False) for d in differences)
    out: dict[str, Any] = {
        "same_top10_set": round(same_set / max(len(queries), 1), 4),
        "same_top10_set_up_to_near_ties": round((same_set + ties) / max(len(queries), 1), 4),
        "same_top10_order": round(same_order / max(len(queries), 1), 4),
        "differences": differences,
    }
    if qrels:
        for side in ("embedded", "cluster"):
            metrics = evaluate_run(runs[side], qrels)["all"]
            out[f"{side}_nDCG@10"] = round(metrics["nDCG@10"], 4)
            out[f"{side}_Recall@100"] = round(metrics["Recall@100"], 4)
    return out


def _difference(
    q: dict[str, Any], a: list[str], b: list[str], embedded: Any, cluster: Any, mode: str
) -> dict:
    """The patents that moved in or out of the top 10, with each side's best BM25 score for them."""
    from patentrank.text import analyze

    moved = sorted(set(a) ^ set(b))
    entry: dict[str, Any] = {"query": q["id"], "text": q["text"][:80],
                             "only_embedded": sorted(set(a) - set(b)),
                             "only_cluster": sorted(set(b) - set(a))}  # fmt: skip
    if mode == "lexical":
        tokens = analyze(q["text"])
        for side, index in (("embedded", embedded), ("cluster", cluster)):
            hits = index.lexical.search_tokens(tokens, 300)
            heads = index.docstore.get_passage_heads([pid for pid, _ in hits])
            best: dict[str, float] = {}
            for pid, score in hits:
                patent = heads.get(pid, ("?",))[0]
                best.setdefault(patent, round(score, 4))
            tenth = sorted(best.values(), reverse=True)[9:10]
            entry[f"{side}_scores"] = {p: best.get(p) for p in moved}
            entry[f"{side}_10th_score"] = tenth[0] if tenth else None
        entry["near_tie"] = _near_tie(entry)
    return entry


def _near_tie(entry: dict[str, Any], tolerance: float = NEAR_TIE) -> bool:
    """Whether every patent in one top 10 only is, on the other side, within `tolerance` (relative) of
    that side's 10th score: the two lists differ only in how a tie at the cut was broken."""
    for mine, other in (("only_embedded", "cluster"), ("only_cluster", "embedded")):
        tenth = entry.get(f"{other}_10th_score")
        for patent in entry[mine]:
            score = entry[f"{other}_scores"].get(patent)
            if tenth is None or score is None or abs(score - tenth) > tolerance * abs(tenth):
                return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--collection", help="A ../shared/data collection folder (default: the sample corpus)"
    )
    parser.add_argument("--modes", default="lexical", help="Comma-separated: lexical,dense,hybrid")
    parser.add_argument("--embedder", help="Embedder folder for dense and hybrid (e.g. .cache/me5-small)")
    parser.add_argument("--out", help="Write the full report (with every difference) as JSON here")
    args = parser.parse_args()
    report = compare(args)
    if args.out:
        Path(args.out).write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    for mode in args.modes.split(","):
        r = report[mode]
        print(
            f"{report['collection']} {mode}: same top-10 set {r['same_top10_set']:.1%} "
            f"({r['same_top10_set_up_to_near_ties']:.1%} counting near-ties at the 10th place), same order "
            f"{r['same_top10_order']:.1%}, {len(r['differences'])} differing queries; "
            + ", ".join(f"{k} {v}" for k, v in r.items() if k not in ("differences",) and "same" not in k)
        )
    print(f"build: embedded {report['embedded_build_s']} s, cluster {report['cluster_build_s']} s")


if __name__ == "__main__":
    main()
