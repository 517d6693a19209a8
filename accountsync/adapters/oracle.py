"""Oracle Database: users, roles and grants from the DBA_ dictionary views.

Why set-based reads: one statement per dictionary view, whatever the number of
accounts, instead of one `DBMS_METADATA.GET_GRANTED_DDL` call per account.

The module has two halves so recorded rows (no Oracle server runs in CI) go
through exactly the code live rows do: `read_rows()` sends the statements and
returns plain dicts, `build_catalog()` is a pure function from those dicts to
a `Catalog`. Rows are modelled on Oracle Database 19c (column names and types
from the 19c Database Reference; 21c and 23ai keep these columns); which
statements are sent depends on the release the connection reports
(`statements()`): 12.1 and 12.2 have no VERSION_FULL, 23ai adds
DBA_SCHEMA_PRIVS. Releases before 12.1 are refused by thin mode itself
(DPY-3010), which `classify_error` turns into a configuration error.

Scopes. Inside an Oracle instance (or a PDB, which is what a service name
reaches) there is no database level, so the database part of the canonical
scope is dropped, as MySQL drops the schema part:
``object:<OWNER>.<NAME>``, ``column:<OWNER>.<TABLE>.<COLUMN>``, 23ai schema
privileges ``schema:<SCHEMA>``, the right to connect through another user
(DBA_PROXIES) ``proxy:<CLIENT>``; system privileges and administrative
privileges (SYSDBA, ...) are ``global``.

Capability rules (direct grants; roles add theirs through `Catalog.finalize`):

=================  ==========================================================
SUPERUSER          the role DBA, or an escalation route (`_ROUTES`, each with
                   its reason in `capability_reasons`): SYSDBA, GRANT ANY
                   PRIVILEGE/ROLE/OBJECT PRIVILEGE, ALTER USER, BECOME USER,
                   CREATE ANY PROCEDURE + EXECUTE ANY PROCEDURE (also when
                   roles bring the two together), CREATE ANY TRIGGER, CREATE
                   ANY JOB, CREATE EXTERNAL JOB, ALTER SYSTEM, CREATE ANY
                   DIRECTORY; 23ai schema privileges with the same effect on
                   a superuser's schema; and a proxy (CONNECT THROUGH without
                   AUTHENTICATION REQUIRED) into a superuser account.
                   SYSBACKUP/SYSDG/SYSKM cannot read data: excluded.
SHUTDOWN           SYSOPER (start up, shut down, recover).
BYPASS_RLS         EXEMPT ACCESS POLICY (no VPD policy applies).
FILE_ACCESS        CREATE ANY DIRECTORY.
GRANT_ADMIN        any ADMIN_OPTION = 'YES' (role, system or schema
                   privilege), any GRANTABLE = 'YES' (object or column), or a
                   GRANT ANY ... system privilege.
CREATE_USER        CREATE USER or ALTER USER.
LOCKED             the account status as of now contains LOCKED or LOCKED(TIMED).
EXPIRED            the account status as of now contains EXPIRED (not
                   EXPIRED(GRACE), which still logs in: attribute ``password_grace``).
=================  ==========================================================

Status as of now. ACCOUNT_STATUS is updated only when the account next tries to
log in, so the adapter reads the server's SYSDATE and works out what the status
is now (`status_now`): an OPEN or EXPIRED(GRACE) account whose EXPIRY_DATE has
passed is EXPIRED, and a LOCKED(TIMED) account whose lock time (LOCK_DATE plus
its profile's PASSWORD_LOCK_TIME, from DBA_PROFILES) has passed is open again.
``account_status`` keeps what the view says; ``account_status_now`` and
``status_reasons`` are added when the two differ, and the flags and
capabilities follow the status as of now.

AUTHENTICATION_TYPE 'NONE' on a user is a schema-only account (18c+): it
cannot log in at all, so it is the opposite of MySQL's NO_PASSWORD risk and is
recorded as attribute ``schema_only`` instead of a capability.

Oracle-maintained accounts (ORACLE_MAINTAINED = 'Y': SYS, SYSTEM, DBSNMP, DBA,
SELECT_CATALOG_ROLE, ...) are shown with their status and grants and marked by
the attribute ``oracle_maintained``. The instance option
``{"include_oracle_maintained": false}`` leaves them out. Leaving them out must
not hide what they give: a user granted DBA still shows the role DBA and is
still SUPERUSER. So the whole catalog is finalized first, then the maintained
accounts are removed and what the kept accounts inherited through them is
folded into their own `capabilities` (and their reasons); finalizing the
smaller catalog again gives the same answer. The removed names are listed in
``Catalog.details["excluded_oracle_maintained"]``.

PUBLIC. Grants to PUBLIC belong to every account. Oracle grants PUBLIC tens of
thousands of privileges on its own objects; those defaults go to
``Catalog.details["public_grants"]`` (stored once per sync of the instance, in
the sync's details), never into an account's snapshot. What PUBLIC holds beyond
the defaults (any system privilege or role, and privileges on objects whose owner
is not an Oracle-maintained user) is the snapshot of the pseudo-role account
``PUBLIC`` (kind role, attribute ``pseudo_role``), so it is diffed, logged and
reported by the PUBLIC_GRANTS finding. What PUBLIC's grants make possible
reaches every user: the inheritable capabilities PUBLIC holds (e.g. after
``GRANT DBA TO PUBLIC``) are added to every user's capabilities.

Containers. Connected to a PDB's service, the DBA_ views show that PDB (C##
common users appear there as users with ``common``). Connected to CDB$ROOT
(V$CONTAINERS lists CON_ID 1) the account views are read through their CDB_
twins (`root_statement`: the same columns plus CON_ID, and COMMON on the grant
views), and `build_catalog` builds each container on its own: the root's
accounts keep their names, a PDB's are ``<PDB>::<NAME>`` (attribute
``container``; the roles they hold qualified alike), so a common user is one
account per container it exists in; grants made commonly are listed in the
attribute ``common_grants``. Each PDB the CDB_ views returned no rows of (not
open, or not in the monitoring account's CONTAINER_DATA) is a coverage gap
``container:<PDB>`` with that reason; `OracleCatalog.account_scope` tells the
engine that a PDB's accounts live inside it, so a PDB read before and closed
now keeps them as last known.
"""

from __future__ import annotations

import functools
import re
import threading
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from accountsync.adapters.base import (
    INHERITABLE_CAPABILITIES,
    AccountRecord,
    AdapterError,
    Catalog,
    ConfigurationError,
    ConnectionTarget,
    CoverageGap,
    InternalError,
    PermissionDenied,
    Privilege,
    QueryCounter,
    RoleGrant,
    account_at,
    as_text,
    connection_failed,
    connection_lost,
    endpoint,
    gc_paused,
    is_yes,
    iso_timestamp,
    login_failed,
    make_scope,
    no_answer,
    scrub,
    timeout_failed,
    tls_verify_failed,
    unexpected_contents,
    unexpected_error,
)
from config.scopes import split_scope

MONITORING_DOC = "docs/monitoring-accounts.md, Oracle"
MODELLED_VERSION = "19c"
OLDEST_SUPPORTED = (12, 1)  # thin mode refuses older servers (DPY-3010)

# --- the statements ---------------------------------------------------------------
# Column lists are explicit so a new column in a later release changes nothing. Only
# columns every supported release (12.1.0.2 on) has are read, except where the
# release decides (`statements`). DBA_USERS.LAST_LOGIN is read but kept at day
# precision: it changes at every login and would otherwise turn every sync into an
# attribute change.

