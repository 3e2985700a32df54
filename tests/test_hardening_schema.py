"""Issue 15, the proof: schemathesis draws valid and invalid requests for every operation of the
server's own OpenAPI document and runs all of its checks on each answer, on a server with every model
and the index, and on one with none. No 5xx, every status and body as the document declares.

Bounded for CI: `max_examples` is set per operation and mode (about 1,200 cases in all); derandomized,
so a failure reproduces.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from patentrank.config import Settings
from patentrank.engine import Engine
from patentrank.server import create_app
from patentrank.server.routes_search import router as search_router
from patentrank.server.testing import serve_in_thread

KEY = "schema-key"
POSITIVE_EXAMPLES = 30
NEGATIVE_EXAMPLES = 25
GET_EXAMPLES = 8


@pytest.fixture(scope="module")
def full_server(
    tiny_reranker_path: Path, tiny_embedder_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    from patentrank.corpus import load_patents, sample_corpus_path
    from patentrank.index.patent_index import PatentIndex
    from patentrank.models.embedder import Embedder
    from patentrank.models.reranker import Reranker
    from patentrank.runtime import Runtime

    embedder = Embedder(str(tiny_embedder_path), device="cpu", max_length=32)
    settings = Settings(
        cache_size=1000,
        rerank_candidates=5,
        max_documents=20,
        max_inputs=20,
        max_document_chars=2000,
        max_body_bytes=256 * 1024,
        api_key=KEY,
        auth_failure_limit=1_000_000,  # schemathesis' ignored_auth check sends wrong keys on purpose
    )
    index = PatentIndex(tmp_path_factory.mktemp("schema") / "ix", embedder=embedder)
    index.add(load_patents(sample_corpus_path()))
    engine = Engine(
        reranker=Reranker(str(tiny_reranker_path), device="cpu", max_length=64),
        embedder=embedder,
        settings=settings,
    )
    runtime = Runtime.serving(engine, index)
    with serve_in_thread(create_app(runtime, settings, routers=[search_router])) as url:
        yield url
    engine.close()


@pytest.fixture(scope="module")
def empty_server() -> Iterator[str]:
    settings = Settings(reranker_model="none", embedder_model="none", max_body_bytes=256 * 1024)
    engine = Engine(settings=settings)
    with serve_in_thread(create_app(engine, settings, routers=[search_router])) as url:
        yield url


def breaks_rank_fields(case: Any) -> bool:
    """Cohere's `rank_fields` names fields every object document must have (documented in the field's
    description; a 422 naming rank_fields otherwise). JSON Schema cannot relate two fields' values."""
    body = case.body if isinstance(case.body, dict) else {}
    fields = body.get("rank_fields")
    documents = body.get("documents")
    if not (isinstance(fields, list) and fields and fields != ["text"] and isinstance(documents, list)):
        return False
    return any(isinstance(d, dict) and any(f not in d for f in fields) for d in documents)


def _fuzz(operation: Any, mode: Any, budget: int, base_url: str, headers: dict[str, str]) -> tuple[int, dict]:
    """Run `budget` cases of one operation in one mode: (cases, {failure title: (count, example)})."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.core.failures import FailureGroup
    from schemathesis.generation import GenerationMode

    cases = 0
    found: dict[str, list[Any]] = {}

    @settings(
        max_examples=budget,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        nonlocal cases
        cases += 1
        if mode is GenerationMode.POSITIVE and breaks_rank_fields(case):
            # the one rule JSON Schema cannot state, checked here instead (503: no reranker to check it)
            response = case.call(base_url=base_url, headers=headers, timeout=60)
            error = response.json()["error"]
            assert (response.status_code, error["field"]) == (
                422,
                "rank_fields",
            ) or response.status_code == 503
            return
        try:
            case.call_and_validate(base_url=base_url, headers=headers, timeout=60)
        except FailureGroup as group:  # every check that failed on this answer
            for failure in group.exceptions:
                entry = found.setdefault(
                    failure.title, [0, f"{group}\n{case.as_curl_command(base_url=base_url)}"]
                )
                entry[0] += 1

    try:
        check()
    except Unsatisfiable:  # nothing to break (e.g. GET /health has no inputs): no negative cases
        assert mode is GenerationMode.NEGATIVE, operation.path
    return cases, found


def run_schemathesis(
    base_url: str, headers: dict[str, str], *, unavailable_ok: bool = False
) -> tuple[int, list[str]]:
    """(cases run, failures) over every operation, positive and negative, with every check.

    `unavailable_ok`: a server without models answers their routes 503 by design (the message names
    the fix); that one status is then not a server error. Every other 5xx still is.
    """
    import schemathesis
    from schemathesis.config import SchemathesisConfig
    from schemathesis.generation import GenerationMode

    document = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
    # Over-limit inputs are refused with 413 (naming the setting), which schemathesis does not count
    # as a rejection by default; everything else is its default list.
    rejections = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429, "5xx"]
    checks: dict[str, Any] = {"negative_data_rejection": {"expected-statuses": rejections}}
    if unavailable_ok:
        checks["not_a_server_error"] = {"expected-statuses": ["2xx", "3xx", "4xx", 503]}
    config = SchemathesisConfig.from_dict({"checks": checks})
    schema = schemathesis.openapi.from_dict(document, config=config)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, [op.path for op in operations]
    total = 0
    failures: list[tuple[int, str]] = []
    for operation in operations:
        has_body = operation.method.upper() in ("POST", "PUT", "PATCH")
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            budget = GET_EXAMPLES if not has_body else (
                POSITIVE_EXAMPLES if mode is GenerationMode.POSITIVE else NEGATIVE_EXAMPLES
            )  # fmt: skip
            cases, found = _fuzz(operation, mode, budget, base_url, headers)
            total += cases
            for title, (count, example) in found.items():
                label = f"{count}x {operation.method.upper()} {operation.path} [{mode.value}]: {title}"
                failures.append((count, f"{label}\n{example[:1500]}"))
    return total, [text for _, text in sorted(failures, key=lambda f: -f[0])]


def test_every_operation_every_check_with_models(full_server: str) -> None:
    cases, failures = run_schemathesis(full_server, {"Authorization": f"Bearer {KEY}"})
    print(f"schemathesis with models: {cases} cases")
    assert not failures, "\n\n".join(failures[:8])
    assert cases >= 600


def test_every_operation_every_check_without_models(empty_server: str) -> None:
    """No models and no index: every model or search route is a 503 naming the fix, nothing else."""
    cases, failures = run_schemathesis(empty_server, {}, unavailable_ok=True)
    print(f"schemathesis without models: {cases} cases")
    assert not failures, "\n\n".join(failures[:8])
    assert cases >= 600


def test_unavailable_stages_name_the_fix(empty_server: str) -> None:
    for path, body in [("/v1/rerank", {"query": "q", "documents": ["d"]}), ("/embed", {"inputs": "x"})]:
        response = httpx.post(empty_server + path, json=body, timeout=30)
        assert response.status_code == 503 and "Fix:" in response.text
