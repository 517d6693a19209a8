"""MySQL and MariaDB: every account and everything that decides what it can do.

Why set-based reads: the tools we replace run `SHOW GRANTS FOR` once per
account, which costs one network round trip per account. Here the grant
tables are read whole, a fixed number of statements per instance whatever
the account count, and turned into the canonical snapshot in Python.

The module is split in two halves so recorded rows (MySQL 8 is not
available as a live server here) go through exactly the code live rows do:
`read_rows()` talks to the server and returns plain dicts, `build_catalog()`
is a pure function from those dicts to a `Catalog`.

Password hashes are not wanted, and never read: the queries name their
columns, the server says whether a secret is empty, and JSON documents lose
their hash keys in SQL (see `_GLOBAL_PRIV_SQL` and `user_sql`). The row
parsers still drop any hash column a row might carry, as a second guard.
"""

from __future__ import annotations

import functools
import json
import math
import operator
import re
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import repeat
from types import MappingProxyType
from typing import Any, NamedTuple

from accountsync.adapters.base import (
    AccountRecord,
    AdapterError,
    Catalog,
    ConnectionTarget,
    CoverageGap,
    InternalError,
    PermissionDenied,
    Privilege,
    QueryCounter,
    RoleGrant,
    Watchdog,
    as_text,
    connection_failed,
    connection_lost,
    gc_paused,
    is_yes,
    login_failed,
    make_scope,
    no_answer,
    query_deadline,
    ran_out,
    rows_digest,
    scrub,
    shutdown_socket,
    timeout_failed,
    unchanged_catalog,
    unexpected_contents,
    unexpected_error,
)

MONITORING_DOC = "docs/monitoring-accounts.md, MySQL and MariaDB"

# --- server flavour and version -------------------------------------------------


@dataclass(frozen=True)
class ServerInfo:
    """Which server we talk to; it decides the queries and how rows read."""

    flavor: str  # "mariadb" | "mysql"
    version: tuple[int, int, int]
    version_string: str
    default_password_lifetime: int | None = None
    # 0: names compare case-sensitively (Linux default); 1, 2 or unknown (None): case-insensitively
    lower_case_table_names: int | None = None
    # MySQL 8: roles granted to every account (the variable's text), and whether every granted role
    # is active at login (then default roles do not matter for what is in force)
    mandatory_roles: str = ""
    activate_all_roles_on_login: bool = False

    @property
    def is_mariadb(self) -> bool:
        return self.flavor == "mariadb"

    @property
    def uses_global_priv(self) -> bool:
        """MariaDB 10.4 moved accounts into the JSON table mysql.global_priv."""
        return self.is_mariadb and self.version >= (10, 4, 0)

    @property
    def has_mysql_roles(self) -> bool:
        """MySQL 8 roles live in role_edges/default_roles, privileges also in global_grants."""
        return not self.is_mariadb and self.version >= (8, 0, 0)

    @property
    def label(self) -> str:
        return f"{'MariaDB' if self.is_mariadb else 'MySQL'} {'.'.join(map(str, self.version))}"


_VERSION_RE = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def parse_server_info(variables: dict[str, Any]) -> ServerInfo:
    """Detect flavour and version from `SHOW VARIABLES` rows (version, version_comment, ...)."""
    version_string = as_text(variables.get("version"))
    comment = as_text(variables.get("version_comment"))
    flavor = "mariadb" if "mariadb" in (version_string + " " + comment).lower() else "mysql"
    # MariaDB before 11 may report "5.5.5-10.x" for replication compatibility.
    match = _VERSION_RE.search(version_string.removeprefix("5.5.5-") if flavor == "mariadb" else version_string)
    if not match:
        raise InternalError(f"cannot parse the server version {version_string!r}")
    version = (int(match[1]), int(match[2]), int(match[3]))
    lifetime = as_text(variables.get("default_password_lifetime"))
    lower_case = as_text(variables.get("lower_case_table_names"))
    return ServerInfo(
        flavor=flavor,
        version=version,
        version_string=version_string,
        default_password_lifetime=int(lifetime) if lifetime else None,
        lower_case_table_names=int(lower_case) if lower_case else None,
        mandatory_roles=as_text(variables.get("mandatory_roles")),
        activate_all_roles_on_login=as_text(variables.get("activate_all_roles_on_login")).upper() in ("ON", "1"),
    )


def parse_role_list(text: str) -> list[tuple[str, str]]:
    """The (user, host) pairs of a MySQL role list variable (`mandatory_roles`): `r1`, `r2@%`, `'r3'@'localhost'`.

    Why a parser: names may be quoted with backticks or quotes (and then hold commas or @);
    an unquoted name without a host means host '%', as for GRANT.
    """
    pairs: list[tuple[str, str]] = []
    parts: list[str] = []
    buf: list[str] = []
    quote = ""
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
            else:
                buf.append(ch)
            continue
        if ch in "`'\"":
            quote = ch
        elif ch == "@":
            parts.append("".join(buf).strip())
            buf = []
        elif ch == ",":
            parts.append("".join(buf).strip())
            if parts[0]:
                pairs.append((parts[0], parts[1] if len(parts) > 1 and parts[1] else "%"))
            parts, buf = [], []
        else:
            buf.append(ch)
    parts.append("".join(buf).strip())
    if parts[0]:
        pairs.append((parts[0], parts[1] if len(parts) > 1 and parts[1] else "%"))
    return pairs


# --- identities and names ------------------------------------------------------


def _quote(value: str) -> str:
    """An SQL string literal: backslash and quote escaped, so distinct names never collide."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def account_identity(user: str, host: str, *, is_role: bool = False) -> str:
    """`'user'@'host'`; a MariaDB role (no host) is just `'name'`."""
    return _quote(user) if is_role else f"{_quote(user)}@{_quote(host)}"


def routine_scope(db: str, name: str, routine_type: str) -> str:
    """`routine:<db>.<name>(procedure)`: a function and a procedure may share a name."""
    return make_scope("routine", db, name) + f"({routine_type.lower()})"


_YES_WORDS = frozenset({"Y", "1", "TRUE"})  # what an ENUM('N','Y') flag (or a 0/1 one) says when set


# Column stems of mysql.user / mysql.db `<Stem>_priv` columns, spelled as SHOW GRANTS does.
_PRIV_COLUMNS = {
    "Select": "SELECT",
    "Insert": "INSERT",
    "Update": "UPDATE",
    "Delete": "DELETE",
    "Create": "CREATE",
    "Drop": "DROP",
    "Reload": "RELOAD",
    "Shutdown": "SHUTDOWN",
    "Process": "PROCESS",
    "File": "FILE",
    "References": "REFERENCES",
    "Index": "INDEX",
    "Alter": "ALTER",
    "Show_db": "SHOW DATABASES",
    "Super": "SUPER",
    "Create_tmp_table": "CREATE TEMPORARY TABLES",
    "Lock_tables": "LOCK TABLES",
    "Execute": "EXECUTE",
    "Repl_slave": "REPLICATION SLAVE",
    "Repl_client": "REPLICATION CLIENT",
    "Create_view": "CREATE VIEW",
    "Show_view": "SHOW VIEW",
    "Create_routine": "CREATE ROUTINE",
    "Alter_routine": "ALTER ROUTINE",
    "Create_user": "CREATE USER",
    "Event": "EVENT",
    "Trigger": "TRIGGER",
    "Create_tablespace": "CREATE TABLESPACE",
    "Delete_history": "DELETE HISTORY",
    "Create_role": "CREATE ROLE",
    "Drop_role": "DROP ROLE",
    "Show_create_routine": "SHOW CREATE ROUTINE",
}

# Members of tables_priv.Table_priv / columns_priv.Column_priv / procs_priv.Proc_priv.
_SET_MEMBERS = {
    "select": "SELECT",
    "insert": "INSERT",
    "update": "UPDATE",
    "delete": "DELETE",
    "create": "CREATE",
    "drop": "DROP",
    "references": "REFERENCES",
    "index": "INDEX",
    "alter": "ALTER",
    "create view": "CREATE VIEW",
    "show view": "SHOW VIEW",
    "trigger": "TRIGGER",
    "delete versioning rows": "DELETE HISTORY",
    "execute": "EXECUTE",
    "alter routine": "ALTER ROUTINE",
}

_TABLE_ALL_MYSQL = frozenset(
    {
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "CREATE",
        "DROP",
        "REFERENCES",
        "INDEX",
        "ALTER",
        "CREATE VIEW",
        "SHOW VIEW",
        "TRIGGER",
    }
)
_TABLE_ALL_MARIADB = _TABLE_ALL_MYSQL | {"DELETE HISTORY"}

GRANT_BIT = 1 << 10

# MariaDB >= 10.4 keeps global privileges as a bitmask in global_priv.access:
# (bit, name, first version with it). Bit 10 is GRANT OPTION.
_MARIADB_ACCESS_BITS: tuple[tuple[int, str, tuple[int, int, int]], ...] = (
    (0, "SELECT", (0, 0, 0)),
    (1, "INSERT", (0, 0, 0)),
    (2, "UPDATE", (0, 0, 0)),
    (3, "DELETE", (0, 0, 0)),
    (4, "CREATE", (0, 0, 0)),
    (5, "DROP", (0, 0, 0)),
    (6, "RELOAD", (0, 0, 0)),
    (7, "SHUTDOWN", (0, 0, 0)),
    (8, "PROCESS", (0, 0, 0)),
    (9, "FILE", (0, 0, 0)),
    (11, "REFERENCES", (0, 0, 0)),
    (12, "INDEX", (0, 0, 0)),
    (13, "ALTER", (0, 0, 0)),
    (14, "SHOW DATABASES", (0, 0, 0)),
    (15, "SUPER", (0, 0, 0)),
    (16, "CREATE TEMPORARY TABLES", (0, 0, 0)),
    (17, "LOCK TABLES", (0, 0, 0)),
    (18, "EXECUTE", (0, 0, 0)),
    (19, "REPLICATION SLAVE", (0, 0, 0)),
    (20, "BINLOG MONITOR", (0, 0, 0)),  # REPLICATION CLIENT before 10.5.2
    (21, "CREATE VIEW", (0, 0, 0)),
    (22, "SHOW VIEW", (0, 0, 0)),
    (23, "CREATE ROUTINE", (0, 0, 0)),
    (24, "ALTER ROUTINE", (0, 0, 0)),
    (25, "CREATE USER", (0, 0, 0)),
    (26, "EVENT", (0, 0, 0)),
    (27, "TRIGGER", (0, 0, 0)),
    (28, "CREATE TABLESPACE", (0, 0, 0)),
    (29, "DELETE HISTORY", (0, 0, 0)),
    (30, "SET USER", (10, 5, 2)),
    (31, "FEDERATED ADMIN", (10, 5, 2)),
    (32, "CONNECTION ADMIN", (10, 5, 2)),
    (33, "READ_ONLY ADMIN", (10, 5, 2)),
    (34, "REPLICATION SLAVE ADMIN", (10, 5, 2)),
    (35, "REPLICATION MASTER ADMIN", (10, 5, 2)),
    (36, "BINLOG ADMIN", (10, 5, 2)),
    (37, "BINLOG REPLAY", (10, 5, 2)),
    (38, "SLAVE MONITOR", (10, 5, 9)),
    (39, "SHOW CREATE ROUTINE", (11, 3, 0)),
)


def mariadb_access_privileges(access: int, version: tuple[int, int, int]) -> tuple[list[str], bool]:
    """Decode global_priv.access into (privilege names, all-privileges?) for this version."""
    names, all_set = _decode_access(access, version)
    return list(names), all_set


@functools.lru_cache(maxsize=4096)
def _decode_access(access: int, version: tuple[int, int, int]) -> tuple[tuple[str, ...], bool]:
    """Cached: a fleet's accounts share a handful of access masks."""
    names: list[str] = []
    all_set = True
    for bit, name, since in _MARIADB_ACCESS_BITS:
        if version < since:
            continue
        label = "REPLICATION CLIENT" if bit == 20 and version < (10, 5, 2) else name
        if access & (1 << bit):
            names.append(label)
        else:
            all_set = False
    known = GRANT_BIT | sum(1 << b for b, _, since in _MARIADB_ACCESS_BITS if version >= since)
    unknown = access & ~known & ((1 << 64) - 1)
    if unknown and not all_set:
        names.extend(f"UNKNOWN PRIVILEGE BIT {b}" for b in range(64) if unknown & (1 << b))
    return tuple(names), all_set


