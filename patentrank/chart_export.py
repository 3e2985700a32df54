"""A claim chart as CSV (one row per element per reference), XLSX (elements down, references
across, as analysts lay charts out) and a self-contained HTML table."""

from __future__ import annotations

import csv
import html
import io
from pathlib import Path

from patentrank.claim_chart import ClaimChart

CSV_COLUMNS = [
    "reference",
    "coverage",
    "element",
    "element_text",
    "score",
    "covered",
    "passage_id",
    "passage",
]


def chart_rows(chart: ClaimChart) -> list[list[object]]:
    """Rows in CSV_COLUMNS order, references in chart order, elements in claim order."""
    rows: list[list[object]] = []
    for ref in chart.references:
        for cell in ref.cells:
            rows.append(
                [
                    ref.id,
                    round(ref.coverage, 4),
                    cell.element,
                    chart.elements[cell.element],
                    round(cell.score, 6),
                    cell.score >= chart.threshold,
                    cell.passage_id if cell.passage_id is not None else "",
                    cell.text,
                ]
            )
    return rows


def chart_csv(chart: ClaimChart) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    writer.writerows([_excel_text(v) if isinstance(v, str) else v for v in row] for row in chart_rows(chart))
    return buffer.getvalue()


def chart_xlsx_bytes(chart: ClaimChart) -> bytes:
    """Sheet 'Chart': one row per element, two columns (score, passage) per reference; sheet 'Cells':
    the CSV rows."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill

    book = Workbook()
    sheet = book.active
    sheet.title = "Chart"
    header = ["#", "Claim element"]
    for ref in chart.references:
        header += [f"{ref.id} score", f"{ref.id} passage ({ref.coverage:.0%} covered)"]
    sheet.append(header)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    covered_fill = PatternFill("solid", fgColor="C6EFCE")
    for index, element in enumerate(chart.elements):
        row: list[object] = [index, element]
        for ref in chart.references:
            row += [round(ref.cells[index].score, 4), _excel_text(ref.cells[index].text)]
        sheet.append(row)
        for position, ref in enumerate(chart.references):
            if ref.cells[index].score >= chart.threshold:
                sheet.cell(row=index + 2, column=3 + 2 * position).fill = covered_fill
    for column in sheet.iter_cols(min_row=2):
        for cell in column:
            cell.alignment = Alignment(wrap_text=True, vertical="top")
    cells = book.create_sheet("Cells")
    cells.append(CSV_COLUMNS)
    for row in chart_rows(chart):
        cells.append([_excel_text(v) if isinstance(v, str) else v for v in row])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _excel_text(value: str) -> str:
    # A passage starting with = + - @ would be read as a formula by spreadsheet programs.
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def chart_table_html(chart: ClaimChart) -> str:
    """The chart as an HTML table (every text escaped): elements down, references across."""
    esc = html.escape
    head = "".join(
        f"<th>{esc(r.id)}<br><small>{esc(r.title)}<br>{r.coverage:.0%} covered</small></th>"
        for r in chart.references
    )
    body = []
    for index, element in enumerate(chart.elements):
        cells = []
        for ref in chart.references:
            cell = ref.cells[index]
            klass = "covered" if cell.score >= chart.threshold else "open"
            cells.append(f'<td class="{klass}"><b>{cell.score:.3f}</b><br>{esc(cell.text[:600])}</td>')
        body.append(f"<tr><th>{index}</th><td>{esc(element)}</td>{''.join(cells)}</tr>")
    return (
        f"<table class='claim-chart'><tr><th>#</th><th>Claim element</th>{head}</tr>{''.join(body)}</table>"
    )


def chart_html(chart: ClaimChart) -> str:
    """A standalone page around `chart_table_html`, covered cells shaded."""
    esc = html.escape
    source = f"<p>{esc(chart.source)}</p>" if chart.source else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Claim chart</title><style>"
        "table{border-collapse:collapse}td,th{border:1px solid #999;padding:4px;vertical-align:top;"
        "font:13px sans-serif;max-width:28em}.covered{background:#c6efce}.open{background:#fde2e1}"
        f"</style></head><body><h1>Claim chart</h1>{source}<p>{esc(chart.claim)}</p>"
        f"<p>Covered at score &ge; {chart.threshold:g}</p>"
        f"{chart_table_html(chart)}</body></html>"
    )


def write_chart(chart: ClaimChart, path: str | Path) -> Path:
    """Write the chart in the format its suffix names (.csv, .xlsx, .html, .json)."""
    import json

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        path.write_text(chart_csv(chart), encoding="utf-8")
    elif suffix == ".xlsx":
        path.write_bytes(chart_xlsx_bytes(chart))
    elif suffix in (".html", ".htm"):
        path.write_text(chart_html(chart), encoding="utf-8")
    elif suffix == ".json":
        path.write_text(json.dumps(chart.as_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
    else:
        raise ValueError(f"{path}: write .csv, .xlsx, .html or .json")
    return path
