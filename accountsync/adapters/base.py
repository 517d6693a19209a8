"""The adapter contract: what every database family returns, and how it fails.

Why one module: the sync engine, the admin and the API depend only on these
types. A new database family is one adapter module plus one registry line, and
every adapter produces exactly the same canonical snapshot, so diffs and
risk rules never special-case a vendor.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol

from django.utils.module_loading import import_string
from django.utils.translation import gettext, gettext_noop

from config.scopes import split_scope

SCHEMA_VERSION = 1

# --- errors ------------------------------------------------------------------


class ErrorKind:
    CONNECTION = "connection"
    TIMEOUT = "timeout"
    PERMISSION = "permission"
    CONFIGURATION = "configuration"
    INTERNAL = "internal"

    ALL = (CONNECTION, TIMEOUT, PERMISSION, CONFIGURATION, INTERNAL)


class AdapterError(Exception):
    """A classified failure talking to a monitored instance.

    The message names the instance and the fix. It never contains a password:
    `scrub()` removes the secret from driver text before it gets here. `code` and
    `params`, when set, let the admin render the same message in the reader's
    language (see `message_render`); the English `message` stays for logs and the API.
    """

    kind: ClassVar[str] = ErrorKind.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        instance_name: str | None = None,
        code: str = "",
        params: dict[str, str] | None = None,
    ) -> None:
        self.instance_name = instance_name
        self.message = message
        self.code = code
        self.params = dict(params or {})
        super().__init__(f"{instance_name}: {message}" if instance_name else message)


class ConnectionFailed(AdapterError):
    kind = ErrorKind.CONNECTION


class TimeoutFailed(AdapterError):
    kind = ErrorKind.TIMEOUT


class PermissionDenied(AdapterError):
    kind = ErrorKind.PERMISSION


class ConfigurationError(AdapterError):
    kind = ErrorKind.CONFIGURATION


class InternalError(AdapterError):
    kind = ErrorKind.INTERNAL


# --- failure messages in the reader's language --------------------------------------
# Why a code and parameters: a failed sync record is read by people in several languages,
# long after the English text was made. Each classified failure stores its message code
# and the parameters that filled it; the admin renders gettext(template) % params at
# display time, and the English text (the template untranslated) stays for logs and the API.
# Parameters that come from the server or the driver are shown as they are (the admin's
# templates escape them); a parameter that is one of the adapters' own words (PHRASES) is
# translated too.

MESSAGES: dict[str, str] = {}
# parameters whose value is an adapter's own wording, translated when it is a known phrase
PHRASE_PARAMS = frozenset({"phase", "running", "check", "failed", "port_of", "source", "what"})
PHRASES = frozenset(
    {
        gettext_noop("connect"),
        gettext_noop("read the server version"),
        gettext_noop("read the grant tables"),
        gettext_noop("read the DBA_ views"),
        gettext_noop("read the sys catalog views"),
        gettext_noop("the server is running"),
        gettext_noop("SQL Server is running"),
        gettext_noop("SQL Server listens on TCP"),
        gettext_noop("the database is open"),
        gettext_noop("the listener is running"),
        gettext_noop("that the account may connect from this host"),
        gettext_noop("pg_hba.conf"),
        gettext_noop("that the login is enabled and allowed to connect"),
        gettext_noop("that the account has CREATE SESSION"),
        gettext_noop("login failed"),
        gettext_noop("authentication failed"),
        gettext_noop("a MySQL/MariaDB"),
        gettext_noop("a SQL Server"),
        gettext_noop("an Oracle listener"),
        gettext_noop("server"),
        gettext_noop("SQL Server"),
        gettext_noop("Oracle"),
        gettext_noop("grant table contents"),
        gettext_noop("catalog view contents"),
        gettext_noop("dictionary view contents"),
        # coverage gap reasons and fixes that are the adapters' own words (gap_text)
        gettext_noop("not readable by the monitoring login"),
        gettext_noop("not in the instance's databases option"),
        gettext_noop("add it to the databases option to audit it"),
    }
)


def message_register(code: str, template: str) -> str:
    """Declare a message code and its English %-template (mark the template with gettext_noop).

    Why a registry: the layers above (sync) word their own failures and register them here,
    so one renderer serves every stored code. Returns the code.
    """
    MESSAGES[code] = template
    return code


def message_english(code: str, params: dict[str, Any]) -> str:
    """The English text of a registered message: what logs and the API's `message` show."""
    return MESSAGES[code] % params


def message_render(code: str, params: dict[str, Any] | None, fallback: str, *, prefix: str = "") -> str:
    """A stored message in the active language; `fallback` (the stored English) without a known code.

    `prefix` (the instance name) is put before the text as the English message has it. A
    template whose translation does not fit the parameters falls back to the English text.
    """
    template = MESSAGES.get(code or "")
    if template is None:
        return fallback
    values = {
        key: (gettext(value) if key in PHRASE_PARAMS and value in PHRASES else value)
        for key, value in (params or {}).items()
    }
    try:
        text = gettext(template) % values
    except (KeyError, ValueError, TypeError):
        return fallback
    return f"{prefix}: {text}" if prefix else text


def gap_text(text: str) -> str:
    """A coverage gap's reason or fix for display: the adapters' own words translated, the server's as is."""
    return gettext(text) if text in PHRASES else text


def _coded(cls: type[AdapterError], code: str, target: ConnectionTarget | None, **params: str) -> AdapterError:
    return cls(message_english(code, params), instance_name=target.name if target else None, code=code, params=params)


