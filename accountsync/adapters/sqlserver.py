"""SQL Server: logins, server roles and per-database grants from the sys catalog views.

Why this shape: server-level views are read once each; database-level views are
read with one UNION ALL statement per batch of databases, so round trips are
O(databases / batch) instead of one per database per view. `read_rows()` does
the I/O, `build_catalog()` is a pure function of the rows, so recorded rows (no
SQL Server runs in CI) exercise exactly the code live rows do. Column names are
those of the SQL Server 2022 catalog views (2016+ have all of them but
`sys.availability_groups.is_contained`, which is read from 2022 on only).

Supported: SQL Server 2016-2022 (13.x-16.x) and Azure SQL Managed Instance. Azure
SQL Database (no three-part names, no HAS_DBACCESS) and older versions are refused
with a configuration error before anything else is read.

Identities: logins and server roles by name (kind ``login`` / ``role``). A
database user mapped to a login (same SID) is not an account: its database
privileges and roles appear on the login with ``database:<db>``-level scopes, and the
mapping itself is the privilege ``USER <name>`` on ``database:<db>`` (a privilege, not an
attribute, so that a database that cannot be read keeps it as last known, like its grants).
Users that map to no login (orphaned, contained, WITHOUT LOGIN, guest with
grants), user-defined database roles and each database's ``public`` role are
accounts named ``<db>::<name>``. They live inside their database
(`SQLServerCatalog.account_scope`): while it cannot be read the engine keeps them
whole as last known, gives the logins back their grants, roles and ``revoked``
entries there (`carry_attributes`) and finalizes again, so what those grants give
(db_owner of a TRUSTWORTHY database) stays (accountsync/services.py, `_carry_forward`).

Implicit memberships (`ImplicitMemberships`): every login is a member of the
server role ``public``; every database user (a login's mapped user, a
database-only user) of the database role ``public``; a login without a user in a
database where guest may connect is guest there. They have no catalog row, so no
snapshot lists them; capabilities follow them here and effective access there.

Capabilities are computed per account from the routes its closure (its own
grants, its roles at any depth, its implicit memberships) holds, each route with
its reason (attribute ``capability_reasons``) and the DENY that blocks it (none
blocks a member of sysadmin). SUPERUSER: sysadmin; securityadmin ("should be
treated as equivalent to sysadmin"); CONTROL SERVER; IMPERSONATE ANY LOGIN;
IMPERSONATE or CONTROL on a superuser login; CONTROL or ALTER on a superuser server
role; db_owner (or CONTROL) of a TRUSTWORTHY database whose owner is a superuser
(msdb is TRUSTWORTHY and owned by sa by default). CREATE_DB: dbcreator, CREATE/ALTER
ANY DATABASE. SHUTDOWN: serveradmin, SHUTDOWN. FILE_ACCESS: bulkadmin, ADMINISTER
BULK OPERATIONS. CREATE_USER: securityadmin, ALTER ANY LOGIN, db_accessadmin, ALTER
ANY USER. GRANT_ADMIN: any WITH GRANT, securityadmin, db_owner, db_securityadmin,
CONTROL on a database. LOCKED: disabled, IsLocked, or DENY CONNECT SQL. EXPIRED:
IsExpired. ORPHANED: a SQL user whose SID matches no login. A SQL login whose
LOGINPROPERTY answers NULL has an unknown status (``locked`` null, attribute
``status_unknown``): never read as "not locked".

Permission state: G grant, W grant WITH GRANT OPTION, D deny; R (a revoke kept as
a row, e.g. a column left out of a table grant) is never a grant: it is listed in
the attribute ``revoked``. Any other state fails the fetch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from accountsync.adapters.base import (
    INHERITABLE_CAPABILITIES,
    AccountRecord,
    AdapterError,
    Catalog,
    ConfigurationError,
    ConnectionFailed,
    ConnectionTarget,
    CoverageGap,
    GapKind,
    PermissionDenied,
    Privilege,
    QueryCounter,
    RoleGrant,
    TimeoutFailed,
    connection_failed,
    connection_lost,
    gc_paused,
    iso_timestamp,
    login_failed,
    make_scope,
    no_answer,
    scrub,
    timeout_failed,
    unexpected_contents,
    unexpected_error,
)
from config.scopes import split_scope

MONITORING_DOC = "docs/monitoring-accounts.md, SQL Server"
MODELLED_VERSION = "SQL Server 2022 (16.x)"
SUPPORTED = "SQL Server 2016-2022 (13.x-16.x) and Azure SQL Managed Instance"
INSTANCE_KIND = "SQL Server"
AVAILABILITY_GROUP_KIND = "SQL Server availability group"
DEFAULT_BATCH = 50
# Every string column of the cross-database UNION ALL carries this collation: databases with
# different collations (a contained database's catalog is always Latin1_General_100_CI_AS_KS_WS_SC)
# otherwise fail the statement with Msg 451. A binary collation changes no nvarchar value.
COLLATION = "Latin1_General_100_BIN2"

# SERVERPROPERTY('EngineEdition'): 1-4 SQL Server editions (Personal/Developer, Standard,
# Enterprise, Express), 8 Azure SQL Managed Instance. 5 is Azure SQL Database, 6/11 Azure
# Synapse, 9 Azure SQL Edge, 12 Fabric: not supported.
SUPPORTED_EDITIONS = frozenset({1, 2, 3, 4, 8})
MANAGED_INSTANCE = 8
AZURE_SQL_DATABASE = 5
MIN_MAJOR, MAX_MODELLED_MAJOR = 13, 16

VERSION_SQL = (
    "SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS product_version, "
    "CAST(SERVERPROPERTY('EngineEdition') AS int) AS engine_edition, @@VERSION AS version"
)
SETTINGS_SQL = (
    "SELECT HAS_PERMS_BY_NAME(NULL, NULL, 'VIEW ANY DATABASE') AS view_any_database, "
    "(SELECT CAST(c.value_in_use AS int) FROM sys.configurations AS c "
    "WHERE c.name = N'common criteria compliance enabled') AS common_criteria"
)
# LOGINPROPERTY returns sql_variant, which the driver cannot read: each one is CAST. NULL for a
# SQL login means the monitoring login may not see it (unknown), for the other types "not a SQL login".
LOGINS_SQL = (
    "SELECT p.name, p.principal_id, p.sid, p.type, p.type_desc, p.is_disabled, p.is_fixed_role, "
    "p.default_database_name, p.create_date, l.is_policy_checked, l.is_expiration_checked, "
    "CAST(LOGINPROPERTY(p.name, 'PasswordLastSetTime') AS datetime) AS password_last_set_time, "
    "CAST(LOGINPROPERTY(p.name, 'IsLocked') AS int) AS is_locked, "
    "CAST(LOGINPROPERTY(p.name, 'IsExpired') AS int) AS is_expired, "
    "CAST(LOGINPROPERTY(p.name, 'IsMustChange') AS int) AS is_must_change "
    "FROM sys.server_principals AS p LEFT JOIN sys.sql_logins AS l ON l.principal_id = p.principal_id "
    "WHERE p.type IN ('S', 'U', 'G', 'E', 'X', 'C', 'K', 'R')"
)
SERVER_ROLE_MEMBERS_SQL = "SELECT role_principal_id, member_principal_id FROM sys.server_role_members"
SERVER_PERMISSIONS_SQL = (
    "SELECT class, class_desc, major_id, minor_id, grantee_principal_id, permission_name, state "
    "FROM sys.server_permissions"
)


def databases_sql(modern: bool) -> str:
    """sys.databases with what decides whether (and how) each database is read.

    HAS_DBACCESS and HAS_PERMS_BY_NAME are asked only of ONLINE databases that are not
    SINGLE_USER (user_access 1): asking a single-user database could take its only
    connection. VIEW SECURITY DEFINITION (2022+, Managed Instance) is what VIEW ANY
    SECURITY DEFINITION and VIEW DEFINITION both give; before 2022 it is VIEW DEFINITION.
    `is_contained` (contained availability groups) exists from 2022 on.
    """
    permission = "VIEW SECURITY DEFINITION" if modern else "VIEW DEFINITION"
    contained = "ag.is_contained" if modern else "CAST(0 AS bit)"
    readable = "d.state = 0 AND d.user_access <> 1"
    return (
        "SELECT d.name, d.database_id, d.state_desc, d.user_access_desc, d.is_trustworthy_on, d.owner_sid, "
        f"d.containment_desc, CASE WHEN {readable} THEN HAS_DBACCESS(d.name) END AS has_dbaccess, "
        f"CASE WHEN {readable} AND HAS_DBACCESS(d.name) = 1 "
        f"THEN HAS_PERMS_BY_NAME(d.name, N'DATABASE', N'{permission}') END AS can_view_definition, "
        f"ag.name AS availability_group, {contained} AS availability_group_contained "
        "FROM sys.databases AS d "
        "LEFT JOIN sys.availability_replicas AS ar ON ar.replica_id = d.replica_id "
        "LEFT JOIN sys.availability_groups AS ag ON ag.group_id = ar.group_id"
    )


SERVER_SQL = (VERSION_SQL, SETTINGS_SQL, LOGINS_SQL, SERVER_ROLE_MEMBERS_SQL, SERVER_PERMISSIONS_SQL)

_SKIP_USERS = frozenset({"sys", "INFORMATION_SCHEMA"})
USER_PREFIX = "USER "  # `USER <name>` on database:<db>: the login is that database's user <name>
_LOGIN_TYPES = frozenset({"S", "U", "G", "E", "X", "C", "K"})
_STATES = {"G": ("GRANT", False), "W": ("GRANT", True), "D": ("DENY", False)}


def bracket(name: str) -> str:
    """QUOTENAME-equivalent: a name is safe inside [...] once ']' is doubled."""
    return "[" + name.replace("]", "]]") + "]"


def nliteral(name: str) -> str:
    return "N'" + name.replace("'", "''") + "'"


def _c(expression: str, alias: str) -> str:
    return f"{expression} COLLATE {COLLATION} AS {alias}"


def database_batch_sql(databases: list[str]) -> tuple[str, str, str]:
    """Principals, role members and permissions of several databases, one statement each.

    System objects (negative ids: xp_cmdshell, the sys views) are only in sys.all_objects and
    sys.all_columns, so those are joined; every string column is collated explicitly (Msg 451).
    """
    principals, members, perms = [], [], []
    for db in databases:
        q, lit = bracket(db), nliteral(db)
        principals.append(
            f"SELECT {_c(lit, 'database_name')}, {_c('dp.name', 'name')}, dp.principal_id, {_c('dp.type', 'type')}, "
            f"dp.sid, {_c('dp.authentication_type_desc', 'authentication_type_desc')}, dp.is_fixed_role "
            f"FROM {q}.sys.database_principals AS dp"
        )
        members.append(
            f"SELECT {_c(lit, 'database_name')}, rm.role_principal_id, rm.member_principal_id "
            f"FROM {q}.sys.database_role_members AS rm"
        )
        perms.append(
            f"SELECT {_c(lit, 'database_name')}, pe.class, pe.major_id, pe.minor_id, pe.grantee_principal_id, "
            f"{_c('pe.permission_name', 'permission_name')}, {_c('pe.state', 'state')}, "
            f"{_c('s.name', 'schema_name')}, {_c('o.name', 'object_name')}, "
            f"{_c('os.name', 'object_schema_name')}, {_c('c.name', 'column_name')}, o.is_ms_shipped "
            f"FROM {q}.sys.database_permissions AS pe "
            f"LEFT JOIN {q}.sys.schemas AS s ON pe.class = 3 AND s.schema_id = pe.major_id "
            f"LEFT JOIN {q}.sys.all_objects AS o ON pe.class = 1 AND o.object_id = pe.major_id "
            f"LEFT JOIN {q}.sys.schemas AS os ON os.schema_id = o.schema_id "
            f"LEFT JOIN {q}.sys.all_columns AS c ON pe.class = 1 AND pe.minor_id <> 0 "
            "AND c.object_id = pe.major_id AND c.column_id = pe.minor_id"
        )
    return tuple(" UNION ALL ".join(parts) for parts in (principals, members, perms))  # type: ignore[return-value]


@dataclass
class SQLServerRows:
    """Rows of each view as dicts keyed by the view's column names."""

    version: list[dict[str, Any]] = field(default_factory=list)
    settings: list[dict[str, Any]] = field(default_factory=list)
    logins: list[dict[str, Any]] = field(default_factory=list)
    server_role_members: list[dict[str, Any]] = field(default_factory=list)
    server_permissions: list[dict[str, Any]] = field(default_factory=list)
    databases: list[dict[str, Any]] = field(default_factory=list)
    database_principals: list[dict[str, Any]] = field(default_factory=list)
    database_role_members: list[dict[str, Any]] = field(default_factory=list)
    database_permissions: list[dict[str, Any]] = field(default_factory=list)


