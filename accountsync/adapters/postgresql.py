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
A database this read did not see is a coverage gap (`Catalog.coverage`, see
`_coverage`), never an empty result.

`read_*` functions talk to the server; `build_catalog()` is a pure function
from plain rows to a `Catalog`, so tests can feed it rows directly.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
from collections.abc import Callable, Iterable
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
    CoverageGap,
    GapKind,
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
    tls_verify_failed,
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


# rolvaliduntil as text made on the server: the driver cannot load 'infinity', '-infinity' or a year
# outside 1..9999 (psycopg: "timestamp too large (after year 10K)"), and one such role must never fail
# a sync. Finite times come in UTC as `YYYY-MM-DDTHH:MI:SS.US AD|BC` (see `_expiry`), the others as
# PostgreSQL writes them ('infinity', '-infinity').
VALID_UNTIL_SQL = (
    "CASE WHEN isfinite(rolvaliduntil) "
    "THEN to_char(rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US BC') "
    "ELSE rolvaliduntil::text END"
)
ROLES_SQL = (
    "SELECT oid, rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, "
    f"rolreplication, rolbypassrls, rolconnlimit, {VALID_UNTIL_SQL} FROM pg_roles"
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

# The predefined roles that reach the server's operating system (PostgreSQL docs, "Predefined Roles":
# they "could be used to gain superuser-level access"): each is SUPERUSER-equivalent, with this reason.
SERVER_OS_ROLES = {
    "pg_execute_server_program": (
        "can run any program on the database server as the operating-system user PostgreSQL runs as "
        "(COPY ... PROGRAM), which gives superuser-level access"
    ),
    "pg_read_server_files": (
        "can read any file the server's operating-system user can read (COPY ... FROM a file, pg_read_file), "
        "data directory included, which gives superuser-level access"
    ),
    "pg_write_server_files": (
        "can write any file the server's operating-system user can write (COPY ... TO a file), "
        "configuration and data files included, which gives superuser-level access"
    ),
}
CREATEROLE_BEFORE_16 = (
    "CREATEROLE before PostgreSQL 16 can grant itself membership in any non-superuser role, "
    "incl. the predefined ones above"
)
# The attribute naming a PostgreSQL 16+ membership granted WITH SET FALSE, INHERIT FALSE (and no ADMIN):
# it gives nothing of the role, so it is kept out of `roles` (which finalize() follows) and listed here.
INERT_MEMBERSHIPS = "memberships_without_set_or_inherit"
# PostgreSQL 16+ memberships kept as role grants whose SET option is false (an attribute, only when non-empty)
UNSETTABLE_MEMBERSHIPS = "memberships_without_set"


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
    # database -> why it was not read (the server's words where the server refused)
    unreadable: dict[str, str] = field(default_factory=dict)
    passwords: dict[int, bool] | None = None
    # database -> what kind of refusal (a key of `_FIXES`; "connect" when absent): chooses the gap's fix
    causes: dict[str, str] = field(default_factory=dict)
    monitor: str = ""  # current_user of the monitoring login, named in the fixes
    wanted: list[str] = field(default_factory=list)  # the instance option `databases` (empty: every database)


# --- connecting and classifying failures ------------------------------------------

# SQLSTATEs with which the server ends the session itself (admin shutdown, crash, not accepting now)
_SESSION_ENDED = {"57P01", "57P02", "57P03"}


# libpq's words for a certificate it would not accept (fe-secure-openssl.c)
_TLS_VERIFY_MARKERS = (
    "certificate verify failed",
    "does not match host name",
    "could not read root certificate",
    "certificate present, but not private key",
    "server certificate for",
)


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
    if "authentication method requirement" in lowered:
        return _weak_auth_refused(text, target)
    if counter is None and any(marker in lowered for marker in _TLS_VERIFY_MARKERS):
        return tls_verify_failed(target, _server_words(exc, target))
    if counter is None and "server does not support ssl" in lowered:
        return ConfigurationError(
            f"{where} does not offer TLS, and the instance's tls mode is {target.tls.mode}; turn ssl on in the "
            "server's postgresql.conf, or lower the instance's tls mode (someone who may change credentials)",
            instance_name=target.name,
        )
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


# require_auth (libpq 16+): the authentication requests libpq answers; any other fails the connect before a
# byte of the password is sent. "none" lets a server that asks for nothing (trust, peer) sign us in: no
# secret leaves then. SCRAM proves the password without sending it (and the server proves it knows it);
# md5 sends a digest that is as good as the password for logging in, "password" sends the password itself.
REQUIRE_AUTH = "scram-sha-256,none"
REQUIRE_AUTH_WEAK = "scram-sha-256,md5,password,none"
_REQUIRE_AUTH_SINCE = 160000  # libpq 16 added require_auth; an older libpq rejects the keyword


def _require_auth(target: ConnectionTarget) -> str:
    """The require_auth for this target: md5 and cleartext only when the credential allows weak authentication.

    Why refuse an old libpq instead of connecting without require_auth: without it libpq answers whatever
    the server asks, so a server that asks for the password in clear text would receive it.
    """
    import psycopg

    version = psycopg.pq.version()
    if version < _REQUIRE_AUTH_SINCE:
        raise ConfigurationError(
            f"psycopg uses libpq {version // 10000}, which cannot refuse a server that asks for the password "
            "in clear text (require_auth needs libpq 16 or later); install psycopg[binary] or a newer libpq",
            instance_name=target.name,
        )
    return REQUIRE_AUTH_WEAK if target.allow_weak_auth else REQUIRE_AUTH


# libpq's reason in `authentication method requirement "<require_auth>" failed: <reason>` (fe-auth.c)
_ASKED_FOR = {
    "server requested a cleartext password": "the password in clear text",
    "server requested a hashed password": "the password as an md5 digest (as good as the password itself)",
}


def _weak_auth_refused(text: str, target: ConnectionTarget) -> ConfigurationError:
    """libpq refused the server's authentication request (require_auth): a configuration error.

    Why configuration, not permission: the server did not refuse the monitoring role, WhaleFall refused
    the server. The fix is a setting on one side or the other: the server's authentication method
    (pg_hba.conf, password_encryption) or the credential's "allow weak password authentication".
    """
    reason = text.rsplit("failed:", 1)[-1].strip().rstrip(".")
    asked = next((form for words, form in _ASKED_FOR.items() if words in reason), None)
    if asked is None:  # GSSAPI, SSPI, a SASL mechanism other than SCRAM, or no authentication where one is required
        return ConfigurationError(
            f"the server at {endpoint(target)} asked for an authentication method WhaleFall does not use ({reason}); "
            "use scram-sha-256 for the monitoring role in pg_hba.conf",
            instance_name=target.name,
        )
    return ConfigurationError(
        f"the server at {endpoint(target)} asked for {asked}; WhaleFall refuses unless the credential allows "
        "weak password authentication. If this is the credential's own server, switch it to SCRAM "
        "(password_encryption = 'scram-sha-256', set the monitoring role's password again, "
        "scram-sha-256 in pg_hba.conf); someone who may change credentials can allow weak authentication",
        instance_name=target.name,
    )


SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's ca-certificates


def tls_params(target: ConnectionTarget) -> dict[str, str]:
    """libpq's TLS keywords from the instance's tls option and the credential's client certificate.

    No tls option: sslmode=prefer, as before (encrypted where the server offers it; the password
    is safe anyway, as require_auth only lets SCRAM prove it). verify-* without a CA of the
    instance's own trusts the system's bundle (libpq's default, ~/.postgresql/root.crt, would be
    the WhaleFall user's home). The PEMs reach libpq as private files (`private_file`).
    """
    from accountsync.adapters.base import private_file

    tls = target.tls
    params = {"sslmode": tls.mode or "prefer"}
    if tls.verifies:
        params["sslrootcert"] = private_file(tls.ca_pem) if tls.ca_pem else SYSTEM_CA_BUNDLE
    if tls.mode != "disable" and tls.client_cert_pem and tls.client_key_pem:
        params["sslcert"] = private_file(tls.client_cert_pem)
        params["sslkey"] = private_file(tls.client_key_pem)
    return params


def _connect(target: ConnectionTarget, dbname: str) -> Any:
    """Connect; psycopg bounds the whole connection attempt (TCP, TLS, login) by connect_timeout itself.

    `require_auth` (see `_require_auth`) decides which authentication requests libpq answers.
    """
    import psycopg

    require_auth = _require_auth(target)
    timeout_ms = max(1, int(target.query_timeout * 1000))
    try:
        conn = psycopg.connect(
            host=target.host,
            port=target.port,
            user=target.username,
            password=target.password or None,
            dbname=dbname,
            connect_timeout=max(1, math.ceil(target.connect_timeout)),
            autocommit=True,
            application_name="whalefall",
            options=f"-c statement_timeout={timeout_ms} -c default_transaction_read_only=on",
            require_auth=require_auth,
            **tls_params(target),
            **_network_params(target),
        )
    except psycopg.Error as exc:
        error = _classify(exc, target, dbname)
        error.server_words = _server_words(exc, target)  # type: ignore[attr-defined]
        raise error from None
    if conn.info.encoding == "ascii":  # a SQL_ASCII session: psycopg would hand every name over as bytes
        _lenient_text(conn, "utf-8")
    return conn


def _server_words(exc: Exception, target: ConnectionTarget) -> str:
    """The server's own message in a psycopg error, on one line, without libpq's connection preamble."""
    text = scrub(str(exc).strip(), target.password)
    if "FATAL:" in text:
        text = text.rsplit("FATAL:", 1)[1]
    return " ".join(text.split())


@functools.cache
def _lenient_loader(codec: str) -> type:
    from psycopg.adapt import Loader

    class LenientText(Loader):
        """Text in `codec` where it is valid, other bytes as `\\xNN` escapes: a name never fails a read."""

        def load(self, data: Any) -> str:
            return bytes(data).decode(codec, errors="backslashreplace")

    return LenientText


def _lenient_text(conn: Any, codec: str) -> None:
    """Make `conn` load every text-like column leniently in `codec` (the cursors made from then on).

    Why: PostgreSQL keeps a name as the bytes the creating session sent. A SQL_ASCII database
    checks none of them (psycopg then returns bytes, not str, for every text column), and a role
    or database name made from there reaches every database's shared catalogs unchanged, where
    strict decoding fails the whole read. Escaping only the invalid bytes keeps a valid name as it
    is and an invalid one readable, distinct from its neighbours and storable as JSON.
    """
    loader = _lenient_loader(codec)
    for name in ("text", "name", "varchar", "bpchar", '"char"'):
        conn.adapters.register_loader(name, loader)


def _database_codec(conn: Any) -> str:
    """The Python codec of the database's own encoding (UTF-8 for SQL_ASCII, which has none)."""
    from psycopg import _encodings

    try:
        codec = _encodings.pg2pyenc(conn.info.parameter_status("server_encoding") or b"UTF8")
    except Exception:  # an encoding psycopg does not know: UTF-8 is the best guess for names
        return "utf-8"
    return "utf-8" if codec == "ascii" else codec


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


class _Counter(QueryCounter):
    """A QueryCounter that re-reads a result with names the client could not take, leniently.

    Two ways a name fails: the driver cannot decode bytes the server passed on unchanged (an
    invalid name in the shared catalogs; UnicodeDecodeError), or the server cannot convert a name
    of a SQL_ASCII database to the client's encoding (PGCLIENTENCODING=UTF8: SQLSTATE 22021/22P05).
    The first is re-read with lenient decoding; the second after switching the session to
    SQL_ASCII (the stored bytes, unconverted), decoded leniently in the database's encoding.

    Why a retry and not lenient loading throughout: psycopg's own (C) text loader is much faster
    than any Python one, and such names are rare; the retry costs a round trip or two on the
    statement that met one, and the connection stays lenient from then on.
    """

    def __init__(self, conn: Any, target: ConnectionTarget) -> None:
        super().__init__(conn.cursor(), watchdog=_watchdog(conn, target))
        self.conn = conn

    def fetchall(self, sql: str, params: Iterable[Any] | None = None) -> list[tuple[Any, ...]]:
        import psycopg

        try:
            return super().fetchall(sql, params)
        except UnicodeDecodeError:
            _lenient_text(self.conn, self.conn.info.encoding)
        except (psycopg.errors.CharacterNotInRepertoire, psycopg.errors.UntranslatableCharacter):
            codec = _database_codec(self.conn)
            super().fetchall("SELECT set_config('client_encoding', 'SQL_ASCII', false)")
            _lenient_text(self.conn, codec)
        self.cursor = self.conn.cursor()
        return super().fetchall(sql, params)


def _counter(conn: Any, target: ConnectionTarget) -> QueryCounter:
    return _Counter(conn, target)


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
            version, version_num, authid_readable, monitor = counter.fetchall(
                "SELECT current_setting('server_version'), current_setting('server_version_num')::int, "
                "has_table_privilege('pg_catalog.pg_authid', 'SELECT'), current_user"
            )[0]
            roles = counter.fetchall(ROLES_SQL)
            members = counter.fetchall(MEMBERS_SQL_16 if version_num >= 160000 else MEMBERS_SQL)
            databases = counter.fetchall(DATABASES_SQL)
        except psycopg.Error as exc:
            raise _classify(exc, target, maintenance, counter=counter, conn=conn) from None
        statements += counter.count
        rows = ServerRows(
            version=version, version_num=version_num, roles=roles, members=members, databases=databases, monitor=monitor
        )
        if authid_readable:
            try:
                rows.passwords = {oid: bool(has) for oid, has in counter.fetchall(PASSWORDS_SQL)}
            except psycopg.Error as exc:
                raise _classify(exc, target, maintenance, counter=counter, conn=conn) from None
            statements += 1
        wanted = _wanted_databases(target)
        rows.wanted = sorted(wanted)
        existing = {r[0] for r in databases}
        names = sorted({r[0] for r in databases if r[1] and not r[2]})
        if wanted:
            for name in sorted(wanted - existing):
                rows.unreadable[name] = "database does not exist"
                rows.causes[name] = "missing"
            for name in sorted((wanted & existing) - set(names)):
                rows.unreadable[name] = "database does not accept connections (datallowconn false or template)"
                rows.causes[name] = "no_connections"
            names = [n for n in names if n in wanted]
        for name in names:
            db_rows, count = _read_database(target, name, conn if name == maintenance else None)
            statements += count
            if isinstance(db_rows, DatabaseRows):
                rows.per_database.append(db_rows)
            else:
                rows.unreadable[name], rows.causes[name] = db_rows
    finally:
        conn.close()
    return rows, statements


# What the server says when it refuses a connection to one database (not to the server), and the cause it names
_REFUSALS = (
    ("permission denied for database", "connect"),
    ("no pg_hba.conf entry", "hba"),
    ("rejects connection", "hba"),
    ("too many connections for database", "busy"),
    ("is not currently accepting connections", "closed"),
)


def _refusal(words: str) -> str | None:
    lowered = words.lower()
    for marker, cause in _REFUSALS:
        if marker in lowered:
            return cause
    if "database" in lowered and "does not exist" in lowered:
        return "dropped"
    return None


def _read_database(target: ConnectionTarget, name: str, conn: Any | None) -> tuple[DatabaseRows | tuple[str, str], int]:
    """Read one database's ACLs; an unreadable one yields (the server's words, cause), never an empty result.

    Why the server's words: they are the reason a coverage gap shows, and the one text that says
    exactly what was refused; `cause` (see `_FIXES`) picks the fix. A refusal to connect that is the
    server's and not this database's (unreachable, timed out) still fails the fetch.
    """
    import psycopg

    own = conn is None
    try:
        if own:
            conn = _connect(target, name)
    except AdapterError as exc:
        words = getattr(exc, "server_words", exc.message)
        cause = _refusal(words)
        if cause is None and isinstance(exc, TimeoutFailed | ConnectionFailed):
            raise
        return (words, cause or "other"), 0
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
        return (_server_words(exc, target), "catalog"), counter.count
    except psycopg.Error as exc:
        raise _classify(exc, target, name, counter=counter, conn=conn) from None
    finally:
        if own:
            conn.close()


# --- building the catalog (pure) ----------------------------------------------------


class _Expiry(NamedTuple):
    """A role's VALID UNTIL, read."""

    text: str | None  # the attribute valid_until: ISO 8601 UTC, "infinity", "-infinity" or None (no limit)
    moment: datetime | None  # when it passes, as an aware UTC datetime, if Python can hold the time
    always_past: bool  # "-infinity", or a time before year 1 (BC)

    def expired(self, now: datetime) -> bool:
        return self.always_past or (self.moment is not None and self.moment < now)


_NO_EXPIRY = _Expiry(None, None, False)
_SERVER_TIME = re.compile(r"(\d{4,})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{6}) (AD|BC)")


def _expiry(value: Any) -> _Expiry:
    """rolvaliduntil as `VALID_UNTIL_SQL` gives it (older recorded rows: a datetime, year 9999 meaning infinity).

    Why ISO 8601 with an expanded year beyond 1..9999: the attribute must stay one comparable
    spelling of a UTC time even where Python's datetime ends ("-3999-01-01T00:00:00+00:00" is
    4000 BC, "+12000-..." a time after year 9999); only those times have no `moment`.
    """
    if value is None:
        return _NO_EXPIRY
    if isinstance(value, datetime):
        if value.year >= 9999:
            return _Expiry("infinity", None, False)
        moment = value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return _Expiry(iso_timestamp(moment), moment, False)
    text = str(value)
    if text in ("infinity", "-infinity"):
        return _Expiry(text, None, text == "-infinity")
    match = _SERVER_TIME.fullmatch(text)
    if match is None:  # a form this code does not know: kept as the server wrote it, never guessed at
        return _Expiry(text, None, False)
    year, month, day, hour, minute, second, micro = (int(g) for g in match.groups()[:7])
    if match[8] == "AD" and year <= 9999:
        moment = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
        return _Expiry(moment.isoformat(), moment, False)
    astronomical = year if match[8] == "AD" else 1 - year  # ISO 8601 counts 1 BC as year 0
    sign = "+" if astronomical > 9999 else "-" if astronomical < 0 else ""
    fraction = f".{micro:06d}" if micro else ""
    return _Expiry(
        f"{sign}{abs(astronomical):04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}{fraction}+00:00",
        None,
        astronomical < 1,
    )


def expiry_moments(rows: ServerRows) -> list[datetime]:
    """Every role's finite VALID UNTIL: the moments at which the catalog changes by time alone (EXPIRED)."""
    return [m for m in (_expiry(row[10]).moment for row in rows.roles) if m is not None]


def quote_ident(name: str) -> str:
    """A name as a PostgreSQL identifier in a statement a fix shows.

    Why always quoted: PostgreSQL's quote_ident() leaves a lower-case name that is no keyword bare,
    which needs the server's keyword list; a quoted name means the same either way, and the
    doubled quote keeps any name (quotes, spaces, upper case) exact.
    """
    return '"' + name.replace('"', '""') + '"'


_DENIED_OBJECT = re.compile(r"permission denied for (table|view|materialized view|function|schema) \"?([^\s\"]+)\"?")


def _catalog_fix(database: str, role: str, reason: str) -> str:
    where = f"in database {quote_ident(database)}: "
    match = _DENIED_OBJECT.search(reason)
    if match is None:
        return where + (
            f"let {role} read the system catalogs the reason names again (PostgreSQL grants them to PUBLIC by default)"
        )
    kind, name = match.groups()
    if kind == "function":
        return where + f"GRANT EXECUTE ON FUNCTION pg_catalog.{quote_ident(name)} TO {role}"
    if kind == "schema":
        return where + f"GRANT USAGE ON SCHEMA {quote_ident(name)} TO {role}"
    return where + f"GRANT SELECT ON pg_catalog.{quote_ident(name)} TO {role}"


# cause -> the fix of an unreadable database (database, monitoring role quoted, reason)
_FIXES: dict[str, Callable[[str, str, str], str]] = {
    "connect": lambda db, role, _why: f"GRANT CONNECT ON DATABASE {quote_ident(db)} TO {role}",
    "hba": lambda db, role, _why: (
        f"add a pg_hba.conf line that lets {role} connect to database {quote_ident(db)} "
        "from the WhaleFall workers' addresses, then reload the server"
    ),
    "busy": lambda db, _role, _why: (
        f"database {quote_ident(db)} is at its connection limit: raise it "
        f"(ALTER DATABASE {quote_ident(db)} CONNECTION LIMIT ...) or sync again later"
    ),
    "closed": lambda db, _role, _why: (
        f"database {quote_ident(db)} stopped accepting connections during the sync: "
        f"ALTER DATABASE {quote_ident(db)} ALLOW_CONNECTIONS true, or remove it from the instance's databases option"
    ),
    "dropped": lambda db, _role, _why: f"database {quote_ident(db)} was dropped while the sync ran; sync again",
    "catalog": lambda db, role, why: _catalog_fix(db, role, why),
    "missing": lambda db, _role, _why: (
        f"fix the instance's databases option: there is no database {quote_ident(db)} on the server "
        "(correct the name or remove it)"
    ),
    "no_connections": lambda db, _role, _why: (
        f"fix the instance's databases option: {quote_ident(db)} is a template or does not allow connections, "
        "so it cannot be read (remove the name)"
    ),
    "other": lambda db, role, _why: (
        f"let {role} connect to database {quote_ident(db)} (see the reason), then sync again"
    ),
}


def _coverage(rows: ServerRows) -> list[CoverageGap]:
    """What this read did not see: unreadable databases, and databases the `databases` option leaves out.

    Why never inclusive: a database's own ACL comes from pg_database, read server-wide, so it stays
    exact (a REVOKE CONNECT ... FROM PUBLIC is still seen); only what lies inside the database is unknown.
    """
    role = quote_ident(rows.monitor) if rows.monitor else "<monitoring role>"
    gaps = [
        CoverageGap(
            scope=make_scope("database", name),
            reason=reason,
            fix=_FIXES.get(rows.causes.get(name, "connect"), _FIXES["other"])(name, role, reason),
            kind=GapKind.UNREADABLE,
            inclusive=False,
        )
        for name, reason in sorted(rows.unreadable.items())
    ]
    if rows.wanted:
        wanted = set(rows.wanted)
        left_out = {r[0] for r in rows.databases if r[1] and not r[2] and r[0] not in wanted}
        gaps.extend(
            CoverageGap(
                scope=make_scope("database", name),
                reason="not in the instance's databases option",
                fix="add it to the databases option to audit it",
                kind=GapKind.OUT_OF_SCOPE,
                inclusive=False,
            )
            for name in sorted(left_out)
        )
    return gaps


def build_catalog(rows: ServerRows, *, now: datetime | None = None) -> Catalog:
    """Turn plain catalog rows into canonical accounts (pure, no I/O)."""
    now = now or datetime.now(UTC)
    accounts: dict[int, AccountRecord] = {}
    for row in rows.roles:
        role = _RoleRow(*row)
        accounts[role.oid] = _role_account(role, rows.passwords, now, rows.version_num)
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
    catalog = Catalog(
        accounts=sorted(accounts.values(), key=lambda a: a.identity),
        server_version=f"PostgreSQL {rows.version.split()[0]}",
        coverage=_coverage(rows),
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
    rolvaliduntil: str | datetime | None  # VALID_UNTIL_SQL's text (a datetime in older recorded rows)


def _role_account(
    role: _RoleRow, passwords: dict[int, bool] | None, now: datetime, version_num: int = 0
) -> AccountRecord:
    """One role: its attributes, the capabilities they give, and why where that is not obvious."""
    expiry = _expiry(role.rolvaliduntil)
    attrs = {
        "login": bool(role.rolcanlogin),
        "superuser": bool(role.rolsuper),
        "inherit": bool(role.rolinherit),
        "createrole": bool(role.rolcreaterole),
        "createdb": bool(role.rolcreatedb),
        "replication": bool(role.rolreplication),
        "bypassrls": bool(role.rolbypassrls),
        "connection_limit": int(role.rolconnlimit),
        "valid_until": expiry.text,
    }
    caps: set[str] = set()
    reasons: dict[str, list[str]] = {}
    if role.rolsuper:
        caps.add("SUPERUSER")
    if role.rolname in SERVER_OS_ROLES:
        caps.add("SUPERUSER")
        reasons.setdefault("SUPERUSER", []).append(f"{role.rolname}: {SERVER_OS_ROLES[role.rolname]}")
    if role.rolcreaterole:
        caps.add("CREATE_USER")
        if version_num and version_num < 160000 and not role.rolsuper:
            caps.add("SUPERUSER")
            reasons.setdefault("SUPERUSER", []).append(CREATEROLE_BEFORE_16)
    if role.rolcreatedb:
        caps.add("CREATE_DB")
    if role.rolreplication:
        caps.add("REPLICATION")
    if role.rolbypassrls:
        caps.add("BYPASS_RLS")
    if expiry.expired(now):
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
        capability_reasons=reasons,
    )


def _add_memberships(members: list[tuple[Any, ...]], accounts: dict[int, AccountRecord], names: dict[int, str]) -> None:
    """pg_auth_members rows as role grants; before PostgreSQL 16 a grant is active when its member inherits.

    A PostgreSQL 16+ grant WITH SET FALSE, INHERIT FALSE and no ADMIN OPTION gives nothing of the
    role: no SET ROLE to it (so none of its attributes, SUPERUSER included), none of its privileges.
    finalize() follows every RoleGrant, so such a grant is no RoleGrant: the member's attribute
    `INERT_MEMBERSHIPS` lists it instead, and a change of its options still shows in the diff.
    """
    for roleid, member, admin, *options in members:
        inherit_opt = options[0] if options else None  # inherit_option, then set_option (PostgreSQL 16+)
        set_opt = options[1] if len(options) > 1 else None
        holder = accounts.get(member)
        if holder is None or roleid not in names:
            continue
        if set_opt is not None and not set_opt and not inherit_opt and not admin:
            inert = holder.attributes.setdefault(INERT_MEMBERSHIPS, [])
            inert.append(names[roleid])
            inert.sort()
            continue
        default = bool(inherit_opt) if inherit_opt is not None else bool(holder.attributes.get("inherit"))
        holder.roles.append(RoleGrant(role=names[roleid], admin_option=bool(admin), default=default))
        if set_opt is not None and not set_opt:
            # kept (it inherits, or carries ADMIN OPTION) but SET ROLE to it is refused: effective access
            # (accountsync/effective_read.py) must not offer what lies behind it "after SET ROLE"
            unsettable = holder.attributes.setdefault(UNSETTABLE_MEMBERSHIPS, [])
            unsettable.append(names[roleid])
            unsettable.sort()
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
        digest = rows_digest(__file__, target, rows, moments=expiry_moments(rows))
        if unchanged_catalog(target, digest):
            version = f"PostgreSQL {rows.version.split()[0]}"
            return Catalog(server_version=version, round_trips=statements, source_digest=digest, unchanged=True)
        catalog = build_catalog(rows)
        catalog.round_trips = statements
        catalog.source_digest = digest
        return catalog