VERSION_SQL = "SELECT PRODUCT, VERSION, VERSION_FULL FROM PRODUCT_COMPONENT_VERSION"
VERSION_SQL_12C = "SELECT PRODUCT, VERSION FROM PRODUCT_COMPONENT_VERSION"  # VERSION_FULL: 18c and later
CLOCK_SQL = "SELECT SYSDATE FROM DUAL"  # the server's clock: DATE columns are in its time
CONTAINERS_SQL = "SELECT CON_ID, NAME, OPEN_MODE FROM V$CONTAINERS"
USERS_SQL = (
    "SELECT USERNAME, USER_ID, ACCOUNT_STATUS, LOCK_DATE, EXPIRY_DATE, DEFAULT_TABLESPACE, "
    "TEMPORARY_TABLESPACE, CREATED, PROFILE, EXTERNAL_NAME, AUTHENTICATION_TYPE, PROXY_ONLY_CONNECT, "
    "COMMON, LAST_LOGIN, ORACLE_MAINTAINED FROM DBA_USERS"
)
ROLES_SQL = "SELECT ROLE, PASSWORD_REQUIRED, AUTHENTICATION_TYPE, COMMON, ORACLE_MAINTAINED FROM DBA_ROLES"
ROLE_PRIVS_SQL = "SELECT GRANTEE, GRANTED_ROLE, ADMIN_OPTION, DEFAULT_ROLE FROM DBA_ROLE_PRIVS"
SYS_PRIVS_SQL = "SELECT GRANTEE, PRIVILEGE, ADMIN_OPTION FROM DBA_SYS_PRIVS"
TAB_PRIVS_SQL = "SELECT GRANTEE, OWNER, TABLE_NAME, PRIVILEGE, GRANTABLE, TYPE FROM DBA_TAB_PRIVS"
COL_PRIVS_SQL = "SELECT GRANTEE, OWNER, TABLE_NAME, COLUMN_NAME, PRIVILEGE, GRANTABLE FROM DBA_COL_PRIVS"
PWFILE_SQL = "SELECT USERNAME, SYSDBA, SYSOPER, SYSASM, SYSBACKUP, SYSDG, SYSKM, LAST_LOGIN FROM V$PWFILE_USERS"
PWFILE_SQL_121 = "SELECT USERNAME, SYSDBA, SYSOPER, SYSASM, SYSBACKUP, SYSDG, SYSKM FROM V$PWFILE_USERS"
PROXIES_SQL = "SELECT PROXY, CLIENT, AUTHENTICATION, AUTHORIZATION_CONSTRAINT, ROLE, PROXY_AUTHORITY FROM DBA_PROXIES"
PROFILES_SQL = "SELECT PROFILE, RESOURCE_NAME, LIMIT FROM DBA_PROFILES WHERE RESOURCE_NAME = 'PASSWORD_LOCK_TIME'"
SCHEMA_PRIVS_SQL = "SELECT GRANTEE, PRIVILEGE, SCHEMA, ADMIN_OPTION FROM DBA_SCHEMA_PRIVS"  # 23ai and later

ROOT_CON_ID, SEED_CON_ID = 1, 2  # CDB$ROOT, PDB$SEED (a template, never an account's home)
# Connected to CDB$ROOT, each account view is read through its CDB_ twin: the DBA_ view's columns plus
# CON_ID (the container a row belongs to), and COMMON on the grant views (granted commonly or locally).
# A field not listed keeps its statement (V$PWFILE_USERS is CDB-wide already, its CON_ID is read).
_CDB_VIEWS: dict[str, bool] = {  # field -> whether the statement also reads COMMON
    "users": False,
    "roles": False,
    "role_privs": True,
    "sys_privs": True,
    "tab_privs": True,
    "col_privs": True,
    "proxies": False,
    "profiles": False,
    "schema_privs": True,
}


def cdb_sql(sql: str, *, common: bool) -> str:
    """The CDB_ twin of a DBA_ statement: the same columns, COMMON if asked, and CON_ID."""
    head, rest = sql.split(" FROM DBA_", 1)
    return f"{head}{', COMMON' if common else ''}, CON_ID FROM CDB_{rest}"


def root_statement(read: Read) -> Read:
    """What is sent instead of `read` once the connection turned out to be CDB$ROOT."""
    if read.field in _CDB_VIEWS:
        return Read(read.field, cdb_sql(read.sql, common=_CDB_VIEWS[read.field]), read.optional)
    if read.field == "pwfile":
        return Read(read.field, read.sql.replace(" FROM V$PWFILE_USERS", ", CON_ID FROM V$PWFILE_USERS"), read.optional)
    return read


@dataclass(frozen=True)
class Read:
    """One statement: which `OracleRows` field it fills, and what a refusal to read it means.

    `optional`: a monitoring account may lack SELECT on this view (the narrowest grants of
    older WhaleFall releases did not name it); ORA-00942/ORA-01031 then leaves the field
    empty and the view in `OracleRows.unreadable` instead of failing the sync.
    """

    field: str
    sql: str
    optional: bool = False


def statements(version: tuple[int, int]) -> list[Read]:
    """The statements for a server of `version` (major, minor), in the order they are sent."""
    plan = [
        Read("version", VERSION_SQL if version >= (18, 0) else VERSION_SQL_12C),
        Read("clock", CLOCK_SQL),
        Read("containers", CONTAINERS_SQL, optional=True),
        Read("users", USERS_SQL),
        Read("roles", ROLES_SQL),
        Read("role_privs", ROLE_PRIVS_SQL),
        Read("sys_privs", SYS_PRIVS_SQL),
        Read("tab_privs", TAB_PRIVS_SQL),
        Read("col_privs", COL_PRIVS_SQL),
        Read("pwfile", PWFILE_SQL if version >= (12, 2) else PWFILE_SQL_121),
        Read("proxies", PROXIES_SQL, optional=True),
        Read("profiles", PROFILES_SQL, optional=True),
    ]
    if version >= (23, 0):
        plan.append(Read("schema_privs", SCHEMA_PRIVS_SQL, optional=True))
    return plan


ALL_SQL = tuple(read.sql for read in statements((19, 0)))  # what a 19c fetch sends

_ADMIN_PRIVS = ("SYSDBA", "SYSOPER", "SYSASM", "SYSBACKUP", "SYSDG", "SYSKM")
_GRANT_ANY = frozenset({"GRANT ANY PRIVILEGE", "GRANT ANY ROLE", "GRANT ANY OBJECT PRIVILEGE"})
_CREATE_USER_PRIVS = frozenset({"CREATE USER", "ALTER USER"})
_SUPER_ROLES = frozenset({"DBA"})

# Escalation routes: (system privileges needed together, capabilities they give, why).
# Sources: Oracle Database 19c Security Guide ("Managing System Privileges": the ANY privileges and
# their risk, "Guidelines for Securing User Accounts and Privileges"), SQL Language Reference (GRANT,
# Table 18-1 system privileges; CREATE DIRECTORY), PL/SQL Language Reference (definer's rights).
_PROCEDURE_PAIR = frozenset({"CREATE ANY PROCEDURE", "EXECUTE ANY PROCEDURE"})
_ROUTES: tuple[tuple[frozenset[str], tuple[str, ...], str], ...] = (
    (frozenset({"SYSDBA"}), ("SUPERUSER",), "SYSDBA (password file): may connect AS SYSDBA, that is as SYS"),
    (
        frozenset({"GRANT ANY PRIVILEGE"}),
        ("SUPERUSER",),
        "GRANT ANY PRIVILEGE: may grant any system privilege to anyone, itself included",
    ),
    (frozenset({"GRANT ANY ROLE"}), ("SUPERUSER",), "GRANT ANY ROLE: may grant any role, DBA included, to itself"),
    (
        frozenset({"GRANT ANY OBJECT PRIVILEGE"}),
        ("SUPERUSER",),
        "GRANT ANY OBJECT PRIVILEGE: may grant itself any privilege on other schemas' objects, as their owners could",
    ),
    (
        frozenset({"ALTER USER"}),
        ("SUPERUSER",),
        "ALTER USER: may change any account's password or authentication (SYSTEM's too), then log in as it",
    ),
    (
        frozenset({"BECOME USER"}),
        ("SUPERUSER",),
        "BECOME USER: may act as any other user (the Data Pump import privilege), privileged ones included",
    ),
    (
        _PROCEDURE_PAIR,
        ("SUPERUSER",),
        "CREATE ANY PROCEDURE and EXECUTE ANY PROCEDURE: may create a procedure in a privileged schema "
        "(SYSTEM's) and run it; a definer's-rights procedure runs with its owner's privileges",
    ),
    (
        frozenset({"CREATE ANY TRIGGER"}),
        ("SUPERUSER",),
        "CREATE ANY TRIGGER: may create a trigger in a privileged schema (SYSTEM's), whose body runs with "
        "that schema's privileges when it fires",
    ),
    (
        frozenset({"CREATE ANY JOB"}),
        ("SUPERUSER",),
        "CREATE ANY JOB: may create a scheduler job in a privileged schema (SYSTEM's), which runs with that "
        "schema's privileges",
    ),
    (
        frozenset({"CREATE EXTERNAL JOB"}),
        ("SUPERUSER",),
        "CREATE EXTERNAL JOB: may run operating-system programs on the database server host",
    ),
    (
        frozenset({"ALTER SYSTEM"}),
        ("SUPERUSER",),
        "ALTER SYSTEM: may change the instance's parameters (auditing, how administrators log in, ...) and "
        "end other sessions",
    ),
    (
        frozenset({"CREATE ANY DIRECTORY"}),
        ("SUPERUSER", "FILE_ACCESS"),
        "CREATE ANY DIRECTORY: may point a directory object at any path the database's operating-system user "
        "can reach (data files, the password file) and read or write files there (UTL_FILE, external tables)",
    ),
    (
        frozenset({"SYSOPER"}),
        ("SHUTDOWN",),
        "SYSOPER (password file): may connect AS SYSOPER to start up, shut down, mount, open, back up and "
        "recover the database",
    ),
    (
        frozenset({"EXEMPT ACCESS POLICY"}),
        ("BYPASS_RLS",),
        "EXEMPT ACCESS POLICY: no Virtual Private Database (row-level security) policy applies to it",
    ),
)
_ROUTE_PRIVILEGES = frozenset(p for needed, _caps, _why in _ROUTES for p in needed)
# 23ai schema privileges that run code with the schema owner's privileges (definer's rights): on the schema
# of a superuser they are the routes above, confined to that schema
_SCHEMA_ROUTES: tuple[tuple[frozenset[str], str], ...] = (
    (_PROCEDURE_PAIR, "CREATE ANY PROCEDURE and EXECUTE ANY PROCEDURE"),
    (frozenset({"CREATE ANY TRIGGER"}), "CREATE ANY TRIGGER"),
    (frozenset({"CREATE ANY JOB"}), "CREATE ANY JOB"),
)

