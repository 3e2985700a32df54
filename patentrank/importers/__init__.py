"""Importers for the bulk formats patent offices publish: USPTO ICE full text (grants and
applications, v4.0 to v4.7, weekly concatenated files and their .zip), EPO publication-server
documents, EPO DOCDB exchange files and CNIPA XML.

Example:
    >>> stream = load_xml_patents("ipg250107.zip")            # doctest: +SKIP
    >>> for patent in stream: ...                             # doctest: +SKIP
    >>> stream.report.rejected   # [(document index, reason), ...]   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from xml.etree.ElementTree import Element

from patentrank.corpus import LoadReport, Patent
from patentrank.errors import InputError
from patentrank.importers import cnipa, docdb, epo, uspto
from patentrank.importers.detect import XML_FORMATS, detect_format, is_xml_path, open_bulk
from patentrank.importers.record import PatentRecord
from patentrank.importers.safe_xml import iter_documents

__all__ = ["XML_FORMATS", "PatentRecord", "XmlPatentStream", "detect_format", "is_xml_path"]
__all__ += ["iter_records", "load_xml_patents", "parse_element", "xml_size"]

_PARSERS: dict[str, tuple[str, Callable[[Element], PatentRecord]]] = {}
for _format, _module in (("uspto", uspto), ("ep", epo), ("docdb", docdb), ("cnipa", cnipa)):
    for _root in _module.ROOTS:
        _PARSERS[_root] = (_format, _module.parse)


# Documents bulk files carry besides patents: USPTO weekly grant files interleave sequence listings.
NOT_PATENTS = frozenset({"sequence-cwu"})


def parse_element(root: Element, expected_format: str | None = None) -> PatentRecord:
    """The record of one document element; ValueError says why it cannot be read."""
    if root.tag not in _PARSERS:
        raise ValueError(f"unsupported root element <{root.tag}>")
    fmt, parse = _PARSERS[root.tag]
    if expected_format and fmt != expected_format:
        raise ValueError(f"<{root.tag}> is a {fmt} document, not {expected_format} (--format)")
    return parse(root)


def iter_records(
    path: str | Path, fmt: str | None = None, on_bytes: Callable[[int], object] | None = None
) -> Iterator[tuple[int, PatentRecord | None, str | None]]:
    """(document index, record, None) or (document index, None, reason) for each document of `path`;
    (document index, None, None) for a document that is not a patent (`NOT_PATENTS`)."""
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt not in XML_FORMATS:
        raise InputError(f"unknown format {fmt!r}: use one of {', '.join(XML_FORMATS)}", field="format")
    records = frozenset(docdb.ROOTS) if fmt == "docdb" else frozenset()
    with open_bulk(path) as (handle, _):
        for raw in iter_documents(handle, records, on_bytes=on_bytes):
            if raw.root is None:
                yield raw.index, None, raw.error
                continue
            if raw.root.tag in NOT_PATENTS:
                yield raw.index, None, None  # e.g. a weekly file's sequence listings: skipped, not bad
                continue
            try:
                record = parse_element(raw.root, fmt)
                record.xml_repaired = raw.repaired
                yield raw.index, record, None
            except (ValueError, TypeError, AttributeError) as exc:
                yield raw.index, None, str(exc) or type(exc).__name__


class XmlPatentStream(Iterator[Patent]):
    """Patents from a bulk XML file; `.report.rejected` lists (document index, reason) for every
    document that was skipped. With strict=True the first bad document raises InputError naming the
    file and the document."""

    unit = "document"  # what a rejection's position counts, in `PatentIndex.add`'s report

    def __init__(
        self,
        path: Path,
        fmt: str | None,
        strict: bool,
        language: str | None,
        on_bytes: Callable[[int], object] | None,
    ) -> None:
        self.path = path
        self.format = fmt or detect_format(path)
        self.report = LoadReport(source=str(path))
        self.skipped = 0  # documents that are not patents (sequence listings)
        self._records = iter_records(path, self.format, on_bytes)
        self._strict, self._language = strict, language

    def __next__(self) -> Patent:
        for index, record, error in self._records:
            if record is None and error is None:
                self.skipped += 1
                continue
            if record is not None:
                try:
                    patent = record.to_patent(self._language)
                except InputError as exc:
                    error = f"{record.publication_number}: {exc}"
                else:
                    self.report.loaded += 1
                    return patent
            if self._strict:
                raise InputError(f"{self.path}: document {index}: {error}", field="path")
            self.report.rejected.append((index, error or "unreadable"))
        raise StopIteration


def xml_size(path: str | Path) -> int | None:
    """Bytes the progress bar will see for `path` (None when unknown, e.g. gzip)."""
    try:
        with open_bulk(Path(path)) as (_, size):
            return size or None
    except (InputError, OSError):
        return None


def load_xml_patents(
    path: str | Path,
    *,
    format: str | None = None,
    strict: bool = False,
    language: str | None = None,
    on_bytes: Callable[[int], object] | None = None,
) -> XmlPatentStream:
    """Stream `Patent`s from a bulk XML file (format detected unless given); `language` picks which
    of an EP document's languages is indexed (default English, else the document's own)."""
    return XmlPatentStream(Path(path), format, strict, language, on_bytes)
