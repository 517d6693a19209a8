"""The admin composition: pages that need more than one layer.

Why here, at the top of the stack beside ``api``: the instance list starts syncs
(``sync``), tests connections (``accountsync``) and shows the last sync; the instance
page shows its accounts, recent records and recent changes, and has its own Test
connection and Sync now buttons. ``instances`` may not import any of those, so its admin
provides ``InstanceAdminBase`` and this module adds the rest and registers it. The
account page is ``accountsync``'s, with the account's risk findings (``findings`` sits
above ``accountsync``) added here the same way. A new page that spans layers belongs here too.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from accountsync import selectors
from accountsync.admin import InstanceAccountAdmin
from accountsync.connection import instance_connection_test
from accountsync.coverage import gap_episodes
from accountsync.models import CoverageGapEpisode, InstanceAccount
from adminkit.kit import ReadOnlyAdmin, badge, change_html, date_range_filter
from classification.admin import (
    AccountClassificationFilter,
    account_classification_badges,
    account_classifications_prefetch,
)
from directory.selectors import account_section
from findings.models import SEVERITY_RANK
from findings.rules import RULES_BY_CODE
from findings.selectors import finding_list
from grantscripts.admin import account_script_links, account_urls
from instances.admin import InstanceAdminBase
from instances.models import Instance
from sync.admin import broker_unavailable, can_run_sync, refuse_without_run_sync
from sync.models import SyncInstanceRecord, SyncTypeChoices
from sync.services import SyncBrokerError, SyncRequestError, sync_session_start

# actions that need sync.run_sync: a sync, and a connection test (outbound, with the production
# credential, and it records the server version)
RUN_SYNC_ACTIONS = frozenset({"sync_selected", "test_connection"})
RECENT_ROWS = 10


class InstanceCoverageFilter(admin.SimpleListFilter):
    """Instances whose syncs cannot read everything (open coverage gaps), and those that read it all."""

    title = _("coverage")
    parameter_name = "coverage"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("gaps", gettext("With coverage gaps")), ("complete", gettext("Everything read"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        open_gap = CoverageGapEpisode.objects.filter(instance=OuterRef("pk"), closed_at__isnull=True, kind="unreadable")
        if self.value() == "gaps":
            return queryset.filter(Exists(open_gap))
        if self.value() == "complete":
            return queryset.filter(~Exists(open_gap))
        return queryset


@admin.register(Instance)
class InstanceAdmin(InstanceAdminBase):
    """Instances as users see them: where syncs start, and what the last ones found."""

    list_display = ["name", "db_type", "environment", "tag_list", "version", "last_sync", "is_active"]
    list_filter = [*InstanceAdminBase.list_filter, InstanceCoverageFilter]
    actions = ["sync_selected", "test_connection"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Instance]:
        latest = SyncInstanceRecord.objects.filter(instance=OuterRef("pk")).order_by("-pk").values("session_id")[:1]
        open_gap = CoverageGapEpisode.objects.filter(instance=OuterRef("pk"), closed_at__isnull=True, kind="unreadable")
        return super().get_queryset(request).annotate(last_session_pk=Subquery(latest), open_gaps=Exists(open_gap))

    @admin.display(description=_("last sync"), ordering="last_sync_at")
    def last_sync(self, obj: Instance) -> str:
        if obj.last_sync_at is None and not obj.last_session_pk:
            return gettext("never")
        if obj.last_sync_status == "completed" and obj.open_gaps:
            parts = [badge("gaps", gettext("Completed with gaps"))]
        else:
            parts = [badge(obj.last_sync_status or "none", obj.get_last_sync_status_display())]
        if obj.last_sync_at:
            parts.append(
                format_html(
                    '<span class="nowrap" title="{}">{}</span>',
                    formats.date_format(timezone.localtime(obj.last_sync_at), "DATETIME_FORMAT"),
                    timesince_short(obj.last_sync_at),
                )
            )
        if obj.last_session_pk:
            parts.append(
                format_html(
                    '<a href="{}">{}</a>',
                    reverse("admin:sync_syncsession_change", args=[obj.last_session_pk]),
                    gettext("session"),
                )
            )
        return format_html_join(" ", "{}", ((p,) for p in parts))

    def has_run_sync_permission(self, request: HttpRequest) -> bool:
        """Lets ``@admin.action(permissions=["run_sync"])`` hide the sync action from viewers."""
        return can_run_sync(request)

    def _start_batch(self, request: HttpRequest, instances: list[Instance]) -> HttpResponseRedirect | None:
        """Start one manual_batch session on the workers and send the user to its page."""
        try:
            session = sync_session_start(
                instances=instances, sync_type=SyncTypeChoices.MANUAL_BATCH, created_by=request.user
            )
        except SyncRequestError as exc:
            self.message_user(request, gettext("Nothing was started: %(error)s") % {"error": exc}, messages.ERROR)
            return None
        except SyncBrokerError as exc:
            return broker_unavailable(request, exc)
        self.message_user(
            request,
            ngettext(
                "Sync session %(id)s started for %(n)d instance on the workers.",
                "Sync session %(id)s started for %(n)d instances on the workers.",
                len(instances),
            )
            % {"id": str(session.session_id)[:8], "n": len(instances)},
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:sync_syncsession_change", args=[session.pk]))

    @admin.action(description=_("Sync selected instances"), permissions=["run_sync"])
    def sync_selected(self, request: HttpRequest, queryset: QuerySet[Instance]) -> HttpResponseRedirect | None:
        instances = list(queryset.order_by("name"))
        if not instances:
            self.message_user(
                request, gettext("None of the selected instances exists any more; nothing was started."), messages.ERROR
            )
            return None
        inactive = [i.name for i in instances if not i.is_active]
        if inactive:
            self.message_user(
                request,
                ngettext(
                    "Instance %(names)s is inactive: activate it or leave it out. Nothing was started.",
                    "Instances %(names)s are inactive: activate them or leave them out. Nothing was started.",
                    len(inactive),
                )
                % {"names": ", ".join(inactive)},
                messages.ERROR,
            )
            return None
        return self._start_batch(request, instances)

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("sync-all/", wrap(self.sync_all_view), name="instances_instance_sync_all"),
            path("<path:object_id>/sync-now/", wrap(self.sync_now_view), name="instances_instance_sync_now"),
            path(
                "<path:object_id>/test-connection/",
                wrap(self.test_connection_view),
                name="instances_instance_test_connection",
            ),
            *super().get_urls(),
        ]

    def _page_button(self, request: HttpRequest, object_id: str, refuse: Any) -> tuple[Instance | None, HttpResponse]:
        """The instance page's buttons: POST only, an instance the user may see, ``sync.run_sync``.

        Returns the instance (None when the button may not act) and where to go afterwards.
        """
        if request.method != "POST":
            return None, HttpResponseNotAllowed(["POST"])
        instance = self.get_object(request, object_id)
        if instance is None:
            return None, HttpResponseRedirect(reverse("admin:instances_instance_changelist"))
        back = HttpResponseRedirect(reverse("admin:instances_instance_change", args=[instance.pk]))
        if not can_run_sync(request):
            refuse(request)
            return None, back
        return instance, back

    def sync_now_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The instance page's "Sync now": a manual_batch session of this one instance, on the workers."""
        instance, back = self._page_button(request, object_id, refuse_without_run_sync)
        if instance is None:
            return back
        if not instance.is_active:
            self.message_user(
                request,
                gettext("Instance %(name)s is inactive: activate it to sync it. Nothing was started.")
                % {"name": instance.name},
                messages.ERROR,
            )
            return back
        return self._start_batch(request, [instance]) or back

    def test_connection_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The instance page's "Test connection": the same test as the list action, for this instance."""
        instance, back = self._page_button(request, object_id, refuse_connection_test)
        if instance is not None:
            self._report_connection_test(request, instance)
        return back

    def sync_all_view(self, request: HttpRequest) -> HttpResponse:
        """POST only: one manual_batch session over every active instance."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        back = HttpResponseRedirect(reverse("admin:instances_instance_changelist"))
        if refuse_without_run_sync(request):
            return back
        instances = list(Instance.objects.filter(is_active=True).order_by("name"))
        if not instances:
            self.message_user(
                request, gettext("There is no active instance to sync; nothing was started."), messages.ERROR
            )
            return back
        return self._start_batch(request, instances) or back

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        action = request.POST.get("action") if request.method == "POST" else None
        if action in RUN_SYNC_ACTIONS and not can_run_sync(request):
            if action == "test_connection":
                refuse_connection_test(request)
            else:
                refuse_without_run_sync(request)
            return HttpResponseRedirect(request.get_full_path())
        return super().changelist_view(request, {"can_run_sync": can_run_sync(request), **(extra_context or {})})

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        instance = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if instance is not None:
            extra.update(
                can_run_sync=can_run_sync(request),
                account_counts=selectors.account_list(instance=instance, active=None)
                .order_by()
                .aggregate(total=Count("pk"), active=Count("pk", filter=Q(is_active=True))),
                recent_records=list(
                    SyncInstanceRecord.objects.filter(instance=instance)
                    .select_related("session")
                    .order_by("-pk")[:RECENT_ROWS]
                ),
                open_gaps=(gaps := list(gap_episodes(instance=instance, open_only=True))),
                unreadable_gaps=sum(1 for g in gaps if g.kind == "unreadable"),
                recent_changes=[
                    (change, change_html(change.change_type, change.diff, limit=4))
                    for change in selectors.change_log_list(instance=instance)[:RECENT_ROWS]
                ],
            )
        return super().change_view(request, object_id, form_url, extra)

    @admin.action(description=_("Test connection"), permissions=["run_sync"])
    def test_connection(self, request: HttpRequest, queryset: QuerySet[Instance]) -> None:
        if not can_run_sync(request):
            refuse_connection_test(request)
            return
        ok = 0
        for instance in queryset.select_related("credential"):
            ok += self._report_connection_test(request, instance)
        total = queryset.count()
        self.message_user(
            request,
            ngettext("%(ok)d of %(total)d instance reachable.", "%(ok)d of %(total)d instances reachable.", total)
            % {"ok": ok, "total": total},
            level=messages.SUCCESS if ok == total else messages.WARNING,
        )

    def _report_connection_test(self, request: HttpRequest, instance: Instance) -> bool:
        """Test one instance and say how it went (one admin message); True when it connected."""
        result = instance_connection_test(instance=instance)
        if result.ok:
            self.message_user(
                request, _("[%(name)s] connected, %(version)s") % {"name": instance.name, "version": result.version}
            )
        else:
            self.message_user(
                request,
                _("[%(kind)s error] %(message)s") % {"kind": result.error_kind, "message": result.message},
                level=messages.ERROR,
            )
        return result.ok


# --- the account page: what the account admin shows, plus its findings (a higher layer) ----

ACCOUNT_FINDINGS = 50


def finding_detail_text(detail: dict[str, Any] | None) -> str:
    """A finding's detail in one line: `capabilities: SUPERUSER; reasons: via role dba`."""
    parts = []
    for key, value in (detail or {}).items():
        if isinstance(value, dict) and "examples" in value:
            shown = [str(v) for v in value.get("examples") or []]
            text = ", ".join(shown)
            if (value.get("count") or 0) > len(shown):
                text += " " + gettext("(+%(n)d more)") % {"n": value["count"] - len(shown)}
        elif isinstance(value, list):
            text = ", ".join(str(v) for v in value)
        else:
            text = str(value)
        if text:
            parts.append(f"{key}: {text}")
    return "; ".join(parts)


