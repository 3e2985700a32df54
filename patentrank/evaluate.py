"""Evaluation collections, IR metrics per stage and query language, and result tables and charts."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ir_measures
import numpy as np
import orjson
from tqdm.auto import tqdm

from patentrank.errors import InputError
from patentrank.text import detect_language

# Metric name -> ir_measures measure (computed by pytrec_eval, i.e. trec_eval: nDCG with linear gains =
# the grades, relevance is grade >= 1, ties in a ranking broken by document id as trec_eval does).
METRICS: dict[str, Any] = {
    "nDCG@10": ir_measures.nDCG @ 10,
    "Recall@100": ir_measures.R @ 100,
    "MRR@10": ir_measures.RR @ 10,
    "MRR@100": ir_measures.RR @ 100,  # "MRR cut at 100", the column of the data README's baseline table
}
DEFAULT_METRICS: tuple[str, ...] = tuple(METRICS)
ALL = "all"

Run = Mapping[str, Mapping[str, float]]  # query id -> document id -> score (higher is better)
Qrels = Mapping[str, Mapping[str, int]]  # query id -> document id -> grade (>= 1 is relevant)
Results = dict[str, dict[str, dict[str, float]]]  # stage -> language -> metric -> value


@dataclass
class Collection:
    """A test collection: documents, queries (each with a `lang`) and graded relevance judgments.

    Example:
        >>> c = load_collection("../shared/data/xling_zh2en_chanemo")  # doctest: +SKIP
        >>> len(c.corpus), c.queries[0]["lang"], c.corpus[0]["title"][:20]  # doctest: +SKIP
    """

    name: str
    corpus: list[dict[str, Any]]
    queries: list[dict[str, Any]]
    qrels: dict[str, dict[str, int]]
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def query_langs(self) -> dict[str, str]:
        return {q["id"]: q["lang"] for q in self.queries}


def _read_jsonl(path: Path, what: str, show_progress: bool) -> list[dict[str, Any]]:
    records = []
    with open(path, "rb") as f:
        for n, line in enumerate(tqdm(f, disable=not show_progress, desc=f"Reading {path.name}"), 1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise InputError(f"{path}:{n}: not valid JSON ({exc})", field=what) from None
            if not isinstance(record, dict) or record.get("id") in (None, ""):
                raise InputError(f"{path}:{n}: each {what} record needs an 'id'", field=what)
            record["id"] = str(record["id"])
            records.append(record)
    return records


def read_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """`query-id <TAB> doc-id <TAB> grade` lines (a header line is skipped) as {qid: {docid: grade}}."""
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.rstrip("\n").split("\t")
            if not line.strip():
                continue
            if len(parts) == 4:  # TREC layout: qid 0 docid grade
                parts = [parts[0], parts[2], parts[3]]
            try:
                grade = int(float(parts[2]))
            except (IndexError, ValueError):
                if n == 1:
                    continue  # header ("query-id corpus-id score")
                raise InputError(
                    f"{path}:{n}: expected query-id<TAB>doc-id<TAB>grade", field="qrels"
                ) from None
            qrels.setdefault(parts[0], {})[parts[1]] = grade
    return qrels


def _split_file(folder: Path, stem: str, suffix: str, split: str | None) -> Path:
    candidates = [folder / f"{stem}.{split}{suffix}"] if split else []
    candidates.append(folder / f"{stem}{suffix}")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    found = sorted(p.name for p in folder.glob(f"{stem}*{suffix}"))
    raise InputError(
        f"{folder}: no {candidates[0].name} (found: {', '.join(found) or 'nothing'})", field="split"
    )


def load_collection(path: str | Path, split: str | None = "dev", show_progress: bool = False) -> Collection:
    """Read a collection folder: corpus.jsonl, queries.<split>.jsonl and qrels.<split>.tsv (or the
    files without the split name). Queries without `lang` get one from `detect_language`."""
    folder = Path(path)
    if not folder.is_dir():
        raise InputError(f"collection folder {folder} does not exist", field="path")
    corpus_path = folder / "corpus.jsonl"
    if not corpus_path.is_file():
        raise InputError(f"{folder}: corpus.jsonl is missing", field="path")
    corpus = _read_jsonl(corpus_path, "corpus", show_progress)
    queries = _read_jsonl(_split_file(folder, "queries", ".jsonl", split), "queries", show_progress)
    for q in queries:
        if not isinstance(q.get("text"), str) or not q["text"].strip():
            raise InputError(f"query {q['id']} has no text", field="queries")
        q["lang"] = q.get("lang") or detect_language(q["text"]) or "und"
    qrels = read_qrels(_split_file(folder, "qrels", ".tsv", split))
    return Collection(folder.name, corpus, queries, qrels, folder)


def evaluate_run(
    run: Run,
    qrels: Qrels,
    query_langs: Mapping[str, str] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> dict[str, dict[str, float]]:
    """Mean metrics over the judged queries ("all") and over each query language: {lang: {metric: v}}.

    A query counts when its qrels hold at least one relevant document (grade >= 1); a query missing
    from `run` (or with nothing retrieved) scores 0, it is never dropped from the mean.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise InputError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}", field="metrics")
    judged = sorted(q for q, docs in qrels.items() if any(g >= 1 for g in docs.values()))
    if not judged:
        raise InputError("the qrels hold no relevant document (grade >= 1)", field="qrels")
    wanted = set(judged)
    scored = []
    for qid, docs in run.items():
        if qid not in wanted:
            continue
        for doc_id, score in docs.items():
            if not math.isfinite(score):
                raise InputError(f"run score for {qid}/{doc_id} is not a finite number", field="run")
            scored.append(ir_measures.ScoredDoc(str(qid), str(doc_id), float(score)))
    judgments = [ir_measures.Qrel(q, d, int(g)) for q in judged for d, g in qrels[q].items()]
    per_query = {m: dict.fromkeys(judged, 0.0) for m in metrics}
    by_measure = {METRICS[m]: m for m in metrics}
    if scored:
        for value in ir_measures.iter_calc(list(by_measure), judgments, scored):
            per_query[by_measure[value.measure]][value.query_id] = float(value.value)
    langs = query_langs or {}
    groups: dict[str, list[str]] = {ALL: judged}
    for qid in judged:
        if qid in langs:
            groups.setdefault(langs[qid], []).append(qid)
    return {
        lang: {m: float(np.mean([per_query[m][q] for q in qids])) for m in metrics}
        for lang, qids in sorted(groups.items(), key=lambda kv: (kv[0] != ALL, kv[0]))
    }


