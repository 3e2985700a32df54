"""The tables of the search benchmark's report, one function per table, from the raw results."""

from __future__ import annotations

from typing import Any

from benchmarks import common as bench
from benchmarks.measure import BUSY_CORES, StageClock
from benchmarks.synthetic_patents import FILTER_DOC, FILTERS

FILTER_NAMES = {"none": "none", "common": "~10%", "rare": "<1%"}
HOOKS = StageClock.HOOKS


def passages_label(r: dict[str, Any]) -> str:
    return f"{r['ingest']['passages']:,}"


def _rate(seconds: float, n: int) -> str:
    return f"{seconds:,.1f} s ({n / seconds:,.0f}/s)" if seconds >= 0.05 else f"{seconds:.2f} s"


def busy_mark(value: dict[str, Any]) -> str:
    return " !" if value.get("others_cores", 0.0) > BUSY_CORES else ""


def _lat(value: dict[str, Any] | None, queries: int, key: str = "") -> str:
    """'p50 / p95' (of the whole call, or of its `stage_` part), with the count when a budget cut it."""
    if not value:
        return "-"
    p50, p95 = value.get(f"{key}p50"), value.get(f"{key}p95")
    if p50 is None:
        return "-"
    cut = f" ({value['n']} q)" if value["n"] < queries else ""
    return f"{p50:.1f} / {p95:.1f}{cut}{busy_mark(value)}"


def analysis_chars_per_s(r: dict[str, Any]) -> float:
    """The real (uncached) analyzer's rate inside this size's run: its 1,000-patent commit analyses
    for real at every size; the indexing run itself when it was not memoized."""
    i, c = r["ingest"], r["commit"]
    if not i["memo_jieba"] and i["stages_s"]["analysis"] > 0:
        return i["chars"] / i["stages_s"]["analysis"]
    return c["analysed_chars"] / max(c["stages_s"]["analysis"], 1e-9)


def indexing(r: dict[str, Any]) -> dict[str, float]:
    """Passages/s of `add` less generation, embedding and the benchmark's bookkeeping: as measured, and
    with uncached analysis."""
    i, st = r["ingest"], r["ingest"]["stages_s"]
    together = i["total_s"] - st["generation"] - st["embedding"] - st[HOOKS]
    uncached = (
        together - st["analysis"] + i["chars"] / analysis_chars_per_s(r) if i["memo_jieba"] else together
    )
    return {
        "together_s": together,
        "uncached_s": uncached,
        "rate": i["passages"] / together,
        "uncached_rate": i["passages"] / uncached,
    }


INDEXING_ROWS = (
    ("chunking", "chunking (`patent_passages`)"),
    ("analysis", "analysis (jieba search mode + Snowball)"),
    ("docstore", "docstore (SQLite upserts, journal)"),
    ("lexical engine", "lexical engine (staging, commits; analysis excluded)"),
    ("vectors", "vector store (upserts, saves, waits; its background merges overlap the other stages)"),
    ("PatentIndex own work", "PatentIndex own work"),
)


def indexing_table(results: list[dict[str, Any]]) -> str:
    rows: list[list[str]] = [
        [
            "patents / characters",
            *[f"{r['ingest']['patents']:,} / {r['ingest']['chars'] / 1e6:,.1f} M" for r in results],
        ]
    ]
    for key, label in INDEXING_ROWS:
        cells = []
        for r in results:
            i, s = r["ingest"], r["ingest"]["stages_s"][key]
            if key == "analysis" and i["memo_jieba"]:
                est = i["chars"] / analysis_chars_per_s(r)
                cells.append(f"{s:,.1f} s **memoized**; est. uncached {_rate(est, i['passages'])}")
            else:
                cells.append(_rate(s, i["passages"]))
        rows.append([label, *cells])
    rows.append(
        [
            "**together**: `add` wall time less what is excluded below",
            *[f"**{_rate(indexing(r)['together_s'], r['ingest']['passages'])}**" for r in results],
        ]
    )
    rows.append(
        [
            "together with uncached analysis",
            *[
                f"**est. {_rate(indexing(r)['uncached_s'], r['ingest']['passages'])}**"
                if r["ingest"]["memo_jieba"]
                else "(as measured)"
                for r in results
            ],
        ]
    )
    rows.append(
        [
            "excluded: corpus generation / synthetic embedding / benchmark bookkeeping",
            *[
                f"{st['generation']:.1f} s / {st['embedding']:.1f} s / {st[HOOKS]:.1f} s"
                for st in (r["ingest"]["stages_s"] for r in results)
            ],
        ]
    )
    rows.append(
        [
            "real analyzer rate in the run / on a 3,000-passage sample",
            *[
                f"{analysis_chars_per_s(r) / 1e3:,.0f} / {r['analysis']['chars_per_s'] / 1e3:,.0f} k chars/s"
                for r in results
            ],
        ]
    )
    rows.append(
        [
            "lexical commits / the last one",
            *[
                f"{r['ingest']['lexical_commits']} / {r['ingest']['lexical_last_commit_s'] or 0:.2f} s"
                for r in results
            ],
        ]
    )
    rows.append(
        [
            "vector store at the end / saves",
            *[f"{r['ingest']['vector_kind']} / {r['ingest']['vector_saves']}" for r in results],
        ]
    )
    rows.append(
        [
            "lexical engine says",
            *[
                ", ".join(f"{k} {v}" for k, v in r["ingest"]["lexical_health"].items()) or "-"
                for r in results
            ],
        ]
    )
    rows.append(
        [
            "RSS peak while indexing / other processes' CPU",
            *[
                f"{bench.gib(r['ingest']['rss_peak_bytes'])} / {r['ingest']['others_cores']:.2f} cores"
                for r in results
            ],
        ]
    )
    return bench.markdown_table(["stage", *[f"{passages_label(r)} passages" for r in results]], rows)


