"""People and groups as the directory (LDAP/Active Directory) last described them, and who owns which account.

Why a person is keyed by the directory's own identifier (``guid``: entryUUID, objectGUID) and not by
its DN or uid: a rename or a move in the tree keeps the person (and its links, findings and history),
while a uid reused by a new hire makes a new person. Flags change only on a read that succeeded;
``deleted`` means "not found any more by a COMPLETE read", never "could not be read"
(``DirectoryRead`` keeps every attempt, so the status says both when it last read OK and why the
last attempt failed).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class PersonStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    DISABLED = "disabled", _("Disabled")
    DELETED = "deleted", _("Deleted")


class Person(models.Model):
    """One person (a user entry) of the directory."""

    guid = models.CharField(_("directory id"), max_length=128, unique=True)
    dn = models.CharField(_("DN"), max_length=1024)
    uid = models.CharField(_("username"), max_length=255, blank=True, db_index=True)
    name = models.CharField(_("name"), max_length=255, blank=True)
    mail = models.CharField(_("mail"), max_length=255, blank=True, db_index=True)
    department = models.CharField(_("department"), max_length=255, blank=True)
    manager = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="reports",
        verbose_name=_("manager"),
    )
    # the manager's DN as the directory gave it: resolved to `manager` once every person of the read is stored
    manager_dn = models.CharField(_("manager DN"), max_length=1024, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=PersonStatus.choices, default=PersonStatus.ACTIVE, db_index=True
    )
    status_changed_at = models.DateTimeField(_("status since"))
    first_seen_at = models.DateTimeField(_("first seen"))
    last_seen_at = models.DateTimeField(_("last directory sync"))

    class Meta:
        ordering = ["uid", "name", "pk"]
        verbose_name = _("person")
        verbose_name_plural = _("people")

    def __str__(self) -> str:
        if self.name and self.uid:
            return f"{self.name} ({self.uid})"
        return self.name or self.uid or self.dn


class DirectoryGroup(models.Model):
    """A group entry; ``members`` are its direct person members, ``subgroups`` the groups nested in it."""

    guid = models.CharField(_("directory id"), max_length=128, unique=True)
    dn = models.CharField(_("DN"), max_length=1024)
    name = models.CharField(_("name"), max_length=255, db_index=True)
    members = models.ManyToManyField(Person, blank=True, related_name="directory_groups", verbose_name=_("members"))
    subgroups = models.ManyToManyField(
        "self", blank=True, symmetrical=False, related_name="parent_groups", verbose_name=_("nested groups")
    )
    is_deleted = models.BooleanField(_("deleted"), default=False)
    first_seen_at = models.DateTimeField(_("first seen"))
    last_seen_at = models.DateTimeField(_("last directory sync"))

    class Meta:
        ordering = ["name", "pk"]
        verbose_name = _("directory group")
        verbose_name_plural = _("directory groups")

    def __str__(self) -> str:
        return self.name


class ReadOutcome(models.TextChoices):
    RUNNING = "running", _("Running")
    OK = "ok", _("Read OK")
    FAILED = "failed", _("Failed")


class DirectoryRead(models.Model):
    """One attempt to read the directory; the status shown everywhere is derived from these rows."""

    started_at = models.DateTimeField(_("started"), db_index=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    outcome = models.CharField(
        _("outcome"), max_length=16, choices=ReadOutcome.choices, default=ReadOutcome.RUNNING, db_index=True
    )
    error_kind = models.CharField(_("error kind"), max_length=32, blank=True)
    error = models.TextField(_("reason"), blank=True)
    server = models.CharField(_("server"), max_length=512, blank=True)
    people = models.PositiveIntegerField(_("people read"), default=0)
    groups = models.PositiveIntegerField(_("groups read"), default=0)
    pages = models.PositiveIntegerField(_("pages"), default=0)
    details = models.JSONField(_("details"), default=dict, blank=True)
    via = models.CharField(_("via"), max_length=16, blank=True)

    class Meta:
        ordering = ["-started_at", "-pk"]
        verbose_name = _("directory read")
        verbose_name_plural = _("directory status")

    def __str__(self) -> str:
        return f"{self.started_at:%Y-%m-%d %H:%M:%S} {self.get_outcome_display()}"


class LinkRule(models.TextChoices):
    MAPPING = "mapping", _("Explicit mapping")
    WINDOWS = "windows", _("Windows login DOMAIN\\name")
    USERNAME = "username", _("Account name = directory username")
    MAIL = "mail", _("Account name = mail local part")


class AccountPersonLink(models.Model):
    """Which person owns a database account, and by which rule; rebuilt after each directory and account sync."""

    account = models.OneToOneField(
        "accountsync.InstanceAccount",
        on_delete=models.CASCADE,
        related_name="person_link",
        verbose_name=_("account"),
    )
    person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="links", verbose_name=_("person"))
    rule = models.CharField(_("rule"), max_length=16, choices=LinkRule.choices)
    matched = models.CharField(_("matched on"), max_length=512, blank=True)
    linked_at = models.DateTimeField(_("linked"))

    class Meta:
        ordering = ["account_id"]
        verbose_name = _("account link")
        verbose_name_plural = _("account links")

    def __str__(self) -> str:
        return f"{self.account_id} → {self.person}"


class AccountGroupLink(models.Model):
    """A Windows group login (SQL Server ``DOMAIN\\group``, type G) and the directory group it lets in."""

    account = models.OneToOneField(
        "accountsync.InstanceAccount",
        on_delete=models.CASCADE,
        related_name="group_link",
        verbose_name=_("account"),
    )
    group = models.ForeignKey(
        DirectoryGroup, on_delete=models.CASCADE, related_name="account_links", verbose_name=_("group")
    )
    matched = models.CharField(_("matched on"), max_length=512, blank=True)
    linked_at = models.DateTimeField(_("linked"))

    class Meta:
        ordering = ["account_id"]
        verbose_name = _("group login link")
        verbose_name_plural = _("group login links")

    def __str__(self) -> str:
        return f"{self.account_id} → {self.group}"


class AccountMapping(models.Model):
    """An explicit "this account belongs to that person", for names no rule can guess (``svc_payroll``).

    Either one account, or a name pattern (shell-style, ``*`` and ``?``, case-insensitive) matched against
    the account name, optionally only on one instance. The first mapping that matches wins: an exact
    account before a pattern, then the lower ``priority``.
    """

    account = models.ForeignKey(
        "accountsync.InstanceAccount",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("account"),
    )
    pattern = models.CharField(
        _("account name pattern"),
        max_length=255,
        blank=True,
        help_text=_("Shell-style pattern on the account name, e.g. svc_payroll* (case-insensitive)."),
    )
    instance = models.ForeignKey(
        "instances.Instance",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("only on instance"),
    )
    person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="mappings", verbose_name=_("person"))
    priority = models.PositiveIntegerField(_("priority"), default=100)
    note = models.CharField(_("note"), max_length=255, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["priority", "pk"]
        verbose_name = _("account mapping")
        verbose_name_plural = _("account mappings")
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(account__isnull=False) & models.Q(pattern=""))
                | (models.Q(account__isnull=True) & ~models.Q(pattern="")),
                name="directory_mapping_account_xor_pattern",
            )
        ]

    def __str__(self) -> str:
        return f"{self.pattern or self.account_id} → {self.person}"