TLS_VERIFY_FAILED = message_register(
    "tls_verify_failed",
    gettext_noop(
        "the TLS certificate of %(endpoint)s could not be verified (%(detail)s); check that the "
        "instance's tls.ca holds the CA that signed the server's certificate and, with verify-full, that the "
        "certificate names the host the instance connects to (or use mode verify-ca). WhaleFall does not "
        "connect to a server it cannot verify"
    ),
)
CREDENTIAL_NOT_BOUND = message_register(
    "credential_not_bound",
    gettext_noop(
        "credential %(credential)s may not be used for %(db_type)s at %(endpoint)s: %(refusal)s; someone who "
        "may change credentials can extend its binding (allowed hosts, ports, database types)"
    ),
)
CREDENTIAL_UNDECRYPTABLE = message_register(
    "credential_undecryptable",
    gettext_noop(
        "credential %(credential)s cannot be decrypted: key rotated? "
        "Restore the old key in WHALEFALL_FIELD_KEYS or re-enter the password."
    ),
)
LOGIN_FAILED = message_register(
    "login_failed",
    gettext_noop(
        "%(failed)s for %(user)s at %(endpoint)s (%(detail)s); check the credential's user name and password and "
        "%(check)s"
    ),
)
TIMEOUT_FAILED = message_register(
    "timeout_failed",
    gettext_noop(
        "no answer from %(endpoint)s within %(limit)ss while trying to %(phase)s (%(detail)s); "
        "check that this is %(port_of)s port, or raise the timeout"
    ),
)
TIMEOUT_FAILED_SILENT = message_register(
    "timeout_failed_silent",
    gettext_noop(
        "no answer from %(endpoint)s within %(limit)ss while trying to %(phase)s; "
        "check that this is %(port_of)s port, or raise the timeout"
    ),
)
CONNECTION_FAILED = message_register(
    "connection_failed",
    gettext_noop("cannot connect to %(endpoint)s (%(detail)s); check host, port, firewall and that %(running)s"),
)
NO_ANSWER = message_register(
    "no_answer",
    gettext_noop(
        "no answer from %(endpoint)s within %(limit)ss while trying to %(phase)s (gave up after %(waited)ss); "
        "check the server's load and locks and the network to it, or raise the instance's query_timeout option"
    ),
)
NO_ANSWER_DETAIL = message_register(
    "no_answer_detail",
    gettext_noop(
        "no answer from %(endpoint)s within %(limit)ss while trying to %(phase)s (gave up after %(waited)ss; "
        "%(detail)s); check the server's load and locks and the network to it, or raise the instance's "
        "query_timeout option"
    ),
)
CONNECTION_LOST = message_register(
    "connection_lost",
    gettext_noop(
        "lost the connection to %(endpoint)s after %(elapsed)ss while trying to %(phase)s (%(detail)s); "
        "the server or something between (proxy, firewall, failover) closed it: check that %(running)s "
        "and its log, then sync again"
    ),
)
UNEXPECTED_ERROR = message_register(
    "unexpected_error",
    gettext_noop("unexpected %(source)s error while trying to %(phase)s (%(detail)s)"),
)
UNEXPECTED_CONTENTS = message_register("unexpected_contents", gettext_noop("unexpected %(what)s: %(error)s"))
UNSUPPORTED_DB_TYPE = message_register(
    "unsupported_db_type", gettext_noop("unsupported database type %(db_type)s; supported: %(supported)s")
)
ADAPTER_UNLOADABLE = message_register(
    "adapter_unloadable", gettext_noop("the %(db_type)s adapter cannot be loaded: %(error)s")
)


_PRIVATE_FILES: dict[str, tuple[str, tuple[int, int]]] = {}  # sha256 of content -> (path, (st_dev, st_ino))
_PRIVATE_FILES_LOCK = threading.Lock()


def private_file(content: str) -> str:
    """A path a driver can read `content` from (a CA bundle, a client key, an option file).

    Why an unlinked file kept open and read through /proc/self/fd: drivers take these only as
    paths (libpq, Connector/C, OpenSSL), and a client key must not lie in a directory where
    another process can read or a tmp cleaner remove it (Connector/C silently ignores an option
    file it cannot open). An open, unlinked file cannot be removed, and only this process (and its
    forks) can reach it. Without /proc the file stays (mode 0600) in the temporary directory.
    Either way the path is checked to lead to the same file (device, inode) before each use and
    written anew if not. One file per distinct content, for the life of the process.
    """
    import os
    import tempfile

    digest = hashlib.sha256(content.encode()).hexdigest()
    with _PRIVATE_FILES_LOCK:
        known = _PRIVATE_FILES.get(digest)
        if known is not None:
            path, identity = known
            with contextlib.suppress(OSError):
                info = os.stat(path)
                if (info.st_dev, info.st_ino) == identity:
                    return path
        fd, path = tempfile.mkstemp(prefix="whalefall-", suffix=".pem")  # mode 0600
        os.write(fd, content.encode())
        info = os.fstat(fd)
        proc_path = f"/proc/self/fd/{fd}"
        if os.path.exists(proc_path):
            os.unlink(path)
            path = proc_path
        else:
            os.close(fd)
        _PRIVATE_FILES[digest] = (path, (info.st_dev, info.st_ino))
        return path


def tls_verify_failed(target: ConnectionTarget, detail: str) -> ConfigurationError:
    """The server's certificate did not verify: a configuration error that says what to check."""
    return _coded(ConfigurationError, TLS_VERIFY_FAILED, target, endpoint=endpoint(target), detail=detail)


