"""Read-only admin for what syncs found: accounts, permission snapshots, change logs.

History is evidence: it can be browsed and filtered, never added, edited or
deleted through the admin. The shared pieces of the product's admin (badges,
the date-range filter, snapshot and diff rendering) live here because the
sync and instance admins build on them, and this app sits below ``sync``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import Any

from django.contrib import admin, messages
from django.db.models import OuterRef, QuerySet, Subquery
from django.db.models.fields.json import KT
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accountsync import selectors
from accountsync.diff import ATTRIBUTE_SCOPE, CAPABILITY_SCOPE, ROLE_SCOPE, split_scope
from accountsync.models import AccountChangeLog, AccountPermission, InstanceAccount
from exports.actions import admin_export_action

ADMIN_CSS = "whalefall/admin.css"
DIFF_LINES_IN_LIST = 6


class ReadOnlyAdmin(admin.ModelAdmin):
    """History admin: view only, no facet counts (they scan whole tables), no full count."""

    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER

    class Media:
        css = {"all": [ADMIN_CSS]}

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


def badge(value: str, label: object) -> str:
    """A coloured pill for a status or change type; the CSS class is the raw value."""
    return format_html('<span class="wf-badge wf-badge-{}">{}</span>', value or "none", label)


# --- date range filter ------------------------------------------------------------


def _parse_day(raw: str | None) -> date | None:
    if not raw:
        return None
    return date.fromisoformat(raw)


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


class DateRangeFilter(admin.ListFilter):
    """Today / last 7 days / last 30 days, or a custom from-to range of whole days.

    Why not Django's DateFieldListFilter: it has no custom range, and bad input
    there becomes a "Database error" page. Here a bad date or from > to is an
    admin message and the list stays unfiltered, so nothing is hidden silently.
    """

    template = "admin/whalefall/date_range_filter.html"
    field_name = ""
    parameter_name = ""
    PRESETS = (("today", _("Today")), ("7d", _("Past 7 days")), ("30d", _("Past 30 days")))

    def __init__(self, request: HttpRequest, params: dict[str, list[str]], model: Any, model_admin: Any) -> None:
        super().__init__(request, params, model, model_admin)
        for name in self.expected_parameters():
            if name in params:
                self.used_parameters[name] = params.pop(name)[-1]
        self.bounds, self.error = self._bounds()
        if self.error:
            messages.error(request, self.error)
        self.hidden_params: list[tuple[str, str]] = []

    @property
    def from_param(self) -> str:
        return f"{self.parameter_name}_from"

    @property
    def to_param(self) -> str:
        return f"{self.parameter_name}_to"

    def expected_parameters(self) -> list[str]:
        return [self.parameter_name, self.from_param, self.to_param]

    def _bounds(self) -> tuple[tuple[datetime | None, datetime | None], str]:
        preset = self.used_parameters.get(self.parameter_name)
        today = timezone.localdate()
        if preset:
            days = {"today": 0, "7d": 6, "30d": 29}.get(preset)
            if days is None:
                return (None, None), gettext("Unknown date range “%(value)s”: showing all dates.") % {"value": preset}
            return (_day_start(today - timedelta(days=days)), None), ""
        try:
            start = _parse_day(self.used_parameters.get(self.from_param))
            end = _parse_day(self.used_parameters.get(self.to_param))
        except ValueError:
            return (None, None), gettext("Dates must look like 2026-01-31: showing all dates.")
        if start and end and start > end:
            return (None, None), gettext(
                "The date range starts (%(start)s) after it ends (%(end)s): showing all dates."
            ) % {"start": start.isoformat(), "end": end.isoformat()}
        return (_day_start(start) if start else None, _day_start(end + timedelta(days=1)) if end else None), ""

    def has_output(self) -> bool:
        return True

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        start, end = self.bounds
        if start is not None:
            queryset = queryset.filter(**{f"{self.field_name}__gte": start})
        if end is not None:
            queryset = queryset.filter(**{f"{self.field_name}__lt": end})
        return queryset

    def choices(self, changelist: Any) -> Iterator[dict[str, Any]]:
        mine = set(self.expected_parameters())
        self.hidden_params = [
            (key, value)
            for key, values in changelist.params.items()
            if key not in mine and key != "p"
            for value in (values if isinstance(values, list) else [values])
        ]
        preset = self.used_parameters.get(self.parameter_name)
        custom = self.from_param in self.used_parameters or self.to_param in self.used_parameters
        yield {
            "selected": not preset and not custom,
            "query_string": changelist.get_query_string(remove=list(mine)),
            "display": gettext("Any date"),
        }
        for value, label in self.PRESETS:
            yield {
                "selected": preset == value,
                "query_string": changelist.get_query_string({self.parameter_name: value}, remove=list(mine)),
                "display": label,
            }

    @property
    def value_from(self) -> str:
        return self.used_parameters.get(self.from_param, "")

    @property
    def value_to(self) -> str:
        return self.used_parameters.get(self.to_param, "")


def date_range_filter(field_name: str, parameter_name: str, title: Any) -> type[DateRangeFilter]:
    """A DateRangeFilter bound to one datetime field and query-string name."""
    return type(
        f"{parameter_name.title()}DateRangeFilter",
        (DateRangeFilter,),
        {"field_name": field_name, "parameter_name": parameter_name, "title": title},
    )


# --- snapshot and diff rendering --------------------------------------------------

SCOPE_LEVELS = {
    "global": _("Global"),
    "database": _("Database"),
    "schema": _("Schema"),
    "object": _("Object"),
    "column": _("Column"),
    "routine": _("Routine"),
}


def scope_label(scope: str) -> str:
    """`database:sales` -> `Database sales`; the name parts are shown as the server stores them."""
    level, parts = split_scope(scope)
    name = ".".join(parts)
    label = SCOPE_LEVELS.get(level, level)
    return f"{label} {name}".strip()


def snapshot_groups(snapshot: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Privileges grouped by scope, broadest level first, for the account page."""
    order = list(SCOPE_LEVELS)
    groups: dict[str, dict[str, Any]] = {}
    for priv in (snapshot or {}).get("privileges", []):
        scope = priv["scope"]
        group = groups.setdefault(scope, {"scope": scope, "label": scope_label(scope), "privileges": []})
        group["privileges"].append(priv)
    level_rank = {level: rank for rank, level in enumerate(order)}
    return sorted(groups.values(), key=lambda g: (level_rank.get(split_scope(g["scope"])[0], len(order)), g["scope"]))


