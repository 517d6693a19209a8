"""Admin of access reviews: campaigns (create, progress, close, evidence) and "My review items".

Why the admin holds no rule of its own: visibility comes from reviews.selectors (a reviewer sees
only their own items, an overseer every item), decisions and closing from reviews.services (which
also audit them), and retention from the models (a closed campaign refuses every save and delete).
The admin only hides what would be refused anyway.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from adminkit.kit import ADMIN_CSS, KitAdmin, badge
from reviews.evidence import evidence_csv_response, evidence_html_response
from reviews.models import CLOSE_CAMPAIGN, DECIDE_ITEM, Assignment, Campaign, Decision, InstanceOwner, ReviewItem
from reviews.selectors import access_lines, campaign_progress, oversees, visible_campaigns, visible_items
from reviews.services import (
    campaign_close,
    campaign_start,
    decision_plan,
    item_decide,
    revoke_choices,
    selected_accounts,
    selected_instances,
)


class CampaignForm(forms.ModelForm):
    class Meta:
        model = Campaign
        fields = [
            "name",
            "description",
            "instances",
            "environment",
            "classification",
            "include_roles",
            "reviewers",
            "assignment",
            "fallback_reviewer",
            "due_date",
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.instance.pk is not None or self.errors:
            return data
        if data.get("assignment") == Assignment.MANAGER and not data.get("fallback_reviewer"):
            self.add_error("fallback_reviewer", gettext("Routing to managers needs a fallback reviewer."))
        try:
            instances = selected_instances(
                instance_ids=[i.pk for i in data.get("instances") or []], environment=data.get("environment") or ""
            )
            accounts = selected_accounts(
                instances=instances,
                include_roles=bool(data.get("include_roles")),
                classification_id=data["classification"].pk if data.get("classification") else None,
            )
        except ValidationError as exc:
            raise forms.ValidationError(exc.messages) from None
        if not accounts:
            raise forms.ValidationError(gettext("The selection holds no active account to review."))
        return data


class InstanceOwnerInline(admin.TabularInline):
    model = InstanceOwner
    extra = 0
    autocomplete_fields = ()
    verbose_name = _("instance owner (for the 'by instance owner' assignment)")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_add_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_delete_permission(request, obj)


@admin.register(Campaign)
class CampaignAdmin(KitAdmin):
    form = CampaignForm
    inlines = [InstanceOwnerInline]
    list_display = ["name", "status_badge", "due", "progress", "created_by_username", "created_at"]
    list_filter = ["status", "due_date"]
    search_fields = ["name"]
    filter_horizontal = ["instances", "reviewers"]
    change_form_template = "admin/reviews/campaign/change_form.html"

    class Media:
        css = {"all": [ADMIN_CSS, "reviews/reviews.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Campaign]:
        # the list's progress column in the same query (a reviewer's counts cover only their own items)
        mine = Q() if oversees(request.user) else Q(items__reviewer=request.user)
        return visible_campaigns(request.user).annotate(
            item_total=Count("items", filter=mine),
            item_pending=Count("items", filter=mine & Q(items__decision=Decision.PENDING)),
        )

    def get_inlines(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        return self.inlines if obj is None else []

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return list(CampaignForm.Meta.fields)
        return ["name", "description", "due_date", *self.get_readonly_fields(request, obj)]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return []
        started = ["selection", "assignment", "fallback_reviewer", "status", "started_at", "created_by_username"]
        closed = ["closed_at", "closed_by_username"] if obj.is_closed else []
        if not self.has_change_permission(request, obj):
            return ["name", "description", "due_date", *started, *closed]
        return started + closed

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.is_closed:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.is_closed:
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # a bulk delete could sweep closed campaigns; delete one at a time
        return actions

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: Campaign) -> str:
        return badge(obj.status, obj.get_status_display())

    @admin.display(description=_("due date"), ordering="due_date")
    def due(self, obj: Campaign) -> str:
        if obj.is_overdue:
            return format_html("{} {}", obj.due_date.isoformat(), badge("overdue", gettext("overdue")))
        return obj.due_date.isoformat()

    @admin.display(description=_("progress"))
    def progress(self, obj: Campaign) -> str:
        total = obj.item_total
        decided = total - obj.item_pending
        percent = round(100 * decided / total) if total else 100
        return format_html('<span title="{}">{} / {} ({}%)</span>', gettext("decided / items"), decided, total, percent)

    @admin.display(description=_("selection"))
    def selection(self, obj: Campaign) -> str:
        names = ", ".join(obj.instances.values_list("name", flat=True)) or gettext("every active instance")
        parts = [names]
        if obj.environment:
            parts.append(gettext("environment %(env)s") % {"env": obj.get_environment_display()})
        if obj.classification_name:
            parts.append(gettext("classification %(name)s") % {"name": obj.classification_name})
        if obj.include_roles:
            parts.append(gettext("roles included"))
        return "; ".join(parts)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        if not change:
            count = campaign_start(campaign=form.instance, actor=request.user)
            messages.info(request, gettext("%(n)d items frozen and assigned.") % {"n": count})

    def save_model(self, request: HttpRequest, obj: Campaign, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user
            obj.created_by_username = request.user.get_username()
        super().save_model(request, obj, form, change)

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/close/", wrap(self.close_view), name="reviews_campaign_close"),
            path("<int:pk>/evidence.csv", wrap(self.evidence_csv_view), name="reviews_campaign_evidence_csv"),
            path("<int:pk>/evidence/", wrap(self.evidence_html_view), name="reviews_campaign_evidence"),
            *super().get_urls(),
        ]

    def _campaign(self, request: HttpRequest, pk: int) -> Campaign:
        return get_object_or_404(self.get_queryset(request), pk=pk)

    def close_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        campaign = self._campaign(request, pk)
        if not request.user.has_perm(CLOSE_CAMPAIGN):
            raise PermissionDenied
        change_url = reverse("admin:reviews_campaign_change", args=[campaign.pk])
        if request.method != "POST":
            _per, overall = campaign_progress(campaign=campaign)
            context = {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "campaign": campaign,
                "overall": overall,
                "title": gettext("Close campaign %(name)s") % {"name": campaign.name},
            }
            return TemplateResponse(request, "admin/reviews/campaign/close.html", context)
        try:
            campaign_close(campaign=campaign, actor=request.user)
        except Exception as exc:  # ReviewRetained: already closed
            messages.error(request, str(exc))
        else:
            messages.success(request, gettext("The campaign is closed; it and its items are now read-only."))
        return HttpResponseRedirect(change_url)

    def _may_export(self, request: HttpRequest) -> None:
        if not oversees(request.user):
            raise PermissionDenied

    def evidence_csv_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        self._may_export(request)
        return evidence_csv_response(self._campaign(request, pk), request.user, request)

    def evidence_html_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        self._may_export(request)
        return evidence_html_response(request, self._campaign(request, pk), request.user)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        campaign = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if campaign is not None:
            items = visible_items(request.user).filter(campaign=campaign)
            per, overall = campaign_progress(campaign=campaign, items=items)
            extra.update(
                per=per,
                overall=overall,
                campaign=campaign,
                items_url=reverse("admin:reviews_reviewitem_changelist") + f"?campaign__id__exact={campaign.pk}",
                may_close=not campaign.is_closed and request.user.has_perm(CLOSE_CAMPAIGN),
                may_export=oversees(request.user),
            )
        return super().change_view(request, object_id, form_url, extra)


class DecisionForm(forms.ModelForm):
    decision = forms.ChoiceField(
        label=_("Decision"),
        choices=[(d.value, d.label) for d in Decision if d != Decision.PENDING],
        widget=forms.RadioSelect,
    )
    revoke = forms.MultipleChoiceField(
        label=_("Revoke (for a change)"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("Direct grants, and roles granted directly (what reaches the account through them)."),
    )

    class Meta:
        model = ReviewItem
        fields = ["decision", "comment", "revoke", "target"]
        widgets = {"comment": forms.Textarea(attrs={"rows": 3}), "target": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "revoke" in self.fields:
            self.fields["revoke"].choices = [(c, c.replace("|", " · ")) for c in revoke_choices(self.instance.access)]
        if "target" in self.fields:
            self.fields["target"].help_text = gettext("For a change: what the access should be instead (free text).")
        if self.instance.decision == Decision.PENDING:
            self.initial.pop("decision", None)
        else:
            self.initial["revoke"] = [f"{s}|{p}" for s, p in self.instance.revoke_privileges] + [
                "role:" + r for r in self.instance.revoke_roles
            ]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if "decision" in data:
            try:
                decision_plan(
                    access=self.instance.access,
                    decision=data["decision"],
                    comment=data.get("comment") or "",
                    revoke=data.get("revoke") or [],
                )
            except ValidationError as exc:
                raise forms.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages) from None
        return data

    def _post_clean(self) -> None:  # the decision is written by item_decide, not by the model form
        pass


class CampaignFilter(admin.SimpleListFilter):
    """Only the campaigns the user sees (not every campaign's name)."""

    title = _("campaign")
    parameter_name = "campaign__id__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(c.pk), c.name) for c in visible_campaigns(request.user).order_by("-created_at")[:50]]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ReviewItem]) -> QuerySet[ReviewItem]:
        if self.value():
            return queryset.filter(campaign_id=self.value())
        return queryset


@admin.register(ReviewItem)
class ReviewItemAdmin(KitAdmin):
    form = DecisionForm
    list_display = ["identity", "instance_name", "campaign_name", "reviewer_username", "decision_badge", "decided_at"]
    list_filter = [CampaignFilter, "decision", "db_type"]
    search_fields = ["identity", "instance_name"]
    list_select_related = ["campaign"]

    class Media:
        css = {"all": [ADMIN_CSS, "reviews/reviews.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReviewItem]:
        return visible_items(request.user)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        title = gettext("Review items") if oversees(request.user) else gettext("My review items")
        return super().changelist_view(request, {**(extra_context or {}), "title": title})

    def _may_decide(self, request: HttpRequest, obj: ReviewItem) -> bool:
        return not obj.campaign.is_closed and obj.reviewer_id == request.user.pk and request.user.has_perm(DECIDE_ITEM)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None:
            return request.user.has_perm(DECIDE_ITEM)
        return self._may_decide(request, obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        base = ["campaign_name", "instance_name", "identity", "frozen_access"]
        if obj is not None and self._may_decide(request, obj):
            return [*base, "decision", "comment", "revoke", "target", "script_block"]
        return [
            *base,
            "decision",
            "comment",
            "revoke_summary",
            "target",
            "script_block",
            "decided_by_username",
            "decided_at",
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        base = ["campaign_name", "instance_name", "identity", "frozen_access", "script_block"]
        if obj is not None and self._may_decide(request, obj):
            return base
        return [*base, "decision", "comment", "revoke_summary", "target", "decided_by_username", "decided_at"]

    @admin.display(description=_("campaign"), ordering="campaign__name")
    def campaign_name(self, obj: ReviewItem) -> str:
        text = obj.campaign.name
        if obj.campaign.is_overdue:
            return format_html("{} {}", text, badge("overdue", gettext("overdue")))
        return text

    @admin.display(description=_("decision"), ordering="decision")
    def decision_badge(self, obj: ReviewItem) -> str:
        return badge(obj.decision, obj.get_decision_display())

    @admin.display(description=_("access at the review"))
    def frozen_access(self, obj: ReviewItem) -> str:
        lines = access_lines(obj.access)
        if not lines:
            return gettext("no access")
        stamp = obj.access_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        rows = format_html_join("", "<li>{}</li>", ((line,) for line in lines))
        return format_html(
            '<p class="help">{}</p><ul class="wf-review-access">{}</ul>', gettext("as of %(t)s") % {"t": stamp}, rows
        )

    @admin.display(description=_("revoke"))
    def revoke_summary(self, obj: ReviewItem) -> str:
        parts = [f"{s} · {p}" for s, p in obj.revoke_privileges] + [f"role {r}" for r in obj.revoke_roles]
        return "; ".join(parts) or "-"

    @admin.display(description=_("revoke script"))
    def script_block(self, obj: ReviewItem) -> str:
        if not obj.script:
            return "-"
        return format_html('<pre class="wf-review-script">{}</pre>', obj.script)

    def save_model(self, request: HttpRequest, obj: ReviewItem, form: Any, change: bool) -> None:
        data = form.cleaned_data
        item_decide(
            item=obj,
            actor=request.user,
            decision=data["decision"],
            comment=data.get("comment") or "",
            revoke=data.get("revoke") or [],
            target=data.get("target") or "",
        )

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        pass

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        return None  # recorded by item_decide in the audit trail, and by auditlog as model history

    def response_change(self, request: HttpRequest, obj: ReviewItem) -> HttpResponse:
        if "_continue" not in request.POST:
            obj.refresh_from_db()
            messages.success(request, gettext("Decision recorded: %(d)s.") % {"d": obj.get_decision_display()})
            return HttpResponseRedirect(reverse("admin:reviews_reviewitem_change", args=[obj.pk]))
        return super().response_change(request, obj)
