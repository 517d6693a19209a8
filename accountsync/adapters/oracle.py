"""Oracle Database: users, roles and grants from the DBA_ dictionary views.

Why set-based reads: one statement per dictionary view, whatever the number of
accounts, instead of one `DBMS_METADATA.GET_GRANTED_DDL` call per account.

The module has two halves so recorded rows (no Oracle server runs in CI) go
through exactly the code live rows do: `read_rows()` sends the statements and
returns plain dicts, `build_catalog()` is a pure function from those dicts to
a `Catalog`. Rows are modelled on Oracle Database 19c (column names and types
from the 19c Database Reference; 21c and 23ai keep these columns).

Scopes. Inside an Oracle instance (or a PDB, which is what a service name
reaches) there is no database level, so the database part of the canonical
scope is dropped, as MySQL drops the schema part:
``object:<OWNER>.<NAME>`` and ``column:<OWNER>.<TABLE>.<COLUMN>``; system
privileges and administrative privileges (SYSDBA, ...) are ``global``.

Capability rules (direct grants; roles add theirs through `Catalog.finalize`):

=================  ==========================================================
SUPERUSER          the role DBA; SYSDBA (V$PWFILE_USERS); or a system
                   privilege that lets the holder make itself anything:
                   GRANT ANY PRIVILEGE, GRANT ANY ROLE (grant self DBA),
                   GRANT ANY OBJECT PRIVILEGE (grant self SYS objects),
                   ALTER USER (reset SYSTEM's password), BECOME USER.
                   SYSOPER/SYSBACKUP/SYSDG/SYSKM cannot read data: excluded.
GRANT_ADMIN        any ADMIN_OPTION = 'YES' (role or system privilege), any
                   GRANTABLE = 'YES' (object or column), or a GRANT ANY ...
                   system privilege.
CREATE_USER        CREATE USER or ALTER USER.
LOCKED             ACCOUNT_STATUS contains LOCKED or LOCKED(TIMED).
EXPIRED            ACCOUNT_STATUS contains EXPIRED (not EXPIRED(GRACE), which
                   still logs in; that is attribute ``password_grace``).
=================  ==========================================================

AUTHENTICATION_TYPE 'NONE' on a user is a schema-only account (18c+): it
cannot log in at all, so it is the opposite of MySQL's NO_PASSWORD risk and is
recorded as attribute ``schema_only`` instead of a capability.

Oracle-maintained accounts (ORACLE_MAINTAINED = 'Y': SYS, SYSTEM, DBA,
SELECT_CATALOG_ROLE, ...) are left out of the result unless the instance option
``include_oracle_maintained`` is true, because they are the same on every
instance and would drown the accounts people manage. Leaving them out must not
hide what they give: a user granted DBA still shows the role DBA and is still
SUPERUSER. So the whole catalog is finalized first, then the maintained
accounts are removed and what the kept accounts inherited through them is
folded into their own `capabilities`; finalizing the smaller catalog again
gives the same answer. The removed names are listed in
``Catalog.details["excluded_oracle_maintained"]``.

Grants to PUBLIC belong to every account; they are not an account, so they go
to ``Catalog.details["public_grants"]`` (privileges and roles, canonical form)
once, instead of into every snapshot. What they make possible does reach every
user: the inheritable capabilities PUBLIC holds (e.g. after ``GRANT DBA TO
PUBLIC``) are added to every user's capabilities.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from accountsync.adapters.base import (
    INHERITABLE_CAPABILITIES,
    AccountRecord,
    AdapterError,
    Catalog,
    ConfigurationError,
    ConnectionTarget,
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
    unexpected_contents,
    unexpected_error,
)

MONITORING_DOC = "docs/monitoring-accounts.md, Oracle"
MODELLED_VERSION = "19c"

# --- the statements ---------------------------------------------------------------
# Column lists are explicit so a new column in a later release changes nothing,
# and DBA_USERS.LAST_LOGIN is left out on purpose: it changes at every login and
# would turn every sync into an attribute change.

VERSION_SQL = "SELECT PRODUCT, VERSION, VERSION_FULL FROM PRODUCT_COMPONENT_VERSION"
USERS_SQL = (
    "SELECT USERNAME, USER_ID, ACCOUNT_STATUS, LOCK_DATE, EXPIRY_DATE, DEFAULT_TABLESPACE, "
    "TEMPORARY_TABLESPACE, CREATED, PROFILE, EXTERNAL_NAME, AUTHENTICATION_TYPE, PROXY_ONLY_CONNECT, "
    "COMMON, ORACLE_MAINTAINED FROM DBA_USERS"
)
ROLES_SQL = "SELECT ROLE, ROLE_ID, PASSWORD_REQUIRED, AUTHENTICATION_TYPE, COMMON, ORACLE_MAINTAINED FROM DBA_ROLES"
ROLE_PRIVS_SQL = "SELECT GRANTEE, GRANTED_ROLE, ADMIN_OPTION, DEFAULT_ROLE FROM DBA_ROLE_PRIVS"
SYS_PRIVS_SQL = "SELECT GRANTEE, PRIVILEGE, ADMIN_OPTION FROM DBA_SYS_PRIVS"
TAB_PRIVS_SQL = "SELECT GRANTEE, OWNER, TABLE_NAME, PRIVILEGE, GRANTABLE, TYPE FROM DBA_TAB_PRIVS"
COL_PRIVS_SQL = "SELECT GRANTEE, OWNER, TABLE_NAME, COLUMN_NAME, PRIVILEGE, GRANTABLE FROM DBA_COL_PRIVS"
PWFILE_SQL = "SELECT USERNAME, SYSDBA, SYSOPER, SYSASM, SYSBACKUP, SYSDG, SYSKM FROM V$PWFILE_USERS"

ALL_SQL = (
    VERSION_SQL,
    USERS_SQL,
    ROLES_SQL,
    ROLE_PRIVS_SQL,
    SYS_PRIVS_SQL,
    TAB_PRIVS_SQL,
    COL_PRIVS_SQL,
    PWFILE_SQL,
)

_ADMIN_PRIVS = ("SYSDBA", "SYSOPER", "SYSASM", "SYSBACKUP", "SYSDG", "SYSKM")
_SUPER_SYS_PRIVS = frozenset(
    {"GRANT ANY PRIVILEGE", "GRANT ANY ROLE", "GRANT ANY OBJECT PRIVILEGE", "ALTER USER", "BECOME USER", "SYSDBA"}
)
_GRANT_ANY = frozenset({"GRANT ANY PRIVILEGE", "GRANT ANY ROLE", "GRANT ANY OBJECT PRIVILEGE"})
_CREATE_USER_PRIVS = frozenset({"CREATE USER", "ALTER USER"})
_SUPER_ROLES = frozenset({"DBA"})


@dataclass
class OracleRows:
    """The rows of each view, as dicts keyed by the view's column names."""

    version: list[dict[str, Any]] = field(default_factory=list)
    users: list[dict[str, Any]] = field(default_factory=list)
    roles: list[dict[str, Any]] = field(default_factory=list)
    role_privs: list[dict[str, Any]] = field(default_factory=list)
    sys_privs: list[dict[str, Any]] = field(default_factory=list)
    tab_privs: list[dict[str, Any]] = field(default_factory=list)
    col_privs: list[dict[str, Any]] = field(default_factory=list)
    pwfile: list[dict[str, Any]] = field(default_factory=list)


