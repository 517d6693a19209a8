"""Turn an export kind and a queryset into a stream of CSV, JSON or NDJSON text.

Why a generator over ``.iterator(chunk_size=...)``: the rows are never all in
memory (no queryset cache, no list of rows, no whole document), so exporting
100,000 accounts costs the same memory as exporting 100 (bench/export_stream.py
measures it), and the database is read in one query (a server-side cursor on
PostgreSQL, chunked fetches on SQLite).

CSV cells that begin with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return get a leading single quote, as OWASP's CSV injection guidance says, so
a spreadsheet shows an account named ``=HYPERLINK(...)`` as text instead of
running it. JSON needs no such escaping (nothing evaluates it) and carries the
values unchanged.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from django.db.models import QuerySet
from django.utils import timezone

from exports.columns import KINDS, ExportKind, Row

FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
}
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
CHUNK_SIZE = 2000
ROWS_PER_WRITE = 200  # CSV/NDJSON rows joined into one piece of the response


# (rows streamed, whether the stream reached its end): told once per export, when its stream ends
ExportDone = Callable[[int, bool], None]
_on_done: ContextVar[ExportDone | None] = ContextVar("whalefall_export_on_done", default=None)


@contextmanager
def export_observed(on_done: ExportDone) -> Iterator[None]:
    """Exports made in this block (``stream_export``) call ``on_done(rows, complete)`` when their stream ends.

    Why a context and not an argument: the HTTP side (``exports.http.export_response``) sits
    between the caller that knows who exports (the admin action, the API view) and the
    stream; the stream is built inside the block and keeps its callback after it, so the
    count is the rows really streamed, known only once the response has been sent.
    ``complete`` is False when the stream stopped early (the client went away, an error).
    """
    token = _on_done.set(on_done)
    try:
        yield
    finally:
        _on_done.reset(token)


class _Counted:
    """The rows, counted as the writer takes them (no extra query, nothing kept)."""

    def __init__(self, rows: Iterator[Row]) -> None:
        self.rows = rows
        self.count = 0

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> Row:
        row = next(self.rows)
        self.count += 1
        return row


def _observed(chunks: Iterator[str], rows: _Counted, on_done: ExportDone) -> Iterator[str]:
    complete = False
    try:
        yield from chunks
        complete = True
    finally:  # also when the response is closed early (the client went away): GeneratorExit
        on_done(rows.count, complete)


class ExportError(ValueError):
    """An unknown kind or format, or a queryset of the wrong model (a programming or input error)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def neutralise(cell: str) -> str:
    """Prefix a cell that a spreadsheet would read as a formula with a single quote."""
    return "'" + cell if cell.startswith(FORMULA_PREFIXES) else cell


def _plain(value: Any) -> Any:
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


def _cell(value: Any) -> str:
    value = _plain(value)
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


def _rows(kind: ExportKind, queryset: QuerySet[Any], chunk_size: int) -> Iterator[Row]:
    rows = kind.fresh() if kind.fresh is not None else kind.rows
    for obj in kind.prepare(queryset).iterator(chunk_size=chunk_size):
        yield from rows(obj)


def _csv(kind: ExportKind, rows: Iterator[Row]) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield "\ufeff" + writer.writerow(kind.columns)  # BOM: spreadsheets then read UTF-8 names correctly
    batch: list[str] = []
    for row in rows:
        batch.append(writer.writerow([_cell(row.get(c)) for c in kind.columns]))
        if len(batch) >= ROWS_PER_WRITE:
            yield "".join(batch)
            batch = []
    if batch:
        yield "".join(batch)


def _json_line(kind: ExportKind, row: Row) -> str:
    return json.dumps({c: _plain(row.get(c)) for c in kind.columns}, ensure_ascii=False, default=str)


def _ndjson(kind: ExportKind, rows: Iterator[Row]) -> Iterator[str]:
    batch: list[str] = []
    for row in rows:
        batch.append(_json_line(kind, row) + "\n")
        if len(batch) >= ROWS_PER_WRITE:
            yield "".join(batch)
            batch = []
    if batch:
        yield "".join(batch)


def _json_array(kind: ExportKind, rows: Iterator[Row]) -> Iterator[str]:
    yield "["
    separator = "\n"
    batch: list[str] = []
    for row in rows:
        batch.append(separator + _json_line(kind, row))
        separator = ",\n"
        if len(batch) >= ROWS_PER_WRITE:
            yield "".join(batch)
            batch = []
    yield "".join(batch) + "\n]\n"


WRITERS = {"csv": _csv, "json": _json_array, "ndjson": _ndjson}


def export_filename(kind: str, fmt: str, *, now: datetime | None = None) -> str:
    """``whalefall-accounts-20260501-080000.csv``: the kind and the UTC time of the export."""
    stamp = (now or timezone.now()).astimezone(UTC).strftime("%Y%m%d-%H%M%S")
    return f"whalefall-{kind.replace('_', '-')}-{stamp}.{fmt}"


def stream_export(
    kind: str, queryset: QuerySet[Any], fmt: str = "csv", *, chunk_size: int = CHUNK_SIZE
) -> tuple[Iterator[str], str, str]:
    """``(chunks of text, content type, filename)`` for exporting ``queryset`` as ``kind`` in ``fmt``.

    ``kind`` is one of ``exports.columns.KINDS`` (accounts, permissions,
    findings, change_logs) and ``queryset`` must be of that kind's model
    (``exports.columns.current_permissions`` turns an account queryset into
    the permissions one). Nothing is read until the iterator is consumed.
    """
    if kind not in KINDS:
        raise ExportError(f"Unknown export kind {kind!r}; use one of: {', '.join(KINDS)}.", field="kind")
    if fmt not in FORMATS:
        raise ExportError(f"Unknown export format {fmt!r}; use one of: {', '.join(FORMATS)}.", field="format")
    spec = KINDS[kind]
    if queryset.model is not spec.model:
        raise ExportError(
            f"A {kind} export reads {spec.model.__name__} rows, not {queryset.model.__name__}.", field="queryset"
        )
    on_done = _on_done.get()
    if on_done is None:
        return WRITERS[fmt](spec, _rows(spec, queryset, chunk_size)), FORMATS[fmt], export_filename(kind, fmt)
    rows = _Counted(_rows(spec, queryset, chunk_size))
    chunks = _observed(WRITERS[fmt](spec, rows), rows, on_done)
    return chunks, FORMATS[fmt], export_filename(kind, fmt)
