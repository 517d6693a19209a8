"""Oracle adapter on recorded 19c dictionary rows, plus real python-oracledb thin-mode failures.

Why this shape: no Oracle server runs here. The connection returned by
`oracledb.connect` is the one fake (the DB-API boundary): it answers each
statement the adapter sends from rows recorded in the column layout of the
19c views, after parsing the statement with sqlglot's Oracle dialect and
checking every selected column exists in that view. Everything above that
boundary, including the connect timeout thread and error classification, is
the production code. Connection failures use the real driver against local
sockets; login failure is the driver's own error object.
"""

from __future__ import annotations

import copy
import gc
import json
import socket
import struct
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import oracledb
import pytest
import sqlglot
from oracledb import errors as ora_errors
from sqlglot import exp

from accountsync.adapters.base import (
    ConfigurationError,
    ConnectionFailed,
    ConnectionTarget,
    PermissionDenied,
    TimeoutFailed,
    get_adapter,
)
from accountsync.adapters.oracle import (
    ALL_SQL,
    OracleAdapter,
    OracleRows,
    build_catalog,
    classify_error,
    error_codes,
    parse_account_status,
)

FIXTURE = json.loads((Path(__file__).parent.parent / "fixtures" / "oracle" / "catalog_19c.json").read_text("utf-8"))
PASSWORD = "s3cr3t-Pa55word"


def target(**kw: Any) -> ConnectionTarget:
    base = {
        "name": "ora-prod",
        "db_type": "oracle",
        "host": "127.0.0.1",
        "port": 1521,
        "username": "WHALEFALL_MON",
        "password": PASSWORD,
        "database_name": "ORCLPDB1",
        "connect_timeout": 2.0,
    }
    base.update(kw)
    return ConnectionTarget(**base)


# --- the DB-API boundary ---------------------------------------------------------


def parse_select(sql: str) -> tuple[str, list[str]]:
    """(view, columns) of a plain SELECT, parsed as Oracle SQL; raises on anything else."""
    tree = sqlglot.parse_one(sql, read="oracle", error_level=sqlglot.ErrorLevel.RAISE)
    assert isinstance(tree, exp.Select), sql
    assert all(isinstance(s, exp.Column) for s in tree.selects), sql
    table = tree.find(exp.Table)
    assert table is not None, sql
    return table.name, [s.name for s in tree.selects]


class RecordedCursor:
    """Answers like an oracledb cursor: tuples, `description`, DATE columns as datetime."""

    def __init__(self, views: dict[str, Any], fail_on: dict[str, Exception] | None = None) -> None:
        self.views = views
        self.fail_on = fail_on or {}
        self.executed: list[str] = []
        self.description: list[tuple[Any, ...]] | None = None
        self._rows: list[tuple[Any, ...]] = []

    def execute(self, sql: str, params: Any = None) -> None:
        self.executed.append(sql)
        view, columns = parse_select(sql)
        if view in self.fail_on:
            raise self.fail_on[view]
        recorded = self.views[view]
        index = [recorded["columns"].index(c) for c in columns]  # ValueError: column not in the 19c view
        dates = set(FIXTURE["date_columns"])
        self.description = [(c, None, None, None, None, None, True) for c in columns]
        self._rows = [
            tuple(
                datetime.fromisoformat(row[i]) if columns[n] in dates and row[i] else row[i]
                for n, i in enumerate(index)
            )
            for row in recorded["rows"]
        ]

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self._rows)


class RecordedConnection:
    version = "19.21.0.0.0"

    def __init__(self, cursor: RecordedCursor) -> None:
        self._cursor = cursor
        self.closed = False
        self.call_timeout = 0

    def cursor(self) -> RecordedCursor:
        return self._cursor

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch):
    """Make `oracledb.connect` return a connection over the recorded views; yields the connection."""
    state: dict[str, Any] = {"views": copy.deepcopy(FIXTURE["views"]), "fail_on": {}, "kwargs": None}

    def connect(**kwargs: Any) -> RecordedConnection:
        state["kwargs"] = kwargs
        state["conn"] = RecordedConnection(RecordedCursor(state["views"], state["fail_on"]))
        return state["conn"]

    monkeypatch.setattr(oracledb, "connect", connect)
    return state


def snapshots(catalog) -> dict[str, dict[str, Any]]:
    return {a.identity: a.snapshot() for a in catalog.accounts}


def grant(scope: str, privilege: str, grantable: bool = False) -> dict[str, Any]:
    return {"scope": scope, "privilege": privilege, "grantable": grantable, "effect": "GRANT"}


