"""The rule for patent ids that come in over HTTP (and importers that want the same rule).

An id is 1 to 128 ASCII characters: letters, digits and `.`, `_`, `-`, `:`, starting with a letter or
a digit, e.g. `US2020123456A1`, `EP-1234567-B1`, `CN113344556A`. Ids are used in URL paths
(`/v1/patents/{id}`) where a `/` can never round-trip (proxies and the router decode `%2F` first), in
log lines and in file names, so separators and control characters are refused rather than escaped.
"""

from __future__ import annotations

import re

from patentrank.errors import InputError

MAX_PATENT_ID_LENGTH = 128
PATENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"
_VALID = re.compile(PATENT_ID_PATTERN)


def patent_id_problem(patent_id: str) -> str | None:
    """Why `patent_id` breaks the rule, in words, or None when it is valid.

    Example:
        >>> patent_id_problem("US2020123456A1") is None
        True
        >>> patent_id_problem("WO/2020/123456")
        "contains '/': use letters, digits and . _ - : only (e.g. 'WO2020123456')"
    """
    if not patent_id:
        return "is empty"
    if len(patent_id) > MAX_PATENT_ID_LENGTH:
        return f"has {len(patent_id)} characters, more than {MAX_PATENT_ID_LENGTH}"
    if _VALID.match(patent_id) and not patent_id.endswith("\n"):
        return None
    bad = next((c for c in patent_id if not (c.isascii() and (c.isalnum() or c in "._:-"))), None)
    if bad is None:
        return "must start with a letter or a digit"
    example = "".join(c for c in patent_id if c.isascii() and (c.isalnum() or c in "._:-"))[:40]
    hint = f" (e.g. {example!r})" if example else ""
    return f"contains {bad!r}: use letters, digits and . _ - : only{hint}"


def check_patent_id(patent_id: str, field: str = "id") -> str:
    """`patent_id` itself when valid, else `InputError` naming `field` and the rule.

    Example:
        >>> check_patent_id("EP-1234567-B1")
        'EP-1234567-B1'
    """
    problem = patent_id_problem(patent_id)
    if problem is not None:
        raise InputError(f"{field} {problem}", field=field)
    return patent_id


# Office code, then (after an optional separator) the first digit of the number: "CN112233445A",
# "US 2020/0123456 A1", "EP-3456789-B1". Lower-case ids ("cm014cd2...") are not publication numbers.
_JURISDICTION = re.compile(r"^([A-Z]{2})[\s\-/]?\d")


def jurisdiction_of(publication_number: str) -> str:
    """The issuing office from a publication number's 2-letter prefix ('CN', 'US', 'EP', 'WO'...), or ''."""
    match = _JURISDICTION.match(publication_number.strip())
    return match.group(1) if match else ""
