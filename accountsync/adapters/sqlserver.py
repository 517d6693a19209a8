"""SQL Server: logins, server roles and per-database grants from the sys catalog views.

Why this shape: server-level views are read once each; database-level views are
read with one UNION ALL statement per batch of databases, so round trips are
O(databases / batch) instead of one per database per view. `read_rows()` does
the I/O, `build_catalog()` is a pure function of the rows, so recorded rows (no
SQL Server runs in CI) exercise exactly the code live rows do. Column names are
those of the SQL Server 2022 catalog views (2016+ have all of them).

Identities: logins and server roles by name (kind ``login`` / ``role``). A
database user mapped to a login (same SID) is not an account: its database
privileges and roles appear on the login with ``database:<db>``-level scopes.
Users that map to no login (orphaned, contained, WITHOUT LOGIN, guest with
grants) and user-defined database roles are accounts named ``<db>::<name>``.

Capabilities: SUPERUSER = sysadmin, or CONTROL SERVER granted and not denied;
GRANT_ADMIN = any WITH GRANT, securityadmin, db_owner/db_securityadmin;
CREATE_USER = ALTER ANY LOGIN / securityadmin; LOCKED = IsLocked or disabled
(both stop a login); EXPIRED = IsExpired; ORPHANED = SQL user whose SID matches
no login. A DENY on the login (or a role it holds) removes what only the denied
permission gave, except for sysadmin members, whom no DENY restricts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from accountsync.adapters.base import (
    AccountRecord,
    AdapterError,
    Catalog,
    ConfigurationError,
    ConnectionTarget,
    PermissionDenied,
    Privilege,
    QueryCounter,
    RoleGrant,
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

MONITORING_DOC = "docs/monitoring-accounts.md, SQL Server"
MODELLED_VERSION = "SQL Server 2022 (16.x)"
DEFAULT_BATCH = 50

VERSION_SQL = "SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS product_version, @@VERSION AS version"
LOGINS_SQL = (
    "SELECT p.name, p.principal_id, p.sid, p.type, p.type_desc, p.is_disabled, p.is_fixed_role, "
    "p.default_database_name, p.create_date, l.is_policy_checked, l.is_expiration_checked, "
    "LOGINPROPERTY(p.name, 'PasswordLastSetTime') AS password_last_set_time, "
    "LOGINPROPERTY(p.name, 'IsLocked') AS is_locked, LOGINPROPERTY(p.name, 'IsExpired') AS is_expired, "
    "LOGINPROPERTY(p.name, 'IsMustChange') AS is_must_change "
    "FROM sys.server_principals AS p LEFT JOIN sys.sql_logins AS l ON l.principal_id = p.principal_id "
    "WHERE p.type IN ('S', 'U', 'G', 'E', 'X', 'C', 'K', 'R')"
)
SERVER_ROLE_MEMBERS_SQL = "SELECT role_principal_id, member_principal_id FROM sys.server_role_members"
SERVER_PERMISSIONS_SQL = (
    "SELECT class, class_desc, major_id, minor_id, grantee_principal_id, permission_name, state "
    "FROM sys.server_permissions"
)
DATABASES_SQL = "SELECT name, database_id, state_desc, HAS_DBACCESS(name) AS has_dbaccess FROM sys.databases"

SERVER_SQL = (VERSION_SQL, LOGINS_SQL, SERVER_ROLE_MEMBERS_SQL, SERVER_PERMISSIONS_SQL, DATABASES_SQL)

_SKIP_USERS = frozenset({"sys", "INFORMATION_SCHEMA"})
_LOGIN_TYPES = frozenset({"S", "U", "G", "E", "X", "C", "K"})


def bracket(name: str) -> str:
    """QUOTENAME-equivalent: a name is safe inside [...] once ']' is doubled."""
    return "[" + name.replace("]", "]]") + "]"


def nliteral(name: str) -> str:
    return "N'" + name.replace("'", "''") + "'"


def database_batch_sql(databases: list[str]) -> tuple[str, str, str]:
    """Principals, role members and permissions of several databases, one statement each."""
    principals, members, perms = [], [], []
    for db in databases:
        q, lit = bracket(db), nliteral(db)
        principals.append(
            f"SELECT {lit} AS database_name, dp.name, dp.principal_id, dp.type, dp.sid, "
            f"dp.authentication_type_desc, dp.is_fixed_role FROM {q}.sys.database_principals AS dp"
        )
        members.append(
            f"SELECT {lit} AS database_name, rm.role_principal_id, rm.member_principal_id "
            f"FROM {q}.sys.database_role_members AS rm"
        )
        perms.append(
            f"SELECT {lit} AS database_name, pe.class, pe.major_id, pe.minor_id, pe.grantee_principal_id, "
            "pe.permission_name, pe.state, s.name AS schema_name, o.name AS object_name, "
            "os.name AS object_schema_name, c.name AS column_name "
            f"FROM {q}.sys.database_permissions AS pe "
            f"LEFT JOIN {q}.sys.schemas AS s ON pe.class = 3 AND s.schema_id = pe.major_id "
            f"LEFT JOIN {q}.sys.objects AS o ON pe.class = 1 AND o.object_id = pe.major_id "
            f"LEFT JOIN {q}.sys.schemas AS os ON os.schema_id = o.schema_id "
            f"LEFT JOIN {q}.sys.columns AS c ON pe.class = 1 AND pe.minor_id <> 0 "
            "AND c.object_id = pe.major_id AND c.column_id = pe.minor_id"
        )
    return tuple(" UNION ALL ".join(parts) for parts in (principals, members, perms))  # type: ignore[return-value]


@dataclass
class SQLServerRows:
    """Rows of each view as dicts keyed by the view's column names."""

    version: list[dict[str, Any]] = field(default_factory=list)
    logins: list[dict[str, Any]] = field(default_factory=list)
    server_role_members: list[dict[str, Any]] = field(default_factory=list)
    server_permissions: list[dict[str, Any]] = field(default_factory=list)
    databases: list[dict[str, Any]] = field(default_factory=list)
    database_principals: list[dict[str, Any]] = field(default_factory=list)
    database_role_members: list[dict[str, Any]] = field(default_factory=list)
    database_permissions: list[dict[str, Any]] = field(default_factory=list)


