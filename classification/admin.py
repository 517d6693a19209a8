"""Admin pages for classifications, their rules (with version history and a preview) and assignments.

Thin on purpose: saving a rule goes through `services.rule_save` (validation with the path to
the bad part, a new version, the audit event) and queues the re-evaluation; manual decisions go
through `services.manual_assign` / `manual_clear` (audited). Assignments made by rules are
derived data and read-only here.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Prefetch, QuerySet, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from adminkit.kit import KitAdmin, ReadOnlyAdmin
from classification.models import (
    FAMILY_CHOICES,
    Classification,
    ClassificationAssignment,
    ClassificationDailyCount,
    ClassificationRule,
    ClassificationRuleVersion,
    ManualAssignment,
)
from classification.rules import RuleError
from classification.selectors import classification_members
from classification.services import (
    ClassificationBrokerError,
    evaluation_enqueue,
    manual_assign,
    manual_clear,
    rule_preview,
    rule_save,
    rule_validate,
)

# a label may be long (a code or name is data): it wraps anywhere rather than widen the list
LABEL_STYLE = "display:inline-block;max-width:14em;overflow-wrap:anywhere;white-space:normal;"


def colour_swatch(color: str, label: object) -> str:
    return format_html(
        '<span class="wf-cls-label" style="border-left: 1em solid {};padding-left:.4em">{}</span>', color, label
    )


def queue_evaluation(request: HttpRequest) -> None:
    """Queue the fleet-wide re-evaluation; when the broker refuses, say so and how to recover."""
    try:
        evaluation_enqueue()
    except ClassificationBrokerError:
        messages.error(
            request,
            gettext(
                "The rule was saved, but the task broker is unreachable: the re-evaluation could not be queued. "
                "Check that the broker is running (Q_BROKER_URL); the next sync of each instance, or saving the "
                "rule again, re-evaluates."
            ),
        )
    else:
        messages.info(request, gettext("Re-evaluation of every account was queued."))


@admin.register(Classification)
class ClassificationAdmin(KitAdmin):
    list_display = ["code", "name_swatch", "risk_level", "accounts", "rule_count"]
    search_fields = ["code", "name"]
    list_filter = ["risk_level"]
    fields = ["code", "name", "description", "risk_level", "color"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Classification]:
        return super().get_queryset(request).annotate(account_total=Sum("instance_states__count"))

    @admin.display(description=_("name"), ordering="name")
    def name_swatch(self, obj: Classification) -> str:
        return colour_swatch(obj.color, obj.label)

    @admin.display(description=_("accounts"), ordering="account_total")
    def accounts(self, obj: Classification) -> str:
        url = reverse("admin:classification_classificationassignment_changelist")
        return format_html('<a href="{}?classification__id__exact={}">{}</a>', url, obj.pk, obj.account_total or 0)

    @admin.display(description=_("rules"))
    def rule_count(self, obj: Classification) -> int:
        return obj.rules.count()


class RuleForm(forms.ModelForm):
    """The rule's JSON, validated by the rule language (the message points at the bad part)."""

    expression = forms.JSONField(
        label=_("rule"),
        widget=forms.Textarea(attrs={"rows": 14, "cols": 90, "class": "wf-mono"}),
        help_text=_('A JSON rule (docs/classification.md), e.g. {"has_capability": "SUPERUSER"}.'),
    )
    comment = forms.CharField(
        label=_("comment on this change"), required=False, widget=forms.TextInput(attrs={"size": 80})
    )

    class Meta:
        model = ClassificationRule
        fields = ["classification", "name", "db_type", "is_enabled", "expression"]

    def clean_expression(self) -> Any:
        value = self.cleaned_data["expression"]
        rule_validate(value)
        return value


class VersionInline(admin.TabularInline):
    model = ClassificationRuleVersion
    extra = 0
    can_delete = False
    fields = ["version", "created_at", "created_by", "comment", "is_enabled", "db_type", "expression_text"]
    readonly_fields = fields
    ordering = ["-version"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("rule"))
    def expression_text(self, obj: ClassificationRuleVersion) -> str:
        return format_html(
            '<code class="wf-mono" style="white-space:pre-wrap;overflow-wrap:anywhere">{}</code>',
            json.dumps(obj.expression, ensure_ascii=False),
        )


@admin.register(ClassificationRule)
class ClassificationRuleAdmin(KitAdmin):
    form = RuleForm
    list_display = ["name", "classification", "db_type", "is_enabled", "version", "updated_at", "updated_by"]
    list_filter = ["classification", "db_type", "is_enabled"]
    search_fields = ["name", "classification__code"]
    list_select_related = ["classification", "updated_by"]
    readonly_fields = ["version", "updated_at", "updated_by", "preview_link"]
    fields = ["classification", "name", "db_type", "is_enabled", "expression", "comment", "preview_link", "version",
              "updated_at", "updated_by"]  # fmt: skip
    inlines = [VersionInline]

    def save_model(self, request: HttpRequest, obj: ClassificationRule, form: Any, change: bool) -> None:
        rule_save(rule=obj, user=request.user, comment=form.cleaned_data.get("comment", ""))
        queue_evaluation(request)

    @admin.display(description=_("preview"))
    def preview_link(self, obj: ClassificationRule) -> str:
        if not obj.pk:
            return gettext("Save the rule first, or use the preview page of another rule to try an expression.")
        url = reverse("admin:classification_classificationrule_preview", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, gettext("Which accounts would match?"))

    def get_urls(self) -> list[Any]:
        extra = [
            path(
                "<int:rule_id>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="classification_classificationrule_preview",
            )
        ]
        return extra + super().get_urls()

    def preview_view(self, request: HttpRequest, rule_id: int) -> HttpResponse:
        """Try the rule, or an edited expression, over the current accounts without saving anything."""
        rule = get_object_or_404(ClassificationRule, pk=rule_id)
        if not self.has_view_permission(request, rule):
            raise PermissionDenied
        text = request.POST.get("expression") if request.method == "POST" else None
        db_type = request.POST.get("db_type", rule.db_type) if request.method == "POST" else rule.db_type
        if db_type not in dict(FAMILY_CHOICES):
            db_type = rule.db_type
        text = text if text is not None else json.dumps(rule.expression, indent=2, ensure_ascii=False)
        error, preview = "", None
        try:
            preview = rule_preview(expression=json.loads(text), db_type=db_type)
        except json.JSONDecodeError as exc:
            error = gettext("Not valid JSON: %(error)s") % {"error": exc}
        except RuleError as exc:
            error = str(exc)
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Preview: %(rule)s") % {"rule": rule.name},
            "opts": self.model._meta,
            "original": rule,
            "rule": rule,
            "expression_text": text,
            "db_type": db_type,
            "families": FAMILY_CHOICES,
            "error": error,
            "preview": preview,
        }
        return TemplateResponse(request, "admin/classification/preview.html", context)


