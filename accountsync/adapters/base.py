"""The adapter contract: what every database family returns, and how it fails.

Why one module: the sync engine, the admin and the API depend only on these
types. A new database family is one adapter module plus one registry line, and
every adapter produces exactly the same canonical snapshot, so diffs and
risk rules never special-case a vendor.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import json
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol

from django.utils.module_loading import import_string

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
    `scrub()` removes the secret from driver text before it gets here.
    """

    kind: ClassVar[str] = ErrorKind.INTERNAL

    def __init__(self, message: str, *, instance_name: str | None = None) -> None:
        self.instance_name = instance_name
        self.message = message
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

    @classmethod
    def from_instance(cls, instance: Any) -> ConnectionTarget:
        """Build a target from an `instances.Instance`; decrypts the password.

        Raises ConfigurationError when the credential cannot be decrypted
        (key rotated away), never connecting with an empty password instead.
        """
        from django.conf import settings

        from instances.crypto import CredentialDecryptError

        credential = instance.credential
        try:
            password = credential.get_password()
        except CredentialDecryptError as exc:
            raise ConfigurationError(
                f"credential {credential.name!r} cannot be decrypted: key rotated? "
                "Restore the old key in WHALEFALL_FIELD_KEYS or re-enter the password.",
                instance_name=instance.name,
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
    return PermissionDenied(
        f"{failed} for {account_at(target)} ({detail}); check the credential's user name and password and {check}",
        instance_name=target.name,
    )


def timeout_failed(target: ConnectionTarget, phase: str, detail: str | None, *, port_of: str) -> TimeoutFailed:
    """No answer in time, naming the limit that ran out: connect_timeout while connecting, else query_timeout.

    Why the port hint: a silent port is most often another service's; `port_of` names what should
    listen there ("a SQL Server"). `detail` is the driver's text, None when there is none.
    """
    limit = target.connect_timeout if phase == "connect" else target.query_timeout
    cause = "" if detail is None else f" ({detail})"
    return TimeoutFailed(
        f"no answer from {endpoint(target)} within {limit:g}s while trying to {phase}{cause}; "
        f"check that this is {port_of} port, or raise the timeout",
        instance_name=target.name,
    )


def connection_failed(target: ConnectionTarget, detail: str, *, running: str) -> ConnectionFailed:
    """The server could not be reached: the network-side checks, then `running`, what should be up there."""
    return ConnectionFailed(
        f"cannot connect to {endpoint(target)} ({detail}); check host, port, firewall and that {running}",
        instance_name=target.name,
    )


def unexpected_error(target: ConnectionTarget, phase: str, detail: str, *, source: str) -> InternalError:
    """A driver error no rule classifies: still named with the step and the driver's text, so it can be acted on."""
    return InternalError(f"unexpected {source} error while trying to {phase} ({detail})", instance_name=target.name)


def unexpected_contents(target: ConnectionTarget, what: str, exc: Exception) -> InternalError:
    """Rows the (pure) catalog build could not read: a server we did not model, reported instead of a traceback."""
    return InternalError(f"unexpected {what}: {type(exc).__name__}: {exc}", instance_name=target.name)


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

    def snapshot(self) -> dict[str, Any]:
        """The canonical snapshot: sorted, upper-cased, explicit, deduplicated."""
        caps = self.effective_capabilities or self.capabilities
        return {
            "schema_version": SCHEMA_VERSION,
            "privileges": canonical_privileges(self.privileges),
            "roles": canonical_roles(self.roles),
            "attributes": canonical_attributes(self.attributes),
            "capabilities": sorted(caps),
            "unknown_scopes": sorted(set(self.unknown_scopes)),
        }


def canonical_privileges(privileges: Iterable[Privilege]) -> list[dict[str, Any]]:
    """Snapshot privileges: deduplicated, upper-cased, sorted (shared by `snapshot()` and the codec)."""
    rows = sorted({(p.scope, p.privilege.upper(), bool(p.grantable), p.effect.upper()) for p in privileges})
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


@dataclass
class Catalog:
    """Everything read from one instance in one fetch."""

    accounts: list[AccountRecord] = field(default_factory=list)
    server_version: str = ""
    unknown_scopes: list[str] = field(default_factory=list)
    round_trips: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    # sha256 of the raw rows read (see rows_digest); `unchanged` when it equals the target's known digest,
    # in which case `accounts` is left empty on purpose and the apply keeps what is stored
    source_digest: str = ""
    unchanged: bool = False

    def finalize(self) -> Catalog:
        """Resolve role inheritance into effective capabilities (cycle-safe).

        A role is matched by its identity, or by its username for role
        accounts, so adapters can name roles the way the server shows them.
        """
        by_name: dict[str, AccountRecord] = {}
        for acc in self.accounts:
            if acc.kind == "role":
                by_name.setdefault(acc.username, acc)
        for acc in self.accounts:
            by_name[acc.identity] = acc

        for acc in self.accounts:
            inherited: set[str] = set()
            seen: set[str] = {acc.identity}
            stack = [r.role for r in acc.roles]
            while stack:
                role_name = stack.pop()
                role = by_name.get(role_name)
                if role is None or role.identity in seen:
                    continue
                seen.add(role.identity)
                inherited |= role.capabilities & INHERITABLE_CAPABILITIES
                stack.extend(r.role for r in role.roles)
            acc.effective_capabilities = set(acc.capabilities) | inherited
            if "SUPERUSER" in acc.effective_capabilities:
                acc.is_superuser = True
        return self


class QueryCounter:
    """Wraps a DB-API cursor so every executed statement is counted.

    Why: "O(1) round trips per instance" is a claim the tests check by
    counting; all adapter SQL goes through `execute`/`fetchall` here.
    """

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor
        self.count = 0

    def fetchall(self, sql: str, params: Iterable[Any] | None = None) -> list[tuple[Any, ...]]:
        self.count += 1
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
        raise ConfigurationError(f"unsupported database type {db_type!r}; supported: {', '.join(sorted(ADAPTERS))}")
    try:
        cls: Callable[[], Adapter] = import_string(path)
    except ImportError as exc:
        raise ConfigurationError(f"the {db_type} adapter cannot be loaded: {exc}") from exc
    return cls()


@functools.lru_cache(maxsize=8)
def _code_fingerprint(*module_files: str) -> bytes:
    digest = hashlib.sha256()
    for path in module_files:
        digest.update(Path(path).read_bytes())
    return digest.digest()


def rows_digest(adapter_module: str, target: ConnectionTarget, *parts: Any) -> str:
    """sha256 over the raw catalog rows, the instance's options and the code that turns rows into snapshots.

    Why: at 10,000 accounts building and comparing snapshots costs more than reading
    the rows; when the rows, the options and the code are all the same as at the last
    applied sync, the result would be the same too, so the apply can be skipped. A
    changed row order only costs a full sync (a different digest), never a missed change.
    """
    digest = hashlib.sha256(_code_fingerprint(adapter_module, __file__))
    digest.update(repr(sorted((target.options or {}).items(), key=lambda kv: str(kv[0]))).encode())
    digest.update(str(SCHEMA_VERSION).encode())
    for part in parts:
        digest.update(repr(part).encode("utf-8", errors="surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()


def unchanged_catalog(target: ConnectionTarget, digest: str) -> bool:
    return bool(target.known_catalog_digest) and target.known_catalog_digest == digest