def scrub(text: str, *secrets: str | None) -> str:
    """Remove every non-empty secret from driver-provided text."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for one bulk step (a fetch, an apply).

    Why: reading and building 10,000 accounts allocates hundreds of thousands of
    lists, dicts and records, none of them garbage until the step ends; the
    collector's passes over them took ~20% of a first sync and freed nothing.
    Reference counting still frees everything as usual, and the collector resumes
    (if it was on) when the step ends, also on an exception.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# --- connection target ---------------------------------------------------------


@dataclass(frozen=True)
class TlsSettings:
    """How a connection is encrypted: the instance's tls option and the credential's client certificate.

    `mode` is None when the instance says nothing (each adapter keeps its family's default then);
    see instances/tls.py for the schema. The client key is excluded from repr like the password.
    """

    mode: str | None = None
    ca_pem: str = ""
    client_cert_pem: str = ""
    client_key_pem: str = field(default="", repr=False)
    trust_server_certificate: bool = False
    # SQL Server only: TDS 8.0 strict encryption, and the name the server's certificate must carry
    strict: bool = False
    host_name_in_certificate: str = ""

    @classmethod
    def from_options(cls, options: dict[str, Any] | None, client_cert: str = "", client_key: str = "") -> TlsSettings:
        tls = (options or {}).get("tls")
        if isinstance(tls, str):
            tls = {"mode": tls}
        if not isinstance(tls, dict):
            tls = {}
        mode = tls.get("mode")
        return cls(
            mode=str(mode) if mode else None,
            ca_pem=str(tls.get("ca") or ""),
            client_cert_pem=client_cert or "",
            client_key_pem=client_key or "",
            trust_server_certificate=tls.get("trust_server_certificate") is True,
            strict=tls.get("strict") is True,
            host_name_in_certificate=str(tls.get("host_name_in_certificate") or ""),
        )

    @property
    def verifies(self) -> bool:
        """Whether the server's certificate is checked against a CA."""
        return self.mode in ("verify-ca", "verify-full")


@dataclass(frozen=True)
class ConnectionTarget:
    """Everything an adapter needs to connect, decoupled from the ORM.

    The password is excluded from repr so a target can be logged or shown in
    a traceback without leaking it.
    """

    name: str
    db_type: str
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    database_name: str = ""
    connect_timeout: float = 5.0
    query_timeout: float = 300.0
    options: dict[str, Any] = field(default_factory=dict)
    instance_id: int | None = None
    known_catalog_digest: str = ""
    # the credential lets the server ask for the password in a weak form (md5, cleartext): see the adapters
    allow_weak_auth: bool = False
    # None: read from options["tls"] (no client certificate); see TlsSettings
    tls_settings: TlsSettings | None = field(default=None, repr=False)

    @property
    def tls(self) -> TlsSettings:
        """The connection's TLS settings (from the instance's tls option when not given explicitly)."""
        return self.tls_settings if self.tls_settings is not None else TlsSettings.from_options(self.options)

    @classmethod
    def from_instance(cls, instance: Any) -> ConnectionTarget:
        """Build a target from an `instances.Instance`; decrypts the password.

        Raises ConfigurationError when the credential is not bound to the instance's db type,
        host and port, or cannot be decrypted (key rotated away), never connecting with an
        empty password instead.
        """
        from django.conf import settings

        from instances.crypto import CredentialDecryptError

        credential = instance.credential
        refusal = credential.binding_refusal(db_type=instance.db_type, host=instance.host, port=int(instance.port))
        if refusal:
            # before any decryption or connection: the password never travels to a host it is not bound to
            params = {
                "credential": repr(credential.name),
                "db_type": instance.db_type,
                "endpoint": f"{instance.host}:{instance.port}",
                "refusal": str(refusal),
            }
            raise ConfigurationError(
                message_english(CREDENTIAL_NOT_BOUND, params),
                instance_name=instance.name,
                code=CREDENTIAL_NOT_BOUND,
                params=params,
            )
        try:
            password = credential.get_password()
            client_key = credential.get_tls_client_key() if hasattr(credential, "get_tls_client_key") else ""
        except CredentialDecryptError as exc:
            params = {"credential": repr(credential.name)}
            raise ConfigurationError(
                message_english(CREDENTIAL_UNDECRYPTABLE, params),
                instance_name=instance.name,
                code=CREDENTIAL_UNDECRYPTABLE,
                params=params,
            ) from exc
        return cls(
            name=instance.name,
            db_type=instance.db_type,
            host=instance.host,
            port=int(instance.port),
            username=credential.username,
            password=password,
            database_name=instance.database_name or "",
            connect_timeout=instance.connect_timeout,
            query_timeout=float((instance.options or {}).get("query_timeout") or settings.WHALEFALL_QUERY_TIMEOUT),
            options=dict(instance.options or {}),
            instance_id=instance.pk,
            known_catalog_digest=getattr(instance, "catalog_digest", "") or "",
            allow_weak_auth=bool(getattr(credential, "allow_weak_auth", False)),
            tls_settings=TlsSettings.from_options(
                instance.options, getattr(credential, "tls_client_cert", "") or "", client_key
            ),
        )


# --- driver values and failure messages ------------------------------------------
# Why here: every adapter reads driver cells and words its failures the same way, so
# each rule has one definition (and, being in this file, it is part of every
# adapter's code fingerprint in `rows_digest`). The keyword options keep the few
# places where one adapter has always read a value differently.


def as_text(value: Any, *, decode_bytes: bool = True) -> str:
    """A driver cell as text, NULL as "".

    Why: drivers hand back bytes for binary-collated columns (mysqlclient) and other
    types for what the snapshot treats as names. `decode_bytes=False` keeps Oracle's
    reading, str() of the value, for views that never hold bytes.
    """
    if type(value) is str:  # the common case, first: it runs for most cells of every row
        return value
    if value is None:
        return ""
    if decode_bytes and isinstance(value, bytes | bytearray):
        return value.decode("utf-8", errors="replace")
    return str(value)


def is_yes(value: Any, yes_words: Collection[str], *, decode_bytes: bool = True) -> bool:
    """Whether a flag cell says yes: its text, upper-cased, is one of the vendor's `yes_words`.

    Why the words are the caller's: MySQL flags are Y/N (and 1/0), Oracle's are YES/NO.
    """
    text = value if type(value) is str else as_text(value, decode_bytes=decode_bytes)
    return text.upper() in yes_words


def iso_timestamp(value: Any, *, blank_is_none: bool = False, to_utc: bool = False) -> str | None:
    """A date/time cell as ISO 8601 text (None stays None; other values as str()).

    Why: the snapshot compares attributes as text, so a time must always print alike.
    `to_utc` moves aware datetimes to UTC (PostgreSQL sends them in the session's zone);
    `blank_is_none` reads "" as no time (Oracle).
    """
    if value is None or (blank_is_none and value == ""):
        return None
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if to_utc else value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def endpoint(target: ConnectionTarget) -> str:
    """`host:port`: the one spelling failure messages use for the server, whatever the vendor."""
    return f"{target.host}:{target.port}"


def account_at(target: ConnectionTarget) -> str:
    """`'user' at host:port`: names the monitoring account the way the instance's settings show it."""
    return f"{target.username!r} at {endpoint(target)}"


def login_failed(
    target: ConnectionTarget, detail: str, *, check: str, failed: str = "login failed"
) -> PermissionDenied:
    """The server refused the credential.

    Why one wording: whatever the vendor, the first fix is the same (user name and password);
    `check` adds the vendor's other usual cause, `failed` keeps the vendor's own term.
    """
    return _coded(
        PermissionDenied,
        LOGIN_FAILED,
        target,
        failed=failed,
        user=repr(target.username),
        endpoint=endpoint(target),
        detail=detail,
        check=check,
    )


def timeout_failed(target: ConnectionTarget, phase: str, detail: str | None, *, port_of: str) -> TimeoutFailed:
    """No answer in time, naming the limit that ran out: connect_timeout while connecting, else query_timeout.

    Why the port hint: a silent port is most often another service's; `port_of` names what should
    listen there ("a SQL Server"). `detail` is the driver's text, None when there is none.
    """
    limit = target.connect_timeout if phase == "connect" else target.query_timeout
    params = {"endpoint": endpoint(target), "limit": f"{limit:g}", "phase": phase, "port_of": port_of}
    if detail is None:
        return _coded(TimeoutFailed, TIMEOUT_FAILED_SILENT, target, **params)
    return _coded(TimeoutFailed, TIMEOUT_FAILED, target, **params, detail=detail)


def connection_failed(target: ConnectionTarget, detail: str, *, running: str) -> ConnectionFailed:
    """The server could not be reached: the network-side checks, then `running`, what should be up there."""
    return _coded(
        ConnectionFailed, CONNECTION_FAILED, target, endpoint=endpoint(target), detail=detail, running=running
    )


def no_answer(target: ConnectionTarget, phase: str, waited: float, detail: str | None = None) -> TimeoutFailed:
    """A connected server (or the network to it) stopped answering a statement: a stall, not a refusal.

    Why apart from `timeout_failed`: the connection was up and answering, so the port hint does not
    apply; the limit named is the instance's query_timeout, `waited` what the client really waited.
    """
    params = {
        "endpoint": endpoint(target),
        "limit": f"{target.query_timeout:g}",
        "phase": phase,
        "waited": f"{waited:.1f}",
    }
    if detail is None:
        return _coded(TimeoutFailed, NO_ANSWER, target, **params)
    return _coded(TimeoutFailed, NO_ANSWER_DETAIL, target, **params, detail=detail)


def connection_lost(
    target: ConnectionTarget, phase: str, elapsed: float, detail: str, *, running: str
) -> ConnectionFailed:
    """An established connection ended under a statement: the server or something between closed it.

    Why not `connection_failed`: "cannot connect" sends the reader to host, port and firewall, yet this
    connection was made (and logged in); `elapsed` is how far into the statement it went.
    """
    detail = " ".join(detail.split())  # drivers' multi-line texts (libpq) on one line
    return _coded(
        ConnectionFailed,
        CONNECTION_LOST,
        target,
        endpoint=endpoint(target),
        elapsed=f"{elapsed:.1f}",
        phase=phase,
        detail=detail,
        running=running,
    )


def ran_out(elapsed: float, limit: float) -> bool:
    """Whether a wait that ended after `elapsed` seconds used up a driver limit of `limit` seconds.

    Why: drivers report a read timeout and a dropped connection with the same error (MySQL's
    2013 "Lost connection"); how long the read waited tells them apart. 0.9 leaves room for
    the driver's own rounding of the limit.
    """
    return elapsed >= 0.9 * limit


def unexpected_error(target: ConnectionTarget, phase: str, detail: str, *, source: str) -> InternalError:
    """A driver error no rule classifies: still named with the step and the driver's text, so it can be acted on."""
    return _coded(InternalError, UNEXPECTED_ERROR, target, source=source, phase=phase, detail=detail)


def unexpected_contents(target: ConnectionTarget, what: str, exc: Exception) -> InternalError:
    """Rows the (pure) catalog build could not read: a server we did not model, reported instead of a traceback."""
    return _coded(InternalError, UNEXPECTED_CONTENTS, target, what=what, error=f"{type(exc).__name__}: {exc}")


# --- canonical snapshot pieces -------------------------------------------------


def quote_part(name: str) -> str:
    """Quote a name part that would otherwise be ambiguous inside a scope."""
    if "." in name or '"' in name:
        return '"' + name.replace('"', '""') + '"'
    return name


def make_scope(level: str, *parts: str) -> str:
    """Build an explicit scope string, e.g. make_scope('object', 'sales', 'orders')."""
    if level == "global":
        return "global"
    return f"{level}:" + ".".join(quote_part(p) for p in parts)


@dataclass(frozen=True, order=True)
class Privilege:
    scope: str
    privilege: str
    grantable: bool = False
    effect: str = "GRANT"

    def as_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "privilege": self.privilege.upper(),
            "grantable": self.grantable,
            "effect": self.effect,
        }


