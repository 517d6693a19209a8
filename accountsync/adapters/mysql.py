"""MySQL and MariaDB: every account and everything that decides what it can do.

Why set-based reads: the tools we replace run `SHOW GRANTS FOR` once per
account, which costs one network round trip per account. Here the grant
tables are read whole, a fixed number of statements per instance whatever
the account count, and turned into the canonical snapshot in Python.

The module is split in two halves so recorded rows (MySQL 8 is not
available as a live server here) go through exactly the code live rows do:
`read_rows()` talks to the server and returns plain dicts, `build_catalog()`
is a pure function from those dicts to a `Catalog`.

Password hashes are not wanted: the MariaDB query strips them server-side,
and the row parsers drop any hash column as soon as a row is read, keeping
only whether it was empty.
"""

from __future__ import annotations

import functools
import json
import math
import operator
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from types import MappingProxyType
from typing import Any, NamedTuple

from accountsync.adapters.base import (
    AccountRecord,
    AdapterError,
    Catalog,
    ConnectionFailed,
    ConnectionTarget,
    InternalError,
    PermissionDenied,
    Privilege,
    QueryCounter,
    RoleGrant,
    TimeoutFailed,
    gc_paused,
    make_scope,
    rows_digest,
    scrub,
    unchanged_catalog,
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
    version_string = _text(variables.get("version"))
    comment = _text(variables.get("version_comment"))
    flavor = "mariadb" if "mariadb" in (version_string + " " + comment).lower() else "mysql"
    # MariaDB before 11 may report "5.5.5-10.x" for replication compatibility.
    match = _VERSION_RE.search(version_string.removeprefix("5.5.5-") if flavor == "mariadb" else version_string)
    if not match:
        raise InternalError(f"cannot parse the server version {version_string!r}")
    version = (int(match[1]), int(match[2]), int(match[3]))
    lifetime = variables.get("default_password_lifetime")
    return ServerInfo(
        flavor=flavor,
        version=version,
        version_string=version_string,
        default_password_lifetime=int(lifetime) if lifetime not in (None, "") else None,
    )


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


def _text(value: Any) -> str:
    if type(value) is str:  # the common case, first: it runs for most cells of every row
        return value
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", errors="replace")
    return str(value)


_YES_VALUES = frozenset({"Y", "y", "1", "TRUE", "true", "True", b"Y", b"y", b"1"})
_NO_VALUES = frozenset({"N", "n", "0", "", "FALSE", "false", "False", b"N", b"n", b"0", b"", None})


def _yes(value: Any) -> bool:
    # Set lookups first: this runs for every privilege column of every row.
    if value in _YES_VALUES:
        return True
    if value in _NO_VALUES:
        return False
    return _text(value).upper() in ("Y", "1", "TRUE")


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
    # (field, column names, row tuples) as `read_rows` read them, for the digest only:
    # hashing row tuples costs less than hashing dict rows, which repeat every column name.
    raw: list[tuple[str, tuple[str, ...], list[tuple[Any, ...]]]] = field(
        default_factory=list, repr=False, compare=False
    )


def _digest_source(rows: MySQLRows) -> Any:
    """What `rows_digest` hashes: the tuples as read, or the dict rows when they were not read here."""
    return rows.raw or {name: value for name, value in vars(rows).items() if name != "raw"}


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


@dataclass(slots=True)
class _User:
    user: str
    host: str
    is_role: bool
    identity: str
    global_privs: tuple[str, ...]
    global_all: bool
    global_grant: bool
    attributes: MappingProxyType[str, Any]  # read-only: accounts of one shape share it
    no_password: bool
    default_role: str = ""
    partial_revokes: tuple[tuple[str, str], ...] = ()


def _iso_utc(value: Any) -> str | None:
    if value in (None, "", 0):
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, int | float) or _text(value).isdigit():
        return datetime.fromtimestamp(int(value), tz=UTC).isoformat().replace("+00:00", "Z")
    try:
        return _iso_utc(datetime.fromisoformat(_text(value)))
    except ValueError:
        return _text(value)


