"""Read-only admin for what syncs found: accounts, permission snapshots, change logs.

History is evidence: it can be browsed and filtered, never added, edited or
deleted through the admin. The pieces shared with other admins (badges, the
date-range filter, snapshot and diff rendering) come from the admin kit; the
export actions are added by ``exports`` through the registry.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, time
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import display_for_value
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.db.models.fields.json import KT
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accountsync import selectors
from accountsync.coverage import LastKnownMarker, gaps_at
from accountsync.effective_read import account_effective_access
from accountsync.facts import facts_count
from accountsync.models import AccountChangeLog, AccountPermission, InstanceAccount, InstanceServerFacts
from adminkit.kit import (
    MAX_SEARCH_LENGTH,
    ReadOnlyAdmin,
    badge,
    change_html,
    change_summary,
    date_range_filter,
    scope_label,
    snapshot_context,
)
from config.scopes import ROLE_SCOPE

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


class OracleMaintainedFilter(admin.SimpleListFilter):
    """Yes/No on the account's attribute ``oracle_maintained`` (SYS, SYSTEM, DBSNMP, DBA, ...; Oracle only)."""

    title = _("Oracle-maintained")
    parameter_name = "oracle_maintained"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("1", _("Yes")), ("0", _("No"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        if self.value() == "1":
            return queryset.filter(attributes__oracle_maintained=True)
        if self.value() == "0":  # accounts without the attribute (other families) too: SQL's NULL is not "no"
            missing = Q(attributes__oracle_maintained__isnull=True)
            return queryset.filter(Q(attributes__oracle_maintained=False) | missing)
        return queryset


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
    try:
        if timezone.is_naive(value):
            value = timezone.make_aware(value)
        value.astimezone(UTC)
    except (ValueError, OverflowError):
        return None, gettext("“%(value)s” is out of range; showing the current permissions.") % {"value": raw}
    # a bare date of today means "now"; anything later is a moment nobody can answer for yet
    if (value.date() > timezone.localdate()) if len(raw) == 10 else (value > timezone.now()):
        return None, gettext("“%(value)s” is in the future; showing the current permissions.") % {"value": raw}
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
        OracleMaintainedFilter,
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
        if "@" in term:
            return self._at_search(request, queryset, term)
        if term and ("*" in term or term.startswith("host=")):
            try:
                found = selectors.account_search(q=term, mode="auto")
            except selectors.AccountSearchError as exc:
                self.message_user(request, gettext("Search not understood: %(error)s") % {"error": exc}, messages.ERROR)
                return queryset.none(), False
            return queryset.filter(pk__in=found.values("pk")), False
        return super().get_search_results(request, queryset, search_term)

    def _at_search(
        self, request: HttpRequest, queryset: QuerySet[InstanceAccount], term: str
    ) -> tuple[QuerySet[InstanceAccount], bool]:
        """A text with ``@``: ``name@host`` (MySQL), ``name@`` (any host), ``@host``, or part of a name.

        The identity as the list shows it (``'app'@'%'``) and a PostgreSQL role whose name holds an
        ``@`` (``svc@corp``) are found too: the structured matches are joined by the plain search.
        """
        name, _at, host = term.rpartition("@")
        name, host = name.strip("'\"` "), host.strip("'\"` ")
        found = queryset.none()
        if name and not host:  # "app@": the name on every host
            found = queryset.filter(pk__in=selectors.account_search(q=name, mode="exact").values("pk"))
        elif host:
            with contextlib.suppress(selectors.AccountSearchError):
                found = queryset.filter(pk__in=selectors.account_search(q=term, mode="auto").values("pk"))
        plain, duplicates = super().get_search_results(request, queryset, term)
        return found | plain, duplicates

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
                extra["at_error"] = at_error
            if at is not None:
                current = selectors.account_permission_at(account=account, at=at)
            else:
                current = selectors.account_current_permission(account=account)
            snapshot = current.snapshot if current else None
            changes = list(selectors.change_log_list(account=account)[:50])
            effective = account_effective_access(account=account, at=at) if current else []
            gaps = gaps_at(instance=account.instance_id, at=at)
            marker = LastKnownMarker(gaps)
            context = snapshot_context(
                snapshot, account.attributes, last_known=marker.mark if marker else None, gaps=gaps
            )
            shown = effective[:EFFECTIVE_ROWS]
            urls = _role_urls(account, context["snapshot_roles"], shown)
            role_known = marker.mark(ROLE_SCOPE) if marker else None
            context["snapshot_roles"] = [
                {**role, "url": urls.get(role.get("role", "")), "last_known": role_known}
                for role in context["snapshot_roles"]
            ]
            extra.update(
                context,
                role_flags=_role_flag_words(account.instance.db_type),
                at=at,
                at_value=timezone.localtime(at).strftime("%Y-%m-%dT%H:%M") if at else "",
                current_permission=current,
                effective_rows=[
                    {
                        **grant.as_dict(),
                        "label": scope_label(grant.scope),
                        "path": [(hop, urls.get(hop)) for hop in grant.via],
                        "last_known": marker.mark(grant.scope) if marker else None,
                    }
                    for grant in shown
                ],
                effective_total=len(effective),
                effective_shown=min(len(effective), EFFECTIVE_ROWS),
                snapshot_versions=selectors.account_permission_history(account=account).count(),
                change_rows=[(c, change_html(c.change_type, c.diff)) for c in changes],
            )
        return super().change_view(request, object_id, form_url, extra)


def _role_urls(account: InstanceAccount, roles: list[dict[str, Any]], grants: list[Any]) -> dict[str, str]:
    """The account pages of the roles it holds and of every role on its effective-access paths (one query).

    A role is named by its identity, or by the username of a role account (as ``Catalog.finalize``
    resolves it); pseudo-roles (PostgreSQL ``public``, SQL Server fixed roles) have no page.
    """
    names = {str(role.get("role", "")) for role in roles} | {hop for grant in grants for hop in grant.via}
    names.discard("")
    if not names:
        return {}
    found = InstanceAccount.objects.filter(instance_id=account.instance_id).filter(
        Q(identity__in=names) | Q(username__in=names, kind="role")
    )
    urls: dict[str, str] = {}
    for pk, identity, username in found.values_list("pk", "identity", "username"):
        url = reverse("admin:accountsync_instanceaccount_change", args=[pk])
        if identity in names:
            urls[identity] = url
        if username in names:
            urls.setdefault(username, url)
    return urls


def _role_flag_words(db_type: str) -> dict[str, str]:
    """How a membership's ``default`` flag reads in this family (PostgreSQL: inheritance; others: default role)."""
    if db_type == "postgresql":
        return {"default": gettext("inherited at login"), "not_default": gettext("not inherited: only after SET ROLE")}
    if db_type == "sqlserver":
        return {"default": gettext("always in force"), "not_default": gettext("always in force")}
    return {"default": gettext("default role: in force at login"), "not_default": gettext("only after SET ROLE")}


class AccountSearchMixin:
    """A list keyed by account (snapshots, changes) searched by account: ``selectors.account_ids_matching``.

    The text is resolved to account ids once, so the search never joins the whole history to the
    accounts table; the grammar is the accounts list's (``app_*``, ``app_rw@%``, ``host=10.0.*``).
    """

    search_help_text = _(
        "An account: a name finds it anywhere in the identity; app_* (name prefix), app_rw@% (name and "
        "MySQL host), host=10.0.* (host)."
    )

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term or len(term) > MAX_SEARCH_LENGTH:
            return super().get_search_results(request, queryset, search_term)  # type: ignore[misc]
        try:
            ids = selectors.account_ids_matching(term)
        except selectors.AccountSearchError as exc:
            self.message_user(  # type: ignore[attr-defined]
                request, gettext("Search not understood: %(error)s") % {"error": exc}, messages.ERROR
            )
            return queryset.none(), False
        return queryset.filter(account_id__in=ids), False


@admin.register(AccountPermission)
class AccountPermissionAdmin(AccountSearchMixin, ReadOnlyAdmin):
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
class AccountChangeLogAdmin(AccountSearchMixin, ReadOnlyAdmin):
    list_display = ["detected_at", "instance", "account", "change_type_badge", "changes"]
    list_filter = [
        "change_type",
        "instance",
        ("instance__db_type", admin.ChoicesFieldListFilter),
        date_range_filter("detected_at", "detected", _("detected")),
    ]
    search_fields = ["account__identity"]  # through AccountSearchMixin: by account, not across the join
    list_select_related = ["account", "instance"]
    fields = ["detected_at", "instance", "account", "change_type", "session", "summary_line"]
    readonly_fields = ["session", "summary_line"]
    change_form_template = "admin/accountsync/accountchangelog/change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[AccountChangeLog]:
        # the page's title and breadcrumbs name the account and the instance (AccountChangeLog.__str__)
        return super().get_queryset(request).select_related("account", "instance")

    @admin.display(description=_("summary"))
    def summary_line(self, obj: AccountChangeLog) -> str:
        """The entry in one line, in the same words as its diff below."""
        return change_summary(obj.change_type, obj.diff, obj.summary)

    @admin.display(description=_("session"))
    def session(self, obj: AccountChangeLog) -> str:
        if obj.session_id is None:
            return self.get_empty_value_display()
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:sync_syncsession_change", args=[str(obj.session_id)]),
            str(obj.session_id)[:8],
        )

    @admin.display(description=_("change type"), ordering="change_type")
    def change_type_badge(self, obj: AccountChangeLog) -> str:
        return badge(obj.change_type, obj.get_change_type_display())

    @admin.display(description=_("changes"))
    def changes(self, obj: AccountChangeLog) -> str:
        return change_html(obj.change_type, obj.diff, limit=DIFF_LINES_IN_LIST) or obj.summary

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        log = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if log is not None:
            extra["diff_html"] = change_html(log.change_type, log.diff, expanded=True)
        return super().change_view(request, object_id, form_url, extra)


FACTS_SHOWN_CHARS = 200_000  # an Oracle version is megabytes; the API returns it whole


@admin.register(InstanceServerFacts)
class InstanceServerFactsAdmin(ReadOnlyAdmin):
    """The versions of an instance's server-wide facts (accountsync/facts.py) that sync records refer to."""

    list_display = ["instance", "valid_from", "valid_to", "short_digest"]
    list_filter = ["instance"]
    list_select_related = ["instance"]
    fields = ["instance", "valid_from", "valid_to", "session_id", "digest", "facts_summary", "facts_text"]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[InstanceServerFacts]:
        # the list never shows the facts (megabytes on Oracle): the page of one version loads them on use
        return super().get_queryset(request).defer("facts")

    @admin.display(description=_("digest"))
    def short_digest(self, obj: InstanceServerFacts) -> str:
        return obj.digest[:12]

    @admin.display(description=_("what is stored"))
    def facts_summary(self, obj: InstanceServerFacts) -> str:
        rows = [(key, facts_count(value)) for key, value in sorted((obj.facts or {}).items())]
        return format_html_join("; ", "{}: {}", rows) if rows else "-"

    @admin.display(description=_("facts"))
    def facts_text(self, obj: InstanceServerFacts) -> str:
        text = json.dumps(obj.facts, indent=1, sort_keys=True, ensure_ascii=False)
        note = ""
        if len(text) > FACTS_SHOWN_CHARS:
            note = gettext(
                "Cut at %(shown)s of %(total)s characters; GET /api/v1/server-facts/%(id)s/ returns all."
            ) % {
                "shown": FACTS_SHOWN_CHARS,
                "total": len(text),
                "id": obj.pk,
            }
            text = text[:FACTS_SHOWN_CHARS]
        return format_html(
            '<p>{}</p><pre class="wf-json" style="white-space: pre-wrap; overflow-wrap: anywhere">{}</pre>', note, text
        )