# DBA_PROXIES.AUTHORIZATION_CONSTRAINT: which of the client's roles a proxy session may use
_ALL_ROLES = "PROXY MAY ACTIVATE ALL CLIENT ROLES"
_NO_ROLES = "NO CLIENT ROLES MAY BE ACTIVATED"
_ROLE_ALLOWED = "PROXY MAY ACTIVATE ROLE"
_ROLE_DENIED = "PROXY MAY NOT ACTIVATE ROLE"
DEFAULT_PASSWORD_LOCK_TIME = 1.0  # days: the DEFAULT profile's PASSWORD_LOCK_TIME when Oracle creates it


@dataclass
class OracleRows:
    """The rows of each view, as dicts keyed by the view's column names."""

    version: list[dict[str, Any]] = field(default_factory=list)
    clock: list[dict[str, Any]] = field(default_factory=list)
    containers: list[dict[str, Any]] = field(default_factory=list)
    users: list[dict[str, Any]] = field(default_factory=list)
    roles: list[dict[str, Any]] = field(default_factory=list)
    role_privs: list[dict[str, Any]] = field(default_factory=list)
    sys_privs: list[dict[str, Any]] = field(default_factory=list)
    tab_privs: list[dict[str, Any]] = field(default_factory=list)
    col_privs: list[dict[str, Any]] = field(default_factory=list)
    pwfile: list[dict[str, Any]] = field(default_factory=list)
    proxies: list[dict[str, Any]] = field(default_factory=list)
    profiles: list[dict[str, Any]] = field(default_factory=list)
    schema_privs: list[dict[str, Any]] = field(default_factory=list)
    # the release the connection reported (major, minor); decides which statements were sent
    release: tuple[int, int] = (19, 0)
    # connected to CDB$ROOT and read through the CDB_ views (rows carry CON_ID); see `build_catalog`
    cdb: bool = False
    # the CON_IDs the CDB_ views returned rows of (set by the split of a CDB read, for the root's gaps)
    con_ids_read: frozenset[int] = frozenset()
    # optional views the monitoring account may not read: field -> the server's error code
    unreadable: dict[str, str] = field(default_factory=dict)

    @property
    def sysdate(self) -> datetime | None:
        """The server's clock at the time of the read (None when it was not read)."""
        for row in self.clock:
            value = _moment(row.get("SYSDATE"))
            if value is not None:
                return value
        return None


# --- row parsing (pure) -------------------------------------------------------------


# The dictionary views hold no RAW columns, so no bytes arrive; Oracle has always read
# any value as its str(), and keeps doing so (`decode_bytes=False`).
_text = functools.partial(as_text, decode_bytes=False)
_yes = functools.partial(is_yes, yes_words=("YES", "Y", "TRUE"), decode_bytes=False)


def release_of(version: Any) -> tuple[int, int]:
    """(major, minor) of a version text such as "19.21.0.0.0" (the connection's); (19, 0) when unknown."""
    numbers = re.findall(r"\d+", _text(version))
    if len(numbers) < 2:
        return (19, 0)
    return int(numbers[0]), int(numbers[1])


def _moment(value: Any) -> datetime | None:
    """A DATE/TIMESTAMP cell (datetime, date or ISO text) as a naive datetime in the server's time."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=None) if value.tzinfo is not None else value
    if isinstance(value, date):
        return datetime.combine(value, datetime.min.time())
    try:
        parsed = datetime.fromisoformat(_text(value))
    except ValueError:
        return None
    return parsed.replace(tzinfo=None) if parsed.tzinfo is not None else parsed


def _day(value: Any) -> str | None:
    """A login time at day precision (YYYY-MM-DD), in the time zone the server recorded it in."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime | date):
        return (value.date() if isinstance(value, datetime) else value).isoformat()
    text = _text(value)
    try:
        return datetime.fromisoformat(text).date().isoformat()
    except ValueError:
        return text[:10] or None


_STATUS_ORDER = ("EXPIRED", "EXPIRED(GRACE)", "LOCKED", "LOCKED(TIMED)")


def _status_parts(status: str) -> set[str]:
    return {p.strip().upper() for p in status.split("&") if p.strip()}


def _status_text(parts: set[str]) -> str:
    """Compose ACCOUNT_STATUS the way Oracle writes it: expiry, then lock, then IN ROLLOVER; OPEN if neither."""
    words = [p for p in _STATUS_ORDER if p in parts]
    rollover = sorted(p for p in parts if p.startswith("IN ROLLOVER"))
    return " & ".join((words or ["OPEN"]) + rollover)


def parse_account_status(status: str) -> dict[str, bool]:
    """Split ACCOUNT_STATUS ('EXPIRED(GRACE) & LOCKED(TIMED)', 'OPEN & IN ROLLOVER', ...) into flags."""
    parts = _status_parts(status)
    return {
        "locked": bool(parts & {"LOCKED", "LOCKED(TIMED)"}),
        "locked_timed": "LOCKED(TIMED)" in parts,
        "password_expired": "EXPIRED" in parts,
        "password_grace": "EXPIRED(GRACE)" in parts,
        "in_rollover": any(p.startswith("IN ROLLOVER") for p in parts),
    }


def status_now(
    status: str,
    *,
    lock_date: Any,
    expiry_date: Any,
    lock_days: float | None,
    lock_time_known: bool,
    now: datetime | None,
) -> tuple[str, list[str]]:
    """ACCOUNT_STATUS as of `now` (the server's clock), with why it differs from what the view says.

    Why: Oracle updates ACCOUNT_STATUS only when the account next tries to log in. An OPEN or
    EXPIRED(GRACE) account whose EXPIRY_DATE has passed has an expired password now (the next
    login finds it expired, or starts the grace time the profile gives); a LOCKED(TIMED)
    account whose LOCK_DATE plus its profile's PASSWORD_LOCK_TIME (`lock_days`; None:
    UNLIMITED) has passed is unlocked now. When the lock time cannot be known (DBA_PROFILES
    unreadable), the lock is kept as read. Without `now` nothing is derived.
    """
    parts = _status_parts(status)
    reasons: list[str] = []
    if now is None:
        return _status_text(parts), reasons
    locked_at = _moment(lock_date)
    if "LOCKED(TIMED)" in parts and locked_at is not None and lock_time_known and lock_days is not None:
        unlocks = locked_at + timedelta(days=lock_days)
        if unlocks <= now:
            parts.discard("LOCKED(TIMED)")
            days = f"{lock_days:g} day" + ("" if lock_days == 1 else "s")
            reasons.append(
                f"the timed lock of {locked_at.isoformat()} ended at {unlocks.isoformat(timespec='minutes')} "
                f"(PASSWORD_LOCK_TIME {days}); Oracle shows it at the next login"
            )
    expires = _moment(expiry_date)
    if expires is not None and expires <= now and "EXPIRED" not in parts:
        parts.discard("EXPIRED(GRACE)")
        parts.add("EXPIRED")
        reasons.append(f"the password expired on {expires.isoformat()}; Oracle shows it at the next login")
    return _status_text(parts), reasons


def parse_version(rows: list[dict[str, Any]]) -> str:
    """The Oracle Database row of PRODUCT_COMPONENT_VERSION, full version preferred."""
    for row in rows:
        if "ORACLE" in _text(row.get("PRODUCT")).upper():
            return f"{_text(row['PRODUCT']).strip()} {_text(row.get('VERSION_FULL') or row.get('VERSION'))}".strip()
    if rows:
        return _text(rows[0].get("VERSION_FULL") or rows[0].get("VERSION"))
    return ""


class _Profiles:
    """PASSWORD_LOCK_TIME per profile (days; None = UNLIMITED), DEFAULT resolved through the DEFAULT profile."""

    def __init__(self, rows: list[dict[str, Any]], readable: bool) -> None:
        self.readable = readable
        self.limits = {_text(r.get("PROFILE")): _text(r.get("LIMIT")).strip().upper() for r in rows}

    def _days(self, limit: str | None) -> tuple[float | None, bool]:
        if limit is None:
            return None, False
        if limit == "UNLIMITED":
            return None, True
        try:
            return float(limit), True
        except ValueError:
            return None, False

    def lock_time(self, profile: str) -> tuple[float | None, bool]:
        """(days or None for UNLIMITED, whether it is known)."""
        if not self.readable:
            return None, False
        limit = self.limits.get(profile, "DEFAULT")
        if limit == "DEFAULT":
            limit = self.limits.get("DEFAULT")
            if limit is None:
                return DEFAULT_PASSWORD_LOCK_TIME, True
        return self._days(limit)


