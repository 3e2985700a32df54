"""One result per invention: collapse patents of one family, or with the same title + abstract.

Two patents are the same invention when both carry a `family_id` (metadata, e.g. the DOCDB family
id the DOCDB/EPO importers store) and the ids are equal ("family"), or when at least one has no family
id and their normalised title + abstract are equal ("duplicate text": twin publications such as a
CN A and B of one application). Two different family ids are never merged by text. A patent with
an empty title and abstract never collapses by text.

Example:
    >>> ids = ["CN1A", "EP7A1", "CN1B", "US9B2"]
    >>> same = {
    ...     "CN1A": identity("一种余热锅炉", "包括烟道。", None),
    ...     "EP7A1": identity("Waste heat boiler", "", "F42"),
    ...     "CN1B": identity("一种余热锅炉 ", "包括烟道.", None),
    ...     "US9B2": identity("Boiler", "Other text.", "F42"),
    ... }
    >>> [(g.kept, g.members) for g in collapse(ids, same).groups]
    [('CN1A', [('CN1B', 'duplicate text')]), ('EP7A1', [('US9B2', 'family')])]
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

Reason = Literal["family", "duplicate text"]
FAMILY: Reason = "family"
DUPLICATE_TEXT: Reason = "duplicate text"
FAMILY_ID_KEY = "family_id"  # the metadata key the DOCDB importer writes (and a JSONL column lands in)
P = TypeVar("P")
_NOT_WORD = re.compile(r"[\W_]+")  # punctuation, symbols and whitespace, in every script


def normalised_text(title: str, abstract: str) -> str:
    """Title + abstract as compared for duplicates: NFKC, casefolded, punctuation- and symbol-insensitive,
    whitespace collapsed (full-width and ASCII forms compare equal).

    Example:
        >>> normalised_text("Waste-Heat  BOILER", "Ｆｌｕｅ， gas.")
        'waste heat boiler flue gas'
    """
    text = _NOT_WORD.sub(" ", f"{title or ''} {abstract or ''}")  # first: less text for NFKC to check
    if not unicodedata.is_normalized("NFKC", text):  # NFKC is the costly step: only where it changes
        text = _NOT_WORD.sub(" ", unicodedata.normalize("NFKC", text))  # e.g. Ｆｌｕｅ -> Flue
    return text.casefold().strip()


def family_id_of(metadata: Mapping[str, Any]) -> str | None:
    """The patent's family id from its metadata ('' and None mean none; numbers become text)."""
    value = metadata.get(FAMILY_ID_KEY)
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


@dataclass(frozen=True, slots=True)
class Identity:
    """What tells one invention from another: its family id and its normalised text ('' = none)."""

    family_id: str | None
    text: str


def identity(title: str, abstract: str, family_id: object) -> Identity:
    """The `Identity` of a patent from its title, abstract and family id (any JSON value or None)."""
    return Identity(family_id_of({FAMILY_ID_KEY: family_id}), normalised_text(title, abstract))


def stored_identity(title: str, abstract: str, family_id: object) -> Identity:
    """`identity` with the normalised text replaced by a 128-bit digest of it ('' stays ''): what the
    document store keeps per patent, so collapsing compares short keys instead of re-normalising
    every candidate's title and abstract. Same answers from `same_invention`.

    Example:
        >>> a = stored_identity("Waste-heat boiler", "", None)
        >>> b = stored_identity("WASTE HEAT  boiler", "", 7)
        >>> len(a.text), a.text == b.text, b.family_id, stored_identity("", " ", None).text
        (32, True, '7', '')
    """
    plain = identity(title, abstract, family_id)
    digest = hashlib.blake2b(plain.text.encode(), digest_size=16).hexdigest() if plain.text else ""
    return Identity(plain.family_id, digest)


def same_invention(a: Identity, b: Identity) -> Reason | None:
    """Why `b` is the same invention as `a` ('family' or 'duplicate text'), or None."""
    if a.family_id and b.family_id:
        return FAMILY if a.family_id == b.family_id else None
    return DUPLICATE_TEXT if a.text and a.text == b.text else None


