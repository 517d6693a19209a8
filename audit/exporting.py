"""Streaming the audit trail out (CSV, a JSON array or NDJSON), for the admin's actions and the API.

Why not ``exports``: that feature sits above ``audit`` (it records its exports here), so the audit
trail streams itself with the same encoder (``config.textstream``): rows read with ``.iterator()``,
never all in memory, CSV cells that a spreadsheet would run as a formula prefixed with a quote.
Exporting the trail is itself an audit event, written when the rows end (with how many there were).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse

from audit.models import AuditKind
from audit.services import audit_record
from config.db import read_in_transaction
from config.textstream import FORMATS, encode_rows, export_filename

CHUNK_SIZE = 2000

Column = tuple[str, Callable[[Any], Any]]


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
        for obj in read_in_transaction(queryset.iterator(chunk_size=CHUNK_SIZE)):
            count += 1
            yield {name: get(obj) for name, get in columns}

    def observed(chunks: Iterator[str]) -> Iterator[bytes]:
        complete = False
        try:
            for chunk in chunks:
                yield chunk.encode("utf-8")
            complete = True
        finally:  # also when the response is closed early (the client went away)
            chunks.close()  # first: ends the read's transaction, so the audit row below is committed
            details = {"kind": kind, "format": fmt, "filters": filters, "rows": count, "complete": complete}
            if selection is not None:
                details["selection"] = selection
            audit_record(AuditKind.EXPORT, actor=actor, via=via, request=request, details=details)

    chunks = encode_rows([name for name, _get in columns], rows(), fmt)
    response = StreamingHttpResponse(observed(chunks), content_type=FORMATS[fmt])
    response["Content-Disposition"] = f'attachment; filename="{export_filename(kind, fmt)}"'
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
