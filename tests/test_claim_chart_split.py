"""Claim splitting into chart elements, claim references and cancelled claims (no models)."""

from __future__ import annotations

import pytest

from patentrank.claims import Claim, claim_references, is_cancelled, split_elements


def test_english_preamble_semicolons_and_wherein() -> None:
    claim = (
        "1. A battery cell, comprising: an anode comprising silicon particles; a carbon matrix; and a "
        "cathode, wherein the anode swells less than 10%, wherein the matrix is porous."
    )
    assert split_elements(claim) == [
        "A battery cell, comprising:",
        "an anode comprising silicon particles",
        "a carbon matrix",
        "a cathode",
        "wherein the anode swells less than 10%",
        "wherein the matrix is porous.",
    ]


def test_chinese_markers() -> None:
    claim = "1.一种桌面广告卡座，其特征在于，包括：底座；支座，所述支座设置于底座上；夹板。"
    assert split_elements(claim) == [
        "一种桌面广告卡座，其特征在于，包括：",
        "底座",
        "支座",
        "所述支座设置于底座上",
        "夹板",
    ]


def test_a_claim_without_markers_is_one_element() -> None:
    assert split_elements("A lamp.") == ["A lamp."]
    assert split_elements("   ") == []


@pytest.mark.parametrize(
    ("text", "number", "refs"),
    [
        ("The method of claim 1 or 2, wherein", 3, [1, 2]),
        ("The method of any one of claims 1 to 3", 5, [1, 2, 3]),
        ("The method according to any of the preceding claims", 4, [1, 2, 3]),
        ("Verfahren nach Anspruch 2", 3, [2]),
        ("Procédé selon l'une des revendications 1 à 2", 4, [1, 2]),
        ("根据权利要求1或2所述的方法", 3, [1, 2]),
        ("A method of making a claim 9 device", 2, []),  # a later claim is not a dependency
        ("A device comprising a motor", 1, []),
    ],
)
def test_claim_references(text: str, number: int, refs: list[int]) -> None:
    assert claim_references(text, number) == refs


def test_cancelled_claims() -> None:
    assert is_cancelled("(canceled)") and is_cancelled("(Cancelled)") and is_cancelled("1-5. (canceled)")
    assert not is_cancelled("A method in which a cancelled order is refunded.")
    claim = Claim.parse("3. (canceled)", 3)
    assert claim.cancelled and claim.text == "(canceled)" and claim.depends_on == []
