"""What an importer reads from one patent document, and how it becomes a `Patent`."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element

from patentrank.claims import Claim
from patentrank.corpus import Patent

_WS = re.compile(r"\s+")
# Section, class, subclass, main group (leading zeros dropped), subgroup: 'B60R   7/06', 'A61B005/00'.
# An IPC-7 edition digit may lead ('7H 01F  27/14' in older EP documents): no symbol starts with one.
_CODE = re.compile(r"^\s*(?:\d\s*)?([A-HY])\s*(\d{2})\s*([A-Z])\s*0*(\d{1,4})\s*/\s*(\d{1,6})")
_DOC_NUMBER = re.compile(r"^([A-Z]*)0*(\d+)$")


def collapse(text: str | None) -> str:
    """Whitespace runs as one space, trimmed."""
    return _WS.sub(" ", text or "").strip()


def text_of(element: Element | None) -> str:
    """All the text inside `element` (tags dropped; comments and processing instructions are never
    in the tree), whitespace collapsed."""
    return collapse("".join(element.itertext())) if element is not None else ""


def paragraphs_of(element: Element | None, tags: Iterable[str] = ("p", "heading", "Paragraphs")) -> str:
    """Block-level children as lines (one paragraph a line), for descriptions and abstracts."""
    if element is None:
        return ""
    wanted = set(tags)
    lines = [text_of(e) for e in element.iter() if e.tag in wanted]
    lines = [line for line in lines if line]
    return "\n".join(lines) if lines else text_of(element)


def parse_compact_date(value: str | None) -> dt.date | None:
    """'20150106' -> date(2015, 1, 6); blank, '00000000' or an impossible date -> None."""
    digits = (value or "").strip().replace("-", "")
    if len(digits) != 8 or not digits.isdigit():
        return None
    try:
        return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


def normalize_classification(text: str | None) -> str | None:
    """IPC/CPC written as 'H01M10/0525' from any office's spacing ('H01M  10/0525   20100101AFI...',
    'A61B005/00'); None when the text is not a classification symbol.

    Example:
        >>> normalize_classification("B60R   7/06        20060101AFI20051220RMEP")
        'B60R7/06'
    """
    match = _CODE.match(text or "")
    if not match:
        return None
    section, klass, subclass, group, subgroup = match.groups()
    return f"{section}{klass}{subclass}{int(group)}/{subgroup}"


def code_from_parts(section: str, klass: str, subclass: str, group: str, subgroup: str) -> str | None:
    """A symbol from the split form USPTO and CNIPA use (section, class, subclass, groups)."""
    return normalize_classification(f"{section}{klass}{subclass}{group}/{subgroup}")


def normalize_doc_number(number: str) -> str:
    """Leading zeros of the numeric part dropped, letter prefixes kept: '08926509' -> '8926509',
    'D0656308' -> 'D656308', 'RE045123' -> 'RE45123'; other forms are returned unchanged."""
    number = number.strip().replace(" ", "")
    match = _DOC_NUMBER.match(number)
    return f"{match.group(1)}{int(match.group(2))}" if match else number


def numbered_claims(elements: Iterable[Element]) -> list[Claim]:
    """Claims from elements whose `num` attribute holds the claim number ("c-en-0001", "3");
    an element without one takes its position."""
    claims = []
    for position, claim in enumerate(elements, start=1):
        num = "".join(ch for ch in claim.get("num", "") if ch.isdigit())
        claims.append(Claim.parse(text_of(claim), int(num) if num else position))
    return claims


def unique(values: Iterable[str | None]) -> list[str]:
    """Non-empty values in first-seen order."""
    return list(dict.fromkeys(v for v in values if v))


@dataclass
class PatentRecord:
    """One publication as its bulk format gives it, with every language kept apart.

    `publication_number` is country + doc-number + kind exactly as in the XML (US grants keep their
    leading zero: 'US08926509B2'); `publication_number_normalized` drops leading zeros of the number
    ('US8926509B2', 'USD656308S1') and is the id a `Patent` gets.
    """

    format: str
    country: str
    doc_number: str
    kind: str
    language: str | None = None
    titles: dict[str, str] = field(default_factory=dict)
    abstracts: dict[str, str] = field(default_factory=dict)
    claims: dict[str, list[Claim]] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    publication_date: dt.date | None = None
    filing_date: dt.date | None = None
    priority_dates: list[dt.date] = field(default_factory=list)
    us_provisional_dates: list[dt.date] = field(default_factory=list)
    cpc: list[str] = field(default_factory=list)
    cpc_combination_sets: list[list[str]] = field(default_factory=list)
    ipc: list[str] = field(default_factory=list)
    applicants: list[str] = field(default_factory=list)
    assignees: list[str] = field(default_factory=list)
    applicants_docdb: list[str] = field(default_factory=list)
    inventors: list[str] = field(default_factory=list)
    family_id: str | None = None
    application_number: str | None = None
    application_type: str | None = None
    dtd_version: str | None = None
    language_of_filing: str | None = None
    xml_repaired: bool = False  # the XML parsed only after escaping a bare '&' or stray '<'

    @property
    def publication_number(self) -> str:
        return f"{self.country}{self.doc_number}{self.kind}"

    @property
    def publication_number_normalized(self) -> str:
        return f"{self.country}{normalize_doc_number(self.doc_number)}{self.kind}"

    @property
    def priority_date(self) -> dt.date | None:
        """The earliest explicit priority claim (US provisionals and continuations do not count)."""
        return min(self.priority_dates) if self.priority_dates else None

    def pick_language(self, mapping: dict[str, Any], language: str | None = None) -> str | None:
        """The language to use from `mapping`: the one asked for, else English, else the document's
        own, else the first present."""
        for candidate in (language, "en", self.language):
            if candidate and candidate in mapping:
                return candidate
        return next(iter(mapping), None)

    @property
    def title(self) -> str:
        lang = self.pick_language(self.titles)
        return self.titles[lang] if lang else ""

    @property
    def abstract(self) -> str | None:
        lang = self.pick_language(self.abstracts)
        return self.abstracts[lang] if lang else None

    def claims_in(self, language: str | None = None) -> list[Claim]:
        lang = self.pick_language(self.claims, language)
        return self.claims[lang] if lang else []

    def to_patent(self, language: str | None = None) -> Patent:
        """The `Patent` to index, in `language` where the document has it (EP: en/de/fr), else
        English, else the document's language. Claims keep their numbers (claim N is `claims[N-1]`,
        cancelled ones included as '(canceled)') so dependent claims still point at the right one;
        the rest of the record goes into `metadata`."""
        claims = self.claims_in(language)
        lang = self.pick_language(self.claims, language) if claims else None
        lang = (
            lang or self.pick_language(self.abstracts, language) or self.pick_language(self.titles, language)
        )
        lang = lang or self.language or ""
        title = self.titles.get(lang) or self.title
        abstract = self.abstracts.get(lang) or self.abstract or ""
        description = self.descriptions.get(lang) or (next(iter(self.descriptions.values()), None))
        metadata: dict[str, Any] = {
            "source_format": self.format,
            "publication_number_original": self.publication_number,
            "kind": self.kind,
            "ipc": self.ipc,
            "cpc": self.cpc,
        }
        optional: dict[str, Any] = {
            "family_id": self.family_id,
            "assignees": self.assignees,
            "applicants_docdb": self.applicants_docdb,
            "inventors": self.inventors,
            "application_number": self.application_number,
            "application_type": self.application_type,
            "dtd_version": self.dtd_version,
            "language_of_filing": self.language_of_filing,
            "document_language": self.language,
            "us_provisional_dates": [d.isoformat() for d in self.us_provisional_dates],
            "cpc_combination_sets": self.cpc_combination_sets,
            "titles": self.titles if len(self.titles) > 1 else {},
            "abstracts": self.abstracts if len(self.abstracts) > 1 else {},
            "claims_languages": list(self.claims) if len(self.claims) > 1 else [],
            "claims_info": [c.info() for c in claims],
            "cancelled_claims": [c.number for c in claims if c.cancelled],
            "xml_repaired": self.xml_repaired,
        }
        metadata.update({k: v for k, v in optional.items() if v})
        return Patent(
            id=self.publication_number_normalized,
            title=title,
            abstract=abstract,
            claims=[c.text or "(no text)" for c in claims],
            description=description,
            priority_date=self.priority_date,
            filing_date=self.filing_date,
            publication_date=self.publication_date,
            codes=unique([*self.cpc, *self.ipc]),
            applicants=self.applicants or self.applicants_docdb or self.assignees,
            language=lang,
            jurisdiction=self.country,
            metadata=metadata,
        )

    def summary(self) -> dict[str, Any]:
        """The record in the shape of `../shared/data/patent_formats/expected.jsonl` (for tests and
        `patentrank index --dry-run`-style inspection)."""
        claims = self.claims_in()
        first = claims[0].text if claims else None
        return {
            "format": self.format,
            "publication_number": self.publication_number,
            "publication_number_normalized": self.publication_number_normalized,
            "title": self.title,
            "abstract_prefix": collapse(self.abstract)[:60] if self.abstract else None,
            "n_claims": len(claims) if self.claims else None,
            "first_claim_prefix": first[:60] if first is not None else None,
            "publication_date": _iso(self.publication_date),
            "filing_date": _iso(self.filing_date),
            "priority_date": _iso(self.priority_date),
            "cpc": self.cpc,
            "ipc": self.ipc,
            "applicants": self.applicants,
            "language": self.language,
            "dtd_version": self.dtd_version,
            "assignees": self.assignees,
            "us_provisional_dates": [d.isoformat() for d in self.us_provisional_dates],
            "cpc_combination_sets": self.cpc_combination_sets,
            "titles": self.titles,
            "claims_languages": list(self.claims),
            "applicants_docdb": self.applicants_docdb,
            "language_of_filing": self.language_of_filing,
            "family_id": self.family_id,
        }


def _iso(value: dt.date | None) -> str | None:
    return value.isoformat() if value else None