@dataclass
class Group:
    """A kept patent and the others collapsed into it, as (patent id, reason), in rank order."""

    kept: str
    members: list[tuple[str, Reason]] = field(default_factory=list)

    def promoted(self) -> Group | None:
        """The group with its first member kept instead (when the kept patent has gone), or None."""
        if not self.members:
            return None
        return Group(self.members[0][0], self.members[1:])


@dataclass
class Collapsed:
    """`collapse`'s answer: the groups in rank order, and the patents dropped as the query's twins."""

    groups: list[Group]
    excluded: list[tuple[str, Reason]] = field(default_factory=list)


def collapse(
    ranked_ids: Sequence[str], identities: Mapping[str, Identity], *, exclude: Identity | None = None
) -> Collapsed:
    """Group `ranked_ids` (best first) by invention; each group is kept at its best-ranked member.

    A patent joins the first group holding a member of its family, else the first group holding a
    member with its text that `same_invention` accepts, else starts a group. Patents the same
    invention as `exclude` (the patent searched by) are left out. Ids without an identity (deleted
    meanwhile) are left out too.
    """
    groups: list[Group] = []
    by_family: dict[str, int] = {}
    by_text: dict[str, list[tuple[int, Identity]]] = {}
    excluded: list[tuple[str, Reason]] = []
    for patent_id in ranked_ids:
        ident = identities.get(patent_id)
        if ident is None:
            continue
        if exclude is not None and (reason := same_invention(exclude, ident)) is not None:
            excluded.append((patent_id, reason))
            continue
        found: tuple[int, Reason] | None = None
        if ident.family_id and ident.family_id in by_family:
            found = (by_family[ident.family_id], FAMILY)
        elif ident.text:
            twins = (g for g, other in by_text.get(ident.text, []) if same_invention(other, ident))
            found = next(((g, DUPLICATE_TEXT) for g in twins), None)
        if found is None:
            groups.append(Group(patent_id))
            index = len(groups) - 1
        else:
            index = found[0]
            groups[index].members.append((patent_id, found[1]))
        if ident.family_id:
            by_family.setdefault(ident.family_id, index)
        if ident.text:
            by_text.setdefault(ident.text, []).append((index, ident))
    return Collapsed(groups, excluded)


@dataclass
class FamilyMember:
    """A result collapsed into a kept one: its id, the score it had, and why it was collapsed."""

    patent_id: str
    score: float
    reason: Reason


def fill_page(
    groups: Sequence[Group], size: int, fetch: Callable[[list[str]], Mapping[str, P]]
) -> list[tuple[Group, P]]:
    """The first `size` groups with their kept patent as `fetch` reads it, in order.

    A kept patent `fetch` no longer finds (deleted during the search) hands its place to its group's
    next member; a group with none left is dropped and the following groups move up, so the page
    stays full and its ranks contiguous.

    Example:
        >>> stored = {"A": "a", "C": "c", "D": "d"}
        >>> groups = [Group("A"), Group("B", [("C", "family")]), Group("D")]
        >>> read = lambda ids: {i: stored[i] for i in ids if i in stored}  # "B" was deleted
        >>> [(g.kept, p) for g, p in fill_page(groups, 2, read)]
        [('A', 'a'), ('C', 'c')]
    """
    page: list[tuple[Group, P]] = []
    queue = deque(groups)
    while queue and len(page) < size:
        batch = [queue.popleft() for _ in range(min(size - len(page), len(queue)))]
        found = fetch([g.kept for g in batch])
        for position, group in enumerate(batch):
            if group.kept in found:
                page.append((group, found[group.kept]))
                continue
            promoted = group.promoted()
            rest = batch[position + 1 :]
            queue.extendleft(reversed([promoted, *rest] if promoted is not None else rest))
            break
    return page
