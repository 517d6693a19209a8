"""Read-only admin for what syncs found: accounts, permission snapshots, change logs.

History is evidence: it can be browsed and filtered, never added, edited or
deleted through the admin.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from accountsync.models import AccountChangeLog, AccountPermission, InstanceAccount


class ReadOnlyAdmin(admin.ModelAdmin):
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(InstanceAccount)
class InstanceAccountAdmin(ReadOnlyAdmin):
    list_display = ["identity", "instance", "kind", "is_active", "is_superuser", "is_locked", "last_seen_at"]
    list_filter = ["instance__db_type", "is_active", "is_superuser", "is_locked", "kind", "instance"]
    search_fields = ["username", "identity", "host"]
    list_select_related = ["instance"]


@admin.register(AccountPermission)
class AccountPermissionAdmin(ReadOnlyAdmin):
    list_display = ["account", "instance", "valid_from", "valid_to", "digest"]
    list_filter = ["instance"]
    search_fields = ["account__identity"]
    list_select_related = ["account", "instance"]


@admin.register(AccountChangeLog)
class AccountChangeLogAdmin(ReadOnlyAdmin):
    list_display = ["detected_at", "instance", "account", "change_type", "summary"]
    list_filter = ["change_type", "instance__db_type", "instance", "detected_at"]
    search_fields = ["account__identity", "summary"]
    list_select_related = ["account", "instance"]
    date_hierarchy = "detected_at"
