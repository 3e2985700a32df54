"""Bulk XML importers: every field of the real documents in ../shared/data/patent_formats against
its expected.jsonl, our own fixtures for the traps (cancelled claims, design/plant patents, several
languages, undeclared prefixes, DOCDB entities), streaming across chunk boundaries, .zip/.gz, and
the CLI end to end into a real index."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from patentrank.errors import InputError
from patentrank.importers import detect_format, iter_records, load_xml_patents
from patentrank.importers.safe_xml import iter_documents
from patentrank.testing import find_shared_dir

FIXTURES = Path(__file__).parent / "fixtures" / "patent_xml"
SHARED = find_shared_dir()
FORMATS_DIR = SHARED / "data" / "patent_formats" if SHARED else None
needs_formats = pytest.mark.skipif(
    FORMATS_DIR is None or not (FORMATS_DIR / "expected.jsonl").is_file(),
    reason="../shared/data/patent_formats (real office documents and expected.jsonl) is absent",
)


def expected_rows() -> list[dict[str, Any]]:
    assert FORMATS_DIR is not None
    return [json.loads(line) for line in (FORMATS_DIR / "expected.jsonl").read_text().splitlines() if line]


def mismatches(expected: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    """Every field of `expected` that the importer's summary gets wrong, as 'field: got != want'."""
    return [
        f"{key}: {summary.get(key)!r} != {value!r}"
        for key, value in expected.items()
        if key not in ("file", "doc_index") and summary.get(key) != value
    ]


@needs_formats
def test_every_field_of_every_real_document_matches_expected() -> None:
    assert FORMATS_DIR is not None
    by_file: dict[str, list[Any]] = {}
    problems = []
    rows = expected_rows()
    for row in rows:
        records = by_file.setdefault(row["file"], list(iter_records(FORMATS_DIR / row["file"])))
        index, record, error = records[row.get("doc_index", 0)]
        assert error is None, f"{row['file']}#{index}: {error}"
        problems += [f"{row['file']}#{index} {p}" for p in mismatches(row, record.summary())]
    assert not problems, "\n".join(problems)
    # Every document of every file is accounted for: no extra or missing records.
    for name, records in by_file.items():
        assert len(records) == sum(1 for r in rows if r["file"] == name)
    assert len(rows) == 16


@needs_formats
def test_comparison_catches_a_wrong_field() -> None:
    """Negative control: the comparison above fails when one field is off."""
    assert FORMATS_DIR is not None
    row = dict(expected_rows()[0], cpc=["A61B5/0205"])
    _, record, _ = next(iter_records(FORMATS_DIR / row["file"]))
    assert mismatches(row, record.summary()) and mismatches(row, record.summary())[0].startswith("cpc")


@needs_formats
@pytest.mark.parametrize("chunk", [5, 97, 4096])
def test_documents_split_the_same_at_any_chunk_size(chunk: int) -> None:
    assert FORMATS_DIR is not None
    for path in sorted((FORMATS_DIR / "raw").rglob("*.xml")):
        data = path.read_bytes()
        records = frozenset({"exchange-document"}) if "docdb" in path.parts else frozenset()
        whole = [ET_text(d.root) for d in iter_documents(io.BytesIO(data), records)]
        pieces = [ET_text(d.root) for d in iter_documents(io.BytesIO(data), records, chunk_bytes=chunk)]
        assert pieces == whole and all(whole), path.name


def ET_text(root: Any) -> str:
    return "" if root is None else root.tag + "".join(root.itertext())[:2000]


@needs_formats
def test_format_detection_of_every_real_file() -> None:
    assert FORMATS_DIR is not None
    raw = FORMATS_DIR / "raw"
    assert detect_format(raw / "uspto-grant" / "US08926509B2.xml") == "uspto"
    assert detect_format(raw / "uspto-application" / "ipa251002_2docs.xml") == "uspto"
    assert detect_format(raw / "ep-fulltext" / "EP3404678B1.xml") == "ep"
    assert detect_format(raw / "docdb" / "DOCDB-202407-009-DE-0074_10docs.xml") == "docdb"
    assert detect_format(raw / "cnipa" / "CN106504675A.xml") == "cnipa"  # UTF-8 BOM first


