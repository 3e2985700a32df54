"""`patentrank index`, `delete` and `stats`: build and maintain an index folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from patentrank.cli.app import app, fail

IndexOption = Annotated[
    str | None,
    typer.Option(
        "--index",
        "-i",
        help="Index folder, or a Milvus URI for cluster mode (http://host:19530) "
        "(default: PATENTRANK_INDEX_DIR or .patentrank/index).",
    ),
]


def parse_field_map(spec: str | None) -> dict[str, str] | None:
    """'id=pub_no,abstract=abs' -> {'id': 'pub_no', 'abstract': 'abs'} (our field = your column)."""
    if not spec:
        return None
    mapping = {}
    for part in spec.split(","):
        target, sep, source = part.partition("=")
        if not sep or not target.strip() or not source.strip():
            fail(f"--field-map entry {part!r} must look like ourfield=yourcolumn")
        mapping[target.strip()] = source.strip()
    return mapping


def _count_records(path: Path) -> int | None:
    """Lines in a plain file, for the progress bar's total and ETA (None for compressed files)."""
    if path.suffix == ".gz":
        return None
    with path.open("rb") as handle:
        lines = sum(1 for line in handle if line.strip())
    return max(lines - 1, 0) if path.suffix in (".csv", ".tsv") else lines


@app.command()
def index(
    files: Annotated[
        list[Path], typer.Argument(help="Patent files: .jsonl/.csv (optionally .gz) or bulk XML (.xml/.zip).")
    ],
    index_dir: IndexOption = None,
    field_map: Annotated[
        str | None, typer.Option(help="Map our fields to your columns, e.g. 'id=pub_no,abstract=abs'.")
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="Stop at the first malformed record instead of skipping it.")
    ] = False,
    embed: Annotated[
        bool, typer.Option(help="Compute dense vectors (needs the embedder; slow on CPU).")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    file_format: Annotated[
        str | None,
        typer.Option("--format", help="Force an XML format: uspto, ep, docdb or cnipa (default: detect)."),
    ] = None,
    language: Annotated[
        str | None, typer.Option("--lang", help="Language to index from multilingual XML (EP: en, de, fr).")
    ] = None,
) -> None:
    """Add or update patents in the index (same id = update). Safe to interrupt: run it again to finish.

    Reads JSONL/CSV, and the bulk XML offices publish (USPTO weekly full text and its .zip, EPO
    publication server, DOCDB, CNIPA), detected from the content.

    Example: patentrank index patents.jsonl ipg250107.zip --index ./myindex
    """
    from tqdm import tqdm

    from patentrank.config import get_settings
    from patentrank.corpus import load_patents
    from patentrank.cost import track_ingest
    from patentrank.errors import PatentrankError
    from patentrank.importers import XML_FORMATS, is_xml_path, load_xml_patents, xml_size
    from patentrank.runtime import open_runtime

    settings = get_settings()
    mapping = parse_field_map(field_map)
    if file_format is not None and file_format not in XML_FORMATS:
        fail(f"--format must be one of {', '.join(XML_FORMATS)}, not {file_format!r}")
    for f in files:
        if not f.is_file():
            fail(f"{f}: no such file")
    totals: dict[str, object] = {}
    try:
        runtime = open_runtime(settings, index_dir, roles=["embedder"] if embed else [], degrade=False)
        idx = runtime.index
        assert idx is not None
        for f in files:
            xml = file_format is not None or is_xml_path(f)
            if xml:  # bulk XML: the bar follows bytes read, so a multi-GB weekly file shows its ETA
                bar = tqdm(total=xml_size(f), desc=f.name, unit="B", unit_scale=True, disable=as_json)
                stream: Any = load_xml_patents(
                    f, format=file_format, strict=strict, language=language, on_bytes=bar.update
                )
            else:
                stream = load_patents(f, field_map=mapping, strict=strict)
                bar = tqdm(total=_count_records(f), desc=f.name, unit="patent", disable=as_json)
            # The time embedding will take is said after the first batch (on stderr, even with --json).
            embedder = idx.embedder if idx.vectors is not None else None
            say = lambda line: tqdm.write(line, file=sys.stderr)  # noqa: E731
            progress, on_embedded = track_ingest(bar, embedder, say, bar_counts_patents=not xml)
            with bar:
                report = idx.add(
                    stream, progress=progress, on_embedded=on_embedded, batch_size=64 if embedder else 256
                )
            summary = report.as_dict()  # its "rejected" holds the loader's skipped lines / documents
            if getattr(stream, "skipped", 0):
                summary["skipped_not_patents"] = stream.skipped
            totals[str(f)] = summary
            if not as_json:
                typer.echo(
                    f"{f}: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
                    f"{len(report.rejected)} rejected; {report.passages_written} passages written"
                )
                for rejection in report.rejected[:20]:
                    typer.echo(f"  {rejection.where}: {rejection.reason}", err=True)
        stats = idx.stats()
    except PatentrankError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps({"files": totals, "index": stats}, ensure_ascii=False))
    else:
        note = f", {stats['waiting_for_vectors']} waiting for vectors" if stats["waiting_for_vectors"] else ""
        typer.echo(f"index {stats['path']}: {stats['patents']} patents, {stats['passages']} passages{note}")


@app.command()
def delete(
    ids: Annotated[list[str], typer.Argument(help="Publication numbers to remove.")],
    index_dir: IndexOption = None,
) -> None:
    """Remove patents (and all their passages) from every part of the index."""
    from patentrank.config import get_settings
    from patentrank.errors import PatentrankError
    from patentrank.index.location import index_location, missing_index, open_patent_index

    settings = get_settings()
    path = index_location(index_dir or settings.index_dir)
    if why := missing_index(path):
        fail(why)
    try:
        idx = open_patent_index(path, settings=settings, read_only=False)
        removed = idx.delete(ids)
        idx.close()
        # Vectors are removed on the next open with an embedder (the journal keeps the deletes).
    except PatentrankError as exc:
        fail(str(exc))
    missing = [i for i in ids if i not in removed]
    typer.echo(
        f"removed {len(removed)} patent(s)" + (f"; not found: {', '.join(missing)}" if missing else "")
    )


@app.command()
def stats(index_dir: IndexOption = None) -> None:
    """Show the size and state of an index."""
    from patentrank.config import get_settings
    from patentrank.errors import PatentrankError
    from patentrank.index.location import index_location, missing_index, open_patent_index

    path = index_location(index_dir or get_settings().index_dir)
    if why := missing_index(path):
        fail(why)
    try:
        index = open_patent_index(path, settings=get_settings(), read_only=True)
        stats = index.stats()
    except PatentrankError as exc:
        fail(str(exc))
    recorded = index.meta.get("embedder")
    if recorded and isinstance(
        path, Path
    ):  # opened without a model, the index has no vector store: count the one on disk
        from patentrank.index.stores import open_vector_store

        store = open_vector_store(get_settings().vector_store, path, int(recorded["dim"]))
        stats["vector_passages"] = store.count()
        getattr(store, "close", lambda: None)()
    index.close()
    typer.echo(json.dumps(stats, indent=2, ensure_ascii=False))
