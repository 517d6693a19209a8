"""Admin: "Export grant script" on the account and instance lists, and the account page's grant/revoke scripts.

Why no model admin: grant scripts are made on demand from stored snapshots, nothing is kept.
The list actions are registered through config.registry (grantscripts sits above the apps whose
admins show them); the account page's views are routed by console/admin.py (`account_urls`),
which owns that page. Every download is an export event in the audit trail.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accountsync.models import AccountPermission, InstanceAccount
from grantscripts.services import (
    GrantScriptError,
    account_script,
    grant_script_audit,
    instance_account_ids,
    revoke_script,
    selection_script,
)
from instances.models import Instance

SQL = "text/plain; charset=utf-8"
CONFIRM = "grant_script_confirm"


def parse_at(raw: str) -> tuple[datetime | None, str]:
    """`at` from a form or query (`YYYY-MM-DDTHH:MM`, ISO 8601 or a date: its end) as aware UTC; (None, error)."""
    raw = (raw or "").strip()
    if not raw:
        return None, ""
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        return None, gettext("“%(value)s” is not a date and time.") % {"value": raw[:40]}
    if len(raw) == 10:  # a bare date means the end of that day
        value = datetime.combine(value.date(), time.max)
    try:
        if timezone.is_naive(value):
            value = timezone.make_aware(value)
        value = value.astimezone(UTC)
    except (ValueError, OverflowError):
        return None, gettext("“%(value)s” is out of range.") % {"value": raw[:40]}
    if value > timezone.now() and len(raw) != 10:
        return None, gettext("“%(value)s” is in the future.") % {"value": raw[:40]}
    return value, ""


def _download(response: HttpResponse | StreamingHttpResponse, name: str) -> HttpResponse | StreamingHttpResponse:
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "no-store"
    return response


def _export_action(model: type, label: str) -> Callable[[Any, HttpRequest, QuerySet[Any]], HttpResponse | None]:
    """An admin action: first a page asking for an optional point in time, then the streamed .sql download."""

    def action(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
        if request.POST.get(CONFIRM) != "1":
            return render(
                request,
                "grantscripts/export_form.html",
                {
                    **modeladmin.admin_site.each_context(request),
                    "title": gettext("Export grant script"),
                    "opts": modeladmin.model._meta,
                    "objects": list(queryset[:20]),
                    "count": queryset.count(),
                    "selected": request.POST.getlist("_selected_action"),
                    "select_across": request.POST.get("select_across", "0"),
                    "action": request.POST.get("action", ""),
                    "confirm": CONFIRM,
                },
            )
        at, error = parse_at(request.POST.get("at", ""))
        if error:
            modeladmin.message_user(request, error + " " + gettext("Nothing was exported."), messages.ERROR)
            return None
        if model is Instance:
            instances = list(queryset)
            ids = list(instance_account_ids(instances=instances, at=at))
            details = {"instances": [i.pk for i in instances], "accounts": len(ids)}
        else:
            ids = list(queryset.values_list("pk", flat=True))
            details = {"accounts": len(ids)}
        grant_script_audit(request=request, what="grant_script", at=at, details={**details, "list": label})
        response = StreamingHttpResponse(selection_script(accounts=ids, at=at), content_type=SQL)
        stamp = (at or timezone.now()).strftime("%Y%m%dT%H%M")
        return _download(response, f"grant-script-{label}-{stamp}.sql")

    action.__name__ = f"export_grant_script_{label}"
    action.short_description = _("Export grant script (.sql)")  # type: ignore[attr-defined]
    action.allowed_permissions = ("view",)  # type: ignore[attr-defined]
    return action


export_accounts_action = _export_action(InstanceAccount, "accounts")
export_instances_action = _export_action(Instance, "instances")


# --- the account page's views (routed by console/admin.py) ---------------------------------


def account_urls(modeladmin: Any) -> list[Any]:
    """The account page's grant-script and revoke-script URLs, for the account admin's get_urls."""
    wrap = modeladmin.admin_site.admin_view
    return [
        path(
            "<path:object_id>/grant-script/",
            wrap(lambda request, object_id: account_grant_script_view(modeladmin, request, object_id)),
            name="accountsync_instanceaccount_grant_script",
        ),
        path(
            "<path:object_id>/revoke-script/",
            wrap(lambda request, object_id: account_revoke_script_view(modeladmin, request, object_id)),
            name="accountsync_instanceaccount_revoke_script",
        ),
    ]


def _account(modeladmin: Any, request: HttpRequest, object_id: str) -> InstanceAccount | None:
    account = modeladmin.get_object(request, object_id)
    if account is None or not modeladmin.has_view_permission(request, account):
        return None
    return account


def account_grant_script_view(modeladmin: Any, request: HttpRequest, object_id: str) -> HttpResponse:
    """GET: the account's script as a download; `?at=` as on the account page."""
    account = _account(modeladmin, request, object_id)
    if account is None:
        return HttpResponseRedirect(reverse("admin:accountsync_instanceaccount_changelist"))
    page = reverse("admin:accountsync_instanceaccount_change", args=[account.pk])
    at, error = parse_at(request.GET.get("at", ""))
    if error:
        modeladmin.message_user(request, error + " " + gettext("Nothing was exported."), messages.ERROR)
        return HttpResponseRedirect(page)
    script = account_script(account=account, at=at)
    grant_script_audit(request=request, what="grant_script", obj=account, at=at)
    return _download(HttpResponse(script, content_type=SQL), f"grant-script-account-{account.pk}.sql")