# --- rows -> catalog (pure) -------------------------------------------------------


@dataclass
class MySQLRows:
    """What `read_rows` fetched: one list of dict rows per catalog table."""

    users: list[dict[str, Any]] = field(default_factory=list)
    db: list[dict[str, Any]] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)
    columns: list[dict[str, Any]] = field(default_factory=list)
    procs: list[dict[str, Any]] = field(default_factory=list)
    proxies: list[dict[str, Any]] = field(default_factory=list)
    roles_mapping: list[dict[str, Any]] = field(default_factory=list)
    role_edges: list[dict[str, Any]] = field(default_factory=list)
    default_roles: list[dict[str, Any]] = field(default_factory=list)
    global_grants: list[dict[str, Any]] = field(default_factory=list)
    # the tables the monitoring account may not read: field -> (mysql table, error code, the server's
    # text without the password); each becomes a coverage gap (`coverage_gaps`), its rows stay empty
    denied: dict[str, tuple[str, int, str]] = field(default_factory=dict)
    # the monitoring account as the server knows it ('user'@'host', from CURRENT_USER()), for the
    # gaps' fix; read only when a table is denied, "" when unknown
    monitoring_account: str = ""
    # (field, column names, row tuples) as `read_rows` read them, for the digest only:
    # hashing row tuples costs less than hashing dict rows, which repeat every column name.
    raw: list[tuple[str, tuple[str, ...], list[tuple[Any, ...]]]] = field(
        default_factory=list, repr=False, compare=False
    )


def _digest_source(rows: MySQLRows) -> Any:
    """What `rows_digest` hashes: the tuples as read, or the dict rows when they were not read here."""
    return rows.raw or {name: value for name, value in vars(rows).items() if name not in _NOT_DIGESTED}


# the account's host is the worker's address, which may differ from one worker to the next: not a change
_NOT_DIGESTED = frozenset({"raw", "monitoring_account"})


PASSWORD_PLUGINS = frozenset(
    {
        "",
        "mysql_native_password",
        "mysql_old_password",
        "caching_sha2_password",
        "sha256_password",
        "ed25519",
        "parsec",
    }
)


class _Shape(NamedTuple):
    """What a user row says apart from whose row it is (a tuple: immutable, cheap to make).

    Accounts of one shape share it, so its attribute map is read-only: each account gets a copy.
    """

    is_role: bool
    global_privs: tuple[str, ...]
    global_all: bool
    global_grant: bool
    attributes: MappingProxyType[str, Any]
    no_password: bool
    default_role: str
    partial_revokes: tuple[tuple[str, str], ...] = ()  # MySQL 8: (database, privilege) denied there
    # every global privilege (also on MySQL 8, which lists them instead of ALL PRIVILEGES): the
    # account is a superuser by definition, so no escalation route is named for it
    global_every: bool = False


class _User(NamedTuple):
    """One row of mysql.user or mysql.global_priv: whose it is, and its shape."""

    user: str
    host: str
    identity: str
    shape: _Shape


def _iso_utc(value: Any) -> str | None:
    """A password change time as ISO 8601 UTC ("...Z"); None for none; a value that is no time as its text.

    Why never raise: the time comes from a TIMESTAMP column (mysqlclient already reads a zero or
    impossible date as None) or, on MariaDB, from a number in the Priv JSON, which can hold anything
    (a float, a string, a year past 9999). An odd value is kept as text in the snapshot, not a failed sync.
    """
    if type(value) is bool:  # JSON true/false: no time
        return as_text(value)
    if value is None or value == "" or value == 0:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
    try:
        if isinstance(value, int | float) or as_text(value).isdigit():
            return datetime.fromtimestamp(int(value), tz=UTC).isoformat().replace("+00:00", "Z")
        return _iso_utc(datetime.fromisoformat(as_text(value)))
    except (ValueError, OverflowError, OSError, TypeError):  # NaN, infinity, out of range, no date
        return as_text(value)


def _lifetime(value: Any) -> int | str | None:
    """A password lifetime in days (0: never; None: the server's default_password_lifetime).

    MariaDB's Priv JSON says -1 for the default. Anything not a whole number (the JSON can hold
    anything) is kept as its text, which sets no expiry, instead of failing the sync.
    """
    if value is None or value == "" or value == -1:
        return None
    if type(value) is int:
        return value
    try:
        number = int(as_text(value))
    except ValueError:
        return as_text(value)
    return None if number == -1 else number


def _expiry_moment(last_changed: str | None, lifetime: Any, default_lifetime: int | None) -> datetime | None:
    """When a password expires by age: its last change plus its lifetime, else the server's default.

    None when it never does (lifetime 0, no lifetime, no or an unreadable change time, a moment
    past year 9999). Both the build (the EXPIRED capability) and the digest (`expiry_moments`)
    use this, from the same parsed values, so they can never disagree about which moment it is.
    """
    days = lifetime if lifetime is not None else default_lifetime
    if type(days) is not int or days <= 0 or not last_changed:
        return None
    try:
        changed = datetime.fromisoformat(last_changed)
        return (changed if changed.tzinfo else changed.replace(tzinfo=UTC)) + timedelta(days=days)
    except (ValueError, OverflowError):
        return None


_SSL_TYPES = ("", "ANY", "X509", "SPECIFIED")


def _split_priv(priv_text: str | None) -> tuple[dict[str, Any], Any]:
    """The Priv JSON without any hash, and its password_last_changed taken out."""
    if priv_text is None:  # _GLOBAL_PRIV_SQL sends no Priv for too many alternatives
        raise ValueError(f"an account has more than {MAX_AUTH_ALTERNATIVES} authentication alternatives")
    priv = json.loads(priv_text or "{}")
    priv.pop("authentication_string", None)
    return priv, priv.pop("password_last_changed", None)


def _global_priv_shape(
    priv_text: str | None, auth_empty: Any, version: tuple[int, int, int], auth_or_empty: Any = ""
) -> _Shape:
    """Parse the Priv JSON (without hashes) and the server's auth_empty and auth_or_empty flags."""
    priv, last_changed = _split_priv(priv_text)
    return _with_password_change(_global_priv_base(priv, auth_empty, version, auth_or_empty), last_changed)


def _global_priv_base(
    priv: dict[str, Any], auth_empty: Any, version: tuple[int, int, int], auth_or_empty: Any = ""
) -> _Shape:
    """The shape of a parsed Priv JSON taken apart from its password_last_changed.

    `auth_empty` (0/1) says whether the top-level secret is empty, `auth_or_empty` ("1101...")
    the same for each auth_or entry by position; both are the server's, since no secret is read.
    An entry without a plugin stands for the top-level one.
    """
    access = int(priv.get("access", 0))
    names, all_set = _decode_access(access, version)
    main_plugin = priv.get("plugin", "") or ""
    main_empty = bool(int(auth_empty or 0))
    alt_empty = as_text(auth_or_empty)
    # auth_or lists the alternatives in order; `{}` stands for the top-level plugin.
    alternatives: list[tuple[str, bool]] = []
    for i, alt in enumerate(priv.get("auth_or") or [{}]):
        if alt.get("plugin") is None:
            alternatives.append((main_plugin, main_empty))
        else:
            # the server's flag; a row not read by _GLOBAL_PRIV_SQL may carry the secret itself
            flag = alt_empty[i : i + 1]
            alternatives.append(
                (alt.get("plugin", "") or "", flag == "1" if flag else not alt.get("authentication_string"))
            )
    is_role = bool(priv.get("is_role", False))
    attributes = {
        "auth_plugin": " OR ".join(p for p, _ in alternatives),
        "password_expired": False,  # both set by _with_password_change
        "password_lifetime": _lifetime(priv.get("password_lifetime")),
        "password_last_changed": None,
        "locked": bool(priv.get("account_locked", False)),
        "max_questions": int(priv.get("max_questions", 0)),
        "max_updates": int(priv.get("max_updates", 0)),
        "max_connections": int(priv.get("max_connections", 0)),
        "max_user_connections": int(priv.get("max_user_connections", 0)),
        "ssl_type": _SSL_TYPES[int(priv.get("ssl_type", 0))],
        "ssl_cipher": priv.get("ssl_cipher", ""),
        "x509_issuer": priv.get("x509_issuer", ""),
        "x509_subject": priv.get("x509_subject", ""),
        "is_role": is_role,
    }
    return _Shape(
        is_role=is_role,
        global_privs=names,
        global_all=all_set,
        global_grant=bool(access & GRANT_BIT),
        attributes=MappingProxyType(attributes),
        no_password=any(p in PASSWORD_PLUGINS and empty for p, empty in alternatives),
        default_role=as_text(priv.get("default_role", "")),
        global_every=all_set,
    )


def _with_password_change(shape: _Shape, last_changed: Any) -> _Shape:
    """`shape` for an account whose password last changed at `last_changed` (0: expired, None: never)."""
    if last_changed is None:
        return shape  # the base already says: not expired, no change time
    attributes = shape.attributes.copy()
    attributes["password_expired"] = type(last_changed) is not bool and last_changed == 0
    attributes["password_last_changed"] = _iso_utc(last_changed)
    return shape._replace(attributes=MappingProxyType(attributes))


