"""Streaming, entity-safe XML parsing of patent bulk files.

Bulk files are either many complete XML documents written one after another (USPTO weekly files:
each document repeats `<?xml ...?>` and its DOCTYPE) or one container root whose children are the
records (DOCDB `exch:exchange-documents`). `iter_documents` handles both in bounded memory: bytes are
fed to expat in chunks, and a record is handed out (and dropped from the tree) as soon as it closes.

Safety follows defusedxml's rules, applied to expat directly so that DTD-only character entities
(DOCDB's `&SACUTE;`) can still be mapped: no external DTD, parameter entity or external entity is
ever loaded, and any parsed entity declaration (the billion-laughs and XXE vectors) rejects the
document. Unparsed NDATA entities (image file names in older USPTO DOCTYPEs) are harmless and allowed.
Namespace prefixes are dropped from element names, so an undeclared `exch:` prefix is not an error.
"""

from __future__ import annotations

import html.entities
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO
from xml.etree.ElementTree import Element
from xml.parsers import expat

CHUNK_BYTES = 1 << 20
_XML_DECL = b"<?xml"
_BOM = b"\xef\xbb\xbf"


class ForbiddenXml(ValueError):
    """The document declares an entity or asks for an external resource: it is refused, not parsed."""


@dataclass
class RawDocument:
    """One record: its 0-based position in the file, its element tree, or why it could not be read."""

    index: int
    root: Element | None
    error: str | None = None


def resolve_named_entity(name: str) -> str | None:
    """The character(s) for an entity only a DTD defines: HTML/ISO names ('Sacute' -> 'Ś'); an
    all-capitals DOCDB name falls back to the capitalised ISO name ('SACUTE' -> 'Ś').

    Example:
        >>> resolve_named_entity("SACUTE"), resolve_named_entity("eacute"), resolve_named_entity("nope")
        ('Ś', 'é', None)
    """
    table = html.entities.html5
    for candidate in (name, name.capitalize(), name.lower()):
        value = table.get(candidate + ";")
        if value is not None:
            return value
    return None


def local_name(name: str) -> str:
    """'exch:exchange-document' -> 'exchange-document' (prefixes need no declaration here)."""
    return name.rpartition(":")[2]


class _TreeBuilder:
    """Expat callbacks building ElementTree elements; closed records collect in `self.done`."""

    def __init__(self, record_tags: frozenset[str]) -> None:
        self.record_tags = record_tags
        self.stack: list[Element] = []
        self.done: list[Element] = []
        self.emitted = 0
        self.parser = expat.ParserCreate()
        p = self.parser
        p.buffer_text = True
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._data
        p.SkippedEntityHandler = self._skipped
        p.EntityDeclHandler = self._entity_decl
        p.ExternalEntityRefHandler = self._external

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        element = Element(local_name(name), attrs)
        if self.stack:
            self.stack[-1].append(element)
        self.stack.append(element)

    def _end(self, name: str) -> None:
        element = self.stack.pop()
        if not self.stack:  # the document's root: a record itself unless it was a container
            if element.tag in self.record_tags or not self.emitted:
                self.done.append(element)
        elif len(self.stack) == 1 and element.tag in self.record_tags:
            self.stack[-1].remove(element)  # stream: a container never holds more than one record
            self.done.append(element)
            self.emitted += 1

    def _data(self, text: str) -> None:
        if not self.stack:
            return
        current = self.stack[-1]
        if len(current):
            last = current[-1]
            last.tail = (last.tail or "") + text
        else:
            current.text = (current.text or "") + text

    def _skipped(self, name: str, is_parameter_entity: bool) -> None:
        if is_parameter_entity:
            raise ForbiddenXml(f"parameter entity %{name}; is not expanded")
        value = resolve_named_entity(name)
        self._data(value if value is not None else f"&{name};")

    def _entity_decl(
        self,
        name: str,
        is_parameter_entity: bool,
        value: str | None,
        base: str | None,
        system_id: str | None,
        public_id: str | None,
        notation_name: str | None,
    ) -> None:
        if notation_name is not None:
            return  # NDATA: an unparsed file name, never expanded into text
        where = f" (SYSTEM {system_id!r})" if system_id else ""
        kind = "parameter entity" if is_parameter_entity else "entity"
        raise ForbiddenXml(f"the DOCTYPE declares {kind} {name!r}{where}; entity declarations are refused")

    def _external(self, context: str, base: str | None, system_id: str | None, public_id: str | None) -> int:
        raise ForbiddenXml(f"external entity {system_id!r} is never fetched")


