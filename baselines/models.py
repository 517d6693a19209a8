"""Approved baselines: the effective access someone signed off, versioned, one entry per account.

Why versions and entries and not a flag on the snapshot: a baseline is evidence ("alice approved
this access on 3 May, because ...") that must outlive later approvals, so approving again writes
a new version and keeps the old ones. Each version stores, per account, the canonical approved set
(``baselines.canonical``) at the moment of approval; drift compares the current effective access
with the entry of the newest current version that names the account.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

APPROVE_PERMISSION = "baselines.approve_baseline"


class BaselineKind(models.TextChoices):
    ACCOUNT = "account", _("Account")
    INSTANCE = "instance", _("Instance")
    CLASSIFICATION = "classification", _("Classification")


class Baseline(models.Model):
    """What is baselined (one account, one instance, or one classification), with its current version number."""

    kind = models.CharField(_("kind"), max_length=16, choices=BaselineKind.choices)
    account = models.ForeignKey(
        "accountsync.InstanceAccount",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("account"),
    )
    instance = models.ForeignKey(
        "instances.Instance",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("instance"),
    )
    classification = models.ForeignKey(
        "classification.Classification",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("classification"),
    )
    version = models.PositiveIntegerField(_("current version"), default=0)
    created_at = models.DateTimeField(_("created"))
    updated_at = models.DateTimeField(_("last approved"))

    class Meta:
        ordering = ["-updated_at", "-id"]
        verbose_name = _("baseline")
        verbose_name_plural = _("baselines")
        permissions = [("approve_baseline", _("Can approve current access as a baseline"))]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(kind="account", account__isnull=False, instance__isnull=True, classification__isnull=True)
                    | Q(kind="instance", account__isnull=True, instance__isnull=False, classification__isnull=True)
                    | Q(
                        kind="classification",
                        account__isnull=True,
                        instance__isnull=True,
                        classification__isnull=False,
                    )
                ),
                name="baseline_one_subject_per_kind",
            ),
            models.UniqueConstraint(fields=["account"], condition=Q(kind="account"), name="baseline_one_per_account"),
            models.UniqueConstraint(
                fields=["instance"], condition=Q(kind="instance"), name="baseline_one_per_instance"
            ),
            models.UniqueConstraint(
                fields=["classification"], condition=Q(kind="classification"), name="baseline_one_per_classification"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.subject_label()} (v{self.version})"

    def subject_label(self) -> str:
        if self.kind == BaselineKind.ACCOUNT and self.account_id:
            return str(self.account)
        if self.kind == BaselineKind.INSTANCE and self.instance_id:
            return str(self.instance)
        if self.kind == BaselineKind.CLASSIFICATION and self.classification_id:
            return str(self.classification)
        return "-"


class BaselineVersion(models.Model):
    """One approval: who, when, why, and how many accounts it fixed; only the newest one is current."""

    baseline = models.ForeignKey(
        Baseline, on_delete=models.PROTECT, related_name="versions", verbose_name=_("baseline")
    )
    version = models.PositiveIntegerField(_("version"))
    is_current = models.BooleanField(_("current"), default=True)
    approved_at = models.DateTimeField(_("approved at"))
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("approved by"),
    )
    # copied: the approval stays attributable when the user is deleted
    approved_by_username = models.CharField(_("approved by (username)"), max_length=150, blank=True)
    comment = models.TextField(_("comment"))
    account_count = models.PositiveIntegerField(_("accounts"), default=0)
    # unreadable scopes at approval time: what the approver signed off there was last known, not read
    gaps = models.JSONField(_("unreadable scopes at approval"), default=list, blank=True)

    class Meta:
        ordering = ["-approved_at", "-id"]
        verbose_name = _("baseline version")
        verbose_name_plural = _("baseline versions")
        constraints = [
            models.UniqueConstraint(fields=["baseline", "version"], name="baseline_version_unique"),
            models.UniqueConstraint(
                fields=["baseline"], condition=Q(is_current=True), name="baseline_one_current_version"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.baseline} v{self.version}"


class BaselineEntry(models.Model):
    """One account's approved access in one version, canonical and compact (``baselines.canonical``)."""

    version = models.ForeignKey(
        BaselineVersion, on_delete=models.PROTECT, related_name="entries", verbose_name=_("version")
    )
    account = models.ForeignKey(
        "accountsync.InstanceAccount", on_delete=models.PROTECT, related_name="+", verbose_name=_("account")
    )
    instance = models.ForeignKey(
        "instances.Instance", on_delete=models.PROTECT, related_name="+", verbose_name=_("instance")
    )
    access = models.JSONField(_("approved access"))
    digest = models.CharField(_("digest"), max_length=64)

    class Meta:
        ordering = ["version_id", "account_id"]
        verbose_name = _("baseline entry")
        verbose_name_plural = _("baseline entries")
        constraints = [
            models.UniqueConstraint(fields=["version", "account"], name="baseline_entry_unique"),
        ]
        indexes = [
            models.Index(fields=["instance", "account"], name="baseline_entry_instance_idx"),
            models.Index(fields=["account"], name="baseline_entry_account_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.version}: {self.account_id}"
