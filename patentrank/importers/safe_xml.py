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
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO
from xml.etree.ElementTree import Element
from xml.parsers import expat

from patentrank.importers.docdb_entities import DOCDB_ENTITIES

CHUNK_BYTES = 1 << 20
MAX_REPAIR_BYTES = 64 << 20  # a standalone document is kept for a repair attempt up to this size
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
    repaired: bool = False  # parsed only after escaping a bare '&' or a stray '<'


def resolve_named_entity(name: str) -> str | None:
    """The character(s) for an entity only a DTD defines, as DOCDB's `docdb-entities.dtd` (ISO 8879
    sets and DOCDB's capitals) and then HTML5 define it; None when neither knows the name.

    Example:
        >>> resolve_named_entity("SACUTE"), resolve_named_entity("EACUTE"), resolve_named_entity("nope")
        ('Ś', 'é', None)
    """
    value = DOCDB_ENTITIES.get(name)
    return value if value is not None else html.entities.html5.get(name + ";")


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
        # As if every document had an external DTD (never loaded: parameter entities are off), so an
        # entity only a DTD defines (`&SACUTE;` in a DOCDB fragment with no DOCTYPE) reaches
        # `_skipped` instead of failing the document.
        p.UseForeignDTD(True)

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
    """Feeds one document at a time to a fresh parser; a failed document is skipped to its end.

    Standalone documents (not container records) are also kept as bytes until they end, so one that
    is not well-formed only because of a bare `&` or a stray `<` in its text (real EPO documents
    have both) can be parsed once more after escaping those; it is then marked `repaired`.
    """

    def __init__(self, record_tags: frozenset[str]) -> None:
        self.record_tags = record_tags
        self.index = 0
        self.builder: _TreeBuilder | None = None
        self.failed = False
        self.chunks: list[bytes] = []
        self.pending: str | None = None  # why the kept document failed, until a repair is tried
        self.kept = 0

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
        if self.builder is None and not self.failed:
            data = data.lstrip(_BLANK)  # a declaration must come first: drop BOM/spaces before it
            if not data:
                return
            self.builder = _TreeBuilder(self.record_tags)
        if not self.record_tags and self.kept + len(data) <= MAX_REPAIR_BYTES:
            self.chunks.append(data)
            self.kept += len(data)
        elif self.chunks:  # too big to keep: such a document is rejected rather than repaired
            self.chunks, self.kept = [], MAX_REPAIR_BYTES + 1
        if self.failed:
            return
        assert self.builder is not None
        try:
            self.builder.parser.Parse(data, final)
        except ForbiddenXml as exc:
            self.builder.done.clear()
            self.chunks = []
            yield from self._fail(str(exc))
            return
        except expat.ExpatError as exc:
            reason = f"malformed XML: {expat.ErrorString(exc.code)} at line {exc.lineno}, column {exc.offset}"
            if self.record_tags:
                yield from self._fail(reason)
            else:
                self.failed, self.pending = True, reason
            return
        yield from self._take()

    def end_document(self) -> Iterator[RawDocument]:
        if self.builder is not None and not self.failed:
            yield from self.feed(b"", True)
        if self.pending is not None:
            if self.kept <= MAX_REPAIR_BYTES:
                yield self._repaired(b"".join(self.chunks), self.pending)
            else:
                yield RawDocument(self.index, None, self.pending)
            self.index += 1
        self.builder, self.failed, self.chunks, self.pending, self.kept = None, False, [], None, 0

    def _repaired(self, data: bytes, reason: str) -> RawDocument:
        fixed = _STRAY_LT.sub(b"&lt;", _BARE_AMP.sub(b"&amp;", data))
        if fixed != data:
            builder = _TreeBuilder(self.record_tags)
            try:
                builder.parser.Parse(fixed, True)
            except (ForbiddenXml, expat.ExpatError):
                pass
            else:
                if len(builder.done) == 1:
                    return RawDocument(self.index, builder.done[0], repaired=True)
        return RawDocument(self.index, None, reason)


# A bare '&' (not a character or entity reference) and a '<' that opens no tag (another '<' comes
# before any '>'): the two slips that make real office documents not well-formed.
_BARE_AMP = re.compile(rb"&(?!#[0-9]+;|#x[0-9A-Fa-f]+;|[A-Za-z_][\w.\-]*;)")
_STRAY_LT = re.compile(rb"<(?![!?/])(?=[^<>]*<)")
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
