"""Family collapse on wasteheat (lexical): pages with twins, and nDCG@10 / Recall@100 with and without it.

    flock /tmp/patentrank-bench.lock .venv/bin/python benchmarks/collapse_eval.py \
        ../shared/data/wasteheat_zh_en_title2abs --out benchmarks/results/collapse_eval.json

wasteheat's queries each come from one abstract (grade 2); identical twin publications of it are grade
1. Two views of the same runs:
- official qrels: a twin is a relevant document of its own, so collapsing it away loses its gain, and
  where the twin outranks its source (equal text, equal BM25 score) the kept result is the grade-1 one;
- per invention: documents of one invention (families.collapse over the corpus) count once, at the
  invention's best grade; a second copy on the page earns nothing, as it tells the reader nothing new.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks.common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common as bench
from patentrank.eval_runner import collection_patents, run_stage
from patentrank.evaluate import Collection, evaluate_run, load_collection
from patentrank.families import collapse, identity
from patentrank.index.patent_index import PatentIndex
from patentrank.search import SearchPipeline

Run = dict[str, dict[str, float]]
PAGE = 10


def invention_of(collection: Collection) -> dict[str, str]:
    """Document id -> the id its invention is known by (its first document in corpus order)."""
    ids = [str(r["id"]) for r in collection.corpus]
    identities = {
        str(r["id"]): identity(r.get("title") or "", r.get("abstract") or "", r.get("family_id"))
        for r in collection.corpus
    }
    groups = collapse(ids, identities).groups
    return {m: g.kept for g in groups for m in (g.kept, *(member for member, _ in g.members))}


def per_invention(
    run: Run, qrels: Mapping[str, Mapping[str, int]], group: Mapping[str, str]
) -> tuple[Run, dict]:
    """The run and qrels with documents replaced by their invention; repeats become unjudged slots."""
    folded_qrels: dict[str, dict[str, int]] = {}
    for qid, judged in qrels.items():
        mine = folded_qrels.setdefault(qid, {})
        for doc, grade in judged.items():
            mine[group.get(doc, doc)] = max(grade, mine.get(group.get(doc, doc), 0))
    folded: Run = {}
    for qid, scores in run.items():
        seen: dict[str, float] = {}
        for doc, score in scores.items():
            key = group.get(doc, doc)
            seen[key if key not in seen else f"repeat:{doc}"] = score
        folded[qid] = seen
    return folded, folded_qrels


def page_stats(run: Run, group: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """Pages (top 10) showing one invention twice, the slots those repeats take, and the queries
    with a judged twin (grade 1) whose source and twin are both on the page."""
    with_repeats = slots = both = 0
    for qid, scores in run.items():
        page = sorted(scores, key=lambda d: -scores[d])[:PAGE]
        inventions = [group.get(d, d) for d in page]
        repeats = len(inventions) - len(set(inventions))
        with_repeats += repeats > 0
        slots += repeats
        judged = qrels.get(qid, {})
        if any(g == 1 for g in judged.values()):
            both += sum(1 for d in page if d in judged) >= 2
    return {"pages_with_repeats": with_repeats, "repeat_slots": slots, "twin_and_source_on_page": both}


def kept_member(run: Run, qrels: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """Over the queries with a judged twin: is the collapsed run's result the source (2) or the twin (1)?"""
    out = {"source_kept": 0, "twin_kept": 0, "neither_in_top_100": 0}
    for qid, judged in qrels.items():
        if not any(g == 1 for g in judged.values()):
            continue
        found = [judged[d] for d in run.get(qid, {}) if d in judged]
        key = "neither_in_top_100" if not found else "source_kept" if max(found) == 2 else "twin_kept"
        out[key] += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("collection", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    bench.quiet_environment()
    collection = load_collection(args.collection)
    judged = [q for q in collection.queries if q["id"] in collection.qrels]
    langs = collection.query_langs()
    group = invention_of(collection)
    with tempfile.TemporaryDirectory() as tmp:
        index = PatentIndex(Path(tmp) / "ix")
        began = time.perf_counter()
        index.add(collection_patents(collection))
        build_s = time.perf_counter() - began
        pipeline = SearchPipeline(index)
        runs, ms = {}, {}
        for collapse_on in (False, True):
            runs[collapse_on], ms[collapse_on] = run_stage(
                pipeline, judged, "lexical", k=100, progress=False, collapse=collapse_on
            )
    rows = {}
    for collapse_on, run in runs.items():
        folded_run, folded_qrels = per_invention(run, collection.qrels, group)
        rows["collapse" if collapse_on else "no collapse"] = {
            "official": evaluate_run(run, collection.qrels, langs, ["nDCG@10", "Recall@100"]),
            "per_invention": evaluate_run(folded_run, folded_qrels, langs, ["nDCG@10", "Recall@100"]),
            "pages": page_stats(run, group, collection.qrels),
            "ms_per_query": ms[collapse_on],
        }
    rows["collapse"]["twin_queries"] = kept_member(runs[True], collection.qrels)
    report = {
        "collection": str(args.collection),
        "queries": len(judged),
        "duplicate_groups_in_corpus": sum(1 for size in Counter(group.values()).values() if size > 1),
        "index_build_s": round(build_s, 1),
        "isa": " ".join(bench.cpu_isa_flags()),
        "cpu": bench.cpu_model(),
        "rows": rows,
    }
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    for name, row in rows.items():
        cells = []
        for view in ("official", "per_invention"):
            for metric in ("nDCG@10", "Recall@100"):
                cells.append(" / ".join(f"{row[view][lang][metric]:.3f}" for lang in ("all", "zh", "en")))
        print(f"| {name} | " + " | ".join(cells) + f" | {row['pages']['pages_with_repeats']} |")


if __name__ == "__main__":
    main()