@dataclass(frozen=True, order=True)
class RoleGrant:
    role: str
    admin_option: bool = False
    default: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"role": self.role, "admin_option": self.admin_option, "default": self.default}


# Capabilities that flow to whoever holds a role; the others describe the
# account itself (a locked role does not lock its members).
INHERITABLE_CAPABILITIES = frozenset(
    {"SUPERUSER", "GRANT_ADMIN", "CREATE_USER", "CREATE_DB", "REPLICATION", "BYPASS_RLS", "FILE_ACCESS", "SHUTDOWN"}
)


@dataclass
class AccountRecord:
    """One remote account (user, login or role) as an adapter read it.

    `capabilities` holds what the adapter derived from this account's own
    grants and attributes; `Catalog.finalize()` adds what its roles give.
    """

    identity: str
    username: str
    kind: str = "user"  # user | role | login
    host: str | None = None
    is_superuser: bool = False
    is_locked: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)
    privileges: list[Privilege] = field(default_factory=list)
    roles: list[RoleGrant] = field(default_factory=list)
    capabilities: set[str] = field(default_factory=set)
    unknown_scopes: list[str] = field(default_factory=list)
    effective_capabilities: set[str] = field(default_factory=set)
    # why the account has a capability that is not obvious from one grant (an escalation route):
    # capability -> reasons, e.g. {"SUPERUSER": ["member of pg_execute_server_program: ..."]}.
    # finalize() adds "via role ..." reasons for ones inherited from a role that has a reason, and
    # stores them in the attribute `capability_reasons`, so they are part of the snapshot, its diff
    # and the findings' detail.
    capability_reasons: dict[str, list[str]] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        """The canonical snapshot: sorted, upper-cased, explicit, deduplicated."""
        caps = self.effective_capabilities or self.capabilities
        return {
            "schema_version": SCHEMA_VERSION,
            "privileges": canonical_privileges(self.privileges),
            "roles": canonical_roles(self.roles),
            "attributes": canonical_attributes(self.attributes),
            "capabilities": sorted(caps),
            # kept in the shape of schema version 1, always empty: what a sync could not read is the
            # instance's coverage (Catalog.coverage; finalize() turns `unknown_scopes` into gaps there)
            "unknown_scopes": [],
        }