admin.site.unregister(InstanceAccount)


@admin.register(InstanceAccount)
class AccountAdmin(InstanceAccountAdmin):
    """The account page with the account's open and resolved risk findings (``findings`` sits above ``accountsync``)."""

    # the person who owns the account (directory), shown above the permissions; it extends directory's page with
    # the grant-script and revoke-script links (grantscripts)
    change_form_template = "grantscripts/account_change_form.html"
    # classifications (classification/admin.py): a filter and a column, one prefetch per page
    list_filter = [*InstanceAccountAdmin.list_filter, AccountClassificationFilter]
    list_display = [*InstanceAccountAdmin.list_display, "classification_column"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[InstanceAccount]:
        return super().get_queryset(request).prefetch_related(account_classifications_prefetch())

    @admin.display(description=_("risk"))  # a short heading: the column is a row of colour squares
    def classification_column(self, obj: InstanceAccount) -> str:
        return account_classification_badges(obj)

    def get_urls(self) -> list[Any]:
        return [*account_urls(self), *super().get_urls()]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        account = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if account is not None:
            opened = list(finding_list(account=account, is_open=True)[:ACCOUNT_FINDINGS])
            resolved = list(finding_list(account=account, is_open=False).order_by("-resolved_at")[:ACCOUNT_FINDINGS])
            for finding in (*opened, *resolved):
                rule = RULES_BY_CODE.get(finding.rule_code)
                finding.rule_title = gettext(rule.title) if rule else finding.rule_code
                finding.detail_text = finding_detail_text(finding.detail)
            extra.update(
                findings_panel=True,
                findings_open=sorted(opened, key=lambda f: (-SEVERITY_RANK.get(f.severity, -1), f.rule_code)),
                findings_resolved=resolved,
                findings_url=reverse("admin:findings_finding_changelist")
                + "?"
                + urlencode({"instance__id__exact": account.instance_id, "q": account.identity}),
            )
            extra.update(account_section(account_id=account.pk))
            extra.update(account_script_links(account=account, at=request.GET.get("at", "")))
        return super().change_view(request, object_id, form_url, extra)


def refuse_connection_test(request: HttpRequest) -> None:
    """The admin's answer to a connection test by someone without ``sync.run_sync`` (a viewer)."""
    messages.error(
        request, gettext("You do not have permission to test connections (sync.run_sync); nothing was tested.")
    )


def timesince_short(value: Any) -> str:
    """`3 minutes ago` style, for the last-sync column."""
    return gettext("%(time)s ago") % {"time": timesince(value, depth=1)}


class GapStateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", gettext("Still unreadable")), ("closed", gettext("Readable again"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "open":
            return queryset.filter(closed_at__isnull=True)
        if self.value() == "closed":
            return queryset.filter(closed_at__isnull=False)
        return queryset


@admin.register(CoverageGapEpisode)
class CoverageGapEpisodeAdmin(ReadOnlyAdmin):
    """The coverage history: every stretch of time a sync could not read part of an instance, written by syncs."""

    list_display = ["instance", "scope", "kind", "state", "opened_at", "closed_at", "last_read_at", "fix"]
    list_filter = [
        GapStateFilter,
        "kind",
        "instance__db_type",
        "instance",
        date_range_filter("opened_at", "opened", _("since")),
    ]
    list_select_related = ["instance"]
    search_fields = ["scope", "reason", "instance__name"]
    ordering = ["-opened_at", "-id"]
    fields = [
        "instance",
        "scope",
        "kind",
        "inclusive",
        "reason",
        "fix",
        "opened_at",
        "last_read_at",
        "closed_at",
        "opened_session_id",
        "closed_session_id",
    ]

    @admin.display(description=_("state"), ordering="closed_at")
    def state(self, obj: CoverageGapEpisode) -> str:
        if obj.closed_at is None:
            if obj.kind == "unreadable":
                return badge("gaps", gettext("Unreadable"))
            return badge("none", gettext("Out of scope"))
        return badge("ok", gettext("Readable again"))