def _int_or_none(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


_SSL_TYPES = ("", "ANY", "X509", "SPECIFIED")


class _GlobalPrivShape(NamedTuple):
    """Everything a global_priv row says apart from whose row it is (a tuple: immutable, cheap to make)."""

    is_role: bool
    global_privs: tuple[str, ...]
    global_all: bool
    global_grant: bool
    attributes: MappingProxyType[str, Any]  # read-only: one shape is shared by many accounts
    no_password: bool
    default_role: str


def _global_priv_shape(priv_text: str, auth_empty: Any, version: tuple[int, int, int]) -> _GlobalPrivShape:
    """Parse the Priv JSON (without the top-level hash) and the server's auth_empty flag."""
    priv = json.loads(priv_text or "{}")
    priv.pop("authentication_string", None)
    last_changed = priv.pop("password_last_changed", None)
    return _with_password_change(_global_priv_base(priv, auth_empty, version), last_changed)


def _global_priv_base(priv: dict[str, Any], auth_empty: Any, version: tuple[int, int, int]) -> _GlobalPrivShape:
    """The shape of a parsed Priv JSON taken apart from its password_last_changed."""
    access = int(priv.get("access", 0))
    names, all_set = _decode_access(access, version)
    main_plugin = priv.get("plugin", "") or ""
    main_empty = bool(int(auth_empty or 0))
    # auth_or lists the alternatives in order; `{}` stands for the top-level plugin.
    alternatives: list[tuple[str, bool]] = []
    for alt in priv.get("auth_or") or [{}]:
        if alt.get("plugin") is None and "authentication_string" not in alt:
            alternatives.append((main_plugin, main_empty))
        else:
            alternatives.append((alt.get("plugin", "") or "", not alt.get("authentication_string")))
    is_role = bool(priv.get("is_role", False))
    lifetime = priv.get("password_lifetime")
    attributes = {
        "auth_plugin": " OR ".join(p for p, _ in alternatives),
        "password_expired": False,  # both set by _with_password_change
        "password_lifetime": None if lifetime in (None, -1) else int(lifetime),
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
    return _GlobalPrivShape(
        is_role=is_role,
        global_privs=names,
        global_all=all_set,
        global_grant=bool(access & GRANT_BIT),
        attributes=MappingProxyType(attributes),
        no_password=any(p in PASSWORD_PLUGINS and empty for p, empty in alternatives),
        default_role=_text(priv.get("default_role", "")),
    )


def _with_password_change(shape: _GlobalPrivShape, last_changed: Any) -> _GlobalPrivShape:
    """`shape` for an account whose password last changed at `last_changed` (0: expired, None: never)."""
    if last_changed is None:
        return shape  # the base already says: not expired, no change time
    attributes = shape.attributes.copy()
    attributes["password_expired"] = last_changed == 0
    attributes["password_last_changed"] = _iso_utc(last_changed)
    return shape._replace(attributes=MappingProxyType(attributes))


class _GlobalPrivMemo:
    """Per-`build_catalog` memo of parsed global_priv rows (one call, so one server version).

    Two levels. Accounts created by one script in the same second have identical Priv
    JSON: the text alone is the key. But most fleets set each password at its own time,
    so password_last_changed differs while the rest repeats: the repr of the rest of the
    parsed JSON keys the shared part (for JSON values, equal reprs mean equal values of
    equal types, e.g. 1, 1.0 and true all differ), and only the two password-change
    attributes are worked out per account. Shapes are immutable, so sharing them is safe.
    """

    def __init__(self, version: tuple[int, int, int]) -> None:
        self.version = version
        self._by_text: dict[tuple[str, Any], _GlobalPrivShape] = {}
        self._by_rest: dict[tuple[str, Any], _GlobalPrivShape] = {}

    def shape(self, priv_text: str, auth_empty: Any) -> _GlobalPrivShape:
        key = (priv_text, auth_empty)
        try:
            return self._by_text[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable auth_empty: nothing to share
            return _global_priv_shape(priv_text, auth_empty, self.version)
        priv = json.loads(priv_text or "{}")
        priv.pop("authentication_string", None)
        last_changed = priv.pop("password_last_changed", None)
        rest = (repr(priv), auth_empty)
        base = self._by_rest.get(rest)
        if base is None:
            base = self._by_rest[rest] = _global_priv_base(priv, auth_empty, self.version)
        shape = self._by_text[key] = _with_password_change(base, last_changed)
        return shape


def _parse_global_priv_row(row: Mapping[str, Any], info: ServerInfo, memo: _GlobalPrivMemo | None = None) -> _User:
    """A MariaDB >= 10.4 mysql.global_priv row (Priv JSON without the top-level hash).

    With a `memo`, accounts of one shape share its parsed, immutable part.
    """
    user, host = _text(row["User"]), _text(row["Host"])
    priv_text, auth_empty = _text(row["Priv"]), row.get("auth_empty")
    if memo is None:
        shape = _global_priv_shape(priv_text, auth_empty, info.version)
    else:
        shape = memo.shape(priv_text, auth_empty)
    return _User(
        user=user,
        host=host,
        is_role=shape.is_role,
        identity=account_identity(user, host, is_role=shape.is_role),
        global_privs=shape.global_privs,
        global_all=shape.global_all,
        global_grant=shape.global_grant,
        attributes=shape.attributes,
        no_password=shape.no_password,
        default_role=shape.default_role,
    )


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
            grant = _yes(value)
        elif _yes(value):
            granted.append(name)
        else:
            all_set = False
    return tuple(granted), all_set, grant


_FlagMemo = dict[tuple[_PrivPlan, tuple[Any, ...]], tuple[tuple[str, ...], bool, bool]]


def _priv_columns(row: Mapping[str, Any], memo: _FlagMemo | None = None) -> tuple[tuple[str, ...], bool, bool]:
    """`<Stem>_priv` Y/N columns -> (names, every privilege set?, grant option?).

    With a `memo`, rows holding the same flags share one (immutable) answer: mysql.db
    has a row per account and schema, but a fleet has only a few distinct flag sets.
    Only flags made of str, bytes and None are memoised: for those, equal values give
    equal `_yes` answers, which is not true of numbers (1 == 1.0, yet "1.0" is not yes).
    """
    plan = _priv_plan(tuple(row))
    flags = plan.read(row)
    if memo is None:
        return _decode_flags(plan.names, flags)
    key = (plan, flags)
    try:
        return memo[key]
    except KeyError:
        pass
    except TypeError:  # an unhashable value: nothing to share
        return _decode_flags(plan.names, flags)
    decoded = _decode_flags(plan.names, flags)
    if all(value is None or type(value) is str or type(value) is bytes for value in flags):
        memo[key] = decoded
    return decoded


def _parse_user_table_row(row: Mapping[str, Any], info: ServerInfo, flag_memo: _FlagMemo | None = None) -> _User:
    """A mysql.user row (MySQL 5.7/8, MariaDB < 10.4); hash columns are dropped here."""
    row = dict(row)
    for secret in ("authentication_string", "Password"):
        row.pop(secret, None)
    # MySQL 8 User_attributes: partial revokes and login locking; it may also hold a
    # secondary password hash (RETAIN CURRENT PASSWORD), which is dropped here.
    extra = json.loads(_text(row.pop("User_attributes", None)) or "null") or {}
    extra.pop("additional_password", None)
    user, host = _text(row["User"]), _text(row["Host"])
    names, all_set, grant = _priv_columns(row, flag_memo)
    is_role = info.is_mariadb and _yes(row.get("is_role"))
    plugin = _text(row.get("plugin"))
    lifetime = row.get("password_lifetime")
    attributes = {
        "auth_plugin": plugin,
        "password_expired": _yes(row.get("password_expired")),
        "password_lifetime": _int_or_none(lifetime),
        "password_last_changed": _iso_utc(row.get("password_last_changed")),
        "locked": _yes(row.get("account_locked")),
        "max_questions": int(row.get("max_questions") or 0),
        "max_updates": int(row.get("max_updates") or 0),
        "max_connections": int(row.get("max_connections") or 0),
        "max_user_connections": int(row.get("max_user_connections") or 0),
        "ssl_type": _text(row.get("ssl_type")),
        "ssl_cipher": _text(row.get("ssl_cipher")),
        "x509_issuer": _text(row.get("x509_issuer")),
        "x509_subject": _text(row.get("x509_subject")),
        "is_role": is_role,
    }
    locking = extra.get("Password_locking") or {}
    if locking:
        attributes["failed_login_attempts"] = int(locking.get("failed_login_attempts", 0))
        attributes["password_lock_time_days"] = int(locking.get("password_lock_time_days", 0))
    # MySQL 8 never prints ALL PRIVILEGES for *.*: it lists the static privileges.
    collapse = info.is_mariadb or info.version < (8, 0, 0)
    return _User(
        user=user,
        host=host,
        is_role=is_role,
        identity=account_identity(user, host, is_role=is_role),
        global_privs=names,
        global_all=all_set and collapse,
        global_grant=grant,
        attributes=MappingProxyType(attributes),
        no_password=plugin in PASSWORD_PLUGINS and bool(int(row.get("auth_empty") or 0)),
        default_role=_text(row.get("default_role")),
        partial_revokes=tuple(
            (_text(r["Database"]), _text(name).upper())
            for r in extra.get("Restrictions") or []
            for name in r.get("Privileges") or []
        ),
    )


def _set_members(value: Any) -> list[str]:
    if isinstance(value, set | frozenset | list | tuple):
        items = [_text(v) for v in value]
    else:
        items = [p for p in _text(value).split(",") if p]
    return [i.strip() for i in items if i.strip()]


def _level_privileges(
    scope: str, names: Iterable[str], grant: bool, all_set: bool, *, empty_ok: bool = False
) -> list[Privilege]:
    """One level's privileges; all of them collapse to ALL PRIVILEGES as SHOW GRANTS prints.

    GRANT OPTION is not a privilege of its own: every privilege at the level is
    grantable, and a level holding only GRANT OPTION shows as grantable USAGE.
    """
    names = sorted(set(names))
    if all_set and names:
        names = ["ALL PRIVILEGES"]
    if not names:
        return [Privilege(scope, "USAGE", True)] if grant and not empty_ok else []
    return [Privilege(scope, name, grant) for name in names]


_SUPER_NAMES = frozenset({"ALL PRIVILEGES", "SUPER"})
_NO_NAMES: frozenset[str] = frozenset()


class _Memo:
    """Per-`build_catalog` memo of the pure per-row computations.

    Why: at 10,000 accounts the same few privilege shapes, scopes and role grants come
    back on row after row, so each is worked out once per fetch. The memo lives for one
    call: it is bounded by that fetch's rows and never grows across a long-running
    worker. What it hands out is immutable (tuples, frozensets, frozen `Privilege` and
    `RoleGrant`), so accounts can share it; their own lists are copies (`list += tuple`).
    """

    def __init__(self) -> None:
        self.flags: _FlagMemo = {}
        self._levels: dict[tuple[str, tuple[str, ...], bool, bool, bool], tuple[Privilege, ...]] = {}
        self._scopes: dict[tuple[str, ...], str] = {}
        self._set_values: dict[str, tuple[tuple[str, ...], bool]] = {}
        self._role_grants: dict[tuple[str, bool, bool], RoleGrant] = {}
        self._global_names: dict[tuple[tuple[str, ...], bool], frozenset[str]] = {}

    # Keys below are always hashable (str, tuples of str, bools), so plain `dict.get` will do.

    def level(
        self, scope: str, names: tuple[str, ...], grant: bool, all_set: bool, *, empty_ok: bool = False
    ) -> tuple[Privilege, ...]:
        """`_level_privileges`, shared; grant and all_set are real bools (True == 1 would share keys)."""
        key = (scope, names, grant, all_set, empty_ok)
        shared = self._levels.get(key)
        if shared is None:
            shared = self._levels[key] = tuple(_level_privileges(scope, names, grant, all_set, empty_ok=empty_ok))
        return shared

    def scope(self, level: str, *parts: str) -> str:
        """`make_scope` for already-decoded name parts."""
        key = (level, *parts)
        scope = self._scopes.get(key)
        if scope is None:
            scope = self._scopes[key] = make_scope(level, *parts)
        return scope

    def set_privileges(self, value: Any) -> tuple[tuple[str, ...], bool]:
        """A Table_priv/Proc_priv SET value -> (privilege names, grant option?); memoised for str values only."""
        parsed = self._set_values.get(value) if type(value) is str else None
        if parsed is None:
            members = _set_members(value)
            grant = any(m.lower() == "grant" for m in members)
            parsed = tuple(_SET_MEMBERS.get(m.lower(), m.upper()) for m in members if m.lower() != "grant"), grant
            if type(value) is str:
                self._set_values[value] = parsed
        return parsed

    def role_grant(self, role: str, admin_option: bool, default: bool) -> RoleGrant:
        key = (role, admin_option, default)
        grant = self._role_grants.get(key)
        if grant is None:
            grant = self._role_grants[key] = RoleGrant(role, admin_option, default)
        return grant

    def global_names(self, names: tuple[str, ...], all_set: bool) -> frozenset[str]:
        """Global privilege names, plus ALL PRIVILEGES when the level has them all."""
        key = (names, all_set)
        expanded = self._global_names.get(key)
        if expanded is None:
            expanded = frozenset(names) | ({"ALL PRIVILEGES"} if all_set else frozenset())
            self._global_names[key] = expanded
        return expanded


def build_catalog(info: ServerInfo, rows: MySQLRows) -> Catalog:
    """Turn the fetched rows into accounts with canonical privileges, roles and capabilities."""
    memo = _Memo()
    if info.uses_global_priv:
        shapes = _GlobalPrivMemo(info.version)
        users = [_parse_global_priv_row(row, info, shapes) for row in rows.users]
    else:
        users = [_parse_user_table_row(row, info, memo.flags) for row in rows.users]
    role_identity = {u.user: u.identity for u in users if u.is_role}

    identities: dict[tuple[str, str], str] = {(u.user, u.host): u.identity for u in users}

    def identity_of(user: Any, host: Any) -> str:
        key = (user, host) if type(user) is str and type(host) is str else (_text(user), _text(host))
        known = identities.get(key)
        return known if known is not None else account_identity(*key)

    privileges: dict[str, list[Privilege]] = defaultdict(list)
    expanded_global: dict[str, frozenset[str]] = {}
    for u in users:
        privileges[u.identity] += memo.level("global", u.global_privs, u.global_grant, u.global_all)
        expanded_global[u.identity] = memo.global_names(u.global_privs, u.global_all)
        # MySQL 8 partial revokes take a global privilege away on one schema: a deny there.
        if u.partial_revokes:
            privileges[u.identity] += [
                Privilege(make_scope("database", db), name, False, "DENY") for db, name in u.partial_revokes
            ]

    for row in rows.global_grants:  # MySQL 8 dynamic privileges
        ident = identity_of(row["USER"], row["HOST"])
        name = _text(row["PRIV"]).upper()
        privileges[ident].append(Privilege("global", name, _yes(row.get("WITH_GRANT_OPTION"))))
        expanded_global[ident] = expanded_global.get(ident, _NO_NAMES) | {name}

    for row in rows.db:
        names, all_set, grant = _priv_columns(row, memo.flags)
        scope = memo.scope("database", _text(row["Db"]))
        privileges[identity_of(row["User"], row["Host"])] += memo.level(scope, names, grant, all_set)

    table_all = _TABLE_ALL_MARIADB if info.is_mariadb else _TABLE_ALL_MYSQL
    table_grant: dict[tuple[str, str, str], bool] = {}
    columns_by_table: dict[tuple[str, str, str], list[Privilege]] = defaultdict(list)
    for row in rows.columns:
        key = (identity_of(row["User"], row["Host"]), _text(row["Db"]), _text(row["Table_name"]))
        scope = make_scope("column", key[1], key[2], _text(row["Column_name"]))
        for member in _set_members(row["Column_priv"]):
            columns_by_table[key].append(Privilege(scope, _SET_MEMBERS[member.lower()]))
    for row in rows.tables:
        key = (identity_of(row["User"], row["Host"]), _text(row["Db"]), _text(row["Table_name"]))
        names, grant = memo.set_privileges(row["Table_priv"])
        if key in columns_by_table:  # the only keys the column loop below looks up
            table_grant[key] = grant
        scope = memo.scope("object", key[1], key[2])
        privileges[key[0]] += memo.level(
            scope, names, grant, table_all <= set(names), empty_ok=bool(columns_by_table.get(key))
        )
    for key, column_privs in columns_by_table.items():
        grant = table_grant.get(key, False)
        privileges[key[0]] += [Privilege(p.scope, p.privilege, grant) for p in column_privs]

    for row in rows.procs:
        names, grant = memo.set_privileges(row["Proc_priv"])
        scope = routine_scope(_text(row["Db"]), _text(row["Routine_name"]), _text(row["Routine_type"]))
        privileges[identity_of(row["User"], row["Host"])] += memo.level(scope, names, grant, False)

    for row in rows.proxies:
        scope = "proxy:" + identity_of(row["Proxied_user"], row["Proxied_host"])
        privileges[identity_of(row["User"], row["Host"])].append(
            Privilege(scope, "PROXY", bool(int(row.get("With_grant") or 0)))
        )

    roles: dict[str, list[RoleGrant]] = defaultdict(list)
    default_of = {u.identity: u.default_role for u in users}
    grantee_is_role = {u.identity: u.is_role for u in users}
    for row in rows.roles_mapping:  # MariaDB
        grantee = identity_of(row["User"], row["Host"])
        role_name = _text(row["Role"])
        role = role_identity.get(role_name) or account_identity(role_name, "", is_role=True)
        # A role held by a role is active whenever its holder is.
        default = grantee_is_role.get(grantee, False) or default_of.get(grantee) == role_name
        roles[grantee].append(memo.role_grant(role, _yes(row.get("Admin_option")), default))

    defaults = {
        (identity_of(r["USER"], r["HOST"]), identity_of(r["DEFAULT_ROLE_USER"], r["DEFAULT_ROLE_HOST"]))
        for r in rows.default_roles
    }
    mysql_roles: set[str] = set()
    for row in rows.role_edges:  # MySQL 8
        role = identity_of(row["FROM_USER"], row["FROM_HOST"])
        grantee = identity_of(row["TO_USER"], row["TO_HOST"])
        mysql_roles.add(role)
        roles[grantee].append(memo.role_grant(role, _yes(row.get("WITH_ADMIN_OPTION")), (grantee, role) in defaults))

    catalog = Catalog(server_version=info.label)
    for u in users:
        is_role = u.is_role or u.identity in mysql_roles
        attributes = u.attributes.copy()  # the account's own dict (dict(proxy) takes the slow path)
        attributes["is_role"] = is_role
        privs = privileges.get(u.identity, [])
        held = roles.get(u.identity, [])
        caps = _capabilities(u, attributes, privs, held, expanded_global.get(u.identity, _NO_NAMES))
        catalog.accounts.append(
            AccountRecord(
                identity=u.identity,
                username=u.user,
                kind="role" if is_role else "user",
                host=None if u.is_role else u.host,
                is_superuser="SUPERUSER" in caps,
                is_locked=bool(attributes["locked"]),
                attributes=attributes,
                privileges=privs,
                roles=held,
                capabilities=caps,
            )
        )
    catalog.details["flavor"] = info.flavor
    if info.default_password_lifetime is not None:
        catalog.details["default_password_lifetime"] = info.default_password_lifetime
    return catalog


@functools.lru_cache(maxsize=256)
def _global_capabilities(global_names: frozenset[str]) -> frozenset[str]:
    """What the global privileges alone give; cached: accounts share a few global privilege sets."""
    caps: set[str] = set()
    everything = "ALL PRIVILEGES" in global_names
    if global_names & _SUPER_NAMES:
        caps.add("SUPERUSER")
    for name, cap in (("CREATE USER", "CREATE_USER"), ("FILE", "FILE_ACCESS"), ("SHUTDOWN", "SHUTDOWN")):
        if everything or name in global_names:
            caps.add(cap)
    return frozenset(caps)


def _capabilities(
    u: _User,
    attributes: Mapping[str, Any],
    privs: list[Privilege],
    held: list[RoleGrant],
    global_names: frozenset[str],
) -> set[str]:
    caps = set(_global_capabilities(global_names))
    if any(p.grantable for p in privs) or any(r.admin_option for r in held):
        caps.add("GRANT_ADMIN")
    if attributes["locked"]:
        caps.add("LOCKED")
    if attributes["password_expired"]:
        caps.add("EXPIRED")
    if not u.is_role:
        if u.no_password:
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
    "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('version', 'version_comment', 'default_password_lifetime')"
)
_GLOBAL_PRIV_SQL = (
    "SELECT User, Host, JSON_REMOVE(Priv, '$.authentication_string') AS Priv, "
    "IFNULL(JSON_VALUE(Priv, '$.authentication_string'), '') = '' AS auth_empty FROM mysql.global_priv"
)
_USER_SQL = "SELECT u.*, u.authentication_string = '' AS auth_empty FROM mysql.user u"
_USER_SQL_OLD_MARIADB = "SELECT u.*, (u.authentication_string = '' AND u.Password = '') AS auth_empty FROM mysql.user u"


def read_rows(counter: QueryCounter, info: ServerInfo) -> MySQLRows:
    """Read every catalog table the flavour has, one statement each."""
    rows = MySQLRows()

    def read(name: str, sql: str) -> list[dict[str, Any]]:
        """One table as dict rows; the tuples as read are kept in `rows.raw` for the digest."""
        tuples = counter.fetchall(sql)
        columns = tuple(d[0] for d in counter.cursor.description or ())
        rows.raw.append((name, columns, tuples))
        return list(map(dict, map(zip, repeat(columns), tuples)))  # [dict(zip(columns, row)) ...], in C

    if info.uses_global_priv:
        rows.users = read("users", _GLOBAL_PRIV_SQL)
    elif info.is_mariadb:
        rows.users = read("users", _USER_SQL_OLD_MARIADB)
    else:
        rows.users = read("users", _USER_SQL)
    rows.db = read("db", "SELECT * FROM mysql.db")
    rows.tables = read("tables", "SELECT User, Host, Db, Table_name, Table_priv FROM mysql.tables_priv")
    rows.columns = read(
        "columns", "SELECT User, Host, Db, Table_name, Column_name, Column_priv FROM mysql.columns_priv"
    )
    rows.procs = read("procs", "SELECT User, Host, Db, Routine_name, Routine_type, Proc_priv FROM mysql.procs_priv")
    rows.proxies = read("proxies", "SELECT User, Host, Proxied_user, Proxied_host, With_grant FROM mysql.proxies_priv")
    if info.is_mariadb:
        rows.roles_mapping = read("roles_mapping", "SELECT User, Host, Role, Admin_option FROM mysql.roles_mapping")
    elif info.has_mysql_roles:
        rows.role_edges = read(
            "role_edges", "SELECT FROM_USER, FROM_HOST, TO_USER, TO_HOST, WITH_ADMIN_OPTION FROM mysql.role_edges"
        )
        rows.default_roles = read(
            "default_roles", "SELECT USER, HOST, DEFAULT_ROLE_USER, DEFAULT_ROLE_HOST FROM mysql.default_roles"
        )
        rows.global_grants = read(
            "global_grants", "SELECT USER, HOST, PRIV, WITH_GRANT_OPTION FROM mysql.global_grants"
        )
    return rows


# --- errors -----------------------------------------------------------------------

_AUTH_ERRORS = {1045, 1698, 1044}
_PRIVILEGE_ERRORS = {1142, 1143, 1227, 1370}
_CONNECT_ERRORS = {2002, 2003, 2005, 2006, 2026, 1129, 1130, 1040}
_TIMEOUT_ERRORS = {2013, 3024, 1969}


def _who(target: ConnectionTarget) -> str:
    return f"{target.username!r} at {target.host}:{target.port}"


def classify_error(exc: Exception, target: ConnectionTarget, *, phase: str) -> AdapterError:
    """Map a mysqlclient error to the classified error users see (no password in it)."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    detail = scrub(_text(exc.args[1] if len(exc.args) > 1 else exc), target.password)
    name = target.name
    if code in _AUTH_ERRORS and phase == "connect":
        return PermissionDenied(
            f"authentication failed for {_who(target)} ({detail}); check the credential's user name and password "
            "and that the account may connect from this host",
            instance_name=name,
        )
    if code in _PRIVILEGE_ERRORS or code in _AUTH_ERRORS:
        return PermissionDenied(
            f"the monitoring account {target.username!r} cannot read the grant tables ({detail}); run "
            f"GRANT SELECT ON mysql.* TO <monitoring account> (see {MONITORING_DOC})",
            instance_name=name,
        )
    if code in _TIMEOUT_ERRORS or "timed out" in detail.lower() or "timeout" in detail.lower():
        limit = target.connect_timeout if phase == "connect" else target.query_timeout
        return TimeoutFailed(
            f"no answer from {target.host}:{target.port} within {limit:g}s while trying to {phase} ({detail}); "
            "check that this is a MySQL/MariaDB port, or raise the timeout",
            instance_name=name,
        )
    if code in _CONNECT_ERRORS or phase == "connect":
        return ConnectionFailed(
            f"cannot connect to {target.host}:{target.port} ({detail}); check host, port, firewall and that "
            "the server is running",
            instance_name=name,
        )
    return InternalError(f"unexpected server error while trying to {phase} ({detail})", instance_name=name)


# --- the adapter ------------------------------------------------------------------


class MySQLAdapter:
    """Reads MySQL 5.7/8.x and MariaDB 10.x/11.x accounts with mysqlclient."""

    db_type = "mysql"

    def _connect(self, target: ConnectionTarget) -> Any:
        import MySQLdb

        try:
            return MySQLdb.connect(
                host=target.host,
                port=int(target.port),
                user=target.username,
                password=target.password,
                connect_timeout=max(1, math.ceil(target.connect_timeout)),
                read_timeout=max(1, math.ceil(target.query_timeout)),
                write_timeout=max(1, math.ceil(target.query_timeout)),
                charset="utf8mb4",
                autocommit=True,
                init_command="SET time_zone = '+00:00'",
            )
        except MySQLdb.Error as exc:
            raise classify_error(exc, target, phase="connect") from None

    def _server_info(self, counter: QueryCounter) -> ServerInfo:
        variables = {_text(name): value for name, value in counter.fetchall(_VARIABLES_SQL)}
        return parse_server_info(variables)

    def test_connection(self, target: ConnectionTarget) -> str:
        """Connect and return e.g. "MariaDB 10.11.6"; raises a classified AdapterError."""
        import MySQLdb

        conn = self._connect(target)
        try:
            return self._server_info(QueryCounter(conn.cursor())).label
        except MySQLdb.Error as exc:
            raise classify_error(exc, target, phase="read the server version") from None
        finally:
            conn.close()

    @gc_paused()
    def fetch(self, target: ConnectionTarget) -> Catalog:
        """Read every account in a constant number of statements."""
        import MySQLdb

        conn = self._connect(target)
        try:
            counter = QueryCounter(conn.cursor())
            try:
                info = self._server_info(counter)
                rows = read_rows(counter, info)
            except MySQLdb.Error as exc:
                raise classify_error(exc, target, phase="read the grant tables") from None
        finally:
            conn.close()
        digest = rows_digest(__file__, target, info, _digest_source(rows))
        if unchanged_catalog(target, digest):
            catalog = Catalog(
                server_version=info.label, round_trips=counter.count, source_digest=digest, unchanged=True
            )
            if info.default_password_lifetime is not None:
                catalog.details["default_password_lifetime"] = info.default_password_lifetime
            return catalog
        try:
            catalog = build_catalog(info, rows)
        except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
            raise InternalError(
                f"unexpected grant table contents on {info.label}: {type(exc).__name__}: {exc}",
                instance_name=target.name,
            ) from None
        catalog.round_trips = counter.count
        catalog.source_digest = digest
        return catalog.finalize()