# --- row parsing (pure) -------------------------------------------------------------


# The dictionary views hold no RAW columns, so no bytes arrive; Oracle has always read
# any value as its str(), and keeps doing so (`decode_bytes=False`).
_text = functools.partial(as_text, decode_bytes=False)
_yes = functools.partial(is_yes, yes_words=("YES", "Y", "TRUE"), decode_bytes=False)


def parse_account_status(status: str) -> dict[str, bool]:
    """Split ACCOUNT_STATUS ('EXPIRED(GRACE) & LOCKED(TIMED)', ...) into flags."""
    parts = {p.strip().upper() for p in status.split("&") if p.strip()}
    return {
        "locked": bool(parts & {"LOCKED", "LOCKED(TIMED)"}),
        "locked_timed": "LOCKED(TIMED)" in parts,
        "password_expired": "EXPIRED" in parts,
        "password_grace": "EXPIRED(GRACE)" in parts,
        "in_rollover": any(p.startswith("IN ROLLOVER") for p in parts),
    }


def parse_version(rows: list[dict[str, Any]]) -> str:
    """The Oracle Database row of PRODUCT_COMPONENT_VERSION, full version preferred."""
    for row in rows:
        if "ORACLE" in _text(row.get("PRODUCT")).upper():
            return f"{_text(row['PRODUCT']).strip()} {_text(row.get('VERSION_FULL') or row.get('VERSION'))}".strip()
    if rows:
        return _text(rows[0].get("VERSION_FULL") or rows[0].get("VERSION"))
    return ""