def _user_record(row: dict[str, Any], now: datetime | None, profiles: _Profiles) -> AccountRecord:
    name = _text(row["USERNAME"])
    status = _text(row["ACCOUNT_STATUS"])
    profile = _text(row.get("PROFILE"))
    lock_days, lock_known = profiles.lock_time(profile)
    current, reasons = status_now(
        status,
        lock_date=row.get("LOCK_DATE"),
        expiry_date=row.get("EXPIRY_DATE"),
        lock_days=lock_days,
        lock_time_known=lock_known,
        now=now,
    )
    flags = parse_account_status(current)
    auth = _text(row.get("AUTHENTICATION_TYPE")).upper()
    attributes: dict[str, Any] = {
        "account_status": status,
        **flags,
        "profile": profile,
        "authentication_type": auth,
        "schema_only": auth == "NONE",
        "default_tablespace": _text(row.get("DEFAULT_TABLESPACE")),
        "temporary_tablespace": _text(row.get("TEMPORARY_TABLESPACE")),
        # DATE columns arrive as naive datetimes in the server's time: kept as written
        "created": iso_timestamp(row.get("CREATED"), blank_is_none=True),
        "lock_date": iso_timestamp(row.get("LOCK_DATE"), blank_is_none=True),
        "expiry_date": iso_timestamp(row.get("EXPIRY_DATE"), blank_is_none=True),
        "proxy_only_connect": _yes(row.get("PROXY_ONLY_CONNECT")),
        "common": _yes(row.get("COMMON")),
        "oracle_maintained": _yes(row.get("ORACLE_MAINTAINED")),
        # day precision: a login every hour must not be an attribute change every sync
        "last_login": _day(row.get("LAST_LOGIN")),
    }
    if current != _status_text(_status_parts(status)):
        attributes["account_status_now"] = current
        attributes["status_reasons"] = reasons
    if row.get("EXTERNAL_NAME"):
        attributes["external_name"] = _text(row["EXTERNAL_NAME"])
    return AccountRecord(identity=name, username=name, kind="user", is_locked=flags["locked"], attributes=attributes)


def _role_record(row: dict[str, Any]) -> AccountRecord:
    name = _text(row["ROLE"])
    auth = _text(row.get("AUTHENTICATION_TYPE")).upper()
    attributes = {
        "authentication_type": auth,
        "password_required": _text(row.get("PASSWORD_REQUIRED")).upper(),
        "common": _yes(row.get("COMMON")),
        "oracle_maintained": _yes(row.get("ORACLE_MAINTAINED")),
        "locked": False,
        "password_expired": False,
    }
    return AccountRecord(identity=name, username=name, kind="role", attributes=attributes)


def _global_names(acc: AccountRecord) -> set[str]:
    return {p.privilege.upper() for p in acc.privileges if p.scope == "global"}


def _capabilities(acc: AccountRecord, reachable: set[str], held_together: bool) -> None:
    """The account's own capabilities and the reasons of its escalation routes.

    `reachable` is every system privilege the account can use, through its roles too;
    `held_together` says whether one of its roles already holds both halves of the
    CREATE/EXECUTE ANY PROCEDURE route (then that role's reason reaches it by inheritance).
    """
    names = _global_names(acc)
    caps: set[str] = set()
    if acc.kind == "role" and acc.username in _SUPER_ROLES:
        caps.add("SUPERUSER")  # DBA: a superuser by definition, no route to explain
    else:
        for needed, gives, why in _ROUTES:
            if needed <= names:
                caps.update(gives)
                for cap in gives:
                    acc.capability_reasons.setdefault(cap, []).append(why)
        if not names >= _PROCEDURE_PAIR and reachable >= _PROCEDURE_PAIR and not held_together:
            caps.add("SUPERUSER")
            acc.capability_reasons.setdefault("SUPERUSER", []).append(
                "CREATE ANY PROCEDURE and EXECUTE ANY PROCEDURE, held together through its own grants and roles: "
                "may create a procedure in a privileged schema (SYSTEM's) and run it with that schema's privileges"
            )
    if any(p.grantable for p in acc.privileges) or any(r.admin_option for r in acc.roles) or names & _GRANT_ANY:
        caps.add("GRANT_ADMIN")
    if names & _CREATE_USER_PRIVS:
        caps.add("CREATE_USER")
    if acc.attributes.get("locked"):
        caps.add("LOCKED")
    if acc.attributes.get("password_expired"):
        caps.add("EXPIRED")
    acc.capabilities = caps


class _Grantees:
    """Hands each grant to its grantee: an account, PUBLIC (kept apart: it is no account), or nobody we read."""

    def __init__(self, accounts: dict[str, AccountRecord]) -> None:
        self.accounts = accounts
        self.public = AccountRecord(identity="PUBLIC", username="PUBLIC", kind="role")
        self.unknown: set[str] = set()

    def holder(self, grantee: Any) -> AccountRecord | None:
        name = _text(grantee)
        if name == "PUBLIC":
            return self.public
        acc = self.accounts.get(name)
        if acc is None:
            self.unknown.add(name)
        return acc

    def add_privilege(self, grantee: Any, priv: Privilege) -> None:
        if (acc := self.holder(grantee)) is not None:
            acc.privileges.append(priv)

    def add_role(self, grantee: Any, grant: RoleGrant) -> None:
        if (acc := self.holder(grantee)) is not None:
            acc.roles.append(grant)


def build_catalog(rows: OracleRows, *, include_oracle_maintained: bool = True, now: datetime | None = None) -> Catalog:
    """Turn dictionary-view rows into a finalized catalog (pure: no I/O).

    `now` is the server's clock the status as of now is worked out against; by default the
    SYSDATE read with the rows (none: the status is taken as read).
    """
    now = now if now is not None else rows.sysdate
    if rows.cdb:
        return _build_cdb(rows, include_oracle_maintained=include_oracle_maintained, now=now)
    profiles = _Profiles(rows.profiles, readable="profiles" not in rows.unreadable)
    accounts = _accounts(rows, now, profiles)
    grantees = _Grantees(accounts)
    _add_grants(rows, grantees)
    proxies = _add_proxies(rows, grantees)
    public = grantees.public
    everyone = [*accounts.values(), public]
    _all_capabilities(everyone, public)
    full = Catalog(accounts=everyone, server_version=parse_version(rows.version)).finalize()
    if _schema_routes(accounts):
        full.finalize()
    _proxy_routes(proxies, accounts, public)
    public_caps = public.effective_capabilities & INHERITABLE_CAPABILITIES
    for acc in accounts.values():
        if acc.kind == "user" and public_caps - acc.capabilities:
            # every user holds what PUBLIC holds
            for cap in sorted(public_caps - acc.capabilities):
                acc.capability_reasons.setdefault(cap, []).extend(
                    f"granted to PUBLIC ({why})" for why in _public_reasons(public, cap)
                )
            acc.capabilities |= public_caps
    full = Catalog(accounts=list(everyone), server_version=full.server_version).finalize()

    if include_oracle_maintained:
        kept, excluded = list(accounts.values()), []
    else:
        kept, excluded = _without_oracle_maintained(list(accounts.values()))
    maintained_owners = {
        a.identity for a in accounts.values() if a.kind == "user" and a.attributes["oracle_maintained"]
    }
    directories = {
        make_scope("object", _text(r["OWNER"]), _text(r["TABLE_NAME"]))
        for r in rows.tab_privs
        if _text(r.get("TYPE")).upper() == "DIRECTORY"
    }
    defaults, beyond = _split_public(public, maintained_owners, directories)
    catalog = OracleCatalog(accounts=[*kept, _public_account(public, beyond)], server_version=full.server_version)
    catalog.details["modelled_on"] = MODELLED_VERSION
    catalog.details["include_oracle_maintained"] = include_oracle_maintained
    catalog.details["excluded_oracle_maintained"] = excluded
    catalog.details["public_grants"] = _public_grants(public, public_caps, defaults=len(defaults))
    catalog.details["status_as_of"] = now.isoformat() if now is not None else None
    if grantees.unknown:
        catalog.details["unknown_grantees"] = sorted(grantees.unknown)
    _containers(rows, catalog)
    _unreadable(rows, catalog)
    return catalog.finalize()