def role(name: str, admin: bool = False, default: bool = True) -> dict[str, Any]:
    return {"role": name, "admin_option": admin, "default": default}


USER_DEFAULTS = {
    "account_status": "OPEN",
    "authentication_type": "PASSWORD",
    "common": False,
    "created": "2024-01-15T08:30:00",
    "default_tablespace": "USERS",
    "expiry_date": "2026-05-01T09:00:00",
    "in_rollover": False,
    "lock_date": None,
    "locked": False,
    "locked_timed": False,
    "oracle_maintained": False,
    "password_expired": False,
    "password_grace": False,
    "profile": "DEFAULT",
    "proxy_only_connect": False,
    "schema_only": False,
    "temporary_tablespace": "TEMP",
}


def user_snapshot(privileges, roles, capabilities, **attrs: Any) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "privileges": privileges,
        "roles": roles,
        "attributes": {**USER_DEFAULTS, **attrs},
        "capabilities": capabilities,
        "unknown_scopes": [],
    }


# --- fetch end to end over recorded rows -------------------------------------------


def test_fetch_reads_each_view_once_and_builds_exact_snapshots(recorded) -> None:
    adapter = get_adapter("oracle")
    assert isinstance(adapter, OracleAdapter)
    catalog = adapter.fetch(target())

    kwargs = recorded["kwargs"]
    assert kwargs["service_name"] == "ORCLPDB1"
    assert kwargs["tcp_connect_timeout"] == 2.0
    assert kwargs["host"] == "127.0.0.1" and kwargs["port"] == 1521 and kwargs["user"] == "WHALEFALL_MON"
    assert recorded["conn"].closed is True
    assert recorded["conn"].call_timeout == 300_000
    assert recorded["conn"].cursor().executed == list(ALL_SQL)
    assert catalog.round_trips == len(ALL_SQL) == 8
    assert catalog.server_version == "Oracle Database 19c Enterprise Edition 19.21.0.0.0"

    snaps = snapshots(catalog)
    assert sorted(snaps) == sorted(
        [
            "APP_OWNER",
            'Mixed.Case"User',
            "报表用户",
            "APP$BATCH#1",
            "OLD_USER",
            "TIMED_USER",
            "SCHEMA_ONLY",
            "JR_DBA",
            "OPS_ADMIN",
            "BACKUP_OP",
            "APP_READ",
            "APP_WRITE",
            "APP_ADMIN",
            "USER_MGR",
        ]
    )
    assert catalog.details["excluded_oracle_maintained"] == ["CONNECT", "DBA", "SELECT_CATALOG_ROLE", "SYS", "SYSTEM"]
    assert catalog.details["public_grants"] == {
        "privileges": [grant("object:SYS.DBMS_OUTPUT", "EXECUTE")],
        "roles": [role("APP_READ")],
        "capabilities": [],
    }

    # DBA is Oracle-maintained and left out, yet still shows and still makes a superuser.
    assert snaps["JR_DBA"] == user_snapshot(
        [], [role("CONNECT"), role("DBA")], ["CREATE_USER", "GRANT_ADMIN", "SUPERUSER"]
    )
    # Nested: APP_ADMIN -> USER_MGR gives CREATE USER; admin option and non-default role kept.
    assert snaps["APP_OWNER"] == user_snapshot(
        [grant("global", "CREATE SESSION"), grant("global", "CREATE TABLE")],
        [role("APP_ADMIN", admin=True, default=False), role("CONNECT")],
        ["CREATE_USER", "GRANT_ADMIN"],
    )
    assert snaps['Mixed.Case"User'] == user_snapshot(
        [grant('object:APP_OWNER."weird.table"', "SELECT", grantable=True)], [role("APP_READ")], ["GRANT_ADMIN"]
    )
    assert snaps["报表用户"] == user_snapshot(
        [grant("object:APP_OWNER.报表", "SELECT")],
        [role("APP_READ")],
        ["LOCKED"],
        account_status="LOCKED",
        locked=True,
        lock_date="2026-10-01T12:00:00",
    )
    assert snaps["APP$BATCH#1"] == user_snapshot(
        [grant("column:APP_OWNER.ORDERS.STATUS", "UPDATE"), grant("object:SYS.DATA_PUMP_DIR", "READ")],
        [],
        [],
        account_status="EXPIRED(GRACE)",
        password_grace=True,
        expiry_date="2026-11-25T00:00:00",
        profile="APP_PROFILE",
    )
    assert snaps["OPS_ADMIN"]["capabilities"] == ["CREATE_USER", "SUPERUSER"]
    assert snaps["BACKUP_OP"]["capabilities"] == []  # SYSBACKUP cannot read data
    assert grant("global", "SYSBACKUP") in snaps["BACKUP_OP"]["privileges"]
    assert snaps["SCHEMA_ONLY"]["attributes"]["schema_only"] is True
    assert snaps["SCHEMA_ONLY"]["capabilities"] == []
    assert snaps["OLD_USER"]["capabilities"] == ["EXPIRED", "LOCKED"]
    assert snaps["TIMED_USER"]["attributes"]["locked_timed"] is True
    assert snaps["APP_ADMIN"]["attributes"]["password_required"] == "YES"
    assert snaps["APP_ADMIN"]["attributes"]["authentication_type"] == "PASSWORD"
    assert snaps["APP_WRITE"]["roles"] == [role("APP_READ")]
    by_id = {a.identity: a for a in catalog.accounts}
    assert by_id["JR_DBA"].is_superuser and not by_id["APP_OWNER"].is_superuser
    assert by_id["报表用户"].is_locked and by_id["APP_READ"].kind == "role"
    assert PASSWORD not in repr(catalog)


