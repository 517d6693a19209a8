"""The audit trail in the admin: read-only, filterable, exportable (CSV, JSON); nothing can be edited or deleted.

Two lists: "Audit events" (syncs started, cancelled, retried; exports; sign-ins) and django-auditlog's
"Log entries" (model history), re-registered here on the admin kit so that it is strictly read-only
and has the same export actions. Exporting either is itself an audit event.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from auditlog.admin import LogEntryAdmin
from auditlog.models import LogEntry
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from adminkit.kit import KitAdminMixin, ReadOnlyAdmin, badge, date_range_filter
from audit.exporting import EVENT_COLUMNS, HISTORY_COLUMNS, Column, stream_rows
from audit.models import AuditEvent, AuditVia
from audit.services import query_filters


def export_action(kind: str, fmt: str, columns: list[Column], description: Any) -> Callable[..., StreamingHttpResponse]:
    """An admin action streaming the selected rows (with "select all": the whole current filter)."""

    def action(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any]) -> StreamingHttpResponse:
        selected = request.POST.getlist("_selected_action")
        return stream_rows(
            queryset,
            columns,
            kind=kind,
            fmt=fmt,
            actor=request.user,
            via=AuditVia.ADMIN,
            request=request,
            filters=query_filters(request.GET),
            selection="all" if request.POST.get("select_across") == "1" else len(selected),
        )

    action.__name__ = f"export_{kind}_{fmt}"
    action.short_description = description  # type: ignore[attr-defined]
    action.allowed_permissions = ("view",)  # type: ignore[attr-defined]
    return action


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "kind_badge", "actor_username", "via", "remote_addr", "object_repr", "summary"]
    list_filter = [
        "kind",
        "via",
        ("actor", admin.RelatedOnlyFieldListFilter),
        date_range_filter("at", "at", _("at")),
    ]
    search_fields = ["actor_username", "object_repr", "object_id", "remote_addr"]
    fields = [
        "at",
        "kind",
        "actor",
        "actor_username",
        "via",
        "remote_addr",
        "object_type",
        "object_id",
        "object_repr",
        "details_json",
    ]
    readonly_fields = fields
    actions = [
        export_action("audit_events", "csv", EVENT_COLUMNS, _("Export selected audit events as CSV")),
        export_action("audit_events", "json", EVENT_COLUMNS, _("Export selected audit events as JSON")),
    ]

    @admin.display(description=_("kind"), ordering="kind")
    def kind_badge(self, obj: AuditEvent) -> str:
        return badge(obj.kind, obj.get_kind_display())

    @admin.display(description=_("details"))
    def summary(self, obj: AuditEvent) -> str:
        details = obj.details or {}
        keys = ("kind", "rows", "sync_type", "instance_count", "session_id")
        parts = [f"{k}={details[k]}" for k in keys if k in details]
        return ", ".join(parts)

    @admin.display(description=_("details"))
    def details_json(self, obj: AuditEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.details, indent=2, sort_keys=True, default=str))


class ModelHistoryAdmin(KitAdminMixin, LogEntryAdmin):
    """auditlog's log entry admin, on the kit (search bound, stylesheet), never editable nor deletable."""

    list_select_related = ["content_type", "actor"]
    actions = [
        export_action("model_history", "csv", HISTORY_COLUMNS, _("Export selected log entries as CSV")),
        export_action("model_history", "json", HISTORY_COLUMNS, _("Export selected log entries as JSON")),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[LogEntry]:
        return super().get_queryset(request).select_related("content_type", "actor")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


admin.site.unregister(LogEntry)
admin.site.register(LogEntry, ModelHistoryAdmin)
