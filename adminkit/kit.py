"""The admin kit: what every WhaleFall admin page builds on.

Why a kit of its own at the bottom of the stack (NetBox keeps its ``utilities`` the same
way): the instance, sync, account, findings and alerts admins all share the read-only
history admin, status badges, the date-range filter, snapshot and diff rendering and one
stylesheet. Living here, below every app, they can be imported by any admin without
pulling a higher layer in; features add admin actions to these admins through the
registry (``config.registry``), never by importing them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import date, datetime, time, timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.views.main import SEARCH_VAR
from django.core.exceptions import FieldDoesNotExist
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.html import conditional_escape, format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from adminkit.paging import SEARCH_COUNT_CAP, CappedPaginator
from config.registry import admin_actions_for
from config.scopes import ATTRIBUTE_SCOPE, CAPABILITY_SCOPE, ROLE_SCOPE, SCOPE_LEVELS, split_scope

ADMIN_CSS = "whalefall/admin.css"

AdminAction = tuple[Callable[..., Any], str, str]

# The longest admin search that is run (the API's MAX_QUERY_LENGTH, the length of the longest
# account name): a longer one reaches the database as a pattern it may refuse (SQLite:
# "LIKE or GLOB pattern too complex"), which would be a 500.
MAX_SEARCH_LENGTH = 255


def search_too_long_message() -> str:
    return gettext("Search text longer than %(n)d characters was not run: search for a shorter part of the name.") % {
        "n": MAX_SEARCH_LENGTH
    }


# after these a long account name may wrap ('svc_reporting_etl'@'10.0.%', app.readers, dba@corp.example)
NAME_BREAKS = re.compile(r"(?<=[@._])")
# the list columns that hold account names: shown with `wrap_name` by every kit admin that lists them
WRAPPED_COLUMNS = ("identity", "account")


def wrap_name(text: object, *, span: bool = True) -> SafeString:
    """An account name that wraps only after `@`, `.` and `_`, never in the middle of a word.

    Why <wbr> and not CSS alone: `overflow-wrap: anywhere` breaks wherever the column runs out
    ("'svc_repor" / "ting'@'%'"); a name read across a line break must break where it has parts.
    The span keeps the cell's break-anywhere fallback from applying to the name; list columns go
    without it (``span=False``: the stylesheet sets their cells, and a link keeps its name as its text).
    """
    parts = NAME_BREAKS.split(str(text))
    if not span:
        return SafeString("<wbr>".join(conditional_escape(p) for p in parts))
    return format_html(
        '<span class="wf-name">{}</span>', SafeString("<wbr>".join(conditional_escape(p) for p in parts))
    )


def _wrapped_column(model: Any, name: str) -> Callable[[Any], str] | None:
    """A list column showing the model field `name` through `wrap_name`, labelled and sorted as the field."""
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        return None

    def column(obj: Any) -> str:
        value = getattr(obj, name)
        return wrap_name(value, span=False) if value not in (None, "") else "-"

    column.__name__ = name  # the cell keeps its `field-<name>` class (the stylesheet sizes it)
    column.short_description = field.verbose_name  # type: ignore[attr-defined]
    column.admin_order_field = name  # type: ignore[attr-defined]
    return column


class KitAdminMixin:
    """Offers the actions features registered for this model (``config.registry.admin_action_register``).

    A registered action keeps Django's rules: its ``allowed_permissions`` are checked
    like those of a declared action, and popups show no actions.

    Bounds the search: a search text over MAX_SEARCH_LENGTH is dropped before the
    change list (and any admin's own ``get_search_results``) sees it, with a warning,
    and the list shows unfiltered; an autocomplete over the bound finds nothing.

    Pages with a capped count and key-first rows (``adminkit.paging``), and no second, unfiltered
    count: a list of ten million rows answers as fast as one of a thousand.
    """

    paginator = CappedPaginator
    show_full_result_count = False

    def get_paginator(
        self, request: HttpRequest, queryset: Any, per_page: int, orphans: int = 0, allow_empty_first_page: bool = True
    ) -> Any:
        """The capped paginator; a searched list counts only up to SEARCH_COUNT_CAP (adminkit.paging)."""
        paginator = super().get_paginator(request, queryset, per_page, orphans, allow_empty_first_page)
        if request.GET.get(SEARCH_VAR) and isinstance(paginator, CappedPaginator):
            paginator.cap = min(paginator.cap, SEARCH_COUNT_CAP)
        return paginator

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        term = request.GET.get(SEARCH_VAR, "")
        if len(term) > MAX_SEARCH_LENGTH:
            params = request.GET.copy()
            del params[SEARCH_VAR]
            request.GET = params
            messages.warning(request, search_too_long_message())
        return super().changelist_view(request, extra_context)  # type: ignore[misc]

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        if len(search_term) > MAX_SEARCH_LENGTH:
            return queryset.none(), False
        return super().get_search_results(request, queryset, search_term)  # type: ignore[misc]

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        """Account-name columns (WRAPPED_COLUMNS) wrap at their parts; see ``wrap_name``."""
        shown = list(super().get_list_display(request))  # type: ignore[misc]
        model = self.model  # type: ignore[attr-defined]
        return [
            (_wrapped_column(model, item) or item) if isinstance(item, str) and item in WRAPPED_COLUMNS else item
            for item in shown
        ]

    def get_actions(self, request: HttpRequest) -> dict[str, AdminAction]:
        actions: dict[str, AdminAction] = super().get_actions(request)  # type: ignore[misc]
        if self.actions is None or IS_POPUP_VAR in request.GET:  # type: ignore[attr-defined]
            return actions
        for func in admin_actions_for(self.model._meta.label_lower):  # type: ignore[attr-defined]
            perms = getattr(func, "allowed_permissions", ())
            if all(getattr(self, f"has_{perm}_permission")(request) for perm in perms):
                func, name, description = self.get_action(func)  # type: ignore[attr-defined]
                actions.setdefault(name, (func, name, description))
        return actions


class KitAdmin(KitAdminMixin, admin.ModelAdmin):
    """An editable admin with the kit's stylesheet and registered actions."""

    class Media:
        css = {"all": [ADMIN_CSS]}


class ReadOnlyAdmin(KitAdmin):
    """History admin: view only, no facet counts (they scan whole tables), no full count."""

    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER

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

SCOPE_LABELS = {
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
    label = SCOPE_LABELS.get(level, level)
    return f"{label} {name}".strip()


def snapshot_groups(
    snapshot: dict[str, Any] | None, last_known: Callable[[str], Any] | None = None
) -> list[dict[str, Any]]:
    """Privileges grouped by scope, broadest level first, for the account page.

    `last_known(scope)` (from accountsync.coverage) says whether a scope lay in an unreadable
    gap: such a group carries it as ``last_known`` and is shown as "last known at …".
    """
    order = list(SCOPE_LEVELS)
    groups: dict[str, dict[str, Any]] = {}
    for priv in (snapshot or {}).get("privileges", []):
        scope = priv["scope"]
        group = groups.get(scope)
        if group is None:
            known = last_known(scope) if last_known else None
            group = groups[scope] = {"scope": scope, "label": scope_label(scope), "privileges": [], "last_known": known}
        group["privileges"].append(priv)
    level_rank = {level: rank for rank, level in enumerate(order)}
    return sorted(groups.values(), key=lambda g: (level_rank.get(split_scope(g["scope"])[0], len(order)), g["scope"]))


def snapshot_context(
    snapshot: dict[str, Any] | None,
    attributes: dict[str, Any] | None = None,
    *,
    last_known: Callable[[str], Any] | None = None,
    gaps: list[Any] | None = None,
) -> dict[str, Any]:
    """Template context for `admin/whalefall/_snapshot.html` (attributes fall back to the account's).

    `gaps` are the coverage episodes open at the snapshot's moment (shown above the grants).
    """
    snap = snapshot or {}
    return {
        "snapshot_groups": snapshot_groups(snap, last_known),
        # what could not be read, apart from what the options leave out (a choice, not a gap)
        "snapshot_gaps": [g for g in gaps or [] if getattr(g, "kind", "") != "out_of_scope"],
        "snapshot_not_audited": [g for g in gaps or [] if getattr(g, "kind", "") == "out_of_scope"],
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

    Every operation is its own line with its old and new values (``valid_until: ∅ → 2030-01-01``);
    a new account's entry reads differently, see ``change_html``.
    """
    ops = ops or []
    shown = ops if limit is None else ops[:limit]
    lines = [diff_line(op) for op in shown]
    html = format_html_join("", '<div class="wf-diff wf-diff-{}">{}</div>', lines)
    if limit is not None and len(ops) > limit:
        html += format_html('<div class="wf-diff-more">{}</div>', gettext("… %(n)d more") % {"n": len(ops) - limit})
    return format_html('<div class="wf-diff-lines">{}</div>', html) if lines else ""


ADDED = "added"
SUMMARY_ITEMS = 6


def _is_privilege_op(op: dict[str, Any]) -> bool:
    return op.get("scope") not in (ROLE_SCOPE, CAPABILITY_SCOPE, ATTRIBUTE_SCOPE)


def added_line(ops: list[dict[str, Any]] | None) -> str:
    """`Added with 3 privileges, role app_rw, capability WILDCARD_HOST, 14 attributes`: a new account in one line."""
    ops = ops or []
    privileges = [op for op in ops if _is_privilege_op(op) and op.get("op") == "grant"]
    roles = [str(op.get("privilege")) for op in ops if op.get("scope") == ROLE_SCOPE and op.get("op") == "grant"]
    capabilities = [str(op.get("field")) for op in ops if op.get("scope") == CAPABILITY_SCOPE and op.get("new")]
    attributes = [op for op in ops if op.get("scope") == ATTRIBUTE_SCOPE]
    parts = []
    if privileges:
        parts.append(ngettext("%(n)d privilege", "%(n)d privileges", len(privileges)) % {"n": len(privileges)})
    if roles:
        parts.append(ngettext("role %(names)s", "roles %(names)s", len(roles)) % {"names": ", ".join(roles)})
    if capabilities:
        parts.append(
            ngettext("capability %(names)s", "capabilities %(names)s", len(capabilities))
            % {"names": ", ".join(capabilities)}
        )
    if attributes:
        parts.append(ngettext("%(n)d attribute", "%(n)d attributes", len(attributes)) % {"n": len(attributes)})
    if not parts:
        return gettext("Added with no privileges")
    return gettext("Added with %(what)s") % {"what": "; ".join(parts)}


def added_html(ops: list[dict[str, Any]] | None, *, expanded: bool = False) -> str:
    """A new account's entry: the one line, and its grants and attributes behind a click.

    What a new account arrives with is its description, not a list of changes to review:
    its attributes are one neutral line, never one "changed" line each.
    """
    ops = ops or []
    lines = [diff_line(op) for op in ops if op.get("scope") != ATTRIBUTE_SCOPE]
    attributes = [op for op in ops if op.get("scope") == ATTRIBUTE_SCOPE]
    body = format_html_join("", '<div class="wf-diff wf-diff-{}">{}</div>', lines)
    if attributes:
        body += format_html(
            '<div class="wf-diff wf-diff-attrs">{}</div>',
            gettext("attributes: %(list)s")
            % {"list": " · ".join(f"{op.get('field')} {_fmt(op.get('new'))}" for op in attributes)},
        )
    return format_html(
        '<details class="wf-diff-added"{}><summary class="wf-diff wf-diff-grant">{}</summary>'
        '<div class="wf-diff-lines">{}</div></details>',
        " open" if expanded else "",
        added_line(ops),
        body,
    )


def change_html(
    change_type: str, ops: list[dict[str, Any]] | None, limit: int | None = None, *, expanded: bool = False
) -> str:
    """A change-log entry's diff as the admin shows it: ``added_html`` for a new account, else ``diff_html``."""
    if change_type == ADDED and ops:
        return added_html(ops, expanded=expanded)
    return diff_html(ops, limit=limit)


def change_summary(change_type: str, ops: list[dict[str, Any]] | None, stored: str = "") -> str:
    """The entry in one line, in the words of its diff (scopes as ``Database sales``, like every admin page).

    The stored summary (the API's, with raw scopes) is the fallback for an entry without a diff
    (a removal, a return without changes).
    """
    ops = ops or []
    if not ops:
        return stored
    if change_type == ADDED:
        return added_line(ops)
    texts = [diff_line(op)[1] for op in ops[:SUMMARY_ITEMS]]
    line = ", ".join(texts)
    if len(ops) > SUMMARY_ITEMS:
        line += " " + gettext("(+%(n)d more)") % {"n": len(ops) - SUMMARY_ITEMS}
    return line