def canonical_privileges(privileges: Iterable[Privilege]) -> list[dict[str, Any]]:
    """Snapshot privileges: one per (scope, privilege, effect), upper-cased, sorted (`snapshot()` and the codec).

    Why merged: the same privilege can be held several times, e.g. from two grantors (PostgreSQL
    `b=r/postgres, b=r*/a`); what the account can do is the privilege, grantable when any copy is.
    Listing each copy made one privilege two entries and revoking one copy look like a change of both.
    Sorted as before (scope, privilege, grantable, effect), so unmerged lists keep their stored order.
    """
    grantable: dict[tuple[str, str, str], bool] = {}
    for p in privileges:
        key = (p.scope, p.privilege.upper(), p.effect.upper())
        grantable[key] = grantable.get(key, False) or bool(p.grantable)
    rows = sorted((s, p, g, e) for (s, p, e), g in grantable.items())
    return [{"scope": s, "privilege": p, "grantable": g, "effect": e} for s, p, g, e in rows]


def canonical_roles(roles: Iterable[RoleGrant]) -> list[dict[str, Any]]:
    """Snapshot role grants: deduplicated and sorted (shared by `snapshot()` and the codec)."""
    rows = sorted({(r.role, bool(r.admin_option), bool(r.default)) for r in roles})
    return [{"role": r, "admin_option": a, "default": d} for r, a, d in rows]