def account_revoke_script_view(modeladmin: Any, request: HttpRequest, object_id: str) -> HttpResponse:
    """GET: the current privileges and roles to choose from; POST: the REVOKE script of the chosen ones."""
    account = _account(modeladmin, request, object_id)
    if account is None:
        return HttpResponseRedirect(reverse("admin:accountsync_instanceaccount_changelist"))
    current = AccountPermission.objects.filter(account=account, valid_to__isnull=True).first()
    snapshot = current.snapshot if current else {}
    privileges = [(p["scope"], p["privilege"]) for p in snapshot.get("privileges") or []]
    roles = [r["role"] for r in snapshot.get("roles") or []]
    error = ""
    if request.method == "POST":
        chosen = [
            privileges[int(i)] for i in request.POST.getlist("privilege") if i.isdigit() and int(i) < len(privileges)
        ]
        chosen_roles = [roles[int(i)] for i in request.POST.getlist("role") if i.isdigit() and int(i) < len(roles)]
        try:
            script = revoke_script(account=account, privileges=chosen, roles=chosen_roles)
        except GrantScriptError as exc:
            error = str(exc)
        else:
            grant_script_audit(
                request=request,
                what="revoke_script",
                obj=account,
                details={"privileges": len(chosen), "roles": len(chosen_roles)},
            )
            return _download(HttpResponse(script, content_type=SQL), f"revoke-script-account-{account.pk}.sql")
    return render(
        request,
        "grantscripts/revoke_form.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": gettext("Revoke script for %(account)s") % {"account": account.identity},
            "opts": modeladmin.model._meta,
            "account": account,
            "privileges": list(enumerate(privileges)),
            "roles": list(enumerate(roles)),
            "error": error,
        },
        status=400 if error else 200,
    )


def account_script_links(*, account: InstanceAccount, at: str = "") -> dict[str, str]:
    """The account page's links: its grant script (at the page's `?at=`, when valid) and the revoke-script form."""
    grant = reverse("admin:accountsync_instanceaccount_grant_script", args=[account.pk])
    moment, error = parse_at(at)
    if moment is not None and not error:
        grant += "?" + urlencode({"at": at.strip()})
    return {
        "grant_script_url": grant,
        "revoke_script_url": reverse("admin:accountsync_instanceaccount_revoke_script", args=[account.pk]),
    }
