"""Admin actions "Approve current access as baseline", offered on the accounts and instances lists.

Why registered and not declared: the accounts and instances admins sit below baselines, so they
must not import it; ``BaselinesConfig.ready`` adds these through ``config.registry``. The admin
kit checks ``allowed_permissions`` on the host admin, which knows no ``approve_baseline``, so the
actions are offered to whoever may view the list and refuse here, before any page, without
``baselines.approve_baseline``.

The first call shows a confirmation page that asks for the comment; its form posts the same action
back with ``apply`` set, and only then is anything approved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from baselines.models import APPROVE_PERMISSION, BaselineKind
from baselines.services import MAX_COMMENT, BaselineError, baseline_approve

MAX_SELECTED = 500


class ApproveForm(forms.Form):
    comment = forms.CharField(
        label=_("Comment"),
        max_length=MAX_COMMENT,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text=_("Why this access is approved (a ticket, a review, a change request). Kept with the version."),
    )


def refuse_without_approve(request: HttpRequest) -> bool:
    """True (and a message) when the user may not approve baselines."""
    if request.user.has_perm(APPROVE_PERMISSION):
        return False
    messages.error(request, gettext("You do not have permission to approve baselines (baselines.approve_baseline)."))
    return True


def approve_queryset(
    modeladmin: Any,
    request: HttpRequest,
    queryset: QuerySet,
    *,
    kind: str,
    action_name: str,
    subject: Callable[[Any], Any] = lambda obj: obj,
) -> HttpResponse | None:
    """The confirmation page (first call, or an invalid comment), or the approvals and a message.

    The selected rows are posted back as they were selected (accounts, instances, or baselines
    for "Approve again", whose ``subject`` is what they baseline).
    """
    if refuse_without_approve(request):
        return None
    objects = list(queryset[: MAX_SELECTED + 1])
    if len(objects) > MAX_SELECTED:
        messages.error(request, gettext("Select at most %(n)d rows to approve at once.") % {"n": MAX_SELECTED})
        return None
    form = ApproveForm(request.POST if "apply" in request.POST else None)
    if "apply" in request.POST and form.is_valid():
        done, refused = [], []
        for obj in objects:
            try:
                version = baseline_approve(
                    kind=kind, subject=subject(obj), comment=form.cleaned_data["comment"], user=request.user
                )
            except BaselineError as exc:
                refused.append(str(exc))
                continue
            done.append(version)
        if done:
            messages.success(
                request,
                gettext("Approved %(n)d baseline(s): %(list)s.")
                % {"n": len(done), "list": ", ".join(f"{v.baseline.subject_label()} v{v.version}" for v in done[:20])},
            )
        for reason in refused[:20]:
            messages.error(request, reason)
        return None
    opts = modeladmin.model._meta
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": gettext("Approve current access as baseline"),
        "opts": opts,
        "objects": objects,
        "kind": kind,
        "kind_label": str(BaselineKind(kind).label).lower(),
        "form": form,
        "action_name": action_name,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "media": modeladmin.media,
    }
    return TemplateResponse(request, "admin/baselines/approve_confirm.html", context)


@admin.action(description=_("Approve current access as baseline"), permissions=["view"])
def approve_accounts_action(modeladmin: Any, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
    return approve_queryset(
        modeladmin, request, queryset, kind=BaselineKind.ACCOUNT, action_name="approve_accounts_action"
    )


@admin.action(description=_("Approve current access as baseline"), permissions=["view"])
def approve_instances_action(modeladmin: Any, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
    return approve_queryset(
        modeladmin, request, queryset, kind=BaselineKind.INSTANCE, action_name="approve_instances_action"
    )