def _user_record(row: dict[str, Any]) -> AccountRecord:
    name = _text(row["USERNAME"])
    status = _text(row["ACCOUNT_STATUS"])
    flags = parse_account_status(status)
    auth = _text(row.get("AUTHENTICATION_TYPE")).upper()
    attributes: dict[str, Any] = {
        "account_status": status,
        **flags,
        "profile": _text(row.get("PROFILE")),
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
    }
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


def _capabilities(acc: AccountRecord) -> set[str]:
    sys_names = {p.privilege.upper() for p in acc.privileges if p.scope == "global"}
    caps: set[str] = set()
    if sys_names & _SUPER_SYS_PRIVS or (acc.kind == "role" and acc.username in _SUPER_ROLES):
        caps.add("SUPERUSER")
    if any(p.grantable for p in acc.privileges) or any(r.admin_option for r in acc.roles) or sys_names & _GRANT_ANY:
        caps.add("GRANT_ADMIN")
    if sys_names & _CREATE_USER_PRIVS:
        caps.add("CREATE_USER")
    if acc.attributes.get("locked"):
        caps.add("LOCKED")
    if acc.attributes.get("password_expired"):
        caps.add("EXPIRED")
    return caps


class _Grantees:
    """Hands each grant to its grantee: an account, PUBLIC (kept apart: it is no account), or nobody we read."""

    def __init__(self, accounts: dict[str, AccountRecord]) -> None:
        self.accounts = accounts
        self.public = AccountRecord(identity="PUBLIC", username="PUBLIC", kind="public")
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


def build_catalog(rows: OracleRows, *, include_oracle_maintained: bool = False) -> Catalog:
    """Turn dictionary-view rows into a finalized catalog (pure: no I/O)."""
    accounts = _accounts(rows)
    grantees = _Grantees(accounts)
    _add_grants(rows, grantees)
    public = grantees.public
    for acc in [*accounts.values(), public]:
        acc.capabilities = _capabilities(acc)
    full = Catalog(accounts=[*accounts.values(), public], server_version=parse_version(rows.version)).finalize()
    full.accounts.remove(public)
    public_caps = public.effective_capabilities & INHERITABLE_CAPABILITIES
    for acc in full.accounts:
        if acc.kind == "user" and public_caps - acc.effective_capabilities:
            # every user holds what PUBLIC holds
            acc.capabilities |= public_caps
            acc.effective_capabilities |= public_caps

    if include_oracle_maintained:
        kept, excluded = full.accounts, []
    else:
        kept, excluded = _without_oracle_maintained(full.accounts)

    catalog = Catalog(accounts=kept, server_version=full.server_version)
    catalog.details["modelled_on"] = MODELLED_VERSION
    catalog.details["include_oracle_maintained"] = include_oracle_maintained
    catalog.details["excluded_oracle_maintained"] = excluded
    catalog.details["public_grants"] = _public_grants(public, public_caps)
    if grantees.unknown:
        catalog.details["unknown_grantees"] = sorted(grantees.unknown)
    return catalog.finalize()


