"""Exporting events: the exported form of a row, CSV and JSON lines."""
from __future__ import annotations

import csv
import io
import json
from typing import Any, Iterable, Iterator

from .chain import EXPORT_FIELDS, format_time


def event_to_dict(event: Any, *, raw_detail: bool = False,
                  fields: tuple[str, ...] = EXPORT_FIELDS) -> dict[str, Any]:
    """An event as exported: :data:`EXPORT_FIELDS` (or ``fields``), times in ISO 8601 UTC.

    ``detail`` is the decoded JSON object, or with ``raw_detail`` the stored text (what the
    hash covers; archives keep it).
    """
    out: dict[str, Any] = {}
    for name in fields:
        value = getattr(event, name)
        if name == "occurred_at":
            value = format_time(value)
        elif name == "detail" and value is not None and not raw_detail:
            value = json.loads(value)
        out[name] = value
    return out


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value  # a spreadsheet must not run a user agent or path as a formula
    return "" if value is None else value


def to_csv(rows: Iterable[Any]) -> Iterator[str]:
    """A header line, then one CSV line per event (``detail`` as its JSON text).

    Text cells that a spreadsheet would treat as a formula get a leading ``'``.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def line(values: Iterable[Any]) -> str:
        writer.writerow(values)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield line(EXPORT_FIELDS)
    for row in rows:
        data = event_to_dict(row, raw_detail=True)
        yield line(_csv_cell(data[name]) for name in EXPORT_FIELDS)


def to_jsonl(rows: Iterable[Any]) -> Iterator[str]:
    """One JSON object per line per event."""
    for row in rows:
        yield json.dumps(event_to_dict(row), ensure_ascii=False, separators=(",", ":")) + "\n"


#: The most rows a PDF holds (it is built in memory); a longer report says so on its first
#: page and points to the CSV, which streams every row.
PDF_MAX_ROWS = 5000
#: The columns of a PDF report: (heading, field, width as a share of the page).
PDF_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("When (UTC)", "occurred_at", 11), ("User", "user_email", 18), ("Action", "action", 9),
    ("Outcome", "outcome", 9), ("File", "object_path", 33), ("Status", "http_status", 5),
    ("Bytes", "bytes", 7), ("From", "client_addr", 8),
)


def _latin(text: Any) -> str:
    """The PDF's core fonts know Latin-1 only: anything else becomes ``?``."""
    value = "" if text is None else str(text)
    return value.encode("latin-1", "replace").decode("latin-1")


#: How a PDF report names the filters.
_FILTER_LABELS = {
    "object_path": "path", "object_id": "file id", "http_status": "HTTP status",
    "since": "from", "until": "until (exclusive)", "name": "file name",
}


def _short_time(iso: str) -> str:
    """``2026-12-02T03:27:09.326489Z`` as ``2026-12-02 03:27:09``."""
    return iso.replace("T", " ")[:19]


def _filter_text(key: str, value: Any) -> str:
    if key == "hide_mine":
        return "the exporter's own searches left out"
    if key == "outside_hours":
        return "outside working hours only"
    if key == "object_path" and isinstance(value, str) and value.endswith("*"):
        return f"everything under {value[:-1]}"
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    if key in ("since", "until") and isinstance(value, str):
        value = _short_time(value) + " UTC"
    return f"{_FILTER_LABELS.get(key, key)}: {value}"


def to_pdf(rows: Iterable[Any], *, title: str, filters: dict[str, Any], exported_at: str,
           exported_by: str, total: int, max_rows: int = PDF_MAX_ROWS) -> bytes:
    """A report: the title, the filters, when and by whom it was exported, and a table of at
    most ``max_rows`` events (a note says when ``total`` is larger)."""
    from fpdf import FPDF  # imported on use: only PDF exports need it

    pdf = FPDF(orientation="L", unit="mm", format="A4")
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.set_title(_latin(title))
    pdf.alias_nb_pages()
    pdf.add_page()
    pdf.set_font("helvetica", "B", 14)
    pdf.cell(0, 8, _latin(title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", "", 9)
    shown = "; ".join(_filter_text(k, v) for k, v in filters.items()) or "none (every event)"
    for line in (f"Filters: {shown}",
                 f"Exported {_short_time(exported_at)} UTC by {exported_by}",
                 f"{total} event(s)" + (f"; this report shows the first {max_rows} - export "
                                        "CSV for every row" if total > max_rows else "")):
        pdf.multi_cell(0, 5, _latin(line), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font("helvetica", "", 7)
    widths = tuple(w for _, _, w in PDF_COLUMNS)
    with pdf.table(col_widths=widths, text_align="LEFT", line_height=4,
                   first_row_as_headings=True, repeat_headings=1) as table:
        head = table.row()
        for heading, _, _ in PDF_COLUMNS:
            head.cell(heading)
        for n, event in enumerate(rows):
            if n >= max_rows:
                break
            data = event_to_dict(event, raw_detail=True)
            row = table.row()
            for _, name, _ in PDF_COLUMNS:
                value = data.get(name)
                if name == "object_path" and not value:
                    value = data.get("object_id")
                elif name == "occurred_at" and value:
                    value = _short_time(value)
                row.cell(_latin(value))
    return bytes(pdf.output())
