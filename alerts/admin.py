"""Alert channels (managed by operators and admins) and the read-only delivery history.

Deliveries are written only by alerts.services; the admin shows every attempt's
outcome so a failed notification is visible, and offers actions that call a
service: send a test alert to a channel, rotate a channel's signing secret, and
resend failed deliveries.

Secrets stay hidden: a webhook URL is write-only (the form starts empty; empty keeps
the stored one) and every page shows only its mask, to admins too; a signing secret
is shown once, in the message after the channel is created or its secret rotated.
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

from adminkit.kit import KitAdminMixin, ReadOnlyAdmin, badge
from alerts.models import (
    AlertChannel,
    AlertDelivery,
    DeliveryStatusChoices,
    OperationalAlertState,
    webhook_url_validator,
)
from alerts.services import (
    alert_channel_create,
    alert_channel_rotate_secret,
    alert_deliveries_resend,
    alert_send_test,
)
from instances.models import DbType, Environment


class AlertChannelForm(forms.ModelForm):
    """Filters as checkboxes (stored as JSON lists); the model's clean() checks kind vs target.

    The webhook URL is write-only: the field never shows the stored URL, an empty field keeps
    it, a new URL replaces it (encrypted before the model is validated and saved).
    """

    webhook_url = forms.URLField(
        label=_("webhook URL"),
        required=False,
        max_length=1000,
        assume_scheme="https",
        validators=[webhook_url_validator],
        widget=forms.URLInput(attrs={"autocomplete": "off", "size": 80}),
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
            "coverage_events",
            "failure_streak_events",
            "stale_events",
            "is_active",
            "description",
        ]
        widgets = {"email_recipients": forms.Textarea(attrs={"rows": 3})}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.has_webhook_url and "webhook_url" in self.fields:
            self.fields["webhook_url"].help_text = _(
                "Stored: %(mask)s (hidden). Leave empty to keep it; enter a new URL to replace it."
            ) % {"mask": self.instance.webhook_url_mask}

    def clean(self) -> dict:
        cleaned = super().clean()
        url = cleaned.get("webhook_url")
        if url:
            self.instance.set_webhook_url(url)
        return cleaned


@admin.register(AlertChannel)
class AlertChannelAdmin(KitAdminMixin, admin.ModelAdmin):
    form = AlertChannelForm
    list_display = ["name", "kind", "target", "filters", "min_severity", "events", "is_active", "updated_at"]
    list_filter = ["kind", "is_active", "min_severity", "failure_streak_events", "stale_events"]
    search_fields = ["name", "description"]
    actions = ["send_test_alert", "rotate_signing_secret"]
    readonly_fields = ["target", "signing"]
    edit_fields = AlertChannelForm.Meta.fields  # the form's fields, in its order

    def get_fields(self, request: HttpRequest, obj: AlertChannel | None = None) -> list[str]:
        """Editors get the write-only URL field; the view-only page shows the mask in its place."""
        if obj is None:
            return self.edit_fields
        if not self.has_change_permission(request, obj):
            return [("target" if f == "webhook_url" else f) for f in self.edit_fields] + ["signing"]
        return [*self.edit_fields, "signing"]

    @admin.display(description=_("target"))
    def target(self, obj: AlertChannel) -> str:
        return obj.target_display

    @admin.display(description=_("webhook signature"))
    def signing(self, obj: AlertChannel) -> str:
        if obj.has_signing_secret:
            return str(_("signed with the channel's own secret"))
        if obj.signing_key():
            return str(_("signed with the environment key WHALEFALL_ALERT_SIGNING_KEY (rotate to give it its own)"))
        return str(_("unsigned (rotate the signing secret to sign it)"))

    def save_model(self, request: HttpRequest, obj: AlertChannel, form: forms.ModelForm, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        secret = alert_channel_create(channel=obj)
        self.message_user(request, self._secret_message(obj, secret), messages.WARNING)

    @staticmethod
    def _secret_message(channel: AlertChannel, secret: str) -> str:
        text = _("Signing secret of channel %(name)s, shown only this once; store it with the receiver: %(secret)s")
        return text % {"name": channel.name, "secret": secret}

    @admin.action(description=_("Rotate the signing secret"), permissions=["change"])
    def rotate_signing_secret(self, request: HttpRequest, queryset: QuerySet[AlertChannel]) -> None:
        for channel in queryset.order_by("name"):
            secret = alert_channel_rotate_secret(channel=channel)
            self.message_user(request, self._secret_message(channel, secret), messages.WARNING)

    @admin.display(description=_("filters"))
    def filters(self, obj: AlertChannel) -> str:
        parts = [", ".join(obj.db_types or []), ", ".join(obj.environments or [])]
        return " / ".join(p for p in parts if p) or str(_("all instances"))

    @admin.display(description=_("events"))
    def events(self, obj: AlertChannel) -> str:
        chosen = [str(_("escalations"))]
        if obj.coverage_events:
            chosen.append(str(_("coverage")))
        if obj.failure_streak_events:
            chosen.append(str(_("failed syncs in a row")))
        if obj.stale_events:
            chosen.append(str(_("not synced for too long")))
        return ", ".join(chosen)

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


@admin.register(OperationalAlertState)
class OperationalAlertStateAdmin(ReadOnlyAdmin):
    """Which operational alerts are open now, and since when; written only by alerts.operational."""

    list_display = ["instance", "kind", "open_badge", "opened_at", "closed_at", "summary"]
    list_filter = ["is_open", "kind", "instance__environment", "opened_at"]
    search_fields = ["instance__name"]
    list_select_related = ["instance"]
    readonly_fields = ["instance", "kind", "is_open", "opened_at", "closed_at", "summary", "channel_ids", "updated_at"]
    fields = readonly_fields

    @admin.display(description=_("state"), ordering="is_open")
    def open_badge(self, obj: OperationalAlertState) -> str:
        return badge("failed" if obj.is_open else "ok", str(_("open") if obj.is_open else _("closed")))

    @admin.display(description=_("details"))
    def summary(self, obj: OperationalAlertState) -> str:
        details = obj.details or {}
        if obj.kind == "failure_streak":
            return str(_("%(count)s failed syncs in a row (threshold %(limit)s)")) % {
                "count": details.get("failures", "?"),
                "limit": details.get("threshold", "?"),
            }
        return str(_("%(hours)s h without a successful sync (threshold %(limit)s h)")) % {
            "hours": _number(details.get("hours")),
            "limit": _number(details.get("threshold_hours")),
        }


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, int | float) else "?"
