"""SQL Server adapter on recorded SQL Server 2022 catalog rows, plus real mssql-python failures.

No SQL Server runs here. The one fake is the connection returned by
`mssql_python.connect` (the DB-API boundary): it parses every statement with
sqlglot's T-SQL dialect and answers from rows recorded in the column layout of
the 2022 catalog views. Connection failures use the real driver against local
sockets; login failure uses the driver's own exception built from SQLSTATE 28000.
"""

from __future__ import annotations

import contextlib
import gc
import json
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import mssql_python
import pytest
import sqlglot
from mssql_python.exceptions import sqlstate_to_exception

from accountsync.adapters import sqlserver
from accountsync.adapters.base import (
    ConnectionFailed,
    ConnectionTarget,
    PermissionDenied,
    TimeoutFailed,
    get_adapter,
)
from accountsync.adapters.sqlserver import (
    SERVER_SQL,
    SQLServerAdapter,
    SQLServerRows,
    build_catalog,
    classify_error,
    connection_string,
    database_batch_sql,
    readable_databases,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "sqlserver"
RECORDED = json.loads((FIXTURES / "catalog_2022.json").read_text("utf-8"))
EXPECTED = json.loads((FIXTURES / "expected_2022.json").read_text("utf-8"))
PASSWORD = "s3cr3t;Pa}ss"


def target(**kw: Any) -> ConnectionTarget:
    base = {
        "name": "mssql-prod",
        "db_type": "sqlserver",
        "host": "127.0.0.1",
        "port": 1433,
        "username": "whalefall_mon",
    }
    base.update({"password": PASSWORD, "connect_timeout": 2.0, **kw})
    return ConnectionTarget(**base)


def recorded_rows() -> SQLServerRows:
    return SQLServerRows(**{k: v for k, v in RECORDED.items() if k != "modelled_on"})


# --- the DB-API boundary -----------------------------------------------------


class FakeCursor:
    """Answers each statement from the recorded rows; the batch statements by the databases they name."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.description: list[tuple[str]] = []
        self.rows: list[tuple[Any, ...]] = []

    def execute(self, sql: str) -> None:
        sqlglot.parse_one(sql, read="tsql", error_level=sqlglot.ErrorLevel.RAISE)
        self.log.append(sql)
        by_sql = dict(
            zip(
                SERVER_SQL, ("version", "logins", "server_role_members", "server_permissions", "databases"), strict=True
            )
        )
        if sql in by_sql:
            data = RECORDED[by_sql[sql]]
        else:
            names = {m.replace("''", "'") for m in re.findall(r"SELECT N'((?:[^']|'')*)' AS database_name", sql)}
            view = (
                "database_principals"
                if "sys.database_principals" in sql
                else "database_role_members"
                if "sys.database_role_members" in sql
                else "database_permissions"
            )
            data = [r for r in RECORDED[view] if r["database_name"] in names]
        cols = list(data[0]) if data else ["x"]
        self.description = [(c,) for c in cols]
        self.rows = [tuple(r[c] for c in cols) for r in data]

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows


class FakeConnection:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.timeout = 0
        self.closed = False

    def cursor(self) -> FakeCursor:
        return FakeCursor(self.log)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def connect(conn_str: str, **kw: Any) -> FakeConnection:
        seen["conn_str"], seen["kw"], seen["conn"] = conn_str, kw, FakeConnection()
        return seen["conn"]

    monkeypatch.setattr(mssql_python, "connect", connect)
    return seen


# --- recorded catalog -----------------------------------------------------------


def test_registered() -> None:
    assert isinstance(get_adapter("sqlserver"), SQLServerAdapter)


def test_fetch_builds_the_exact_canonical_snapshots(recorded) -> None:
    catalog = SQLServerAdapter().fetch(target())
    got = {a.identity: {"kind": a.kind, "snapshot": a.snapshot()} for a in catalog.accounts}
    assert got == EXPECTED["accounts"]
    assert catalog.unknown_scopes == ["database:archive", "database:hr", "database:incoming"]
    # the engine sees them as coverage gaps (unreadable, the database itself included): last known, never revoked
    gaps = catalog.finalize().coverage
    assert [(g.scope, g.kind, g.inclusive) for g in gaps] == [
        ("database:archive", "unreadable", True),
        ("database:hr", "unreadable", True),
        ("database:incoming", "unreadable", True),
    ]
    assert catalog.server_version == "16.0.4135.4"
    # 5 server statements + 3 for the one batch of the three readable databases
    assert catalog.round_trips == 8 == len(recorded["conn"].log)
    assert recorded["conn"].closed and recorded["conn"].timeout == 300


def test_batches_bound_round_trips(recorded) -> None:
    catalog = SQLServerAdapter().fetch(target(options={"database_batch_size": 2}))
    assert catalog.round_trips == 5 + 3 * 2
    assert {a.identity: a.snapshot() for a in catalog.accounts} == {
        k: v["snapshot"] for k, v in EXPECTED["accounts"].items()
    }


def test_unreadable_databases_are_never_queried(recorded) -> None:
    SQLServerAdapter().fetch(target())
    batch_sql = " ".join(recorded["conn"].log[5:])
    for name in ("archive", "incoming", "[hr]"):
        assert name not in batch_sql


def test_capabilities_deny_nesting_and_orphans() -> None:
    catalog = build_catalog(recorded_rows())
    caps = {a.identity: sorted(a.effective_capabilities) for a in catalog.accounts}
    assert caps["ctrl_role"] == ["SUPERUSER"]
    assert caps["denied_ctrl"] == []  # DENY CONTROL SERVER beats the role's GRANT
    assert caps["admin_via_role"] == ["SUPERUSER"]  # sysadmin, through a nested role, ignores DENY
    assert caps["CORP\\ops"] == ["CREATE_USER", "GRANT_ADMIN"]  # via ops]admin -> securityadmin
    assert caps["sales::orphan"] == ["ORPHANED"]
    assert caps["sales::contained"] == ["GRANT_ADMIN"]  # WITH GRANT
    assert caps["locked_one"] == ["LOCKED"] and caps["CORP\\old group"] == ["LOCKED"]
    assert caps["expired_one"] == ["EXPIRED"]
    assert {a.identity for a in catalog.accounts if a.is_superuser} == {
        "sa",
        "sysadmin",
        "sub_admin",
        "admin_via_role",
        "ctrl_role",
    }


def test_readable_databases() -> None:
    ok, unknown = readable_databases(RECORDED["databases"])
    assert ok == ["master", "sales", "we]ird'db.ü"]
    assert unknown == ["archive", "incoming", "hr"]


# --- SQL text ---------------------------------------------------------------------


def all_sql() -> list[str]:
    return [*SERVER_SQL, *database_batch_sql(["master", "we]ird'db.ü", "x]]'';--"])]


@pytest.mark.parametrize("sql", all_sql())
def test_every_statement_parses_as_tsql(sql: str) -> None:
    tree = sqlglot.parse_one(sql, read="tsql", error_level=sqlglot.ErrorLevel.RAISE)
    assert tree is not None


def test_hostile_database_names_stay_inside_their_brackets() -> None:
    principals, _, _ = database_batch_sql(["a]; DROP LOGIN sa; --"])
    assert "[a]]; DROP LOGIN sa; --].sys.database_principals" in principals
    tree = sqlglot.parse_one(principals, read="tsql")
    assert [t.catalog for t in tree.find_all(sqlglot.exp.Table)] == ["a]; DROP LOGIN sa; --"]


def test_the_sql_check_can_fail() -> None:
    with pytest.raises(sqlglot.errors.ParseError):
        sqlglot.parse_one("SELECT name FROM sys.server_principals WHERE (", read="tsql")


# --- scale --------------------------------------------------------------------------


def synthetic(n: int) -> SQLServerRows:
    logins = [
        {"name": f"user{i}", "principal_id": 1000 + i, "sid": f"0x{i:08X}", "type": "S", "type_desc": "SQL_LOGIN"}
        for i in range(n)
    ] + [{"name": "sysadmin", "principal_id": 3, "sid": "0x03", "type": "R", "is_fixed_role": 1}]
    members = [{"role_principal_id": 3, "member_principal_id": 1000 + i} for i in range(0, n, 10)]
    perms = [
        {"class": 100, "major_id": 0, "grantee_principal_id": 1000 + i, "permission_name": "CONNECT SQL", "state": "G"}
        for i in range(n)
    ]
    return SQLServerRows(logins=logins, server_role_members=members, server_permissions=perms)


def test_parse_and_canonicalise_stay_linear() -> None:
    def run(n: int) -> float:
        start = time.process_time()
        catalog = build_catalog(synthetic(n))
        for acc in catalog.accounts:
            acc.snapshot()
        assert len(catalog.accounts) == n + 1
        return time.process_time() - start

    run(200)
    # best of three on both sides: a busy machine slows single runs, never the best one by 20x;
    # quadratic work would take ~100x for 10x the accounts
    gc.disable()  # CPU time of this process (time.process_time), without GC pauses
    try:
        small, large = min(run(1000) for _ in range(3)), min(run(10000) for _ in range(3))
    finally:
        gc.enable()
    assert large / small < 20, (small, large)


# --- errors: real driver, real sockets -------------------------------------------------


def test_connection_string_quotes_values_and_maps_tls() -> None:
    text = connection_string(target(options={"tls": "require"}))
    # require verifies the certificate too (it used to trust any: issue 17); only an explicit flag trusts
    assert "PWD={s3cr3t;Pa}}ss}" in text and "Encrypt=yes;TrustServerCertificate=no" in text
    assert "Encrypt=no" in connection_string(target(options={"tls": {"mode": "disable"}}))
    assert "Encrypt=yes;TrustServerCertificate=no" in connection_string(target())
    trusting = {"tls": {"mode": "require", "trust_server_certificate": True}}
    assert "Encrypt=yes;TrustServerCertificate=yes" in connection_string(target(options=trusting))
    for not_true in ("yes", 1, "true"):  # only the JSON boolean true turns verification off
        options = {"tls": {"mode": "require", "trust_server_certificate": not_true}}
        assert "TrustServerCertificate=no" in connection_string(target(options=options))
    # outside the tls option (which only those who may change credentials can change) it does nothing
    assert "TrustServerCertificate=no" in connection_string(target(options={"trust_server_certificate": True}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_closed_port_is_connection_error() -> None:
    with pytest.raises(ConnectionFailed) as info:
        SQLServerAdapter().test_connection(target(port=free_port(), options={"tls": "disable"}))
    assert "mssql-prod" in str(info.value) and PASSWORD not in str(info.value)


@pytest.fixture
def silent_listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for s in held:
        s.close()
    server.close()


def test_silent_listener_is_timeout_within_the_limit(silent_listener: int) -> None:
    start = time.monotonic()
    with pytest.raises(TimeoutFailed) as info:
        SQLServerAdapter().fetch(target(port=silent_listener, connect_timeout=2.0, options={"tls": "disable"}))
    assert time.monotonic() - start < 5
    assert "within 2s" in str(info.value)


def test_login_failure_18456_is_permission_without_password() -> None:
    exc = sqlstate_to_exception(
        "28000",
        "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Login failed for user 'whalefall_mon'. "
        f"(18456) PWD={PASSWORD}",
    )
    assert isinstance(exc, mssql_python.OperationalError)
    err = classify_error(exc, target(), phase="connect")
    assert isinstance(err, PermissionDenied)
    assert "Login failed" in str(err) and PASSWORD not in str(err) and "mssql-prod" in str(err)


def test_catalog_permission_error_names_the_doc() -> None:
    exc = sqlstate_to_exception(
        "42000",
        '[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]The server principal "whalefall_mon" is not '
        'able to access the database "sales" under the current security context.',
    )
    err = classify_error(exc, target(), phase="read the sys catalog views")
    assert isinstance(err, PermissionDenied) and sqlserver.MONITORING_DOC in str(err)
