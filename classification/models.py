"""Classifications: categories, their rules (versioned), the materialized facts rules read, and assignments.

Why facts are materialized: effective access is computed per instance in Python from the role
graph (accountsync/effective.py). Classifying 100,000 accounts against 20 rules must not redo that
per rule or per evaluation, so each instance's compact facts (effective capabilities, roles
reached, effective privilege keys, attributes of every account) are stored when its snapshots
change, and every evaluation reads only those rows (docs/classification.md, "How evaluation works").
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext, gettext_noop
from django.utils.translation import gettext_lazy as _

FAMILY_CHOICES = [
    ("", _("Every family")),
    ("mysql", "MySQL / MariaDB"),
    ("postgresql", "PostgreSQL"),
    ("sqlserver", "SQL Server"),
    ("oracle", "Oracle"),
]


# The shipped defaults' names (classification 0002_defaults), by code: shown translated while a default
# keeps its shipped name; a renamed default, or any other classification, is shown as written.
SHIPPED_NAMES = {
    "superuser": gettext_noop("Superuser-equivalent"),
    "can-grant": gettext_noop("Can grant"),
    "writes-production": gettext_noop("Writes production data"),
    "reads-production": gettext_noop("Reads production data"),
    "locked-expired": gettext_noop("Locked or expired"),
    "unused-role": gettext_noop("Unused roles"),
}


class Classification(models.Model):
    """A category accounts fall into (by rule or by hand), with a risk level from 1 (low) to 6 (critical)."""

    code = models.SlugField(_("code"), max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=128)
    description = models.TextField(_("description"), blank=True)
    risk_level = models.PositiveSmallIntegerField(
        _("risk level"), default=3, validators=[MinValueValidator(1), MaxValueValidator(6)]
    )
    color = models.CharField(
        _("colour"),
        max_length=7,
        default="#607d8b",
        validators=[RegexValidator(r"^#[0-9a-fA-F]{6}$", _("Enter a colour as #rrggbb."))],
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["-risk_level", "code"]
        verbose_name = _("classification")
        verbose_name_plural = _("classifications")
        constraints = [
            models.CheckConstraint(
                condition=Q(risk_level__gte=1, risk_level__lte=6), name="classification_risk_level_range"
            ),
        ]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        """The name as a reader sees it: a shipped default's unchanged name in the reader's language."""
        shipped = SHIPPED_NAMES.get(self.code)
        return gettext(shipped) if shipped is not None and shipped == self.name else self.name


class ClassificationRule(models.Model):
    """A rule that puts matching accounts of one family (or every family) into a classification.

    The current expression is kept here for evaluation; every saved change is also a
    `ClassificationRuleVersion` row, so the history of what the rule said, who changed it and when
    is never lost (services.rule_save writes both).
    """

    classification = models.ForeignKey(
        Classification, on_delete=models.CASCADE, related_name="rules", verbose_name=_("classification")
    )
    name = models.CharField(_("name"), max_length=128)
    db_type = models.CharField(_("database family"), max_length=16, choices=FAMILY_CHOICES, blank=True, default="")
    expression = models.JSONField(_("rule"))
    is_enabled = models.BooleanField(_("enabled"), default=True)
    version = models.PositiveIntegerField(_("version"), default=1)
    updated_at = models.DateTimeField(_("updated"))
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("updated by"),
    )

    class Meta:
        ordering = ["classification__code", "name"]
        verbose_name = _("classification rule")
        verbose_name_plural = _("classification rules")
        constraints = [
            models.UniqueConstraint(fields=["classification", "name"], name="classification_rule_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.classification.code}: {self.name}"


class ClassificationRuleVersion(models.Model):
    """One saved state of a rule; append-only."""

    rule = models.ForeignKey(
        ClassificationRule, on_delete=models.CASCADE, related_name="versions", verbose_name=_("rule")
    )
    version = models.PositiveIntegerField(_("version"))
    name = models.CharField(_("name"), max_length=128)
    db_type = models.CharField(_("database family"), max_length=16, choices=FAMILY_CHOICES, blank=True, default="")
    expression = models.JSONField(_("rule"))
    is_enabled = models.BooleanField(_("enabled"), default=True)
    comment = models.TextField(_("comment"), blank=True)
    created_at = models.DateTimeField(_("saved at"))
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("saved by"),
    )

    class Meta:
        ordering = ["rule_id", "-version"]
        verbose_name = _("rule version")
        verbose_name_plural = _("rule versions")
        constraints = [
            models.UniqueConstraint(fields=["rule", "version"], name="classification_rule_version_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.rule_id} v{self.version}"


class InstanceFacts(models.Model):
    """What rules read about one instance's active accounts, as inverted indexes.

    `index` (built by `classification.rules.facts_index`) maps, per field, each distinct value to
    the accounts that have it: effective privilege keys (`classification.rules.privilege_key`:
    ``scope|PRIVILEGE|flags``), capabilities, roles reached (identity and name), name, host, kind,
    locked, and every snapshot attribute (plus `is_held`). Why per instance and inverted: a
    fleet-wide evaluation reads one row per instance and answers every leaf from distinct values
    (100,000 accounts, 20 rules: bench/classify_scale.py). `digest` lets the refresh skip the
    write when nothing changed.
    """

    instance = models.OneToOneField(
        "instances.Instance",
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="classification_facts",
        verbose_name=_("instance"),
    )
    # JSON text, not a JSONField: PostgreSQL would parse and re-serialize the (large) jsonb on every write and read,
    # and nothing queries inside it; `facts_index_load` decodes it
    index = models.TextField(_("facts"), default="{}")
    accounts = models.PositiveIntegerField(_("accounts"), default=0)
    digest = models.CharField(_("digest"), max_length=64)
    computed_at = models.DateTimeField(_("computed at"))
    # what the instance's last evaluation after a sync read besides the facts (rules, manual decisions, the
    # instance's environment and tags): equal on a catalog-unchanged sync means the evaluation can be skipped
    evaluated_inputs = models.CharField(_("evaluated inputs"), max_length=64, blank=True, default="")

    class Meta:
        verbose_name = _("instance facts")
        verbose_name_plural = _("instance facts")

    def __str__(self) -> str:
        return str(self.instance_id)


class ClassificationInstanceState(models.Model):
    """How many of an instance's accounts a classification holds, and a digest of exactly which.

    Why: a re-evaluation compares the digest of what it computed with this one and reads or
    writes the assignments of a (classification, instance) pair only when they differ, so the
    steady state (a rule change that moves nobody) costs no assignment reads. The dashboard's
    counts are the sums of `count`.
    """

    classification = models.ForeignKey(
        Classification, on_delete=models.CASCADE, related_name="instance_states", verbose_name=_("classification")
    )
    instance = models.ForeignKey(
        "instances.Instance", on_delete=models.CASCADE, related_name="+", verbose_name=_("instance"), db_index=False
    )
    count = models.PositiveIntegerField(_("accounts"))
    digest = models.CharField(_("digest"), max_length=64)

    class Meta:
        verbose_name = _("classification per instance")
        verbose_name_plural = _("classifications per instance")
        constraints = [
            models.UniqueConstraint(fields=["classification", "instance"], name="classification_state_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.classification_id}@{self.instance_id}: {self.count}"


class ManualAction(models.TextChoices):
    INCLUDE = "include", _("Assigned by hand")
    EXCLUDE = "exclude", _("Excluded by hand")


class ManualAssignment(models.Model):
    """A person's decision about one account and one classification; it wins over every rule."""

    account = models.ForeignKey(
        "accountsync.InstanceAccount", on_delete=models.CASCADE, related_name="+", verbose_name=_("account")
    )
    classification = models.ForeignKey(
        Classification, on_delete=models.CASCADE, related_name="manual_assignments", verbose_name=_("classification")
    )
    action = models.CharField(_("decision"), max_length=8, choices=ManualAction.choices)
    reason = models.TextField(_("reason"), blank=True)
    decided_at = models.DateTimeField(_("decided at"))
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("decided by"),
    )

    class Meta:
        ordering = ["-decided_at"]
        verbose_name = _("manual assignment")
        verbose_name_plural = _("manual assignments")
        constraints = [
            models.UniqueConstraint(fields=["account", "classification"], name="classification_manual_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.action} {self.classification_id}"


class AssignmentSource(models.TextChoices):
    RULE = "rule", _("Rule")
    MANUAL = "manual", _("Manual")


class ClassificationAssignment(models.Model):
    """An active account currently in a classification (the result of rules and manual decisions).

    Derived data: every evaluation rebuilds it from the facts, the rules and the manual
    decisions. Its references therefore have no database constraints (``db_constraint=False``):
    the ORM still cascades and nulls them on delete, but the database does not check each
    inserted row against four tables. On PostgreSQL those checks (each one locking the referenced
    account row) were two thirds of a first evaluation of 100,000 accounts (434,798 rows: 32 s
    with them, 11 s without, on a loaded machine). Accounts are never deleted while their
    snapshots and change logs exist (PROTECT); a row left dangling by a classification or rule
    deleted while an evaluation ran goes at the next one: a full evaluation drops rows of
    classifications that no longer exist, and a deleted rule changes its pairs' digests.
    """

    account = models.ForeignKey(
        "accountsync.InstanceAccount",
        on_delete=models.CASCADE,
        related_name="classification_assignments",
        verbose_name=_("account"),
        db_index=False,
        db_constraint=False,
    )
    classification = models.ForeignKey(
        Classification,
        on_delete=models.CASCADE,
        related_name="assignments",
        verbose_name=_("classification"),
        db_constraint=False,
    )
    instance = models.ForeignKey(
        "instances.Instance",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("instance"),
        db_index=False,
        db_constraint=False,
    )
    source = models.CharField(_("source"), max_length=8, choices=AssignmentSource.choices)
    rule = models.ForeignKey(
        ClassificationRule,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("rule"),
        db_constraint=False,
        # nothing looks assignments up by rule except a rule's deletion (rare; it scans): one b-tree fewer to
        # maintain for each of a first evaluation's rows
        db_index=False,
    )
    assigned_at = models.DateTimeField(_("since"))

    class Meta:
        ordering = ["classification_id", "account_id"]
        verbose_name = _("assignment")
        verbose_name_plural = _("assignments")
        constraints = [
            models.UniqueConstraint(fields=["account", "classification"], name="classification_assignment_unique"),
        ]
        indexes = [
            models.Index(fields=["classification", "instance"], name="clsassign_cls_instance_idx"),
            models.Index(fields=["instance"], name="clsassign_instance_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} in {self.classification_id}"


class ClassificationDailyCount(models.Model):
    """How many active accounts a classification held on one day (the dashboard's 30-day chart)."""

    classification = models.ForeignKey(
        Classification, on_delete=models.CASCADE, related_name="daily_counts", verbose_name=_("classification")
    )
    day = models.DateField(_("day"))
    count = models.PositiveIntegerField(_("accounts"))

    class Meta:
        ordering = ["day", "classification_id"]
        verbose_name = _("daily count")
        verbose_name_plural = _("daily counts")
        constraints = [
            models.UniqueConstraint(fields=["classification", "day"], name="classification_daily_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.classification_id} {self.day}: {self.count}"