def snapshot_context(snapshot: dict[str, Any] | None, attributes: dict[str, Any] | None = None) -> dict[str, Any]:
    """Template context for `admin/whalefall/_snapshot.html` (attributes fall back to the account's)."""
    snap = snapshot or {}
    return {
        "snapshot_groups": snapshot_groups(snap),
        "snapshot_roles": snap.get("roles", []),
        "snapshot_capabilities": snap.get("capabilities", []),
        "snapshot_attributes": [(k, _fmt(v)) for k, v in sorted((snap.get("attributes") or attributes or {}).items())],
        "snapshot_unknown": snap.get("unknown_scopes", []),
    }


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return gettext("yes") if value else gettext("no")
    if value is None:
        return "∅"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "[]"
    return str(value)


def diff_line(op: dict[str, Any]) -> tuple[str, str]:
    """(css kind, text) of one diff operation: grants green, revokes red, other changes amber."""
    kind = {"grant": "grant", "revoke": "revoke"}.get(op.get("op", ""), "set")
    if "summary" in op:
        return kind, f"~ {op['summary']}"
    scope = op.get("scope", "")
    sign = {"grant": "+", "revoke": "-"}.get(kind, "~")
    if scope == ROLE_SCOPE:
        text = gettext("role %(role)s") % {"role": op.get("privilege")}
        if kind == "set":
            text += " (" + _changes(op) + ")"
    elif scope == CAPABILITY_SCOPE:
        kind = "grant" if op.get("new") else "revoke"
        sign = "+" if op.get("new") else "-"
        text = gettext("capability %(name)s") % {"name": op.get("field")}
    elif scope == ATTRIBUTE_SCOPE:
        text = f"{op.get('field')}: {_fmt(op.get('old'))} → {_fmt(op.get('new'))}"
    else:
        entry = op.get("new") if kind == "grant" else op.get("old")
        deny = "DENY " if (entry or {}).get("effect") == "DENY" else ""
        text = gettext("%(deny)s%(privilege)s on %(scope)s") % {
            "deny": deny,
            "privilege": op.get("privilege"),
            "scope": scope_label(scope),
        }
        if kind == "grant" and (entry or {}).get("grantable"):
            text += " " + gettext("with grant option")
        if kind == "set":
            text += " (" + _changes(op) + ")"
    return kind, f"{sign} {text}"


def _changes(op: dict[str, Any]) -> str:
    old, new = op.get("old") or {}, op.get("new") or {}
    return ", ".join(
        f"{key} {_fmt(old.get(key))} → {_fmt(new.get(key))}" for key in new if old.get(key) != new.get(key)
    )


def diff_html(ops: list[dict[str, Any]] | None, limit: int | None = None) -> str:
    """The diff as coloured lines; `limit` keeps list rows short and says how many were left out.

    Attributes that appear from nothing (a new account's auth plugin, limits, ...) are
    folded into one line: they are the account's description, not a change to review.
    """
    ops = ops or []
    initial = [op for op in ops if op.get("scope") == ATTRIBUTE_SCOPE and op.get("old") is None]
    if initial:
        ops = [op for op in ops if not (op.get("scope") == ATTRIBUTE_SCOPE and op.get("old") is None)]
        names = ", ".join(str(op.get("field")) for op in initial)
        ops.append({"op": "set", "scope": "", "summary": gettext("attributes set: %(names)s") % {"names": names}})
    shown = ops if limit is None else ops[:limit]
    lines = [diff_line(op) for op in shown]
    html = format_html_join("", '<div class="wf-diff wf-diff-{}">{}</div>', lines)
    if limit is not None and len(ops) > limit:
        html += format_html('<div class="wf-diff-more">{}</div>', gettext("… %(n)d more") % {"n": len(ops) - limit})
    return format_html('<div class="wf-diff-lines">{}</div>', html) if lines else ""


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
        "last_seen_at",
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
    actions = [
        admin_export_action("accounts", "csv", description=_("Export selected accounts as CSV")),
        admin_export_action("accounts", "json", description=_("Export selected accounts as JSON")),
        admin_export_action("permissions", "csv", description=_("Export the selected accounts' permissions as CSV")),
    ]
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
        "last_seen_at",
        "deactivated_at",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[InstanceAccount]:
        current = AccountPermission.objects.filter(account=OuterRef("pk"), valid_to__isnull=True)
        return (
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
            extra.update(
                snapshot_context(snapshot, account.attributes),
                at=at,
                at_value=timezone.localtime(at).strftime("%Y-%m-%dT%H:%M") if at else "",
                current_permission=current,
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
    actions = [
        admin_export_action("change_logs", "csv", description=_("Export selected changes as CSV")),
        admin_export_action("change_logs", "json", description=_("Export selected changes as JSON")),
    ]
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