def _accounts(rows: OracleRows, now: datetime | None, profiles: _Profiles) -> dict[str, AccountRecord]:
    """Users, then roles; a role never replaces a user of the same name (PUBLIC is no row of either)."""
    accounts: dict[str, AccountRecord] = {}
    for row in rows.users:
        acc = _user_record(row, now, profiles)
        if acc.identity != "PUBLIC":
            accounts[acc.identity] = acc
    for row in rows.roles:
        acc = _role_record(row)
        if acc.identity != "PUBLIC":
            accounts.setdefault(acc.identity, acc)
    # the administrative logins V$PWFILE_USERS records (12.2+) count as logins too
    admin_login = {_text(r.get("USERNAME")): _day(r.get("LAST_LOGIN")) for r in rows.pwfile if r.get("LAST_LOGIN")}
    admins = {_text(r.get("USERNAME")) for r in rows.pwfile if any(_yes(r.get(c)) for c in _ADMIN_PRIVS)}
    for name, acc in accounts.items():
        if acc.kind != "user":
            continue
        if (day := admin_login.get(name)) and (acc.attributes["last_login"] or "") < day:
            acc.attributes["last_login"] = day
        if name in admins and rows.release < (12, 2):
            # before 12.2 nothing records when an administrator logged in AS SYSDBA/SYSOPER/...
            acc.attributes["last_login_partial"] = True
    return accounts


def _add_grants(rows: OracleRows, grantees: _Grantees) -> None:
    """System, administrative (password file), object, column and schema privileges, then role grants."""
    for row in rows.sys_privs:
        grantees.add_privilege(
            row["GRANTEE"], Privilege("global", _text(row["PRIVILEGE"]).upper(), _yes(row["ADMIN_OPTION"]))
        )
    _common_grants(rows, grantees)
    for row in rows.pwfile:
        for col in _ADMIN_PRIVS:
            if _yes(row.get(col)):
                grantees.add_privilege(row["USERNAME"], Privilege("global", col))
    for row in rows.tab_privs:
        scope = make_scope("object", _text(row["OWNER"]), _text(row["TABLE_NAME"]))
        grantees.add_privilege(
            row["GRANTEE"], Privilege(scope, _text(row["PRIVILEGE"]).upper(), _yes(row["GRANTABLE"]))
        )
    for row in rows.col_privs:
        scope = make_scope("column", _text(row["OWNER"]), _text(row["TABLE_NAME"]), _text(row["COLUMN_NAME"]))
        grantees.add_privilege(
            row["GRANTEE"], Privilege(scope, _text(row["PRIVILEGE"]).upper(), _yes(row["GRANTABLE"]))
        )
    for row in rows.schema_privs:
        scope = make_scope("schema", _text(row["SCHEMA"]))
        grantees.add_privilege(
            row["GRANTEE"], Privilege(scope, _text(row["PRIVILEGE"]).upper(), _yes(row["ADMIN_OPTION"]))
        )
    for row in rows.role_privs:
        grant = RoleGrant(_text(row["GRANTED_ROLE"]), _yes(row["ADMIN_OPTION"]), _yes(row.get("DEFAULT_ROLE", "YES")))
        grantees.add_role(row["GRANTEE"], grant)


def _common_grants(rows: OracleRows, grantees: _Grantees) -> None:
    """Grants made commonly (COMMON = 'YES', read through the CDB_ views): attribute ``common_grants``.

    Why an attribute: a common grant is made in CDB$ROOT with CONTAINER=ALL and can only be revoked
    there, a local one by the container itself; who can take it away is part of the picture, not of
    what the privilege allows. Each entry is "<PRIVILEGE> on <scope>" or "ROLE <role>".
    """
    marked: dict[str, set[str]] = defaultdict(set)
    for view, describe in (
        (rows.sys_privs, lambda r: f"{_text(r['PRIVILEGE']).upper()} on global"),
        (
            rows.tab_privs,
            lambda r: (
                f"{_text(r['PRIVILEGE']).upper()} on " + make_scope("object", _text(r["OWNER"]), _text(r["TABLE_NAME"]))
            ),
        ),
        (
            rows.col_privs,
            lambda r: (
                f"{_text(r['PRIVILEGE']).upper()} on "
                + make_scope("column", _text(r["OWNER"]), _text(r["TABLE_NAME"]), _text(r["COLUMN_NAME"]))
            ),
        ),
        (
            rows.schema_privs,
            lambda r: f"{_text(r['PRIVILEGE']).upper()} on " + make_scope("schema", _text(r["SCHEMA"])),
        ),
        (rows.role_privs, lambda r: f"ROLE {_text(r['GRANTED_ROLE'])}"),
    ):
        for row in view:
            if "COMMON" in row and _yes(row["COMMON"]) and _text(row["GRANTEE"]) in grantees.accounts:
                marked[_text(row["GRANTEE"])].add(describe(row))
    for name, grants in marked.items():
        grantees.accounts[name].attributes["common_grants"] = sorted(grants)


# --- escalation routes ----------------------------------------------------------------


def _all_capabilities(accounts: list[AccountRecord], public: AccountRecord) -> None:
    """Own capabilities of every account, after working out which system privileges each can reach."""
    by_name = {a.identity: a for a in accounts}
    memo: dict[str, frozenset[str]] = {}

    def reach(acc: AccountRecord, visiting: frozenset[str]) -> frozenset[str]:
        if acc.identity in memo:
            return memo[acc.identity]
        names = set(_global_names(acc))
        for grant in acc.roles:
            role = by_name.get(grant.role)
            if role is not None and role.identity not in visiting:
                names |= reach(role, visiting | {role.identity})
        memo[acc.identity] = frozenset(names)
        return memo[acc.identity]

    public_reach = reach(public, frozenset({public.identity}))
    for acc in accounts:
        reachable = set(reach(acc, frozenset({acc.identity})))
        if acc.kind == "user":
            reachable |= public_reach
        held = [by_name[g.role] for g in acc.roles if g.role in by_name]
        if acc.kind == "user":
            held.append(public)
        together = any(memo.get(r.identity, frozenset()) >= _PROCEDURE_PAIR for r in held)
        _capabilities(acc, reachable, together)


def _schema_routes(accounts: dict[str, AccountRecord]) -> bool:
    """23ai schema privileges that run code as a superuser's schema give SUPERUSER; True when any did."""
    changed = False
    for acc in accounts.values():
        by_schema: dict[str, set[str]] = defaultdict(set)
        for p in acc.privileges:
            level, parts = split_scope(p.scope)
            if level == "schema" and parts:
                by_schema[parts[0]].add(p.privilege.upper())
        for schema, names in sorted(by_schema.items()):
            owner = accounts.get(schema)
            if owner is None or owner is acc or "SUPERUSER" not in owner.effective_capabilities:
                continue
            for needed, label in _SCHEMA_ROUTES:
                if needed <= names:
                    acc.capabilities.add("SUPERUSER")
                    acc.capability_reasons.setdefault("SUPERUSER", []).append(
                        f"{label} on schema {schema}, a superuser's: code it creates there runs with {schema}'s "
                        "privileges"
                    )
                    changed = True
    return changed


@dataclass
class _Proxy:
    """One proxy permission (DBA_PROXIES rows of one proxy and client)."""

    proxy: str
    client: str
    authentication: bool = False  # AUTHENTICATION REQUIRED: the proxy must also give the client's password
    constraint: str = _ALL_ROLES
    roles: list[str] = field(default_factory=list)

    def clause(self) -> str:
        """The grant as ALTER USER ... GRANT CONNECT THROUGH writes it."""
        if self.constraint == _NO_ROLES:
            text = "CONNECT THROUGH WITH NO ROLES"
        elif self.constraint == _ROLE_ALLOWED:
            text = "CONNECT THROUGH WITH ROLE " + ", ".join(sorted(self.roles))
        elif self.constraint == _ROLE_DENIED:
            text = "CONNECT THROUGH WITH ROLE ALL EXCEPT " + ", ".join(sorted(self.roles))
        else:
            text = "CONNECT THROUGH"
        return text + (" AUTHENTICATION REQUIRED" if self.authentication else "")

    def usable_roles(self, client: AccountRecord) -> list[str]:
        held = [g.role for g in client.roles]
        if self.constraint == _NO_ROLES:
            return []
        if self.constraint == _ROLE_ALLOWED:
            return [r for r in held if r in self.roles]
        if self.constraint == _ROLE_DENIED:
            return [r for r in held if r not in self.roles]
        return held