@needs_formats
def test_ep_languages_are_kept_and_the_search_language_picks_the_indexed_text() -> None:
    assert FORMATS_DIR is not None
    path = FORMATS_DIR / "raw" / "ep-fulltext" / "EP3404678B1.xml"
    ((_, record, _),) = list(iter_records(path))
    assert list(record.claims) == ["en", "de", "fr"] and all(len(c) == 12 for c in record.claims.values())
    english, german = next(load_xml_patents(path)), next(load_xml_patents(path, language="de"))
    assert english.language == "en" and english.title.startswith("HIGH VOLTAGE")
    assert german.language == "de" and german.title.startswith("HOCHSPANNUNG")
    assert german.claims[0] != english.claims[0] and "Hochspannung" in german.claims[0]
    assert "EPO <DP" not in " ".join(english.claims)  # XML comments never reach the text
    assert record.claims["en"][2].depends_on == [1, 2]  # "according to claim 1 or 2"
    assert record.claims["en"][3].depends_on == [1, 2, 3]  # "any one of the preceding claims"


@needs_formats
def test_us_claim_dependencies_come_from_claim_refs() -> None:
    assert FORMATS_DIR is not None
    ((_, record, _),) = list(iter_records(FORMATS_DIR / "raw" / "uspto-grant" / "US08926509B2.xml"))
    claims = record.claims["en"]
    assert [c.number for c in claims] == list(range(1, 32))
    assert claims[0].independent and claims[1].depends_on == [1]
    patent = record.to_patent()
    assert patent.id == "US8926509B2" and patent.metadata["publication_number_original"] == "US08926509B2"
    assert patent.metadata["assignees"] == ["Hmicro, Inc."]


def test_own_weekly_fixture_cancelled_design_plant_and_a_broken_document() -> None:
    stream = load_xml_patents(FIXTURES / "us_weekly_3docs.xml")
    patents = {p.id: p for p in stream}
    assert list(patents) == ["US20990000001A1", "USD999001S1", "USPP34001P3"]
    assert stream.report.rejected == [(2, "malformed XML: mismatched tag at line 7, column 2")]
    app = patents["US20990000001A1"]
    assert app.claims[0] == "(canceled)" and app.metadata["cancelled_claims"] == [1]
    assert app.claims[1].startswith("A battery cell comprising: an anode comprising silicon particles;")
    assert app.metadata["claims_info"][2] == {"number": 3, "depends_on": [2], "cancelled": False}
    assert app.priority_date.isoformat() == "2097-04-02"  # the earlier of two; the provisional is not one
    assert app.metadata["us_provisional_dates"] == ["2096-01-01"]
    assert app.title == "Battery cell with a silicon & carbon anode"
    assert app.description == "BACKGROUND\nSilicon anodes swell.\nThe matrix absorbs the swelling."
    assert app.codes == ["H01M10/0525", "Y02E60/10"] and app.applicants == ["Example Cells & Co."]
    design = patents["USD999001S1"]
    assert design.metadata["application_type"] == "design" and design.abstract == ""
    assert patents["USPP34001P3"].title == "Apple tree named ‘Crisp One’"


def test_strict_stops_at_the_first_bad_document_naming_file_and_index() -> None:
    stream = load_xml_patents(FIXTURES / "us_weekly_3docs.xml", strict=True)
    with pytest.raises(InputError, match=r"us_weekly_3docs.xml: document 2: malformed XML"):
        list(stream)


def test_docdb_undeclared_prefix_and_dtd_only_entities() -> None:
    ((_, record, error),) = list(iter_records(FIXTURES / "docdb_wo_undeclared_prefix.xml"))
    assert error is None
    assert record.applicants == ["ŚLĄSKA BATERIA SPÓŁKA"]  # &SACUTE; &Aogon; &Oacute; and &#x141;
    assert record.applicants_docdb == ["SLASKA BATERIA SP Z O O"]
    assert record.cpc == ["H01M10/0525", "Y02E60/10"]  # the US 'UC' symbol is not CPC
    assert record.priority_date.isoformat() == "2097-02-12" and record.family_id == "123456789"
    assert record.title == "Battery cell" and record.language_of_filing == "pl" and record.language is None


