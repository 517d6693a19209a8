"""The HTTP side of an export: a StreamingHttpResponse that downloads as a file.

Shared by the API's ``export`` actions and the admin's export actions, so
both send the same bytes, headers and filename.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse

from exports.writers import CHUNK_SIZE, stream_export


def export_response(
    kind: str, queryset: QuerySet[Any], fmt: str = "csv", *, chunk_size: int = CHUNK_SIZE
) -> StreamingHttpResponse:
    """Stream ``queryset`` as ``kind`` in ``fmt`` (csv, json, ndjson) as an attachment.

    Raises ``exports.writers.ExportError`` for an unknown kind or format before
    anything is sent, so callers can answer 400 (API) or show a message (admin).
    """
    chunks, content_type, filename = stream_export(kind, queryset, fmt, chunk_size=chunk_size)
    response = StreamingHttpResponse((chunk.encode("utf-8") for chunk in chunks), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "no-store"
    return response
