"""Dates as patent records and search filters write them: one parser for both."""

from __future__ import annotations

import datetime as dt
import re


def parse_date(value: object) -> dt.date | None:
    """A date from '2020-01-31', '2020/1/31', '20200131', '2020-01', '2020' or 20200131 (None if empty).

    A year alone means January 1 of that year, a year and month the first of that month.

    Example:
        >>> parse_date("2020/1/31"), parse_date("2019"), parse_date(20200131), parse_date("")
        (datetime.date(2020, 1, 31), datetime.date(2019, 1, 1), datetime.date(2020, 1, 31), None)
    """
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"expected a date string, got {type(value).__name__}")
    text = str(value).strip()
    parts: list[str]
    if re.fullmatch(r"\d{8}", text):
        parts = [text[:4], text[4:6], text[6:]]
    elif re.fullmatch(r"\d{4}([-/.]\d{1,2}){0,2}", text):
        parts = re.split(r"[-/.]", text)
    elif re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ].*", text):
        parts = text[:10].split("-")
    else:
        raise ValueError(f"unrecognised date {text!r} (use YYYY-MM-DD, YYYYMMDD or YYYY)")
    year, month, day = (int(p) for p in [*parts, "1", "1"][:3])
    if not 1800 <= year <= 2200:
        raise ValueError(f"implausible year in date {text!r}")
    try:
        return dt.date(year, month, day)
    except ValueError as exc:
        raise ValueError(f"invalid date {text!r}: {exc}") from None