def _add_proxies(rows: OracleRows, grantees: _Grantees) -> list[_Proxy]:
    """DBA_PROXIES: `CONNECT THROUGH ...` on `proxy:<CLIENT>` for the proxy, `proxied_by` on the client."""
    found: dict[tuple[str, str], _Proxy] = {}
    for row in rows.proxies:
        proxy, client = _text(row.get("PROXY")), _text(row.get("CLIENT"))
        if not proxy or _text(row.get("PROXY_AUTHORITY")).upper() == "DIRECTORY":
            # an enterprise-user proxy: the directory decides who, so no database account is the proxy
            if (acc := grantees.accounts.get(client)) is not None:
                acc.attributes["proxied_by_directory"] = True
            continue
        entry = found.setdefault((proxy, client), _Proxy(proxy, client))
        entry.authentication = entry.authentication or _yes(row.get("AUTHENTICATION"))
        constraint = _text(row.get("AUTHORIZATION_CONSTRAINT")).upper() or _ALL_ROLES
        entry.constraint = constraint
        if row.get("ROLE"):
            entry.roles.append(_text(row["ROLE"]))
    out = []
    for (proxy, client), entry in sorted(found.items()):
        holder = grantees.accounts.get(proxy)
        target = grantees.accounts.get(client)
        if holder is None or target is None:
            grantees.unknown.update(n for n, a in ((proxy, holder), (client, target)) if a is None)
            continue
        holder.privileges.append(Privilege(make_scope("proxy", client), entry.clause()))
        target.attributes.setdefault("proxied_by", []).append({"proxy": proxy, "grant": entry.clause()})
        out.append(entry)
    return out


def _proxy_routes(proxies: list[_Proxy], accounts: dict[str, AccountRecord], public: AccountRecord) -> None:
    """What a proxy can do as its client: the client's own capabilities and those of the roles it may use.

    A proxy that must also give the client's password (AUTHENTICATION REQUIRED) gains nothing it
    could not do with the password; a locked client cannot be connected to, even through a proxy.
    """
    for entry in proxies:
        proxy, client = accounts[entry.proxy], accounts[entry.client]
        if entry.authentication or client.attributes.get("locked"):
            continue
        usable = set(client.capabilities) & INHERITABLE_CAPABILITIES
        for role in entry.usable_roles(client):
            if (acc := accounts.get(role)) is not None:
                usable |= acc.effective_capabilities & INHERITABLE_CAPABILITIES
        gained = usable - proxy.capabilities
        for cap in sorted(gained):
            proxy.capability_reasons.setdefault(cap, []).append(
                f"proxy for {client.identity} ({entry.clause()}): may connect as {client.identity} without its "
                f"password, and {client.identity} holds {cap}"
            )
        proxy.capabilities |= gained


def _public_reasons(public: AccountRecord, cap: str) -> list[str]:
    reasons = public.attributes.get("capability_reasons", {}).get(cap) or public.capability_reasons.get(cap) or []
    return list(reasons) or [f"PUBLIC holds {cap}"]


# --- what is left out, and PUBLIC --------------------------------------------------------


def _without_oracle_maintained(accounts: list[AccountRecord]) -> tuple[list[AccountRecord], list[str]]:
    """(kept accounts, names left out); what a kept account inherited through a removed role stays its own."""
    kept = [a for a in accounts if not a.attributes.get("oracle_maintained")]
    excluded = sorted(a.identity for a in accounts if a.attributes.get("oracle_maintained"))
    for acc in kept:
        acc.capabilities |= acc.effective_capabilities & INHERITABLE_CAPABILITIES
        for cap, why in (acc.attributes.get("capability_reasons") or {}).items():
            known = acc.capability_reasons.setdefault(cap, [])
            known.extend(w for w in why if w not in known)
    return kept, excluded


def _is_default_public(priv: Privilege, maintained_owners: set[str], directories: set[str]) -> bool:
    """Oracle's own grants to PUBLIC: privileges on objects (and their columns) an Oracle-maintained user owns.

    Directories are the exception: every directory object is owned by SYS, whoever created it, so
    its owner tells nothing and a directory granted to PUBLIC is always reported.
    """
    level, parts = split_scope(priv.scope)
    if level not in ("object", "column") or not parts or priv.scope in directories:
        return False
    return parts[0] in maintained_owners


def _split_public(
    public: AccountRecord, maintained_owners: set[str], directories: set[str]
) -> tuple[list[Privilege], list[Privilege]]:
    defaults, beyond = [], []
    for priv in set(public.privileges):
        (defaults if _is_default_public(priv, maintained_owners, directories) else beyond).append(priv)
    return defaults, beyond


def _public_account(public: AccountRecord, beyond: list[Privilege]) -> AccountRecord:
    """The pseudo-role PUBLIC as an account: what it holds beyond Oracle's defaults, and every role granted to it.

    Its capabilities are what the full catalog gave it (roles left out as Oracle-maintained included).
    """
    reasons = {cap: list(why) for cap, why in (public.attributes.get("capability_reasons") or {}).items()}
    return AccountRecord(
        identity="PUBLIC",
        username="PUBLIC",
        kind="role",
        attributes={"pseudo_role": True, "locked": False, "password_expired": False},
        privileges=sorted(beyond),
        roles=list(public.roles),
        capabilities=set(public.capabilities) | (public.effective_capabilities & INHERITABLE_CAPABILITIES),
        capability_reasons=reasons or {cap: list(why) for cap, why in public.capability_reasons.items()},
    )


def _public_grants(public: AccountRecord, capabilities: set[str], *, defaults: int) -> dict[str, Any]:
    """PUBLIC's grants in canonical form, once for the instance instead of in every snapshot."""
    return {
        "privileges": sorted(
            (p.as_dict() for p in set(public.privileges)), key=lambda d: (d["scope"], d["privilege"], d["grantable"])
        ),
        "roles": sorted((r.as_dict() for r in set(public.roles)), key=lambda d: d["role"]),
        "capabilities": sorted(capabilities),
        "oracle_defaults": defaults,
    }


# --- what the fetch did not read ----------------------------------------------------------

_OPTIONAL_GAPS = {
    "proxies": ("proxy", "DBA_PROXIES", "who may connect through whom (proxy users)"),
    "schema_privs": ("schema", "DBA_SCHEMA_PRIVS", "schema privileges (23ai)"),
}


def _unreadable(rows: OracleRows, catalog: Catalog) -> None:
    """Optional views the monitoring account could not read: a coverage gap, or a note in the details."""
    for name, code in sorted(rows.unreadable.items()):
        if name in _OPTIONAL_GAPS:
            scope, view, what = _OPTIONAL_GAPS[name]
            catalog.coverage.append(
                CoverageGap(
                    scope=scope,
                    reason=f"{view} is not readable by the monitoring account ({code}): {what} unknown",
                    fix=f"GRANT SELECT ON SYS.{view} TO <monitoring account>, or grant it SELECT_CATALOG_ROLE "
                    f"(see {MONITORING_DOC})",
                )
            )
        else:
            catalog.details.setdefault("unreadable_views", {})[name] = code


def _con_id(row: dict[str, Any]) -> int:
    return int(_text(row.get("CON_ID")) or 0)


def _containers(rows: OracleRows, catalog: Catalog) -> None:
    """Which container the views showed; connected to CDB$ROOT, every PDB not read is a gap, with why.

    A PDB is read when the CDB_ views returned rows of it (`OracleRows.con_ids_read`). One the views
    did not show is either not open (a MOUNTED PDB has no dictionary to read) or not among the
    monitoring account's CONTAINER_DATA (a common user sees the root's rows only, unless it is set).
    """
    names = {_con_id(r): _text(r.get("NAME")) for r in rows.containers}
    if not names:
        catalog.details["container"] = None
        return
    if ROOT_CON_ID not in names:  # a PDB (only its own row) or a non-CDB (CON_ID 0)
        catalog.details["container"] = None if 0 in names else next(iter(names.values()))
        return
    root = names[ROOT_CON_ID]
    catalog.details["container"] = root
    pdbs = sorted((r for r in rows.containers if _con_id(r) > SEED_CON_ID), key=lambda r: _text(r.get("NAME")))
    catalog.details["pdbs_read"] = [_text(r.get("NAME")) for r in pdbs if _con_id(r) in rows.con_ids_read]
    catalog.details["pdbs_not_read"] = [_text(r.get("NAME")) for r in pdbs if _con_id(r) not in rows.con_ids_read]
    register = "register PDB {name} as its own instance, with its service name as the database name"
    for row in pdbs:
        if _con_id(row) in rows.con_ids_read:
            continue
        name, mode = _text(row.get("NAME")), _text(row.get("OPEN_MODE")).upper()
        if mode and not mode.startswith(("READ", "MIGRATE")):
            reason = f"connected to {root}: PDB {name} is {mode}, not open, so no view shows its accounts"
            fix = f"open it (ALTER PLUGGABLE DATABASE {name} OPEN) and sync again, or {register.format(name=name)}"
        elif "cdb_views" in rows.unreadable:
            reason = (
                f"connected to {root}: the monitoring account cannot read the CDB_ views "
                f"({rows.unreadable['cdb_views']}), and the DBA_ views show only the root container, not PDB {name}"
            )
            fix = (
                f"{register.format(name=name)}, or grant the monitoring account SELECT_CATALOG_ROLE "
                f"(see {MONITORING_DOC})"
            )
        elif rows.cdb or rows.con_ids_read:
            reason = (
                f"connected to {root}: the CDB_ views return no rows of PDB {name} "
                f"({mode or 'open mode unknown'}): the monitoring account's CONTAINER_DATA does not include it"
            )
            fix = (
                f"{register.format(name=name)}, or, as a common user, let it read the PDB from the root: "
                f"ALTER USER <monitoring account> SET CONTAINER_DATA = (CDB$ROOT, {name}) CONTAINER = CURRENT"
            )
        else:
            reason = (
                f"connected to {root}: the DBA_ views show only the root container, not PDB {name} "
                f"({mode or 'open mode unknown'})"
            )
            fix = register.format(name=name)
        catalog.coverage.append(CoverageGap(scope=f"container:{name}", reason=reason, fix=fix))