@admin.register(ClassificationAssignment)
class ClassificationAssignmentAdmin(ReadOnlyAdmin):
    list_display = ["account", "classification_label", "instance", "source", "rule_name", "assigned_at"]
    list_filter = ["classification", "source", "instance__db_type", "instance__environment", "instance"]
    search_fields = ["account__identity", "account__username"]
    list_select_related = ["account", "classification", "instance", "rule"]
    fields = ["account", "classification", "instance", "source", "rule", "assigned_at"]

    @admin.display(description=_("classification"), ordering="classification__code")
    def classification_label(self, obj: ClassificationAssignment) -> str:
        return colour_swatch(obj.classification.color, obj.classification.label)

    @admin.display(description=_("rule"), ordering="rule__name")
    def rule_name(self, obj: ClassificationAssignment) -> str:
        return format_html('<span style="{}">{}</span>', LABEL_STYLE, obj.rule.name) if obj.rule else "-"


class ManualForm(forms.ModelForm):
    class Meta:
        model = ManualAssignment
        fields = ["account", "classification", "action", "reason"]

    def clean_account(self) -> Any:
        account = self.cleaned_data["account"]
        if not account.is_active:
            raise ValidationError(_("Only active accounts can be classified."))
        return account


@admin.register(ManualAssignment)
class ManualAssignmentAdmin(KitAdmin):
    """A person's decision, which wins over every rule; saving and deleting are audited."""

    form = ManualForm
    list_display = ["account", "classification", "action", "reason", "decided_at", "decided_by"]
    list_filter = ["classification", "action"]
    search_fields = ["account__identity", "reason"]
    list_select_related = ["account", "classification", "decided_by"]
    raw_id_fields = ["account"]
    readonly_fields = ["decided_at", "decided_by"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        """A decision is about one account and one classification: to change those, delete it and add another."""
        return [*self.readonly_fields, *(["account", "classification"] if obj is not None else [])]

    def save_model(self, request: HttpRequest, obj: ManualAssignment, form: Any, change: bool) -> None:
        decision = manual_assign(
            account=obj.account,
            classification=obj.classification,
            action=obj.action,
            reason=obj.reason,
            user=request.user,
        )
        obj.pk = decision.pk

    def delete_model(self, request: HttpRequest, obj: ManualAssignment) -> None:
        manual_clear(account=obj.account, classification=obj.classification, user=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ManualAssignment]) -> None:
        for obj in queryset.select_related("account", "classification"):
            manual_clear(account=obj.account, classification=obj.classification, user=request.user)


# --- for the accounts list (composed in console/admin.py) ----------------------------------------


class AccountClassificationFilter(admin.SimpleListFilter):
    """Accounts by classification (its code in the URL, `?classification=superuser`)."""

    title = _("classification")
    parameter_name = "classification"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(Classification.objects.order_by("-risk_level", "code").values_list("code", "name"))

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if not self.value():
            return queryset
        members = classification_members(code=self.value())
        return queryset.none() if members is None else queryset.filter(pk__in=members)


def account_classifications_prefetch() -> Prefetch:
    """One query per page for the accounts list's classification column."""
    return Prefetch(
        "classification_assignments",
        queryset=ClassificationAssignment.objects.select_related("classification").order_by(
            "-classification__risk_level", "classification__code"
        ),
        to_attr="current_classifications",
    )


def account_classification_badges(account: Any) -> str:
    """The account's classifications as colour squares, highest risk first (prefetched by
    `account_classifications_prefetch`); each names its classification and source in its title and
    label. Squares, not names: the accounts list has to fit 1366 px with its filters shown."""
    rows = getattr(account, "current_classifications", None)
    if rows is None:
        rows = list(account.classification_assignments.select_related("classification"))
    if not rows:
        return "-"
    return format_html_join(
        "",
        '<span class="wf-cls-label" role="img" title="{0}" aria-label="{0}" data-code="{1}" '
        'style="display:inline-block;width:.8em;height:.8em;margin:1px;border-radius:2px;background:{2}"></span>',
        (
            (
                f"{row.classification.label} ({row.get_source_display()})",
                row.classification.code,
                row.classification.color,
            )
            for row in rows
        ),
    )


@admin.register(ClassificationDailyCount)
class ClassificationDailyCountAdmin(ReadOnlyAdmin):
    """The stored daily counts behind the dashboard chart (an earlier day's column opens its rows here)."""

    list_display = ["day", "classification", "count"]
    list_filter = ["day", "classification__code", "classification"]
    list_select_related = ["classification"]
    date_hierarchy = "day"
    fields = list_display
