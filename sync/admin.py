"""Read-only admin for sync sessions and their per-instance records."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from accountsync.admin import ReadOnlyAdmin
from sync.models import SyncInstanceRecord, SyncSession


class SyncInstanceRecordInline(admin.TabularInline):
    model = SyncInstanceRecord
    extra = 0
    can_delete = False
    show_change_link = False
    fields = [
        "instance_name",
        "status",
        "started_at",
        "completed_at",
        "items_synced",
        "items_created",
        "items_updated",
        "items_deleted",
        "error_kind",
        "error_message",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(SyncSession)
class SyncSessionAdmin(ReadOnlyAdmin):
    list_display = [
        "session_id",
        "sync_type",
        "status",
        "started_at",
        "completed_at",
        "total_instances",
        "successful_instances",
        "failed_instances",
        "created_by",
    ]
    list_filter = ["sync_type", "status", "started_at"]
    list_select_related = ["created_by"]
    list_per_page = 20
    inlines = [SyncInstanceRecordInline]


@admin.register(SyncInstanceRecord)
class SyncInstanceRecordAdmin(ReadOnlyAdmin):
    list_display = ["instance_name", "session", "status", "started_at", "completed_at", "items_synced", "error_kind"]
    list_filter = ["status", "error_kind"]
    search_fields = ["instance_name", "error_message"]
    list_select_related = ["session"]
