"""Untrusted XML: a billion-laughs file and external-entity files are refused, nothing is ever
fetched (a loopback HTTP server counts requests), and the rest of the file still imports."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from patentrank.importers import iter_records, load_xml_patents

FIXTURES = Path(__file__).parent / "fixtures" / "patent_xml"
GOOD = (FIXTURES / "us_weekly_3docs.xml").read_text().split("<?xml ")[2]  # the design patent


@pytest.fixture()
def trap_server() -> Iterator[tuple[str, list[str]]]:
    """A loopback server that records every path asked for (the test passes when none is)."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            body = b'<!ENTITY leak "LEAKED">'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()


def test_billion_laughs_is_refused_without_expanding() -> None:
    ((_, record, error),) = list(iter_records(FIXTURES / "billion_laughs.xml", "uspto"))
    assert record is None and "declares entity 'lol'" in error


def test_external_file_entity_is_refused() -> None:
    ((_, record, error),) = list(iter_records(FIXTURES / "external_entity.xml", "uspto"))
    assert record is None and "file:///etc/passwd" in error and "refused" in error


def test_nothing_is_fetched_and_the_next_document_still_imports(trap_server, tmp_path: Path) -> None:
    url, hits = trap_server
    body = (
        "<us-patent-grant lang='EN' country='US'><us-bibliographic-data-grant><publication-reference>"
        "<document-id><country>US</country><doc-number>11999005</doc-number><kind>B1</kind></document-id>"
        "</publication-reference><invention-title>Title &leak;</invention-title>"
        "</us-bibliographic-data-grant>"
        "</us-patent-grant>\n"
    )
    documents = [
        f'<?xml version="1.0"?>\n<!DOCTYPE us-patent-grant SYSTEM "{url}/external.dtd">\n{body}',
        f'<?xml version="1.0"?>\n<!DOCTYPE us-patent-grant [<!ENTITY % p SYSTEM "{url}/p.dtd"> %p;]>\n{body}',
        f'<?xml version="1.0"?>\n<!DOCTYPE us-patent-grant [<!ENTITY leak SYSTEM "{url}/x">]>\n{body}',
        "<?xml " + GOOD,
    ]
    path = tmp_path / "traps.xml"
    path.write_text("".join(documents))
    stream = load_xml_patents(path)
    patents = list(stream)
    assert hits == []  # no DTD, parameter entity or external entity was requested
    # The external DTD is not read, so &leak; stays literal text instead of the server's "LEAKED".
    assert [p.id for p in patents] == ["US11999005B1", "USD999001S1"]
    assert patents[0].title == "Title &leak;"
    assert [index for index, _ in stream.report.rejected] == [1, 2]
    assert all("refused" in reason for _, reason in stream.report.rejected)


def test_control_a_plain_parser_would_expand_the_entity() -> None:
    """Negative control: the stdlib's own expat setup does expand internal entities, so the refusal
    above is our parser's doing, not a property of the file."""
    import xml.etree.ElementTree as ET

    text = "<!DOCTYPE t [<!ENTITY e 'expanded'>]><t>&e;</t>"
    assert ET.fromstring(text).text == "expanded"
    ((_, record, error),) = list(iter_records_from_text(text))
    assert record is None and "entity 'e'" in error


def iter_records_from_text(text: str):
    import io

    from patentrank.importers.safe_xml import iter_documents

    for doc in iter_documents(io.BytesIO(text.encode())):
        yield doc.index, doc.root, doc.error
