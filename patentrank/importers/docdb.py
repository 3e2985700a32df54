"""EPO DOCDB exchange documents (`exch:exchange-document`, alone or in an `exch:exchange-documents`
container): bibliographic data of every office, with DOCDB family ids."""

from __future__ import annotations

from xml.etree.ElementTree import Element

from patentrank.importers.record import (
    PatentRecord,
    normalize_classification,
    paragraphs_of,
    parse_compact_date,
    text_of,
    unique,
)

ROOTS = {"exchange-document": "docdb-exchange"}
CONTAINERS = frozenset({"exchange-documents"})
CPC_SCHEMES = ("CPCI", "CPCA")  # inventive and additional CPC; not FI, ICO, F-terms


class DeletedRecord(ValueError):
    """A DOCDB delete (status="D"): the record carries no data to import."""


def _names(parties: Element | None, kind: str, data_format: str) -> list[str]:
    if parties is None:
        return []
    return unique(
        text_of(p.find(f"{kind}-name/name"))
        for p in parties.findall(f"{kind}s/{kind}")
        if p.get("data-format") == data_format
    )


def parse(root: Element) -> PatentRecord:
    """The record of one `exchange-document` element."""
    if root.get("status") == "D":
        raise DeletedRecord(
            f"DOCDB delete record for {root.get('country')}{root.get('doc-number')}{root.get('kind')}"
        )
    biblio = root.find("bibliographic-data")
    if biblio is None:
        raise ValueError("<exchange-document> has no bibliographic-data")
    pub = next((p for p in biblio.findall("publication-reference") if p.get("data-format") == "docdb"), None)
    pub_id = pub.find("document-id") if pub is not None else None
    number = root.get("doc-number") or (text_of(pub_id.find("doc-number")) if pub_id is not None else "")
    if not number:
        raise ValueError("no doc-number")
    record = PatentRecord(
        format=ROOTS[root.tag],
        country=root.get("country") or (text_of(pub_id.find("country")) if pub_id is not None else ""),
        doc_number=number,
        kind=root.get("kind") or (text_of(pub_id.find("kind")) if pub_id is not None else ""),
        language=None,  # DOCDB states no publication language
        family_id=root.get("family-id") or None,
    )
    record.publication_date = parse_compact_date(
        (text_of(pub_id.find("date")) if pub_id is not None else "") or root.get("date-publ")
    )
    application = next(
        (a for a in biblio.findall("application-reference") if a.get("data-format") == "docdb"), None
    )
    if application is not None:
        record.filing_date = parse_compact_date(text_of(application.find("document-id/date")))
        record.application_number = text_of(application.find("document-id/doc-number")) or None
    record.priority_dates = sorted(
        d
        for d in (
            parse_compact_date(text_of(p.find("document-id/date")))
            for p in biblio.findall("priority-claims/priority-claim")
            if p.get("data-format") == "docdb"
        )
        if d
    )
    record.ipc = unique(
        normalize_classification(text_of(c.find("text")))
        for c in biblio.findall("classifications-ipcr/classification-ipcr")
    ) or unique(  # records classified before IPC-8: the IPC-7 main and further symbols
        normalize_classification(text_of(c))
        for c in biblio.findall("classification-ipc/*")
        if c.tag in ("main-classification", "further-classification")
    )
    record.cpc = unique(
        normalize_classification(text_of(c.find("classification-symbol")))
        for c in biblio.findall("patent-classifications/patent-classification")
        if (
            c.find("classification-scheme") is not None
            and c.find("classification-scheme").get("scheme") in CPC_SCHEMES
        )
    )
    for title in biblio.findall("invention-title"):
        lang = (title.get("lang") or "").lower() or "und"
        if text_of(title):
            record.titles.setdefault(lang, text_of(title))
    parties = biblio.find("parties")
    record.applicants = _names(parties, "applicant", "docdba")
    record.applicants_docdb = _names(parties, "applicant", "docdb")
    record.inventors = _names(parties, "inventor", "docdba") or _names(parties, "inventor", "docdb")
    filing_language = next(root.iter("language-of-filing"), None)
    record.language_of_filing = (
        (text_of(filing_language).lower() or None) if filing_language is not None else None
    )
    for abstract in root.iter("abstract"):
        lang = (abstract.get("lang") or "").lower() or "und"
        if text_of(abstract):
            record.abstracts.setdefault(lang, paragraphs_of(abstract))
    return record
