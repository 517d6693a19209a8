"""Registered database instances and the monitoring credentials used to read them."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from instances import crypto

_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$"
)


def validate_host(value: str) -> None:
    """Accept a DNS name or an IPv4/IPv6 address, nothing else (no URLs, no spaces)."""
    candidate = value.strip("[]")
    try:
        ipaddress.ip_address(candidate)
        return
    except ValueError:
        pass
    if not _HOSTNAME_RE.match(value):
        raise ValidationError(
            _("%(value)s is not a valid host name or IP address."), params={"value": value}, code="invalid_host"
        )


class DbType(models.TextChoices):
    MYSQL = "mysql", "MySQL / MariaDB"
    POSTGRESQL = "postgresql", "PostgreSQL"
    SQLSERVER = "sqlserver", "SQL Server"
    ORACLE = "oracle", "Oracle"


DEFAULT_PORTS = {DbType.MYSQL: 3306, DbType.POSTGRESQL: 5432, DbType.SQLSERVER: 1433, DbType.ORACLE: 1521}


class Environment(models.TextChoices):
    PRODUCTION = "production", _("Production")
    STAGING = "staging", _("Staging")
    DEVELOPMENT = "development", _("Development")
    TESTING = "testing", _("Testing")


class Credential(models.Model):
    """A monitoring login. The password is only ever stored encrypted.

    Why the accessor methods instead of a plain field: the clear password must
    leave this model only into a driver's connect call, never into a form,
    repr, log, or serializer by accident.
    """

    name = models.CharField(_("name"), max_length=128, unique=True)
    username = models.CharField(_("username"), max_length=256)
    password_encrypted = models.TextField(_("encrypted password"), db_column="password", blank=True, editable=False)
    description = models.TextField(_("description"), blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("credential")
        verbose_name_plural = _("credentials")

    def __str__(self) -> str:
        return f"{self.name} ({self.username})"

    def __repr__(self) -> str:
        return f"<Credential id={self.pk} name={self.name!r} username={self.username!r}>"

    def set_password(self, raw: str) -> None:
        """Encrypt and store `raw` (an empty string means "no password")."""
        self.password_encrypted = crypto.encrypt(raw)

    def get_password(self) -> str:
        """Decrypt the password for a driver; raises CredentialDecryptError."""
        if not self.password_encrypted:
            return ""
        return crypto.decrypt(self.password_encrypted)

    @property
    def has_password(self) -> bool:
        return bool(self.password_encrypted)


class Tag(models.Model):
    name = models.CharField(_("name"), max_length=64, unique=True)
    color = models.CharField(_("color"), max_length=7, default="#607d8b")

    class Meta:
        ordering = ["name"]
        verbose_name = _("tag")
        verbose_name_plural = _("tags")

    def __str__(self) -> str:
        return self.name


class SyncStatus(models.TextChoices):
    NEVER = "", _("Never synced")
    COMPLETED = "completed", _("Completed")
    FAILED = "failed", _("Failed")


class Instance(models.Model):
    name = models.CharField(_("name"), max_length=128, unique=True)
    db_type = models.CharField(_("database type"), max_length=16, choices=DbType.choices, db_index=True)
    host = models.CharField(_("host"), max_length=255, validators=[validate_host])
    port = models.PositiveIntegerField(_("port"), validators=[MinValueValidator(1), MaxValueValidator(65535)])
    database_name = models.CharField(
        _("database / service name"),
        max_length=128,
        blank=True,
        help_text=_("PostgreSQL maintenance database (default postgres); Oracle service name."),
    )
    credential = models.ForeignKey(
        Credential, on_delete=models.PROTECT, related_name="instances", verbose_name=_("credential")
    )
    environment = models.CharField(
        _("environment"), max_length=16, choices=Environment.choices, default=Environment.PRODUCTION, db_index=True
    )
    tags = models.ManyToManyField(Tag, blank=True, related_name="instances", verbose_name=_("tags"))
    is_active = models.BooleanField(_("active"), default=True, db_index=True)
    description = models.TextField(_("description"), blank=True)
    version = models.CharField(_("detected version"), max_length=255, blank=True)
    last_sync_at = models.DateTimeField(_("last sync"), null=True, blank=True)
    last_sync_status = models.CharField(
        _("last sync status"), max_length=16, choices=SyncStatus.choices, blank=True, default="", db_index=True
    )
    sync_count = models.PositiveIntegerField(_("sync count"), default=0)
    # when a sync last succeeded: what every active account was last seen at (InstanceAccount.last_seen_at
    # is only the fallback for accounts no longer listed), and the "last known at" of a scope that became unreadable
    last_success_at = models.DateTimeField(_("last successful sync"), null=True, blank=True, editable=False)
    # sha256 of the raw catalog rows the last applied sync read (with the reading code's fingerprint);
    # an identical next read cannot change anything, so its apply is skipped
    catalog_digest = models.CharField(_("catalog digest"), max_length=64, blank=True, default="", editable=False)
    options = models.JSONField(
        _("options"),
        default=dict,
        blank=True,
        help_text=_(
            'Per-instance settings, e.g. {"connect_timeout": 5, "databases": ["app"], '
            '"include_oracle_maintained": false, "tls": {"mode": "require"}}.'
        ),
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("instance")
        verbose_name_plural = _("instances")

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        if not isinstance(self.options, dict):
            errors["options"] = [_("Options must be a JSON object.")]
        else:
            timeout = self.options.get("connect_timeout")
            if timeout is not None and (
                not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 0 < timeout <= 300
            ):
                errors["options"] = [_("connect_timeout must be a number of seconds between 0 and 300.")]
        if errors:
            raise ValidationError(errors)

    @property
    def connect_timeout(self) -> float:
        """Seconds to wait for a connection; per-instance option or the global default."""
        value: Any = (self.options or {}).get("connect_timeout")
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
        return float(settings.WHALEFALL_CONNECT_TIMEOUT)
