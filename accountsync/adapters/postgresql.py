"""PostgreSQL: every role and everything that decides what it can do.

Why set-based reads: per-role tools pay one round trip per role (and per
object check). Here the catalogs are read whole: a fixed number of statements
on the maintenance database, plus a fixed number per database read, whatever
the number of roles or objects. ACLs are expanded on the server with
`aclexplode(COALESCE(acl, acldefault(...)))`, so implicit owner and PUBLIC
defaults appear exactly as PostgreSQL applies them. An owner's implicit
rights (grant any privilege, ALTER, DROP) are not in any ACL, so ownership is
recorded as the privilege OWNER (grantable) on the owned object's scope.
Grants to PUBLIC belong to no account; they go to `details["public_grants"]`.

`read_*` functions talk to the server; `build_catalog()` is a pure function
from plain rows to a `Catalog`, so tests can feed it rows directly.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from accountsync.adapters.base import (
    AccountRecord,
    AdapterError,
    Catalog,
    ConfigurationError,
    ConnectionFailed,
    ConnectionTarget,
    InternalError,
    PermissionDenied,
    Privilege,
    QueryCounter,
    RoleGrant,
    TimeoutFailed,
    Watchdog,
    connection_failed,
    connection_lost,
    deadline_grace,
    endpoint,
    gc_paused,
    iso_timestamp,
    login_failed,
    make_scope,
    no_answer,
    query_deadline,
    rows_digest,
    scrub,
    shutdown_socket,
    unchanged_catalog,
)

SYSTEM_SCHEMA_FILTER = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'"
)


def _explode(acl: str) -> str:
    """ACL rows, one per grantee and privilege, in time linear in the ACL's length.

    Why not `aclexplode(acl)` directly: it re-reads (and, for a long ACL, de-TOASTs)
    the whole array on every row it returns, which made a 5,000-grantee schema ACL
    cost 0.3 s; exploding one item at a time is 30x faster and linear.
    """
    return f"(SELECT e.* FROM unnest({acl}) AS u(item) CROSS JOIN LATERAL aclexplode(ARRAY[u.item]) e)"


ROLES_SQL = (
    "SELECT oid, rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, "
    "rolreplication, rolbypassrls, rolconnlimit, rolvaliduntil FROM pg_roles"
)
MEMBERS_SQL = "SELECT roleid, member, admin_option FROM pg_auth_members"
MEMBERS_SQL_16 = "SELECT roleid, member, admin_option, inherit_option, set_option FROM pg_auth_members"
DATABASES_SQL = (
    "SELECT d.datname, d.datallowconn, d.datistemplate, a.grantee, a.privilege_type, a.is_grantable, d.datdba "
    "FROM pg_database d "
    "LEFT JOIN LATERAL " + _explode("COALESCE(d.datacl, acldefault('d', d.datdba))") + " a ON true"
)
SCHEMAS_SQL = (
    "SELECT n.nspname, a.grantee, a.privilege_type, a.is_grantable, n.nspowner FROM pg_namespace n "
    "LEFT JOIN LATERAL " + _explode("COALESCE(n.nspacl, acldefault('n', n.nspowner))") + " a ON true "
    f"WHERE {SYSTEM_SCHEMA_FILTER}"
)
RELATIONS_SQL = (
    "SELECT n.nspname, c.relname, a.grantee, a.privilege_type, a.is_grantable, c.relowner FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "LEFT JOIN LATERAL "
    + _explode(
        "COALESCE(c.relacl, acldefault((CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END)::\"char\", c.relowner))"
    )
    + " a ON true "
    f"WHERE c.relkind IN ('r', 'v', 'm', 'S', 'f', 'p') AND {SYSTEM_SCHEMA_FILTER}"
)
COLUMNS_SQL = (
    "SELECT n.nspname, c.relname, att.attname, a.grantee, a.privilege_type, a.is_grantable "
    "FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    f"CROSS JOIN LATERAL {_explode('att.attacl')} a "
    f"WHERE att.attacl IS NOT NULL AND att.attnum > 0 AND NOT att.attisdropped AND {SYSTEM_SCHEMA_FILTER}"
)
ROUTINES_SQL = (
    "SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), "
    "a.grantee, a.privilege_type, a.is_grantable, p.proowner FROM pg_proc p "
    "JOIN pg_namespace n ON n.oid = p.pronamespace "
    "LEFT JOIN LATERAL " + _explode("COALESCE(p.proacl, acldefault('f', p.proowner))") + " a ON true "
    f"WHERE {SYSTEM_SCHEMA_FILTER}"
)
DEFAULT_ACL_SQL = (
    "SELECT d.defaclrole, n.nspname, d.defaclobjtype, a.grantee, a.privilege_type, a.is_grantable "
    "FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace "
    f"CROSS JOIN LATERAL {_explode('d.defaclacl')} a"
)
DEFAULT_OBJTYPES = {"r": "tables", "S": "sequences", "f": "functions", "T": "types", "n": "schemas"}

MONITORING_HINT = (
    "run GRANT CONNECT ON DATABASE <database> TO <monitoring role> for every database WhaleFall reads "
    "(PostgreSQL section of docs/monitoring-accounts.md)"
)
PASSWORDS_SQL = "SELECT oid, rolpassword IS NOT NULL FROM pg_authid"


@dataclass
class DatabaseRows:
    """Rows read from one database."""

    name: str
    schemas: list[tuple[Any, ...]] = field(default_factory=list)
    relations: list[tuple[Any, ...]] = field(default_factory=list)
    columns: list[tuple[Any, ...]] = field(default_factory=list)
    routines: list[tuple[Any, ...]] = field(default_factory=list)
    default_acls: list[tuple[Any, ...]] = field(default_factory=list)


@dataclass
class ServerRows:
    """Everything read from one instance, as plain rows."""

    version: str
    version_num: int
    roles: list[tuple[Any, ...]]
    members: list[tuple[Any, ...]]
    databases: list[tuple[Any, ...]]
    per_database: list[DatabaseRows] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
    passwords: dict[int, bool] | None = None


# --- connecting and classifying failures ------------------------------------------

# SQLSTATEs with which the server ends the session itself (admin shutdown, crash, not accepting now)
_SESSION_ENDED = {"57P01", "57P02", "57P03"}


def _classify(
    exc: Exception, target: ConnectionTarget, dbname: str, *, counter: QueryCounter | None = None, conn: Any = None
) -> AdapterError:
    """Turn a psycopg error into the classified error a user can act on.

    `counter` is given once connected (the error came from a statement): then a statement whose
    client-side deadline fired is a stall (timeout), and a connection that broke is a lost
    connection, never "cannot connect".
    """
    import psycopg

    text = scrub(str(exc).strip(), target.password)
    where = endpoint(target)
    lowered = text.lower()
    phase = f"read the catalog of database {dbname!r}"
    if counter is not None and counter.expired:
        return no_answer(target, phase, counter.elapsed, "the client interrupted the statement")
    if isinstance(exc, psycopg.errors.QueryCanceled) or "canceling statement due to statement timeout" in lowered:
        return TimeoutFailed(
            f"a catalog query on {where} exceeded the {target.query_timeout:g}s query timeout ({text})",
            instance_name=target.name,
        )
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return PermissionDenied(
            f"the monitoring role {target.username!r} cannot read the catalog on {dbname!r} ({text}); "
            + MONITORING_HINT,
            instance_name=target.name,
        )
    if "timeout expired" in lowered or "timed out" in lowered:
        if counter is not None:  # e.g. tcp_user_timeout: our bytes stayed unacknowledged
            return no_answer(target, phase, counter.elapsed, text)
        return TimeoutFailed(
            f"{where} did not answer within {target.connect_timeout:g}s; check the host and firewall, "
            "or raise the instance's connect_timeout option",
            instance_name=target.name,
        )
    if counter is not None and isinstance(exc, psycopg.OperationalError):
        sqlstate = getattr(exc, "sqlstate", None)
        if sqlstate is None or sqlstate in _SESSION_ENDED or bool(getattr(conn, "broken", False)):
            return connection_lost(target, phase, counter.elapsed, text, running="the server is running")
    if any(
        marker in lowered
        for marker in ("password authentication failed", "no password supplied", "authentication failed")
    ) or ("role" in lowered and "does not exist" in lowered):
        return login_failed(target, text, check="pg_hba.conf", failed="authentication failed")
    if "no pg_hba.conf entry" in lowered or "rejects connection" in lowered:
        return PermissionDenied(
            f"pg_hba.conf at {where} rejects {target.username!r} for database {dbname!r} ({text}); "
            "add a hostssl line for the monitoring role and the WhaleFall workers' addresses, then reload",
            instance_name=target.name,
        )
    if "permission denied for database" in lowered or "not permitted to log in" in lowered:
        return PermissionDenied(
            f"{target.username!r} may not connect to database {dbname!r} at {where} ({text}); " + MONITORING_HINT,
            instance_name=target.name,
        )
    if "database" in lowered and "does not exist" in lowered:
        return PermissionDenied(
            f"database {dbname!r} does not exist at {where}; set the instance's database name "
            "to an existing maintenance database (usually postgres)",
            instance_name=target.name,
        )
    if counter is None and isinstance(exc, psycopg.OperationalError):
        return connection_failed(target, text, running="the server is running")
    return InternalError(f"unexpected database error on {where}: {text}", instance_name=target.name)


def _network_params(target: ConnectionTarget) -> dict[str, int]:
    """libpq's TCP-level limits, so a dead peer fails the socket even while we only wait.

    Why both: `tcp_user_timeout` (ms) ends the connection when what we sent stays unacknowledged
    that long (a peer that vanished, a black-holing route); keepalive probes make an idle wait for
    a result send something, so a dead peer is noticed while a long statement runs. Neither helps
    against a peer that acknowledges but never answers: that is the statement watchdog's job.
    """
    probe = max(1, math.ceil(target.connect_timeout))
    return {
        "tcp_user_timeout": max(1000, math.ceil(query_deadline(target) * 1000)),
        "keepalives": 1,
        "keepalives_idle": probe,
        "keepalives_interval": probe,
        "keepalives_count": 3,
    }


def _connect(target: ConnectionTarget, dbname: str) -> Any:
    """Connect; psycopg bounds the whole connection attempt (TCP, TLS, login) by connect_timeout itself."""
    import psycopg

    timeout_ms = max(1, int(target.query_timeout * 1000))
    tls = (target.options.get("tls") or {}).get("mode") if isinstance(target.options.get("tls"), dict) else None
    try:
        return psycopg.connect(
            host=target.host,
            port=target.port,
            user=target.username,
            password=target.password or None,
            dbname=dbname,
            connect_timeout=max(1, math.ceil(target.connect_timeout)),
            autocommit=True,
            application_name="whalefall",
            options=f"-c statement_timeout={timeout_ms} -c default_transaction_read_only=on",
            sslmode=tls or "prefer",
            **_network_params(target),
        )
    except psycopg.Error as exc:
        raise _classify(exc, target, dbname) from None


def _watchdog(conn: Any, target: ConnectionTarget) -> Callable[[], Watchdog]:
    """Per-statement deadline (`query_deadline`): cancel the statement, then cut the socket if that did not help.

    Why both steps: statement_timeout is enforced by the server, so it cannot end a wait on a
    server (or a proxy in front of it) that stopped sending. The cancel request (`cancel_safe`:
    psycopg 3.2+, non-blocking with a timeout on libpq 17+, sent over a separate connection) ends
    a statement the server still runs; if the answer still does not arrive within the grace,
    shutting down the socket makes libpq's wait return. Worst case: query_timeout + 3 x grace
    (the deadline's grace, the cancel attempt, the wait for its effect).
    """
    import psycopg

    fd = conn.fileno()
    grace = deadline_grace(target)
    # before libpq 17, cancel_safe() falls back to the blocking PQcancel, which has no timeout of its own
    can_cancel = psycopg.pq.version() >= 170000

    def interrupt(dog: Watchdog) -> None:
        if can_cancel:
            with contextlib.suppress(Exception):
                conn.cancel_safe(timeout=grace)
            if dog.finished(within=grace):
                return
        shutdown_socket(fd)

    seconds = query_deadline(target)
    return lambda: Watchdog(seconds, interrupt)


def _counter(conn: Any, target: ConnectionTarget) -> QueryCounter:
    return QueryCounter(conn.cursor(), watchdog=_watchdog(conn, target))


# --- reading ------------------------------------------------------------------------


def _wanted_databases(target: ConnectionTarget) -> set[str]:
    """The instance option `databases`: which databases to read (empty means every connectable one)."""
    wanted = target.options.get("databases")
    if wanted in (None, "", []):
        return set()
    if not isinstance(wanted, list) or not all(isinstance(n, str) and n for n in wanted):
        raise ConfigurationError(
            f"the instance option 'databases' must be a list of database names, got {wanted!r}; "
            "fix it in the instance's options or remove it to read every database",
            instance_name=target.name,
        )
    return set(wanted)


def read_rows(target: ConnectionTarget) -> tuple[ServerRows, int]:
    """Read the catalogs; returns rows and the number of statements executed."""
    import psycopg

    maintenance = target.database_name or "postgres"
    statements = 0
    conn = _connect(target, maintenance)
    try:
        counter = _counter(conn, target)
        try:
            version, version_num, authid_readable = counter.fetchall(
                "SELECT current_setting('server_version'), current_setting('server_version_num')::int, "
                "has_table_privilege('pg_catalog.pg_authid', 'SELECT')"
            )[0]
            roles = counter.fetchall(ROLES_SQL)
            members = counter.fetchall(MEMBERS_SQL_16 if version_num >= 160000 else MEMBERS_SQL)
            databases = counter.fetchall(DATABASES_SQL)
        except psycopg.Error as exc:
            raise _classify(exc, target, maintenance, counter=counter, conn=conn) from None
        statements += counter.count
        rows = ServerRows(version=version, version_num=version_num, roles=roles, members=members, databases=databases)
        if authid_readable:
            try:
                rows.passwords = {oid: bool(has) for oid, has in counter.fetchall(PASSWORDS_SQL)}
            except psycopg.Error as exc:
                raise _classify(exc, target, maintenance, counter=counter, conn=conn) from None
            statements += 1
        wanted = _wanted_databases(target)
        existing = {r[0] for r in databases}
        names = sorted({r[0] for r in databases if r[1] and not r[2]})
        if wanted:
            for name in sorted(wanted - existing):
                rows.unreadable[name] = "database does not exist"
            for name in sorted((wanted & existing) - set(names)):
                rows.unreadable[name] = "database does not accept connections (datallowconn false or template)"
            names = [n for n in names if n in wanted]
        for name in names:
            db_rows, count = _read_database(target, name, conn if name == maintenance else None)
            statements += count
            if isinstance(db_rows, str):
                rows.unreadable[name] = db_rows
            else:
                rows.per_database.append(db_rows)
    finally:
        conn.close()
    return rows, statements


def _read_database(target: ConnectionTarget, name: str, conn: Any | None) -> tuple[DatabaseRows | str, int]:
    """Read one database's ACLs; an unreadable database yields the reason, not an empty result."""
    import psycopg

    own = conn is None
    try:
        if own:
            conn = _connect(target, name)
    except AdapterError as exc:
        if isinstance(exc, TimeoutFailed | ConnectionFailed):
            raise
        return exc.message, 0
    counter = _counter(conn, target)
    try:
        return (
            DatabaseRows(
                name=name,
                schemas=counter.fetchall(SCHEMAS_SQL),
                relations=counter.fetchall(RELATIONS_SQL),
                columns=counter.fetchall(COLUMNS_SQL),
                routines=counter.fetchall(ROUTINES_SQL),
                default_acls=counter.fetchall(DEFAULT_ACL_SQL),
            ),
            counter.count,
        )
    except psycopg.errors.InsufficientPrivilege as exc:
        return scrub(str(exc).strip(), target.password), counter.count
    except psycopg.Error as exc:
        raise _classify(exc, target, name, counter=counter, conn=conn) from None
    finally:
        if own:
            conn.close()


# --- building the catalog (pure) ----------------------------------------------------


def _valid_until(value: Any) -> str | None:
    """rolvaliduntil as text: the UTC time, or "infinity" (which the driver hands over as year 9999)."""
    if isinstance(value, datetime) and value.year >= 9999:
        return "infinity"
    return iso_timestamp(value, to_utc=True)


def build_catalog(rows: ServerRows, *, now: datetime | None = None) -> Catalog:
    """Turn plain catalog rows into canonical accounts (pure, no I/O)."""
    now = now or datetime.now(UTC)
    accounts: dict[int, AccountRecord] = {}
    for row in rows.roles:
        role = _RoleRow(*row)
        accounts[role.oid] = _role_account(role, rows.passwords, now)
    names = {oid: acc.username for oid, acc in accounts.items()}
    _add_memberships(rows.members, accounts, names)
    grants = _AclGrants(accounts)
    _add_acls(rows, names, grants)
    public = grants.public
    if public:
        # PUBLIC is no row of pg_roles, yet every role holds what it is granted: show it as the pseudo-role
        # `public` (a name PostgreSQL reserves, so no real role can collide), so its grants are audited too
        accounts[0] = AccountRecord(
            identity="public",
            username="public",
            kind="role",
            attributes={"pseudo_role": True},
            privileges=[Privilege(g["scope"], g["privilege"].upper(), g["grantable"]) for g in public],
        )
    unknown = [make_scope("database", name) for name in sorted(rows.unreadable)]
    for acc in accounts.values():
        acc.unknown_scopes = list(unknown)

    catalog = Catalog(
        accounts=sorted(accounts.values(), key=lambda a: a.identity),
        server_version=f"PostgreSQL {rows.version.split()[0]}",
        unknown_scopes=unknown,
        details={
            "databases_read": sorted(db.name for db in rows.per_database),
            "databases_unreadable": dict(sorted(rows.unreadable.items())),
            "public_grants": sorted(public, key=lambda g: (g["scope"], g["privilege"])),
        },
    )
    return catalog.finalize()


class _RoleRow(NamedTuple):
    """A row of ROLES_SQL, column for column."""

    oid: int
    rolname: str
    rolsuper: bool
    rolinherit: bool
    rolcreaterole: bool
    rolcreatedb: bool
    rolcanlogin: bool
    rolreplication: bool
    rolbypassrls: bool
    rolconnlimit: int
    rolvaliduntil: datetime | None


def _role_account(role: _RoleRow, passwords: dict[int, bool] | None, now: datetime) -> AccountRecord:
    """One role: its attributes and the capabilities they give."""
    attrs = {
        "login": bool(role.rolcanlogin),
        "superuser": bool(role.rolsuper),
        "inherit": bool(role.rolinherit),
        "createrole": bool(role.rolcreaterole),
        "createdb": bool(role.rolcreatedb),
        "replication": bool(role.rolreplication),
        "bypassrls": bool(role.rolbypassrls),
        "connection_limit": int(role.rolconnlimit),
        "valid_until": _valid_until(role.rolvaliduntil),
    }
    caps: set[str] = set()
    if role.rolsuper:
        caps.add("SUPERUSER")
    if role.rolcreaterole:
        caps.add("CREATE_USER")
    if role.rolcreatedb:
        caps.add("CREATE_DB")
    if role.rolreplication:
        caps.add("REPLICATION")
    if role.rolbypassrls:
        caps.add("BYPASS_RLS")
    valid_until = role.rolvaliduntil
    if isinstance(valid_until, datetime) and valid_until.year < 9999 and valid_until < now:
        caps.add("EXPIRED")
    if passwords is not None:
        attrs["password_set"] = passwords.get(role.oid, False)
        if role.rolcanlogin and not attrs["password_set"]:
            caps.add("NO_PASSWORD")
    return AccountRecord(
        identity=role.rolname,
        username=role.rolname,
        kind="user" if role.rolcanlogin else "role",
        is_superuser=bool(role.rolsuper),
        attributes=attrs,
        capabilities=caps,
    )


def _add_memberships(members: list[tuple[Any, ...]], accounts: dict[int, AccountRecord], names: dict[int, str]) -> None:
    """pg_auth_members rows as role grants; before PostgreSQL 16 a grant is active when its member inherits."""
    for roleid, member, admin, *options in members:
        inherit_opt = options[0] if options else None  # inherit_option, then set_option (PostgreSQL 16+)
        holder = accounts.get(member)
        if holder is None or roleid not in names:
            continue
        default = bool(inherit_opt) if inherit_opt is not None else bool(holder.attributes.get("inherit"))
        holder.roles.append(RoleGrant(role=names[roleid], admin_option=bool(admin), default=default))
        if admin:
            holder.capabilities.add("GRANT_ADMIN")


class _AclGrants:
    """Hands each ACL row to its grantee (PUBLIC's go to `public`), and ownership to the owner."""

    def __init__(self, accounts: dict[int, AccountRecord]) -> None:
        self.accounts = accounts
        self.public: list[dict[str, Any]] = []

    def grant(self, grantee: int, scope: str, privilege: str, grantable: bool) -> None:
        if grantee == 0:
            self.public.append({"scope": scope, "privilege": privilege, "grantable": bool(grantable)})
            return
        acc = self.accounts.get(grantee)
        if acc is None:
            return
        acc.privileges.append(Privilege(scope=scope, privilege=privilege.upper(), grantable=bool(grantable)))
        if grantable:
            acc.capabilities.add("GRANT_ADMIN")

    def owned(self, grantee: int | None, scope: str, privilege: str | None, grantable: bool, owner: int) -> None:
        """An ACL row of an owned object: the owner's implicit rights are in no ACL, so OWNER stands for them."""
        if owner in self.accounts:
            self.accounts[owner].privileges.append(Privilege(scope=scope, privilege="OWNER", grantable=True))
            self.accounts[owner].capabilities.add("GRANT_ADMIN")
        if grantee is not None and privilege is not None:
            self.grant(grantee, scope, privilege, grantable)


def _add_acls(rows: ServerRows, names: dict[int, str], grants: _AclGrants) -> None:
    """Database ACLs, then each read database's schema, relation, column, routine and default ACLs."""
    grant, owned = grants.grant, grants.owned
    for datname, _allow, _template, grantee, privilege, grantable, owner in rows.databases:
        owned(grantee, make_scope("database", datname), privilege, grantable, owner)

    for db in rows.per_database:
        for schema, grantee, privilege, grantable, owner in db.schemas:
            owned(grantee, make_scope("schema", db.name, schema), privilege, grantable, owner)
        for schema, rel, grantee, privilege, grantable, owner in db.relations:
            owned(grantee, make_scope("object", db.name, schema, rel), privilege, grantable, owner)
        for schema, rel, col, grantee, privilege, grantable in db.columns:
            grant(grantee, make_scope("column", db.name, schema, rel, col), privilege, grantable)
        for schema, proname, args, grantee, privilege, grantable, owner in db.routines:
            owned(grantee, make_scope("routine", db.name, schema, f"{proname}({args})"), privilege, grantable, owner)
        for creator, schema, objtype, grantee, privilege, grantable in db.default_acls:
            scope = make_scope(
                "default", db.name, schema or "*", DEFAULT_OBJTYPES.get(objtype, objtype), names.get(creator, "?")
            )
            grant(grantee, scope, privilege, grantable)


class PostgreSQLAdapter:
    """Reads PostgreSQL roles, memberships and ACLs with psycopg 3."""

    db_type = "postgresql"

    def test_connection(self, target: ConnectionTarget) -> str:
        import psycopg

        dbname = target.database_name or "postgres"
        conn = _connect(target, dbname)
        counter: QueryCounter | None = None
        try:
            counter = _counter(conn, target)
            version = counter.fetchall("SELECT current_setting('server_version')")[0][0]
            return f"PostgreSQL {version.split()[0]}"
        except psycopg.Error as exc:
            raise _classify(exc, target, dbname, counter=counter, conn=conn) from None
        finally:
            conn.close()

    @gc_paused()
    def fetch(self, target: ConnectionTarget) -> Catalog:
        rows, statements = read_rows(target)
        digest = rows_digest(__file__, target, rows)
        if unchanged_catalog(target, digest):
            version = f"PostgreSQL {rows.version.split()[0]}"
            return Catalog(server_version=version, round_trips=statements, source_digest=digest, unchanged=True)
        catalog = build_catalog(rows)
        catalog.round_trips = statements
        catalog.source_digest = digest
        return catalog
