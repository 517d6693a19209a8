"""Registered database instances and the monitoring credentials used to read them."""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from instances import crypto
from instances.tls import pem_certificate_error, tls_option_errors

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
    # Where it may be used (the binding): a connection anywhere else is refused before it is made, so
    # whoever may edit instances but not credentials cannot point this password at a host of theirs.
    allowed_db_types = models.JSONField(
        _("allowed database types"), default=list, blank=True, help_text=_("None selected: any type.")
    )
    allowed_hosts = models.TextField(
        _("allowed hosts"),
        blank=True,
        help_text=_(
            "Host names or addresses it may connect to, one per line; * and ? are wildcards "
            "(db-*.prod.example.com, 10.0.1.*). Empty: not bound, any host (only those who may "
            "change credentials can then attach it to an instance)."
        ),
    )
    allowed_ports = models.CharField(
        _("allowed ports"), max_length=200, blank=True, help_text=_("e.g. 5432, 3306, 6000-6010. Empty: any port.")
    )
    allow_weak_auth = models.BooleanField(
        _("allow weak password authentication"),
        default=False,
        help_text=_(
            "Let the server ask for this password in a weak form: md5 or a cleartext password "
            "(PostgreSQL), mysql_clear_password over verified TLS (MySQL). Off: PostgreSQL must use "
            "SCRAM, MySQL one of its hashing plugins."
        ),
    )
    # a client certificate for servers that want one (PEM; the key, a secret, only ever encrypted)
    tls_client_cert = models.TextField(
        _("TLS client certificate"),
        blank=True,
        help_text=_("PEM certificate sent to servers that ask for one; leave empty for none."),
    )
    tls_client_key_encrypted = models.TextField(
        _("encrypted TLS client key"), db_column="tls_client_key", blank=True, editable=False
    )
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
        """Encrypt and store `raw`; an empty string stores no password (``has_password`` false)."""
        self.password_encrypted = crypto.encrypt(raw) if raw else ""

    def get_password(self) -> str:
        """Decrypt the password for a driver; raises CredentialDecryptError."""
        if not self.password_encrypted:
            return ""
        return crypto.decrypt(self.password_encrypted)

    @property
    def has_password(self) -> bool:
        return bool(self.password_encrypted)

    def set_tls_client_key(self, pem: str) -> None:
        """Encrypt and store the client certificate's private key ("" removes it)."""
        self.tls_client_key_encrypted = crypto.encrypt(pem) if pem else ""

    def get_tls_client_key(self) -> str:
        """Decrypt the client key for a driver; raises CredentialDecryptError."""
        return crypto.decrypt(self.tls_client_key_encrypted) if self.tls_client_key_encrypted else ""

    @property
    def has_tls_client_key(self) -> bool:
        return bool(self.tls_client_key_encrypted)

    @property
    def is_bound(self) -> bool:
        """Whether it names the hosts it may be used with (an unbound credential may be used anywhere)."""
        return bool(host_patterns(self.allowed_hosts))

    def binding_refusal(self, *, db_type: str, host: str, port: int) -> str:
        """Why this credential may not be used for `db_type` at `host`:`port`, or "" when it may."""
        if self.allowed_db_types and db_type not in self.allowed_db_types:
            return f"it is bound to {', '.join(self.allowed_db_types)} servers, not {db_type}"
        patterns = host_patterns(self.allowed_hosts)
        if patterns and not any(fnmatch.fnmatchcase(host.strip().lower(), p) for p in patterns):
            return f"it is bound to the hosts {', '.join(patterns)}, not {host!r}"
        ranges = port_ranges(self.allowed_ports)
        if ranges and not any(low <= int(port) <= high for low, high in ranges):
            return f"it is bound to the ports {self.allowed_ports.strip()}, not {port}"
        return ""

    def clean(self) -> None:
        try:
            port_ranges(self.allowed_ports)
        except ValueError as exc:
            raise ValidationError({"allowed_ports": str(exc)}) from None
        types = self.allowed_db_types
        if not isinstance(types, list) or any(not isinstance(t, str) or t not in DbType.values for t in types):
            raise ValidationError({"allowed_db_types": _("Choose database types from the list.")})
        if self.tls_client_cert.strip() and (error := pem_certificate_error(self.tls_client_cert, "tls_client_cert")):
            raise ValidationError({"tls_client_cert": error})


def host_patterns(text: str) -> list[str]:
    """The binding's host patterns: one per line (or comma), lower case, blanks dropped."""
    return [p.strip().lower() for p in (text or "").replace(",", "\n").splitlines() if p.strip()]


def port_ranges(text: str) -> list[tuple[int, int]]:
    """`5432, 6000-6010` as [(5432, 5432), (6000, 6010)]; raises ValueError naming the bad part."""
    ranges = []
    for part in (text or "").replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        low, _sep, high = part.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise ValueError(f"{part!r} is not a port or a range like 6000-6010") from None
        if not 1 <= first <= last <= 65535:
            raise ValueError(f"{part!r} is not within 1-65535 (low-high)")
        ranges.append((first, last))
    return ranges


