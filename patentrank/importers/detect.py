"""Which bulk format a file is, from its first bytes (the root element's name), and opening it
whether plain, gzipped or zipped as downloaded."""

from __future__ import annotations

import gzip
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from patentrank.errors import InputError

SNIFF_BYTES = 64 * 1024
# Format name -> root element names (namespace prefix dropped) that announce it.
FORMAT_ROOTS: dict[str, tuple[str, ...]] = {
    "uspto": ("us-patent-grant", "us-patent-application", "sequence-cwu"),  # weekly files interleave listings
    "ep": ("ep-patent-document",),
    "docdb": ("exchange-documents", "exchange-document"),
    "cnipa": ("PatentDocumentAndRelated",),
}
XML_FORMATS = tuple(FORMAT_ROOTS)
_ROOT = re.compile(rb"<(?![?!])(?:[\w.-]+:)?([\w.-]+)")
XML_SUFFIXES = (".xml", ".zip", ".xml.gz", ".sgm")


def is_xml_path(path: Path) -> bool:
    """True for names an importer reads: .xml, .XML, .zip, .xml.gz."""
    name = path.name.lower()
    return name.endswith(XML_SUFFIXES)


def sniff_format(head: bytes) -> str | None:
    """The format whose root element opens `head` (the first bytes of a document), else None.

    Example:
        >>> sniff_format(b'<?xml version="1.0"?><!DOCTYPE x []><us-patent-grant lang="EN">')
        'uspto'
    """
    head = re.sub(rb"<!--.*?-->", b"", head, flags=re.S)
    head = re.sub(rb"<!DOCTYPE[^\[>]*(\[.*?\])?\s*>", b"", head, count=1, flags=re.S)
    match = _ROOT.search(head)
    if not match:
        return None
    root = match.group(1).decode("ascii", "replace")
    return next((name for name, roots in FORMAT_ROOTS.items() if root in roots), None)


@contextmanager
def open_bulk(path: Path) -> Iterator[tuple[BinaryIO, int]]:
    """A binary stream of the XML inside `path` (a .zip's first .xml member, a .gz's content) and
    the number of bytes the progress bar counts (the file size on disk for .gz)."""
    if not path.is_file():
        raise InputError(f"{path}: no such file", field="path")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = [
                m for m in archive.infolist() if m.filename.lower().endswith(".xml") and not m.is_dir()
            ]
            if not members:
                raise InputError(f"{path}: the zip archive holds no .xml file", field="path")
            if len(members) > 1:
                raise InputError(
                    f"{path}: the zip archive holds {len(members)} .xml files; unpack it and index them",
                    field="path",
                )
            with archive.open(members[0]) as handle:
                yield handle, members[0].file_size  # type: ignore[misc]
        return
    with path.open("rb") as raw:
        if raw.read(2) == b"\x1f\x8b":
            raw.seek(0)
            with gzip.open(raw, "rb") as handle:
                yield handle, 0  # type: ignore[misc]
            return
        raw.seek(0)
        yield raw, path.stat().st_size  # type: ignore[misc]


def detect_format(path: Path) -> str:
    """The bulk format of `path` ('uspto', 'ep', 'docdb' or 'cnipa'); InputError when it is not one."""
    with open_bulk(path) as (handle, _):
        head = handle.read(SNIFF_BYTES)
    found = sniff_format(head.lstrip(b"\xef\xbb\xbf \t\r\n"))
    if found is None:
        raise InputError(
            f"{path}: not a patent XML format patentrank reads (USPTO ICE v4, EPO publication server, "
            f"DOCDB exchange, CNIPA); give --format to force one of {', '.join(XML_FORMATS)}",
            field="format",
        )
    return found
