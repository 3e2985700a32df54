"""Patent and passage records, and streaming JSONL/CSV loaders that report every rejected line."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from patentrank.chunking import (
    Passage,
    PassageField,
    approx_tokens,
    passage_id_for,
    patent_passages,
    split_claims,
    strip_claim_number,
)
from patentrank.dates import parse_date
from patentrank.errors import InputError
from patentrank.index.filters import PassageFields, date_to_int, normalize_code
from patentrank.patent_ids import jurisdiction_of
from patentrank.text import detect_language  # one rule for patents and queries

# Passage and chunking live in patentrank.chunking and are re-exported here.
__all__ = ["LoadReport", "Passage", "PassageField", "Patent", "PatentStream", "approx_tokens"]
__all__ += ["detect_language", "jurisdiction_of", "load_csv", "load_jsonl", "load_patents", "parse_date"]
__all__ += ["passage_id_for", "patent_from_record", "patent_passages", "sample_corpus_path", "split_claims"]

DATE_TARGETS = ("priority_date", "filing_date", "publication_date")
LIST_TARGETS = ("claims", "codes", "applicants")
TEXT_TARGETS = ("id", "title", "abstract", "description", "language", "jurisdiction")
TARGETS = (*TEXT_TARGETS, *LIST_TARGETS, *DATE_TARGETS, "metadata")

# Source names accepted without a field_map, tried in order after the target's own name. "codes"
# gathers every alias present (a record may carry both IPC and CPC codes).
DEFAULT_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("publication_number", "pub_no"),
    "language": ("lang",),
    "codes": ("ipc", "cpc"),
    "priority_date": ("priority",),
    "filing_date": ("filing", "application_date"),
    "publication_date": ("publication", "pub_date"),
}

@dataclass(slots=True)
class Patent:
    """One patent publication; language and jurisdiction are derived when not given.

    Example:
        >>> p = Patent(id="CN112233445A", title="一种基于深度学习的图像去噪方法", abstract="...")
        >>> (p.language, p.jurisdiction)
        ('zh', 'CN')
    """

    id: str
    title: str = ""
    abstract: str = ""
    claims: list[str] = field(default_factory=list)
    description: str | None = None
    priority_date: dt.date | None = None
    filing_date: dt.date | None = None
    publication_date: dt.date | None = None
    codes: list[str] = field(default_factory=list)
    applicants: list[str] = field(default_factory=list)
    language: str = ""
    jurisdiction: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise InputError("missing id (the publication number)", field="id")
        self.id = self.id.strip()
        for name in ("title", "abstract", "language", "jurisdiction"):
            value = getattr(self, name) or ""
            if not isinstance(value, str):
                raise InputError(f"{name} must be a string", field=name)
            setattr(self, name, value.strip())
        if self.description is not None and not isinstance(self.description, str):
            raise InputError("description must be a string", field="description")
        self.description = (self.description or "").strip() or None
        for name in LIST_TARGETS:
            value = getattr(self, name)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InputError(f"{name} must be a list of strings", field=name)
        claims = (strip_claim_number(c.strip(), number) for number, c in enumerate(self.claims, start=1))
        self.claims = [c for c in claims if c]
        self.codes = list(dict.fromkeys(c.strip() for c in self.codes if c.strip()))
        self.applicants = list(dict.fromkeys(a.strip() for a in self.applicants if a.strip()))
        for name in DATE_TARGETS:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, dt.date) or isinstance(value, dt.datetime)):
                raise InputError(f"{name} must be a datetime.date", field=name)
        if not (self.title or self.abstract or self.claims or self.description):
            raise InputError(
                "no text: title, abstract, claims and description are all empty", field="abstract"
            )
        self.language = self.language.lower().replace("_", "-").split("-")[0]  # zh-CN -> zh
        self.language = self.language or detect_language(self._language_sample())
        self.jurisdiction = self.jurisdiction.upper() or jurisdiction_of(self.id)
        if not isinstance(self.metadata, dict):
            raise InputError("metadata must be a JSON object", field="metadata")
        try:  # the standard library's json: orjson would also accept dates, which come back as strings
            json.dumps(self.metadata, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InputError(f"metadata is not JSON-serialisable: {exc}", field="metadata") from None

    def _language_sample(self) -> str:
        if self.title or self.abstract:
            return f"{self.title}\n{self.abstract}"
        return "\n".join([*self.claims[:1], self.description or ""])[:4000]

    def fields(self) -> PassageFields:
        """The filterable fields every passage of this patent carries into the indexes."""
        return PassageFields(
            patent_id=self.id,
            language=self.language,
            jurisdiction=self.jurisdiction,
            codes=tuple(normalize_code(c) for c in self.codes),
            priority=date_to_int(self.priority_date),
            filing=date_to_int(self.filing_date),
            publication=date_to_int(self.publication_date),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (dates as ISO strings); `Patent.from_dict` reads it back."""
        out: dict[str, Any] = {name: getattr(self, name) for name in TARGETS}
        for name in DATE_TARGETS:
            out[name] = out[name].isoformat() if out[name] else None
        return out

    @classmethod
    def from_dict(cls, record: Mapping[str, Any], field_map: Mapping[str, str] | None = None) -> Patent:
        """Build from a loose record (see `patent_from_record`); raises InputError naming the field."""
        return patent_from_record(record, field_map)