def _langs_in_order(results: Results) -> list[str]:
    seen = {lang for by_lang in results.values() for lang in by_lang}
    return sorted(seen, key=lambda lang: (lang != ALL, lang))


def _metrics_in_order(results: Results) -> list[str]:
    names: list[str] = []
    for by_lang in results.values():
        for values in by_lang.values():
            names += [m for m in values if m not in names]
    return names


def format_table(results: Results, digits: int = 3) -> str:
    """A Markdown table (readable in a terminal too): one row per stage and language."""
    metrics = _metrics_in_order(results)
    header = ["stage", "queries", *metrics]
    rows = [
        [stage, lang, *(f"{by_lang[lang][m]:.{digits}f}" if m in by_lang[lang] else "-" for m in metrics)]
        for stage, by_lang in results.items()
        for lang in _langs_in_order({stage: by_lang})
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def plot_results(results: Results, path_png: str | Path, title: str | None = None) -> Path:
    """A bar chart (PNG): one panel per query language, metrics on the x axis, one bar per stage."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot: no global state, no GUI
    from matplotlib.figure import Figure

    if not results:
        raise InputError("there are no results to plot", field="results")
    stages, langs, metrics = list(results), _langs_in_order(results), _metrics_in_order(results)
    panel_width = max(4.5, 0.45 * len(metrics) * max(1, len(stages)) + 2.0)
    fig = Figure(figsize=(panel_width * len(langs), 4.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(langs), squeeze=False, sharey=True)[0]
    width = 0.8 / max(1, len(stages))
    x = np.arange(len(metrics))
    for ax, lang in zip(axes, langs, strict=True):
        for i, stage in enumerate(stages):
            values = [results[stage].get(lang, {}).get(m, np.nan) for m in metrics]
            bars = ax.bar(x + (i - (len(stages) - 1) / 2) * width, values, width, label=stage)
            ax.bar_label(
                bars, labels=["" if np.isnan(v) else f"{v:.2f}" for v in values], fontsize=7, padding=1
            )
        ax.set_xticks(x, metrics)
        ax.set_ylim(0, 1.08)
        ax.set_title("all queries" if lang == ALL else f"{lang} queries")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("score")
    axes[-1].legend(title="stage", fontsize=8, loc="upper right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path_png)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def results_to_json(results: Results) -> str:
    """The results as JSON: {stage: {language: {metric: value}}}."""
    return json.dumps(results, indent=2, ensure_ascii=False)


def save_results(results: Results, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(results_to_json(results) + "\n", encoding="utf-8")
    return path