# --- what is supported, what is read ----------------------------------------------------


class Unsupported(Exception):
    """The server is not one this adapter models (a configuration error once the instance is known)."""


def product_major(version: list[dict[str, Any]]) -> int | None:
    text = str((version[0] if version else {}).get("product_version") or "")
    head = text.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def _engine_edition(version: list[dict[str, Any]]) -> int | None:
    value = (version[0] if version else {}).get("engine_edition")
    return None if value is None else int(value)


def check_supported(version: list[dict[str, Any]]) -> None:
    """Refuse what the adapter cannot read correctly, before anything else is read.

    Why refuse Azure SQL Database: it has no three-part names ([db].sys.…) and no
    HAS_DBACCESS, so one connection cannot read its databases, and a fetch that read only
    the database it connected to would report the others' grants as revoked.
    """
    edition, major = _engine_edition(version), product_major(version)
    if edition == AZURE_SQL_DATABASE:
        raise Unsupported(
            "this is Azure SQL Database (EngineEdition 5), which WhaleFall does not read: it has no "
            "cross-database names (three-part names) and no HAS_DBACCESS, so the databases of a logical server "
            f"cannot be read from one connection. Supported: {SUPPORTED}"
        )
    if edition is not None and edition not in SUPPORTED_EDITIONS:
        raise Unsupported(f"SERVERPROPERTY('EngineEdition') {edition} is not supported. Supported: {SUPPORTED}")
    # Managed Instance reports ProductVersion 12.x whatever its engine: only the edition counts there
    if edition != MANAGED_INSTANCE and major is not None and major < MIN_MAJOR:
        raise Unsupported(f"SQL Server {major}.x is older than 2016 (13.x) and not supported. Supported: {SUPPORTED}")


