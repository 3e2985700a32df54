"""Claims as analysts use them: numbered claims with their dependencies, cancelled claims marked,
and a claim split into the elements a claim chart maps (preamble, then each limitation)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_CANCELLED = re.compile(
    r"^\W*(?:\d+\s*(?:[-–to]+\s*\d+\s*)?[.)]?\s*)?\(?\s*(?:canceled|cancelled|deleted)\s*\)?\W*$", re.I
)
_LEADING_NUMBER = re.compile(r"^\s*[(（]?(\d{1,4})\s*[.．、)）]\s*")
_REF_WORD = (
    r"(?:claims?|anspr(?:ü|ue)chen?|anspruchs?|revendications?|reivindicaci(?:ó|o)n(?:es)?|"
    r"权利要求|權利要求|請求項|청구항)"
)
_NUM = r"\d{1,4}"
_LINK = r"\s*(?:,|;|or|and|to|through|bis|und|oder|à|a|et|ou|y|o|-|–|~|至|到|或|和|、)\s*"
_REF = re.compile(rf"{_REF_WORD}\s*((?:{_NUM})(?:{_LINK}(?:{_REF_WORD}\s*)?{_NUM})*)", re.I)
_RANGE = re.compile(rf"({_NUM})\s*(?:to|through|bis|à|a|-|–|~|至|到)\s*({_NUM})", re.I)
_ALL_PRECEDING = re.compile(
    r"(?:any|one|each|all)\b[^.;,]{0,30}\b(?:preceding|previous|foregoing|above)\s+claims?"
    r"|(?:preceding|previous)\s+claims"
    r"|vorhergehenden\s+anspr(?:ü|ue)che|vorangehenden\s+anspr(?:ü|ue)che"
    r"|revendications\s+pr(?:é|e)c(?:é|e)dentes"
    r"|(?:前述|上述|以上)[^，。,]{0,6}(?:权利要求|權利要求)",
    re.I,
)


@dataclass
class Claim:
    """One numbered claim: its text (leading number removed), the claims it refers to, and whether
    it was cancelled (US applications keep '1. (canceled)' in place).

    Example:
        >>> Claim.parse("3. The device of claim 1 or 2, wherein ...", 3).depends_on
        [1, 2]
    """

    number: int
    text: str
    depends_on: list[int] = field(default_factory=list)
    cancelled: bool = False

    @classmethod
    def parse(cls, text: str, number: int, refs: list[int] | None = None) -> Claim:
        """A claim from its text; `refs` (e.g. from USPTO `<claim-ref>`) wins over references found
        in the wording."""
        body = strip_leading_number(text, number)
        depends = sorted(set(refs)) if refs else claim_references(body, number)
        return cls(number, body, [d for d in depends if d != number], is_cancelled(body))

    @property
    def independent(self) -> bool:
        return not self.depends_on

    def info(self) -> dict[str, Any]:
        """The JSON kept in a patent's metadata (`claims_info`): number, dependencies, cancelled."""
        return {"number": self.number, "depends_on": self.depends_on, "cancelled": self.cancelled}


def strip_leading_number(text: str, number: int | None = None) -> str:
    """'1. A method' / '1) A method' -> 'A method' when the number is the claim's own (or any
    number when `number` is None)."""
    text = re.sub(r"\s+", " ", text).strip()
    match = _LEADING_NUMBER.match(text)
    if match and (number is None or int(match.group(1)) == number):
        return text[match.end() :].strip()
    return text


def is_cancelled(text: str) -> bool:
    """'(canceled)', '(Cancelled)', '1-5. (canceled)': a claim that is kept only as a placeholder."""
    return bool(_CANCELLED.match(text.strip())) if len(text) < 60 else False


def claim_references(text: str, number: int) -> list[int]:
    """Earlier claims that `text` (claim `number`) refers to: 'claim 1 or 2' -> [1, 2], 'claims 1
    to 3' -> [1, 2, 3], 'any one of the preceding claims' -> every earlier claim; German, French,
    Spanish, Chinese, Japanese and Korean wording too.

    Example:
        >>> claim_references("Vorrichtung nach einem der Ansprüche 1 bis 3", 5)
        [1, 2, 3]
    """
    found: set[int] = set()
    for match in _REF.finditer(text):
        group = match.group(1)
        for low, high in _RANGE.findall(group):
            found.update(range(int(low), int(high) + 1))
        found.update(int(n) for n in re.findall(_NUM, group))
    found = {n for n in found if 1 <= n < number}
    if not found and number > 1 and _ALL_PRECEDING.search(text):
        found = set(range(1, number))
    return sorted(found)


# ---------------------------------------------------------------- claim elements

_TRANSITION = re.compile(
    r"(,?\s*(?:comprising|consisting (?:essentially )?of|including|having"
    r"|characteri[sz]ed (?:in that|by))\s*:?\s*)",
    re.I,
)
_WHEREIN = re.compile(r"(?:,\s*|\s+)(?=(?:and\s+)?(?:wherein|whereby|characteri[sz]ed in that)\b)", re.I)
_SEMICOLON = re.compile(r"\s*;\s*(?:and\s+)?")
_ZH_STEPS = r"(?:以下|如下)?(?:步骤|部件)?"
_ZH_FEATURE = re.compile(rf"(其特征在于[，,：:]?\s*(?:包括{_ZH_STEPS}[：:，,]?)?|包括{_ZH_STEPS}[：:，,]?)")
# A new element starts after ；, or at 所述 ("the said ...") opening a clause after a comma.
_ZH_SPLIT = re.compile(r"[；;]|(?<=[，,：:])(?=所述)")


def split_elements(claim: str) -> list[str]:
    """A claim split into its elements for a claim chart: the preamble (up to and including the
    transition word), then the limitations separated by ';', 'wherein' and 'comprising'; Chinese
    claims split on 其特征在于 / 包括 / ；/ 所述. Empty pieces are dropped.

    Example:
        >>> split_elements("A lamp comprising: a base; a bulb; and a switch, wherein the switch is wireless.")
        ['A lamp comprising:', 'a base', 'a bulb', 'a switch', 'wherein the switch is wireless.']
    """
    text = strip_leading_number(claim)
    if not text:
        return []
    if _ZH_FEATURE.search(text) or re.search(r"[\u4e00-\u9fff]{8}", text):
        return _split_chinese(text)
    match = _TRANSITION.search(text)
    if match:
        preamble = text[: match.end()].strip().rstrip(",")
        if not preamble.endswith(":"):
            preamble = preamble.rstrip() + ":" if match.group(1).strip().endswith(":") else preamble
        rest = text[match.end() :]
    else:
        preamble, rest = "", text
    pieces: list[str] = []
    for part in _SEMICOLON.split(rest):
        for sub in _WHEREIN.split(part):
            sub = sub.strip().strip(",").strip()
            if sub.lower().startswith("and "):
                sub = sub[4:].strip()
            if sub:
                pieces.append(sub)
    return [p for p in [preamble, *pieces] if p]


def _split_chinese(text: str) -> list[str]:
    parts = _ZH_FEATURE.split(text, maxsplit=1)
    elements: list[str] = []
    if len(parts) == 3:
        preamble, marker, rest = parts
        elements.append((preamble + marker).strip())
    else:
        rest = text
    for piece in _ZH_SPLIT.split(rest):
        piece = piece.strip(" ，,。；;：:")
        if piece:
            elements.append(piece)
    return elements
