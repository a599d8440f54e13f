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