def _parse_global_priv_row(row: Mapping[str, Any], memo: _Memo) -> _User:
    """A MariaDB >= 10.4 mysql.global_priv row (Priv JSON without the top-level hash)."""
    user, host = as_text(row["User"]), as_text(row["Host"])
    priv = row["Priv"]
    shape = memo.global_priv(None if priv is None else as_text(priv), row.get("auth_empty"), row.get("auth_or_empty"))
    return _User(user, host, account_identity(user, host, is_role=shape.is_role), shape)


@dataclass(frozen=True, eq=False)
class _PrivPlan:
    """Where a grant-table row layout keeps its `<Stem>_priv` flags, and what each one grants.

    Compared by identity on purpose: `_priv_plan` hands out one plan per column layout,
    so `(plan, flags)` is a cheap and exact memo key for "these flags in this layout".
    """

    names: tuple[str | None, ...]  # privilege per flag column; None is Grant_priv
    read: Callable[[Mapping[str, Any]], tuple[Any, ...]]  # row -> its flag values, in `names` order


@functools.lru_cache(maxsize=64)
def _priv_plan(columns: tuple[str, ...]) -> _PrivPlan:
    """Which columns of a grant-table row are `<Stem>_priv` flags, and their privilege names (None: Grant)."""
    flag_columns: list[str] = []
    names: list[str | None] = []
    for column in columns:
        if not column.endswith("_priv") or column in ("Table_priv", "Column_priv", "Proc_priv"):
            continue
        stem = column[: -len("_priv")]
        flag_columns.append(column)
        names.append(None if stem == "Grant" else _PRIV_COLUMNS.get(stem, stem.replace("_", " ").upper()))
    return _PrivPlan(tuple(names), _tuple_getter(flag_columns))


