"""`patentrank serve`: the HTTP API server (rerank, embeddings, health, metrics)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from patentrank.cli.app import app, fail


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default 8000).")] = None,
    index: Annotated[
        Path | None, typer.Option("--index", help="Search index folder (default PATENTRANK_INDEX_DIR).")
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
    dtype: Annotated[str | None, typer.Option(help="auto, float32 or bfloat16.")] = None,
    no_batching: Annotated[
        bool, typer.Option("--no-batching", help="Run requests one at a time (for comparison only).")
    ] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the models over HTTP: /rerank, /v1/rerank, /v2/rerank, /v1/embeddings, /health, /metrics, /docs.

    Every option also reads from the environment (PATENTRANK_RERANKER_MODEL, PATENTRANK_API_KEY,
    PATENTRANK_CACHE_URL, ...). A model that fails to load is reported in one line and the server
    starts without it. Example: patentrank serve --port 8000 --reranker-model /models/Qwen3-Reranker-0.6B
    """
    from pydantic import ValidationError

    from patentrank.engine import Engine
    from patentrank.errors import PatentrankError
    from patentrank.server import ServerSettings, create_app

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
    try:
        settings = ServerSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        fail(f"invalid setting {'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
    if no_batching:
        settings = settings.model_copy(update={"dynamic_batching": False})

    import uvicorn

    try:
        engine = Engine.from_settings(settings, report=lambda line: typer.echo(line, err=True))
    except PatentrankError as exc:
        fail(str(exc))
    ready = [name for name, ok in engine.health()["stages"].items() if ok]
    typer.echo(
        f"patentrank serving {', '.join(ready) or 'no models'} on http://{settings.host}:{settings.port} "
        f"(API docs at /docs{', API key required' if settings.api_key else ''})",
        err=True,
    )
    try:
        uvicorn.run(create_app(engine, settings), host=settings.host, port=settings.port, log_level=log_level)
    except OSError as exc:  # e.g. the port is taken
        fail(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}")
    finally:
        engine.close()