@dataclass
class OracleCatalog(Catalog):
    """A Catalog that knows which accounts live inside a PDB (read from CDB$ROOT through the CDB_ views)."""

    def account_scope(self, identity: str, kind: str, attributes: dict[str, Any]) -> str | None:
        """An account of a PDB (``<PDB>::<NAME>``) lives inside ``container:<PDB>``: kept whole while it is unread."""
        container = attributes.get("container")
        return f"container:{container}" if container and identity.startswith(f"{container}::") else None


# The per-container fields of a CDB read: split by CON_ID
_SPLIT_FIELDS = (*_CDB_VIEWS, "pwfile")


def _build_cdb(rows: OracleRows, *, include_oracle_maintained: bool, now: datetime | None) -> Catalog:
    """A CDB read from CDB$ROOT: the root's accounts as ever, each PDB's as ``<PDB>::<NAME>``.

    Each container is built on its own (its users, roles, grants and PUBLIC are its own: a
    common user C##X is one account per container it exists in, each with what was granted
    there), then the parts are put together. The root's accounts keep their plain names, so a
    monitoring account that is later allowed to see the PDBs (CONTAINER_DATA) only adds accounts.
    V$PWFILE_USERS rows with CON_ID 0 hold for the whole CDB, so for every container.
    """
    by_con: dict[int, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for name in _SPLIT_FIELDS:
        for row in getattr(rows, name):
            by_con[_con_id(row)][name].append(row)
    names = {_con_id(r): _text(r.get("NAME")) for r in rows.containers}
    seen = frozenset(c for c, views in by_con.items() if views.get("users"))

    def part(con_id: int, containers: list[dict[str, Any]]) -> Catalog:
        views = {name: list(by_con[con_id][name]) for name in _CDB_VIEWS}
        pwfile = [*by_con[0]["pwfile"], *by_con[con_id]["pwfile"]]
        piece = replace(rows, cdb=False, containers=containers, pwfile=pwfile, con_ids_read=seen, **views)
        return build_catalog(piece, include_oracle_maintained=include_oracle_maintained, now=now)

    catalog = part(ROOT_CON_ID, rows.containers)
    accounts = list(catalog.accounts)
    public: dict[str, Any] = {}
    for con_id in sorted(seen - {ROOT_CON_ID, SEED_CON_ID}):
        name = names.get(con_id) or f"CON_ID {con_id}"
        pdb = part(con_id, [r for r in rows.containers if _con_id(r) == con_id])
        accounts += [_in_container(acc, name) for acc in pdb.accounts]
        grants = pdb.details.get("public_grants") or {}
        public[name] = {
            "oracle_defaults": grants.get("oracle_defaults", 0),
            "capabilities": grants.get("capabilities", []),
        }
        for key in ("excluded_oracle_maintained", "unknown_grantees"):
            if pdb.details.get(key):
                catalog.details[key] = sorted(
                    {*catalog.details.get(key, []), *(f"{name}::{n}" for n in pdb.details[key])}
                )
        known = {gap.scope for gap in catalog.coverage}
        catalog.coverage += [gap for gap in pdb.coverage if gap.scope not in known]
    catalog.details["container_public_grants"] = public
    merged = OracleCatalog(
        accounts=accounts, server_version=catalog.server_version, coverage=catalog.coverage, details=catalog.details
    )
    return merged.finalize()


def _in_container(acc: AccountRecord, container: str) -> AccountRecord:
    """A PDB's account as one account of the CDB: its name and the roles it holds qualified by the container."""
    acc.identity = f"{container}::{acc.identity}"
    acc.attributes["container"] = container
    acc.roles = [RoleGrant(f"{container}::{r.role}", r.admin_option, r.default) for r in acc.roles]
    return acc


# --- querying ------------------------------------------------------------------------

_MISSING_VIEW = {"ORA-00942", "ORA-01031", "ORA-04043"}


def read_rows(counter: QueryCounter, release: tuple[int, int] = (19, 0)) -> OracleRows:
    """One statement per view: the number of round trips does not grow with accounts."""
    rows = OracleRows(release=release)
    for plain in statements(release):
        read = root_statement(plain) if rows.cdb else plain
        try:
            found = counter.fetchdicts(read.sql)
        except Exception as exc:
            codes = set(error_codes(exc))
            if rows.cdb and read.field == "users" and codes & _MISSING_VIEW:
                # no SELECT on the CDB_ views: the root alone, through the DBA_ views (every PDB a gap)
                rows.cdb = False
                rows.unreadable["cdb_views"] = sorted(codes & _MISSING_VIEW)[0]
                found = counter.fetchdicts(plain.sql)
            elif not read.optional or not codes & _MISSING_VIEW:
                raise
            else:
                rows.unreadable[read.field] = sorted(codes & _MISSING_VIEW)[0]
                continue
        setattr(rows, read.field, found)
        if read.field == "containers" and any(_con_id(r) == ROOT_CON_ID for r in found):
            rows.cdb = True
    return rows


# --- errors ---------------------------------------------------------------------------

_AUTH_CODES = {"ORA-01017", "ORA-28000", "ORA-28001", "ORA-01005", "ORA-01045", "ORA-28009"}
_NO_DICTIONARY = {"ORA-00942", "ORA-01031", "ORA-04043"}
_SERVICE_CODES = {"ORA-12514", "ORA-12505", "ORA-12521", "DPY-6001", "DPY-6003", "DPY-4027"}
_TIMEOUT_CODES = {"ORA-12170", "DPY-4024", "ORA-03136"}
# the server's certificate does not name what was asked for (DN or host name): thin mode's TLS checks
_TLS_NAME_CODES = {"DPY-6002", "DPY-6006"}
_CONNECT_CODES = {"DPY-6005", "DPY-4011", "DPY-6000", "ORA-12541", "ORA-12537", "ORA-12543", "ORA-12545", "ORA-03113"}
# an established connection that ended: closed by the database or the network, end-of-file on the
# channel, lost contact, or (thick mode) a call timeout that left the connection unusable
_LOST_CODES = {"DPY-4011", "ORA-03113", "ORA-03114", "ORA-03135", "DPI-1080"}


_LISTENER = "an Oracle listener"  # what should answer on the port, in timeout messages
_CODE_RE = re.compile(r"\b(?:ORA|DPY|DPI|TNS)-\d{4,5}\b")


def error_codes(exc: BaseException) -> list[str]:
    """Every 'ORA-nnnnn' / 'DPY-nnnn' in an oracledb error, outermost first.

    Thin mode wraps the cause: a wrong service name arrives as DPY-6005
    ("cannot connect") whose text carries DPY-6001 ("similar to ORA-12514"),
    so classifying on the first code alone would lose the real reason.
    """
    err = exc.args[0] if exc.args else None
    codes = [c for c in [getattr(err, "full_code", "") or ""] if c]
    for code in _CODE_RE.findall(_message(exc)):
        if code not in codes:
            codes.append(code)
    return codes


def _message(exc: BaseException) -> str:
    err = exc.args[0] if exc.args else None
    return _text(getattr(err, "message", None) or exc)


def _thin_mode_refusal(codes: set[str], detail: str, target: ConnectionTarget) -> ConfigurationError | None:
    """What python-oracledb's thin mode cannot do, and what the server or the instance must change instead."""
    name = target.name
    if "DPY-3001" in codes and "native network encryption" in detail.lower():
        return ConfigurationError(
            f"{endpoint(target)} requires Oracle native network encryption ({detail}), which python-oracledb's thin "
            "mode does not speak: encrypt with TLS instead (a TCPS listener and the instance's tls option, see "
            f"{MONITORING_DOC}), or let the server accept clients without it (SQLNET.ENCRYPTION_SERVER and "
            "SQLNET.CRYPTO_CHECKSUM_SERVER = ACCEPTED or REQUESTED in the server's sqlnet.ora)",
            instance_name=name,
        )
    if "DPY-3015" in codes:
        return ConfigurationError(
            f"the password of {account_at(target)} has only a 10G verifier ({detail}), which thin mode cannot "
            "use: set SQLNET.ALLOWED_LOGON_VERSION_SERVER to 12 (or 11) in the server's sqlnet.ora, then reset the "
            "account's password (ALTER USER ... IDENTIFIED BY ...) so a 12C verifier is made",
            instance_name=name,
        )
    if "DPY-3010" in codes:
        return ConfigurationError(
            f"the database at {endpoint(target)} is older than Oracle Database 12.1 ({detail}); python-oracledb's "
            "thin mode, which WhaleFall uses, connects to 12.1 and later only: upgrade the database",
            instance_name=name,
        )
    if codes & _TLS_NAME_CODES or "CERTIFICATE_VERIFY_FAILED" in detail:
        return tls_verify_failed(target, detail)
    if target.tls.mode not in (None, "disable") and "[SSL" in detail:
        return ConfigurationError(
            f"the TLS handshake with {endpoint(target)} failed ({detail}); check that the instance's port is the "
            "listener's TCPS port (often 2484), not its TCP port",
            instance_name=name,
        )
    return None


def classify_error(
    exc: BaseException, target: ConnectionTarget, *, phase: str, elapsed: float | None = None
) -> AdapterError:
    """Map an oracledb error to the classified error users see (password scrubbed).

    `elapsed` is given once connected (how long the failing statement ran): then a timeout is
    the statement's (call_timeout), and a connection that ended is "lost", never "cannot connect".
    Thin mode's own wording decides between the two when a call timeout could not be recovered
    from: DPY-4011 "... socket timed out while recovering ..." is a stall, hence a timeout.
    """
    codes = set(error_codes(exc))
    detail = scrub(_message(exc), target.password).strip()
    name = target.name
    if refusal := _thin_mode_refusal(codes, detail, target):
        return refusal
    if "ORA-28000" in codes:
        return PermissionDenied(
            f"the monitoring account {account_at(target)} is locked ({detail}); "
            "unlock it with ALTER USER ... ACCOUNT UNLOCK",
            instance_name=name,
        )
    if codes & _AUTH_CODES:
        return login_failed(target, detail, check="that the account has CREATE SESSION")
    if "ORA-00904" in codes:
        return ConfigurationError(
            f"this Oracle release lacks a dictionary column WhaleFall reads while trying to {phase} ({detail}); "
            f"WhaleFall reads Oracle Database 12.1.0.2 and later (see {MONITORING_DOC})",
            instance_name=name,
        )
    if codes & _NO_DICTIONARY:
        return PermissionDenied(
            f"the monitoring account {target.username!r} cannot read the DBA_ views while trying to {phase} "
            f"({detail}); grant it SELECT_CATALOG_ROLE or SELECT ANY DICTIONARY (see {MONITORING_DOC})",
            instance_name=name,
        )
    if codes & _SERVICE_CODES:
        return ConfigurationError(
            f"the listener at {endpoint(target)} does not know service {target.database_name!r} "
            f"({detail}); set the instance's database name to a service the listener offers "
            "(lsnrctl services, or SELECT VALUE FROM V$PARAMETER WHERE NAME = 'service_names')",
            instance_name=name,
        )
    lowered = detail.lower()
    if codes & _TIMEOUT_CODES or "timed out" in lowered or "timeout" in lowered:
        if elapsed is not None and phase != "connect":
            return no_answer(target, phase, elapsed, detail)
        return timeout_failed(target, phase, detail, port_of=_LISTENER)
    if codes & _LOST_CODES and elapsed is not None and phase != "connect":
        return connection_lost(target, phase, elapsed, detail, running="the database is open")
    if codes & _CONNECT_CODES or phase == "connect":
        return connection_failed(target, detail, running="the listener is running")
    return unexpected_error(target, phase, detail, source="Oracle")


# --- the adapter ------------------------------------------------------------------------


def tls_params(target: ConnectionTarget) -> dict[str, Any]:
    """python-oracledb thin-mode keywords for the instance's tls option (TCPS) and the client certificate.

    No tls option or `disable`: plain TCP, as before (O5LOGON never sends the password itself).
    `require` encrypts without checking the certificate; `verify-ca` checks the chain against the
    instance's CA (default: the system's); `verify-full` also matches the host name
    (ssl_server_dn_match). The port is then the listener's TCPS port (often 2484).
    """
    import ssl

    from accountsync.adapters.base import private_file

    tls = target.tls
    if tls.mode in (None, "disable"):
        return {}
    context = ssl.create_default_context(cadata=tls.ca_pem or None) if tls.verifies else ssl.create_default_context()
    if not tls.verifies:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.check_hostname = tls.mode == "verify-full"
    if tls.client_cert_pem and tls.client_key_pem:
        context.load_cert_chain(private_file(tls.client_cert_pem), private_file(tls.client_key_pem))
    return {"protocol": "tcps", "ssl_context": context, "ssl_server_dn_match": tls.mode == "verify-full"}


class OracleAdapter:
    """Reads Oracle Database 12.1.0.2+ accounts (modelled on 19c) with python-oracledb in thin mode."""

    db_type = "oracle"

    def connect(self, target: ConnectionTarget) -> Any:
        """Open a thin-mode connection, bounded by the connect timeout as a whole; then set call_timeout.

        Why a worker thread: `tcp_connect_timeout` only bounds the TCP
        handshake; a port that accepts and never speaks Oracle Net would
        otherwise hang the sync (python-oracledb has no overall connect
        timeout, oracle/python-oracledb#451). The abandoned attempt ends when
        the peer closes; its connection, if it ever arrives, is closed.

        After connecting, `call_timeout` (ms) bounds every round trip client-side:
        thin mode sets it as the socket timeout, and on expiry sends a break and
        waits once more for the server's reset (DPY-4024, connection still usable);
        if that wait times out too it closes the socket (DPY-4011 "socket timed out
        while recovering"). So a silent server costs at most 2 x query_timeout per
        round trip; a slow but live one, query_timeout.
        """
        import oracledb

        if not target.database_name:
            raise ConfigurationError(
                "no service name: set the instance's database name to the Oracle service (e.g. ORCLPDB1)",
                instance_name=target.name,
            )
        tls = tls_params(target)
        outcome: dict[str, Any] = {}
        abandoned = threading.Event()

        def attempt() -> None:
            try:
                conn = oracledb.connect(
                    user=target.username,
                    password=target.password,
                    host=target.host,
                    port=int(target.port),
                    service_name=target.database_name,
                    tcp_connect_timeout=float(target.connect_timeout),
                    retry_count=0,
                    program="whalefall",
                    **tls,
                )
            except BaseException as exc:  # handed to the caller's thread
                outcome["error"] = exc
                return
            if abandoned.is_set():
                conn.close()
            else:
                outcome["conn"] = conn

        worker = threading.Thread(target=attempt, name=f"oracle-connect-{target.name}", daemon=True)
        worker.start()
        worker.join(float(target.connect_timeout) + 0.5)
        if worker.is_alive():
            abandoned.set()
            raise timeout_failed(target, "connect", None, port_of=_LISTENER)
        if "error" in outcome:
            exc = outcome["error"]
            if isinstance(exc, oracledb.Error):
                raise classify_error(exc, target, phase="connect") from None
            raise InternalError(
                f"unexpected failure while connecting: {type(exc).__name__}: {scrub(str(exc), target.password)}",
                instance_name=target.name,
            ) from None
        conn = outcome["conn"]
        conn.call_timeout = int(target.query_timeout * 1000)
        return conn

    def test_connection(self, target: ConnectionTarget) -> str:
        """Connect and return the server version (needs only CREATE SESSION)."""
        import oracledb

        conn = self.connect(target)
        try:
            return str(conn.version)
        except oracledb.Error as exc:
            raise classify_error(exc, target, phase="read the server version") from None
        finally:
            conn.close()

    @gc_paused()
    def fetch(self, target: ConnectionTarget) -> Catalog:
        """Read every account in a constant number of statements."""
        import oracledb

        conn = self.connect(target)
        try:
            counter = QueryCounter(conn.cursor())
            try:
                rows = read_rows(counter, release_of(getattr(conn, "version", "")))
            except oracledb.Error as exc:
                raise classify_error(exc, target, phase="read the DBA_ views", elapsed=counter.elapsed) from None
        finally:
            conn.close()
        # Oracle-maintained accounts are shown unless the instance says otherwise
        include = (target.options or {}).get("include_oracle_maintained", True) is not False
        try:
            catalog = build_catalog(rows, include_oracle_maintained=include)
        except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
            raise unexpected_contents(target, "dictionary view contents", exc) from None
        catalog.round_trips = counter.count
        return catalog


__all__ = [
    "ALL_SQL",
    "OracleAdapter",
    "OracleRows",
    "build_catalog",
    "classify_error",
    "error_codes",
    "parse_account_status",
    "read_rows",
    "release_of",
    "statements",
    "status_now",
]