def _modern(version: list[dict[str, Any]]) -> bool:
    """2022 catalog (VIEW SECURITY DEFINITION, contained availability groups): 16.x+, or Managed Instance."""
    major = product_major(version)
    return _engine_edition(version) == MANAGED_INSTANCE or (major is not None and major >= MAX_MODELLED_MAJOR)


def _flag(value: Any) -> bool:
    return bool(value) and str(value) not in ("0", "False")


def _gap(db: str, reason: str, fix: str, kind: str = GapKind.UNREADABLE) -> CoverageGap:
    return CoverageGap(scope=make_scope("database", db), reason=reason, fix=fix, kind=kind)


ALL_DATABASE_LEVELS = ("database", "schema", "object", "column")


def plan_databases(
    rows: SQLServerRows, *, availability_group: bool = False, login: str = "the monitoring login"
) -> tuple[list[str], list[CoverageGap]]:
    """(databases to read, coverage gaps with their reasons): what cannot be read is never revoked."""
    readable: list[str] = []
    gaps: list[CoverageGap] = []
    settings = rows.settings[0] if rows.settings else {}
    if settings.get("view_any_database") is not None and not _flag(settings.get("view_any_database")):
        # sys.databases then lists only master, tempdb and the databases the login owns: a database
        # missing from it cannot be told from a dropped one, so no database-level grant is known
        for level in ALL_DATABASE_LEVELS:
            gaps.append(
                CoverageGap(
                    scope=level,
                    reason=f"{login} lacks VIEW ANY DATABASE: sys.databases shows it only master, tempdb and the "
                    "databases it owns, so other databases cannot be told from dropped ones",
                    fix=f"GRANT VIEW ANY DATABASE TO {bracket(login)} (public holds it by default); {MONITORING_DOC}",
                )
            )
    for row in rows.databases:
        name = str(row["name"])
        state = str(row.get("state_desc") or "").upper()
        access = str(row.get("user_access_desc") or "MULTI_USER").upper()
        group = row.get("availability_group")
        if _flag(row.get("availability_group_contained")) and not availability_group:
            gaps.append(
                _gap(
                    name,
                    f"part of the contained availability group {group}: its users and grants belong to the "
                    "availability group, not to this replica",
                    'register the availability group\'s listener as its own instance with {"availability_group": '
                    "true} (docs/monitoring-accounts.md, SQL Server)",
                    GapKind.OUT_OF_SCOPE,
                )
            )
        elif state != "ONLINE":
            gaps.append(_gap(name, f"the database is {state or 'not ONLINE'}", "sync again once it is ONLINE"))
        elif access == "SINGLE_USER":
            gaps.append(
                _gap(
                    name,
                    "the database is SINGLE_USER: not read, so that WhaleFall never takes its only connection",
                    "sync again once it is MULTI_USER",
                )
            )
        elif not _flag(row.get("has_dbaccess")):
            gaps.append(
                _gap(
                    name,
                    f"{login} cannot access the database (HAS_DBACCESS is 0)",
                    f"GRANT CONNECT ANY DATABASE TO {bracket(login)}; {MONITORING_DOC}",
                )
            )
        elif row.get("can_view_definition") is not None and not _flag(row.get("can_view_definition")):
            gaps.append(
                _gap(
                    name,
                    f"VIEW DEFINITION is denied to {login} in this database: its catalog views would show only "
                    "part of the principals and grants",
                    f"remove the DENY VIEW DEFINITION in {bracket(name)} that reaches {bracket(login)} "
                    "(on its user or on public)",
                )
            )
        else:
            readable.append(name)
    return readable, gaps


_FAILURES = (  # (words of the server's message, what happened, the fix)
    (("offline",), "went OFFLINE after the database list was read", "sync again once it is ONLINE"),
    (
        ("availability group", "availability replica", "secondary"),
        "is an availability-group secondary replica that does not allow reads",
        "allow read-only connections on the secondary, or read the database through its primary",
    ),
    (
        ("does not exist", "invalid object name", "not found"),
        "was dropped (or renamed) after the database list was read",
        "nothing: the next sync no longer lists it",
    ),
    (("one user at a time", "single user", "single-user"), "is SINGLE_USER and in use", "sync again later"),
    (("restor", "recover", "being recovered"), "is restoring or recovering", "sync again once it is ONLINE"),
    (
        ("not able to access", "permission", "denied"),
        "cannot be read by the monitoring login",
        f"grant the permissions in {MONITORING_DOC}",
    ),
)


def failure_gap(db: str, detail: str) -> CoverageGap:
    """A database whose statements failed (the rest of the fetch goes on): the server's words, named."""
    lowered = detail.lower()
    for words, what, fix in _FAILURES:
        if any(word in lowered for word in words):
            return _gap(db, f"the database {what} ({detail})", fix)
    return _gap(db, f"reading the database failed ({detail})", "check the server's log, then sync again")


def read_rows(
    counter: QueryCounter,
    *,
    batch_size: int = DEFAULT_BATCH,
    availability_group: bool = False,
    login: str = "the monitoring login",
    driver_errors: tuple[type[BaseException], ...] = (),
    per_database: Callable[[BaseException], str | None] = lambda exc: None,
) -> tuple[SQLServerRows, list[CoverageGap]]:
    """Server views once each, then three statements per batch of readable databases.

    A batch whose statements fail with a database's error (offline since the list was read,
    an unreadable secondary, dropped mid-sync, ...) is read again database by database; a
    database that still fails becomes a coverage gap with the server's reason.
    `per_database(exc)` returns the (scrubbed) detail of such an error, or None for one that
    ends the fetch (a lost connection, a timeout), which is raised.
    """
    rows = SQLServerRows(version=counter.fetchdicts(VERSION_SQL))
    check_supported(rows.version)
    rows.settings = counter.fetchdicts(SETTINGS_SQL)
    rows.logins = counter.fetchdicts(LOGINS_SQL)
    rows.server_role_members = counter.fetchdicts(SERVER_ROLE_MEMBERS_SQL)
    rows.server_permissions = counter.fetchdicts(SERVER_PERMISSIONS_SQL)
    rows.databases = counter.fetchdicts(databases_sql(_modern(rows.version)))
    readable, gaps = plan_databases(rows, availability_group=availability_group, login=login)

    def read(databases: list[str]) -> None:
        principals, members, perms = database_batch_sql(databases)
        read_principals, read_members, read_perms = (
            counter.fetchdicts(principals),
            counter.fetchdicts(members),
            counter.fetchdicts(perms),
        )
        rows.database_principals += read_principals
        rows.database_role_members += read_members
        rows.database_permissions += read_perms

    for start in range(0, len(readable), batch_size):
        batch = readable[start : start + batch_size]
        try:
            read(batch)
        except driver_errors as exc:
            if per_database(exc) is None:
                raise
            for db in batch:
                try:
                    read([db])
                except driver_errors as db_exc:
                    detail = per_database(db_exc)
                    if detail is None:
                        raise
                    gaps.append(failure_gap(db, detail))
    return rows, gaps


# --- pure parsing ---------------------------------------------------------------