def readable_databases(rows: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(ONLINE and accessible, the rest): the rest become unknown scopes, never revokes."""
    ok, unknown = [], []
    for row in rows:
        name = str(row["name"])
        if str(row["state_desc"]).upper() == "ONLINE" and row.get("has_dbaccess") == 1:
            ok.append(name)
        else:
            unknown.append(name)
    return ok, unknown


# --- pure parsing ---------------------------------------------------------------


def _sid(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex().upper()
    return str(value).upper()


def _flag(value: Any) -> bool:
    return bool(value) and str(value) not in ("0", "False")


def _privilege(scope: str, row: dict[str, Any]) -> Privilege:
    state = str(row["state"]).upper()
    return Privilege(
        scope, str(row["permission_name"]).upper(), grantable=state == "W", effect="DENY" if state == "D" else "GRANT"
    )


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


class _ServerPrincipals(NamedTuple):
    """Logins and server roles, as the server-level views refer to them."""

    by_id: dict[int, AccountRecord]  # principal_id -> the login or server role
    by_sid: dict[str, AccountRecord]  # SID -> the login (how a database user maps to its login)


class _DatabasePrincipals(NamedTuple):
    """Database principals, as the database-level views refer to them."""

    accounts: dict[tuple[str, int], AccountRecord]  # (db, principal_id) -> the account its grants go to
    names: dict[str, dict[int, str]]  # db -> principal_id -> name, for principal-class permission scopes
    fixed_roles: dict[tuple[str, int], str]  # (db, principal_id) -> fixed role name (db_owner, public, ...)


def build_catalog(rows: SQLServerRows, *, unknown_databases: list[str] | None = None) -> Catalog:
    """Turn catalog-view rows into a finalized catalog (pure: no I/O)."""
    server = _server_principals(rows.logins)
    accounts: dict[str, AccountRecord] = {a.identity: a for a in server.by_id.values()}
    _add_server_roles_and_permissions(rows, server.by_id)
    database = _database_principals(rows, server.by_sid, accounts)
    _add_database_roles_and_permissions(rows, database)
    for acc in accounts.values():
        _add_own_capabilities(acc)

    catalog = Catalog(accounts=list(accounts.values())).finalize()
    _apply_denies(catalog)
    catalog.unknown_scopes = sorted(make_scope("database", db) for db in unknown_databases or [])
    catalog.details["modelled_on"] = MODELLED_VERSION
    if rows.version:
        catalog.server_version = str(rows.version[0].get("product_version") or "")
    return catalog


def _server_principals(logins: list[dict[str, Any]]) -> _ServerPrincipals:
    """An account per login and server role (sys.server_principals)."""
    by_id: dict[int, AccountRecord] = {}
    by_sid: dict[str, AccountRecord] = {}
    for row in logins:
        name = str(row["name"])
        kind = "role" if row["type"] == "R" else "login"
        locked = _flag(row.get("is_locked")) or _flag(row.get("is_disabled"))
        attrs: dict[str, Any] = {"type": row["type"], "type_desc": row.get("type_desc"), "locked": locked}
        if kind == "login":
            attrs.update(
                disabled=_flag(row.get("is_disabled")),
                password_expired=_flag(row.get("is_expired")),
                must_change=_flag(row.get("is_must_change")),
                policy_checked=_flag(row.get("is_policy_checked")),
                expiration_checked=_flag(row.get("is_expiration_checked")),
                password_last_set=iso_timestamp(row.get("password_last_set_time")),
                default_database=row.get("default_database_name"),
            )
        else:
            attrs["fixed_role"] = _flag(row.get("is_fixed_role"))
        acc = AccountRecord(identity=name, username=name, kind=kind, is_locked=locked, attributes=attrs)
        by_id[int(row["principal_id"])] = acc
        sid = _sid(row.get("sid"))
        if kind == "login" and sid:
            by_sid[sid] = acc
    return _ServerPrincipals(by_id, by_sid)


def _add_server_roles_and_permissions(rows: SQLServerRows, by_id: dict[int, AccountRecord]) -> None:
    """Server role memberships and server-level permissions, onto the logins and roles."""
    for row in rows.server_role_members:
        role, member = by_id.get(int(row["role_principal_id"])), by_id.get(int(row["member_principal_id"]))
        if role and member:
            member.roles.append(RoleGrant(role.identity))
    server_names = {pid: a.username for pid, a in by_id.items()}
    for row in rows.server_permissions:
        acc = by_id.get(int(row["grantee_principal_id"]))
        if acc is None:
            continue
        cls = int(row["class"])
        if cls == 100:
            acc.privileges.append(_privilege("global", row))
        else:
            target = server_names.get(int(row["major_id"]), str(row["major_id"])) if cls == 101 else row["major_id"]
            scope = make_scope("object", "server", str(row.get("class_desc") or cls), str(target))
            acc.privileges.append(_privilege(scope, row))


def _database_principals(
    rows: SQLServerRows, logins_by_sid: dict[str, AccountRecord], accounts: dict[str, AccountRecord]
) -> _DatabasePrincipals:
    """Which account each database principal's grants go to; adds the database-only accounts to `accounts`.

    A user mapped to a login (same SID) is that login; fixed roles are not accounts (their
    membership becomes a `ROLE <name>` privilege); guest counts only when it holds grants.
    """
    found = _DatabasePrincipals({}, {}, {})
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
            if _flag(row.get("is_fixed_role")) or name == "public":
                found.fixed_roles[(db, pid)] = name
                continue
            acc = AccountRecord(identity=f"{db}::{name}", username=name, kind="role", attributes={"database": db})
        else:
            sid = _sid(row.get("sid"))
            login = logins_by_sid.get(sid) if sid else None
            if login is not None:
                found.accounts[(db, pid)] = login
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
    acc = AccountRecord(
        identity=f"{db}::{name}",
        username=name,
        kind="user",
        attributes={"database": db, "type": ptype, "authentication_type": auth, "orphaned": orphaned},
    )
    if orphaned:
        acc.capabilities.add("ORPHANED")
    return acc


def _add_database_roles_and_permissions(rows: SQLServerRows, database: _DatabasePrincipals) -> None:
    """Database role memberships and permissions, onto the accounts the principals map to."""
    for row in rows.database_role_members:
        db = str(row["database_name"])
        member = database.accounts.get((db, int(row["member_principal_id"])))
        rid = int(row["role_principal_id"])
        if member is None:
            continue
        if (db, rid) in database.fixed_roles:
            role_name = database.fixed_roles[(db, rid)]
            member.privileges.append(Privilege(make_scope("database", db), f"ROLE {role_name.upper()}"))
            if role_name in ("db_owner", "db_securityadmin"):
                member.capabilities.add("GRANT_ADMIN")
        elif (role := database.accounts.get((db, rid))) is not None:
            member.roles.append(RoleGrant(role.identity))

    for row in rows.database_permissions:
        db = str(row["database_name"])
        acc = database.accounts.get((db, int(row["grantee_principal_id"])))
        if acc is not None:
            acc.privileges.append(_privilege(_perm_scope(db, row, database.names.get(db, {})), row))


def _add_own_capabilities(acc: AccountRecord) -> None:
    """What the account's own grants, fixed-role identity and login state give (roles add theirs in finalize)."""
    granted_global = {p.privilege for p in acc.privileges if p.scope == "global" and p.effect == "GRANT"}
    if acc.kind == "role" and acc.username == "sysadmin" and acc.attributes.get("fixed_role"):
        acc.capabilities.add("SUPERUSER")
    if acc.kind == "role" and acc.username == "securityadmin" and acc.attributes.get("fixed_role"):
        acc.capabilities |= {"GRANT_ADMIN", "CREATE_USER"}
    if "CONTROL SERVER" in granted_global:
        acc.capabilities.add("SUPERUSER")
    if "ALTER ANY LOGIN" in granted_global:
        acc.capabilities.add("CREATE_USER")
    if any(p.grantable and p.effect == "GRANT" for p in acc.privileges):
        acc.capabilities.add("GRANT_ADMIN")
    if acc.attributes.get("locked"):
        acc.capabilities.add("LOCKED")
    if acc.attributes.get("password_expired"):
        acc.capabilities.add("EXPIRED")


_DENY_REMOVES = {"CONTROL SERVER": "SUPERUSER", "ALTER ANY LOGIN": "CREATE_USER"}


def _apply_denies(catalog: Catalog) -> None:
    """DENY beats GRANT (through roles too) for everyone but sysadmin members."""
    by_identity = {a.identity: a for a in catalog.accounts}
    for acc in catalog.accounts:
        seen, stack, denied, holds_sysadmin = {acc.identity}, [acc], set(), False
        while stack:
            cur = stack.pop()
            denied |= {p.privilege for p in cur.privileges if p.scope == "global" and p.effect == "DENY"}
            holds_sysadmin |= cur.kind == "role" and cur.username == "sysadmin"
            for r in cur.roles:
                if r.role not in seen and r.role in by_identity:
                    seen.add(r.role)
                    stack.append(by_identity[r.role])
        if holds_sysadmin and acc.username != "sysadmin":
            continue
        for perm, cap in _DENY_REMOVES.items():
            if perm in denied and not (cap == "SUPERUSER" and acc.username == "sysadmin" and acc.kind == "role"):
                acc.effective_capabilities.discard(cap)
                acc.capabilities.discard(cap)
        acc.is_superuser = "SUPERUSER" in acc.effective_capabilities


# --- querying ---------------------------------------------------------------------


def read_rows(counter: QueryCounter, *, batch_size: int = DEFAULT_BATCH) -> tuple[SQLServerRows, list[str]]:
    """Server views once each, then three statements per batch of readable databases."""
    rows = SQLServerRows(
        version=counter.fetchdicts(VERSION_SQL),
        logins=counter.fetchdicts(LOGINS_SQL),
        server_role_members=counter.fetchdicts(SERVER_ROLE_MEMBERS_SQL),
        server_permissions=counter.fetchdicts(SERVER_PERMISSIONS_SQL),
        databases=counter.fetchdicts(DATABASES_SQL),
    )
    online, unknown = readable_databases(rows.databases)
    for start in range(0, len(online), batch_size):
        principals, members, perms = database_batch_sql(online[start : start + batch_size])
        rows.database_principals += counter.fetchdicts(principals)
        rows.database_role_members += counter.fetchdicts(members)
        rows.database_permissions += counter.fetchdicts(perms)
    return rows, unknown


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
    detail = scrub(str(getattr(exc, "message", None) or exc), target.password).strip()
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


def _odbc_value(value: str) -> str:
    return "{" + value.replace("}", "}}") + "}"


def _tls_keywords(target: ConnectionTarget) -> tuple[str, str]:
    """(Encrypt, TrustServerCertificate): encrypted and the certificate verified unless the instance says otherwise.

    Why verify whatever the mode says: with TrustServerCertificate=yes the driver encrypts to any
    certificate, so a server that is not the instance's (a host of the person who edited it, a man
    in the middle) reads the login packet and its password. Only `"tls": {"trust_server_certificate":
    true}` turns verification off; it sits inside the tls option, which only those who may change
    credentials can change (instances/policy.py). Mode `disable` asks for no encryption (Encrypt=no),
    which still encrypts the login packet but, with ODBC Driver 18, verifies no certificate unless
    the server forces encryption; the password is then only as safe as the network.
    """
    tls = target.tls
    if tls.ca_pem or tls.client_cert_pem:
        raise ConfigurationError(
            "SQL Server's driver takes neither a CA bundle nor a client certificate per connection: install the "
            "CA in the system trust store (update-ca-certificates) and remove tls.ca / the credential's client "
            "certificate",
            instance_name=target.name,
        )
    # require, verify-ca and verify-full alike verify: the driver has no CA-only check, and an
    # unverified certificate would hand the login packet to whoever answers
    return ("no" if tls.mode == "disable" else "yes"), ("yes" if tls.trust_server_certificate else "no")


def connection_string(target: ConnectionTarget) -> str:
    """ODBC keywords; TLS from the tls option (mode, trust_server_certificate: see `_tls_keywords`)."""
    encrypt, trust = _tls_keywords(target)
    return (
        f"Server=tcp:{target.host},{int(target.port)};Database={_odbc_value(target.database_name or 'master')};"
        f"UID={_odbc_value(target.username)};PWD={_odbc_value(target.password)};"
        f"Encrypt={encrypt};TrustServerCertificate={trust}"
    )


class SQLServerAdapter:
    """Reads SQL Server 2016+ logins and permissions with mssql-python."""

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
        except mssql_python.Error as exc:
            elapsed = None if counter is None else counter.elapsed
            raise classify_error(exc, target, phase="read the server version", elapsed=elapsed) from None
        finally:
            conn.close()
        return str(rows[0]["product_version"]) if rows else ""

    @gc_paused()
    def fetch(self, target: ConnectionTarget) -> Catalog:
        import mssql_python

        conn = self.connect(target)
        try:
            counter = QueryCounter(conn.cursor())
            batch = int(target.options.get("database_batch_size") or DEFAULT_BATCH)
            try:
                rows, unknown = read_rows(counter, batch_size=batch)
            except mssql_python.Error as exc:
                raise classify_error(exc, target, phase="read the sys catalog views", elapsed=counter.elapsed) from None
        finally:
            conn.close()
        try:
            catalog = build_catalog(rows, unknown_databases=unknown)
        except (KeyError, ValueError, TypeError) as exc:
            raise unexpected_contents(target, "catalog view contents", exc) from None
        catalog.round_trips = counter.count
        return catalog
