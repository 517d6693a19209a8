"""The directory in the admin: people (read-only, with their accounts), groups, links, the mapping table and the status.

Why only the mapping table is editable: people, groups and links are what the directory and the rules
say; an administrator corrects them in the directory or with a mapping, which is kept in the model
history (django-auditlog, registered in ``DirectoryConfig.ready``) and relinks every instance at once.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _

from adminkit.kit import KitAdmin, ReadOnlyAdmin, badge
from directory.models import (
    AccountGroupLink,
    AccountMapping,
    AccountPersonLink,
    DirectoryGroup,
    DirectoryRead,
    Person,
)
from directory.selectors import STATUS_BADGE, directory_status, status_text
from directory.services import mapping_changed

ACCOUNTS_SHOWN = 100


def _account_link(account: Any) -> str:
    url = reverse("admin:accountsync_instanceaccount_change", args=[account.pk])
    return format_html('<a href="{}">{}</a> <span class="wf-muted">{}</span>', url, account.identity, account.instance)


@admin.register(Person)
class PersonAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "status_badge", "department", "last_seen_at"]
    list_filter = ["status", "department"]
    search_fields = ["uid", "name", "mail", "dn"]
    list_select_related = ["manager"]
    fields = [
        "uid",
        "name",
        "mail",
        "department",
        "manager",
        "status",
        "status_changed_at",
        "dn",
        "guid",
        "first_seen_at",
        "last_seen_at",
        "accounts",
        "groups",
    ]
    readonly_fields = fields

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: Person) -> str:
        return badge(STATUS_BADGE.get(obj.status, "none"), obj.get_status_display())

    @admin.display(description=_("database accounts"))
    def accounts(self, obj: Person) -> str:
        links = obj.links.select_related("account", "account__instance").order_by("account__instance__name")
        rows = list(links[:ACCOUNTS_SHOWN])
        if not rows:
            return "-"
        return format_html_join(
            mark_safe("<br>"), "{} ({})", ((_account_link(link.account), link.get_rule_display()) for link in rows)
        )

    @admin.display(description=_("groups"))
    def groups(self, obj: Person) -> str:
        return ", ".join(obj.directory_groups.values_list("name", flat=True)) or "-"


@admin.register(DirectoryGroup)
class DirectoryGroupAdmin(ReadOnlyAdmin):
    list_display = ["name", "dn", "is_deleted", "last_seen_at"]
    list_filter = ["is_deleted"]
    search_fields = ["name", "dn"]
    fields = ["name", "dn", "guid", "is_deleted", "member_list", "subgroups", "logins", "first_seen_at", "last_seen_at"]
    readonly_fields = fields

    @admin.display(description=_("members"))
    def member_list(self, obj: DirectoryGroup) -> str:
        return ", ".join(str(p) for p in obj.members.all()[:ACCOUNTS_SHOWN]) or "-"

    @admin.display(description=_("Windows group logins"))
    def logins(self, obj: DirectoryGroup) -> str:
        rows = obj.account_links.select_related("account", "account__instance")[:ACCOUNTS_SHOWN]
        return format_html_join(mark_safe("<br>"), "{}", ((_account_link(g.account),) for g in rows)) or "-"


@admin.register(AccountPersonLink)
class AccountPersonLinkAdmin(ReadOnlyAdmin):
    list_display = ["account", "instance", "person_name", "person_status", "rule", "matched", "linked_at"]
    list_filter = ["rule", "person__status", "account__instance__db_type"]
    search_fields = ["account__identity", "person__uid", "person__name"]
    list_select_related = ["account", "account__instance", "person"]
    fields = ["account", "person", "rule", "matched", "linked_at"]
    readonly_fields = fields

    @admin.display(description=_("instance"), ordering="account__instance__name")
    def instance(self, obj: AccountPersonLink) -> str:
        return str(obj.account.instance)

    @admin.display(description=_("person"), ordering="person__uid")
    def person_name(self, obj: AccountPersonLink) -> str:
        return str(obj.person)  # not the FK column itself: the admin never wraps those (class "nowrap")

    @admin.display(description=_("person status"), ordering="person__status")
    def person_status(self, obj: AccountPersonLink) -> str:
        return badge(STATUS_BADGE.get(obj.person.status, "none"), obj.person.get_status_display())


@admin.register(AccountGroupLink)
class AccountGroupLinkAdmin(ReadOnlyAdmin):
    list_display = ["account", "group_name", "matched", "linked_at"]
    search_fields = ["account__identity", "group__name"]
    list_select_related = ["account", "group"]
    fields = ["account", "group", "matched", "linked_at"]
    readonly_fields = fields

    @admin.display(description=_("group"), ordering="group__name")
    def group_name(self, obj: AccountGroupLink) -> str:
        return str(obj.group)


@admin.register(AccountMapping)
class AccountMappingAdmin(KitAdmin):
    list_display = ["__str__", "pattern", "account_name", "instance_name", "person_name", "priority", "note"]
    search_fields = ["pattern", "person__uid", "person__name", "account__identity", "note"]
    list_select_related = ["account", "instance", "person"]
    autocomplete_fields = ["person"]
    raw_id_fields = ["account"]
    fields = ["pattern", "account", "instance", "person", "priority", "note", "created_by", "created_at", "updated_at"]
    readonly_fields = ["created_by", "created_at", "updated_at"]

    # text columns, not the FK columns themselves: the admin never wraps those (class "nowrap")
    @admin.display(description=_("account"), ordering="account__identity")
    def account_name(self, obj: AccountMapping) -> str:
        return obj.account.identity if obj.account else "-"

    @admin.display(description=_("only on instance"), ordering="instance__name")
    def instance_name(self, obj: AccountMapping) -> str:
        return obj.instance.name if obj.instance else "-"

    @admin.display(description=_("person"), ordering="person__uid")
    def person_name(self, obj: AccountMapping) -> str:
        return str(obj.person)

    def save_model(self, request: HttpRequest, obj: AccountMapping, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        mapping_changed()

    def delete_model(self, request: HttpRequest, obj: AccountMapping) -> None:
        super().delete_model(request, obj)
        mapping_changed()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AccountMapping]) -> None:
        for obj in queryset:  # one by one: each delete is in the model history
            obj.delete()
        mapping_changed()


@admin.register(DirectoryRead)
class DirectoryReadAdmin(ReadOnlyAdmin):
    """The directory status: every read attempt, the status line on top."""

    list_display = ["started_at", "outcome_badge", "error_kind", "error", "people", "groups", "pages", "via"]
    list_filter = ["outcome", "error_kind"]
    fields = [
        "started_at",
        "finished_at",
        "outcome",
        "error_kind",
        "error",
        "server",
        "people",
        "groups",
        "pages",
        "details",
        "via",
    ]
    readonly_fields = fields

    @admin.display(description=_("outcome"), ordering="outcome")
    def outcome_badge(self, obj: DirectoryRead) -> str:
        return badge({"ok": "ok", "failed": "failed"}.get(obj.outcome, "running"), obj.get_outcome_display())

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        status = directory_status()
        extra = {**(extra_context or {}), "directory_status": status, "directory_status_text": status_text(status)}
        return super().changelist_view(request, extra)
