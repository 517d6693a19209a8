"""Baselines in the admin: the list, each baseline's versions and open drift, each version's approved entries.

Nothing here is edited by hand: a version is written only by ``baseline_approve`` (the approve
actions on the accounts and instances lists, "Approve again" here, and "New classification
baseline"), so the pages are read-only and every approval is audited in one place.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.formats import localize
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.timezone import template_localtime
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from adminkit.kit import ReadOnlyAdmin
from baselines.actions import ApproveForm, approve_queryset, refuse_without_approve
from baselines.models import APPROVE_PERMISSION, Baseline, BaselineKind, BaselineVersion
from baselines.selectors import baseline_open_drift, baseline_versions, version_entries
from baselines.services import BaselineError, baseline_approve
from classification.models import Classification

MAX_ROWS = 500  # entries or findings shown on one page; the API lists them all


def _grant_line(row: list[Any]) -> str:
    scope, privilege, effect, grantable, via = row
    how = "direct" if not via else " → ".join(via)
    shown = privilege if effect == "GRANT" else f"{effect} {privilege}"
    return f"{scope} · {shown}{' (grantable)' if grantable else ''} · via {how}"


def drift_html(detail: dict[str, Any] | None) -> SafeString:
    """A DRIFT finding's delta as a list of + / - lines (what the finding page's JSON says, readable)."""
    detail = detail or {}
    lines = detail.get("lines") or []
    header = format_html("<p>{}</p>", gettext("Not in the baseline.")) if detail.get("not_in_baseline") else ""
    unverified = detail.get("unverified") or []
    tail = (
        format_html(
            '<p class="wf-muted">{}</p>',
            gettext("%(n)d difference(s) in unreadable scopes are not counted (last known, not read).")
            % {"n": len(unverified)},
        )
        if unverified
        else ""
    )
    body = format_html_join(
        "",
        '<li class="wf-drift-{}"><code>{}</code></li>',
        (("added" if line.startswith("+") else "missing", line) for line in lines),
    )
    return format_html(
        '{}<ul class="wf-drift" style="margin: 0; padding: 0; list-style: none">{}</ul>{}', header, body, tail
    )


class NewClassificationBaselineForm(ApproveForm):
    classification = forms.ModelChoiceField(
        label=_("Classification"), queryset=Classification.objects.order_by("-risk_level", "code")
    )
    field_order = ["classification", "comment"]


@admin.register(Baseline)
class BaselineAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "kind", "subject", "version", "updated_at", "created_at"]
    list_filter = ["kind"]
    search_fields = ["account__identity", "instance__name", "classification__code", "classification__name"]
    list_select_related = ["account", "account__instance", "instance", "classification"]
    readonly_fields = ["kind", "subject", "version", "created_at", "updated_at", "versions_table", "open_drift"]
    fields = readonly_fields
    actions = ["approve_again"]
    change_list_template = "admin/baselines/baseline/change_list.html"

    def has_approve_baseline_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(APPROVE_PERMISSION)

    @admin.display(description=_("subject"))
    def subject(self, obj: Baseline) -> str:
        return obj.subject_label()

    @admin.display(description=_("versions"))
    def versions_table(self, obj: Baseline) -> SafeString:
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">v{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:baselines_baselineversion_change", args=[v.pk]),
                    v.version,
                    gettext("current") if v.is_current else "",
                    localize(template_localtime(v.approved_at)),
                    v.approved_by_username or "-",
                    v.account_count,
                    v.comment,
                )
                for v in baseline_versions(baseline=obj)[:MAX_ROWS]
            ),
        )
        head = format_html(
            "<tr><th>{}</th><th></th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            gettext("Version"),
            gettext("Approved at"),
            gettext("By"),
            gettext("Accounts"),
            gettext("Comment"),
        )
        return format_html(
            '<div class="wf-table-wrap"><table class="wf-table" id="wf-versions">{}{}</table></div>', head, rows
        )

    @admin.display(description=_("open drift"))
    def open_drift(self, obj: Baseline) -> SafeString:
        findings = list(baseline_open_drift(baseline=obj)[:MAX_ROWS])
        if not findings:
            return format_html('<p class="wf-muted" id="wf-no-drift">{}</p>', gettext("No open drift."))
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td style="min-width: 8em">{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:findings_finding_change", args=[f.pk]),
                    f.account.identity,
                    f.instance.name,
                    drift_html(f.detail),
                )
                for f in findings
            ),
        )
        head = format_html(
            "<tr><th>{}</th><th>{}</th><th>{}</th></tr>", gettext("Account"), gettext("Instance"), gettext("Delta")
        )
        return format_html(
            '<div class="wf-table-wrap"><table class="wf-table" id="wf-open-drift">{}{}</table></div>', head, rows
        )

    @admin.action(description=_("Approve current access again (new version)"), permissions=["approve_baseline"])
    def approve_again(self, request: HttpRequest, queryset: QuerySet[Baseline]) -> HttpResponse | None:
        if refuse_without_approve(request):
            return None
        kinds = set(queryset.values_list("kind", flat=True))
        if len(kinds) != 1:
            messages.error(request, gettext("Select baselines of one kind to approve them again together."))
            return None
        kind = kinds.pop()
        field = {"account": "account", "instance": "instance", "classification": "classification"}[kind]
        rows = queryset.select_related(field)
        return approve_queryset(
            self, request, rows, kind=kind, action_name="approve_again", subject=lambda b: getattr(b, field)
        )

    def get_urls(self) -> list[Any]:
        return [
            path(
                "classification/new/",
                self.admin_site.admin_view(self.new_classification_view),
                name="baselines_baseline_new_classification",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra = {**(extra_context or {}), "can_approve": request.user.has_perm(APPROVE_PERMISSION)}
        return super().changelist_view(request, extra)

    def new_classification_view(self, request: HttpRequest) -> HttpResponse:
        """GET: the form (classification, comment); POST: approve that classification's current access."""
        back = HttpResponseRedirect(reverse("admin:baselines_baseline_changelist"))
        if refuse_without_approve(request):
            return back
        form = NewClassificationBaselineForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                version = baseline_approve(
                    kind=BaselineKind.CLASSIFICATION,
                    subject=form.cleaned_data["classification"],
                    comment=form.cleaned_data["comment"],
                    user=request.user,
                )
            except BaselineError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(
                    request,
                    gettext("Approved %(baseline)s with %(n)d accounts.")
                    % {"baseline": version.baseline, "n": version.account_count},
                )
                return HttpResponseRedirect(reverse("admin:baselines_baseline_change", args=[version.baseline_id]))
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("New classification baseline"),
            "opts": self.opts,
            "form": form,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/baselines/baseline/new_classification.html", context)