def test_excluding_oracle_maintained_keeps_capabilities_stable_under_refinalize(recorded) -> None:
    catalog = OracleAdapter().fetch(target())
    before = snapshots(catalog)
    assert snapshots(catalog.finalize()) == before


def test_include_oracle_maintained_option(recorded) -> None:
    catalog = OracleAdapter().fetch(target(options={"include_oracle_maintained": True}))
    snaps = snapshots(catalog)
    default = snapshots(OracleAdapter().fetch(target()))
    assert len(snaps) == len(default) + 5
    assert catalog.details["excluded_oracle_maintained"] == []
    assert snaps["DBA"]["capabilities"] == ["CREATE_USER", "GRANT_ADMIN", "SUPERUSER"]
    assert snaps["DBA"]["attributes"]["oracle_maintained"] is True
    assert snaps["SYS"]["capabilities"] == ["CREATE_USER", "GRANT_ADMIN", "SUPERUSER"]
    assert grant("global", "SYSDBA") in snaps["SYS"]["privileges"]
    assert snaps["CONNECT"]["capabilities"] == []
    for name, snap in default.items():
        assert snaps[name] == snap, name


def test_ungranted_maintained_role_does_not_leak_capabilities(recorded) -> None:
    views = recorded["views"]
    views["DBA_ROLE_PRIVS"]["rows"] = [r for r in views["DBA_ROLE_PRIVS"]["rows"] if r[0] != "JR_DBA"]
    snaps = snapshots(OracleAdapter().fetch(target()))
    assert snaps["JR_DBA"]["capabilities"] == []
    assert snaps["JR_DBA"]["roles"] == []


def test_capabilities_granted_to_public_reach_every_user(recorded) -> None:
    recorded["views"]["DBA_ROLE_PRIVS"]["rows"].append(["PUBLIC", "DBA", "NO", "NO", "YES", "NO", "NO"])
    catalog = OracleAdapter().fetch(target())
    assert catalog.details["public_grants"]["capabilities"] == ["CREATE_USER", "GRANT_ADMIN", "SUPERUSER"]
    users = [a for a in catalog.accounts if a.kind == "user"]
    assert len(users) == 10 and all(a.is_superuser for a in users)
    assert snapshots(catalog)["OLD_USER"]["capabilities"] == [
        "CREATE_USER",
        "EXPIRED",
        "GRANT_ADMIN",
        "LOCKED",
        "SUPERUSER",
    ]
    assert not any(a.is_superuser for a in catalog.accounts if a.kind == "role")
    assert snapshots(catalog.finalize()) == snapshots(catalog)


@pytest.mark.parametrize(
    ("status", "locked", "expired", "grace", "timed"),
    [
        ("OPEN", False, False, False, False),
        ("LOCKED", True, False, False, False),
        ("LOCKED(TIMED)", True, False, False, True),
        ("EXPIRED", False, True, False, False),
        ("EXPIRED(GRACE)", False, False, True, False),
        ("EXPIRED & LOCKED", True, True, False, False),
        ("EXPIRED & LOCKED(TIMED)", True, True, False, True),
        ("EXPIRED(GRACE) & LOCKED", True, False, True, False),
        ("EXPIRED(GRACE) & LOCKED(TIMED)", True, False, True, True),
    ],
)
def test_account_status(status: str, locked: bool, expired: bool, grace: bool, timed: bool) -> None:
    flags = parse_account_status(status)
    assert (flags["locked"], flags["password_expired"], flags["password_grace"], flags["locked_timed"]) == (
        locked,
        expired,
        grace,
        timed,
    )