# ---------------------------------------------------------------- loaders


@dataclass
class LoadReport:
    """What a loader did: patents yielded and (line number, reason) for every rejected line."""

    source: str = ""
    loaded: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)

    def summary(self) -> str:
        head = f"{self.source}: {self.loaded} loaded, {len(self.rejected)} rejected"
        return (
            head
            + "".join(f"\n  line {line}: {reason}" for line, reason in self.rejected[:20])
            + (f"\n  ... and {len(self.rejected) - 20} more" if len(self.rejected) > 20 else "")
        )


def _as_list(value: Any, name: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError:
                raise ValueError(f"{name} looks like JSON but does not parse") from None
        elif name == "claims":
            return split_claims(text)
        else:
            return [
                part.strip() for part in re.split(r"[;|\n]" if name == "applicants" else r"[;,|\n]", text)
            ]
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list or a string, got {type(value).__name__}")
    return [str(v) if isinstance(v, (int, float)) else v for v in value]


def patent_from_record(record: Mapping[str, Any], field_map: Mapping[str, str] | None = None) -> Patent:
    """A `Patent` from a loose record; raises InputError naming the bad field.

    `field_map` maps a Patent field to the record's name for it, e.g. {"id": "pub_no", "abstract":
    "abs"}; a mapped field reads only that name. Unmapped fields read their own name, then
    DEFAULT_ALIASES ("lang" -> language, "ipc"/"cpc" -> codes, ...). Dates take the forms of
    `parse_date`; list fields take a JSON list or a string (';'-separated, claims split on their
    numbering). Source fields nothing reads go into metadata (e.g. the shared data's `year_range`).

    Example:
        >>> patent = patent_from_record({"pub_no": "EP3456789B1", "title": "Battery pack",
        ...                              "ipc": "H01M 10/60; H01M 50/20", "year_range": "2015-2020"})
        >>> patent.id, patent.codes, patent.metadata
        ('EP3456789B1', ['H01M 10/60', 'H01M 50/20'], {'year_range': '2015-2020'})
    """
    field_map = dict(field_map or {})
    unknown = set(field_map) - set(TARGETS)
    if unknown:
        raise InputError(f"field_map targets {sorted(unknown)} are not Patent fields ({', '.join(TARGETS)})")
    used: set[str] = set()
    values: dict[str, Any] = {}
    for target in TARGETS:
        sources = [field_map[target]] if target in field_map else [target, *DEFAULT_ALIASES.get(target, ())]
        present = [s for s in sources if s in record and record[s] not in (None, "")]
        used.update(s for s in sources if s in record)
        if not present:
            continue
        try:
            if target in LIST_TARGETS:
                merged = present if target == "codes" else present[:1]  # only codes merge across aliases
                values[target] = [v for s in merged for v in _as_list(record[s], target)]
            elif target in DATE_TARGETS:
                values[target] = parse_date(record[present[0]])
            elif target == "metadata":
                meta = record[present[0]]
                values[target] = dict(orjson.loads(meta) if isinstance(meta, str) else meta)
            else:
                value = record[present[0]]
                if target == "id" and isinstance(value, int):
                    value = str(value)
                elif target == "description" and isinstance(value, list):  # a list of paragraphs
                    value = "\n\n".join(str(v) for v in value)
                values[target] = value
        except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
            raise InputError(f"bad {target}: {exc}", field=target) from None
    if "id" not in values:
        raise InputError("missing id (the publication number)", field="id")
    extra = {k: v for k, v in record.items() if k not in used and v not in (None, "")}
    if extra:
        values["metadata"] = {**extra, **values.get("metadata", {})}
    return Patent(**values)


class PatentStream(Iterator[Patent]):
    """Patents streamed from a file; `.report` fills in as you iterate.

    With strict=True the first bad line raises InputError("file:line: reason"); otherwise it is
    skipped and recorded in `.report.rejected`. Later lines with an already-seen id are yielded too
    (the store keeps the last).

    Example:
        >>> import pathlib, tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = pathlib.Path(folder, "patents.jsonl")
        ...     _ = path.write_text('{"id": "EP3456789B1", "title": "Battery pack"}\\n{"title": "no id"}\\n')
        ...     stream = load_patents(path, strict=False)
        ...     print([patent.id for patent in stream], stream.report.rejected)
        ['EP3456789B1'] [(2, 'missing id (the publication number)')]
    """

    unit = "line"  # what a rejection's position counts, in `PatentIndex.add`'s report

    def __init__(
        self,
        rows: Iterator[tuple[int, Mapping[str, Any] | str]],
        source: str,
        field_map: Mapping[str, str] | None,
        strict: bool,
    ) -> None:
        self.report = LoadReport(source=source)
        self._rows, self._field_map, self._strict = rows, field_map, strict

    def __next__(self) -> Patent:
        for line, row in self._rows:
            try:
                if isinstance(row, str):
                    raise InputError(row)
                patent = patent_from_record(row, self._field_map)
            except InputError as exc:
                if self._strict:
                    raise InputError(f"{self.report.source}:{line}: {exc}", field=exc.field) from None
                self.report.rejected.append((line, str(exc)))
                continue
            self.report.loaded += 1
            return patent
        raise StopIteration


def _open_binary(path: Path) -> io.BufferedIOBase:
    if not path.is_file():
        raise InputError(f"{path}: no such file", field="path")
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")  # type: ignore[return-value]


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    with _open_binary(path) as handle:
        for line_no, raw in enumerate(handle, start=1):
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                row = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                yield line_no, f"invalid JSON: {exc}"
                continue
            yield line_no, row if isinstance(row, dict) else f"not a JSON object but {type(row).__name__}"


def _csv_rows(path: Path, delimiter: str) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    csv.field_size_limit(64 * 1024 * 1024)  # descriptions can be long
    with _open_binary(path) as binary, io.TextIOWrapper(binary, encoding="utf-8-sig", newline="") as text:
        reader = csv.reader(text, delimiter=delimiter)
        try:
            header = [name.strip() for name in next(reader, [])]
            end_of_previous = reader.line_num  # a quoted cell may span lines: report where a record starts
            for cells in reader:
                line, end_of_previous = end_of_previous + 1, reader.line_num
                if not cells:
                    continue
                if len(cells) != len(header):
                    yield line, f"{len(cells)} cells but the header has {len(header)}"
                    continue
                yield line, {name: value for name, value in zip(header, cells, strict=True) if name}
        except (csv.Error, UnicodeDecodeError) as exc:
            # The reader cannot resynchronise after this, so even a lenient load stops here.
            raise InputError(f"{path}:{reader.line_num + 1}: unreadable CSV: {exc}") from None


def load_jsonl(
    path: str | Path, *, field_map: Mapping[str, str] | None = None, strict: bool = True
) -> PatentStream:
    """Stream patents from a JSON Lines file (optionally .gz), one object per line."""
    return PatentStream(_jsonl_rows(Path(path)), str(path), field_map, strict)


def load_csv(
    path: str | Path, *, field_map: Mapping[str, str] | None = None, strict: bool = True, delimiter: str = ","
) -> PatentStream:
    """Stream patents from a CSV file with a header row; list cells are JSON lists or ';'-separated."""
    return PatentStream(_csv_rows(Path(path), delimiter), str(path), field_map, strict)


LOADERS: dict[str, Callable[..., PatentStream]] = {
    ".jsonl": load_jsonl,
    ".json": load_jsonl,
    ".csv": load_csv,
}


def load_patents(
    path: str | Path, *, field_map: Mapping[str, str] | None = None, strict: bool = True
) -> PatentStream:
    """Stream patents from .jsonl/.csv (optionally .gz), choosing the loader by suffix."""
    path = Path(path)
    suffix = Path(path.stem).suffix if path.suffix == ".gz" else path.suffix
    if suffix == ".tsv":
        return load_csv(path, field_map=field_map, strict=strict, delimiter="\t")
    if suffix not in LOADERS:
        raise InputError(f"{path}: unknown corpus format {suffix!r} (use .jsonl or .csv)", field="path")
    return LOADERS[suffix](path, field_map=field_map, strict=strict)


def sample_corpus_path() -> Path:
    """The bundled sample corpus (about fifty patents written for patentrank's demos and tests)."""
    return Path(__file__).parent / "sample" / "patents.jsonl"
