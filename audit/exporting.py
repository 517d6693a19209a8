"""Streaming the audit trail out (CSV, a JSON array or NDJSON), for the admin's actions and the API.

Why not ``exports``: that feature sits above ``audit`` (it records its exports here), so the audit
trail streams itself, the same way: rows read with ``.iterator()``, never all in memory, CSV cells
that a spreadsheet would run as a formula prefixed with a quote. Exporting the trail is itself an
audit event, written when the rows end (with how many there were).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone

from audit.models import AuditKind
from audit.services import audit_record

FORMATS = {"csv": "text/csv; charset=utf-8", "json": "application/json", "ndjson": "application/x-ndjson"}
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")  # as exports.writers: a spreadsheet must not run a cell
CHUNK_SIZE = 2000

Column = tuple[str, Callable[[Any], Any]]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def _cell(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, dict | list):
        text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    else:
        text = str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


class _Line:
    def write(self, text: str) -> str:
        return text


def stream_rows(
    queryset: QuerySet[Any],
    columns: list[Column],
    *,
    kind: str,
    fmt: str,
    actor: Any,
    via: str,
    request: HttpRequest | None,
    filters: dict[str, Any],
    selection: Any = None,
) -> StreamingHttpResponse:
    """Stream ``queryset`` as ``fmt``; when the stream ends (or the client goes), record the export."""

    count = 0

    def rows() -> Iterator[dict[str, Any]]:
        nonlocal count
        for obj in queryset.iterator(chunk_size=CHUNK_SIZE):
            count += 1
            yield {name: get(obj) for name, get in columns}

    def line(row: dict[str, Any]) -> str:
        return json.dumps({k: _plain(v) for k, v in row.items()}, ensure_ascii=False, default=str)

    def as_csv() -> Iterator[str]:
        writer = csv.writer(_Line())
        yield "\ufeff" + writer.writerow([name for name, _get in columns])
        for row in rows():
            yield writer.writerow([_cell(v) for v in row.values()])

    def as_json() -> Iterator[str]:
        separator = "["
        for row in rows():
            yield separator + "\n" + line(row)
            separator = ","
        yield ("[" if separator == "[" else "") + "\n]\n"

    def as_ndjson() -> Iterator[str]:
        for row in rows():
            yield line(row) + "\n"

    def observed(chunks: Iterator[str]) -> Iterator[bytes]:
        complete = False
        try:
            for chunk in chunks:
                yield chunk.encode("utf-8")
            complete = True
        finally:  # also when the response is closed early (the client went away)
            details = {"kind": kind, "format": fmt, "filters": filters, "rows": count, "complete": complete}
            if selection is not None:
                details["selection"] = selection
            audit_record(AuditKind.EXPORT, actor=actor, via=via, request=request, details=details)

    chunks = {"csv": as_csv, "json": as_json, "ndjson": as_ndjson}[fmt]()
    response = StreamingHttpResponse(observed(chunks), content_type=FORMATS[fmt])
    stamp = timezone.now().astimezone(UTC).strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="whalefall-{kind.replace("_", "-")}-{stamp}.{fmt}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "no-store"
    return response


EVENT_COLUMNS: list[Column] = [
    ("id", lambda e: e.pk),
    ("at", lambda e: e.at),
    ("kind", lambda e: e.kind),
    ("actor", lambda e: e.actor_username),
    ("actor_id", lambda e: e.actor_id),
    ("via", lambda e: e.via),
    ("remote_addr", lambda e: e.remote_addr),
    ("object_type", lambda e: e.object_type),
    ("object_id", lambda e: e.object_id),
    ("object", lambda e: e.object_repr),
    ("details", lambda e: e.details),
]

HISTORY_COLUMNS: list[Column] = [
    ("id", lambda e: e.pk),
    ("timestamp", lambda e: e.timestamp),
    ("action", lambda e: e.get_action_display()),
    ("model", lambda e: f"{e.content_type.app_label}.{e.content_type.model}"),
    ("object_id", lambda e: e.object_pk),
    ("object", lambda e: e.object_repr),
    ("actor_id", lambda e: e.actor_id),
    ("actor_email", lambda e: e.actor_email),
    ("remote_addr", lambda e: e.remote_addr),
    ("changes", lambda e: e.changes_dict),
]