def test_in_rollover_status() -> None:
    assert parse_account_status("OPEN & IN ROLLOVER")["in_rollover"] is True


# --- SQL checked with sqlglot -----------------------------------------------------------


@pytest.mark.parametrize("sql", ALL_SQL)
def test_every_statement_parses_as_oracle_and_names_real_columns(sql: str) -> None:
    view, columns = parse_select(sql)
    recorded = FIXTURE["views"][view]["columns"]
    assert columns and set(columns) <= set(recorded), set(columns) - set(recorded)
    assert "LAST_LOGIN" not in columns


def test_the_sql_check_can_fail() -> None:
    with pytest.raises(sqlglot.errors.ParseError):
        parse_select("SELECT (GRANTEE FROM DBA_SYS_PRIVS")
    with pytest.raises(AssertionError):
        parse_select("SELECT COUNT(*) FROM DBA_USERS")


# --- linear growth -----------------------------------------------------------------------


def synthetic(n: int) -> OracleRows:
    users = [
        {
            "USERNAME": f"U{i:05d}",
            "USER_ID": 1000 + i,
            "ACCOUNT_STATUS": "LOCKED" if i % 7 == 0 else "OPEN",
            "LOCK_DATE": None,
            "EXPIRY_DATE": datetime(2026, 1, 1),
            "DEFAULT_TABLESPACE": "USERS",
            "TEMPORARY_TABLESPACE": "TEMP",
            "CREATED": datetime(2024, 1, 1),
            "PROFILE": "DEFAULT",
            "EXTERNAL_NAME": None,
            "AUTHENTICATION_TYPE": "PASSWORD",
            "PROXY_ONLY_CONNECT": "N",
            "COMMON": "NO",
            "ORACLE_MAINTAINED": "N",
        }
        for i in range(n)
    ]
    roles = [
        {"ROLE": r, "ROLE_ID": k, "PASSWORD_REQUIRED": "NO", "AUTHENTICATION_TYPE": "NONE", "COMMON": "NO"}
        | {"ORACLE_MAINTAINED": "Y" if r == "DBA" else "N"}
        for k, r in enumerate(["DBA", "R_READ", "R_WRITE"])
    ]
    role_privs = [{"GRANTEE": "R_WRITE", "GRANTED_ROLE": "R_READ", "ADMIN_OPTION": "NO", "DEFAULT_ROLE": "YES"}]
    role_privs += [
        {"GRANTEE": f"U{i:05d}", "GRANTED_ROLE": "DBA" if i % 100 == 0 else "R_WRITE", "ADMIN_OPTION": "NO"}
        | {"DEFAULT_ROLE": "YES"}
        for i in range(n)
    ]
    sys_privs = [{"GRANTEE": "DBA", "PRIVILEGE": "GRANT ANY PRIVILEGE", "ADMIN_OPTION": "YES"}]
    sys_privs += [{"GRANTEE": f"U{i:05d}", "PRIVILEGE": "CREATE SESSION", "ADMIN_OPTION": "NO"} for i in range(n)]
    tab_privs = [
        {"GRANTEE": f"U{i:05d}", "OWNER": "APP", "TABLE_NAME": f"T{i % 50}", "PRIVILEGE": p, "GRANTABLE": "NO"}
        | {"TYPE": "TABLE"}
        for i in range(n)
        for p in ("SELECT", "INSERT")
    ]
    return OracleRows(users=users, roles=roles, role_privs=role_privs, sys_privs=sys_privs, tab_privs=tab_privs)


def _cost(n: int) -> float:
    rows = synthetic(n)
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        catalog = build_catalog(rows)
        for acc in catalog.accounts:
            acc.snapshot()
        best = min(best, time.process_time() - start)
    assert len(catalog.accounts) == n + 2
    return best


def test_parse_and_canonicalise_stay_linear_at_10000_users() -> None:
    # CPU time of this process only (other processes on a busy machine do not count), no GC pauses:
    # 5x the accounts is ~5x when linear, ~25x when quadratic.
    gc.disable()
    try:
        small, large = _cost(2000), _cost(10000)
    finally:
        gc.enable()
    assert large / small < 12, (small, large)
    catalog = build_catalog(synthetic(10000))
    snaps = {a.identity: a for a in catalog.accounts}
    assert snaps["U00100"].effective_capabilities == {"SUPERUSER", "GRANT_ADMIN"}
    assert snaps["U00007"].effective_capabilities == {"LOCKED"}
    assert sum(a.is_superuser for a in catalog.accounts) == 100


