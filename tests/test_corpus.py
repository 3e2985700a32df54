"""Patent records, loaders (JSONL/CSV, malformed lines, the shared data format) and chunking."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patentrank.chunking import (
    claim_groups,
    claim_parent,
    pack,
    passage_id_for,
    patent_passages,
    tokenizer_counter,
)
from patentrank.corpus import (
    Patent,
    approx_tokens,
    detect_language,
    jurisdiction_of,
    load_csv,
    load_jsonl,
    load_patents,
    parse_date,
    sample_corpus_path,
    split_claims,
)
from patentrank.errors import InputError
from patentrank.testing import find_shared_dir, qwen3_tokenizer_dir

SHARED = find_shared_dir()


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _squash(text: str) -> str:
    return "".join(text.split())


# ---------------------------------------------------------------- records


@pytest.mark.parametrize(
    ("number", "office"),
    [
        ("CN112233445A", "CN"),
        ("US2020123456A1", "US"),
        ("EP3456789B1", "EP"),
        ("WO2020123456A1", "WO"),
        ("JP2019114567A", "JP"),
        ("KR1020200045678A", "KR"),
        ("US 2020/0123456 A1", "US"),
        ("EP-3456789-B1", "EP"),
        ("t000462434b", ""),  # the phrase collection's ids are not publication numbers
        ("cm014cd2cab4", ""),
        ("ABC123", ""),
    ],
)
def test_jurisdiction_comes_from_the_publication_number_prefix(number: str, office: str) -> None:
    assert jurisdiction_of(number) == office


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("一种基于深度学习的图像去噪方法", "zh"),
        ("本发明采用U-Net和ResNet结构，对CT图像进行降噪处理", "zh"),
        ("A method for denoising an image using a 深度 network", "en"),
        ("画像のノイズを除去する装置", "ja"),
        ("이미지 노이즈 제거 방법", "ko"),
        ("12345 -- 678", ""),
    ],
)
def test_language_detection_by_script_share(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_patent_derives_language_and_jurisdiction_and_normalises() -> None:
    p = Patent(id=" CN112233445A ", title="一种图像去噪方法", codes=["G06T 5/00", "G06T 5/00", " "])
    assert (p.id, p.language, p.jurisdiction, p.codes) == ("CN112233445A", "zh", "CN", ["G06T 5/00"])
    explicit = Patent(id="US1", abstract="text", language="ZH_cn", jurisdiction="us")
    assert (explicit.language, explicit.jurisdiction) == ("zh", "US")
    assert Patent(id="X1", claims=["1. A widget.", "2. The widget of claim 1."]).claims == [
        "A widget.",
        "The widget of claim 1.",
    ]


def test_patent_rejects_missing_id_and_missing_text() -> None:
    with pytest.raises(InputError, match="missing id"):
        Patent(id="  ", title="x")
    with pytest.raises(InputError, match="no text"):
        Patent(id="CN1", title=" ", claims=[" "])
    with pytest.raises(InputError, match="JSON"):
        Patent(id="CN1", title="x", metadata={"when": dt.date(2020, 1, 1)})


def test_fields_carry_dates_as_ints_and_normalised_codes() -> None:
    p = Patent(
        id="EP3456789B1",
        title="t",
        priority_date=dt.date(2019, 3, 4),
        publication_date=dt.date(2021, 1, 31),
        codes=["h04l 9/32"],
    )
    f = p.fields()
    assert (f.patent_id, f.jurisdiction, f.priority, f.filing, f.publication) == (
        "EP3456789B1",
        "EP",
        20190304,
        0,
        20210131,
    )
    assert f.codes_text == "|H04L9/32|"


def test_to_dict_round_trips_through_json() -> None:
    p = next(iter(load_patents(sample_corpus_path())))
    assert Patent.from_dict(json.loads(json.dumps(p.to_dict()))) == p


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2020-01-31", dt.date(2020, 1, 31)),
        ("20200131", dt.date(2020, 1, 31)),
        (20200131, dt.date(2020, 1, 31)),
        ("2020", dt.date(2020, 1, 1)),
        (2020, dt.date(2020, 1, 1)),
        ("2020/3/7", dt.date(2020, 3, 7)),
        ("2020-03", dt.date(2020, 3, 1)),
        ("2020-01-31T10:00:00Z", dt.date(2020, 1, 31)),
        ("", None),
        (None, None),
    ],
)
def test_parse_date_accepts_common_forms(value: object, expected: dt.date | None) -> None:
    assert parse_date(value) == expected


@pytest.mark.parametrize("value", ["2020-13-01", "2020-02-30", "31.01.2020", "yesterday", "0099", 3.5])
def test_parse_date_rejects_nonsense(value: object) -> None:
    with pytest.raises(ValueError):
        parse_date(value)


# ---------------------------------------------------------------- claims


def test_split_claims_on_numbering_in_english_and_chinese() -> None:
    en = (
        "What is claimed is: 1. A method comprising heating to 2.5 degrees and step 2. "
        "2. The method of claim 1. 3. A kit."
    )
    assert split_claims(en) == [
        "A method comprising heating to 2.5 degrees and step 2.",
        "The method of claim 1.",
        "A kit.",
    ]
    zh = (
        "权利要求书\n1.一种去噪方法，包括：获取图像；2.根据权利要求1所述的方法，其中网络为U-Net。"
        "3、一种装置。"
    )
    assert split_claims(zh) == [
        "一种去噪方法，包括：获取图像；",
        "根据权利要求1所述的方法，其中网络为U-Net。",
        "一种装置。",
    ]
    assert split_claims("A widget\nA gadget\n") == ["A widget", "A gadget"]
    assert split_claims("   ") == []


def test_dependent_claims_are_grouped_with_their_independent_claim() -> None:
    en = [
        "A method of denoising.",
        "The method of claim 1, wherein the network is a U-Net.",
        "The method according to claim 2, wherein ...",
        "A device comprising a processor.",
        "The device of claim 4.",
        "Device as claimed in claims 4 or 5, wherein ...",
        "A computer program performing the method of any of the preceding claims.",
        "Claim 6, wherein the device is portable.",  # unusual phrasing, still a reference
    ]
    assert claim_groups(en) == [[1, 2, 3, 7], [4, 5, 6, 8]]
    zh = [
        "一种图像去噪方法，其特征在于，包括……",
        "根据权利要求1所述的方法，其特征在于……",
        "一种图像去噪装置，其特征在于，包括……",
        "如权利要求3所述的装置，其特征在于……",
        "根据权利要求2或4所述的方法，其特征在于……",
        "一种存储介质，存储有实现前述任一项权利要求所述方法的程序。",
    ]
    assert claim_groups(zh) == [[1, 2, 5, 6], [3, 4]]
    # A reference to itself or to a later claim does not make a claim dependent.
    assert claim_parent("A method as in claim 3.", 3) is None
    assert claim_parent("A method as in claim 1.", 1) is None


# ---------------------------------------------------------------- chunking


def test_passages_start_with_title_abstract_then_claim_groups_then_description() -> None:
    p = Patent(
        id="CN112233445A",
        title="一种图像去噪方法",
        abstract="本发明公开了一种图像去噪方法。",
        claims=["一种图像去噪方法。", "根据权利要求1所述的方法。", "一种装置。", "如权利要求3所述的装置。"],
        description="技术领域\n本发明涉及图像处理。",
    )
    passages = patent_passages(p)
    assert [x.field for x in passages] == ["title_abstract", "claim", "claim", "description"]
    assert passages[0].text == "一种图像去噪方法\n本发明公开了一种图像去噪方法。"
    assert passages[1].text == "1. 一种图像去噪方法。\n2. 根据权利要求1所述的方法。"
    assert passages[2].text == "3. 一种装置。\n4. 如权利要求3所述的装置。"
    assert [x.ordinal for x in passages] == [0, 1, 2, 3]


def _long_patent() -> Patent:
    sentence = (
        "The denoising network comprises a plurality of convolutional layers with residual connections. "
    )
    return Patent(
        id="US2021118123A1",
        title="Image denoising",
        abstract=sentence * 30,
        claims=[
            "A method comprising: " + "receiving an image and filtering it; " * 40,
            "The method of claim 1, wherein " + "x " * 30,
            "The method of claim 1, wherein the filter is bilateral.",
        ],
        description="\n".join(f"Paragraph {i}. " + sentence * (i % 4 + 1) for i in range(25)),
    )


@pytest.mark.parametrize("budget", [32, 64, 200])
def test_every_passage_fits_the_budget_and_no_text_is_lost(budget: int) -> None:
    p = _long_patent()
    passages = patent_passages(p, max_tokens=budget)
    assert all(approx_tokens(x.text) <= budget for x in passages)
    by_field = {
        f: "".join(_squash(x.text) for x in passages if x.field == f)
        for f in ("title_abstract", "description")
    }
    assert by_field["title_abstract"] == _squash(p.title + p.abstract)
    assert by_field["description"] == _squash(p.description or "")
    claims = _squash("".join(x.text for x in passages if x.field == "claim"))
    assert claims == _squash("".join(f"{n}. {c}" for n, c in enumerate(p.claims, start=1)))
    # An oversized claim group is split, but never merged with the next group.
    assert sum(x.field == "claim" for x in passages) > 1


@settings(max_examples=60, deadline=None)
@given(
    units=st.lists(st.text(alphabet="ab 中文。. \n,1", min_size=0, max_size=300), max_size=8),
    budget=st.integers(min_value=16, max_value=80),
)
def test_pack_respects_budget_and_keeps_all_text(units: list[str], budget: int) -> None:
    chunks = pack(units, approx_tokens, budget)
    assert all(approx_tokens(c) <= budget and c.strip() for c in chunks)
    assert "".join(_squash(c) for c in chunks) == "".join(_squash(u) for u in units)


def test_too_small_budget_is_an_input_error() -> None:
    with pytest.raises(InputError):
        patent_passages(_long_patent(), max_tokens=4)


def test_passage_ids_are_deterministic_63_bit_and_pinned() -> None:
    # Indexes persist these ids: a change of scheme would orphan every stored vector.
    assert passage_id_for("CN112233445A", 0) == 7700786298702625910
    p = _long_patent()
    first, again = patent_passages(p), patent_passages(p)
    assert [x.passage_id for x in first] == [x.passage_id for x in again]
    ids = [x.passage_id for x in first]
    assert len(set(ids)) == len(ids) and all(0 <= i < 2**63 for i in ids)
    assert passage_id_for("CN112233445A", 1) != passage_id_for("CN112233445B", 1)
    # Another interpreter with a different hash seed computes the same ids.
    code = "from patentrank.chunking import passage_id_for; print(passage_id_for('CN112233445A', 0))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert int(out.stdout) == 7700786298702625910


@pytest.mark.skipif(qwen3_tokenizer_dir() is None, reason="../shared/tokenizers/qwen3 is absent")
def test_budget_holds_with_the_real_qwen3_tokenizer_on_the_sample_corpus() -> None:
    from transformers import AutoTokenizer

    count = tokenizer_counter(AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir())))
    patents = list(load_patents(sample_corpus_path()))
    for budget in (64, 512):
        for p in patents:
            passages = patent_passages(p, count, max_tokens=budget)
            assert all(count(x.text) <= budget for x in passages), p.id
    # The default estimate is close to Qwen3's counts (and errs high on Chinese).
    for p in patents:
        text = p.title + "\n" + p.abstract
        ratio = approx_tokens(text) / count(text)
        assert (1.0 if p.language == "zh" else 0.85) <= ratio <= 1.8, (p.id, ratio)


# ---------------------------------------------------------------- loaders


def test_sample_corpus_loads_cleanly_and_is_varied() -> None:
    stream = load_patents(sample_corpus_path())
    patents = list(stream)
    assert 40 <= len(patents) <= 60 and stream.report.rejected == []
    assert {p.language for p in patents} == {"zh", "en"}
    assert {"CN", "US", "EP", "WO"} <= {p.jurisdiction for p in patents}
    years = [d.year for p in patents for d in (p.priority_date, p.filing_date, p.publication_date) if d]
    assert min(years) <= 2006 and max(years) >= 2023
    for p in patents:
        dates = [d for d in (p.priority_date, p.filing_date, p.publication_date) if d]
        assert dates == sorted(dates), p.id
        assert 2 <= len(p.claims) <= 5 and any(len(g) > 1 for g in claim_groups(p.claims)), p.id
    markup = [p for p in patents if "<script>alert(1)</script>" in p.title + p.abstract]
    assert markup and "<b>bold</b>" in markup[0].title + markup[0].abstract


def test_jsonl_with_aliases_field_map_string_claims_and_extra_fields(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "c.jsonl",
        [
            json.dumps(
                {
                    "pub_no": "CN100404991C",
                    "abs": "大型水泥窑烟气治理的工艺及其装置",
                    "lang": "zh",
                    "ipc": ["F27D17/00"],
                    "cpc": "Y02P40/10; F27B7/20",
                    "claims": "1. 一种工艺。2. 根据权利要求1所述的工艺。",
                    "priority": "20080131",
                    "publication_date": 2009,
                    "year_range": "2008-2009",
                },
                ensure_ascii=False,
            )
        ],
    )
    [p] = list(load_jsonl(path, field_map={"id": "pub_no", "abstract": "abs"}))
    assert (p.id, p.jurisdiction, p.language) == ("CN100404991C", "CN", "zh")
    assert p.codes == ["F27D17/00", "Y02P40/10", "F27B7/20"]
    assert p.claims == ["一种工艺。", "根据权利要求1所述的工艺。"]
    assert (p.priority_date, p.publication_date) == (dt.date(2008, 1, 31), dt.date(2009, 1, 1))
    assert p.metadata == {"year_range": "2008-2009"}
    with pytest.raises(InputError, match="not Patent fields"):
        list(load_jsonl(path, field_map={"identifier": "pub_no"}))


BAD_JSONL = [
    json.dumps({"id": "US1", "title": "good one"}),
    "{not json",
    json.dumps({"title": "no id here"}),
    "",  # blank lines are not errors
    json.dumps({"id": "US2", "title": "bad date", "priority_date": "2020-02-31"}),
    json.dumps({"id": "US3", "title": "", "abstract": ""}),
    json.dumps(["a", "list"]),
    json.dumps({"id": "US4", "abstract": "fine", "claims": 7}),
    json.dumps({"id": "US5", "abstract": "also good"}),
]


def test_malformed_jsonl_lines_are_reported_with_line_numbers_when_lenient(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.jsonl", BAD_JSONL)
    stream = load_jsonl(path, strict=False)
    assert [p.id for p in stream] == ["US1", "US5"]
    report = stream.report
    assert report.loaded == 2
    assert [line for line, _ in report.rejected] == [2, 3, 5, 6, 7, 8]
    reasons = dict(report.rejected)
    assert "invalid JSON" in reasons[2]
    assert "missing id" in reasons[3]
    assert "priority_date" in reasons[5] and "2020-02-31" in reasons[5]
    assert "no text" in reasons[6]
    assert "not a JSON object" in reasons[7]
    assert "claims" in reasons[8]
    assert "line 2: invalid JSON" in report.summary()


def test_strict_loading_raises_at_the_first_bad_line_with_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.jsonl", BAD_JSONL)
    stream = load_jsonl(path, strict=True)
    assert next(stream).id == "US1"
    with pytest.raises(InputError, match=r"bad\.jsonl:2: invalid JSON"):
        next(stream)


def test_invalid_utf8_line_is_rejected_alone(tmp_path: Path) -> None:
    path = tmp_path / "enc.jsonl"
    path.write_bytes(
        b'{"id": "US1", "title": "ok"}\n{"id": "US2", "title": "\xff\xfe"}\n{"id": "US3", "title": "ok"}\n'
    )
    stream = load_jsonl(path, strict=False)
    assert [p.id for p in stream] == ["US1", "US3"]
    assert [line for line, _ in stream.report.rejected] == [2]


def test_gzipped_jsonl_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "WO2020123456A1", "title": "Gz"}) + "\n")
    assert [p.jurisdiction for p in load_patents(path)] == ["WO"]
    with pytest.raises(InputError, match="no such file"):
        list(load_patents(tmp_path / "absent.jsonl"))
    with pytest.raises(InputError, match="unknown corpus format"):
        load_patents(tmp_path / "c.xml")


def test_csv_with_field_map_lists_multiline_cells_and_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(
        "\ufeffpub_no,name,abs,ipc,applicants,filed,notes\n"
        'US2020123456A1,"Widget","A widget.\nSecond line.",'
        'G06T5/00; H04N5/21,"Acme, Inc.; Beta LLC",2020-01-31,x\n'
        'EP3456789B1,Gadget,A gadget.,["H01M10/44"],,20190101,\n'
        "CN1,,,,,,\n"
        "US1,Too,many,cells,a,b,c,d\n"
        "WO2019000001A1,Dated badly,text,,,2019-99-01,\n"
        "JP2019114567A,Last,text,,,2019,\n",
        encoding="utf-8",
    )
    stream = load_csv(
        path,
        field_map={"id": "pub_no", "title": "name", "abstract": "abs", "filing_date": "filed"},
        strict=False,
    )
    patents = list(stream)
    assert [p.id for p in patents] == ["US2020123456A1", "EP3456789B1", "JP2019114567A"]
    first = patents[0]
    assert first.abstract == "A widget.\nSecond line."
    assert first.codes == ["G06T5/00", "H04N5/21"]
    assert first.applicants == ["Acme, Inc.", "Beta LLC"]
    assert first.filing_date == dt.date(2020, 1, 31)
    assert first.metadata == {"notes": "x"}
    assert patents[1].codes == ["H01M10/44"] and patents[1].filing_date == dt.date(2019, 1, 1)
    # The quoted cell spans lines 2-3, so the bad rows are on lines 5, 6 and 7.
    assert [line for line, _ in stream.report.rejected] == [5, 6, 7]
    assert "no text" in stream.report.rejected[0][1]
    assert "8 cells" in stream.report.rejected[1][1]
    with pytest.raises(InputError, match=r"c\.csv:5: "):
        list(load_csv(path, field_map={"id": "pub_no", "title": "name", "abstract": "abs"}, strict=True))


def test_loaders_stream_lazily(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.jsonl", [json.dumps({"id": "US1", "title": "a"}), "{broken"])
    stream = load_jsonl(path, strict=True)
    assert next(stream).id == "US1"  # the bad second line has not been read yet


@pytest.mark.skipif(SHARED is None, reason="../shared (evaluation data) is not beside the repository")
def test_shared_evaluation_corpora_load_without_rejections() -> None:
    assert SHARED is not None
    data = SHARED / "data" / "wasteheat_zh_en_title2abs" / "corpus.jsonl"
    stream = load_patents(data, strict=True)
    patents = list(stream)
    assert len(patents) == sum(1 for line in data.open(encoding="utf-8") if line.strip())
    first = next(p for p in patents if p.codes)
    assert first.metadata.get("year_range") and "lang" not in first.metadata and "ipc" not in first.metadata
    by_office = {p.jurisdiction for p in patents}
    assert {"CN", "US", "WO", "EP"} <= by_office
    # Differential: script-share detection agrees with the collection's own language labels.
    detected = load_patents(data, field_map={"language": "no_such_column"})
    agree = sum(p.language == p.metadata["lang"] for p in detected)
    assert agree / len(patents) > 0.99
    for name in ("uspppm_phrase_ir", "xling_zh2en_chanemo"):
        stream = load_patents(SHARED / "data" / name / "corpus.jsonl", strict=True)
        assert sum(1 for _ in stream) > 1000 and stream.report.rejected == []


_UNITS = st.lists(
    st.text(alphabet=st.sampled_from(list("ab Cd。，锂电池12.;\n -")), min_size=0, max_size=40), max_size=12
)


@settings(max_examples=300, deadline=None)
@given(_UNITS, st.integers(min_value=3, max_value=30), st.sampled_from(["\n", ""]))
def test_pack_fast_budget_check_equals_recounting(units: list[str], budget: int, sep: str) -> None:
    """`pack` adds up approx_tokens per unit instead of recounting the growing chunk; a counter that is
    not `approx_tokens` itself takes the old path (recount every candidate): both must cut identically."""
    from patentrank.chunking import approx_tokens, pack

    def recount(text: str) -> int:
        return approx_tokens(text)

    assert pack(units, approx_tokens, budget, sep) == pack(units, recount, budget, sep)
