"""Passages from patents: ids, claim numbering and dependency, and token-budgeted chunking."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from patentrank.errors import InputError

if TYPE_CHECKING:
    from patentrank.corpus import Patent

PassageField = Literal["title_abstract", "claim", "description"]
TokenCounter = Callable[[str], int]
# The reranker sees query + instruction + passage; 512 passage tokens keep a prompt well under 1k.
DEFAULT_MAX_TOKENS = 512
MIN_MAX_TOKENS = 16


def passage_id_for(patent_id: str, ordinal: int) -> int:
    """Stable 63-bit id: the first 8 bytes of blake2b(patent_id, ordinal) with the sign bit cleared.

    Deterministic across runs and machines (unlike `hash()`), non-negative so it fits SQLite INTEGER,
    FAISS and Milvus int64 and never equals FAISS's -1. A collision is improbable (about 1 in 200,000
    for ten million passages) and the document store refuses one rather than overwrite.
    """
    digest = hashlib.blake2b(f"{patent_id}\x1f{ordinal}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass(frozen=True, slots=True)
class Passage:
    """A searchable piece of one patent: title+abstract, a claim group, or description paragraphs.

    `Passage.make` derives the id from the patent id and the ordinal, so re-indexing the same patent
    gives the same ids.

    Example:
        >>> passage = Passage.make("EP3456789B1", 0, "title_abstract", "Battery pack with a cooling plate.")
        >>> passage.passage_id == passage_id_for("EP3456789B1", 0), passage.field
        (True, 'title_abstract')
    """

    passage_id: int
    patent_id: str
    ordinal: int
    field: PassageField
    text: str

    @classmethod
    def make(cls, patent_id: str, ordinal: int, kind: PassageField, text: str) -> Passage:
        return cls(passage_id_for(patent_id, ordinal), patent_id, ordinal, kind, text)


# ---------------------------------------------------------------- claims

# Claim numbering inside one claims string: "1. ", "2、", "3) ", "(4)" after the end of a sentence or a
# line break (so "step 2. " inside a claim is not a claim); _LOOSE also accepts it after any space.
_NUMBER = r"[(（]?(\d{1,3})\s*[.．、)）](?!\d)\s*"
_END = r"[。；;.:：\n]"
_CLAIM_NUMBER = re.compile(rf"(?:^|(?<={_END})|(?<={_END}\s)|(?<={_END}\s\s)){_NUMBER}")
_CLAIM_NUMBER_LOOSE = re.compile(rf"(?:^|(?<=\s)){_NUMBER}")
# A reference to another claim: "claim 1", "claims 2 or 3", "如权利要求1所述", "請求項1に", "청구항 1에".
_CLAIM_REF = re.compile(r"(?:\bclaims?|权利要求|權利要求|請求項|청구항)\s*(\d{1,3})", re.IGNORECASE)
_ANY_PRECEDING = re.compile(
    r"(?:preceding|previous|foregoing|above)\s+claims?|(?:前述|上述|以上)[^，。,]{0,6}权利要求", re.IGNORECASE
)


def _numbered_starts(text: str, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    """(where the number starts, where the claim text starts) for claims numbered 1, 2, 3... in order."""
    starts: list[tuple[int, int]] = []
    for match in pattern.finditer(text):
        if int(match.group(1)) == len(starts) + 1:
            starts.append((match.start(), match.end()))
    return starts


def split_claims(text: str) -> list[str]:
    """One claims string split on its numbering (1., 2., 3. in order); unnumbered text splits on lines.

    A short heading before claim 1 ("What is claimed is:", "权利要求书") is dropped; longer text is kept.

    Example:
        >>> split_claims("What is claimed is: 1. A battery pack. 2. The pack of claim 1, made of steel.")
        ['A battery pack.', 'The pack of claim 1, made of steel.']
        >>> split_claims("1. 一种电池包，包括冷却板。2. 根据权利要求1所述的电池包，其中冷却板为铝制。")
        ['一种电池包，包括冷却板。', '根据权利要求1所述的电池包，其中冷却板为铝制。']
    """
    text = text.strip()
    if not text:
        return []
    starts = _numbered_starts(text, _CLAIM_NUMBER)
    if len(starts) <= 1:
        starts = max(starts, _numbered_starts(text, _CLAIM_NUMBER_LOOSE), key=len)
    if not starts:
        return [line.strip() for line in text.splitlines() if line.strip()]
    ends = [start for start, _ in starts[1:]] + [len(text)]
    claims = [text[body:end].strip() for (_, body), end in zip(starts, ends, strict=True)]
    heading = text[: starts[0][0]].strip()
    if len(heading) > 40:
        claims.insert(0, heading)
    return [c for c in claims if c]


def strip_claim_number(claim: str, number: int) -> str:
    """'2. The method of claim 1' -> 'The method of claim 1' when the leading number is its own."""
    match = _CLAIM_NUMBER.match(claim)
    return claim[match.end() :] if match and int(match.group(1)) == number else claim


def claim_parent(claim: str, number: int) -> int | None:
    """The earlier claim (1-based) that claim `number` depends on, or None for an independent claim.

    With several references ("claim 2 or 3") the lowest counts; "any preceding claim" means claim 1.

    Example:
        >>> claim_parent("The pack of claim 2 or 3, wherein the plate is aluminium.", 4)
        2
        >>> claim_parent("根据权利要求1所述的电池包", 2), claim_parent("A vehicle.", 5)
        (1, None)
    """
    refs = [int(m.group(1)) for m in _CLAIM_REF.finditer(claim)]
    earlier = [r for r in refs if 1 <= r < number]
    if earlier:
        return min(earlier)
    return 1 if number > 1 and _ANY_PRECEDING.search(claim) else None


def claim_groups(claims: Sequence[str]) -> list[list[int]]:
    """Claim numbers (1-based) grouped under their independent claim, in claim order.

    Example:
        >>> claim_groups(["A method.", "The method of claim 1.", "A device.", "The device of claim 3."])
        [[1, 2], [3, 4]]
    """
    root: dict[int, int] = {}
    groups: dict[int, list[int]] = {}
    for number, claim in enumerate(claims, start=1):
        parent = claim_parent(claim, number)
        root[number] = root[parent] if parent else number
        groups.setdefault(root[number], []).append(number)
    return list(groups.values())


# ---------------------------------------------------------------- token budget

_TOKEN_PIECES = re.compile(
    r"([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af])|([A-Za-z\u00c0-\u024f]+)|(\d)|\S"
)
_SENTENCE = re.compile(r".+?(?:[。！？；!?;]+|\.(?=\s)|\n|$)\s*", re.DOTALL)


def approx_tokens(text: str) -> int:
    """A cheap Qwen3-like token estimate: CJK characters and digits 1 each, words 1.3, symbols 1.

    On Chinese it overestimates (Qwen3 merges frequent character pairs), so budgets stay safe.

    Example:
        >>> approx_tokens("lithium battery anode"), approx_tokens("锂电池负极材料")
        (4, 7)
    """
    total = 0.0
    for match in _TOKEN_PIECES.finditer(text):
        total += 1.3 if match.lastindex == 2 else 1.0
    return math.ceil(total)


def tokenizer_counter(tokenizer: Any) -> TokenCounter:
    """A `TokenCounter` from a Hugging Face tokenizer (e.g. the reranker's Qwen3 tokenizer)."""
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _hard_split(text: str, count: TokenCounter, max_tokens: int) -> list[str]:
    """Cut text without sentence breaks into the longest prefixes that fit, preferring a space."""
    pieces: list[str] = []
    rest = text.strip()
    while rest:
        if count(rest) <= max_tokens:
            pieces.append(rest)
            break
        low, high = 1, len(rest)  # invariant: rest[:low] fits (a single character always does)
        while low < high:
            mid = (low + high + 1) // 2
            low, high = (mid, high) if count(rest[:mid]) <= max_tokens else (low, mid - 1)
        space = rest.rfind(" ", 0, low + 1)
        cut = space if space > low // 2 else low
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    return [p for p in pieces if p]


def pack(units: Sequence[str], count: TokenCounter, max_tokens: int, sep: str = "\n") -> list[str]:
    """Greedily join units (with sep) into chunks of at most max_tokens as `count` measures them.

    A unit that alone is over budget is split into sentences, and a sentence over budget is cut.

    Example:
        >>> pack(["First paragraph here.", "Second one.", "A third paragraph."], approx_tokens, max_tokens=10)
        ['First paragraph here.\\nSecond one.', 'A third paragraph.']
    """
    fits = _FitCheck(count, max_tokens, sep)
    chunks: list[str] = []
    current = ""
    for unit in (u.strip() for u in units):
        if not unit:
            continue
        if not fits.alone(unit):
            if current:
                chunks.append(current)
                current = ""
            sentences = _SENTENCE.findall(unit)
            if len(sentences) > 1:
                chunks.extend(pack(sentences, count, max_tokens, sep=""))
            else:
                chunks.extend(_hard_split(unit, count, max_tokens))
            fits.reset()
            continue
        if not current:
            current = unit
            fits.start(unit)
        elif fits.joined(current, unit):
            current = f"{current}{sep}{unit}"
        else:
            chunks.append(current)
            current = unit
            fits.start(unit)
    if current:
        chunks.append(current)
    return chunks


class _FitCheck:
    """Whether a chunk stays within budget, without recounting the growing chunk at every unit.

    For `approx_tokens` the estimate is additive over units (in tenths: a word is 13, any other
    piece 10, and the separators "\n" and "" add nothing), except where "" joins two letters into
    one word. Only candidates within half a token of the budget are counted exactly, with the same
    floating-point sum as before, so chunk boundaries (and so passage ids) are unchanged. Any other
    counter is called on every candidate, as it always was.
    """

    def __init__(self, count: TokenCounter, max_tokens: int, sep: str) -> None:
        self.count, self.max_tokens, self.sep = count, max_tokens, sep
        self.additive = count is approx_tokens and sep in ("", "\n")
        self.budget = max_tokens * 10
        self.current_tenths = 0
        self.unit_tenths = 0

    def reset(self) -> None:
        self.current_tenths = 0

    def alone(self, unit: str) -> bool:
        if not self.additive:
            return self.count(unit) <= self.max_tokens
        self.unit_tenths = _tenths(unit)
        if abs(self.unit_tenths - self.budget) <= 5:
            return self.count(unit) <= self.max_tokens
        return self.unit_tenths < self.budget

    def start(self, unit: str) -> None:
        self.current_tenths = self.unit_tenths

    def joined(self, current: str, unit: str) -> bool:
        if not self.additive:
            return self.count(f"{current}{self.sep}{unit}") <= self.max_tokens
        total = self.current_tenths + self.unit_tenths
        merges = not self.sep and _LETTER.match(current[-1]) and _LETTER.match(unit[0])
        if merges or abs(total - self.budget) <= 5:
            ok = self.count(f"{current}{self.sep}{unit}") <= self.max_tokens
            if ok:
                self.current_tenths = _tenths(f"{current}{self.sep}{unit}") if merges else total
            return ok
        if total < self.budget:
            self.current_tenths = total
            return True
        return False


_LETTER = re.compile(r"[A-Za-z\u00c0-\u024f]")


def _tenths(text: str) -> int:
    """`approx_tokens` times ten, exactly (integers, no rounding)."""
    return sum(13 if match.lastindex == 2 else 10 for match in _TOKEN_PIECES.finditer(text))


def patent_passages(
    patent: Patent, token_counter: TokenCounter = approx_tokens, max_tokens: int = DEFAULT_MAX_TOKENS
) -> list[Passage]:
    """Passages of one patent, each within max_tokens: title+abstract first, then each independent
    claim with its dependent claims (numbered as in the patent), then description paragraphs.

    `token_counter` defaults to `approx_tokens`; pass `tokenizer_counter(tokenizer)` to count with
    the reranker's own tokenizer.

    Example:
        >>> from patentrank.corpus import Patent
        >>> patent = Patent(
        ...     id="EP3456789B1",
        ...     title="Battery pack",
        ...     abstract="A pack with a cooling plate.",
        ...     claims=["A battery pack comprising a cooling plate.",
        ...             "The pack of claim 1, wherein the plate is aluminium.",
        ...             "A method of cooling a battery pack."],
        ...     description="The pack holds twelve cells.\\nThe plate carries coolant.",
        ... )
        >>> passages = patent_passages(patent)
        >>> [(p.ordinal, p.field) for p in passages]
        [(0, 'title_abstract'), (1, 'claim'), (2, 'claim'), (3, 'description')]
        >>> print(passages[1].text)
        1. A battery pack comprising a cooling plate.
        2. The pack of claim 1, wherein the plate is aluminium.
    """
    if max_tokens < MIN_MAX_TOKENS:
        raise InputError(f"max_tokens must be at least {MIN_MAX_TOKENS}", field="max_tokens")
    pieces: list[tuple[PassageField, str]] = []
    head = f"{patent.title}\n{patent.abstract}".strip()
    pieces += [("title_abstract", chunk) for chunk in pack([head], token_counter, max_tokens)]
    for group in claim_groups(patent.claims):
        numbered = [f"{n}. {patent.claims[n - 1]}" for n in group]
        pieces += [("claim", chunk) for chunk in pack(numbered, token_counter, max_tokens)]
    if patent.description:
        paragraphs = patent.description.splitlines()
        pieces += [("description", chunk) for chunk in pack(paragraphs, token_counter, max_tokens)]
    return [Passage.make(patent.id, ordinal, kind, text) for ordinal, (kind, text) in enumerate(pieces)]
