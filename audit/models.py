"""Explicit audit events: actions that change no tracked model (syncs, exports, sign-ins).

Model history (who created, changed or deleted a credential, an instance, a channel, a user or
a group) is django-auditlog's ``LogEntry`` (``audit/history.py``). Both keep what they name as
copied text, so a row stays readable after its actor or its object is deleted.
"""

from __future__ import annotations

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class AuditKind(models.TextChoices):
    SYNC_STARTED = "sync_started", _("Sync started")
    SYNC_CANCELLED = "sync_cancelled", _("Sync cancelled")
    SYNC_RETRIED = "sync_retried", _("Sync retried")
    EXPORT = "export", _("Export")
    LOGIN = "login", _("Login")
    LOGIN_FAILED = "login_failed", _("Failed login")
    LOCKED_OUT = "locked_out", _("Locked out")
    # governance (docs/classification.md, docs/baselines.md, docs/reviews.md)
    CLASSIFICATION_RULE_SAVED = "classification_rule_saved", _("Classification rule saved")
    CLASSIFICATION_MANUAL = "classification_manual", _("Classification assigned by hand")
    CLASSIFICATION_MANUAL_CLEARED = "classification_manual_cleared", _("Manual classification cleared")
    BASELINE_APPROVED = "baseline_approved", _("Baseline approved")
    REVIEW_CAMPAIGN_CREATED = "review_campaign_created", _("Review campaign created")
    REVIEW_DECIDED = "review_decided", _("Review decision")
    REVIEW_CAMPAIGN_CLOSED = "review_campaign_closed", _("Review campaign closed")
    REVIEW_EVIDENCE_EXPORT = "review_evidence_export", _("Review evidence exported")
    # history retention (docs/retention.md): one event per prune run, with its counts and archives
    HISTORY_PRUNED = "history_pruned", _("History pruned")


class AuditVia(models.TextChoices):
    ADMIN = "admin", _("Admin")
    API = "api", _("API")
    CLI = "cli", _("Command line")
    SCHEDULE = "schedule", _("Schedule")
    SYSTEM = "system", _("System (in-process)")


class AuditEvent(models.Model):
    """One action: who (``actor`` and its copied username), through what, from where, on what, with what."""

    kind = models.CharField(_("kind"), max_length=32, choices=AuditKind.choices, db_index=True)
    at = models.DateTimeField(_("at"), default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("actor"),
    )
    # copied: kept when the user is deleted; for a failed login, the username that was tried
    actor_username = models.CharField(_("username"), max_length=150, blank=True, db_index=True)
    via = models.CharField(_("via"), max_length=16, choices=AuditVia.choices, db_index=True)
    remote_addr = models.GenericIPAddressField(_("address"), null=True, blank=True)
    object_type = models.CharField(_("object type"), max_length=100, blank=True)
    object_id = models.CharField(_("object id"), max_length=64, blank=True)
    object_repr = models.CharField(_("object"), max_length=255, blank=True)
    details = models.JSONField(_("details"), default=dict, blank=True, encoder=DjangoJSONEncoder)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_event_object")]

    def __str__(self) -> str:
        who = self.actor_username or "-"
        return f"{self.get_kind_display()} by {who} via {self.via}"
