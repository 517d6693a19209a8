"""Alert channels (where to tell people) and deliveries (what was told, and whether it arrived).

Why a delivery row per (channel, event): a notification is sent by a worker after
the sync committed, possibly several times; the row is the durable record of each
attempt, so a webhook that was down or a mail server that refused is visible in the
admin instead of lost in a log. Deliveries are written only by alerts.services.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from findings.models import SeverityChoices
from instances import crypto


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
    COVERAGE_LOST = "coverage_lost", _("Coverage lost")
    COVERAGE_REGAINED = "coverage_regained", _("Coverage regained")
    FAILURE_STREAK = "failure_streak", _("Failed syncs in a row")
    FAILURE_STREAK_RECOVERED = "failure_streak_recovered", _("Syncs succeed again")
    STALE = "stale", _("Not synced for too long")
    STALE_RECOVERED = "stale_recovered", _("Synced again")
    TEST = "test", _("Test alert")


class OperationalKindChoices(models.TextChoices):
    """The operational alerts that are open until the instance recovers (one state row per instance and kind)."""

    FAILURE_STREAK = "failure_streak", _("Failed syncs in a row")
    STALE = "stale", _("Not synced for too long")


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
    # The URL's path or query often is the token: stored only encrypted (WHALEFALL_FIELD_KEYS, like
    # credential passwords), shown only as its mask (scheme://host[:port]/…) once saved.
    webhook_url_encrypted = models.TextField(_("encrypted webhook URL"), blank=True, editable=False)
    webhook_url_mask = models.CharField(_("webhook URL"), max_length=300, blank=True, editable=False)
    # Per-channel HMAC key of the webhook signature, generated on creation and shown once. Channels
    # created before it existed have none and sign with WHALEFALL_ALERT_SIGNING_KEY.
    signing_secret_encrypted = models.TextField(_("encrypted signing secret"), blank=True, editable=False)
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
    coverage_events = models.BooleanField(
        _("coverage lost / regained"),
        default=False,
        help_text=_(
            "Also tell when a sync can no longer read part of an instance (a database, a grant table) "
            "and when it can again. Sent whatever the minimum severity."
        ),
    )
    failure_streak_events = models.BooleanField(
        _("failed syncs in a row"),
        default=False,
        help_text=_(
            "Also tell when an instance has failed WHALEFALL_ALERT_FAILURE_STREAK syncs in a row (once per streak) "
            "and when it syncs successfully again. Sent whatever the minimum severity."
        ),
    )
    stale_events = models.BooleanField(
        _("not synced for too long"),
        default=False,
        help_text=_(
            "Also tell when an active instance has not been synced successfully for WHALEFALL_ALERT_STALE_HOURS, "
            "also when no sync ran at all (the scheduler is down), and when it is synced again. "
            "Sent whatever the minimum severity."
        ),
    )
    is_active = models.BooleanField(_("active"), default=True)
    description = models.TextField(_("description"), blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    # the plaintext of a secret generated by this object (creation or rotation), to show once
    new_signing_secret: str | None = None

    class Meta:
        ordering = ["name"]
        verbose_name = _("alert channel")
        verbose_name_plural = _("alert channels")

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<AlertChannel {self.pk}: {self.name} ({self.kind})>"

    def save(self, *args, **kwargs) -> None:
        """A new channel gets its own signing secret; read it once from ``new_signing_secret``."""
        if self._state.adding and not self.signing_secret_encrypted:
            self.rotate_signing_secret()
        super().save(*args, **kwargs)

    # --- the webhook URL: write-only --------------------------------------------------------

    def set_webhook_url(self, raw: str) -> None:
        """Store a new URL (encrypted) and its mask; an empty value clears it."""
        raw = (raw or "").strip()
        self.webhook_url_encrypted = crypto.encrypt(raw) if raw else ""
        self.webhook_url_mask = safe_url(raw)[:300] if raw else ""

    def get_webhook_url(self) -> str:
        """The decrypted URL, for sending only; raises ``CredentialDecryptError`` when the key is gone."""
        if not self.webhook_url_encrypted:
            return ""
        return crypto.decrypt(self.webhook_url_encrypted)

    @property
    def has_webhook_url(self) -> bool:
        return bool(self.webhook_url_encrypted)

    def _webhook_url_unreadable(self) -> str:
        raise AttributeError("AlertChannel.webhook_url is write-only: use get_webhook_url() or target_display")

    # ``AlertChannel(webhook_url=...)`` and ``channel.webhook_url = ...`` encrypt; reading it is refused,
    # so no template, serializer or log line can print the URL by accident.
    webhook_url = property(_webhook_url_unreadable, set_webhook_url)

    # --- the signing secret ----------------------------------------------------------------

    def rotate_signing_secret(self) -> str:
        """Generate a new signing secret, store it encrypted (not saved yet) and return it to show once."""
        secret = secrets.token_urlsafe(32)
        self.signing_secret_encrypted = crypto.encrypt(secret)
        self.new_signing_secret = secret
        return secret

    @property
    def has_signing_secret(self) -> bool:
        return bool(self.signing_secret_encrypted)

    def signing_key(self) -> str:
        """The key that signs this channel's webhooks: its own secret, else the environment's (old channels)."""
        if self.signing_secret_encrypted:
            return crypto.decrypt(self.signing_secret_encrypted)
        return getattr(settings, "WHALEFALL_ALERT_SIGNING_KEY", "") or ""

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.kind == ChannelKindChoices.WEBHOOK and not self.has_webhook_url:
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
            return self.webhook_url_mask
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


class OperationalAlertState(models.Model):
    """Whether an operational alert (failure streak, staleness) is open for one instance.

    Why a row: the alert is sent once when its condition starts and a "recovered" once
    when it ends, by whichever process sees it first (a worker after a sync, the periodic
    check, ``manage.py check_staleness`` from cron), across restarts. One row per
    (instance, kind), created on first need; it is opened and closed only by
    ``alerts.operational`` under a row lock (``select_for_update``) with a conditional
    UPDATE on ``is_open``, so two processes that both see the condition send one alert.
    """

    instance = models.ForeignKey(
        "instances.Instance",
        on_delete=models.CASCADE,
        related_name="operational_alert_states",
        verbose_name=_("instance"),
    )
    kind = models.CharField(_("kind"), max_length=16, choices=OperationalKindChoices.choices)
    is_open = models.BooleanField(_("open"), default=False)
    opened_at = models.DateTimeField(_("opened"), null=True, blank=True)
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)
    # what opened it (failures and threshold, or hours without a successful sync), for the "recovered" message
    details = models.JSONField(_("details"), default=dict, blank=True)
    # the channels told it opened: they (and only they) hear that it recovered
    channel_ids = models.JSONField(_("channels alerted"), default=list, blank=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["-is_open", "-opened_at", "pk"]
        verbose_name = _("operational alert")
        verbose_name_plural = _("operational alerts")
        constraints = [
            models.UniqueConstraint(fields=["instance", "kind"], name="alerts_one_state_per_instance_kind"),
        ]
        indexes = [models.Index(fields=["is_open", "kind"], name="alert_state_open_kind_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on {self.instance_id} ({'open' if self.is_open else 'closed'})"