class _Splitter:
    """Feeds one document at a time to a fresh parser; a failed document is skipped to its end."""

    def __init__(self, record_tags: frozenset[str]) -> None:
        self.record_tags = record_tags
        self.index = 0
        self.builder: _TreeBuilder | None = None
        self.failed = False

    def _take(self) -> Iterator[RawDocument]:
        assert self.builder is not None
        done, self.builder.done = self.builder.done, []
        for element in done:
            yield RawDocument(self.index, element)
            self.index += 1

    def _fail(self, reason: str) -> Iterator[RawDocument]:
        self.failed = True
        if self.builder is not None:
            yield from self._take()
        yield RawDocument(self.index, None, reason)
        self.index += 1

    def feed(self, data: bytes, final: bool = False) -> Iterator[RawDocument]:
        if self.failed:
            return
        if self.builder is None:
            data = data.lstrip(_BLANK)  # a declaration must come first: drop BOM/spaces before it
            if not data:
                return
            self.builder = _TreeBuilder(self.record_tags)
        try:
            self.builder.parser.Parse(data, final)
        except ForbiddenXml as exc:
            self.builder.done.clear()
            yield from self._fail(str(exc))
            return
        except expat.ExpatError as exc:
            reason = f"malformed XML: {expat.ErrorString(exc.code)} at line {exc.lineno}, column {exc.offset}"
            yield from self._fail(reason)
            return
        yield from self._take()

    def end_document(self) -> Iterator[RawDocument]:
        if self.builder is not None and not self.failed:
            yield from self.feed(b"", True)
        self.builder, self.failed = None, False


_BLANK = b" \t\r\n" + _BOM


def iter_documents(
    stream: BinaryIO,
    record_tags: frozenset[str] = frozenset(),
    on_bytes: Callable[[int], object] | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[RawDocument]:
    """Each record of a bulk file, in order; a broken document is yielded with `error` and skipped.

    `record_tags` names the elements that are records when they are children of a container root
    (e.g. {'exchange-document'}); otherwise each document's root is the record. A new `<?xml`
    declaration starts a new document, so concatenated weekly files need no pre-splitting.
    `on_bytes(n)` is called with the bytes consumed, for a progress bar.
    """
    splitter = _Splitter(record_tags)
    keep = len(_XML_DECL) - 1  # a declaration split across two chunks is found in the next round
    carry = b""
    while True:
        chunk = stream.read(chunk_bytes)
        if on_bytes is not None and chunk:
            on_bytes(len(chunk))
        data = carry + chunk
        final = not chunk
        search_end = len(data) if final else len(data) - keep
        start, search_from = 0, 0
        while True:
            found = data.find(_XML_DECL, search_from)
            if found == -1 or (not final and found >= search_end):
                break
            head = data[start:found]
            yield from splitter.feed(head.removesuffix(_BOM))
            if splitter.builder is not None or splitter.failed:
                yield from splitter.end_document()
            start, search_from = found, found + len(_XML_DECL)
        if final:
            yield from splitter.feed(data[start:])
            yield from splitter.end_document()
            return
        if search_end > start:
            yield from splitter.feed(data[start:search_end])
            carry = data[search_end:]
        else:
            carry = data[start:]
