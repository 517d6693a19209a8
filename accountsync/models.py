"""Accounts, permission snapshots and change logs (docs/architecture.md, "Data model").

History is append-only: every foreign key that could take history with it is
PROTECT. Deleting an instance that has synced accounts must be an explicit
purge (delete its change logs, snapshots and accounts first), never a side
effect of a click in the admin; audit trails that vanish silently are worse
than a refused delete.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _


class AccountKind(models.TextChoices):
    USER = "user", _("User")
    ROLE = "role", _("Role")
    LOGIN = "login", _("Login")


class InstanceAccount(models.Model):
    """One account (user, role or login) ever seen on an instance.

    `last_seen_at` moves only when the row itself is written (added, changed,
    reactivated, and on removal: the last successful sync that still listed it),
    so an unchanged account costs no write. While an account is active it was,
    by construction, seen by the instance's last successful sync
    (`Instance.last_success_at`): `selectors.last_seen_expression()` is the one
    true "last seen" the admin, API and exports show.
    """

    # db_index=False on foreign keys here and below: a composite index leads with the same column
    # (the unique constraint, or the listed indexes), so a separate one only costs every insert.
    instance = models.ForeignKey(
        "instances.Instance",
        on_delete=models.PROTECT,
        related_name="accounts",
        verbose_name=_("instance"),
        db_index=False,
    )
    identity = models.CharField(_("identity"), max_length=512)
    username = models.CharField(_("username"), max_length=255)
    host = models.CharField(_("host"), max_length=255, null=True, blank=True)
    kind = models.CharField(_("kind"), max_length=8, choices=AccountKind.choices, default=AccountKind.USER)
    is_active = models.BooleanField(_("active"), default=True)
    is_superuser = models.BooleanField(_("superuser"), default=False)
    is_locked = models.BooleanField(_("locked"), default=False)
    attributes = models.JSONField(_("attributes"), default=dict, blank=True)
    first_seen_at = models.DateTimeField(_("first seen"))
    last_seen_at = models.DateTimeField(_("last seen"))
    deactivated_at = models.DateTimeField(_("deactivated"), null=True, blank=True)

    class Meta:
        ordering = ["instance_id", "identity"]
        verbose_name = _("account")
        verbose_name_plural = _("accounts")
        constraints = [
            models.UniqueConstraint(fields=["instance", "identity"], name="accountsync_account_instance_identity"),
        ]
        indexes = [
            models.Index(fields=["instance", "is_active"], name="acct_instance_active_idx"),
            models.Index(fields=["is_superuser", "is_active"], name="acct_superuser_idx"),
            models.Index(fields=["username"], name="acct_username_idx"),
            models.Index(fields=["kind"], name="acct_kind_idx"),
            models.Index(fields=["is_locked", "is_active"], name="acct_locked_idx"),
            # account search (selectors.account_search): exact/prefix name, name@host, host only;
            # pattern_ops lets PostgreSQL serve LIKE 'prefix%' under any collation (other backends ignore it)
            models.Index(
                fields=["username", "host"], name="acct_username_host_idx", opclasses=["varchar_pattern_ops"] * 2
            ),
            models.Index(
                fields=["host", "username"], name="acct_host_username_idx", opclasses=["varchar_pattern_ops"] * 2
            ),
        ]

    def __str__(self) -> str:
        return self.identity


class AccountPermission(models.Model):
    """A versioned canonical snapshot; the open row (`valid_to` null) is current.

    Versioning makes "what could X do on date D" one indexed lookup instead of
    replaying change logs.
    """

    account = models.ForeignKey(
        InstanceAccount,
        on_delete=models.PROTECT,
        related_name="permissions",
        verbose_name=_("account"),
        db_index=False,
    )
    instance = models.ForeignKey(
        "instances.Instance",
        on_delete=models.PROTECT,
        related_name="account_permissions",
        verbose_name=_("instance"),
        db_index=False,
    )
    snapshot = models.JSONField(_("snapshot"))
    digest = models.CharField(_("digest"), max_length=64)
    schema_version = models.PositiveSmallIntegerField(_("schema version"), default=1)
    collected_at = models.DateTimeField(_("collected at"))
    valid_from = models.DateTimeField(_("valid from"))
    valid_to = models.DateTimeField(_("valid to"), null=True, blank=True)

    class Meta:
        ordering = ["account_id", "-valid_from"]
        verbose_name = _("permission snapshot")
        verbose_name_plural = _("permission snapshots")
        constraints = [
            models.UniqueConstraint(
                fields=["account"], condition=Q(valid_to__isnull=True), name="accountsync_one_open_snapshot"
            ),
        ]
        indexes = [
            models.Index(fields=["account", "valid_from"], name="perm_account_from_idx"),
            models.Index(fields=["instance", "valid_to"], name="perm_instance_open_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id}@{self.valid_from:%Y-%m-%d %H:%M}"


class ChangeType(models.TextChoices):
    ADDED = "added", _("Added")
    REMOVED = "removed", _("Removed")
    REACTIVATED = "reactivated", _("Reactivated")
    PRIVILEGES_CHANGED = "privileges_changed", _("Privileges changed")
    ATTRIBUTES_CHANGED = "attributes_changed", _("Attributes changed")


class AccountChangeLog(models.Model):
    """One detected difference between two syncs; never edited after insert."""

    instance = models.ForeignKey(
        "instances.Instance",
        on_delete=models.PROTECT,
        related_name="account_changes",
        verbose_name=_("instance"),
        db_index=False,
    )
    account = models.ForeignKey(
        InstanceAccount,
        on_delete=models.PROTECT,
        related_name="changes",
        verbose_name=_("account"),
        db_index=False,
    )
    session_id = models.UUIDField(_("session"), null=True, blank=True, db_index=True)
    change_type = models.CharField(_("change type"), max_length=24, choices=ChangeType.choices)
    diff = models.JSONField(_("diff"), default=list, blank=True)
    summary = models.TextField(_("summary"), blank=True)
    detected_at = models.DateTimeField(_("detected at"))

    class Meta:
        ordering = ["-detected_at", "-id"]
        verbose_name = _("account change")
        verbose_name_plural = _("account changes")
        indexes = [
            models.Index(fields=["instance", "detected_at"], name="chg_instance_at_idx"),
            models.Index(fields=["account", "detected_at"], name="chg_account_at_idx"),
            models.Index(fields=["change_type", "detected_at"], name="chg_type_at_idx"),
            models.Index(fields=["detected_at", "id"], name="chg_at_idx"),
        ]

    def __str__(self) -> str:
        """`Privileges changed — 'bob'@'%' on prod-db` (page titles, breadcrumbs); reads the account and instance."""
        return gettext("%(change)s — %(account)s on %(instance)s") % {
            "change": self.get_change_type_display(),
            "account": self.account.identity,
            "instance": self.instance.name,
        }


class GapKindChoices(models.TextChoices):
    UNREADABLE = "unreadable", _("Unreadable")
    OUT_OF_SCOPE = "out_of_scope", _("Out of scope")


class CoverageGapEpisode(models.Model):
    """One stretch of time during which a sync could not read (or was told not to read) part of an instance.

    Why instance-level rows and not a mark on every account: losing sight of a database
    is one fact. The episode opens with the first sync that misses the scope and closes
    with the first that reads it again; `last_read_at` is when it was last read (the
    "last known at" of every grant under it while the episode is open). History is kept:
    an episode is closed, never deleted.
    """

    instance = models.ForeignKey(
        "instances.Instance",
        on_delete=models.PROTECT,
        related_name="coverage_gaps",
        verbose_name=_("instance"),
        db_index=False,
    )
    scope = models.CharField(_("scope"), max_length=512)
    kind = models.CharField(_("kind"), max_length=16, choices=GapKindChoices.choices)
    inclusive = models.BooleanField(_("scope itself unknown"), default=True)
    reason = models.TextField(_("reason"), blank=True)
    fix = models.TextField(_("how to fix"), blank=True)
    opened_at = models.DateTimeField(_("since"))
    last_read_at = models.DateTimeField(_("last read"), null=True, blank=True)
    closed_at = models.DateTimeField(_("readable again"), null=True, blank=True)
    opened_session_id = models.UUIDField(_("opened in session"), null=True, blank=True)
    closed_session_id = models.UUIDField(_("closed in session"), null=True, blank=True)

    class Meta:
        ordering = ["instance_id", "-opened_at", "scope"]
        verbose_name = _("coverage gap")
        verbose_name_plural = _("coverage gaps")
        constraints = [
            models.UniqueConstraint(
                fields=["instance", "scope", "kind"],
                condition=Q(closed_at__isnull=True),
                name="accountsync_one_open_gap",
            ),
        ]
        indexes = [
            models.Index(fields=["instance", "closed_at"], name="gap_instance_open_idx"),
            models.Index(fields=["opened_at"], name="gap_opened_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.scope} ({self.kind})"

    @property
    def is_open(self) -> bool:
        return self.closed_at is None


class InstanceServerFacts(models.Model):
    """One version of an instance's server-wide facts (accountsync/facts.py); the open row is current.

    Why versioned like the snapshots: an Oracle instance grants PUBLIC tens of thousands of
    privileges; copied into every sync record they made each record megabytes. A new row is
    written only when the facts' digest changes, so an unchanged instance stores them once,
    and "what did PUBLIC have at t" is still one indexed lookup.
    """

    instance = models.ForeignKey(
        "instances.Instance",
        on_delete=models.PROTECT,
        related_name="server_facts",
        verbose_name=_("instance"),
        db_index=False,
    )
    facts = models.JSONField(_("facts"))
    digest = models.CharField(_("digest"), max_length=64)
    valid_from = models.DateTimeField(_("valid from"))
    valid_to = models.DateTimeField(_("valid to"), null=True, blank=True)
    session_id = models.UUIDField(_("first seen in session"), null=True, blank=True)

    class Meta:
        ordering = ["instance_id", "-valid_from"]
        verbose_name = _("server facts")
        verbose_name_plural = _("server facts")
        constraints = [
            models.UniqueConstraint(
                fields=["instance"], condition=Q(valid_to__isnull=True), name="accountsync_one_open_facts"
            ),
        ]
        indexes = [models.Index(fields=["instance", "valid_from"], name="facts_instance_from_idx")]

    def __str__(self) -> str:
        return f"{self.instance_id}@{self.valid_from:%Y-%m-%d %H:%M}"