# --- errors: real driver, real sockets ----------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_closed_port_is_connection_error() -> None:
    with pytest.raises(ConnectionFailed) as info:
        OracleAdapter().test_connection(target(port=free_port()))
    message = str(info.value)
    assert message.startswith("ora-prod: cannot connect to 127.0.0.1:")
    assert "DPY-6005" in message and PASSWORD not in message


@pytest.fixture
def silent_listener():
    """Accepts TCP connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for conn in held:
        conn.close()


def test_silent_listener_is_timeout_within_the_limit(silent_listener: int) -> None:
    start = time.monotonic()
    with pytest.raises(TimeoutFailed) as info:
        OracleAdapter().fetch(target(port=silent_listener, connect_timeout=1.0))
    elapsed = time.monotonic() - start
    assert 1.0 <= elapsed < 3.0
    assert "within 1s" in str(info.value) and str(info.value).startswith("ora-prod: ")


def refusing_listener(error_code: int) -> int:
    """A listener that answers the connect packet with a TNS REFUSE carrying ERR=<code>, as Oracle's does."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def run() -> None:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(5)
            conn.recv(65536)
            data = f"(DESCRIPTION=(TMP=)(VSNNUM=0)(ERR={error_code})(ERROR_STACK=(ERROR=(CODE={error_code}))))"
            body = bytes([0x22, 0x00]) + struct.pack(">H", len(data)) + data.encode()
            conn.sendall(struct.pack(">HHBBH", 8 + len(body), 0, 4, 0, 0) + body)
            time.sleep(0.3)
        server.close()

    threading.Thread(target=run, daemon=True).start()
    return server.getsockname()[1]


def test_wrong_service_name_from_the_real_driver() -> None:
    port = refusing_listener(12514)
    with pytest.raises(ConfigurationError) as info:
        OracleAdapter().test_connection(target(port=port, database_name="NO_SUCH_SERVICE"))
    message = str(info.value)
    assert "does not know service 'NO_SUCH_SERVICE'" in message
    assert "DPY-6001" in message and "ORA-12514" in message


def test_listener_refusing_for_other_reasons_is_connection_error() -> None:
    with pytest.raises(ConnectionFailed) as info:
        OracleAdapter().test_connection(target(port=refusing_listener(12519)))
    assert "DPY-6000" in str(info.value)


def test_missing_service_name_is_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="no service name"):
        OracleAdapter().test_connection(target(database_name=""))


# --- errors: the driver's own error objects (a server would be needed to provoke them) -----


def server_error(code: int, text: str) -> oracledb.Error:
    """Built like thin mode builds a server error: an _Error with the ORA code, wrapped in its class."""
    err = ora_errors._Error(f"ORA-{code:05d}: {text}", code=code)
    return err.exc_type(err)


def test_login_failure_is_permission_without_password() -> None:
    exc = server_error(1017, f"invalid credential or not authorized; logon denied (tried {PASSWORD})")
    assert isinstance(exc, oracledb.DatabaseError) and error_codes(exc)[0] == "ORA-01017"
    classified = classify_error(exc, target(), phase="connect")
    assert isinstance(classified, PermissionDenied)
    assert "login failed for 'WHALEFALL_MON'" in str(classified) and PASSWORD not in str(classified)


def test_locked_monitoring_account() -> None:
    classified = classify_error(server_error(28000, "The account is locked."), target(), phase="connect")
    assert isinstance(classified, PermissionDenied) and "ACCOUNT UNLOCK" in str(classified)


@pytest.mark.parametrize("code", [942, 1031])
def test_no_dictionary_access_names_the_grant(recorded, code: int) -> None:
    recorded["fail_on"]["DBA_USERS"] = server_error(code, "table or view does not exist")
    with pytest.raises(PermissionDenied) as info:
        OracleAdapter().fetch(target())
    message = str(info.value)
    assert message.startswith("ora-prod: the monitoring account 'WHALEFALL_MON' cannot read the DBA_ views")
    assert "SELECT_CATALOG_ROLE or SELECT ANY DICTIONARY" in message
    assert recorded["conn"].closed is True


def test_connection_dropped_mid_fetch_is_connection_error(recorded) -> None:
    recorded["fail_on"]["DBA_TAB_PRIVS"] = ora_errors._create_exception(ora_errors.ERR_CONNECTION_CLOSED)
    with pytest.raises(ConnectionFailed, match="DPY-4011"):
        OracleAdapter().fetch(target())


def test_test_connection_returns_version(recorded) -> None:
    assert OracleAdapter().test_connection(target()) == "19.21.0.0.0"