def canonical_attributes(attrs: dict[str, Any]) -> dict[str, Any]:
    """Sort keys recursively and sort list values so equal data digests equally."""

    def norm(value: Any) -> Any:
        if value is None or isinstance(value, str | bool | int | float):
            return value
        if isinstance(value, dict):
            if all(isinstance(k, str) for k in value):
                return {k: norm(v) for k, v in sorted(value.items())}
            return {str(k): norm(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
        if isinstance(value, list | tuple | set):
            items = [norm(v) for v in value]
            return sorted(items, key=lambda v: json.dumps(v, sort_keys=True, default=str))
        return value

    # one level inline: attribute values are almost always scalars, so most need no call
    keys = sorted(attrs) if all(isinstance(k, str) for k in attrs) else sorted(attrs, key=str)
    return {str(k): v if v is None or type(v) in _SCALARS else norm(v) for k in keys for v in (attrs[k],)}


_SCALARS = frozenset({str, int, bool, float})


def canonical_json(snapshot: dict[str, Any]) -> str:
    return json.dumps(snapshot, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def snapshot_digest(snapshot: dict[str, Any]) -> str:
    """sha256 of the canonical JSON: equal permissions, equal digest."""
    return hashlib.sha256(canonical_json(snapshot).encode("utf-8")).hexdigest()


class GapKind:
    UNREADABLE = "unreadable"  # the monitoring login could not read it: the last known grants stand
    OUT_OF_SCOPE = "out_of_scope"  # the instance's options leave it out: its grants are no longer audited

    ALL = (UNREADABLE, OUT_OF_SCOPE)


@dataclass(frozen=True)
class CoverageGap:
    """A part of an instance's catalog that one fetch did not read, why, and how to close it.

    Why a value of the catalog and not of each account: losing sight of a database is one
    fact about the instance. The engine keeps every account's last known grants under an
    unreadable gap (no revoke, no change entry) and drops those under an out-of-scope gap
    silently (no longer audited, never a revoke); the instance's coverage history records
    when each gap opened and closed.

    `scope` is a privilege scope (``database:sales``) or a bare level (``routine``: every
    routine-level grant, e.g. MySQL's unreadable ``mysql.procs_priv``; ``role``: role
    memberships). `inclusive` False means only what lies beneath the scope is unknown, not
    the scope's own grants (PostgreSQL reads database ACLs server-wide from ``pg_database``).
    """

    scope: str
    reason: str
    fix: str = ""
    kind: str = GapKind.UNREADABLE
    inclusive: bool = True

    def covers(self, scope: str) -> bool:
        """Whether a privilege on `scope` lies in this gap (by parsed name parts, so `sales` never covers `sales2`)."""
        if ":" not in self.scope:
            return scope.split(":", 1)[0] == self.scope
        if scope == self.scope:
            return self.inclusive
        level, parts = split_scope(self.scope)
        if level not in ("database", "schema"):
            return False
        _other, other_parts = split_scope(scope)
        return len(other_parts) > len(parts) and other_parts[: len(parts)] == parts

    def as_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "kind": self.kind,
            "reason": self.reason,
            "fix": self.fix,
            "inclusive": self.inclusive,
        }


def gaps_cover(gaps: Iterable[CoverageGap], scope: str) -> bool:
    return any(gap.covers(scope) for gap in gaps)


@dataclass
class Catalog:
    """Everything read from one instance in one fetch."""

    accounts: list[AccountRecord] = field(default_factory=list)
    server_version: str = ""
    # scopes not read, as plain strings (inclusive, unreadable); `coverage` is the full form with reasons.
    # finalize() turns each one not already in `coverage` into a gap there.
    unknown_scopes: list[str] = field(default_factory=list)
    coverage: list[CoverageGap] = field(default_factory=list)
    round_trips: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    # sha256 of the raw rows read (see rows_digest); `unchanged` when it equals the target's known digest,
    # in which case `accounts` is left empty on purpose and the apply keeps what is stored
    source_digest: str = ""
    unchanged: bool = False

    def account_scope(self, identity: str, kind: str, attributes: dict[str, Any]) -> str | None:
        """The scope a stored account exists only inside (None: it belongs to the whole instance).

        Why: an account that lives inside a scope this fetch could not read (a SQL Server database's
        contained user, an Oracle PDB's local user) is not gone; the engine carries it forward whole.
        """
        return None

    def carry_attributes(
        self, attributes: dict[str, Any], old: dict[str, Any], gaps: list[CoverageGap]
    ) -> dict[str, Any]:
        """`attributes` with what `old` said about the unreadable `gaps` kept (default: nothing to keep)."""
        return attributes

    def finalize(self) -> Catalog:
        """Resolve role inheritance into effective capabilities (cycle-safe); complete `coverage`.

        A role is matched by its identity, or by its username for role
        accounts, so adapters can name roles the way the server shows them.
        """
        known = {gap.scope for gap in self.coverage}
        for scope in sorted({*self.unknown_scopes, *(s for acc in self.accounts for s in acc.unknown_scopes)}):
            if scope not in known:
                self.coverage.append(CoverageGap(scope=scope, reason="not readable by the monitoring login"))
                known.add(scope)
        by_name: dict[str, AccountRecord] = {}
        for acc in self.accounts:
            if acc.kind == "role":
                by_name.setdefault(acc.username, acc)
        for acc in self.accounts:
            by_name[acc.identity] = acc
        graph = _RoleGraph(self.accounts, by_name)
        for acc in self.accounts:
            inherited = graph.inherited(acc)
            acc.effective_capabilities = set(acc.capabilities) | inherited
            if "SUPERUSER" in acc.effective_capabilities:
                acc.is_superuser = True
            reasons: dict[str, list[str]] = {cap: list(why) for cap, why in acc.capability_reasons.items() if why}
            if inherited & graph.reasoned_caps(acc) - acc.capabilities:
                for cap, why in graph.reasons_via_roles(acc).items():
                    reasons.setdefault(cap, []).extend(why)
            if reasons:
                acc.attributes["capability_reasons"] = {cap: sorted(set(why)) for cap, why in sorted(reasons.items())}
        return self


class _RoleGraph:
    """The role graph of one catalog, with each role's inherited capabilities computed once.

    Why: a walk of the graph per account costs accounts x roles; thousands of accounts share a
    handful of roles, so each strongly connected component (roles granted in a cycle share what
    they give) is closed once, sinks first, and an account's inheritance is the union of its
    direct roles' closures. Only an account that inherits an escalation route (a capability
    with reasons, rare) is walked, to name the role path of each reason.
    """

    def __init__(self, accounts: list[AccountRecord], by_name: dict[str, AccountRecord]) -> None:
        self.by_name = by_name
        self.edges: dict[str, list[str]] = {}
        for acc in accounts:
            self.edges[acc.identity] = [role.identity for r in acc.roles if (role := by_name.get(r.role)) is not None]
        self.component: dict[str, int] = {}
        self.caps: list[set[str]] = []  # per component: what holding any of its roles gives
        self.reasoned: list[set[str]] = []  # per component: capabilities some reachable role has reasons for
        self._close(accounts)

    def _close(self, accounts: list[AccountRecord]) -> None:
        """Tarjan's algorithm, iteratively; components come out sinks first, so successors are closed already."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        on_stack: set[str] = set()
        stack: list[str] = []
        counter = 0
        for root in (a.identity for a in accounts):
            if root in index:
                continue
            work: list[tuple[str, int]] = [(root, 0)]
            while work:
                node, i = work.pop()
                if i == 0:
                    index[node] = low[node] = counter
                    counter += 1
                    stack.append(node)
                    on_stack.add(node)
                successors = self.edges.get(node, ())
                if i < len(successors):
                    work.append((node, i + 1))
                    nxt = successors[i]
                    if nxt not in index:
                        work.append((nxt, 0))
                    elif nxt in on_stack:
                        low[node] = min(low[node], index[nxt])
                    continue
                if work and work[-1][0] != node:  # returning to the caller: pass our low link up
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    members = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        members.append(member)
                        if member == node:
                            break
                    self._add_component(members)

    def _add_component(self, members: list[str]) -> None:
        number = len(self.caps)
        for member in members:
            self.component[member] = number
        caps: set[str] = set()
        reasoned: set[str] = set()
        for member in members:
            role = self.by_name[member]
            own = role.capabilities & INHERITABLE_CAPABILITIES
            caps |= own
            reasoned |= {cap for cap in own if role.capability_reasons.get(cap)}
            for successor in self.edges.get(member, ()):
                other = self.component.get(successor)
                if other is not None and other != number:
                    caps |= self.caps[other]
                    reasoned |= self.reasoned[other]
        self.caps.append(caps)
        self.reasoned.append(reasoned)

    def _union(self, acc: AccountRecord, table: list[set[str]]) -> set[str]:
        # in a cycle with its own roles, the cycle's closure holds acc's own capabilities too: harmless, they are its
        out: set[str] = set()
        for role in self.edges.get(acc.identity, ()):
            out |= table[self.component[role]]
        return out

    def inherited(self, acc: AccountRecord) -> set[str]:
        """What acc holds through its roles (its own capabilities may be among them when it is in a cycle)."""
        return self._union(acc, self.caps)

    def reasoned_caps(self, acc: AccountRecord) -> set[str]:
        return self._union(acc, self.reasoned)

    def reasons_via_roles(self, acc: AccountRecord) -> dict[str, list[str]]:
        """Each escalation route acc inherits, named by the shortest role path to the role that has it."""
        reasons: dict[str, list[str]] = {}
        seen = {acc.identity}
        frontier: list[tuple[str, tuple[str, ...]]] = [
            (r, (self.by_name[r].username,)) for r in sorted(set(self.edges.get(acc.identity, ())))
        ]
        while frontier:
            following: list[tuple[str, tuple[str, ...]]] = []
            for identity, path in frontier:
                if identity in seen:
                    continue
                seen.add(identity)
                role = self.by_name[identity]
                for cap in sorted(role.capabilities & INHERITABLE_CAPABILITIES):
                    why = role.capability_reasons.get(cap)
                    if why and cap not in acc.capabilities:
                        reasons.setdefault(cap, []).append("via role " + " → ".join(path) + f" ({'; '.join(why)})")
                following.extend(
                    (nxt, (*path, self.by_name[nxt].username))
                    for nxt in sorted(set(self.edges.get(identity, ())))
                    if nxt not in seen
                )
            frontier = following
        return reasons


# --- client-side deadlines --------------------------------------------------------------
# Why: a server-side limit (statement_timeout, max_statement_time) only helps while the server
# still talks to us. A server, proxy or firewall that stops forwarding mid-result leaves the
# client waiting on a socket that never closes: only a limit the client keeps itself ends it.


def deadline_grace(target: ConnectionTarget) -> float:
    """Extra seconds the client waits past query_timeout before it interrupts a statement itself.

    Why a grace: the server's own limit (and the driver's read timeout) fire at query_timeout
    and say more precisely what happened, so the client-side deadline must come after them.
    10% of query_timeout, at least 1 s, at most 30 s.
    """
    return min(30.0, max(1.0, 0.1 * float(target.query_timeout)))


def query_deadline(target: ConnectionTarget) -> float:
    """Seconds one catalog statement may take, end to end, before the client interrupts it.

    Why per statement and not per fetch: query_timeout is the instance's limit for one
    statement, the way the server-side limits (statement_timeout, read_timeout, call_timeout)
    count it; a fetch runs a fixed handful of statements (PostgreSQL: a handful per database
    read), so bounding each bounds the fetch, while a single budget for the whole fetch would
    need a guess at the catalog's size and would cut a healthy 10,000-account read that a
    per-statement limit lets through. Each statement gets query_timeout plus `deadline_grace`.
    """
    return float(target.query_timeout) + deadline_grace(target)


class Watchdog:
    """Calls `on_expire(self)` from a daemon thread if the `with` block still runs after `seconds`.

    Like `threading.Timer`, cancelled when the block ends; unlike it, leaving the block waits for
    a running `on_expire` to return, so the caller never closes a connection (or reuses its socket
    number) while `on_expire` is still interrupting it. `on_expire` must therefore be bounded;
    it can call `finished(within=...)` to wait a little for the block to end by itself before it
    escalates (cancel first, close the socket only if the cancel did not help). Afterwards `fired`
    tells whether the deadline was reached, i.e. whether an error the block raised is a stall.
    """

    def __init__(self, seconds: float, on_expire: Callable[[Watchdog], None]) -> None:
        self.seconds = float(seconds)
        self.on_expire = on_expire
        self.fired = False
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Watchdog:
        self._thread = threading.Thread(target=self._run, name="whalefall-watchdog", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def finished(self, within: float) -> bool:
        """Wait up to `within` seconds for the block to end; True if it did."""
        return self._done.wait(within)

    def _run(self) -> None:
        if self._done.wait(self.seconds):
            return
        self.fired = True
        with contextlib.suppress(Exception):  # a failed interrupt leaves the driver's own limits in charge
            self.on_expire(self)


def shutdown_socket(fd: int) -> None:
    """Shut down (both ways) the TCP socket behind descriptor `fd`, from any thread.

    Why shutdown and not the driver's close(): closing frees the driver's connection state while
    the thread blocked in it still uses it; shutdown only makes that thread's read return (EOF),
    after which the driver fails the call normally and the owner closes the connection itself.
    The descriptor stays open (a duplicate is shut down and closed), so its number is not reused.
    """
    with contextlib.suppress(OSError, ValueError):
        sock = socket.socket(fileno=socket.dup(fd))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


class QueryCounter:
    """Wraps a DB-API cursor so every executed statement is counted, timed and (optionally) guarded.

    Why: "O(1) round trips per instance" is a claim the tests check by
    counting; all adapter SQL goes through `execute`/`fetchall` here, so this is also where each
    statement gets its client-side deadline: `watchdog`, when given, makes a fresh `Watchdog` per
    statement. After a failure, `elapsed` is how long the failing statement ran and `expired`
    whether its watchdog fired.
    """

    def __init__(self, cursor: Any, *, watchdog: Callable[[], Watchdog] | None = None) -> None:
        self.cursor = cursor
        self.count = 0
        self.watchdog = watchdog
        self.started = time.monotonic()
        self._guard: Watchdog | None = None

    @property
    def elapsed(self) -> float:
        """Seconds since the last statement started."""
        return time.monotonic() - self.started

    @property
    def expired(self) -> bool:
        """Whether the last statement ran into its client-side deadline."""
        return self._guard is not None and self._guard.fired

    def fetchall(self, sql: str, params: Iterable[Any] | None = None) -> list[tuple[Any, ...]]:
        self.count += 1
        self.started = time.monotonic()
        if self.watchdog is None:
            self._guard = None
            return self._run(sql, params)
        self._guard = self.watchdog()
        with self._guard:
            return self._run(sql, params)

    def _run(self, sql: str, params: Iterable[Any] | None) -> list[tuple[Any, ...]]:
        if params is None:
            self.cursor.execute(sql)
        else:
            self.cursor.execute(sql, params)
        return list(self.cursor.fetchall())

    def fetchdicts(self, sql: str, params: Iterable[Any] | None = None) -> list[dict[str, Any]]:
        rows = self.fetchall(sql, params)
        cols = [d[0] for d in self.cursor.description or ()]
        return [dict(zip(cols, row, strict=False)) for row in rows]


# --- the protocol and the registry ---------------------------------------------


class Adapter(Protocol):
    db_type: str

    def test_connection(self, target: ConnectionTarget) -> str:
        """Connect, return the server version string; raise AdapterError."""
        ...

    def fetch(self, target: ConnectionTarget) -> Catalog:
        """Read every account and its permissions; raise AdapterError."""
        ...


ADAPTERS: dict[str, str] = {
    "mysql": "accountsync.adapters.mysql.MySQLAdapter",
    "postgresql": "accountsync.adapters.postgresql.PostgreSQLAdapter",
    "sqlserver": "accountsync.adapters.sqlserver.SQLServerAdapter",
    "oracle": "accountsync.adapters.oracle.OracleAdapter",
}


def get_adapter(db_type: str) -> Adapter:
    """Return the adapter for `db_type`; unknown types are a configuration error."""
    path = ADAPTERS.get(db_type)
    if path is None:
        raise _coded(
            ConfigurationError, UNSUPPORTED_DB_TYPE, None, db_type=repr(db_type), supported=", ".join(sorted(ADAPTERS))
        )
    try:
        cls: Callable[[], Adapter] = import_string(path)
    except ImportError as exc:
        raise _coded(ConfigurationError, ADAPTER_UNLOADABLE, None, db_type=db_type, error=str(exc)) from exc
    return cls()


@functools.lru_cache(maxsize=8)
def _code_fingerprint(*module_files: str) -> bytes:
    digest = hashlib.sha256()
    for path in module_files:
        digest.update(Path(path).read_bytes())
    return digest.digest()


# Every module that shapes what an apply stores from the rows: a fix in any of them must reach
# instances whose catalog did not change, so each is part of the fingerprint (with the adapter's own).
_PACKAGE = Path(__file__).resolve().parent.parent
SNAPSHOT_CODE = tuple(
    str(path)
    for path in (
        Path(__file__).resolve(),
        _PACKAGE / "codec.py",
        _PACKAGE / "diff.py",
        _PACKAGE / "services.py",
        _PACKAGE / "bulk.py",
        _PACKAGE.parent / "config" / "scopes.py",
    )
)


def rows_digest(
    adapter_module: str, target: ConnectionTarget, *parts: Any, moments: Iterable[datetime | None] = ()
) -> str:
    """sha256 over the raw catalog rows, the instance's options and the code that turns rows into snapshots.

    Why: at 10,000 accounts building and comparing snapshots costs more than reading
    the rows; when the rows, the options and the code are all the same as at the last
    applied sync, the result would be the same too, so the apply can be skipped. A
    changed row order only costs a full sync (a different digest), never a missed change.

    `moments` are the times in the rows at which an account's state changes by time alone
    (a password's expiry): which of them have passed is part of the digest, so the first
    sync after one passes applies and sees the account expired, even though no row changed.
    """
    digest = hashlib.sha256(_code_fingerprint(adapter_module, *SNAPSHOT_CODE))
    digest.update(repr(sorted((target.options or {}).items(), key=lambda kv: str(kv[0]))).encode())
    digest.update(str(SCHEMA_VERSION).encode())
    now = datetime.now(UTC)
    passed = [m is not None and _aware(m) <= now for m in moments]
    digest.update(repr(passed).encode())
    for part in parts:
        digest.update(repr(part).encode("utf-8", errors="surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()


def _aware(moment: datetime) -> datetime:
    """Naive driver times are UTC (every adapter sets its session to UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def unchanged_catalog(target: ConnectionTarget, digest: str) -> bool:
    return bool(target.known_catalog_digest) and target.known_catalog_digest == digest
