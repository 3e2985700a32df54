"""The tantivy schema of the lexical index, and `SearchFilter` translated into tantivy query clauses."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import tantivy

from patentrank.index.filters import SearchFilter, date_to_int, normalize_code

HAS_CODES = "|"  # indexed for every passage with a code: what the empty prefix "" matches


def _schema(exact_lengths: bool = True) -> tantivy.Schema:
    """The lexical index's fields; format 2 indexes lack `length` (each passage's exact token count)."""
    builder = tantivy.SchemaBuilder()
    builder.add_integer_field(
        "pid", indexed=True, fast=True
    )  # passage id: deletes by term, hits by fast field
    # Pre-analysed tokens joined by spaces; "whitespace" is one of tantivy's built-in tokenizers, so
    # nothing has to be registered again when the index is reopened. Frequencies, no positions.
    builder.add_text_field("tokens", tokenizer_name="whitespace", index_option="freq")
    for name in ("patent_id", "language", "jurisdiction", "code_prefix"):
        builder.add_text_field(name, tokenizer_name="raw", index_option="basic")
    for name in ("priority", "filing", "publication"):
        builder.add_integer_field(name, indexed=True, fast=True)  # YYYYMMDD, 0 = unknown
    if exact_lengths:  # tantivy keeps lengths on one byte; BM25 of the best hits uses this (lexical_exact.py)
        builder.add_integer_field("length", fast=True)
    return builder.build()


SCHEMA = _schema()
SCHEMA_FORMAT_2 = _schema(exact_lengths=False)


def code_prefix_terms(codes: Iterable[str]) -> list[str]:
    """Every prefix of every normalised code, so that a prefix filter is one term lookup.

    `SearchFilter.matches` accepts any string prefix ("H01M4/5" matches "H01M4/525"), so all of them
    are indexed, which includes every level of the hierarchy (H, H01, H01M, H01M4, H01M4/525).

    Example:
        >>> code_prefix_terms(["h01m 4/52"])
        ['|', 'H', 'H0', 'H01', 'H01M', 'H01M4', 'H01M4/', 'H01M4/5', 'H01M4/52']
    """
    codes = list(codes)
    if not codes:
        return []
    terms: set[str] = set()
    for code in codes:
        normal = normalize_code(code)
        terms.update(normal[:i] for i in range(1, len(normal) + 1))
    return [HAS_CODES, *sorted(terms)]


def text_query(counts: Counter[str]) -> tantivy.Query:
    """BM25 over the tokens: one optional term clause per distinct token, boosted by its repeats."""
    clauses = []
    for token, repeats in counts.items():
        term = tantivy.Query.term_query(SCHEMA, "tokens", token, index_option="freq")
        clauses.append(
            (tantivy.Occur.Should, term if repeats == 1 else tantivy.Query.boost_query(term, repeats))
        )
    return tantivy.Query.boolean_query(clauses)


def filter_clauses(flt: SearchFilter) -> list[tuple[tantivy.Occur, tantivy.Query]]:
    """Clauses that keep exactly the passages `flt.matches` accepts and add nothing to the score."""
    Q, must = tantivy.Query, tantivy.Occur.Must
    clauses: list[tuple[tantivy.Occur, tantivy.Query]] = []

    def keep(query: tantivy.Query) -> None:
        clauses.append((must, Q.const_score_query(query, 0.0)))

    if flt.before:  # strictly before, and the date must be known (0 = unknown)
        before = date_to_int(flt.before)
        keep(Q.range_query(SCHEMA, flt.date_field, tantivy.FieldType.Integer, 1, before, True, False))
    if flt.after:
        after = max(date_to_int(flt.after), 1)
        keep(Q.range_query(SCHEMA, flt.date_field, tantivy.FieldType.Integer, after, 99_991_231, True, True))
    if flt.code_prefixes:
        prefixes = sorted({normalize_code(p) or HAS_CODES for p in flt.code_prefixes})
        keep(Q.term_set_query(SCHEMA, "code_prefix", prefixes))
    if flt.languages:
        keep(Q.term_set_query(SCHEMA, "language", list(flt.languages)))
    if flt.jurisdictions:
        keep(Q.term_set_query(SCHEMA, "jurisdiction", [j.upper() for j in flt.jurisdictions]))
    if flt.exclude_patents:
        clauses.append(
            (tantivy.Occur.MustNot, Q.term_set_query(SCHEMA, "patent_id", list(flt.exclude_patents)))
        )
    return clauses
