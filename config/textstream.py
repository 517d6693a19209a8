"""Rows as a stream of CSV, JSON-array or NDJSON text: the one encoder every export uses.

Why here, at the bottom of the layers: both the exports feature and the audit trail (which sits
below it, since every export records itself there) stream rows out, and a spreadsheet must treat
their cells alike. CSV cells that begin with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
get a leading single quote, as OWASP's CSV injection guidance says, so a spreadsheet shows an account
named ``=HYPERLINK(...)`` as text instead of running it. JSON needs no such escaping (nothing
evaluates it) and carries the values unchanged. Rows are joined into pieces of ``ROWS_PER_WRITE``,
never into a whole document, so memory does not grow with the row count.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from django.utils import timezone

FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
}
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
ROWS_PER_WRITE = 200  # CSV/NDJSON rows joined into one piece of the response


def neutralise(cell: str) -> str:
    """Prefix a cell that a spreadsheet would read as a formula with a single quote."""
    return "'" + cell if cell.startswith(FORMULA_PREFIXES) else cell


def plain(value: Any) -> Any:
    """A JSON-compatible value: datetimes as ISO 8601 (UTC), UUIDs as text."""
    if isinstance(value, datetime):
        if timezone.is_aware(value):
            value = value.astimezone(UTC)
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value


def cell(value: Any) -> str:
    """One CSV cell: empty for None, true/false, lists of names joined by ``;``, other structures as JSON."""
    value = plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        text = ";".join(value)
    elif isinstance(value, dict | list):
        text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    else:
        text = str(value)
    return neutralise(text)


class _Line:
    """A file-like object whose ``write`` hands back what it was given (for csv.writer)."""

    def write(self, text: str) -> str:
        return text


def _batched(pieces: Iterable[str]) -> Iterator[str]:
    batch: list[str] = []
    for piece in pieces:
        batch.append(piece)
        if len(batch) >= ROWS_PER_WRITE:
            yield "".join(batch)
            batch = []
    if batch:
        yield "".join(batch)


def json_line(columns: Sequence[str], row: Mapping[str, Any]) -> str:
    return json.dumps({c: plain(row.get(c)) for c in columns}, ensure_ascii=False, default=str)


def encode_rows(columns: Sequence[str], rows: Iterable[Mapping[str, Any]], fmt: str) -> Iterator[str]:
    """The text of ``rows`` (dicts keyed by ``columns``) in ``fmt``, piece by piece as the rows come."""
    if fmt == "csv":
        writer = csv.writer(_Line())
        yield "\ufeff" + writer.writerow(list(columns))  # BOM: spreadsheets then read UTF-8 names correctly
        yield from _batched(writer.writerow([cell(row.get(c)) for c in columns]) for row in rows)
    elif fmt == "ndjson":
        yield from _batched(json_line(columns, row) + "\n" for row in rows)
    elif fmt == "json":
        yield "["
        separators = iter(("\n",))
        yield from _batched(next(separators, ",\n") + json_line(columns, row) for row in rows)
        yield "\n]\n"
    else:
        raise ValueError(f"Unknown format {fmt!r}; use one of: {', '.join(FORMATS)}.")


def export_filename(kind: str, fmt: str, *, now: datetime | None = None) -> str:
    """``whalefall-accounts-20260501-080000.csv``: the kind and the UTC time of the export."""
    stamp = (now or timezone.now()).astimezone(UTC).strftime("%Y%m%d-%H%M%S")
    return f"whalefall-{kind.replace('_', '-')}-{stamp}.{fmt}"