def commit_table(results: list[dict[str, Any]]) -> str:
    rows = [
        ["passages added", *[f"{r['commit']['passages']:,}" for r in results]],
        ["**`PatentIndex.add` end to end**", *[f"**{r['commit']['total_s']:.2f} s**" for r in results]],
    ]
    for key, label in INDEXING_ROWS:
        label = "analysis (real, uncached)" if key == "analysis" else label
        rows.append([label, *[f"{r['commit']['stages_s'][key]:.2f} s" for r in results]])
    rows.append(
        ["of the lexical engine: its commit", *[f"{r['commit']['lexical_commit_s']:.2f} s" for r in results]]
    )
    rows.append(
        [
            "after it: a background merge it started (searches wait; not in the total)",
            *[
                "-"
                if "background_merge_after_s" not in r["commit"]
                else f"{r['commit']['background_merge_after_s']:.2f} s"
                for r in results
            ],
        ]
    )
    rows.append(
        [
            "synthetic embedding / benchmark bookkeeping (inside the total)",
            *[
                f"{s['embedding']:.2f} s / {s[HOOKS]:.2f} s"
                for s in (r["commit"]["stages_s"] for r in results)
            ],
        ]
    )
    return bench.markdown_table(["", *[f"into {passages_label(r)}" for r in results]], rows)


def before_after_table(results: list[dict[str, Any]], queries: int) -> str:
    rows = []
    for r in (r for r in results if "legacy" in r):
        b, c, n = r["legacy_build"], r["commit"], passages_label(r)
        after_engine = r["ingest"]["stages_s"]["lexical engine"]
        rows.append(
            [
                n,
                "bulk load, lexical engine only (analysis excluded, same analyzer)",
                f"{b['staging_s'] + b['commit_s']:.1f} s "
                f"(commits: {b['commits']}, the last {b['last_commit_s']:.2f} s)",
                f"{after_engine:.1f} s (commits: {r['ingest']['lexical_commits']}, the last "
                f"{r['ingest']['lexical_last_commit_s'] or 0:.2f} s)",
            ]
        )
        legacy_commit = c["legacy"]["staging_s"] + c["legacy"]["commit_s"]
        rows.append(
            [
                n,
                "one 1,000-patent commit, lexical engine only (staging + commit)",
                f"{legacy_commit:.2f} s (commit {c['legacy']['commit_s']:.2f} s)",
                f"{c['stages_s']['lexical engine']:.2f} s (commit {c['lexical_commit_s']:.2f} s)",
            ]
        )
        for f in FILTERS:
            old = r["legacy"][f]
            sql = f"; SQL allowed ids {old['sql_p50']:.1f} / {old['sql_p95']:.1f}" if f != "none" else ""
            rows.append(
                [
                    n,
                    f"lexical stage p50 / p95 ms, filter {FILTER_NAMES[f]}",
                    _lat(old, queries) + sql,
                    _lat(r["pipeline"].get(f"lexical|{f}"), queries, "stage_"),
                ]
            )
        disk = r["disk_bytes"]
        rows.append(
            [
                n,
                "on disk at the end",
                f"{disk['benchmark: legacy BM25 (baseline)'] / 2**20:,.0f} MiB",
                f"{disk.get(r['ingest']['lexical_dir'], 0) / 2**20:,.0f} MiB",
            ]
        )
    if not rows:
        return "(no size ran the baseline: see --legacy-max)"
    return bench.markdown_table(["passages", "measure", "before: numpy BM25 (19128a7)", "after: now"], rows)


def selectivity_table(results: list[dict[str, Any]]) -> str:
    rows = [
        [
            FILTER_NAMES[f],
            FILTER_DOC[f],
            *[
                f"{s['mean']:.2%} ({s['min']:.2%}-{s['max']:.2%})"
                for s in (r["selectivity"][f] for r in results)
            ],
        ]
        for f in FILTERS[1:]
    ]
    return bench.markdown_table(
        ["filter", "fields", *[f"{passages_label(r)}: mean (min-max)" for r in results]], rows
    )


def latency_table(results: list[dict[str, Any]], part: str, queries: int, key: str = "") -> str:
    labels = list(dict.fromkeys(k.split("|")[0] for r in results for k in r[part]))
    head = ["", *[f"{passages_label(r)} {FILTER_NAMES[f]}" for r in results for f in FILTERS]]
    rows = [
        [label, *[_lat(r[part].get(f"{label}|{f}"), queries, key) for r in results for f in FILTERS]]
        for label in labels
    ]
    return bench.markdown_table(head, rows)


def memory_table(results: list[dict[str, Any]]) -> str:
    phases = list(dict.fromkeys(p for r in results for p in r["rss"]))
    rows = [
        [f"peak RSS: {p}", *[bench.gib(r["rss"][p]) if p in r["rss"] else "-" for r in results]]
        for p in phases
    ]
    rows.append(
        ["peak RSS: the whole process (`ru_maxrss`)", *[bench.gib(r["peak_rss_bytes"]) for r in results]]
    )
    parts = list(dict.fromkeys(p for r in results for p in r["disk_bytes"]))
    rows += [
        [
            f"disk: `{p}`" if not p.startswith("benchmark") else f"disk: {p}",
            *[f"{r['disk_bytes'][p] / 2**20:,.0f} MiB" if p in r["disk_bytes"] else "-" for r in results],
        ]
        for p in parts
    ]
    return bench.markdown_table(["", *[f"{passages_label(r)} passages" for r in results]], rows)
