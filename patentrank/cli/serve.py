"""`patentrank serve`: the HTTP API server (rerank, embeddings, health, metrics)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from patentrank.cli.app import app, fail, settings_error


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default 8000).")] = None,
    index: Annotated[
        str | None,
        typer.Option("--index", help="Search index folder, or a Milvus URI (default PATENTRANK_INDEX_DIR)."),
    ] = None,
    reranker_model: Annotated[
        str | None,
        typer.Option(help="Reranker: hub id, local folder, or 'none' (default PATENTRANK_RERANKER_MODEL)."),
    ] = None,
    embedder_model: Annotated[
        str | None,
        typer.Option(help="Embedder: hub id, local folder, or 'none' (default PATENTRANK_EMBEDDER_MODEL)."),
    ] = None,
    reranker_url: Annotated[
        str | None,
        typer.Option(help="Use a remote vLLM/patentrank reranker (comma-separated URLs fail over)."),
    ] = None,
    embedder_url: Annotated[
        str | None, typer.Option(help="Use a remote OpenAI-compatible embeddings server (comma-separated).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    dtype: Annotated[str | None, typer.Option(help="auto, float32, bfloat16(-mixed), int8.")] = None,
    no_batching: Annotated[
        bool, typer.Option("--no-batching", help="Run requests one at a time (for comparison only).")
    ] = False,
    ui: Annotated[bool, typer.Option("--ui/--no-ui", help="Serve the web page at /ui.")] = True,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve search and the models over HTTP: /v1/search, /v1/patents, /rerank, /v1/rerank, /v2/rerank,
    /v1/embeddings, /health, /metrics, the API docs at /docs and the web page at /ui.

    Every option also reads from the environment (PATENTRANK_RERANKER_MODEL, PATENTRANK_API_KEY,
    PATENTRANK_CACHE_URL, ...). A model or index that fails to load is reported in one line and the
    server starts without it. Example: patentrank serve --index /data/ix --reranker-model /models/rr
    """
    from pydantic import ValidationError

    from patentrank.config import Settings
    from patentrank.errors import PatentrankError
    from patentrank.runtime import serve_runtime
    from patentrank.server import create_app

    overrides = {
        "host": host,
        "port": port,
        "index_dir": index,
        "reranker_model": reranker_model,
        "embedder_model": embedder_model,
        "reranker_url": reranker_url,
        "embedder_url": embedder_url,
        "device": device,
        "dtype": dtype,
    }
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        flags = {k: "--index" if k == "index_dir" else f"--{k.replace('_', '-')}" for k in given}
        fail(settings_error(exc, flags))
    if no_batching:
        settings = settings.model_copy(update={"dynamic_batching": False})

    from patentrank.server.runner import run

    def say(line: str) -> None:
        typer.echo(line, err=True)

    try:
        runtime = serve_runtime(settings, report=say)
    except PatentrankError as exc:
        fail(str(exc))
    app = create_app(runtime, settings, routers=_search_routers())
    if ui:
        app = _mount_ui(app, say)
    ready = [name for name, reason in runtime.stages().items() if reason is None]
    extras = [", web page at /ui" if ui else "", ", API key required" if settings.api_key else ""]
    say(
        f"patentrank serving {', '.join(ready) or 'no models'} on http://{settings.host}:{settings.port} "
        f"(API docs at /docs{''.join(extras)})"
    )
    try:
        run(app, settings, host=settings.host, port=settings.port, log_level=log_level)
    except OSError as exc:  # e.g. the port is taken
        fail(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}")
    finally:
        runtime.close()


def _search_routers() -> list[Any]:
    from patentrank.server.routes_chart import router as chart_router
    from patentrank.server.routes_search import router

    return [router, chart_router]


def _mount_ui(app: Any, say: Callable[[str], None]) -> Any:
    try:
        from patentrank.ui.app import mount_ui
    except ImportError as exc:
        say(f"warning: web page not available: {_one_line(exc)}")
        return app
    return mount_ui(app)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