def test_ep_fixture_priority_applicant_and_language_choice() -> None:
    ((_, record, _),) = list(iter_records(FIXTURES / "ep_a1_two_languages.xml"))
    assert record.priority_date.isoformat() == "2096-03-01" and record.applicants == ["Beispiel Ventile GmbH"]
    assert record.claims["de"][2].depends_on == [1, 2]  # "nach einem der vorhergehenden Ansprüche"
    assert (
        next(load_xml_patents(FIXTURES / "ep_a1_two_languages.xml")).abstract
        == "A valve has a magnetic drive."
    )
    german = next(load_xml_patents(FIXTURES / "ep_a1_two_languages.xml", language="de"))
    assert (
        german.abstract == "Ein Ventil hat einen Magnetantrieb."
        and german.description == "Ventile sind bekannt."
    )


@pytest.mark.parametrize("packing", ["zip", "gz"])
def test_zip_and_gzip_as_downloaded(packing: str, tmp_path: Path) -> None:
    source = FIXTURES / "us_weekly_3docs.xml"
    if packing == "zip":
        target = tmp_path / "ipa990105.zip"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.write(source, "ipa990105.xml")
    else:
        target = tmp_path / "ipa990105.xml.gz"
        target.write_bytes(gzip.compress(source.read_bytes()))
    assert detect_format(target) == "uspto"
    assert [p.id for p in load_xml_patents(target)] == ["US20990000001A1", "USD999001S1", "USPP34001P3"]


def test_unknown_content_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "notes.xml"
    path.write_text("<?xml version='1.0'?><notes><note>hi</note></notes>")
    with pytest.raises(InputError, match="--format") as info:
        load_xml_patents(path)
    assert info.value.field == "format"
    ((_, record, error),) = list(iter_records(path, "uspto"))  # forced: the document is reported, not a crash
    assert record is None and "unsupported root element <notes>" in error


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "patentrank", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def test_cli_indexes_a_weekly_file_and_reports_the_broken_document(tmp_path: Path) -> None:
    index = tmp_path / "ix"
    done = run_cli(
        "index", str(FIXTURES / "us_weekly_3docs.xml"), "--index", str(index), "--no-embed", "--json"
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    (file_report,) = report["files"].values()
    assert file_report["added"] == 3 and file_report["rejected"][0]["where"] == "document 2"
    assert report["index"]["patents"] == 3
    from patentrank.index.patent_index import PatentIndex

    stored = PatentIndex(index, read_only=True).docstore.get_patent("US20990000001A1")
    assert stored is not None and stored.metadata["cancelled_claims"] == [1]
    strict = run_cli(
        "index", str(FIXTURES / "us_weekly_3docs.xml"), "--index", str(index), "--no-embed", "--strict"
    )
    assert strict.returncode == 2 and "document 2" in strict.stderr and "Traceback" not in strict.stderr
    bad = run_cli(
        "index", str(FIXTURES / "us_weekly_3docs.xml"), "--format", "pdf", "--no-embed", "--index", str(index)
    )
    assert bad.returncode == 2 and "--format must be one of" in bad.stderr


def test_not_well_formed_ep_text_is_repaired_and_marked() -> None:
    """A bare '&' and a '<' that opens no tag (both occur in real EPO files) are escaped and the
    document parsed again; the patent says so in its metadata."""
    stream = load_xml_patents(FIXTURES / "ep_b1_not_well_formed.xml")
    (patent,) = list(stream)
    assert stream.report.rejected == []
    assert patent.title == "Cell & casing" and patent.applicants == ["Smith & Sons Ltd"]
    assert patent.description.startswith("<First Embodiment\nA cell & its casing.")
    assert patent.metadata["xml_repaired"] is True
    assert patent.codes == ["H01M10/40", "H01M4/58"]  # IPC-7 B511/B512 with the edition digit
    clean = next(load_xml_patents(FIXTURES / "ep_a1_two_languages.xml"))
    assert "xml_repaired" not in clean.metadata


def test_docdb_fragment_without_doctype_resolves_docdb_entities() -> None:
    ((_, record, error),) = list(iter_records(FIXTURES / "docdb_fragment_no_doctype.xml", "docdb"))
    assert error is None
    # DOCDB's own table: &SACUTE; is a capital, &EACUTE; a small letter; &agr; is ISO Greek.
    assert record.applicants == ["ŚWIDNIK éCOLE α"] and record.family_id == "42"


def test_sequence_listings_in_a_weekly_file_are_skipped_not_rejected() -> None:
    stream = load_xml_patents(FIXTURES / "us_weekly_with_sequence_listing.xml")
    assert [p.id for p in stream] == ["USD999001S1"]
    assert stream.skipped == 1 and stream.report.rejected == []
