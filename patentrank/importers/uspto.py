"""USPTO grant (`us-patent-grant`) and pre-grant application (`us-patent-application`) full text,
ICE DTD v4.0 to v4.7, including design, plant and reissue documents."""

from __future__ import annotations

import re
from xml.etree.ElementTree import Element

from patentrank.claims import Claim
from patentrank.importers.record import (
    PatentRecord,
    code_from_parts,
    normalize_classification,
    paragraphs_of,
    parse_compact_date,
    text_of,
    unique,
)

ROOTS = {"us-patent-grant": "uspto-grant-ice-v4", "us-patent-application": "uspto-application-ice-v4"}
_CLAIM_ID = re.compile(r"(\d+)")


def _name(party: Element) -> str:
    """`orgname`, or 'first-name last-name', of an applicant, inventor or assignee."""
    book = party.find("addressbook")
    book = book if book is not None else party
    org = text_of(book.find("orgname"))
    if org:
        return org
    return " ".join(p for p in (text_of(book.find("first-name")), text_of(book.find("last-name"))) if p)


def _cpc(element: Element) -> str | None:
    return code_from_parts(
        *(text_of(element.find(t)) for t in ("section", "class", "subclass", "main-group", "subgroup"))
    )


def _claims(root: Element) -> list[Claim]:
    claims = []
    for position, claim in enumerate(root.findall("claims/claim"), start=1):
        digits = _CLAIM_ID.search(claim.get("num", ""))
        number = int(digits.group(1)) if digits else position
        refs = []
        for ref in claim.iter("claim-ref"):
            found = _CLAIM_ID.search(ref.get("idref", ""))
            if found:
                refs.append(int(found.group(1)))
        claims.append(Claim.parse(text_of(claim), number, refs or None))
    return claims


def parse(root: Element) -> PatentRecord:
    """The record of one `us-patent-grant` / `us-patent-application` element."""
    biblio = next((c for c in root if c.tag.startswith("us-bibliographic-data")), None)
    if biblio is None:
        raise ValueError(f"<{root.tag}> has no us-bibliographic-data-grant/-application")
    pub = biblio.find("publication-reference/document-id")
    if pub is None or not text_of(pub.find("doc-number")):
        raise ValueError("no publication-reference/document-id/doc-number")
    application = biblio.find("application-reference")
    record = PatentRecord(
        format=ROOTS[root.tag],
        country=text_of(pub.find("country")) or root.get("country", "US"),
        doc_number=text_of(pub.find("doc-number")),
        kind=text_of(pub.find("kind")),
        language=(root.get("lang") or "").lower() or None,
        publication_date=parse_compact_date(text_of(pub.find("date")) or root.get("date-publ")),
        dtd_version=root.get("dtd-version"),
    )
    if application is not None:
        record.filing_date = parse_compact_date(text_of(application.find("document-id/date")))
        record.application_number = text_of(application.find("document-id/doc-number")) or None
        record.application_type = application.get("appl-type")
    record.priority_dates = sorted(
        d
        for d in (
            parse_compact_date(text_of(p.find("date")))
            for p in biblio.findall("priority-claims/priority-claim")
        )
        if d
    )
    record.us_provisional_dates = [
        d
        for d in (
            parse_compact_date(text_of(p.find("document-id/date")))
            for p in biblio.findall("us-related-documents/us-provisional-application")
        )
        if d
    ]
    # IPC: IPC-8 `classifications-ipcr` (v4.1+), else the IPC-7 text of v4.0 `classification-ipc`.
    ipcr = [_cpc(c) for c in biblio.findall("classifications-ipcr/classification-ipcr")]
    ipc7 = [
        normalize_classification(text_of(c))
        for c in biblio.findall("classification-ipc/*")
        if c.tag in ("main-classification", "further-classification")
    ]
    record.ipc = unique(ipcr or ipc7)
    cpc = biblio.find("classifications-cpc")
    if cpc is not None:
        record.cpc = unique(
            [
                _cpc(c)
                for part in ("main-cpc", "further-cpc")
                for c in cpc.findall(f"{part}/classification-cpc")
            ]
        )
        record.cpc_combination_sets = [
            unique(_cpc(c) for c in group.iter("classification-cpc")) for group in cpc.iter("combination-set")
        ]
    title = text_of(biblio.find("invention-title"))
    if title:
        record.titles[record.language or "en"] = title
    parties = biblio.find("us-parties")
    if parties is not None:
        applicants = parties.findall("us-applicants/us-applicant")
        inventors = parties.findall("inventors/inventor")
    else:
        parties = biblio.find("parties")
        applicants = parties.findall("applicants/applicant") if parties is not None else []
        inventors = parties.findall("inventors/inventor") if parties is not None else []
    record.applicants = unique(_name(a) for a in applicants)
    record.inventors = unique(_name(i) for i in inventors)
    record.assignees = unique(_name(a) for a in biblio.findall("assignees/assignee"))
    lang = record.language or "en"
    abstract = paragraphs_of(root.find("abstract"))
    if abstract:
        record.abstracts[lang] = abstract
    claims = _claims(root)
    if claims:
        record.claims[lang] = claims
    description = paragraphs_of(root.find("description"))
    if description:
        record.descriptions[lang] = description
    return record