def _sid(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return "0x" + bytes(value).hex().upper()
    return str(value).upper()


def _state(row: dict[str, Any]) -> tuple[str, bool] | None:
    """(effect, grantable) of a permission row; None for a REVOKE row; an unknown state fails the fetch."""
    state = str(row["state"]).strip().upper()
    if state == "R":
        return None
    if state not in _STATES:
        raise ValueError(f"unknown permission state {row['state']!r} for {row.get('permission_name')!r}")
    return _STATES[state]


def _add_permission(acc: AccountRecord, scope: str, row: dict[str, Any]) -> Privilege | None:
    name = str(row["permission_name"]).upper()
    state = _state(row)
    if state is None:
        acc.attributes.setdefault("revoked", []).append(f"{name} on {scope}")
        return None
    effect, grantable = state
    privilege = Privilege(scope, name, grantable=grantable, effect=effect)
    acc.privileges.append(privilege)
    return privilege


def _perm_scope(db: str, row: dict[str, Any], principal_names: dict[int, str]) -> str:
    cls = int(row["class"])
    if cls == 0:
        return make_scope("database", db)
    if cls == 3 and row.get("schema_name") is not None:
        return make_scope("schema", db, str(row["schema_name"]))
    if cls == 1 and row.get("object_name") is not None:
        parts = [db, str(row["object_schema_name"]), str(row["object_name"])]
        if row.get("column_name") is not None:
            return make_scope("column", *parts, str(row["column_name"]))
        return make_scope("object", *parts)
    if cls == 4:
        return make_scope("object", db, "principal", principal_names.get(int(row["major_id"]), str(row["major_id"])))
    return make_scope("object", db, f"class{cls}", str(row["major_id"]))


class Route(NamedTuple):
    """One way an account holds a capability, why, and which DENYs (scope, permission) take it away."""

    capability: str
    reason: str = ""
    blocked_by: frozenset[tuple[str, str]] = frozenset()


def _blocked(*keys: tuple[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset(keys)


SECURITYADMIN_REASON = (
    "securityadmin: can grant any server permission, CONTROL SERVER included, and reset SQL logins' "
    "passwords; Microsoft: it 'should be treated as equivalent to sysadmin'"
)
BULK_REASON = "BULK INSERT and OPENROWSET(BULK ...) read any file the SQL Server service account can read"

# fixed server role -> its routes (Permissions of Fixed Server Roles)
_FIXED_ROLE_ROUTES: dict[str, tuple[Route, ...]] = {
    "sysadmin": (Route("SUPERUSER", "sysadmin: no permission check and no DENY applies to its members"),),
    "securityadmin": (
        Route("SUPERUSER", SECURITYADMIN_REASON),
        Route("GRANT_ADMIN"),
        Route("CREATE_USER", blocked_by=_blocked(("global", "ALTER ANY LOGIN"))),
    ),
    "serveradmin": (Route("SHUTDOWN", blocked_by=_blocked(("global", "SHUTDOWN"))),),
    "dbcreator": (Route("CREATE_DB", blocked_by=_blocked(("global", "CREATE ANY DATABASE"))),),
    "bulkadmin": (
        Route("FILE_ACCESS", f"bulkadmin: {BULK_REASON}", _blocked(("global", "ADMINISTER BULK OPERATIONS"))),
    ),
}

# server permission -> (capability, reason); a DENY of the same permission takes it away
_SERVER_PERMISSION_ROUTES: dict[str, tuple[str, str]] = {
    "CONTROL SERVER": ("SUPERUSER", "CONTROL SERVER: passes every permission check on the server but a DENY"),
    "IMPERSONATE ANY LOGIN": (
        "SUPERUSER",
        "IMPERSONATE ANY LOGIN: can EXECUTE AS LOGIN any login, sysadmin members included",
    ),
    "ALTER ANY LOGIN": ("CREATE_USER", ""),
    "CREATE LOGIN": ("CREATE_USER", ""),
    "CREATE ANY DATABASE": ("CREATE_DB", ""),
    "ALTER ANY DATABASE": ("CREATE_DB", ""),
    "SHUTDOWN": ("SHUTDOWN", ""),
    "ADMINISTER BULK OPERATIONS": ("FILE_ACCESS", f"ADMINISTER BULK OPERATIONS: {BULK_REASON}"),
}

# fixed database role (membership `ROLE DB_X` on database:<db>) -> capabilities (no DENY blocks a role)
_DATABASE_ROLE_CAPABILITIES = {
    "DB_OWNER": ("GRANT_ADMIN",),
    "DB_SECURITYADMIN": ("GRANT_ADMIN",),
    "DB_ACCESSADMIN": ("CREATE_USER",),
}


class _PrincipalGrant(NamedTuple):
    """IMPERSONATE/CONTROL/ALTER held on a server principal: a route to whatever that principal can do."""

    holder: str  # identity of the grantee
    target: str  # identity of the login or server role
    permission: str
    scope: str


class _OwnerRoute(NamedTuple):
    """db_owner (or CONTROL) of a TRUSTWORTHY database: a route to the owner's server rights."""

    holder: str
    database: str
    owner: str  # identity of the owning login
    how: str  # "db_owner" or "CONTROL"


@dataclass
class SQLServerCatalog(Catalog):
    """A Catalog whose finalize() resolves SQL Server's capabilities; calling it again changes nothing.

    Why a subclass: the engine finalizes every catalog again (`adapter.fetch(target).finalize()`);
    the base class would pass a role's capabilities to its members whatever DENY the member holds,
    and knows neither the implicit memberships nor the routes that depend on other accounts.
    """

    routes: dict[str, list[Route]] = field(default_factory=dict, repr=False)
    flags: dict[str, set[str]] = field(default_factory=dict, repr=False)  # own, non-inheritable capabilities
    principal_grants: list[_PrincipalGrant] = field(default_factory=list, repr=False)
    owner_routes: list[_OwnerRoute] = field(default_factory=list, repr=False)
    owners: dict[str, str] = field(default_factory=dict, repr=False)  # TRUSTWORTHY database -> owning login

    def finalize(self) -> Catalog:
        """Routes from each account's grants as they stand now, then the capabilities they give.

        The routes are worked out here, not when the rows are read: the engine gives the accounts back
        their last known grants inside unreadable databases and finalizes again, and those grants
        (db_owner of a TRUSTWORTHY database) must still give what they gave.
        """
        super().finalize()
        self.owner_routes = []
        for acc in self.accounts:
            _add_own_routes(acc, self, self.owners)
        _resolve(self)
        return self

    def account_scope(self, identity: str, kind: str, attributes: dict[str, Any]) -> str | None:
        """A database-only account (contained or orphaned user, database role) lives inside its database."""
        db = attributes.get("database")
        return make_scope("database", str(db)) if db and identity.startswith(f"{db}::") else None

    def carry_attributes(
        self, attributes: dict[str, Any], old: dict[str, Any], gaps: list[CoverageGap]
    ) -> dict[str, Any]:
        """Keep the REVOKE rows (attribute ``revoked``, "<PERMISSION> on <scope>") last read in unreadable databases."""
        kept = [item for item in old.get("revoked") or () if _revoked_scope(item, gaps)]
        if not kept:
            return attributes
        return {**attributes, "revoked": sorted({*attributes.get("revoked", ()), *kept})}


def _revoked_scope(item: str, gaps: list[CoverageGap]) -> bool:
    _permission, sep, scope = str(item).rpartition(" on ")
    return bool(sep) and any(gap.covers(scope) for gap in gaps)


def build_catalog(
    rows: SQLServerRows, *, coverage: Iterable[CoverageGap] = (), availability_group: bool = False
) -> SQLServerCatalog:
    """Turn catalog-view rows into a finalized catalog (pure: no I/O)."""
    server = _server_principals(rows.logins)
    accounts: dict[str, AccountRecord] = {a.identity: a for a in server.by_id.values()}
    catalog = SQLServerCatalog()
    _add_server_roles_and_permissions(rows, server, catalog)
    database = _database_principals(rows, server.by_sid, accounts)
    _add_database_roles_and_permissions(rows, database)
    catalog.owners = _trustworthy_owners(rows.databases, server.by_sid)
    coverage = list(coverage)
    for gap in coverage:
        # every database has a public role: one that could not be read keeps it (and, through the gap, its
        # last known grants) instead of reporting it removed
        if gap.kind == GapKind.UNREADABLE and gap.scope.startswith("database:"):
            db = split_scope(gap.scope)[1][0]
            public = AccountRecord(
                identity=f"{db}::public", username="public", kind="role", attributes={"database": db}
            )
            accounts.setdefault(public.identity, public)
    for acc in accounts.values():
        for key in ("revoked", "ms_shipped_scopes"):
            if key in acc.attributes:
                acc.attributes[key] = sorted(set(acc.attributes[key]))

    catalog.accounts = list(accounts.values())
    catalog.coverage = coverage
    catalog.details["modelled_on"] = MODELLED_VERSION
    catalog.details["instance_kind"] = AVAILABILITY_GROUP_KIND if availability_group else INSTANCE_KIND
    settings = rows.settings[0] if rows.settings else {}
    if settings.get("common_criteria") is not None:
        catalog.details["common_criteria_compliance_enabled"] = _flag(settings["common_criteria"])
    if rows.version:
        catalog.server_version = str(rows.version[0].get("product_version") or "")
        if rows.version[0].get("engine_edition") is not None:
            catalog.details["engine_edition"] = int(rows.version[0]["engine_edition"])
    catalog.finalize()
    return catalog


class _ServerPrincipals(NamedTuple):
    """Logins and server roles, as the server-level views refer to them."""

    by_id: dict[int, AccountRecord]  # principal_id -> the login or server role
    by_sid: dict[str, AccountRecord]  # SID -> the login (how a database user maps to its login)


def _server_principals(logins: list[dict[str, Any]]) -> _ServerPrincipals:
    """An account per login and server role (sys.server_principals)."""
    by_id: dict[int, AccountRecord] = {}
    by_sid: dict[str, AccountRecord] = {}
    for row in logins:
        name = str(row["name"])
        kind = "role" if row["type"] == "R" else "login"
        attrs: dict[str, Any] = {"type": row["type"], "type_desc": row.get("type_desc")}
        locked: bool | None = _flag(row.get("is_disabled"))
        if kind == "login":
            expired: bool | None = _flag(row.get("is_expired"))
            must_change: bool | None = _flag(row.get("is_must_change"))
            if row["type"] == "S":
                # LOGINPROPERTY said nothing (the monitoring login may not see the login): unknown, never "not locked"
                if any(row.get(k) is None for k in ("is_locked", "is_expired", "is_must_change")):
                    attrs["status_unknown"] = True
                locked = locked or (None if row.get("is_locked") is None else _flag(row.get("is_locked")))
                expired = None if row.get("is_expired") is None else expired
                must_change = None if row.get("is_must_change") is None else must_change
            else:  # LOGINPROPERTY is NULL for anything but a SQL login
                locked = locked or _flag(row.get("is_locked"))
            attrs.update(
                disabled=_flag(row.get("is_disabled")),
                password_expired=expired,
                must_change=must_change,
                policy_checked=_flag(row.get("is_policy_checked")),
                expiration_checked=_flag(row.get("is_expiration_checked")),
                password_last_set=iso_timestamp(row.get("password_last_set_time")),
                default_database=row.get("default_database_name"),
            )
        else:
            attrs["fixed_role"] = _flag(row.get("is_fixed_role"))
        attrs["locked"] = locked
        acc = AccountRecord(identity=name, username=name, kind=kind, is_locked=locked is True, attributes=attrs)
        by_id[int(row["principal_id"])] = acc
        sid = _sid(row.get("sid"))
        if kind == "login" and sid:
            by_sid[sid] = acc
    return _ServerPrincipals(by_id, by_sid)


def _add_server_roles_and_permissions(
    rows: SQLServerRows, server: _ServerPrincipals, catalog: SQLServerCatalog
) -> None:
    """Server role memberships and server-level permissions, onto the logins and roles."""
    by_id = server.by_id
    for row in rows.server_role_members:
        role, member = by_id.get(int(row["role_principal_id"])), by_id.get(int(row["member_principal_id"]))
        if role and member:
            member.roles.append(RoleGrant(role.identity))
    for row in rows.server_permissions:
        acc = by_id.get(int(row["grantee_principal_id"]))
        if acc is None:
            continue
        cls = int(row["class"])
        if cls == 100:
            privilege = _add_permission(acc, "global", row)
            if privilege and privilege.privilege == "CONNECT SQL" and privilege.effect == "DENY":
                acc.attributes["connect_denied"] = True
            continue
        target = by_id.get(int(row["major_id"])) if cls == 101 else None
        name = target.username if target is not None else str(row["major_id"])
        scope = make_scope("object", "server", str(row.get("class_desc") or cls), name)
        privilege = _add_permission(acc, scope, row)
        if target is not None and privilege is not None and privilege.effect == "GRANT":
            catalog.principal_grants.append(_PrincipalGrant(acc.identity, target.identity, privilege.privilege, scope))


class _DatabasePrincipals(NamedTuple):
    """Database principals, as the database-level views refer to them."""

    accounts: dict[tuple[str, int], AccountRecord]  # (db, principal_id) -> the account its grants go to
    names: dict[str, dict[int, str]]  # db -> principal_id -> name, for principal-class permission scopes
    fixed_roles: dict[tuple[str, int], str]  # (db, principal_id) -> fixed role name (db_owner, ...)
    public: set[str]  # identities of the databases' public roles


def _database_principals(
    rows: SQLServerRows, logins_by_sid: dict[str, AccountRecord], accounts: dict[str, AccountRecord]
) -> _DatabasePrincipals:
    """Which account each database principal's grants go to; adds the database-only accounts to `accounts`.

    A user mapped to a login (same SID) is that login (the privilege `USER <name>` on the
    database records the mapping); fixed roles are not accounts (their membership becomes a `ROLE <name>`
    privilege); each database's public role is the account `<db>::public`; guest counts only
    when it holds grants.
    """
    found = _DatabasePrincipals({}, {}, {}, set())
    principal_rows = {}
    for row in rows.database_principals:
        db, pid, name = str(row["database_name"]), int(row["principal_id"]), str(row["name"])
        found.names.setdefault(db, {})[pid] = name
        principal_rows[(db, pid)] = row
    granted = {(str(r["database_name"]), int(r["grantee_principal_id"])) for r in rows.database_permissions}
    for (db, pid), row in principal_rows.items():
        name, ptype = str(row["name"]), str(row["type"])
        if name in _SKIP_USERS:
            continue
        if ptype == "R":
            if _flag(row.get("is_fixed_role")):
                found.fixed_roles[(db, pid)] = name
                continue
            attrs: dict[str, Any] = {"database": db}
            acc = AccountRecord(identity=f"{db}::{name}", username=name, kind="role", attributes=attrs)
            if name == "public" and pid == 0:
                found.public.add(acc.identity)
        else:
            sid = _sid(row.get("sid"))
            login = logins_by_sid.get(sid) if sid else None
            if login is not None:
                found.accounts[(db, pid)] = login
                login.privileges.append(Privilege(make_scope("database", db), f"{USER_PREFIX}{name}"))
                continue
            if name == "guest" and (db, pid) not in granted:
                continue
            acc = _database_user(db, name, ptype, str(row.get("authentication_type_desc") or ""))
        accounts.setdefault(acc.identity, acc)
        found.accounts[(db, pid)] = accounts[acc.identity]
    return found


def _database_user(db: str, name: str, ptype: str, auth: str) -> AccountRecord:
    """A database user that maps to no login: orphaned (a SQL user of the instance), contained or WITHOUT LOGIN."""
    orphaned = ptype == "S" and auth == "INSTANCE"
    return AccountRecord(
        identity=f"{db}::{name}",
        username=name,
        kind="user",
        attributes={"database": db, "type": ptype, "authentication_type": auth, "orphaned": orphaned},
    )


def _add_database_roles_and_permissions(rows: SQLServerRows, database: _DatabasePrincipals) -> None:
    """Database role memberships and permissions, onto the accounts the principals map to."""
    for row in rows.database_role_members:
        db = str(row["database_name"])
        member = database.accounts.get((db, int(row["member_principal_id"])))
        rid = int(row["role_principal_id"])
        if member is None:
            continue
        if (db, rid) in database.fixed_roles:
            role_name = database.fixed_roles[(db, rid)].upper()
            member.privileges.append(Privilege(make_scope("database", db), f"ROLE {role_name}"))
        elif (role := database.accounts.get((db, rid))) is not None:
            member.roles.append(RoleGrant(role.identity))

    for row in rows.database_permissions:
        db = str(row["database_name"])
        acc = database.accounts.get((db, int(row["grantee_principal_id"])))
        if acc is None:
            continue
        scope = _perm_scope(db, row, database.names.get(db, {}))
        privilege = _add_permission(acc, scope, row)
        if privilege is not None and acc.identity in database.public and _flag(row.get("is_ms_shipped")):
            # what the PUBLIC_GRANTS rule needs to tell Microsoft's own grants to public from added ones
            acc.attributes.setdefault("ms_shipped_scopes", []).append(scope)


def _trustworthy_owners(databases: list[dict[str, Any]], logins_by_sid: dict[str, AccountRecord]) -> dict[str, str]:
    """TRUSTWORTHY database -> the identity of the login that owns it (sys.databases owner_sid)."""
    owners = {}
    for row in databases:
        owner = logins_by_sid.get(_sid(row.get("owner_sid")) or "")
        if _flag(row.get("is_trustworthy_on")) and owner is not None:
            owners[str(row["name"])] = owner.identity
    return owners


def _add_own_routes(acc: AccountRecord, catalog: SQLServerCatalog, owners: dict[str, str]) -> None:
    """What the account's own grants, fixed-role identity and login state give (its roles add theirs later)."""
    routes: list[Route] = []
    if acc.kind == "role" and acc.attributes.get("fixed_role"):
        routes += _FIXED_ROLE_ROUTES.get(acc.username, ())
    for p in acc.privileges:
        if p.effect != "GRANT":
            continue
        if p.grantable:
            routes.append(Route("GRANT_ADMIN"))
        if p.scope == "global" and p.privilege in _SERVER_PERMISSION_ROUTES:
            capability, reason = _SERVER_PERMISSION_ROUTES[p.privilege]
            routes.append(Route(capability, reason, _blocked(("global", p.privilege))))
        elif p.scope.startswith("database:"):
            db = split_scope(p.scope)[1][0]
            role = p.privilege[5:] if p.privilege.startswith("ROLE ") else ""
            routes += [Route(cap) for cap in _DATABASE_ROLE_CAPABILITIES.get(role, ())]
            if p.privilege == "ALTER ANY USER":
                routes.append(Route("CREATE_USER", blocked_by=_blocked((p.scope, "ALTER ANY USER"))))
            if p.privilege == "CONTROL":
                routes.append(Route("GRANT_ADMIN", blocked_by=_blocked((p.scope, "CONTROL"))))
            how = "db_owner" if role == "DB_OWNER" else "CONTROL" if p.privilege == "CONTROL" else ""
            if how and db in owners:
                catalog.owner_routes.append(_OwnerRoute(acc.identity, db, owners[db], how))
    catalog.routes[acc.identity] = routes
    flags = set()
    if acc.attributes.get("locked") is True or acc.attributes.get("connect_denied"):
        flags.add("LOCKED")
        acc.is_locked = True
        acc.attributes["locked"] = True
    if acc.attributes.get("password_expired"):
        flags.add("EXPIRED")
    if acc.attributes.get("orphaned"):
        flags.add("ORPHANED")
    catalog.flags[acc.identity] = flags


# --- implicit memberships and capability resolution ---------------------------------------


class ImplicitMemberships:
    """The memberships SQL Server gives without a catalog row, read from the accounts alone.

    Every login is a member of the server role public; every database user (a login's user, the
    privilege `USER <name>` on the database, and a database-only user) of its database's public
    role; a login without a user in a database where guest may connect (CONNECT granted, not
    denied: master, msdb and tempdb by default) is guest there, and so a member of that database's
    public role too. Used by the adapter
    (capabilities) and by accountsync/effective.py (effective access), on fetched or stored accounts.
    """

    def __init__(self, accounts: Iterable[AccountRecord]) -> None:
        self.server_public: str | None = None
        self.database_public: dict[str, str] = {}
        self.guest: dict[str, str] = {}
        for acc in accounts:
            db = acc.attributes.get("database")
            if acc.kind == "role" and acc.identity == "public" and not db:
                self.server_public = acc.identity
            elif acc.kind == "role" and db and acc.identity == f"{db}::public":
                self.database_public[db] = acc.identity
            elif acc.kind == "user" and db and acc.username == "guest" and _may_connect(acc, str(db)):
                self.guest[db] = acc.identity

    def roles_of(self, acc: AccountRecord) -> list[str]:
        """The identities `acc` holds implicitly, in a stable order."""
        if acc.kind == "login":
            users = {
                split_scope(p.scope)[1][0]
                for p in acc.privileges
                if p.privilege.upper().startswith(USER_PREFIX)
                and p.effect == "GRANT"
                and p.scope.startswith("database:")
            }
            out = [self.server_public] if self.server_public else []
            out += [self.database_public[db] for db in sorted(users) if db in self.database_public]
            for db, guest in sorted(self.guest.items()):
                if db not in users:
                    out.append(guest)
                    if db in self.database_public:
                        out.append(self.database_public[db])
            return out
        db = acc.attributes.get("database")
        if acc.kind == "user" and db in self.database_public:
            return [self.database_public[db]]
        return []


def _may_connect(acc: AccountRecord, db: str) -> bool:
    scope = make_scope("database", db)
    held = {(p.privilege, p.effect) for p in acc.privileges if p.scope == scope}
    return ("CONNECT", "GRANT") in held and ("CONNECT", "DENY") not in held


def _closures(catalog: Catalog) -> dict[str, list[tuple[AccountRecord, tuple[str, ...]]]]:
    """Per account: every account it acts as (itself, its roles at any depth, implicit memberships), with the path.

    Breadth-first, so each role comes with its shortest path (of identities: a database role is
    `<db>::<name>`, so the reason says which database's role it is).
    """
    by_name: dict[str, AccountRecord] = {}
    for acc in catalog.accounts:
        if acc.kind == "role":
            by_name.setdefault(acc.username, acc)
    for acc in catalog.accounts:
        by_name[acc.identity] = acc
    implicit = ImplicitMemberships(catalog.accounts)
    edges: dict[str, list[AccountRecord]] = {}
    for acc in catalog.accounts:
        names = [r.role for r in acc.roles] + implicit.roles_of(acc)
        targets = {by_name[n].identity: by_name[n] for n in names if n in by_name and by_name[n] is not acc}
        edges[acc.identity] = [targets[k] for k in sorted(targets)]
    out: dict[str, list[tuple[AccountRecord, tuple[str, ...]]]] = {}
    for acc in catalog.accounts:
        seen = {acc.identity}
        found: list[tuple[AccountRecord, tuple[str, ...]]] = [(acc, ())]
        frontier = found
        while frontier:
            following = []
            for node, path in frontier:
                for nxt in edges[node.identity]:
                    if nxt.identity not in seen:
                        seen.add(nxt.identity)
                        following.append((nxt, (*path, nxt.identity)))
            found += following
            frontier = following
        out[acc.identity] = found
    return out


def _dynamic_routes(catalog: SQLServerCatalog, superusers: set[str], kinds: dict[str, str]) -> dict[str, list[Route]]:
    """Routes through other accounts' power: impersonating or controlling a superuser, owning a trusted database."""
    extra: dict[str, list[Route]] = {}
    for grant in catalog.principal_grants:
        if grant.target not in superusers:
            continue
        if kinds.get(grant.target) == "login" and grant.permission in ("IMPERSONATE", "CONTROL"):
            how = (
                "EXECUTE AS LOGIN acts with its rights"
                if grant.permission == "IMPERSONATE"
                else ("can impersonate it and change its password")
            )
            reason = f"{grant.permission} on login {grant.target}, a superuser: {how}"
        elif kinds.get(grant.target) == "role" and grant.permission in ("CONTROL", "ALTER"):
            reason = f"{grant.permission} on server role {grant.target}, a superuser role: can add itself as a member"
        else:
            continue
        extra.setdefault(grant.holder, []).append(Route("SUPERUSER", reason, _blocked((grant.scope, grant.permission))))
    for route in catalog.owner_routes:
        if route.owner in superusers:
            reason = (
                f"{route.how} of {route.database}, a TRUSTWORTHY database owned by {route.owner} (a superuser): "
                f"code run there as dbo (EXECUTE AS USER = 'dbo') acts on the server as {route.owner}"
            )
            extra.setdefault(route.holder, []).append(Route("SUPERUSER", reason))
    return extra


def _resolve(catalog: SQLServerCatalog) -> None:
    """Each account's capabilities, reasons and superuser flag from the routes its closure holds.

    A route counts unless the account's closure DENYs one of its blocking permissions; nothing is
    blocked for a member of sysadmin. Routes that depend on another account being a superuser are
    added until the set of superusers stops growing (it only grows, so this ends).
    """
    closures = _closures(catalog)
    kinds = {acc.identity: acc.kind for acc in catalog.accounts}
    denied: dict[str, set[tuple[str, str]]] = {}
    exempt: set[str] = set()
    for acc in catalog.accounts:
        nodes = [node for node, _path in closures[acc.identity]]
        denied[acc.identity] = {(p.scope, p.privilege) for node in nodes for p in node.privileges if p.effect == "DENY"}
        if any(n.kind == "role" and n.username == "sysadmin" and n.attributes.get("fixed_role") for n in nodes):
            exempt.add(acc.identity)

    superusers: set[str] = set()
    while True:
        extra = _dynamic_routes(catalog, superusers, kinds)
        resolved = {}
        for acc in catalog.accounts:
            caps: set[str] = set()
            reasons: dict[str, list[str]] = {}
            blocked = set() if acc.identity in exempt else denied[acc.identity]
            for node, path in closures[acc.identity]:
                for route in [*catalog.routes.get(node.identity, ()), *extra.get(node.identity, ())]:
                    if route.capability not in INHERITABLE_CAPABILITIES and node is not acc:
                        continue
                    if route.blocked_by & blocked:
                        continue
                    caps.add(route.capability)
                    if route.reason:
                        why = route.reason if not path else f"via role {' → '.join(path)} ({route.reason})"
                        reasons.setdefault(route.capability, []).append(why)
            resolved[acc.identity] = (caps, reasons)
        now_super = {identity for identity, (caps, _r) in resolved.items() if "SUPERUSER" in caps}
        if now_super <= superusers:
            break
        superusers |= now_super

    for acc in catalog.accounts:
        caps, reasons = resolved[acc.identity]
        caps |= catalog.flags.get(acc.identity, set())
        acc.capabilities = set(caps)
        acc.effective_capabilities = set(caps)
        acc.is_superuser = "SUPERUSER" in caps
        if reasons:
            acc.attributes["capability_reasons"] = {cap: sorted(set(why)) for cap, why in sorted(reasons.items())}
        else:
            acc.attributes.pop("capability_reasons", None)


# --- errors -----------------------------------------------------------------------


# the driver's words for an established connection that ended (08S01 "Communication link failure",
# TCP Provider errors, a session the server killed)
_LOST_MARKERS = (
    "communication link",
    "connection is broken",
    "closed the connection",
    "forcibly closed",
    "connection reset",
    "broken pipe",
    "tcp provider: error code",
    "kill state",
)


def classify_error(
    exc: BaseException, target: ConnectionTarget, *, phase: str, elapsed: float | None = None
) -> AdapterError:
    """Map an mssql-python error (SQLSTATE text + server message) to a classified error.

    `elapsed` is given once connected (how long the failing statement ran): then a timeout is
    the statement's (the driver's query timeout, HYT00), and a broken link is "lost the
    connection", never "cannot connect".
    """
    detail = _detail(exc, target)
    lowered = detail.lower()
    name = target.name
    if type(exc).__name__ == "ConnectionStringParseError":
        return ConfigurationError(
            f"invalid connection settings ({detail}); check host, port and options", instance_name=name
        )
    if "login failed" in lowered or "18456" in detail or "invalid authorization specification" in lowered:
        return login_failed(target, detail, check="that the login is enabled and allowed to connect")
    if "timeout" in lowered or "timed out" in lowered:
        if elapsed is not None and phase != "connect":
            return no_answer(target, phase, elapsed, detail)
        return timeout_failed(target, phase, detail, port_of="a SQL Server")
    if elapsed is not None and phase != "connect" and any(marker in lowered for marker in _LOST_MARKERS):
        return connection_lost(target, phase, elapsed, detail, running="SQL Server is running")
    if "permission" in lowered or "not able to access the database" in lowered or "denied" in lowered:
        return PermissionDenied(
            f"the monitoring login {target.username!r} cannot {phase} ({detail}); grant it the permissions in "
            f"{MONITORING_DOC}",
            instance_name=name,
        )
    if phase == "connect" or "unable to establish connection" in lowered or "communication link" in lowered:
        return connection_failed(target, detail, running="SQL Server listens on TCP")
    return unexpected_error(target, phase, detail, source="SQL Server")


def _detail(exc: BaseException, target: ConnectionTarget) -> str:
    return scrub(str(getattr(exc, "message", None) or exc), target.password).strip()


def _odbc_value(value: str) -> str:
    return "{" + value.replace("}", "}}") + "}"


def _tls_keywords(target: ConnectionTarget) -> tuple[str, str, str]:
    """(Encrypt, TrustServerCertificate, extra keywords): encrypted and verified unless the instance says otherwise.

    Why verify whatever the mode says: with TrustServerCertificate=yes the driver encrypts to any
    certificate, so a server that is not the instance's (a host of the person who edited it, a man
    in the middle) reads the login packet and its password. Only `"tls": {"trust_server_certificate":
    true}` turns verification off; it sits inside the tls option, which only those who may change
    credentials can change (instances/policy.py). Mode `disable` asks for no encryption (Encrypt=no),
    which still encrypts the login packet but, with ODBC Driver 18, verifies no certificate unless
    the server forces encryption; the password is then only as safe as the network.
    `"strict": true` is TDS 8.0 (SQL Server 2022+, Encrypt=strict): TLS before any TDS byte, the
    certificate always verified. `"host_name_in_certificate"` is the name the certificate must carry
    when it differs from the host connected to (an availability group listener, a DNS alias).
    """
    tls = target.tls
    if tls.ca_pem or tls.client_cert_pem:
        raise ConfigurationError(
            "SQL Server's driver takes neither a CA bundle nor a client certificate per connection: install the "
            "CA in the system trust store (update-ca-certificates) and remove tls.ca / the credential's client "
            "certificate",
            instance_name=target.name,
        )
    strict = bool(getattr(tls, "strict", False))
    host_name = str(getattr(tls, "host_name_in_certificate", "") or "")
    if strict and (tls.mode == "disable" or tls.trust_server_certificate):
        raise ConfigurationError(
            "tls.strict encrypts and always verifies the certificate: it cannot go with mode disable or "
            "trust_server_certificate",
            instance_name=target.name,
        )
    extra = f";HostnameInCertificate={_odbc_value(host_name)}" if host_name else ""
    # require, verify-ca and verify-full alike verify: the driver has no CA-only check, and an
    # unverified certificate would hand the login packet to whoever answers
    encrypt = "strict" if strict else "no" if tls.mode == "disable" else "yes"
    return encrypt, ("yes" if tls.trust_server_certificate and not strict else "no"), extra


def availability_group_option(target: ConnectionTarget) -> bool:
    """The instance's `availability_group` option: true when it is a contained availability group's listener."""
    value = (target.options or {}).get("availability_group", False)
    if not isinstance(value, bool):
        raise ConfigurationError(
            "the option availability_group must be true or false (true: the instance is an availability group "
            "listener)",
            instance_name=target.name,
        )
    return value


def connection_string(target: ConnectionTarget) -> str:
    """ODBC keywords; TLS from the tls option (see `_tls_keywords`); MultiSubnetFailover for a listener."""
    encrypt, trust, extra = _tls_keywords(target)
    listener = ";MultiSubnetFailover=Yes" if availability_group_option(target) else ""
    return (
        f"Server=tcp:{target.host},{int(target.port)};Database={_odbc_value(target.database_name or 'master')};"
        f"UID={_odbc_value(target.username)};PWD={_odbc_value(target.password)};"
        f"Encrypt={encrypt};TrustServerCertificate={trust}{extra}{listener}"
    )


def _unsupported(target: ConnectionTarget, exc: Unsupported) -> ConfigurationError:
    return ConfigurationError(f"{exc}; see {MONITORING_DOC}", instance_name=target.name)


class SQLServerAdapter:
    """Reads SQL Server 2016-2022 and Managed Instance logins and permissions with mssql-python."""

    db_type = "sqlserver"

    def connect(self, target: ConnectionTarget) -> Any:
        """Connect within connect_timeout; every statement then within query_timeout (both whole seconds, at least 1).

        Why these two: `timeout=` is SQL_ATTR_LOGIN_TIMEOUT, the driver's client-side bound on the
        whole connection attempt (TCP, pre-login, TLS, login): a port that accepts and never answers
        fails with "TCP Provider: Timeout error [258]" after it. `conn.timeout` is
        SQL_ATTR_QUERY_TIMEOUT, applied to every cursor: the driver cancels a statement that
        has not answered within it (HYT00 "Query timeout expired"); it counts from the last packet
        received, so a statement's answer is bounded per wait, not as a whole.
        """
        import mssql_python

        try:
            conn = mssql_python.connect(
                connection_string(target), autocommit=True, timeout=max(1, math.ceil(target.connect_timeout))
            )
        except (mssql_python.Error, mssql_python.ConnectionStringParseError) as exc:
            raise classify_error(exc, target, phase="connect") from None
        conn.timeout = max(1, math.ceil(target.query_timeout))
        return conn

    def test_connection(self, target: ConnectionTarget) -> str:
        import mssql_python

        conn = self.connect(target)
        counter: QueryCounter | None = None
        try:
            counter = QueryCounter(conn.cursor())
            rows = counter.fetchdicts(VERSION_SQL)
            check_supported(rows)
        except Unsupported as exc:
            raise _unsupported(target, exc) from None
        except mssql_python.Error as exc:
            elapsed = None if counter is None else counter.elapsed
            raise classify_error(exc, target, phase="read the server version", elapsed=elapsed) from None
        finally:
            conn.close()
        return str(rows[0]["product_version"]) if rows else ""

    @gc_paused()
    def fetch(self, target: ConnectionTarget) -> Catalog:
        import mssql_python

        availability_group = availability_group_option(target)
        conn = self.connect(target)
        phase = "read the sys catalog views"
        try:
            counter = QueryCounter(conn.cursor())
            batch = int(target.options.get("database_batch_size") or DEFAULT_BATCH)

            def per_database(exc: BaseException) -> str | None:
                error = classify_error(exc, target, phase=phase, elapsed=counter.elapsed)
                return None if isinstance(error, ConnectionFailed | TimeoutFailed) else _detail(exc, target)

            try:
                rows, gaps = read_rows(
                    counter,
                    batch_size=batch,
                    availability_group=availability_group,
                    login=target.username,
                    driver_errors=(mssql_python.Error,),
                    per_database=per_database,
                )
            except Unsupported as exc:
                raise _unsupported(target, exc) from None
            except mssql_python.Error as exc:
                raise classify_error(exc, target, phase=phase, elapsed=counter.elapsed) from None
        finally:
            conn.close()
        try:
            catalog = build_catalog(rows, coverage=gaps, availability_group=availability_group)
        except (KeyError, ValueError, TypeError) as exc:
            raise unexpected_contents(target, "catalog view contents", exc) from None
        catalog.round_trips = counter.count
        return catalog
