"""Turn an export kind and a queryset into a stream of CSV, JSON or NDJSON text.

Why a generator over ``.iterator(chunk_size=...)``: the rows are never all in
memory (no queryset cache, no list of rows, no whole document), so exporting
100,000 accounts costs the same memory as exporting 100 (bench/export_stream.py
measures it), and the database is read in one query (a server-side cursor on
PostgreSQL, chunked fetches on SQLite).

The text itself (CSV with formula cells neutralised, a JSON array, NDJSON) is
``config.textstream``'s, shared with the audit trail's own exports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from django.db import connections
from django.db.models import QuerySet

from config.db import read_in_transaction
from config.textstream import FORMATS, encode_rows, export_filename, neutralise
from exports.columns import KINDS, ExportKind, Row

T = TypeVar("T")

__all__ = ["CHUNK_SIZE", "FORMATS", "ExportError", "export_observed", "neutralise", "stream_export"]

CHUNK_SIZE = 2000

# no JIT compilation for an export's read (``without_jit``); bench/export_first_mb.py's jit-on column
# switches it off to show what it buys
NO_JIT = True

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
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # first: ends the read's transaction (config.db.read_in_transaction) before on_done writes
        on_done(rows.count, complete)


class ExportError(ValueError):
    """An unknown kind or format, or a queryset of the wrong model (a programming or input error)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def without_jit(cursor: Any) -> None:
    """Switch PostgreSQL's JIT compilation off for the rest of this transaction (the export's read).

    Why: PostgreSQL decides to JIT-compile a query on its total estimated cost, and the read of
    a million accounts or ten million change-log rows is far above ``jit_above_cost``; the
    compilation (19 to 35 functions, with inlining and optimisation) runs before the first row
    and held the first megabyte of every large export for 1-2 s (#19, bench/export_first_mb.py).
    It gains nothing on a read that streams at the pace of Python building rows. The plans are
    the same with or without it (nested loops and incremental sorts that return rows at once).
    ``SET LOCAL``: it ends with the export's transaction (``config.db.read_in_transaction``).
    One statement, and nothing on other databases.
    """
    if not NO_JIT or cursor.db.vendor != "postgresql":
        return
    cursor.execute("SET LOCAL jit = off")


def _without_jit(rows: Iterator[T], using: str) -> Iterator[T]:
    """``rows``, with ``without_jit`` applied first (inside the read's transaction, before its cursor)."""
    with connections[using].cursor() as cursor:
        without_jit(cursor)
    yield from rows


def _rows(kind: ExportKind, queryset: QuerySet[Any], chunk_size: int) -> Iterator[Row]:
    prepared = kind.prepare(queryset)
    objects = read_in_transaction(_without_jit(prepared.iterator(chunk_size=chunk_size), prepared.db))
    if kind.stream is not None:
        yield from kind.stream()(objects)
        return
    rows = kind.fresh() if kind.fresh is not None else kind.rows
    for obj in objects:
        yield from rows(obj)


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
        return (
            encode_rows(spec.columns, _rows(spec, queryset, chunk_size), fmt),
            FORMATS[fmt],
            export_filename(kind, fmt),
        )
    rows = _Counted(_rows(spec, queryset, chunk_size))
    chunks = _observed(encode_rows(spec.columns, rows, fmt), rows, on_done)
    return chunks, FORMATS[fmt], export_filename(kind, fmt)