class Tag(models.Model):
    name = models.CharField(_("name"), max_length=64, unique=True)
    color = models.CharField(_("color"), max_length=7, default="#607d8b")

    class Meta:
        ordering = ["name"]
        verbose_name = _("tag")
        verbose_name_plural = _("tags")

    def __str__(self) -> str:
        return self.name


# --- instance options -------------------------------------------------------------
# Every key an adapter or the sync reads from Instance.options (grep "options.get" in accountsync/adapters
# and sync), per database type. A key nobody reads is refused on save, in the admin and the API alike, so a
# typo ("databse") cannot look like a setting that silently does nothing. Add a key here when an adapter
# starts reading one.
COMMON_OPTIONS = ("connect_timeout", "query_timeout", "tls")
FAMILY_OPTIONS: dict[str, tuple[str, ...]] = {
    "mysql": (),
    "postgresql": ("databases",),  # accountsync/adapters/postgresql.py, _wanted_databases
    "sqlserver": ("database_batch_size", "availability_group"),  # accountsync/adapters/sqlserver.py
    "oracle": ("include_oracle_maintained",),  # accountsync/adapters/oracle.py
}
MAX_QUERY_TIMEOUT = 3600
MAX_DATABASE_BATCH_SIZE = 1000


def valid_option_keys(db_type: str | None) -> list[str]:
    """The option keys an instance of `db_type` may set (every family's when the type is unknown)."""
    if db_type in FAMILY_OPTIONS:
        family = FAMILY_OPTIONS[db_type]
    else:
        family = tuple(key for keys in FAMILY_OPTIONS.values() for key in keys)
    return sorted({*COMMON_OPTIONS, *family})


def _seconds(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def instance_option_errors(options: Any, db_type: str | None) -> list[str]:
    """What is wrong with an instance's options for `db_type`: unknown keys, wrong types (empty when valid)."""
    if not isinstance(options, dict):
        return [str(_("Options must be a JSON object."))]
    errors: list[str] = []
    valid = valid_option_keys(db_type)
    unknown = sorted(str(key) for key in options if key not in valid)
    if unknown:
        label = dict(DbType.choices).get(db_type or "", "")
        errors.append(
            str(
                _("Unknown option(s) %(keys)s; the options of %(type)s instances are: %(valid)s.")
                if label
                else _("Unknown option(s) %(keys)s; the options are: %(valid)s.")
            )
            % {"keys": ", ".join(unknown), "type": label, "valid": ", ".join(valid)}
        )
    timeout = options.get("connect_timeout")
    if timeout is not None and (not _seconds(timeout) or not 0 < timeout <= 300):
        errors.append(str(_("connect_timeout must be a number of seconds between 0 and 300.")))
    query_timeout = options.get("query_timeout")
    if query_timeout is not None and (not _seconds(query_timeout) or not 0 < query_timeout <= MAX_QUERY_TIMEOUT):
        errors.append(
            str(_("query_timeout must be a number of seconds between 0 and %(max)d.")) % {"max": MAX_QUERY_TIMEOUT}
        )
    databases = options.get("databases")
    if "databases" in options and not (
        isinstance(databases, list) and all(isinstance(name, str) and name.strip() for name in databases)
    ):
        errors.append(
            str(_('databases must be a list of database names, e.g. ["sales", "postgres"] (empty: every database).'))
        )
    batch = options.get("database_batch_size")
    if batch is not None and (
        not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= MAX_DATABASE_BATCH_SIZE
    ):
        errors.append(
            str(_("database_batch_size must be a whole number between 1 and %(max)d."))
            % {"max": MAX_DATABASE_BATCH_SIZE}
        )
    for flag in ("include_oracle_maintained", "availability_group"):
        if flag in options and not isinstance(options[flag], bool):
            errors.append(str(_("%(option)s must be true or false.")) % {"option": flag})
    errors.extend(tls_option_errors(options.get("tls"), db_type))
    return errors


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
            'A JSON object. Every type: {"connect_timeout": 5} (seconds, default 5), "query_timeout" (seconds, '
            'default 300), "tls": {"mode": "verify-full", "ca": "-----BEGIN CERTIFICATE-----…"} (modes: disable, '
            'require, verify-ca, verify-full). PostgreSQL: {"databases": ["sales", "postgres"]} (default: every '
            'database). SQL Server: {"database_batch_size": 50, "availability_group": true}. Oracle: '
            '{"include_oracle_maintained": false} (default true). Unknown keys are refused; see '
            "docs/monitoring-accounts.md."
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
        errors = instance_option_errors(self.options, self.db_type or None)
        if errors:
            raise ValidationError({"options": errors})

    @property
    def connect_timeout(self) -> float:
        """Seconds to wait for a connection; per-instance option or the global default."""
        value: Any = (self.options or {}).get("connect_timeout")
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
        return float(settings.WHALEFALL_CONNECT_TIMEOUT)