@admin.register(BaselineVersion)
class BaselineVersionAdmin(ReadOnlyAdmin):
    # not the foreign key itself: Django marks a foreign-key column nowrap, and a long account name then
    # pushes the list past 1366 px
    list_display = ["baseline_label", "version", "is_current", "approved_at", "approved_by_username", "account_count"]
    list_filter = ["is_current", "baseline__kind"]
    search_fields = ["baseline__account__identity", "baseline__instance__name", "comment", "approved_by_username"]
    list_select_related = ["baseline", "baseline__account", "baseline__instance", "baseline__classification"]
    readonly_fields = [
        "baseline",
        "version",
        "is_current",
        "approved_at",
        "approved_by_username",
        "comment",
        "account_count",
        "gaps",
        "entries_table",
    ]
    fields = readonly_fields

    @admin.display(description=_("baseline"), ordering="baseline_id")
    def baseline_label(self, obj: BaselineVersion) -> str:
        return str(obj.baseline)

    @admin.display(description=_("approved entries"))
    def entries_table(self, obj: BaselineVersion) -> SafeString:
        entries = list(version_entries(version=obj)[:MAX_ROWS])
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><details><summary>{}</summary><ul>{}</ul></details></td></tr>",
            (
                (
                    e.account.identity,
                    e.instance.name,
                    ", ".join(f"{r}{' (admin)' if a else ''}" for r, a in e.access.get("roles") or []) or "-",
                    ", ".join(e.access.get("capabilities") or []) or "-",
                    gettext("%(n)d grants") % {"n": len(e.access.get("grants") or [])},
                    format_html_join(
                        "", "<li><code>{}</code></li>", ((_grant_line(g),) for g in e.access.get("grants") or [])
                    ),
                )
                for e in entries
            ),
        )
        head = format_html(
            "<tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            gettext("Account"),
            gettext("Instance"),
            gettext("Roles"),
            gettext("Capabilities"),
            gettext("Grants"),
        )
        more = (
            format_html(
                '<p class="wf-muted">{}</p>',
                gettext("First %(n)d entries shown; the API lists them all.") % {"n": MAX_ROWS},
            )
            if obj.account_count > MAX_ROWS
            else ""
        )
        return format_html(
            '<div class="wf-table-wrap"><table class="wf-table" id="wf-entries">{}{}</table></div>{}', head, rows, more
        )
