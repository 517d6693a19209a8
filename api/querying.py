"""Query-parameter parsing and the export action shared by several viewsets.

Why here and not in each view: the export action, the date-time parsing and
their OpenAPI descriptions must be the same on every endpoint that has them,
so a script that exports accounts can export change logs the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request

from api.serializers import ErrorSerializer
from audit.models import AuditKind, AuditVia
from audit.services import audit_record, query_filters
from exports.columns import KINDS
from exports.http import export_response
from exports.writers import FORMATS, export_observed

# The longest free-text query value (a search, a name filter) any list runs: longer is
# never a real name (account names are at most 255 characters, like the account search's
# ``q``) and reaches the database as a pattern it may refuse (SQLite: "LIKE or GLOB
# pattern too complex"), so it is a 400 ``query_too_long`` naming the parameter.
MAX_QUERY_LENGTH = 255


def query_too_long_message(length: int) -> str:
    return f"At most {MAX_QUERY_LENGTH} characters; this value has {length}. Search for a shorter part of the name."


def validate_query_length(value: str) -> None:
    """A form-field validator (django-filter): a free-text value over MAX_QUERY_LENGTH is refused."""
    if value is not None and len(value) > MAX_QUERY_LENGTH:
        raise DjangoValidationError(query_too_long_message(len(value)), code="query_too_long")


def bounded_query(name: str, raw: str | None) -> str | None:
    """A free-text query parameter read by a view: 400 ``query_too_long`` when over MAX_QUERY_LENGTH."""
    if raw is not None and len(raw) > MAX_QUERY_LENGTH:
        raise ValidationError({name: [query_too_long_message(len(raw))]}, code="query_too_long")
    return raw


def reject_nul(name: str, raw: str) -> str:
    """A query value with a NUL character is refused: PostgreSQL cannot store or compare it."""
    if "\x00" in raw:
        raise ValidationError({name: ["Null characters are not allowed."]}, code="invalid")
    return raw


def parse_when(name: str, raw: str | None, *, required: bool = True) -> datetime | None:
    """An ISO 8601 date-time (or a date: its midnight) as an aware UTC datetime; 400 otherwise.

    A value without an offset is read in the server's time zone (TIME_ZONE),
    as the admin reads dates.
    """
    if raw is None or raw.strip() == "":
        if not required:
            return None
        message = "This parameter is required (ISO 8601, e.g. 2026-05-01T08:00:00Z)."
        raise ValidationError({name: [message]}, code="required")
    raw = reject_nul(name, raw).strip()
    message = f"Not an ISO 8601 date-time: {raw[:40]!r} (e.g. 2026-05-01T08:00:00Z or 2026-05-01)."
    try:
        value = parse_datetime(raw)
        if value is None:
            day = parse_date(raw)
            if day is None:
                raise ValueError(raw)
            value = datetime.combine(day, time.min)
        if timezone.is_naive(value):
            value = timezone.make_aware(value, timezone.get_default_timezone())
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValidationError({name: [message]}, code="invalid_datetime") from None


def when_parameter(name: str, description: str, *, required: bool = True) -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.DATETIME, required=required, description=description)


FORMAT_PARAMETER = OpenApiParameter(
    "format",
    str,
    enum=list(FORMATS),
    default="csv",
    description="csv (default; formula-like cells get a leading quote), json (one array) or ndjson (an object a line).",
)


def export_responses(kind: str) -> dict[Any, Any]:
    """200 in each format; the JSON form documents the row object with the kind's columns."""
    row = inline_serializer(
        name=f"{kind.title().replace('_', '')}ExportRow",
        fields={column: serializers.JSONField(required=True) for column in KINDS[kind].columns},
        many=True,
    )
    return {
        (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV, a JSON array or NDJSON."),
        (200, "application/json"): OpenApiResponse(row, description="A JSON array of rows."),
        (200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.STR, description="One JSON object per line."),
        (400, "application/json"): OpenApiResponse(ErrorSerializer),
    }


class ExportMixin:
    # Gives a viewset ``GET <list>/export/``: the list's filters, streamed as a file.
    # ``export_kind`` names the exports.columns kind; ``export_queryset()`` is the
    # unfiltered base (default: ``get_queryset()``). DRF's content negotiation is
    # skipped for the action because ``?format=csv`` is the export's own parameter,
    # not a renderer choice; errors still answer JSON. (A comment, not a docstring:
    # drf-spectacular would show a docstring inherited by a viewset as the
    # description of every one of its operations.)

    export_kind: str = ""

    def perform_content_negotiation(self, request: Request, force: bool = False) -> tuple[Any, str]:
        if getattr(self, "action", None) == "export":
            renderer = JSONRenderer()
            return renderer, renderer.media_type
        return super().perform_content_negotiation(request, force)  # type: ignore[misc]

    def export_queryset(self) -> QuerySet[Any]:
        return self.get_queryset()  # type: ignore[attr-defined]

    def stream_export(self, request: Request) -> StreamingHttpResponse:
        fmt = reject_nul("format", request.query_params.get("format") or "csv").lower()
        if fmt not in FORMATS:
            raise ValidationError(
                {"format": [f"Unknown export format {fmt[:20]!r}; use one of: {', '.join(FORMATS)}."]},
                code="invalid_format",
            )
        queryset = self.filter_queryset(self.export_queryset())  # type: ignore[attr-defined]
        with export_observed(_audit_done(request, self.export_kind, fmt)):
            return export_response(self.export_kind, queryset, fmt)


def _audit_done(request: Request, kind: str, fmt: str) -> Any:
    """The audit event of an API export, written when its stream ends: who, the filters, how many rows."""
    user = request.user
    filters = query_filters(request.query_params, drop=("format",))
    django_request = request._request

    def done(rows: int, complete: bool) -> None:
        audit_record(
            AuditKind.EXPORT,
            actor=user,
            via=AuditVia.API,
            request=django_request,
            details={"kind": kind, "format": fmt, "filters": filters, "rows": rows, "complete": complete},
        )

    return done


def export_action(kind: str, what: str) -> Any:
    """The decorated ``export`` action for a viewset using ExportMixin (schema included)."""

    def export(self: ExportMixin, request: Request, *args: Any, **kwargs: Any) -> StreamingHttpResponse:
        return self.stream_export(request)

    routed = action(detail=False, methods=["get"], url_path="export", pagination_class=None)(export)
    return extend_schema(
        summary=f"Export {what} (CSV, JSON or NDJSON), streamed",
        description="Takes the same filters as the list. Never contains credentials. See docs/exports.md.",
        parameters=[FORMAT_PARAMETER],
        responses=export_responses(kind),
        filters=True,
    )(routed)