def _accounts(rows: OracleRows) -> dict[str, AccountRecord]:
    """Users, then roles; a role never replaces a user of the same name."""
    accounts: dict[str, AccountRecord] = {}
    for row in rows.users:
        acc = _user_record(row)
        accounts[acc.identity] = acc
    for row in rows.roles:
        acc = _role_record(row)
        accounts.setdefault(acc.identity, acc)
    return accounts


def _add_grants(rows: OracleRows, grantees: _Grantees) -> None:
    """System, administrative (password file), object and column privileges, then role grants."""
    for row in rows.sys_privs:
        grantees.add_privilege(
            row["GRANTEE"], Privilege("global", _text(row["PRIVILEGE"]).upper(), _yes(row["ADMIN_OPTION"]))
        )
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
    for row in rows.role_privs:
        grant = RoleGrant(_text(row["GRANTED_ROLE"]), _yes(row["ADMIN_OPTION"]), _yes(row.get("DEFAULT_ROLE", "YES")))
        grantees.add_role(row["GRANTEE"], grant)


def _without_oracle_maintained(accounts: list[AccountRecord]) -> tuple[list[AccountRecord], list[str]]:
    """(kept accounts, names left out); what a kept account inherited through a removed role stays its own."""
    kept = [a for a in accounts if not a.attributes.get("oracle_maintained")]
    excluded = sorted(a.identity for a in accounts if a.attributes.get("oracle_maintained"))
    for acc in kept:
        acc.capabilities |= acc.effective_capabilities & INHERITABLE_CAPABILITIES
    return kept, excluded


def _public_grants(public: AccountRecord, capabilities: set[str]) -> dict[str, Any]:
    """PUBLIC's grants in canonical form, once for the instance instead of in every snapshot."""
    return {
        "privileges": sorted(
            (p.as_dict() for p in set(public.privileges)), key=lambda d: (d["scope"], d["privilege"], d["grantable"])
        ),
        "roles": sorted((r.as_dict() for r in set(public.roles)), key=lambda d: d["role"]),
        "capabilities": sorted(capabilities),
    }


# --- querying ------------------------------------------------------------------------


def read_rows(counter: QueryCounter) -> OracleRows:
    """One statement per view: the number of round trips does not grow with accounts."""
    return OracleRows(
        version=counter.fetchdicts(VERSION_SQL),
        users=counter.fetchdicts(USERS_SQL),
        roles=counter.fetchdicts(ROLES_SQL),
        role_privs=counter.fetchdicts(ROLE_PRIVS_SQL),
        sys_privs=counter.fetchdicts(SYS_PRIVS_SQL),
        tab_privs=counter.fetchdicts(TAB_PRIVS_SQL),
        col_privs=counter.fetchdicts(COL_PRIVS_SQL),
        pwfile=counter.fetchdicts(PWFILE_SQL),
    )


# --- errors ---------------------------------------------------------------------------

_AUTH_CODES = {"ORA-01017", "ORA-28000", "ORA-28001", "ORA-01005", "ORA-01045", "ORA-28009"}
_NO_DICTIONARY = {"ORA-00942", "ORA-01031", "ORA-04043"}
_SERVICE_CODES = {"ORA-12514", "ORA-12505", "ORA-12521", "DPY-6001", "DPY-6003", "DPY-4027"}
_TIMEOUT_CODES = {"ORA-12170", "DPY-4024", "ORA-03136", "DPY-6006"}
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
    if "ORA-28000" in codes:
        return PermissionDenied(
            f"the monitoring account {account_at(target)} is locked ({detail}); "
            "unlock it with ALTER USER ... ACCOUNT UNLOCK",
            instance_name=name,
        )
    if codes & _AUTH_CODES:
        return login_failed(target, detail, check="that the account has CREATE SESSION")
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
    """Reads Oracle Database 19c+ accounts with python-oracledb in thin mode."""

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
                rows = read_rows(counter)
            except oracledb.Error as exc:
                raise classify_error(exc, target, phase="read the DBA_ views", elapsed=counter.elapsed) from None
        finally:
            conn.close()
        include = bool((target.options or {}).get("include_oracle_maintained", False))
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
]
