"""Family collapse on a real (lexical) index: which results collapse, the order and ranks kept, top_n
full, the switch, search by patent; the HTTP, CLI and UI paths; and defects 7 and 8 of issue 10."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from patentrank.corpus import Patent
from patentrank.errors import InputError
from patentrank.families import DUPLICATE_TEXT, FAMILY, collapse, identity, normalised_text
from patentrank.index.patent_index import PatentIndex
from patentrank.search import SearchPipeline, SearchRequest

QUERY = "waste heat boiler flue gas"
BOILER = "A waste heat boiler recovers heat from the flue gas of a furnace"


def _member(patent_id: str, title: str, abstract: str, family_id: object) -> Patent:
    return Patent(patent_id, title=title, abstract=abstract, metadata={"family_id": family_id})


def _patents() -> list[Patent]:
    """Ten distinct inventions plus: a same-text twin (other width, case, punctuation), a family of two
    with different text, two different families with one text, two patents with claims only."""
    distinct = [
        Patent(f"CN90{n}A", title=f"Boiler variant {n}", abstract=f"{BOILER} using part{n} and piece{n}.")
        for n in range(10)
    ]
    return [
        *distinct,
        Patent("CN100A", title="Waste heat boiler", abstract=f"{BOILER}, with flue gas, flue gas, flue gas."),
        Patent("CN100B", title="WASTE-HEAT  boiler", abstract=f"{BOILER}， with flue gas flue gas flue gas"),
        _member("EP200A1", "Flue gas boiler", f"{BOILER} waste heat flue gas.", "F1"),
        _member("US300B2", "Heat recovery", f"{BOILER} and a drum.", "F1"),
        _member("EP500A1", "Gas boiler", f"{BOILER} with one fan.", 55),
        _member("EP501A1", "Gas boiler", f"{BOILER} with one fan.", 56),
        Patent("CN700A", claims=["A waste heat boiler with a flue gas duct and a drum."]),
        Patent("CN701A", claims=["A waste heat boiler with a flue gas duct and a drum."]),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> SearchPipeline:
    index = PatentIndex(tmp_path_factory.mktemp("families") / "ix")
    index.add(_patents())
    return SearchPipeline(index)


def _search(pipeline: SearchPipeline, **args: Any) -> Any:
    return pipeline.search(SearchRequest(QUERY, mode="lexical", rerank=False, **args))


# ---------------------------------------------------------------- the rules


def test_normalised_text_ignores_width_case_punctuation_and_spacing() -> None:
    plain = normalised_text("waste heat boiler", "flue gas")
    assert normalised_text("Waste-Heat  BOILER", "Ｆｌｕｅ， gas.") == plain
    assert normalised_text("一种余热锅炉，", "包括烟道。") == normalised_text("一种余热锅炉", " 包括烟道")
    assert normalised_text("waste heat boiler", "") != normalised_text("waste heat boilers", "")


def test_which_patents_are_the_same_invention() -> None:
    ids = ["a", "b", "c", "d", "e", "f", "g"]
    same = {
        "a": identity("T", "text one", None),
        "b": identity("t", "TEXT one.", None),  # duplicate text of a
        "c": identity("Other", "x", 7),
        "d": identity("Else", "y", "7"),  # family of c (a number and its text are one id)
        "e": identity("T", "text one", 8),  # a's text, e has a family, a has none: duplicate text
        "f": identity("", "", None),
        "g": identity("", "", None),  # empty title + abstract never collapses
    }
    groups = collapse(ids, same).groups
    assert [(g.kept, g.members) for g in groups] == [
        ("a", [("b", DUPLICATE_TEXT), ("e", DUPLICATE_TEXT)]),
        ("c", [("d", FAMILY)]),
        ("f", []),
        ("g", []),
    ]
    other_families = {"x": identity("T", "same", 1), "y": identity("T", "same", 2)}
    assert len(collapse(["x", "y"], other_families).groups) == 2, "two family ids are two inventions"


# ---------------------------------------------------------------- in the pipeline


def test_collapse_keeps_the_best_ranked_member_and_lists_the_others_in_rank_order(
    pipeline: SearchPipeline,
) -> None:
    plain = _search(pipeline, top_n=50, collapse=False)
    order = [r.patent_id for r in plain.results]
    assert len(order) == 18 and all(not r.family_members for r in plain.results)
    folded = _search(pipeline, top_n=50)
    kept = [r.patent_id for r in folded.results]
    members = {r.patent_id: [(m.patent_id, m.reason) for m in r.family_members] for r in folded.results}
    twin = min(("CN100A", "CN100B"), key=order.index)
    family = min(("EP200A1", "US300B2"), key=order.index)
    assert members[twin] == [(({"CN100A", "CN100B"} - {twin}).pop(), DUPLICATE_TEXT)]
    assert members[family] == [(({"EP200A1", "US300B2"} - {family}).pop(), FAMILY)]
    assert {"EP500A1", "EP501A1", "CN700A", "CN701A"} <= set(kept), "different families / empty text stay"
    collapsed = {m for ms in members.values() for m, _ in ms}
    assert kept == [p for p in order if p not in collapsed], "the others keep their order and move up"
    assert [r.rank for r in folded.results] == list(range(1, 17))
    scores = {r.patent_id: r.score for r in plain.results}
    assert all(m.score == scores[m.patent_id] for r in folded.results for m in r.family_members)
    assert folded.collapse["collapsed"] == 2 and folded.collapse["on"]


def test_top_n_counts_kept_results_and_the_page_stays_full(pipeline: SearchPipeline) -> None:
    plain = _search(pipeline, top_n=16, collapse=False)
    assert len({r.patent_id for r in plain.results}) == 16
    folded = _search(pipeline, top_n=16)
    assert [r.rank for r in folded.results] == list(range(1, 17)), "16 inventions, though 18 patents"
    # Retrieval that stops short of a full page of inventions is widened until the page is full.
    narrow = _search(pipeline, top_n=16, retrieve_k=16)
    assert len(narrow.results) == 16 and narrow.collapse["retrieve_k"] > 16
    assert len(_search(pipeline, top_n=16, retrieve_k=16, collapse=False).results) == 16


def test_collapse_off_gives_the_uncollapsed_results(pipeline: SearchPipeline) -> None:
    off = _search(pipeline, top_n=5, collapse=False)
    again = _search(pipeline, top_n=5, collapse=False)
    assert [(r.patent_id, r.score) for r in off.results] == [(r.patent_id, r.score) for r in again.results]
    ranked = _search(pipeline, top_n=50, collapse=False)
    assert [r.patent_id for r in off.results] == [r.patent_id for r in ranked.results][:5]
    assert not off.collapse["on"] and off.collapse["retrieve_k"] == 200


def test_search_by_patent_leaves_out_its_own_twin_and_family(pipeline: SearchPipeline) -> None:
    by_twin = pipeline.search(SearchRequest(patent_id="CN100A", mode="lexical", rerank=False, top_n=50))
    ids = {r.patent_id for r in by_twin.results}
    assert "CN100A" not in ids and "CN100B" not in ids, "prior art for a patent is not its own twin"
    assert by_twin.collapse["excluded_twins_of_query"] == [{"patent_id": "CN100B", "reason": DUPLICATE_TEXT}]
    by_family = pipeline.search(SearchRequest(patent_id="US300B2", mode="lexical", rerank=False, top_n=50))
    assert "EP200A1" not in {r.patent_id for r in by_family.results}
    plain = pipeline.search(
        SearchRequest(patent_id="CN100A", mode="lexical", rerank=False, top_n=50, collapse=False)
    )
    assert "CN100B" in {r.patent_id for r in plain.results}, "without collapse only the patent itself goes"


# ---------------------------------------------------------------- issue 10, defects 7 and 8


def test_ranks_stay_contiguous_and_the_page_full_when_a_patent_is_deleted_mid_search(
    tmp_path: Path,
) -> None:
    index = PatentIndex(tmp_path / "ix")
    index.add(_patents())
    victim: list[str] = []

    def rerank_while_someone_deletes(
        query: str, documents: list[str], instruction: str | None
    ) -> list[float]:
        index.delete(victim)  # another request removes a patent while this search reranks
        return [float(len(documents) - i) for i in range(len(documents))]

    pipeline = SearchPipeline(index, rerank=rerank_while_someone_deletes)
    first = pipeline.search(SearchRequest(QUERY, mode="lexical", rerank=False, top_n=5, collapse=False))
    victim.append(first.results[1].patent_id)
    response = pipeline.search(SearchRequest(QUERY, mode="lexical", top_n=5, candidates=10, collapse=False))
    assert victim[0] not in {r.patent_id for r in response.results}
    assert [r.rank for r in response.results] == [1, 2, 3, 4, 5]


def test_a_bad_dense_weight_is_reported_as_dense_weight() -> None:
    with pytest.raises(InputError) as bad:
        SearchRequest("q", dense_weight=-1.0).validate()
    assert bad.value.field == "dense_weight" and "dense_weight" in str(bad.value)
    with pytest.raises(InputError) as bad:
        SearchRequest("q", lexical_weight=-1.0).validate()
    assert bad.value.field == "lexical_weight"


# ---------------------------------------------------------------- HTTP, CLI, UI


@pytest.fixture(scope="module")
def server(pipeline: SearchPipeline) -> Iterator[str]:
    from patentrank.config import Settings
    from patentrank.engine import Engine
    from patentrank.runtime import Runtime
    from patentrank.server import create_app
    from patentrank.server.routes_search import router as search_router
    from patentrank.server.testing import serve_in_thread

    settings = Settings(cache_size=0)
    runtime = Runtime(settings, engine=Engine(settings=settings), index=pipeline.index, pipeline=pipeline)
    with serve_in_thread(create_app(runtime, settings, routers=[search_router])) as url:
        yield url


def test_http_search_collapses_by_default_and_can_switch_it_off(server: str) -> None:
    body = {"query": QUERY, "mode": "lexical", "rerank": False, "top_n": 50}
    folded = httpx.post(server + "/v1/search", json=body, timeout=60).json()
    members = [m for r in folded["results"] for m in r["family_members"]]
    assert len(folded["results"]) == 16 and {m["reason"] for m in members} == {FAMILY, DUPLICATE_TEXT}
    assert set(members[0]) == {"patent_id", "score", "reason"}
    plain = httpx.post(server + "/v1/search", json={**body, "collapse": False}, timeout=60).json()
    assert len(plain["results"]) == 18 and not any(r["family_members"] for r in plain["results"])
    bad = httpx.post(server + "/v1/search", json={**body, "collapse": "sometimes"}, timeout=60)
    assert bad.status_code == 422 and "collapse" in bad.text
    schema = httpx.get(server + "/openapi.json", timeout=60).json()
    field = schema["components"]["schemas"]["SearchBody"]["properties"]["collapse"]
    assert field["default"] is True and "family_members" in field["description"]


def test_cli_search_collapses_unless_told_not_to(pipeline: SearchPipeline) -> None:
    from typer.testing import CliRunner

    from patentrank.cli import app

    where = ["--index", str(pipeline.index.path)]
    args = ["search", QUERY, *where, "--mode", "lexical", "--no-rerank", "--top-n", "50", "--json"]
    folded = json.loads(CliRunner().invoke(app, args, catch_exceptions=False).output)
    plain = json.loads(CliRunner().invoke(app, [*args, "--no-collapse"], catch_exceptions=False).output)
    assert (len(folded["results"]), len(plain["results"])) == (16, 18)
    table = CliRunner().invoke(app, args[:-1], terminal_width=200, catch_exceptions=False).output
    assert "(duplicate text)" in table and "(family)" in table


def test_ui_shows_members_and_exports_them(pipeline: SearchPipeline, tmp_path: Path) -> None:
    from patentrank.config import Settings
    from patentrank.engine import Engine
    from patentrank.runtime import Runtime
    from patentrank.ui.actions import UiActions

    settings = Settings(cache_size=0)
    runtime = Runtime(settings, engine=Engine(settings=settings), index=pipeline.index, pipeline=pipeline)
    actions = UiActions(runtime)
    html, csv_path, jsonl_path = actions.search(QUERY, mode="lexical", rerank=False, top_n=50)
    assert html.count('class="pr-card"') == 16 and "Also published as:" in html
    assert csv_path is not None and jsonl_path is not None
    assert "(duplicate text)" in Path(csv_path).read_text(encoding="utf-8-sig")
    rows = [json.loads(line) for line in Path(jsonl_path).read_text(encoding="utf-8").splitlines()]
    assert sum(len(r["family_members"]) for r in rows) == 2
    html, _, _ = actions.search(QUERY, mode="lexical", rerank=False, top_n=50, collapse=False)
    assert html.count('class="pr-card"') == 18 and "Also published as:" not in html
