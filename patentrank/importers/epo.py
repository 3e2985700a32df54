"""EPO publication-server documents (`ep-patent-document`, DTD v1.0 to v1.7): bibliographic SDOBI
data, and the title, abstract, claims and description in every language the document carries."""

from __future__ import annotations

from xml.etree.ElementTree import Element

from patentrank.importers.record import (
    PatentRecord,
    normalize_classification,
    numbered_claims,
    paragraphs_of,
    parse_compact_date,
    text_of,
    unique,
)

ROOTS = {"ep-patent-document": "ep-patent-document"}


def parse(root: Element) -> PatentRecord:
    """The record of one `ep-patent-document` element."""
    sdobi = root.find("SDOBI")
    if sdobi is None:
        raise ValueError("<ep-patent-document> has no SDOBI bibliographic block")
    number = text_of(sdobi.find("B100/B110")) or root.get("doc-number", "")
    if not number:
        raise ValueError("no publication number (B110 or doc-number)")
    record = PatentRecord(
        format=ROOTS[root.tag],
        country=text_of(sdobi.find("B100/B190")) or root.get("country", "EP"),
        doc_number=number,
        kind=text_of(sdobi.find("B100/B130")) or root.get("kind", ""),
        language=(root.get("lang") or "").lower() or None,
        publication_date=parse_compact_date(text_of(sdobi.find("B100/B140/date")) or root.get("date-publ")),
        filing_date=parse_compact_date(text_of(sdobi.find("B200/B220/date"))),
        application_number=text_of(sdobi.find("B200/B210")) or None,
        dtd_version=root.get("dtd-version"),
        language_of_filing=text_of(sdobi.find("B200/B250")) or None,
    )
    record.priority_dates = sorted(
        d for d in (parse_compact_date(text_of(e.find("date"))) for e in sdobi.iter("B320")) if d
    )
    ipc = [
        normalize_classification(text_of(t)) for t in sdobi.findall("B500/B510EP/classification-ipcr/text")
    ]
    if not ipc:  # DTD before v1.2: IPC-7 main (B511) and further (B512) symbols
        ipc = [
            normalize_classification(text_of(e))
            for e in sdobi.findall("B500/B510/*")
            if e.tag in ("B511", "B512")
        ]
    record.ipc = unique(ipc)
    record.cpc = unique(  # v1.5+ documents may carry B520EP CPC symbols
        normalize_classification(text_of(c.find("text")) or text_of(c))
        for c in sdobi.iter("classification-cpc")
    )
    titles = sdobi.find("B500/B540")
    if titles is not None:
        lang = None
        for element in titles:
            if element.tag == "B541":
                lang = text_of(element).lower()
            elif element.tag == "B542" and text_of(element):
                record.titles[lang or record.language or "en"] = text_of(element)
    applicants = sdobi.findall("B700/B710/B711")
    record.applicants = unique(text_of(a.find("snm")) for a in applicants or sdobi.findall("B700/B730/B731"))
    record.inventors = unique(text_of(i.find("snm")) for i in sdobi.findall("B700/B720/B721"))
    for element in root:
        lang = (element.get("lang") or record.language or "en").lower()
        if element.tag == "abstract" and text_of(element):
            record.abstracts.setdefault(lang, paragraphs_of(element))
        elif element.tag == "claims":
            claims = numbered_claims(element.findall("claim"))
            if claims:
                record.claims.setdefault(lang, claims)
        elif element.tag == "description" and text_of(element):
            record.descriptions.setdefault(lang, paragraphs_of(element))
    return record
