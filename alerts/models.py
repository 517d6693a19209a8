"""Alert channels (where to tell people) and deliveries (what was told, and whether it arrived).

Why a delivery row per (channel, event): a notification is sent by a worker after
the sync committed, possibly several times; the row is the durable record of each
attempt, so a webhook that was down or a mail server that refused is visible in the
admin instead of lost in a log. Deliveries are written only by alerts.services.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from findings.models import SeverityChoices


class ChannelKindChoices(models.TextChoices):
    WEBHOOK = "webhook", _("Webhook (HTTP POST of JSON)")
    EMAIL = "email", _("E-mail")


class MinSeverityChoices(models.TextChoices):
    """Escalations are high or critical by definition, so these are the only useful thresholds."""

    HIGH = SeverityChoices.HIGH.value, _("High (every escalation)")
    CRITICAL = SeverityChoices.CRITICAL.value, _("Critical only")


class DeliveryStatusChoices(models.TextChoices):
    PENDING = "pending", _("Pending")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed")


class EventKindChoices(models.TextChoices):
    CAPABILITY_GAINED = "capability_gained", _("Capability gained")
    NEW_PRIVILEGED_ACCOUNT = "new_privileged_account", _("New privileged account")
    DIGEST = "escalation_digest", _("Many escalations in one sync")
    TEST = "test", _("Test alert")


webhook_url_validator = URLValidator(schemes=["http", "https"])


def split_recipients(value: str) -> list[str]:
    """Recipients as typed in the admin: separated by commas, semicolons, spaces or new lines."""
    return [part for part in value.replace(";", ",").replace("\n", ",").replace(" ", ",").split(",") if part.strip()]


def validate_recipients(value: str) -> None:
    for address in split_recipients(value):
        try:
            validate_email(address.strip())
        except ValidationError:
            raise ValidationError(
                _("%(address)s is not a valid e-mail address."), params={"address": address}, code="invalid_recipient"
            ) from None


class AlertChannel(models.Model):
    """One place alerts go: a webhook URL or a list of e-mail recipients, with optional filters.

    Empty filters mean "everything": a channel with no db type and no environment
    selected receives escalations from every instance.
    """

    name = models.CharField(_("name"), max_length=128, unique=True)
    kind = models.CharField(_("kind"), max_length=8, choices=ChannelKindChoices.choices)
    webhook_url = models.URLField(
        _("webhook URL"),
        max_length=1000,
        blank=True,
        validators=[webhook_url_validator],
        help_text=_("http:// or https:// URL that receives a JSON POST per escalation."),
    )
    email_recipients = models.TextField(
        _("e-mail recipients"),
        blank=True,
        validators=[validate_recipients],
        help_text=_("Addresses separated by commas or new lines; sent through Django's mail backend."),
    )
    db_types = models.JSONField(
        _("database types"), default=list, blank=True, help_text=_("Only these types; none selected means all.")
    )
    environments = models.JSONField(
        _("environments"), default=list, blank=True, help_text=_("Only these environments; none selected means all.")
    )
    min_severity = models.CharField(
        _("minimum severity"), max_length=8, choices=MinSeverityChoices.choices, default=MinSeverityChoices.HIGH
    )
    is_active = models.BooleanField(_("active"), default=True)
    description = models.TextField(_("description"), blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("alert channel")
        verbose_name_plural = _("alert channels")

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.kind == ChannelKindChoices.WEBHOOK and not self.webhook_url:
            errors["webhook_url"] = _("A webhook channel needs a URL.")
        if self.kind == ChannelKindChoices.EMAIL and not split_recipients(self.email_recipients or ""):
            errors["email_recipients"] = _("An e-mail channel needs at least one recipient.")
        if errors:
            raise ValidationError(errors)

    @property
    def recipients(self) -> list[str]:
        return [address.strip() for address in split_recipients(self.email_recipients or "")]

    @property
    def target_display(self) -> str:
        """Where it sends, without a webhook's path or query (they often carry a token)."""
        if self.kind == ChannelKindChoices.WEBHOOK:
            return safe_url(self.webhook_url)
        return ", ".join(self.recipients)


def safe_url(url: str) -> str:
    """scheme://host[:port] of a URL: enough to recognise it, never its path, query or user info."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(invalid URL)"
    more = "/…" if parts.path not in ("", "/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{more}"


class AlertDelivery(models.Model):
    """One escalation event sent (or being sent) to one channel, with its attempts."""

    channel = models.ForeignKey(
        AlertChannel, on_delete=models.SET_NULL, null=True, related_name="deliveries", verbose_name=_("channel")
    )
    channel_name = models.CharField(_("channel name"), max_length=128)
    event_kind = models.CharField(_("event"), max_length=32, choices=EventKindChoices.choices)
    severity = models.CharField(_("severity"), max_length=8, choices=SeverityChoices.choices)
    instance = models.ForeignKey(
        "instances.Instance",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="alert_deliveries",
        verbose_name=_("instance"),
    )
    account = models.ForeignKey(
        "accountsync.InstanceAccount",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="alert_deliveries",
        verbose_name=_("account"),
    )
    account_identity = models.CharField(_("account identity"), max_length=512, blank=True)
    change_log = models.ForeignKey(
        "accountsync.AccountChangeLog",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="alert_deliveries",
        verbose_name=_("change"),
    )
    session_id = models.UUIDField(_("session"), null=True, blank=True)
    payload = models.JSONField(_("payload"), default=dict)
    status = models.CharField(
        _("status"), max_length=8, choices=DeliveryStatusChoices.choices, default=DeliveryStatusChoices.PENDING
    )
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    last_error = models.TextField(_("last error"), blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    last_attempt_at = models.DateTimeField(_("last attempt"), null=True, blank=True)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("alert delivery")
        verbose_name_plural = _("alert deliveries")
        constraints = [
            # one delivery per channel and change: detection that runs twice never sends twice
            models.UniqueConstraint(
                fields=["channel", "change_log"],
                condition=Q(change_log__isnull=False),
                name="alerts_one_delivery_per_change",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="alert_status_created_idx"),
            models.Index(fields=["channel", "created_at"], name="alert_channel_created_idx"),
            models.Index(fields=["session_id"], name="alert_session_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_kind} {self.account_identity} → {self.channel_name} ({self.status})"
