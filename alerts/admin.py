"""Alert channels (managed by operators and admins) and the read-only delivery history.

Deliveries are written only by alerts.services; the admin shows every attempt's
outcome so a failed notification is visible, and offers two actions that call a
service: send a test alert to a channel, and resend failed deliveries.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from adminkit.kit import ReadOnlyAdmin, badge
from alerts.models import AlertChannel, AlertDelivery, DeliveryStatusChoices
from alerts.services import alert_deliveries_resend, alert_send_test
from instances.models import DbType, Environment


class AlertChannelForm(forms.ModelForm):
    """Filters as checkboxes (stored as JSON lists); the model's clean() checks kind vs target."""

    webhook_url = forms.URLField(
        label=_("webhook URL"),
        required=False,
        max_length=1000,
        assume_scheme="https",
        help_text=_("http:// or https:// URL that receives a JSON POST per escalation."),
    )
    db_types = forms.MultipleChoiceField(
        label=_("database types"),
        choices=DbType.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None selected: every database type."),
    )
    environments = forms.MultipleChoiceField(
        label=_("environments"),
        choices=Environment.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None selected: every environment."),
    )

    class Meta:
        model = AlertChannel
        fields = [
            "name",
            "kind",
            "webhook_url",
            "email_recipients",
            "db_types",
            "environments",
            "min_severity",
            "is_active",
            "description",
        ]
        widgets = {"email_recipients": forms.Textarea(attrs={"rows": 3})}


@admin.register(AlertChannel)
class AlertChannelAdmin(admin.ModelAdmin):
    form = AlertChannelForm
    list_display = ["name", "kind", "target", "filters", "min_severity", "is_active", "updated_at"]
    list_filter = ["kind", "is_active", "min_severity"]
    search_fields = ["name", "description"]
    actions = ["send_test_alert"]

    @admin.display(description=_("target"))
    def target(self, obj: AlertChannel) -> str:
        return obj.target_display

    @admin.display(description=_("filters"))
    def filters(self, obj: AlertChannel) -> str:
        parts = [", ".join(obj.db_types or []), ", ".join(obj.environments or [])]
        return " / ".join(p for p in parts if p) or str(_("all instances"))

    @admin.action(description=_("Send a test alert"), permissions=["change"])
    def send_test_alert(self, request: HttpRequest, queryset: QuerySet[AlertChannel]) -> None:
        sent = [alert_send_test(channel=channel) for channel in queryset.filter(is_active=True)]
        skipped = queryset.filter(is_active=False).count()
        self.message_user(
            request,
            ngettext(
                "%(n)d test alert queued; see Alert deliveries for the outcome.",
                "%(n)d test alerts queued; see Alert deliveries for the outcome.",
                len(sent),
            )
            % {"n": len(sent)},
            messages.SUCCESS,
        )
        if skipped:
            self.message_user(request, _("Inactive channels were skipped."), messages.WARNING)


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "status_badge",
        "event_kind",
        "severity",
        "channel_name",
        "instance",
        "account_identity",
        "attempts",
        "last_error",
        "sent_at",
    ]
    list_filter = ["status", "event_kind", "severity", "channel", "created_at"]
    search_fields = ["account_identity", "channel_name", "last_error"]
    list_select_related = ["instance"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "channel",
        "channel_name",
        "event_kind",
        "severity",
        "instance",
        "account",
        "account_identity",
        "change_log",
        "session_id",
        "status",
        "attempts",
        "last_error",
        "created_at",
        "last_attempt_at",
        "next_attempt_at",
        "sent_at",
        "payload_pretty",
    ]
    fields = readonly_fields
    raw_id_fields = ["account", "change_log"]
    actions = ["resend_failed"]

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: AlertDelivery) -> str:
        css = {DeliveryStatusChoices.SENT: "ok"}.get(obj.status, obj.status)
        return badge(css, obj.get_status_display())

    @admin.display(description=_("payload"))
    def payload_pretty(self, obj: AlertDelivery) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, ensure_ascii=False))

    def has_resend_permission(self, request: HttpRequest) -> bool:
        """Resending belongs to whoever manages the channels (operators and admins)."""
        return request.user.has_perm("alerts.change_alertchannel")

    @admin.action(description=_("Resend failed deliveries"), permissions=["resend"])
    def resend_failed(self, request: HttpRequest, queryset: QuerySet[AlertDelivery]) -> None:
        count = alert_deliveries_resend(deliveries=queryset)
        self.message_user(
            request,
            ngettext("%(n)d failed delivery queued again.", "%(n)d failed deliveries queued again.", count)
            % {"n": count},
            messages.SUCCESS if count else messages.WARNING,
        )