def _tuple_getter(keys: list[str]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """row -> tuple of row[key] for the keys; `itemgetter` does it in C, but returns a tuple only for 2+ keys."""
    if len(keys) >= 2:
        return operator.itemgetter(*keys)
    return lambda row: tuple(row[key] for key in keys)


def _decode_flags(names: tuple[str | None, ...], flags: tuple[Any, ...]) -> tuple[tuple[str, ...], bool, bool]:
    """Y/N flag values -> (privilege names, every privilege set?, grant option?)."""
    granted: list[str] = []
    all_set = True
    grant = False
    for name, value in zip(names, flags, strict=True):
        if name is None:
            grant = is_yes(value, _YES_WORDS)
        elif is_yes(value, _YES_WORDS):
            granted.append(name)
        else:
            all_set = False
    return tuple(granted), all_set, grant


def _parse_user_table_row(row: Mapping[str, Any], info: ServerInfo, memo: _Memo) -> _User:
    """A mysql.user row (MySQL 5.7/8, MariaDB < 10.4); hash columns are dropped here."""
    row = dict(row)
    for secret in ("authentication_string", "Password"):
        row.pop(secret, None)
    # MySQL 8 User_attributes: partial revokes and login locking; it may also hold a
    # secondary password hash (RETAIN CURRENT PASSWORD), which is dropped here.
    extra = json.loads(as_text(row.pop("User_attributes", None)) or "null") or {}
    extra.pop("additional_password", None)
    user, host = as_text(row["User"]), as_text(row["Host"])
    names, all_set, grant = memo.flags(row)
    is_role = info.is_mariadb and is_yes(row.get("is_role"), _YES_WORDS)
    plugin = as_text(row.get("plugin"))
    attributes = {
        "auth_plugin": plugin,
        "password_expired": is_yes(row.get("password_expired"), _YES_WORDS),
        "password_lifetime": _lifetime(row.get("password_lifetime")),
        "password_last_changed": _iso_utc(row.get("password_last_changed")),
        "locked": is_yes(row.get("account_locked"), _YES_WORDS),
        "max_questions": int(row.get("max_questions") or 0),
        "max_updates": int(row.get("max_updates") or 0),
        "max_connections": int(row.get("max_connections") or 0),
        "max_user_connections": int(row.get("max_user_connections") or 0),
        "ssl_type": as_text(row.get("ssl_type")),
        "ssl_cipher": as_text(row.get("ssl_cipher")),
        "x509_issuer": as_text(row.get("x509_issuer")),
        "x509_subject": as_text(row.get("x509_subject")),
        "is_role": is_role,
    }
    locking = extra.get("Password_locking") or {}
    if locking:
        attributes["failed_login_attempts"] = int(locking.get("failed_login_attempts", 0))
        attributes["password_lock_time_days"] = int(locking.get("password_lock_time_days", 0))
    # MySQL 8 never prints ALL PRIVILEGES for *.*: it lists the static privileges.
    collapse = info.is_mariadb or info.version < (8, 0, 0)
    shape = _Shape(
        is_role=is_role,
        global_privs=names,
        global_all=all_set and collapse,
        global_grant=grant,
        attributes=MappingProxyType(attributes),
        no_password=plugin in PASSWORD_PLUGINS and bool(int(row.get("auth_empty") or 0)),
        default_role=as_text(row.get("default_role")),
        partial_revokes=tuple(
            (as_text(r["Database"]), as_text(name).upper())
            for r in extra.get("Restrictions") or []
            for name in r.get("Privileges") or []
        ),
        global_every=all_set,
    )
    return _User(user, host, account_identity(user, host, is_role=is_role), shape)


def _set_members(value: Any) -> list[str]:
    if isinstance(value, set | frozenset | list | tuple):
        items = [as_text(v) for v in value]
    else:
        items = [p for p in as_text(value).split(",") if p]
    return [i.strip() for i in items if i.strip()]


def _level_privileges(
    where: tuple[str, ...], names: tuple[str, ...], grant: bool, all_set: bool, empty_ok: bool
) -> tuple[Privilege, ...]:
    """One level's privileges; all of them collapse to ALL PRIVILEGES as SHOW GRANTS prints.

    `where` is the level's scope in parts: ("global",), ("database", db), ("object", db,
    table) or ("routine", db, name, type). GRANT OPTION is not a privilege of its own: every
    privilege at the level is grantable, and a level holding only GRANT OPTION shows as
    grantable USAGE (unless `empty_ok`: the table's columns carry it).
    """
    level, *parts = where
    scope = routine_scope(*parts) if level == "routine" else make_scope(level, *parts)
    ordered = sorted(set(names))
    if all_set and ordered:
        ordered = ["ALL PRIVILEGES"]
    if not ordered:
        return (Privilege(scope, "USAGE", True),) if grant and not empty_ok else ()
    return tuple(Privilege(scope, name, grant) for name in ordered)


def _global_names(names: tuple[str, ...], all_set: bool) -> frozenset[str]:
    """Global privilege names, plus ALL PRIVILEGES when the level has them all."""
    return frozenset(names) | ({"ALL PRIVILEGES"} if all_set else frozenset())


_SUPER_NAMES = frozenset({"ALL PRIVILEGES", "SUPER"})
_NO_NAMES: frozenset[str] = frozenset()
_GLOBAL = ("global",)


def _global_capabilities(global_names: frozenset[str]) -> frozenset[str]:
    """What the global privileges alone give."""
    caps: set[str] = set()
    everything = "ALL PRIVILEGES" in global_names
    if global_names & _SUPER_NAMES:
        caps.add("SUPERUSER")
    for name, cap in (("CREATE USER", "CREATE_USER"), ("FILE", "FILE_ACCESS"), ("SHUTDOWN", "SHUTDOWN")):
        if everything or name in global_names:
            caps.add(cap)
    return frozenset(caps)


# --- escalation routes: what makes an account a superuser without ALL PRIVILEGES --------------
# Each gives SUPERUSER, its reason (capability_reasons) naming the route and why; the sources are
# in docs/findings.md, "Escalation routes (MySQL/MariaDB)". An account holding every global
# privilege is a superuser by definition and gets no reason.

_ROUTES: tuple[tuple[str, str], ...] = (
    (
        "SUPER",
        "SUPER: may name any account as the DEFINER of a view, routine, trigger or event, whose code then runs "
        "with that account's privileges, and may change global system variables",
    ),
    (
        "FILE",
        "FILE: may read and write files on the server host with the server's own file access (LOAD DATA INFILE, "
        "LOAD_FILE(), SELECT ... INTO OUTFILE), the data directory and its grant tables included, as far as "
        "secure_file_priv allows",
    ),
    (
        "CREATE USER",
        "CREATE USER: may create, rename and drop accounts and change any account's password (ALTER USER), "
        "then log in as it",
    ),
)
_GRANT_OPTION_ROUTE = "GRANT OPTION on *.*: may grant every privilege it holds, on every level, to any account"
# privileges that change the grant tables when they apply to the mysql schema
_MYSQL_WRITES = frozenset({"INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER"})
_ROUTE_PRIVILEGES = frozenset(name for name, _why in _ROUTES) | _MYSQL_WRITES
_NOT_PASSED_ON = frozenset({"USAGE", "PROXY"})  # what GRANT OPTION on *.* has nothing to pass on with
_SHOWN = 5  # targets or grants a reason names before "and N more"


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def _write_route(grants: list[str]) -> str:
    return (
        f"write privileges on the mysql schema ({_listed(sorted(set(grants)))}): may change the grant tables, "
        "and with them any account's privileges and password"
    )


def _proxy_route(superusers: list[str]) -> str:
    return (
        f"PROXY of a superuser ({_listed(superusers)}): may log in as it through an authentication plugin "
        "that supports proxy users"
    )


@functools.lru_cache(maxsize=256)
def _name_pattern(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """A MySQL name pattern as a regex: `%` any run, `_` any one character, `\\` takes the next one literally."""
    out: list[str] = []
    escaped = False
    for char in pattern:
        if escaped or char not in "%_\\":
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            out.append(".*" if char == "%" else ".")
    if escaped:
        out.append(re.escape("\\"))
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


class _Memo:
    """Every memo of one `build_catalog` call.

    Why: at 10,000 accounts the same few row shapes (Priv JSON, Y/N flag sets, SET values,
    privilege levels, role grants) come back row after row, so each is worked out once per
    fetch. The memo lives for one call: it is bounded by that fetch's rows, sees one server
    version and never grows across a long-running worker. What it hands out is immutable
    (tuples, frozensets, frozen `Privilege` and `RoleGrant`, read-only attribute maps), so
    accounts can share it; their own lists and dicts are copies (`list += tuple`).

    A memo may only key on values whose equality means equal answers. The `functools.cache`
    ones are called with str, tuples of str and real bools only (True == 1 would share keys);
    the three methods key on raw cells, where that needs care, and each says how.
    """

    def __init__(self, version: tuple[int, int, int]) -> None:
        self.version = version
        self.level = functools.cache(_level_privileges)
        self.global_names = functools.cache(_global_names)
        self.global_capabilities = functools.cache(_global_capabilities)
        self.role_grant = functools.cache(RoleGrant)
        self._priv_texts: dict[tuple[str | None, Any, Any], _Shape] = {}
        self._priv_rests: dict[tuple[str, Any, Any], _Shape] = {}
        self._flags: dict[tuple[_PrivPlan, tuple[Any, ...]], tuple[tuple[str, ...], bool, bool]] = {}
        self._set_values: dict[str, tuple[tuple[str, ...], bool]] = {}

    def global_priv(self, priv_text: str | None, auth_empty: Any, auth_or_empty: Any = "") -> _Shape:
        """`_global_priv_shape`, shared at two levels.

        Accounts created by one script in the same second have identical Priv JSON: the
        text alone is the key. But most fleets set each password at its own time, so
        password_last_changed differs while the rest repeats: the repr of the rest of the
        parsed JSON keys the shared part (for JSON values, equal reprs mean equal values of
        equal types, e.g. 1, 1.0 and true all differ), and only the two password-change
        attributes are worked out per account.
        """
        key = (priv_text, auth_empty, auth_or_empty)
        try:
            shape = self._priv_texts.get(key)
        except TypeError:  # an unhashable auth_empty: nothing to share
            return _global_priv_shape(priv_text, auth_empty, self.version, auth_or_empty)
        if shape is None:
            priv, last_changed = _split_priv(priv_text)
            rest = (repr(priv), auth_empty, auth_or_empty)
            base = self._priv_rests.get(rest)
            if base is None:
                base = self._priv_rests[rest] = _global_priv_base(priv, auth_empty, self.version, auth_or_empty)
            shape = self._priv_texts[key] = _with_password_change(base, last_changed)
        return shape

    def flags(self, row: Mapping[str, Any]) -> tuple[tuple[str, ...], bool, bool]:
        """`<Stem>_priv` Y/N columns -> (names, every privilege set?, grant option?).

        mysql.db has a row per account and schema, but a fleet has only a few distinct flag
        sets. Only flags made of str, bytes and None are shared: for those, equal values are
        read alike, which is not true of numbers (1 == 1.0, yet "1.0" is not yes).
        """
        plan = _priv_plan(tuple(row))
        flags = plan.read(row)
        key = (plan, flags)
        try:
            return self._flags[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable value: nothing to share
            return _decode_flags(plan.names, flags)
        decoded = _decode_flags(plan.names, flags)
        if all(value is None or type(value) is str or type(value) is bytes for value in flags):
            self._flags[key] = decoded
        return decoded

    def set_privileges(self, value: Any) -> tuple[tuple[str, ...], bool]:
        """A Table_priv/Proc_priv SET value -> (privilege names, grant option?); shared for str values only."""
        parsed = self._set_values.get(value) if type(value) is str else None
        if parsed is None:
            members = _set_members(value)
            grant = any(m.lower() == "grant" for m in members)
            parsed = tuple(_SET_MEMBERS.get(m.lower(), m.upper()) for m in members if m.lower() != "grant"), grant
            if type(value) is str:
                self._set_values[value] = parsed
        return parsed


def build_catalog(info: ServerInfo, rows: MySQLRows, *, now: datetime | None = None) -> Catalog:
    """Turn the fetched rows into accounts with canonical privileges, roles and capabilities.

    `now` decides which passwords have expired by age (EXPIRED); `fetch` passes the instant its
    digest decided the expiry moments at (`source_digest`), so the two always agree.
    """
    build = _Build(info, rows)
    build.add_global_privileges()
    build.add_database_privileges()
    build.add_table_and_column_privileges()
    build.add_routine_and_proxy_privileges()
    build.add_role_grants()
    return build.catalog(datetime.now(UTC) if now is None else now)


class _Build:
    """One `build_catalog` call: the parsed users, and what each account has been given so far.

    Each `add_*` step reads some grant tables and appends to `privileges` and `roles`;
    the steps run in a fixed order, so each account's lists come out in that order.
    """

    def __init__(self, info: ServerInfo, rows: MySQLRows) -> None:
        self.info = info
        self.rows = rows
        self.memo = memo = _Memo(info.version)
        if info.uses_global_priv:
            self.users = [_parse_global_priv_row(row, memo) for row in rows.users]
        else:
            self.users = [_parse_user_table_row(row, info, memo) for row in rows.users]
        self._identities = {(u.user, u.host): u.identity for u in self.users}
        self.privileges: defaultdict[str, list[Privilege]] = defaultdict(list)
        self.global_names: dict[str, frozenset[str]] = {}  # static and dynamic: what capabilities read
        self.roles: defaultdict[str, list[RoleGrant]] = defaultdict(list)
        self.mysql_roles: set[str] = set()  # MySQL 8: accounts granted to others (role_edges)
        # escalation routes: write grants below the global level that reach the mysql schema, and
        # (grantee, proxied user, proxied host) of every proxies_priv row
        self.mysql_writes: defaultdict[str, list[str]] = defaultdict(list)
        self.proxies: list[tuple[str, str, str]] = []
        self.ignore_case = info.lower_case_table_names != 0
        self._is_mysql: dict[tuple[str, bool], bool] = {}

    def is_mysql(self, db: str, *, pattern: bool) -> bool:
        """Whether a grant on database `db` applies to the mysql schema.

        mysql.db names are patterns (`%`, `_`; `m%` reaches mysql, verified live), the other tables'
        names are not. Case matters only where the server says so (lower_case_table_names 0).
        """
        key = (db, pattern)
        known = self._is_mysql.get(key)
        if known is None:
            if pattern:
                known = bool(_name_pattern(db, self.ignore_case).fullmatch("mysql"))
            else:
                known = db == "mysql" or (self.ignore_case and db.lower() == "mysql")
            self._is_mysql[key] = known
        return known

    def identity_of(self, user: Any, host: Any) -> str:
        """The identity of the account a grant row names: a known account's, else one made from the names."""
        key = (user, host) if type(user) is str and type(host) is str else (as_text(user), as_text(host))
        known = self._identities.get(key)
        return known if known is not None else account_identity(*key)

    def add_global_privileges(self) -> None:
        """Global privileges and MySQL 8 partial revokes (a deny on one schema), then MySQL 8 dynamic ones."""
        privileges, global_names, memo = self.privileges, self.global_names, self.memo
        for u in self.users:
            shape = u.shape
            names, all_set = shape.global_privs, shape.global_all
            privileges[u.identity] += memo.level(_GLOBAL, names, shape.global_grant, all_set, False)
            global_names[u.identity] = memo.global_names(names, all_set)
            if shape.partial_revokes:
                privileges[u.identity] += [
                    Privilege(make_scope("database", db), name, False, "DENY") for db, name in shape.partial_revokes
                ]
        for row in self.rows.global_grants:
            ident = self.identity_of(row["USER"], row["HOST"])
            name = as_text(row["PRIV"]).upper()
            privileges[ident].append(Privilege("global", name, is_yes(row.get("WITH_GRANT_OPTION"), _YES_WORDS)))
            global_names[ident] = global_names.get(ident, _NO_NAMES) | {name}

    def add_database_privileges(self) -> None:
        """mysql.db: one row per account and schema."""
        privileges, identity_of, flags, level = self.privileges, self.identity_of, self.memo.flags, self.memo.level
        for row in self.rows.db:
            names, all_set, grant = flags(row)
            where = ("database", as_text(row["Db"]))
            ident = identity_of(row["User"], row["Host"])
            privileges[ident] += level(where, names, grant, all_set, False)
            if not _MYSQL_WRITES.isdisjoint(names) and self.is_mysql(where[1], pattern=True):
                scope = make_scope(*where)
                self.mysql_writes[ident] += [f"{name} on {scope}" for name in sorted(_MYSQL_WRITES.intersection(names))]

    def add_table_and_column_privileges(self) -> None:
        """Table privileges, then column privileges, which are grantable when their table's row says so."""
        privileges, identity_of, memo = self.privileges, self.identity_of, self.memo
        table_all = _TABLE_ALL_MARIADB if self.info.is_mariadb else _TABLE_ALL_MYSQL
        columns_by_table: defaultdict[tuple[str, str, str], list[Privilege]] = defaultdict(list)
        for row in self.rows.columns:
            ident, db, table = identity_of(row["User"], row["Host"]), as_text(row["Db"]), as_text(row["Table_name"])
            scope = make_scope("column", db, table, as_text(row["Column_name"]))
            for member in _set_members(row["Column_priv"]):
                name = _SET_MEMBERS[member.lower()]
                columns_by_table[ident, db, table].append(Privilege(scope, name))
                if name in _MYSQL_WRITES and self.is_mysql(db, pattern=False):
                    self.mysql_writes[ident].append(f"{name} on {scope}")
        table_grant: dict[tuple[str, str, str], bool] = {}
        for row in self.rows.tables:
            ident, db, table = identity_of(row["User"], row["Host"]), as_text(row["Db"]), as_text(row["Table_name"])
            key = (ident, db, table)
            names, grant = memo.set_privileges(row["Table_priv"])
            if key in columns_by_table:  # the only keys the column loop below looks up
                table_grant[key] = grant
            all_set, has_columns = table_all <= set(names), bool(columns_by_table.get(key))
            privileges[ident] += memo.level(("object", db, table), names, grant, all_set, has_columns)
            if not _MYSQL_WRITES.isdisjoint(names) and self.is_mysql(db, pattern=False):
                scope = make_scope("object", db, table)
                self.mysql_writes[ident] += [f"{name} on {scope}" for name in sorted(_MYSQL_WRITES.intersection(names))]
        for (ident, db, table), column_privs in columns_by_table.items():
            grant = table_grant.get((ident, db, table), False)
            privileges[ident] += [Privilege(p.scope, p.privilege, grant) for p in column_privs]

    def add_routine_and_proxy_privileges(self) -> None:
        """mysql.procs_priv (EXECUTE, ALTER ROUTINE per routine), then mysql.proxies_priv (PROXY per account)."""
        privileges, identity_of, memo = self.privileges, self.identity_of, self.memo
        for row in self.rows.procs:
            names, grant = memo.set_privileges(row["Proc_priv"])
            where = ("routine", as_text(row["Db"]), as_text(row["Routine_name"]), as_text(row["Routine_type"]))
            privileges[identity_of(row["User"], row["Host"])] += memo.level(where, names, grant, False, False)
        for row in self.rows.proxies:
            scope = "proxy:" + identity_of(row["Proxied_user"], row["Proxied_host"])
            grantee = identity_of(row["User"], row["Host"])
            privileges[grantee].append(Privilege(scope, "PROXY", bool(int(row.get("With_grant") or 0))))
            self.proxies.append((grantee, as_text(row["Proxied_user"]), as_text(row["Proxied_host"])))

    def add_role_grants(self) -> None:
        """MariaDB roles_mapping, then MySQL 8 role_edges (default_roles says which are active at login)."""
        roles, identity_of, role_grant = self.roles, self.identity_of, self.memo.role_grant
        role_identity = {u.user: u.identity for u in self.users if u.shape.is_role}
        default_of = {u.identity: u.shape.default_role for u in self.users}
        grantee_is_role = {u.identity: u.shape.is_role for u in self.users}
        for row in self.rows.roles_mapping:  # MariaDB
            grantee = identity_of(row["User"], row["Host"])
            role_name = as_text(row["Role"])
            role = role_identity.get(role_name) or account_identity(role_name, "", is_role=True)
            # A role held by a role is active whenever its holder is.
            default = grantee_is_role.get(grantee, False) or default_of.get(grantee) == role_name
            roles[grantee].append(role_grant(role, is_yes(row.get("Admin_option"), _YES_WORDS), default))

        defaults = {
            (identity_of(r["USER"], r["HOST"]), identity_of(r["DEFAULT_ROLE_USER"], r["DEFAULT_ROLE_HOST"]))
            for r in self.rows.default_roles
        }
        activate_all = self.info.activate_all_roles_on_login
        for row in self.rows.role_edges:  # MySQL 8
            role = identity_of(row["FROM_USER"], row["FROM_HOST"])
            grantee = identity_of(row["TO_USER"], row["TO_HOST"])
            self.mysql_roles.add(role)
            admin = is_yes(row.get("WITH_ADMIN_OPTION"), _YES_WORDS)
            roles[grantee].append(role_grant(role, admin, activate_all or (grantee, role) in defaults))
        if self.info.has_mysql_roles and self.info.mandatory_roles:
            self._add_mandatory_roles(defaults, activate_all)

    def _add_mandatory_roles(self, defaults: set[tuple[str, str]], activate_all: bool) -> None:
        """MySQL 8 `mandatory_roles` are granted to every account (not in role_edges): a role grant of each user.

        In force at login when activate_all_roles_on_login is ON or the user made it a default role,
        else reachable with SET ROLE; the user's snapshot shows it as held, as the server treats it.
        """
        mandatory = [self.identity_of(user, host) for user, host in parse_role_list(self.info.mandatory_roles)]
        self.mysql_roles.update(mandatory)
        for u in self.users:
            if u.shape.is_role or u.identity in self.mysql_roles:
                continue
            held = {grant.role for grant in self.roles[u.identity]}
            for role in mandatory:
                if role not in held:
                    default = activate_all or (u.identity, role) in defaults
                    self.roles[u.identity].append(self.memo.role_grant(role, False, default))

    def catalog(self, now: datetime) -> Catalog:
        """The accounts, in user-row order, with what the steps gave them and the capabilities that follows.

        A password is EXPIRED when the server says so (PASSWORD EXPIRE) or when its age has reached
        its lifetime at `now` (`_expiry_moment`). Escalation routes come last: PROXY of a superuser
        needs every other route (and role membership) decided first.
        """
        info, privileges, roles, memo = self.info, self.privileges, self.roles, self.memo
        catalog = Catalog(server_version=info.label, coverage=coverage_gaps(self.rows))
        default_lifetime = info.default_password_lifetime
        for u in self.users:
            shape = u.shape
            is_role = shape.is_role or u.identity in self.mysql_roles
            attributes = shape.attributes.copy()  # the account's own dict (dict(proxy) takes the slow path)
            attributes["is_role"] = is_role
            privs = privileges.get(u.identity, [])
            held = roles.get(u.identity, [])
            global_names = self.global_names.get(u.identity, _NO_NAMES)
            caps = _capabilities(u, attributes, privs, held, memo.global_capabilities(global_names))
            if "EXPIRED" not in caps and not shape.is_role:
                expires = _expiry_moment(
                    attributes["password_last_changed"], attributes["password_lifetime"], default_lifetime
                )
                if expires is not None and expires <= now:
                    caps.add("EXPIRED")
            routes = self.routes(u, global_names, privs)
            if routes:
                caps.add("SUPERUSER")
            catalog.accounts.append(
                AccountRecord(
                    identity=u.identity,
                    username=u.user,
                    kind="role" if is_role else "user",
                    host=None if shape.is_role else u.host,
                    is_superuser="SUPERUSER" in caps,
                    is_locked=bool(attributes["locked"]),
                    attributes=attributes,
                    privileges=privs,
                    roles=held,
                    capabilities=caps,
                    capability_reasons={"SUPERUSER": routes} if routes else {},
                )
            )
        self.add_proxy_routes(catalog.accounts)
        catalog.details["flavor"] = info.flavor
        if info.default_password_lifetime is not None:
            catalog.details["default_password_lifetime"] = info.default_password_lifetime
        return catalog

    def routes(self, u: _User, global_names: frozenset[str], privs: list[Privilege]) -> list[str]:
        """The escalation routes of one account's own grants (PROXY aside), each as "<route>: <why>"."""
        shape = u.shape
        writes = self.mysql_writes.get(u.identity)
        if shape.global_every or (global_names.isdisjoint(_ROUTE_PRIVILEGES) and not shape.global_grant and not writes):
            return []
        routes = [why for name, why in _ROUTES if name in global_names]
        # with nothing but USAGE (or PROXY, which its own grant option passes on) there is nothing to grant:
        # MariaDB also sets this bit for PROXY ... WITH GRANT OPTION (verified live: such an account can grant nothing)
        if shape.global_grant and any(p.effect == "GRANT" and p.privilege not in _NOT_PASSED_ON for p in privs):
            routes.append(_GRANT_OPTION_ROUTE)
        # a global write privilege reaches the mysql schema too, unless a MySQL 8 partial revoke takes it back there
        revoked = {name for db, name in shape.partial_revokes if self.is_mysql(db, pattern=False)}
        on_mysql = [f"{name} on global" for name in sorted((global_names & _MYSQL_WRITES) - revoked)]
        if on_mysql or writes:
            routes.append(_write_route(on_mysql + (writes or [])))
        return routes

    def add_proxy_routes(self, accounts: list[AccountRecord]) -> None:
        """SUPERUSER for whoever may proxy a superuser: a proxies_priv row whose proxied account is one.

        Which accounts a row (Proxied_user, Proxied_host) reaches, as the server decides at login
        (sql_acl.cc, ACL_PROXY_USER::matches and the lookup after it): an empty Proxied_user is any
        user name, not the anonymous account; otherwise MariaDB compares the name exactly and MySQL as
        a pattern (`%`, `_`). The proxied account is then the one whose host is Proxied_host exactly
        (case-insensitively), not one its pattern matches. A superuser here is one by its own grants,
        by a role it holds (directly or through roles, as `Catalog.finalize` will say) or, repeated
        until nothing changes, by proxying one itself. MariaDB roles (no host) cannot be proxied.
        """
        supers = {acc.identity for acc in accounts if "SUPERUSER" in acc.capabilities}
        pending = [row for row in self.proxies if row[0] not in supers]
        if not pending:
            return
        by_identity = {acc.identity: acc for acc in accounts}
        held = {ident: [grant.role for grant in grants] for ident, grants in self.roles.items()}
        while True:
            grew = True
            while grew:
                grew = False
                for ident, role_ids in held.items():
                    if ident not in supers and any(role in supers for role in role_ids):
                        supers.add(ident)
                        grew = True
            targets = sorted(
                (by_identity[i] for i in supers if i in by_identity and by_identity[i].host is not None),
                key=lambda acc: acc.identity,
            )
            added = False
            for grantee, user, host in pending:
                acc = by_identity.get(grantee)
                if acc is None or grantee in supers:
                    continue
                reached = [t.identity for t in targets if t.identity != grantee and self.proxied(user, host, t)]
                if reached:
                    acc.capabilities.add("SUPERUSER")
                    acc.is_superuser = True
                    acc.capability_reasons.setdefault("SUPERUSER", []).append(_proxy_route(reached))
                    supers.add(grantee)
                    added = True
            if not added:
                return

    def proxied(self, user: str, host: str, target: AccountRecord) -> bool:
        """Whether the proxies_priv row's (Proxied_user, Proxied_host) names `target` (see `add_proxy_routes`)."""
        if host.lower() != (target.host or "").lower():
            return False
        if user == "":
            return True
        if self.info.is_mariadb:
            return user == target.username
        return bool(_name_pattern(user, False).fullmatch(target.username))


def _capabilities(
    u: _User,
    attributes: Mapping[str, Any],
    privs: list[Privilege],
    held: list[RoleGrant],
    global_caps: frozenset[str],
) -> set[str]:
    caps = set(global_caps)
    if any(p.grantable for p in privs) or any(r.admin_option for r in held):
        caps.add("GRANT_ADMIN")
    if attributes["locked"]:
        caps.add("LOCKED")
    if attributes["password_expired"]:
        caps.add("EXPIRED")
    if not u.shape.is_role:
        if u.shape.no_password:
            caps.add("NO_PASSWORD")
        if u.host == "" or _has_wildcard(u.host):
            caps.add("WILDCARD_HOST")
        if u.user == "":
            caps.add("ANONYMOUS")
    return caps


def _has_wildcard(host: str) -> bool:
    """`%` and `_` match anything unless escaped with a backslash."""
    escaped = False
    for char in host:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in "%_":
            return True
    return False


# --- querying -------------------------------------------------------------------

_VARIABLES_SQL = (
    "SHOW GLOBAL VARIABLES WHERE Variable_name IN "
    "('version', 'version_comment', 'default_password_lifetime', 'lower_case_table_names', "
    "'mandatory_roles', 'activate_all_roles_on_login')"
)
# Least data on the wire: named columns only, never a password hash. Whether a secret is
# empty is worked out by the server (a 0/1 column), and JSON documents lose their hash keys
# in SQL, so no hash of any account crosses the network (tests/live/test_mysql_least_data.py).

# MariaDB >= 10.4: the Priv JSON keeps the first alternative's secret at the top level and
# the others in auth_or (`{}` standing for the top-level one). JSON_REMOVE takes no
# wildcards, so the alternatives are named one by one, up to this many; an account with
# more gets Priv NULL (no secret sent) and the build reports it as unexpected contents.
MAX_AUTH_ALTERNATIVES = 8
_AUTH_OR = range(MAX_AUTH_ALTERNATIVES)
_GLOBAL_PRIV_SQL = (
    "SELECT User, Host, CASE WHEN IFNULL(JSON_LENGTH(Priv, '$.auth_or'), 0) <= "
    f"{MAX_AUTH_ALTERNATIVES} THEN JSON_REMOVE(Priv, '$.authentication_string', "
    + ", ".join(f"'$.auth_or[{i}].authentication_string'" for i in _AUTH_OR)
    + ") END AS Priv, "
    "IFNULL(JSON_VALUE(Priv, '$.authentication_string'), '') = '' AS auth_empty, "
    "CONCAT("
    + ", ".join(f"IFNULL(JSON_VALUE(Priv, '$.auth_or[{i}].authentication_string'), '') = ''" for i in _AUTH_OR)
    + ") AS auth_or_empty FROM mysql.global_priv"
)

# mysql.user (MySQL 5.7/8, MariaDB < 10.4): the columns `_parse_user_table_row` reads, by version.
_USER_PRIV_COLUMNS = (
    "Select_priv", "Insert_priv", "Update_priv", "Delete_priv", "Create_priv", "Drop_priv", "Reload_priv",
    "Shutdown_priv", "Process_priv", "File_priv", "Grant_priv", "References_priv", "Index_priv", "Alter_priv",
    "Show_db_priv", "Super_priv", "Create_tmp_table_priv", "Lock_tables_priv", "Execute_priv", "Repl_slave_priv",
    "Repl_client_priv", "Create_view_priv", "Show_view_priv", "Create_routine_priv", "Alter_routine_priv",
    "Create_user_priv", "Event_priv", "Trigger_priv", "Create_tablespace_priv",
)  # fmt: skip
_USER_LIMIT_COLUMNS = (
    "ssl_type", "ssl_cipher", "x509_issuer", "x509_subject",
    "max_questions", "max_updates", "max_connections", "max_user_connections", "plugin",
)  # fmt: skip
_USER_PASSWORD_COLUMNS = ("password_expired", "password_last_changed", "password_lifetime", "account_locked")
# MySQL >= 8.0.14 User_attributes may hold a secondary password (RETAIN CURRENT PASSWORD) and,
# from 8.0.27, the secrets of further authentication factors: removed in SQL.
_USER_ATTRIBUTES = (
    "JSON_REMOVE(u.User_attributes, '$.additional_password', "
    "'$.multi_factor_authentication[0].authentication_string', "
    "'$.multi_factor_authentication[1].authentication_string') AS User_attributes"
)


def user_sql(info: ServerInfo) -> str:
    """The mysql.user select for this server: named columns, auth_empty computed by the server."""
    columns = ["Host", "User", *_USER_PRIV_COLUMNS]
    if info.is_mariadb:
        if info.version >= (10, 3, 4):
            columns.append("Delete_history_priv")
        columns += _USER_LIMIT_COLUMNS
        if info.version >= (10, 0, 5):
            columns.append("is_role")
        if info.version >= (10, 1, 1):
            columns.append("default_role")
        empty = "(u.authentication_string = '' AND u.Password = '')"
    else:
        if info.version >= (8, 0, 0):
            columns += ["Create_role_priv", "Drop_role_priv"]
        columns += [*_USER_LIMIT_COLUMNS, *_USER_PASSWORD_COLUMNS]
        empty = "u.authentication_string = ''"
    named = ", ".join(f"u.{c}" for c in columns)
    if not info.is_mariadb and info.version >= (8, 0, 14):
        named += ", " + _USER_ATTRIBUTES
    return f"SELECT {named}, {empty} AS auth_empty FROM mysql.user u"


# Which level of grants each table holds (the scopes `build_catalog` gives its rows), for the coverage
# gap of a table the monitoring account may not read. The account tables are not here: without them
# nothing can be said, so a denied mysql.user / mysql.global_priv fails the sync (PermissionDenied).
_TABLE_LEVELS = {
    "db": "database",
    "tables": "object",
    "columns": "column",
    "procs": "routine",
    "proxies": "proxy",  # PROXY privileges are on `proxy:'user'@'host'`
    "roles_mapping": "role",
    "role_edges": "role",
    "default_roles": "role",
    "global_grants": "global",  # MySQL 8 dynamic privileges are global ones
}
# ER_DBACCESS_DENIED_ERROR, ER_TABLEACCESS_DENIED_ERROR, ER_COLUMNACCESS_DENIED_ERROR: the server says
# this account may not read the table (or some of its columns); the connection stays usable
_DENIED_ERRORS = frozenset({1044, 1142, 1143})
_SOMEONE = "<monitoring account>"


def read_rows(counter: QueryCounter, info: ServerInfo, *, secret: str | None = None) -> MySQLRows:
    """Read every catalog table the flavour has, one statement each.

    A grant table the monitoring account may not read (`_DENIED_ERRORS`) is recorded in
    `rows.denied` with the server's text (`secret`, the password, scrubbed from it) and read as
    empty; the denial is part of the digest, so reading it again later is a change. Then one more
    statement, CURRENT_USER(), names the account for the fix. The account table itself must be
    readable: its error is raised, as every other error is.
    """
    import MySQLdb

    rows = MySQLRows()

    def read(name: str, table: str, sql: str) -> list[dict[str, Any]]:
        """One table as dict rows; the tuples as read are kept in `rows.raw` for the digest."""
        try:
            tuples = counter.fetchall(sql)
        except MySQLdb.Error as exc:
            code = _error_code(exc)
            if name not in _TABLE_LEVELS or code not in _DENIED_ERRORS:
                raise
            rows.denied[name] = (table, code, scrub(_error_text(exc), secret))
            rows.raw.append((name, ("denied",), [(code,)]))  # the code, not the text: it names the worker's host
            return []
        columns = tuple(d[0] for d in counter.cursor.description or ())
        rows.raw.append((name, columns, tuples))
        return list(map(dict, map(zip, repeat(columns), tuples)))  # [dict(zip(columns, row)) ...], in C

    if info.uses_global_priv:
        rows.users = read("users", "global_priv", _GLOBAL_PRIV_SQL)
    else:
        rows.users = read("users", "user", user_sql(info))
    rows.db = read("db", "db", "SELECT * FROM mysql.db")
    rows.tables = read("tables", "tables_priv", "SELECT User, Host, Db, Table_name, Table_priv FROM mysql.tables_priv")
    rows.columns = read(
        "columns",
        "columns_priv",
        "SELECT User, Host, Db, Table_name, Column_name, Column_priv FROM mysql.columns_priv",
    )
    rows.procs = read(
        "procs", "procs_priv", "SELECT User, Host, Db, Routine_name, Routine_type, Proc_priv FROM mysql.procs_priv"
    )
    rows.proxies = read(
        "proxies", "proxies_priv", "SELECT User, Host, Proxied_user, Proxied_host, With_grant FROM mysql.proxies_priv"
    )
    if info.is_mariadb:
        rows.roles_mapping = read(
            "roles_mapping", "roles_mapping", "SELECT User, Host, Role, Admin_option FROM mysql.roles_mapping"
        )
    elif info.has_mysql_roles:
        rows.role_edges = read(
            "role_edges",
            "role_edges",
            "SELECT FROM_USER, FROM_HOST, TO_USER, TO_HOST, WITH_ADMIN_OPTION FROM mysql.role_edges",
        )
        rows.default_roles = read(
            "default_roles",
            "default_roles",
            "SELECT USER, HOST, DEFAULT_ROLE_USER, DEFAULT_ROLE_HOST FROM mysql.default_roles",
        )
        rows.global_grants = read(
            "global_grants", "global_grants", "SELECT USER, HOST, PRIV, WITH_GRANT_OPTION FROM mysql.global_grants"
        )
    if rows.denied:
        rows.monitoring_account = _current_account(counter)
    return rows


def _current_account(counter: QueryCounter) -> str:
    """`'user'@'host'` of the account the server checks privileges against (CURRENT_USER()); "" if unknown."""
    import MySQLdb

    try:
        ((current,),) = counter.fetchall("SELECT CURRENT_USER()")
    except (MySQLdb.Error, ValueError, TypeError):
        return ""
    user, at, host = as_text(current).rpartition("@")  # a host has no @, a user name may
    return account_identity(user, host) if at else ""


def coverage_gaps(rows: MySQLRows) -> list[CoverageGap]:
    """One unreadable gap per level whose grant tables were denied, with the server's reason and the fix.

    Column grants take their grant option from mysql.tables_priv, so a denied tables_priv also
    leaves the column level unknown (with tables_priv's fix) when columns_priv itself was read.
    """
    account = rows.monitoring_account or _SOMEONE
    by_level: dict[str, list[tuple[str, str]]] = {}
    for name, (table, _code, message) in rows.denied.items():
        by_level.setdefault(_TABLE_LEVELS[name], []).append((table, message))
    if "tables" in rows.denied and "columns" not in rows.denied:
        table, _code, message = rows.denied["tables"]
        by_level.setdefault("column", []).append(
            (table, f"column grants take their grant option from mysql.{table}: {message}")
        )
    return [
        CoverageGap(
            scope=level,
            reason="; ".join(message for _table, message in denied),
            fix="; ".join(f"GRANT SELECT ON mysql.{table} TO {account}" for table, _message in denied),
        )
        for level, denied in by_level.items()
    ]


def expiry_moments(info: ServerInfo, rows: MySQLRows) -> list[datetime]:
    """Every account's password expiry by age (`_expiry_moment`), read from the raw rows without a build.

    Parsed by the same functions as the build's attributes (`_split_priv`, `_iso_utc`, `_lifetime`),
    so each moment is the one the build compares with `now`. A MariaDB Priv JSON is parsed only when
    a lifetime can apply to it; a row the build cannot read either is skipped (the build reports it).
    """
    default = info.default_password_lifetime
    moments: list[datetime] = []
    for row in rows.users:
        try:
            if info.uses_global_priv:
                text = as_text(row.get("Priv"))
                if not default and "password_lifetime" not in text:
                    continue  # no lifetime of its own and none by default: never expires by age
                priv, last_changed = _split_priv(text)
                if priv.get("is_role") or (type(last_changed) is not bool and last_changed == 0):
                    continue  # a role has no password; 0 is PASSWORD EXPIRE, expired already
                changed, lifetime = _iso_utc(last_changed), _lifetime(priv.get("password_lifetime"))
            else:
                changed = _iso_utc(row.get("password_last_changed"))
                lifetime = _lifetime(row.get("password_lifetime"))
        except (ValueError, TypeError, AttributeError):
            continue
        moment = _expiry_moment(changed, lifetime, default)
        if moment is not None:
            moments.append(moment)
    return moments


_LONG_AGO = datetime.min.replace(tzinfo=UTC)
_NEVER = datetime.max.replace(tzinfo=UTC)


def source_digest(target: ConnectionTarget, info: ServerInfo, rows: MySQLRows, now: datetime) -> str:
    """`rows_digest` of what was read, with which password expiry moments have passed at `now`.

    Why `now` is decided here: rows_digest reads its own clock, and a moment falling between its
    instant and the build's could make the digest say "passed" while the build said "not expired",
    a state no later sync would correct (its digest would be unchanged). So each moment is handed
    over already decided at `now`, the instant the build uses too: the far past if it has passed,
    the far future if not. Which moments have passed is all the digest takes from them; the
    moments themselves come from rows that are in the digest anyway.
    """
    decided = [_LONG_AGO if moment <= now else _NEVER for moment in expiry_moments(info, rows)]
    return rows_digest(__file__, target, info, _digest_source(rows), moments=decided)


# --- errors -----------------------------------------------------------------------

_AUTH_ERRORS = {1045, 1698, 1044}
_PRIVILEGE_ERRORS = {1142, 1143, 1227, 1370}
_CONNECT_ERRORS = {2002, 2003, 2005, 2006, 2026, 1129, 1130, 1040}
_TIMEOUT_ERRORS = {2013, 3024, 1969}
# CR_SERVER_GONE_ERROR, CR_SERVER_LOST, CR_SERVER_LOST_EXTENDED: the client's read or write failed,
# which the client library reports alike for a read timeout and for a connection the peer closed
_LOST_ERRORS = {2006, 2013, 2055}


def _error_code(exc: Exception) -> int | None:
    return exc.args[0] if exc.args and isinstance(exc.args[0], int) else None


def _error_text(exc: Exception) -> str:
    return as_text(exc.args[1] if len(exc.args) > 1 else exc)


def read_timeout(target: ConnectionTarget) -> int:
    """mysqlclient's read_timeout/write_timeout (whole seconds): query_timeout, rounded up.

    Why not less: MySQL's C API manual says libmysqlclient retries a timed-out read, so a read
    could wait up to 3x this; libmariadb (which mysqlclient links here) does not: measured
    against a silent server, a read fails after exactly read_timeout. Either way the
    statement watchdog (`query_deadline`) bounds the whole statement, so a smaller value would
    only cut slow but healthy reads, never shorten a stall.
    """
    return max(1, math.ceil(target.query_timeout))


def classify_error(
    exc: Exception, target: ConnectionTarget, *, phase: str, elapsed: float | None = None, expired: bool = False
) -> AdapterError:
    """Map a mysqlclient error to the classified error users see (no password in it).

    `elapsed` is how long the failing connect or statement waited, `expired` whether the
    statement's watchdog fired. A lost connection (2013/2006/2055) is a timeout when its wait
    used up the limit (connect_timeout while connecting, read_timeout after), else the peer
    closed it: "cannot connect" while connecting, "lost the connection" after. Without
    `elapsed` a 2013 stays what the driver's text suggests, a timeout.
    """
    repair_driver_error(exc)  # a non-UTF-8 server message must not crash whoever reads it (see there)
    code = _error_code(exc)
    detail = scrub(_error_text(exc), target.password)
    name = target.name
    if code == CR_SSL_CONNECTION_ERROR and phase == "connect":
        return _tls_failed(target, detail)
    if code in _AUTH_ERRORS and phase == "connect":
        return login_failed(
            target, detail, check="that the account may connect from this host", failed="authentication failed"
        )
    if code in _PRIVILEGE_ERRORS or code in _AUTH_ERRORS:
        return PermissionDenied(
            f"the monitoring account {target.username!r} cannot read the grant tables ({detail}); run "
            f"GRANT SELECT ON mysql.* TO <monitoring account> (see {MONITORING_DOC})",
            instance_name=name,
        )
    if expired:
        return no_answer(target, phase, elapsed or 0.0, f"the client closed the connection; {detail}")
    if code in _LOST_ERRORS and elapsed is not None:
        connecting = phase == "connect"
        limit = max(1, math.ceil(target.connect_timeout)) if connecting else read_timeout(target)
        timed_out = ran_out(elapsed, limit) or "system error: 110" in detail  # ETIMEDOUT
        if connecting:
            if timed_out:
                return timeout_failed(target, phase, detail, port_of="a MySQL/MariaDB")
            return connection_failed(target, detail, running="the server is running")
        if timed_out:
            return no_answer(target, phase, elapsed, detail)
        return connection_lost(target, phase, elapsed, detail, running="the server is running")
    if code in _TIMEOUT_ERRORS or "timed out" in detail.lower() or "timeout" in detail.lower():
        return timeout_failed(target, phase, detail, port_of="a MySQL/MariaDB")
    if code in _CONNECT_ERRORS or phase == "connect":
        return connection_failed(target, detail, running="the server is running")
    return unexpected_error(target, phase, detail, source="server")


CR_SSL_CONNECTION_ERROR = 2026  # Connector/C and libmysqlclient: "SSL connection error: ..."


def _tls_failed(target: ConnectionTarget, detail: str) -> AdapterError:
    """TLS could not be set up: the server offers none, or its certificate did not verify."""
    from accountsync.adapters.base import ConfigurationError, endpoint, tls_verify_failed

    lowered = detail.lower()
    if "not support" in lowered or "ssl is required" in lowered or "server doesn't support" in lowered:
        return ConfigurationError(
            f"{endpoint(target)} does not offer TLS, and the instance's tls mode is {target.tls.mode}; configure "
            "ssl_cert/ssl_key on the server, or lower the instance's tls mode (someone who may change credentials)",
            instance_name=target.name,
        )
    if target.tls.verifies:
        return tls_verify_failed(target, detail)
    return ConfigurationError(f"the TLS handshake with {endpoint(target)} failed ({detail})", instance_name=target.name)


def _counter(conn: Any, target: ConnectionTarget) -> QueryCounter:
    """A counter whose statements each get a deadline (`query_deadline`) that shuts the socket down.

    Why shut down and not KILL QUERY: a server that stopped answering would not answer a second
    connection either; shutting our socket down ends the client's wait whatever the server does.
    """
    fd = conn.fileno()  # read here: mysqlclient locks the connection while a statement runs
    seconds = query_deadline(target)
    return QueryCounter(conn.cursor(), watchdog=lambda: Watchdog(seconds, lambda _dog: shutdown_socket(fd)))


# --- authentication plugins: the password never goes to a server in a form it can read --------
# Why: the server chooses the authentication plugin (its handshake names one, an AuthSwitchRequest
# may name another), and MariaDB Connector/C, which mysqlclient links here, runs whichever it is
# asked for. mysql_clear_password and dialog (PAM) send the password itself, sha256_password sends
# it encrypted to a key the server supplies, so a server that is not the credential's (a host of
# the person who edited the instance, a man in the middle) would read it. Connector/C enables
# mysql_clear_password by default: it accepts MYSQL_ENABLE_CLEARTEXT_PLUGIN and ignores it
# (mariadb_lib.c: `case MYSQL_ENABLE_CLEARTEXT_PLUGIN: break;`), does not read libmysqlclient's
# LIBMYSQL_ENABLE_CLEARTEXT_PLUGIN, and plugins/auth/mariadb_cleartext.c sends the password whenever
# asked (the only plugin it disables by default is mysql_old_password, from 3.4; measured here with
# 3.3.20 against tests/fakeservers.py: the password arrives). Its per-connection guard is restricted_auth
# (MARIADB_OPT_RESTRICTED_AUTH): a plugin outside the list fails the connect with CR_PLUGIN_NOT_ALLOWED
# (5010) before the plugin runs, so not one byte of the secret is sent. mysqlclient has no keyword
# for it, but Connector/C 3.3.10+ reads `restricted-auth=` from an option file, and mysqlclient
# passes one as read_default_file (only that file is read then, with the groups client,
# client-server, client-mariadb and read_default_group).
# caching_sha2_password (MySQL 8's default) proves the password by a scramble when the server has
# it cached, but its full authentication sends the password RSA-encrypted to a public key the server
# supplies (without TLS: a fake server supplies its own and decrypts it), or in clear over TLS. So
# it runs only over verified TLS, or when the credential allows weak authentication.

# prove knowledge of the password without sending it
_HASHING_PLUGINS = ("mysql_native_password", "client_ed25519", "parsec")
# scramble, or the password itself (see above): only over verified TLS or with weak auth allowed
_CACHING_SHA2 = "caching_sha2_password"
# give the server the password, encrypted to a key the server chooses: only when the credential allows weak auth
_KEY_EXCHANGE_PLUGINS = ("sha256_password",)
# send the password in clear: only when the credential allows weak auth and TLS is verified
_CLEARTEXT_PLUGINS = ("mysql_clear_password", "dialog")
CR_PLUGIN_NOT_ALLOWED = 5010  # Connector/C: "Authentication plugin '%s' couldn't be found in restricted_auth ..."
CR_AUTH_PLUGIN_CANNOT_LOAD = 2059  # libmysqlclient: "... cannot be loaded: plugin not enabled"
_RESTRICTED_AUTH_FILES_SINCE = (3, 3, 10)  # Connector/C release notes 3.3.10: restricted_auth in option files
_AUTH_GROUP = "whalefall"


# instances/tls.py modes -> mysqlclient's ssl_mode. With MariaDB Connector/C, mysqlclient turns
# REQUIRED into MYSQL_OPT_SSL_ENFORCE and both VERIFY_* into MYSQL_OPT_SSL_VERIFY_SERVER_CERT, which
# checks the chain and the host name: there verify-ca is as strict as verify-full.
_SSL_MODES = {"disable": "DISABLED", "require": "REQUIRED", "verify-ca": "VERIFY_CA", "verify-full": "VERIFY_IDENTITY"}


def tls_params(target: ConnectionTarget) -> dict[str, Any]:
    """mysqlclient's TLS keywords from the instance's tls option and the credential's client certificate.

    No tls option: no keywords (the driver's default: no TLS), as before. The CA and the client
    certificate reach the driver as private files (`private_file`).
    """
    from accountsync.adapters.base import private_file

    tls = target.tls
    if tls.mode is None:
        return {}
    params: dict[str, Any] = {"ssl_mode": _SSL_MODES[tls.mode]}
    if tls.mode == "disable":
        return params
    ssl: dict[str, str] = {}
    if tls.verifies and tls.ca_pem:
        ssl["ca"] = private_file(tls.ca_pem)
    if tls.client_cert_pem and tls.client_key_pem:
        ssl["cert"] = private_file(tls.client_cert_pem)
        ssl["key"] = private_file(tls.client_key_pem)
    if ssl:
        params["ssl"] = ssl
    return params


def _tls_in_use(params: Mapping[str, Any]) -> bool:
    mode = str(params.get("ssl_mode") or "").upper()
    return bool(params.get("ssl")) or mode in {"REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY"}


def _tls_verified(params: Mapping[str, Any]) -> bool:
    """Whether the connect parameters make the client verify the server's certificate.

    Why from the parameters actually passed: an instance's tls option means nothing until it
    reaches the driver; mysqlclient maps VERIFY_CA and VERIFY_IDENTITY to Connector/C's
    MYSQL_OPT_SSL_VERIFY_SERVER_CERT (which checks the chain and the host name).
    """
    return str(params.get("ssl_mode") or "").upper() in {"VERIFY_CA", "VERIFY_IDENTITY"}


def allowed_auth_plugins(target: ConnectionTarget, params: Mapping[str, Any]) -> tuple[str, ...]:
    """The authentication plugins this connection may run, given the credential and the TLS in `params`."""
    verified = _tls_verified(params)
    plugins = list(_HASHING_PLUGINS)
    if verified or target.allow_weak_auth:
        plugins.append(_CACHING_SHA2)
    if target.allow_weak_auth:
        plugins.extend(_KEY_EXCHANGE_PLUGINS)
        if verified:
            plugins.extend(_CLEARTEXT_PLUGINS)
    return tuple(plugins)


@functools.cache
def _client_library() -> tuple[str, tuple[int, ...]]:
    """("connector/c", (3, 3, 20)) or ("libmysqlclient", (8, 0, 36)): what mysqlclient is linked against."""
    import MySQLdb._mysql

    info = MySQLdb._mysql.get_client_info()
    version = tuple(int(part) for part in re.findall(r"\d+", info)[:3])
    # MariaDB Connector/C numbers its releases 3.x; libmysqlclient follows the server (5.x, 8.x, 9.x; MariaDB's 10.x)
    return ("connector/c" if version and version[0] < 5 else "libmysqlclient"), version


def _restricted_auth_file(plugins: tuple[str, ...]) -> str:
    """A path Connector/C reads the `restricted-auth` option from (see `private_file` for why this kind of path)."""
    from accountsync.adapters.base import private_file

    return private_file(f"[{_AUTH_GROUP}]\nrestricted-auth={','.join(plugins)}\n")


def _auth_options(target: ConnectionTarget, params: Mapping[str, Any]) -> dict[str, str]:
    """The mysqlclient keywords that hold the connection to `allowed_auth_plugins` (fail closed if it cannot)."""
    import os

    from accountsync.adapters.base import ConfigurationError, endpoint

    plugins = allowed_auth_plugins(target, params)
    library, version = _client_library()
    if library == "libmysqlclient":
        # cleartext is off unless LIBMYSQL_ENABLE_CLEARTEXT_PLUGIN is set (MySQL manual, "Client-Side
        # Cleartext Pluggable Authentication"); it has no dialog plugin
        if os.environ.get("LIBMYSQL_ENABLE_CLEARTEXT_PLUGIN") and "mysql_clear_password" not in plugins:
            raise ConfigurationError(
                "LIBMYSQL_ENABLE_CLEARTEXT_PLUGIN is set, so libmysqlclient would send the password in clear "
                f"to {endpoint(target)} if asked; unset it in WhaleFall's environment",
                instance_name=target.name,
            )
        return {}
    if version < _RESTRICTED_AUTH_FILES_SINCE:
        raise ConfigurationError(
            f"mysqlclient is linked against MariaDB Connector/C {'.'.join(map(str, version))}, which cannot be "
            "told to refuse mysql_clear_password (it sends the password in clear whenever a server asks); "
            "install Connector/C 3.3.10 or later (libmariadb3) and reinstall mysqlclient",
            instance_name=target.name,
        )
    path = _restricted_auth_file(plugins)
    return {"read_default_file": path, "read_default_group": _AUTH_GROUP}


def repair_driver_error(exc: Exception) -> None:
    """Replace a NULL that mysqlclient left in an exception's args, before anything reads them.

    Why: mysqlclient builds args as (errno, PyUnicode_FromString(mysql_error())), and that returns
    NULL for a message that is not UTF-8, which a server controls (an ERR packet's text) and
    Connector/C sometimes produces itself (see `_weak_auth_refused`). The tuple then holds a NULL:
    reading args[1], printing the exception or formatting its traceback kills the process
    (SIGSEGV), so any server could crash a worker. gc.get_referents skips NULL slots, so a list
    shorter than args shows one without touching it; the message is replaced, the errno kept.
    """
    import gc

    args = exc.args
    present = gc.get_referents(args)
    if len(present) != len(args):
        code = next((item for item in present if isinstance(item, int)), None)
        exc.args = (code, "(the server's error message was not valid UTF-8)")


def _weak_auth_refused(exc: Exception, target: ConnectionTarget, plugins: tuple[str, ...]) -> AdapterError | None:
    """The client refused the server's authentication plugin: a configuration error naming both ways out.

    Why not the driver's text: after an AuthSwitchRequest, Connector/C 3.3 formats CR_PLUGIN_NOT_ALLOWED
    from a pointer into a buffer the switch packet has overwritten, so the text is garbage, often not
    UTF-8, and mysqlclient then leaves NULL in the exception's args: reading args[1] crashes the
    process. The args are replaced before anything reads them.
    """
    from accountsync.adapters.base import ConfigurationError, endpoint

    code = _error_code(exc)
    if code == CR_PLUGIN_NOT_ALLOWED:
        exc.args = (code, "authentication plugin not in restricted_auth")
    elif not (code == CR_AUTH_PLUGIN_CANNOT_LOAD and "mysql_clear_password" in _error_text(exc)):
        return None
    return ConfigurationError(
        f"the server at {endpoint(target)} asked for the password in clear text (or in another form it can "
        "read: mysql_clear_password, dialog, sha256_password, caching_sha2_password without verified TLS, or an "
        "unknown plugin); WhaleFall refuses unless the credential allows weak password authentication, and for "
        "clear text only over verified TLS. "
        f"Allowed for this connection: {', '.join(plugins)}. If this is the credential's own server, give the "
        "monitoring account one of those plugins (ALTER USER ... IDENTIFIED WITH ...); someone who may "
        "change credentials can allow weak authentication",
        instance_name=target.name,
    )


# --- the adapter ------------------------------------------------------------------


class MySQLAdapter:
    """Reads MySQL 5.7/8.x and MariaDB 10.x/11.x accounts with mysqlclient."""

    db_type = "mysql"

    def _connect(self, target: ConnectionTarget, *, use_unicode: bool = True) -> Any:
        """Connect: connect_timeout bounds the TCP connect, greeting and login; read_timeout the init command.

        `use_unicode=False` makes the driver hand every text cell over as bytes (see `fetch`).
        `_auth_options` holds the login to `allowed_auth_plugins`: a server that asks for the password
        in a form it can read is refused before the password is sent (a configuration error).
        """
        import MySQLdb

        params: dict[str, Any] = {
            "host": target.host,
            "port": int(target.port),
            "user": target.username,
            "password": target.password,
            "connect_timeout": max(1, math.ceil(target.connect_timeout)),
            "read_timeout": read_timeout(target),
            "write_timeout": read_timeout(target),
            "charset": "utf8mb4",
            "use_unicode": use_unicode,
            "autocommit": True,
            "init_command": "SET time_zone = '+00:00'",
        }
        params.update(tls_params(target))
        # last, from the parameters above (TLS included): which authentication plugins the server may make us run
        params.update(_auth_options(target, params))
        started = time.monotonic()
        try:
            return MySQLdb.connect(**params)
        except MySQLdb.Error as exc:
            repair_driver_error(exc)  # first: a server's non-UTF-8 message would crash whatever reads it
            refused = _weak_auth_refused(exc, target, allowed_auth_plugins(target, params))
            if refused is not None:
                raise refused from None
            raise classify_error(exc, target, phase="connect", elapsed=time.monotonic() - started) from None

    def _now(self) -> datetime:
        return datetime.now(UTC)

    def _server_info(self, counter: QueryCounter) -> ServerInfo:
        variables = {as_text(name): value for name, value in counter.fetchall(_VARIABLES_SQL)}
        return parse_server_info(variables)

    def test_connection(self, target: ConnectionTarget) -> str:
        """Connect and return e.g. "MariaDB 10.11.6"; raises a classified AdapterError."""
        import MySQLdb

        conn = self._connect(target)
        counter: QueryCounter | None = None
        try:
            counter = _counter(conn, target)
            return self._server_info(counter).label
        except MySQLdb.Error as exc:
            elapsed, expired = (None, False) if counter is None else (counter.elapsed, counter.expired)
            raise classify_error(
                exc, target, phase="read the server version", elapsed=elapsed, expired=expired
            ) from None
        finally:
            conn.close()

    def _read(
        self, target: ConnectionTarget, statements: list[int], *, use_unicode: bool = True
    ) -> tuple[ServerInfo, MySQLRows]:
        """Connect, read the server's flavour and every grant table; the statements run are added to `statements`."""
        import MySQLdb

        # the keyword only when it differs: subclasses and wrappers of `_connect` take the target alone
        conn = self._connect(target) if use_unicode else self._connect(target, use_unicode=False)
        counter: QueryCounter | None = None
        try:
            counter = _counter(conn, target)
            try:
                info = self._server_info(counter)
                return info, read_rows(counter, info, secret=target.password)
            except MySQLdb.Error as exc:
                raise classify_error(
                    exc, target, phase="read the grant tables", elapsed=counter.elapsed, expired=counter.expired
                ) from None
        finally:
            statements.append(0 if counter is None else counter.count)
            conn.close()

    @gc_paused()
    def fetch(self, target: ConnectionTarget) -> Catalog:
        """Read every account in a constant number of statements.

        Why a second read in bytes: mysqlclient decodes text cells strictly, so one name that is not
        UTF-8 would fail the whole sync with a UnicodeDecodeError. MariaDB cannot store such a name
        (tests/live/test_mysql_exact.py shows it refusing or replacing the bytes), but a server that
        does is read again with every cell as bytes, which `as_text` decodes with U+FFFD for the bad
        bytes: the sync goes on, the name shows its good part.
        """
        statements: list[int] = []
        try:
            info, rows = self._read(target, statements)
        except UnicodeDecodeError:
            info, rows = self._read(target, statements, use_unicode=False)
        now = self._now()  # the one instant both the digest and the build judge expiry at
        digest = source_digest(target, info, rows, now)
        if unchanged_catalog(target, digest):
            catalog = Catalog(
                server_version=info.label,
                round_trips=sum(statements),
                source_digest=digest,
                unchanged=True,
                coverage=coverage_gaps(rows),
            )
            if info.default_password_lifetime is not None:
                catalog.details["default_password_lifetime"] = info.default_password_lifetime
            return catalog
        try:
            catalog = build_catalog(info, rows, now=now)
        except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
            raise unexpected_contents(target, f"grant table contents on {info.label}", exc) from None
        catalog.round_trips = sum(statements)
        catalog.source_digest = digest
        return catalog.finalize()
