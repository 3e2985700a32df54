"""Search filters and the per-passage fields they test, with their SQL and Milvus translations."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Literal

DateField = Literal["priority", "filing", "publication"]
DATE_FIELDS: tuple[DateField, ...] = ("priority", "filing", "publication")


def normalize_code(code: str) -> str:
    """IPC/CPC codes compared without spaces and in upper case: 'h04l 9/32' -> 'H04L9/32'."""
    return re.sub(r"\s+", "", code).upper()


def date_to_int(value: dt.date | str | int | None) -> int:
    """YYYYMMDD as an int (0 when unknown), the form stores index and compare.

    Example:
        >>> date_to_int("2019-03-01"), date_to_int(dt.date(2019, 3, 1)), date_to_int(None)
        (20190301, 20190301, 0)
    """
    if value is None or value == "" or value == 0:
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        value = (
            dt.date.fromisoformat(value[:10]) if "-" in value else dt.datetime.strptime(value[:8], "%Y%m%d")
        )
    return value.year * 10000 + value.month * 100 + value.day


@dataclass(frozen=True, slots=True)
class PassageFields:
    """What a vector or lexical store keeps beside each passage so that filters run inside it.

    `Patent.fields()` builds them from a patent; every passage of that patent carries the same.

    Example:
        >>> fields = PassageFields("US2021118123A1", language="en", codes=("h04l 9/32",), priority=20190301)
        >>> fields.codes_text
        '|H04L9/32|'
    """

    patent_id: str
    language: str = ""
    jurisdiction: str = ""
    codes: tuple[str, ...] = ()
    priority: int = 0  # YYYYMMDD, 0 = unknown
    filing: int = 0
    publication: int = 0

    @property
    def codes_text(self) -> str:
        """Codes as '|A01B1/00|H04L9/32|' so a prefix test is one LIKE '%|H04L%' in SQL or Milvus."""
        return "|" + "|".join(normalize_code(c) for c in self.codes) + "|" if self.codes else ""


@dataclass(slots=True)
class SearchFilter:
    """Restrictions that patent searches need; every set field must hold (AND), lists are OR.

    A date filter excludes passages whose patent lacks that date: an undated document cannot be
    shown to be prior art.

    Example:
        >>> flt = SearchFilter(before="2020-01-01", code_prefixes=["H04L"], languages=["en", "zh"])
        >>> flt.matches(PassageFields("US2", language="en", codes=("H04L9/32",), priority=20190301))
        True
        >>> flt.matches(PassageFields("CN1", language="zh", priority=20190301))  # no H04L code
        False
        >>> flt.to_milvus()
        '(priority > 0 and priority < 20200101) and (codes like "%|H04L%") and language in ["en", "zh"]'
    """

    date_field: DateField = "priority"
    before: dt.date | str | None = None  # strictly before
    after: dt.date | str | None = None  # on or after
    code_prefixes: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    jurisdictions: list[str] = field(default_factory=list)
    exclude_patents: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.date_field not in DATE_FIELDS:
            raise ValueError(f"date_field must be one of {', '.join(DATE_FIELDS)}")
        date_to_int(self.before)  # fail early on a malformed date
        date_to_int(self.after)

    def is_empty(self) -> bool:
        return not (
            self.before
            or self.after
            or self.code_prefixes
            or self.languages
            or self.jurisdictions
            or self.exclude_patents
        )

    def matches(self, f: PassageFields) -> bool:
        """The reference semantics, in Python; SQL and Milvus translations must agree with it."""
        value = getattr(f, self.date_field)
        if self.before and not (value and value < date_to_int(self.before)):
            return False
        if self.after and not (value and value >= date_to_int(self.after)):
            return False
        if self.code_prefixes and not any(
            f"|{normalize_code(p)}" in f.codes_text for p in self.code_prefixes
        ):
            return False
        if self.languages and f.language not in self.languages:
            return False
        if self.jurisdictions and f.jurisdiction not in [j.upper() for j in self.jurisdictions]:
            return False
        return f.patent_id not in self.exclude_patents

    def to_sql(self) -> tuple[str, list[object]]:
        """A WHERE clause over columns patent_id, language, jurisdiction, codes, priority, filing,
        publication (as `PassageFields` names them), with its parameters; '1=1' when empty.

        Example:
            >>> SearchFilter(before="2020-01-01", languages=["zh"]).to_sql()
            ('(priority > 0 AND priority < ?) AND language IN (?)', [20200101, 'zh'])
            >>> SearchFilter().to_sql()
            ('1=1', [])
        """
        clauses: list[str] = []
        params: list[object] = []
        if self.before:
            clauses.append(f"({self.date_field} > 0 AND {self.date_field} < ?)")
            params.append(date_to_int(self.before))
        if self.after:
            clauses.append(f"({self.date_field} > 0 AND {self.date_field} >= ?)")
            params.append(date_to_int(self.after))
        if self.code_prefixes:
            clauses.append("(" + " OR ".join("codes LIKE ? ESCAPE '\\'" for _ in self.code_prefixes) + ")")
            params.extend(f"%|{_escape_like(normalize_code(p))}%" for p in self.code_prefixes)
        for column, values in (
            ("language", self.languages),
            ("jurisdiction", [j.upper() for j in self.jurisdictions]),
        ):
            if values:
                clauses.append(f"{column} IN ({','.join('?' * len(values))})")
                params.extend(values)
        if self.exclude_patents:
            clauses.append(f"patent_id NOT IN ({','.join('?' * len(self.exclude_patents))})")
            params.extend(self.exclude_patents)
        return (" AND ".join(clauses) or "1=1"), params

    def to_milvus(self) -> str:
        """The same test as a Milvus boolean expression over the same field names; '' when empty."""
        clauses: list[str] = []
        if self.before:
            clauses.append(f"({self.date_field} > 0 and {self.date_field} < {date_to_int(self.before)})")
        if self.after:
            clauses.append(f"({self.date_field} > 0 and {self.date_field} >= {date_to_int(self.after)})")
        if self.code_prefixes:
            likes = [f'codes like "%|{_quote(normalize_code(p))}%"' for p in self.code_prefixes]
            clauses.append("(" + " or ".join(likes) + ")")
        if self.languages:
            clauses.append(f"language in {_milvus_list(self.languages)}")
        if self.jurisdictions:
            clauses.append(f"jurisdiction in {_milvus_list([j.upper() for j in self.jurisdictions])}")
        if self.exclude_patents:
            clauses.append(f"patent_id not in {_milvus_list(self.exclude_patents)}")
        return " and ".join(clauses)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _milvus_list(values: list[str]) -> str:
    return "[" + ", ".join(f'"{_quote(v)}"' for v in values) + "]"
