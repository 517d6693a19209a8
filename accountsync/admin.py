"""Read-only admin for what syncs found: accounts, permission snapshots, change logs.

History is evidence: it can be browsed and filtered, never added, edited or
deleted through the admin. The pieces shared with other admins (badges, the
date-range filter, snapshot and diff rendering) come from the admin kit; the
export actions are added by ``exports`` through the registry.
"""

from __future__ import annotations

import json
from datetime import datetime, time
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import display_for_value
from django.db.models import OuterRef, QuerySet, Subquery
from django.db.models.fields.json import KT
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accountsync import selectors
from accountsync.coverage import LastKnownMarker, gaps_at
from accountsync.effective_read import account_effective_access
from accountsync.models import AccountChangeLog, AccountPermission, InstanceAccount
from adminkit.kit import ReadOnlyAdmin, badge, date_range_filter, diff_html, snapshot_context

DIFF_LINES_IN_LIST = 6
EFFECTIVE_ROWS = 500  # on the account page; the API and the exports list all


# --- filters on the current snapshot ------------------------------------------------


class CapabilityFilter(admin.SimpleListFilter):
    """Yes/No on a capability of the account's current snapshot (roles held included)."""

    capability = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("1", _("Yes")), ("0", _("No"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        if self.value() not in ("0", "1"):
            return queryset
        return selectors.account_capability_filter(queryset, capability=self.capability, present=self.value() == "1")


class GrantAdminFilter(CapabilityFilter):
    title = _("can grant (grant admin)")
    parameter_name = "grant_admin"
    capability = "GRANT_ADMIN"


class WildcardHostFilter(CapabilityFilter):
    title = _("wildcard host")
    parameter_name = "wildcard_host"
    capability = "WILDCARD_HOST"


def _point_in_time(raw: str) -> tuple[datetime | None, str]:
    """`?at=` from the account page's picker (`YYYY-MM-DDTHH:MM` or a date) as an aware datetime."""
    raw = raw.strip()
    if not raw:
        return None, ""
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        return None, gettext("“%(value)s” is not a date and time; showing the current permissions.") % {"value": raw}
    if len(raw) == 10:  # a bare date means the end of that day
        value = datetime.combine(value.date(), time.max)
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    return value, ""


@admin.register(InstanceAccount)
class InstanceAccountAdmin(ReadOnlyAdmin):
    list_display = [
        "identity",
        "instance",
        "db_type",
        "kind",
        "is_active",
        "is_superuser",
        "is_locked",
        "capabilities",
        "last_seen",
    ]
    list_filter = [
        ("instance__db_type", admin.ChoicesFieldListFilter),
        "instance",
        "instance__environment",
        "is_active",
        "is_superuser",
        "is_locked",
        GrantAdminFilter,
        WildcardHostFilter,
        "kind",
    ]
    search_fields = ["username", "identity", "host"]
    search_help_text = _(
        "A name finds it anywhere in the identity. Across instances: app_* (name prefix), app_rw@% (name and "
        "MySQL host), host=% or host=10.0.* (host)."
    )
    list_select_related = ["instance"]
    change_form_template = "admin/accountsync/instanceaccount/change_form.html"
    fields = [
        "identity",
        "instance",
        "username",
        "host",
        "kind",
        "is_active",
        "is_superuser",
        "is_locked",
        "first_seen_at",
        "last_seen",
        "deactivated_at",
    ]
    readonly_fields = ["last_seen"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[InstanceAccount]:
        current = AccountPermission.objects.filter(account=OuterRef("pk"), valid_to__isnull=True)
        return selectors.with_last_seen(
            super()
            .get_queryset(request)
            .annotate(current_capabilities=Subquery(current.values(caps=KT("snapshot__capabilities"))[:1]))
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[InstanceAccount], search_term: str
    ) -> tuple[QuerySet[InstanceAccount], bool]:
        """Structured terms (prefix `*`, `name@host`, `host=`) go through the indexed cross-instance search."""
        term = search_term.strip()
        if term and ("*" in term or "@" in term or term.startswith("host=")):
            try:
                found = selectors.account_search(q=term, mode="auto")
            except selectors.AccountSearchError as exc:
                self.message_user(request, gettext("Search not understood: %(error)s") % {"error": exc}, messages.ERROR)
                return queryset.none(), False
            return queryset.filter(pk__in=found.values("pk")), False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description=_("database type"), ordering="instance__db_type")
    def db_type(self, obj: InstanceAccount) -> str:
        return obj.instance.get_db_type_display()

    @admin.display(description=_("last seen"), ordering=selectors.LAST_SEEN)
    def last_seen(self, obj: InstanceAccount) -> str:
        """The last successful sync that saw the account (selectors.last_seen_expression), not the row's write time."""
        value = selectors.account_last_seen(obj)
        return format_html('<span class="nowrap">{}</span>', display_for_value(value, self.get_empty_value_display()))

    @admin.display(description=_("capabilities"))
    def capabilities(self, obj: InstanceAccount) -> str:
        raw = getattr(obj, "current_capabilities", None)
        caps = json.loads(raw) if raw else []
        return format_html_join(" ", '<span class="wf-cap">{}</span>', ((c,) for c in caps)) or "-"

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        account = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if account is not None:
            at, at_error = _point_in_time(request.GET.get("at", ""))
            if at_error:
                self.message_user(request, at_error, messages.ERROR)
            if at is not None:
                current = selectors.account_permission_at(account=account, at=at)
            else:
                current = selectors.account_current_permission(account=account)
            snapshot = current.snapshot if current else None
            changes = list(selectors.change_log_list(account=account)[:50])
            effective = account_effective_access(account=account, at=at) if current else []
            gaps = gaps_at(instance=account.instance_id, at=at)
            marker = LastKnownMarker(gaps)
            extra.update(
                snapshot_context(snapshot, account.attributes, last_known=marker.mark if marker else None, gaps=gaps),
                at=at,
                at_value=timezone.localtime(at).strftime("%Y-%m-%dT%H:%M") if at else "",
                current_permission=current,
                effective_rows=[
                    {**grant.as_dict(), "last_known": marker.mark(grant.scope) if marker else None}
                    for grant in effective[:EFFECTIVE_ROWS]
                ],
                effective_total=len(effective),
                effective_shown=min(len(effective), EFFECTIVE_ROWS),
                snapshot_versions=selectors.account_permission_history(account=account).count(),
                change_rows=[(c, diff_html(c.diff)) for c in changes],
            )
        return super().change_view(request, object_id, form_url, extra)


@admin.register(AccountPermission)
class AccountPermissionAdmin(ReadOnlyAdmin):
    list_display = ["account", "instance", "valid_from", "valid_to", "short_digest"]
    list_filter = ["instance"]
    search_fields = ["account__identity"]
    list_select_related = ["account", "instance"]
    fields = ["account", "instance", "valid_from", "valid_to", "collected_at", "digest", "schema_version"]
    change_form_template = "admin/accountsync/accountpermission/change_form.html"

    @admin.display(description=_("digest"))
    def short_digest(self, obj: AccountPermission) -> str:
        return obj.digest[:12]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        perm = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if perm is not None:
            extra.update(snapshot_context(perm.snapshot))
        return super().change_view(request, object_id, form_url, extra)


@admin.register(AccountChangeLog)
class AccountChangeLogAdmin(ReadOnlyAdmin):
    list_display = ["detected_at", "instance", "account", "change_type_badge", "changes"]
    list_filter = [
        "change_type",
        "instance",
        ("instance__db_type", admin.ChoicesFieldListFilter),
        date_range_filter("detected_at", "detected", _("detected")),
    ]
    search_fields = ["account__identity", "summary"]
    list_select_related = ["account", "instance"]
    fields = ["detected_at", "instance", "account", "change_type", "session_id", "summary"]
    change_form_template = "admin/accountsync/accountchangelog/change_form.html"

    @admin.display(description=_("change type"), ordering="change_type")
    def change_type_badge(self, obj: AccountChangeLog) -> str:
        return badge(obj.change_type, obj.get_change_type_display())

    @admin.display(description=_("changes"))
    def changes(self, obj: AccountChangeLog) -> str:
        return diff_html(obj.diff, limit=DIFF_LINES_IN_LIST) or obj.summary

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        log = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if log is not None:
            extra["diff_html"] = diff_html(log.diff)
        return super().change_view(request, object_id, form_url, extra)
