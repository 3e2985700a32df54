"""CNIPA XML (`business:PatentDocumentAndRelated`, the CN-BIBS/CN-TXTS products): bibliographic
data, abstract and, where the product carries them, claims and description."""

from __future__ import annotations

from xml.etree.ElementTree import Element

from patentrank.importers.record import (
    PatentRecord,
    code_from_parts,
    normalize_classification,
    numbered_claims,
    paragraphs_of,
    parse_compact_date,
    text_of,
    unique,
)

ROOTS = {"PatentDocumentAndRelated": "cnipa-xml"}


def _standard(parent: Element, tag: str) -> Element | None:
    """The `dataFormat="standard"` reference (else the first) of kind `tag`, as its DocumentID."""
    refs = parent.findall(tag)
    ref = next((r for r in refs if r.get("dataFormat") == "standard"), refs[0] if refs else None)
    return ref.find("DocumentID") if ref is not None else None


def _ipc(entry: Element) -> str | None:
    parts = [text_of(entry.find(t)) for t in ("Section", "MainClass", "Subclass", "MainGroup", "Subgroup")]
    return code_from_parts(*parts) if all(parts) else normalize_classification(text_of(entry.find("Text")))


def parse(root: Element) -> PatentRecord:
    """The record of one `PatentDocumentAndRelated` element."""
    biblio = root.find("BibliographicData")
    if biblio is None:
        raise ValueError("<PatentDocumentAndRelated> has no BibliographicData")
    pub = _standard(biblio, "PublicationReference")
    number = (text_of(pub.find("DocNumber")) if pub is not None else "") or root.get("docNumber", "")
    if not number:
        raise ValueError("no publication DocNumber")
    record = PatentRecord(
        format=ROOTS[root.tag],
        country=(text_of(pub.find("WIPOST3Code")) if pub is not None else "") or root.get("country", "CN"),
        doc_number=number,
        kind=(text_of(pub.find("Kind")) if pub is not None else "") or root.get("kind", ""),
        language=(root.get("lang") or "").lower() or None,
        dtd_version=root.get("xsdVersion"),
    )
    record.publication_date = parse_compact_date(
        (text_of(pub.find("Date")) if pub is not None else "") or root.get("datePublication")
    )
    application = _standard(biblio, "ApplicationReference")
    if application is not None:
        record.filing_date = parse_compact_date(text_of(application.find("Date")))
        record.application_number = text_of(application.find("DocNumber")) or None
    record.priority_dates = sorted(
        d
        for d in (parse_compact_date(text_of(e)) for p in biblio.iter("Priority") for e in p.iter("Date"))
        if d
    )
    record.ipc = unique(_ipc(e) for e in biblio.iter("ClassificationIPCR")) or unique(
        # IPC-7 era records: `ClassificationIPC` holds the symbols as text
        normalize_classification(text_of(e))
        for c in biblio.iter("ClassificationIPC")
        for e in c.iter()
        if e.text and e.text.strip() and len(e) == 0
    )
    record.cpc = unique(_ipc(e) for e in biblio.iter("ClassificationCPC"))
    for title in biblio.findall("InventionTitle"):
        lang = (title.get("lang") or record.language or "zh").lower()
        if text_of(title):
            record.titles.setdefault(lang, text_of(title))
    for applicant in biblio.iter("Applicant"):
        book = applicant.find("AddressBook")
        if book is not None:
            name = text_of(book.find("Name")) or text_of(book.find("OrganizationName"))
            if name and name not in record.applicants:
                record.applicants.append(name)
    record.inventors = unique(text_of(i.find("AddressBook/Name")) for i in biblio.iter("Inventor"))
    for abstract in root.findall("Abstract"):
        lang = (abstract.get("lang") or record.language or "zh").lower()
        text = paragraphs_of(abstract, ("Paragraphs", "P"))
        if text:
            record.abstracts.setdefault(lang, text)
    claims = numbered_claims(root.iter("Claim"))
    if claims:
        record.claims[record.language or "zh"] = claims
    description = root.find("Description")
    if description is not None and text_of(description):
        record.descriptions[record.language or "zh"] = paragraphs_of(
            description, ("Paragraphs", "P", "Heading")
        )
    return record
