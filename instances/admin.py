"""Admin for instances, credentials and tags.

The credential password is a write-only form field: it is encrypted on save
and never rendered back, not even masked, so the admin HTML cannot leak it.
The instance list is where syncs start: "Sync selected instances" and the
"Sync all active instances" button create a ``manual_batch`` session on the
workers (``sync.run_sync`` required) and open its batch-details page.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from accountsync import selectors
from accountsync.admin import ADMIN_CSS, badge, diff_html
from accountsync.connection import instance_connection_test
from instances.models import Credential, Instance, Tag
from sync.admin import can_run_sync, refuse_without_run_sync
from sync.models import SyncInstanceRecord, SyncTypeChoices
from sync.services import SyncRequestError, sync_session_start

RUN_SYNC_ACTIONS = frozenset({"sync_selected"})
HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{3,8}$")
RECENT_ROWS = 10


class CredentialForm(forms.ModelForm):
    password = forms.CharField(
        label=_("Password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Stored encrypted. Leave empty to keep the current password."),
    )
    clear_password = forms.BooleanField(
        label=_("Clear password"), required=False, help_text=_("Store no password (e.g. socket authentication).")
    )

    class Meta:
        model = Credential
        fields = ["name", "username", "password", "clear_password", "description"]

    def save(self, commit: bool = True) -> Credential:
        credential: Credential = super().save(commit=False)
        raw = self.cleaned_data.get("password") or ""
        if self.cleaned_data.get("clear_password"):
            credential.password_encrypted = ""
        elif raw or not credential.pk:
            credential.set_password(raw)
        if commit:
            credential.save()
        return credential


@admin.register(Credential)
class CredentialAdmin(admin.ModelAdmin):
    form = CredentialForm
    list_display = ["name", "username", "password_state", "instance_count", "updated_at"]
    search_fields = ["name", "username"]

    @admin.display(description=_("password"))
    def password_state(self, obj: Credential) -> str:
        return _("set (encrypted)") if obj.has_password else _("none")

    @admin.display(description=_("instances"))
    def instance_count(self, obj: Credential) -> int:
        return obj.instances.count()


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ["name", "color"]
    search_fields = ["name"]


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = ["name", "db_type", "environment", "tag_list", "version", "last_sync", "is_active"]
    list_filter = ["db_type", "environment", "tags", "is_active", "last_sync_status"]
    search_fields = ["name", "host", "description", "version"]
    list_select_related = ["credential"]
    filter_horizontal = ["tags"]
    readonly_fields = ["version", "last_sync_at", "last_sync_status", "sync_count", "created_at", "updated_at"]
    actions = ["sync_selected", "test_connection"]
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    change_list_template = "admin/instances/instance/change_list.html"
    change_form_template = "admin/instances/instance/change_form.html"
    fieldsets = [
        (None, {"fields": ["name", "db_type", "environment", "is_active", "description", "tags"]}),
        (_("Connection"), {"fields": ["host", "port", "database_name", "credential", "options"]}),
        (
            _("Status"),
            {"fields": ["version", "last_sync_at", "last_sync_status", "sync_count", "created_at", "updated_at"]},
        ),
    ]

    class Media:
        css = {"all": [ADMIN_CSS]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Instance]:
        latest = SyncInstanceRecord.objects.filter(instance=OuterRef("pk")).order_by("-pk").values("session_id")[:1]
        return super().get_queryset(request).prefetch_related("tags").annotate(last_session_pk=Subquery(latest))

    @admin.display(description=_("tags"))
    def tag_list(self, obj: Instance) -> str:
        return format_html_join(
            " ",
            '<span class="wf-badge" style="background:{}">{}</span>',
            ((t.color if HEX_COLOR.match(t.color) else "#607d8b", t.name) for t in obj.tags.all()),
        )

    @admin.display(description=_("last sync"), ordering="last_sync_at")
    def last_sync(self, obj: Instance) -> str:
        if obj.last_sync_at is None and not obj.last_session_pk:
            return gettext("never")
        parts = [badge(obj.last_sync_status or "none", obj.get_last_sync_status_display())]
        if obj.last_sync_at:
            parts.append(format_html('<span class="nowrap">{}</span>', timesince_short(obj.last_sync_at)))
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
        return [
            path("sync-all/", self.admin_site.admin_view(self.sync_all_view), name="instances_instance_sync_all"),
            *super().get_urls(),
        ]

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
        if request.method == "POST" and request.POST.get("action") in RUN_SYNC_ACTIONS and not can_run_sync(request):
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
                account_counts=selectors.account_list(instance=instance, active=None)
                .order_by()
                .aggregate(total=Count("pk"), active=Count("pk", filter=Q(is_active=True))),
                recent_records=list(
                    SyncInstanceRecord.objects.filter(instance=instance)
                    .select_related("session")
                    .order_by("-pk")[:RECENT_ROWS]
                ),
                recent_changes=[
                    (change, diff_html(change.diff, limit=4))
                    for change in selectors.change_log_list(instance=instance)[:RECENT_ROWS]
                ],
            )
        return super().change_view(request, object_id, form_url, extra)

    @admin.action(description=_("Test connection"), permissions=["view"])
    def test_connection(self, request: HttpRequest, queryset: QuerySet[Instance]) -> None:
        ok = 0
        for instance in queryset.select_related("credential"):
            result = instance_connection_test(instance=instance)
            if result.ok:
                ok += 1
                self.message_user(
                    request, _("[%(name)s] connected, %(version)s") % {"name": instance.name, "version": result.version}
                )
            else:
                self.message_user(
                    request,
                    _("[%(kind)s error] %(message)s") % {"kind": result.error_kind, "message": result.message},
                    level=messages.ERROR,
                )
        total = queryset.count()
        self.message_user(
            request,
            ngettext("%(ok)d of %(total)d instance reachable.", "%(ok)d of %(total)d instances reachable.", total)
            % {"ok": ok, "total": total},
            level=messages.SUCCESS if ok == total else messages.WARNING,
        )


def timesince_short(value: Any) -> str:
    """`3 minutes ago` style, for the last-sync column."""
    return gettext("%(time)s ago") % {"time": timesince(value, depth=1)}
