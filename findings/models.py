"""Risk findings: one row per (account, rule) episode, opened and resolved by syncs.

Why rows are never deleted: a finding is evidence that a risk existed between
`first_seen_at` and `resolved_at`. When the cause comes back after being fixed,
a new row opens, so the history of each risk stays readable. At most one open
row exists per (account, rule), enforced by a partial unique constraint.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class SeverityChoices(models.TextChoices):
    CRITICAL = "critical", _("Critical")
    HIGH = "high", _("High")
    MEDIUM = "medium", _("Medium")
    LOW = "low", _("Low")
    INFO = "info", _("Info")


SEVERITY_RANK = {
    SeverityChoices.CRITICAL: 4,
    SeverityChoices.HIGH: 3,
    SeverityChoices.MEDIUM: 2,
    SeverityChoices.LOW: 1,
    SeverityChoices.INFO: 0,
}


class Finding(models.Model):
    """One risk of one account, from the sync that saw its cause to the sync that saw it gone."""

    instance = models.ForeignKey(
        "instances.Instance", on_delete=models.PROTECT, related_name="findings", verbose_name=_("instance")
    )
    account = models.ForeignKey(
        "accountsync.InstanceAccount", on_delete=models.PROTECT, related_name="findings", verbose_name=_("account")
    )
    rule_code = models.CharField(_("rule"), max_length=32)
    severity = models.CharField(_("severity"), max_length=8, choices=SeverityChoices.choices)
    detail = models.JSONField(_("detail"), default=dict, blank=True)
    first_seen_at = models.DateTimeField(_("first seen"))
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)
    is_open = models.BooleanField(_("open"), default=True)
    session_id = models.UUIDField(_("session"), null=True, blank=True)
    resolved_session_id = models.UUIDField(_("resolved in session"), null=True, blank=True)

    class Meta:
        ordering = ["-first_seen_at", "-id"]
        verbose_name = _("risk finding")
        verbose_name_plural = _("risk findings")
        constraints = [
            models.UniqueConstraint(
                fields=["account", "rule_code"], condition=Q(is_open=True), name="findings_one_open_per_rule"
            ),
            models.CheckConstraint(
                condition=Q(is_open=True, resolved_at__isnull=True) | Q(is_open=False, resolved_at__isnull=False),
                name="findings_open_iff_unresolved",
            ),
        ]
        indexes = [
            models.Index(fields=["instance", "is_open"], name="finding_instance_open_idx"),
            models.Index(fields=["is_open", "severity", "first_seen_at"], name="finding_open_severity_idx"),
            models.Index(fields=["rule_code", "is_open"], name="finding_rule_open_idx"),
            models.Index(fields=["account", "is_open"], name="finding_account_open_idx"),
            models.Index(fields=["session_id"], name="finding_session_idx"),
            models.Index(fields=["instance", "first_seen_at"], name="finding_instance_seen_idx"),
            models.Index(fields=["instance", "resolved_at"], name="finding_instance_resolved_idx"),
            # the list's order (-first_seen_at, -id): the first page and a deep one walk it, never sort it all
            models.Index(fields=["first_seen_at", "id"], name="finding_seen_id_idx"),
            # the admin index's open high/critical chart groups by these: counted from the index alone
            models.Index(fields=["severity", "rule_code"], condition=Q(is_open=True), name="finding_open_sev_rule_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.rule_code} {self.account_id} ({'open' if self.is_open else 'resolved'})"


class RefreshState(models.Model):
    """What an instance's last full findings refresh was computed from, and until when its result holds.

    Why: a no-change re-sync (the daily case) wrote no snapshot, so re-evaluating every
    account would reproduce the stored findings exactly, at about a third of the worker's
    CPU. ``inputs_digest`` covers everything the outcome is a function of besides the clock
    (the catalog digest the snapshots came from, policy, context, database type, the rule
    table and the code that evaluates it); ``valid_until`` is the earliest moment the clock
    alone could flip a rule for one of the accounts (a dormant threshold, a password expiry),
    None when none can. ``findings.services.findings_after_sync`` skips the refresh only
    when the sync found the catalog unchanged, the digest is equal and now < valid_until.
    Derived data: deleting a row only costs one full refresh.
    """

    instance = models.OneToOneField(
        "instances.Instance",
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="findings_refresh_state",
        verbose_name=_("instance"),
    )
    inputs_digest = models.CharField(_("inputs digest"), max_length=64)
    valid_until = models.DateTimeField(_("valid until"), null=True, blank=True)
    refreshed_at = models.DateTimeField(_("refreshed"))
    session_id = models.UUIDField(_("session"), null=True, blank=True)
    accounts = models.PositiveIntegerField(_("accounts"), default=0)
    open_total = models.PositiveIntegerField(_("open findings"), default=0)

    class Meta:
        verbose_name = _("findings refresh state")
        verbose_name_plural = _("findings refresh states")

    def __str__(self) -> str:
        return f"findings of instance {self.instance_id} as of {self.refreshed_at:%Y-%m-%d %H:%M}"
