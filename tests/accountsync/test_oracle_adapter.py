"""Oracle adapter on recorded dictionary rows (12c, 19c, 23ai), plus real python-oracledb thin-mode failures.

Why this shape: no Oracle server runs here. The connection returned by
`oracledb.connect` is the one fake (the DB-API boundary): it answers each
statement the adapter sends from rows recorded in the column layout of the
views of the fixture's release (tests/fixtures/oracle, README.md says where
each shape comes from), after parsing the statement with sqlglot's Oracle
dialect and checking every selected column exists in that view. Everything
above that boundary, including the connect timeout thread and error
classification, is the production code. Connection failures use the real
driver against local sockets (closed port, silent port, listeners that refuse,
that ask for native network encryption, that are too old, TLS listeners with
the right and the wrong certificate); errors only a server can provoke are the
driver's own error objects.
"""

from __future__ import annotations

import copy
import gc
import socket
import ssl
import struct
import threading
import time
from datetime import datetime
from typing import Any

import oracledb
import pytest
import sqlglot
from oracledb import errors as ora_errors

from accountsync.adapters.base import (
    ConfigurationError,
    ConnectionFailed,
    ConnectionTarget,
    PermissionDenied,
    TimeoutFailed,
    TlsSettings,
    get_adapter,
    private_file,
)
from accountsync.adapters.oracle import (
    ALL_SQL,
    OracleAdapter,
    OracleRows,
    build_catalog,
    classify_error,
    error_codes,
    parse_account_status,
    statements,
    status_now,
)
from accountsync.effective import effective_access
from tests.accountsync.oracle_rows import (
    answer,
    clock,
    from_root,
    load,
    parse_select,
    recorded_server,
    role_priv,
    role_row,
    rows_of,
    sys_priv,
    user_row,
    with_additions,
)

FIXTURE = load("catalog_19c.json")
NOW = datetime(2026, 11, 23, 9, 0)  # the fixture's SYSDATE
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


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch):
    """Make `oracledb.connect` return a connection over the recorded 19c views; yields its state."""
    return recorded_server(monkeypatch, FIXTURE)


def use(state: dict[str, Any], fixture: dict[str, Any]) -> None:
    state["fixture"] = copy.deepcopy(fixture)
    state["views"] = state["fixture"]["views"]


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
    "expiry_date": "2027-05-01T09:00:00",
    "in_rollover": False,
    "last_login": "2026-11-20",
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


MAINTAINED = ["CONNECT", "DBA", "DBSNMP", "SELECT_CATALOG_ROLE", "SYS", "SYSTEM", "XS$NULL"]


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
    assert catalog.round_trips == len(ALL_SQL) == 12
    assert catalog.server_version == "Oracle Database 19c Enterprise Edition 19.21.0.0.0"
    assert catalog.coverage == []
    assert catalog.details["container"] == "ORCLPDB1"
    assert catalog.details["status_as_of"] == "2026-11-23T09:00:00"

    snaps = snapshots(catalog)
    users = ["APP_OWNER", 'Mixed.Case"User', "报表用户", "APP$BATCH#1", "OLD_USER", "TIMED_USER", "SCHEMA_ONLY"]
    users += ["JR_DBA", "OPS_ADMIN", "BACKUP_OP", "C##AUDITOR", "STALE_OPEN", "TIMED_PAST", "ROLLOVER_APP"]
    users += ["ROLLOVER_LOCKED", "APP_SRV", "REPORT_SRV", "NOROLE_SRV", "AUTH_SRV", "DEV_DEPLOY", "SPLIT_DEV"]
    users += ["OPERATOR1"]
    roles = ["APP_READ", "APP_WRITE", "APP_ADMIN", "USER_MGR", "PROC_CREATOR", "PUBLIC"]
    assert sorted(snaps) == sorted([*users, *roles, *MAINTAINED])
    assert catalog.details["excluded_oracle_maintained"] == []

    # DBA is Oracle-maintained and shown, and makes its holder a superuser.
    assert snaps["JR_DBA"] == user_snapshot(
        [],
        [role("CONNECT"), role("DBA")],
        ["CREATE_USER", "GRANT_ADMIN", "SUPERUSER"],
        proxied_by=[  # in the snapshot's canonical order (sorted as JSON text)
            {"grant": "CONNECT THROUGH AUTHENTICATION REQUIRED", "proxy": "AUTH_SRV"},
            {"grant": "CONNECT THROUGH WITH NO ROLES", "proxy": "NOROLE_SRV"},
            {"grant": "CONNECT THROUGH", "proxy": "APP_SRV"},
        ],
    )
    # Nested: APP_ADMIN -> USER_MGR gives CREATE USER; admin option and non-default role kept.
    assert snaps["APP_OWNER"] == user_snapshot(
        [grant("global", "CREATE SESSION"), grant("global", "CREATE TABLE")],
        [role("APP_ADMIN", admin=True, default=False), role("CONNECT")],
        ["CREATE_USER", "GRANT_ADMIN"],
        proxied_by=[{"grant": "CONNECT THROUGH WITH ROLE APP_ADMIN", "proxy": "REPORT_SRV"}],
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
    assert snaps["OPS_ADMIN"]["attributes"]["proxied_by_directory"] is True
    assert snaps["BACKUP_OP"]["capabilities"] == []  # SYSBACKUP cannot read data
    assert grant("global", "SYSBACKUP") in snaps["BACKUP_OP"]["privileges"]
    assert snaps["SCHEMA_ONLY"]["attributes"]["schema_only"] is True
    assert snaps["SCHEMA_ONLY"]["capabilities"] == []
    assert snaps["OLD_USER"]["capabilities"] == ["EXPIRED", "LOCKED"]
    assert snaps["TIMED_USER"]["attributes"]["locked_timed"] is True  # locked until 2026-11-23 23:50
    assert snaps["C##AUDITOR"]["attributes"]["common"] is True
    assert snaps["APP_ADMIN"]["attributes"]["password_required"] == "YES"
    assert snaps["APP_ADMIN"]["attributes"]["authentication_type"] == "PASSWORD"
    assert snaps["APP_WRITE"]["roles"] == [role("APP_READ")]
    by_id = {a.identity: a for a in catalog.accounts}
    assert by_id["JR_DBA"].is_superuser and not by_id["APP_OWNER"].is_superuser
    assert by_id["报表用户"].is_locked and by_id["APP_READ"].kind == "role"
    assert PASSWORD not in repr(catalog)


def test_refinalize_is_stable(recorded) -> None:
    for options in ({}, {"include_oracle_maintained": False}):
        catalog = OracleAdapter().fetch(target(options=options))
        before = snapshots(catalog)
        assert snapshots(catalog.finalize()) == before


# --- 1. Oracle-maintained accounts: shown by default, marked, hidden on request ------------


def test_oracle_maintained_accounts_are_shown_with_status_and_grants(recorded) -> None:
    catalog = OracleAdapter().fetch(target())
    snaps = snapshots(catalog)
    maintained = sorted(i for i, s in snaps.items() if s["attributes"].get("oracle_maintained"))
    assert maintained == MAINTAINED
    assert snaps["SYS"]["capabilities"] == ["CREATE_USER", "GRANT_ADMIN", "SHUTDOWN", "SUPERUSER"]
    assert grant("global", "SYSDBA") in snaps["SYS"]["privileges"]
    assert snaps["DBSNMP"]["attributes"]["account_status"] == "LOCKED"
    assert snaps["DBSNMP"]["capabilities"] == ["LOCKED"]
    assert snaps["XS$NULL"]["capabilities"] == ["EXPIRED", "LOCKED"]
    assert snaps["DBA"]["capabilities"] == ["CREATE_USER", "GRANT_ADMIN", "SUPERUSER"]
    assert snaps["CONNECT"]["capabilities"] == []
    assert all(s["attributes"]["oracle_maintained"] is False for i, s in snaps.items() if i in ("JR_DBA", "APP_READ"))


def test_hiding_oracle_maintained_is_an_explicit_option(recorded) -> None:
    shown = snapshots(OracleAdapter().fetch(target(options={"include_oracle_maintained": True})))
    assert shown == snapshots(OracleAdapter().fetch(target()))  # the default
    catalog = OracleAdapter().fetch(target(options={"include_oracle_maintained": False}))
    hidden = snapshots(catalog)
    assert catalog.details["excluded_oracle_maintained"] == MAINTAINED
    assert sorted(shown) == sorted([*hidden, *MAINTAINED])
    for name, snap in hidden.items():  # what the kept accounts can do does not change
        assert shown[name] == snap, name
    assert hidden["JR_DBA"]["roles"] == [role("CONNECT"), role("DBA")]
    assert hidden["JR_DBA"]["capabilities"] == ["CREATE_USER", "GRANT_ADMIN", "SUPERUSER"]


def test_ungranted_maintained_role_does_not_leak_capabilities(recorded) -> None:
    views = recorded["views"]
    views["DBA_ROLE_PRIVS"]["rows"] = [r for r in views["DBA_ROLE_PRIVS"]["rows"] if r[0] != "JR_DBA"]
    snaps = snapshots(OracleAdapter().fetch(target(options={"include_oracle_maintained": False})))
    assert snaps["JR_DBA"]["capabilities"] == []
    assert snaps["JR_DBA"]["roles"] == []
    assert snapshots(OracleAdapter().fetch(target()))["APP_SRV"]["capabilities"] == []  # its proxy gives nothing


def test_capabilities_granted_to_public_reach_every_user(recorded) -> None:
    recorded["views"]["DBA_ROLE_PRIVS"]["rows"].append(["PUBLIC", "DBA", "NO", "NO", "YES", "NO", "NO"])
    catalog = OracleAdapter().fetch(target())
    assert catalog.details["public_grants"]["capabilities"] == ["CREATE_USER", "GRANT_ADMIN", "SUPERUSER"]
    users = [a for a in catalog.accounts if a.kind == "user"]
    assert len(users) == 26 and all(a.is_superuser for a in users)
    old = snapshots(catalog)["OLD_USER"]
    assert old["capabilities"] == ["CREATE_USER", "EXPIRED", "GRANT_ADMIN", "LOCKED", "SUPERUSER"]
    assert old["attributes"]["capability_reasons"]["SUPERUSER"] == ["granted to PUBLIC (PUBLIC holds SUPERUSER)"]
    assert {a.identity for a in catalog.accounts if a.kind == "role" and a.is_superuser} == {"DBA", "PUBLIC"}
    assert snapshots(catalog.finalize()) == snapshots(catalog)


# --- 5. the account status as of now ----------------------------------------------------------


def test_status_is_worked_out_as_of_the_servers_clock(recorded) -> None:
    snaps = snapshots(OracleAdapter().fetch(target()))
    stale = snaps["STALE_OPEN"]["attributes"]
    assert (stale["account_status"], stale["account_status_now"]) == ("OPEN", "EXPIRED")
    assert stale["password_expired"] is True and snaps["STALE_OPEN"]["capabilities"] == ["EXPIRED"]
    assert stale["status_reasons"] == ["the password expired on 2026-10-01T00:00:00; Oracle shows it at the next login"]
    unlocked = snaps["TIMED_PAST"]["attributes"]  # locked 2026-11-20 08:00, DEFAULT's PASSWORD_LOCK_TIME 1 day
    assert (unlocked["account_status"], unlocked["account_status_now"]) == ("LOCKED(TIMED)", "OPEN")
    assert unlocked["locked"] is False and snaps["TIMED_PAST"]["capabilities"] == []
    assert unlocked["status_reasons"] == [
        "the timed lock of 2026-11-20T08:00:00 ended at 2026-11-21T08:00 (PASSWORD_LOCK_TIME 1 day); "
        "Oracle shows it at the next login"
    ]
    rolled = snaps["ROLLOVER_LOCKED"]["attributes"]  # APP_PROFILE's lock time is half a day
    assert rolled["account_status_now"] == "OPEN & IN ROLLOVER" and rolled["in_rollover"] is True
    assert snaps["ROLLOVER_APP"]["attributes"]["in_rollover"] is True
    assert "account_status_now" not in snaps["ROLLOVER_APP"]["attributes"]
    # what has not passed yet is as read
    assert "account_status_now" not in snaps["TIMED_USER"]["attributes"]
    assert "account_status_now" not in snaps["APP$BATCH#1"]["attributes"]  # grace until 2026-11-25


def test_grace_and_lock_times_pass(recorded) -> None:
    recorded["views"]["DUAL"]["rows"] = [["2026-11-26T00:00:00"]]
    snaps = snapshots(OracleAdapter().fetch(target()))
    grace = snaps["APP$BATCH#1"]
    assert grace["attributes"]["account_status_now"] == "EXPIRED" and grace["capabilities"] == ["EXPIRED"]
    assert grace["attributes"]["password_grace"] is False
    assert snaps["TIMED_USER"]["attributes"]["account_status_now"] == "OPEN"
    assert snaps["OLD_USER"]["capabilities"] == ["EXPIRED", "LOCKED"]  # LOCKED has no lock time


def test_unreadable_profiles_keep_timed_locks_as_read(recorded) -> None:
    recorded["fail_on"]["DBA_PROFILES"] = server_error(942, "table or view does not exist")
    catalog = OracleAdapter().fetch(target())
    snaps = snapshots(catalog)
    assert snaps["TIMED_PAST"]["attributes"]["locked"] is True
    assert "account_status_now" not in snaps["TIMED_PAST"]["attributes"]
    assert snaps["STALE_OPEN"]["attributes"]["account_status_now"] == "EXPIRED"  # needs no profile
    assert catalog.details["unreadable_views"] == {"profiles": "ORA-00942"}
    assert catalog.coverage == []


@pytest.mark.parametrize(
    ("status", "lock", "expiry", "lock_days", "expected"),
    [
        ("OPEN", None, "2026-11-23T08:59:59", 1, "EXPIRED"),
        ("OPEN", None, "2026-11-23T09:00:01", 1, "OPEN"),
        ("EXPIRED(GRACE)", None, "2026-11-22T00:00:00", 1, "EXPIRED"),
        ("LOCKED(TIMED)", "2026-11-22T08:00:00", None, 1, "OPEN"),
        ("LOCKED(TIMED)", "2026-11-22T10:00:00", None, 1, "LOCKED(TIMED)"),
        ("LOCKED(TIMED)", "2026-01-01T00:00:00", None, None, "LOCKED(TIMED)"),  # UNLIMITED
        ("EXPIRED & LOCKED(TIMED)", "2026-11-01T00:00:00", None, 1, "EXPIRED"),
        ("EXPIRED(GRACE) & LOCKED(TIMED) & IN ROLLOVER", "2026-11-01T00:00:00", "2026-11-02T00:00:00", 1,
         "EXPIRED & IN ROLLOVER"),
        ("EXPIRED & LOCKED", "2026-01-01T00:00:00", "2026-01-01T00:00:00", 1, "EXPIRED & LOCKED"),
    ],
)  # fmt: skip
def test_status_now(status: str, lock: str | None, expiry: str | None, lock_days: float | None, expected: str) -> None:
    got, reasons = status_now(
        status, lock_date=lock, expiry_date=expiry, lock_days=lock_days, lock_time_known=True, now=NOW
    )
    assert got == expected
    assert bool(reasons) == (got != status)
    # without the server's clock nothing is derived
    assert status_now(status, lock_date=lock, expiry_date=expiry, lock_days=1, lock_time_known=True, now=None) == (
        status,
        [],
    )


@pytest.mark.parametrize(
    ("status", "locked", "expired", "grace", "timed", "rollover"),
    [
        ("OPEN", False, False, False, False, False),
        ("LOCKED", True, False, False, False, False),
        ("LOCKED(TIMED)", True, False, False, True, False),
        ("EXPIRED", False, True, False, False, False),
        ("EXPIRED(GRACE)", False, False, True, False, False),
        ("EXPIRED & LOCKED", True, True, False, False, False),
        ("EXPIRED & LOCKED(TIMED)", True, True, False, True, False),
        ("EXPIRED(GRACE) & LOCKED", True, False, True, False, False),
        ("EXPIRED(GRACE) & LOCKED(TIMED)", True, False, True, True, False),
        ("OPEN & IN ROLLOVER", False, False, False, False, True),
        ("EXPIRED & IN ROLLOVER", False, True, False, False, True),
        ("LOCKED & IN ROLLOVER", True, False, False, False, True),
        ("LOCKED(TIMED) & IN ROLLOVER", True, False, False, True, True),
        ("EXPIRED & LOCKED & IN ROLLOVER", True, True, False, False, True),
        ("EXPIRED & LOCKED(TIMED) & IN ROLLOVER", True, True, False, True, True),
    ],
)
def test_account_status(status: str, locked: bool, expired: bool, grace: bool, timed: bool, rollover: bool) -> None:
    flags = parse_account_status(status)
    assert (
        flags["locked"],
        flags["password_expired"],
        flags["password_grace"],
        flags["locked_timed"],
        flags["in_rollover"],
    ) == (locked, expired, grace, timed, rollover)


# --- 4. escalation routes -----------------------------------------------------------------


def escalation(*privileges: str, via_role: bool = False, pwfile: dict[str, str] | None = None) -> OracleRows:
    """A user (and maybe a role) holding `privileges`, in view-shaped rows."""
    grantee = "R_ROUTE" if via_role else "U_ROUTE"
    return OracleRows(
        clock=clock(NOW),
        users=[user_row("U_ROUTE")],
        roles=[role_row("R_ROUTE")],
        role_privs=[role_priv("U_ROUTE", "R_ROUTE")] if via_role else [],
        sys_privs=[sys_priv(grantee, p) for p in privileges],
        pwfile=[{"USERNAME": "U_ROUTE", **(pwfile or {})}] if pwfile else [],
    )


ROUTES = [
    (("GRANT ANY PRIVILEGE",), {"SUPERUSER", "GRANT_ADMIN"}, "GRANT ANY PRIVILEGE: "),
    (("GRANT ANY ROLE",), {"SUPERUSER", "GRANT_ADMIN"}, "GRANT ANY ROLE: "),
    (("GRANT ANY OBJECT PRIVILEGE",), {"SUPERUSER", "GRANT_ADMIN"}, "GRANT ANY OBJECT PRIVILEGE: "),
    (("BECOME USER",), {"SUPERUSER"}, "BECOME USER: "),
    (("ALTER USER",), {"SUPERUSER", "CREATE_USER"}, "ALTER USER: "),
    (("CREATE ANY PROCEDURE", "EXECUTE ANY PROCEDURE"), {"SUPERUSER"}, "CREATE ANY PROCEDURE and EXECUTE ANY"),
    (("CREATE ANY TRIGGER",), {"SUPERUSER"}, "CREATE ANY TRIGGER: "),
    (("CREATE ANY JOB",), {"SUPERUSER"}, "CREATE ANY JOB: "),
    (("CREATE EXTERNAL JOB",), {"SUPERUSER"}, "CREATE EXTERNAL JOB: "),
    (("ALTER SYSTEM",), {"SUPERUSER"}, "ALTER SYSTEM: "),
    (("CREATE ANY DIRECTORY",), {"SUPERUSER", "FILE_ACCESS"}, "CREATE ANY DIRECTORY: "),
    (("EXEMPT ACCESS POLICY",), {"BYPASS_RLS"}, "EXEMPT ACCESS POLICY: "),
]


@pytest.mark.parametrize(("privileges", "capabilities", "reason"), ROUTES, ids=[" + ".join(r[0]) for r in ROUTES])
def test_escalation_routes_direct_and_through_a_role(privileges, capabilities, reason) -> None:
    direct = {a.identity: a.snapshot() for a in build_catalog(escalation(*privileges)).accounts}["U_ROUTE"]
    assert set(direct["capabilities"]) == capabilities
    for cap in capabilities - {"GRANT_ADMIN", "CREATE_USER"}:
        assert any(r.startswith(reason) for r in direct["attributes"]["capability_reasons"][cap]), cap
    inherited = {a.identity: a.snapshot() for a in build_catalog(escalation(*privileges, via_role=True)).accounts}
    assert set(inherited["U_ROUTE"]["capabilities"]) == capabilities
    for cap in capabilities - {"GRANT_ADMIN", "CREATE_USER"}:
        why = inherited["U_ROUTE"]["attributes"]["capability_reasons"][cap]
        assert any(r.startswith(f"via role R_ROUTE ({reason}") for r in why), why


def test_half_a_route_is_no_route() -> None:
    for privilege in ("CREATE ANY PROCEDURE", "EXECUTE ANY PROCEDURE", "CREATE USER", "SELECT ANY DICTIONARY"):
        snap = {a.identity: a.snapshot() for a in build_catalog(escalation(privilege)).accounts}["U_ROUTE"]
        assert "SUPERUSER" not in snap["capabilities"], privilege


def test_administrative_privileges_from_the_password_file() -> None:
    sysdba = escalation(pwfile={"SYSDBA": "TRUE", "SYSOPER": "FALSE"})
    snap = {a.identity: a.snapshot() for a in build_catalog(sysdba).accounts}["U_ROUTE"]
    assert snap["capabilities"] == ["SUPERUSER"]
    assert snap["attributes"]["capability_reasons"]["SUPERUSER"][0].startswith("SYSDBA (password file)")
    sysoper = escalation(pwfile={"SYSOPER": "TRUE"})
    assert {a.identity: a.snapshot() for a in build_catalog(sysoper).accounts}["U_ROUTE"]["capabilities"] == [
        "SHUTDOWN"
    ]
    for other in ("SYSBACKUP", "SYSDG", "SYSKM"):  # cannot read data
        rows = escalation(pwfile={other: "TRUE"})
        assert {a.identity: a.snapshot() for a in build_catalog(rows).accounts}["U_ROUTE"]["capabilities"] == []


def test_recorded_routes(recorded) -> None:
    snaps = snapshots(OracleAdapter().fetch(target()))
    deploy = snaps["DEV_DEPLOY"]
    assert deploy["capabilities"] == ["BYPASS_RLS", "SUPERUSER"]
    # the two halves of the procedure route, one held directly and one through a role
    split = snaps["SPLIT_DEV"]
    assert split["capabilities"] == ["SUPERUSER"]
    assert split["attributes"]["capability_reasons"]["SUPERUSER"][0].startswith(
        "CREATE ANY PROCEDURE and EXECUTE ANY PROCEDURE, held together through its own grants and roles"
    )
    assert snaps["PROC_CREATOR"]["capabilities"] == []
    assert snaps["OPERATOR1"]["capabilities"] == ["SHUTDOWN"]
    assert snaps["SYS"]["attributes"]["capability_reasons"]["SUPERUSER"] == [
        "SYSDBA (password file): may connect AS SYSDBA, that is as SYS"
    ]


# --- 2. proxy users --------------------------------------------------------------------------


def test_proxies_are_access_and_a_proxy_into_a_dba_is_a_superuser(recorded) -> None:
    catalog = OracleAdapter().fetch(target())
    snaps = snapshots(catalog)
    app = snaps["APP_SRV"]
    assert grant("proxy:JR_DBA", "CONNECT THROUGH") in app["privileges"]
    assert grant("proxy:SCHEMA_ONLY", "CONNECT THROUGH") in app["privileges"]
    assert app["capabilities"] == ["CREATE_USER", "GRANT_ADMIN", "SUPERUSER"]
    assert app["attributes"]["capability_reasons"]["SUPERUSER"] == [
        "proxy for JR_DBA (CONNECT THROUGH): may connect as JR_DBA without its password, and JR_DBA holds SUPERUSER"
    ]
    # the roles the proxy may use decide what it gets
    assert snaps["NOROLE_SRV"]["capabilities"] == []  # JR_DBA's DBA is a role, and no role may be used
    assert snaps["AUTH_SRV"]["capabilities"] == []  # it must give JR_DBA's password too
    assert grant("proxy:JR_DBA", "CONNECT THROUGH AUTHENTICATION REQUIRED") in snaps["AUTH_SRV"]["privileges"]
    assert snaps["REPORT_SRV"]["capabilities"] == ["CREATE_USER", "GRANT_ADMIN"]  # WITH ROLE APP_ADMIN
    # who can connect through whom is in the proxy's effective access
    access = effective_access(catalog, family="oracle")
    assert any(g.scope == "proxy:JR_DBA" and g.privilege == "CONNECT THROUGH" and g.direct for g in access["APP_SRV"])


def test_a_locked_client_gives_its_proxy_nothing(recorded) -> None:
    row = next(r for r in recorded["views"]["DBA_USERS"]["rows"] if r[0] == "JR_DBA")
    row[3], row[4] = "LOCKED", "2026-11-01T00:00:00"
    snaps = snapshots(OracleAdapter().fetch(target()))
    assert snaps["APP_SRV"]["capabilities"] == []
    assert grant("proxy:JR_DBA", "CONNECT THROUGH") in snaps["APP_SRV"]["privileges"]


def test_unreadable_dba_proxies_is_a_coverage_gap(recorded) -> None:
    recorded["fail_on"]["DBA_PROXIES"] = server_error(942, "table or view does not exist")
    catalog = OracleAdapter().fetch(target())
    assert [(g.scope, g.kind) for g in catalog.coverage] == [("proxy", "unreadable")]
    assert "GRANT SELECT ON SYS.DBA_PROXIES" in catalog.coverage[0].fix
    assert catalog.coverage[0].covers("proxy:JR_DBA") and not catalog.coverage[0].covers("global")
    assert snapshots(catalog)["APP_SRV"]["privileges"] == []
    assert catalog.round_trips == len(ALL_SQL)


# --- 3. 23ai schema privileges ---------------------------------------------------------------


def test_23ai_schema_privileges_are_read(recorded) -> None:
    use(recorded, with_additions("catalog_19c.json", "catalog_23ai.json"))
    catalog = OracleAdapter().fetch(target())
    executed = recorded["conn"].cursor().executed
    assert executed[-1] == "SELECT GRANTEE, PRIVILEGE, SCHEMA, ADMIN_OPTION FROM DBA_SCHEMA_PRIVS"
    assert catalog.round_trips == len(statements((23, 5))) == 13
    assert catalog.server_version == "Oracle Database 23ai Enterprise Edition 23.5.0.24.07"
    snaps = snapshots(catalog)
    assert grant("schema:APP_OWNER", "SELECT ANY TABLE") in snaps["APP_READ"]["privileges"]
    assert grant("schema:APP_OWNER", "SELECT ANY TABLE", grantable=True) in snaps["REPORT_SRV"]["privileges"]
    ops = snaps["OPS_ADMIN"]["attributes"]["capability_reasons"]["SUPERUSER"]
    assert (
        "CREATE ANY PROCEDURE and EXECUTE ANY PROCEDURE on schema JR_DBA, a superuser's: code it creates there runs "
        "with JR_DBA's privileges"
    ) in ops
    # a role given CREATE ANY TRIGGER on a superuser's schema passes it on
    assert "SUPERUSER" in snaps["APP_WRITE"]["capabilities"]
    assert "SUPERUSER" in snaps["APP_OWNER"]["capabilities"]  # APP_ADMIN -> APP_WRITE
    assert any(
        r.startswith("via role APP_ADMIN → APP_WRITE (CREATE ANY TRIGGER on schema JR_DBA")
        for r in snaps["APP_OWNER"]["attributes"]["capability_reasons"]["SUPERUSER"]
    )


def test_schema_privileges_are_not_asked_of_older_releases(recorded) -> None:
    OracleAdapter().fetch(target())
    assert not any("DBA_SCHEMA_PRIVS" in sql for sql in recorded["conn"].cursor().executed)


def test_unreadable_dba_schema_privs_is_a_coverage_gap(recorded) -> None:
    use(recorded, with_additions("catalog_19c.json", "catalog_23ai.json"))
    recorded["fail_on"]["DBA_SCHEMA_PRIVS"] = server_error(1031, "insufficient privileges")
    catalog = OracleAdapter().fetch(target())
    assert [(g.scope, g.kind) for g in catalog.coverage] == [("schema", "unreadable")]
    assert catalog.coverage[0].covers("schema:APP_OWNER")


# --- 6. containers ------------------------------------------------------------------------------


def test_connected_to_the_root_container_says_so_and_names_each_pdb(recorded) -> None:
    """A common user without CONTAINER_DATA: the CDB_ views return the root's rows only, so every PDB is a gap."""
    use(recorded, from_root(FIXTURE, container_data=False))
    catalog = OracleAdapter().fetch(target(database_name="ORCLCDB"))
    assert catalog.details["container"] == "CDB$ROOT"
    assert catalog.details["pdbs_read"] == []
    assert catalog.details["pdbs_not_read"] == ["ORCLPDB1", "SALESPDB"]  # not PDB$SEED, a template
    gaps = {g.scope: g for g in catalog.coverage}
    assert sorted(gaps) == ["container:ORCLPDB1", "container:SALESPDB"]
    assert gaps["container:SALESPDB"].kind == "unreadable"
    assert "PDB SALESPDB is MOUNTED, not open" in gaps["container:SALESPDB"].reason
    assert "ALTER PLUGGABLE DATABASE SALESPDB OPEN" in gaps["container:SALESPDB"].fix
    assert "CONTAINER_DATA does not include it" in gaps["container:ORCLPDB1"].reason
    assert gaps["container:ORCLPDB1"].fix.startswith(
        "register PDB ORCLPDB1 as its own instance, with its service name as the database name"
    )
    assert "SET CONTAINER_DATA = (CDB$ROOT, ORCLPDB1) CONTAINER = CURRENT" in gaps["container:ORCLPDB1"].fix
    assert not any("::" in a.identity for a in catalog.accounts)  # the root's accounts only, by their names
    assert {"SYS", "C##AUDITOR", "C##WHALEFALL", "PUBLIC"} <= {a.identity for a in catalog.accounts}
    scopes = {p["scope"] for s in snapshots(catalog).values() for p in s["privileges"]}
    assert not any(g.covers(scope) for g in catalog.coverage for scope in scopes)  # no grant is held back


def test_with_container_data_the_root_reads_each_open_pdb_through_the_cdb_views(recorded) -> None:
    use(recorded, from_root(FIXTURE))
    catalog = OracleAdapter().fetch(target(database_name="ORCLCDB"))
    sent = " ".join(recorded["conn"].cursor().executed)
    assert "FROM CDB_USERS" in sent and "FROM DBA_USERS" not in sent and "CON_ID FROM V$PWFILE_USERS" in sent
    assert catalog.details["pdbs_read"] == ["ORCLPDB1"] and catalog.details["pdbs_not_read"] == ["SALESPDB"]
    assert [g.scope for g in catalog.coverage] == ["container:SALESPDB"]  # MOUNTED: no view shows it
    by = {a.identity: a for a in catalog.accounts}
    # a common user is one account per container it exists in; a PDB's local user is an account of that PDB
    assert "C##AUDITOR" in by and "ORCLPDB1::C##AUDITOR" in by and "APP_OWNER" not in by
    local = by["ORCLPDB1::APP_OWNER"]
    assert local.username == "APP_OWNER" and local.attributes["container"] == "ORCLPDB1"
    assert not local.attributes["common"] and "container" not in by["C##AUDITOR"].attributes
    auditor = by["ORCLPDB1::C##AUDITOR"]
    assert auditor.attributes["common"] is True
    # granted commonly (from the root, CONTAINER=ALL) or locally (in ORCLPDB1 only): COMMON kept
    assert auditor.attributes["common_grants"] == ["ROLE C##AUDIT_ROLE"]
    assert ("global", "SELECT ANY TABLE") in {(p.scope, p.privilege) for p in auditor.privileges}
    assert "SELECT ANY TABLE" not in {p.privilege for p in by["C##AUDITOR"].privileges}
    # roles resolve inside their own container: JR_DBA holds ORCLPDB1's DBA
    jr = by["ORCLPDB1::JR_DBA"]
    assert {r.role for r in jr.roles} == {"ORCLPDB1::DBA", "ORCLPDB1::CONNECT"} and jr.is_superuser
    assert by["ORCLPDB1::PUBLIC"].attributes["pseudo_role"] is True
    assert catalog.details["container_public_grants"]["ORCLPDB1"]["oracle_defaults"] == 3
    assert catalog.details["public_grants"]["oracle_defaults"] == 2  # the root's own PUBLIC
    # the password file is CDB-wide (CON_ID 0): SYSDBA holds for SYS in every container
    assert ("global", "SYSDBA") in {(p.scope, p.privilege) for p in by["ORCLPDB1::SYS"].privileges}
    assert ("global", "SYSDBA") in {(p.scope, p.privilege) for p in by["SYS"].privileges}
    # the engine knows which accounts live inside a PDB (kept whole while it cannot be read)
    assert catalog.account_scope(local.identity, local.kind, local.attributes) == "container:ORCLPDB1"
    assert catalog.account_scope("C##AUDITOR", "user", by["C##AUDITOR"].attributes) is None


def test_a_root_whose_cdb_views_are_not_readable_falls_back_to_the_root_alone(recorded) -> None:
    use(recorded, from_root(FIXTURE))
    recorded["fail_on"]["CDB_USERS"] = server_error(942, "table or view does not exist")
    catalog = OracleAdapter().fetch(target(database_name="ORCLCDB"))
    assert catalog.details["unreadable_views"] == {"cdb_views": "ORA-00942"}
    gaps = {g.scope: g for g in catalog.coverage}
    assert sorted(gaps) == ["container:ORCLPDB1", "container:SALESPDB"]
    assert "cannot read the CDB_ views (ORA-00942)" in gaps["container:ORCLPDB1"].reason
    assert not any("::" in a.identity for a in catalog.accounts)


def test_non_cdb_and_unreadable_containers(recorded) -> None:
    recorded["views"]["V$CONTAINERS"]["rows"] = [[0, 1, 1, "X", "ORCL", "READ WRITE", "NO", None]]
    assert OracleAdapter().fetch(target()).details["container"] is None
    recorded["fail_on"]["V$CONTAINERS"] = server_error(942, "table or view does not exist")
    catalog = OracleAdapter().fetch(target())
    assert catalog.details["container"] is None
    assert catalog.details["unreadable_views"] == {"containers": "ORA-00942"}


# --- 7. versions ---------------------------------------------------------------------------------


def test_12c_release_1_works_without_the_later_columns(recorded) -> None:
    use(recorded, load("catalog_12c.json"))
    catalog = OracleAdapter().fetch(target())
    executed = recorded["conn"].cursor().executed
    assert executed[0] == "SELECT PRODUCT, VERSION FROM PRODUCT_COMPONENT_VERSION"
    assert "SELECT USERNAME, SYSDBA, SYSOPER, SYSASM, SYSBACKUP, SYSDG, SYSKM FROM V$PWFILE_USERS" in executed
    assert catalog.round_trips == len(ALL_SQL)
    assert catalog.server_version == "Oracle Database 12c Enterprise Edition 12.1.0.2.0"
    snaps = snapshots(catalog)
    assert snaps["JR_DBA"]["capabilities"] == ["CREATE_USER", "GRANT_ADMIN", "SUPERUSER"]
    assert snaps["STALE_OPEN"]["attributes"]["account_status_now"] == "EXPIRED"
    assert snaps["APP_SRV"]["capabilities"] == ["CREATE_USER", "GRANT_ADMIN", "SUPERUSER"]
    # before 12.2 the password file keeps no login times: an administrator's last login may be missing
    assert snaps["SYS"]["attributes"]["last_login_partial"] is True
    assert snaps["SYS"]["attributes"]["last_login"] == "2026-11-20"
    assert "last_login_partial" not in snaps["JR_DBA"]["attributes"]


def test_the_19c_statements_fail_on_12c_as_the_server_would() -> None:
    """Why 12c gets its own statements: the 12.1 views lack columns the 19c ones have."""
    old = load("catalog_12c.json")
    for sql in ("SELECT PRODUCT, VERSION, VERSION_FULL FROM PRODUCT_COMPONENT_VERSION", ALL_SQL[9]):
        with pytest.raises(ValueError):
            answer(old, sql)


def test_a_missing_column_is_a_configuration_error_naming_the_release(recorded) -> None:
    err = ora_errors._Error('ORA-00904: "ORACLE_MAINTAINED": invalid identifier', code=904)
    recorded["fail_on"]["DBA_USERS"] = err.exc_type(err)
    with pytest.raises(ConfigurationError) as info:
        OracleAdapter().fetch(target())
    assert "WhaleFall reads Oracle Database 12.1.0.2 and later" in str(info.value)
    assert "ORA-00904" in str(info.value)


# --- 9. last login --------------------------------------------------------------------------------


def test_last_login_at_day_precision_does_not_churn(recorded) -> None:
    first = snapshots(OracleAdapter().fetch(target()))
    assert first["C##AUDITOR"]["attributes"]["last_login"] == "2026-09-01"
    assert first["SYS"]["attributes"]["last_login"] == "2026-11-22"  # an AS SYSDBA login, from V$PWFILE_USERS
    assert first["DBSNMP"]["attributes"]["last_login"] is None
    for row in recorded["views"]["DBA_USERS"]["rows"]:
        if row[18] == "2026-11-20T07:00:00.123456+00:00":
            row[18] = "2026-11-20T18:45:10.000000+00:00"  # logged in again the same day
    assert snapshots(OracleAdapter().fetch(target())) == first


# --- 10. PUBLIC ------------------------------------------------------------------------------------


def test_public_defaults_once_in_the_details_and_the_rest_in_the_public_account(recorded) -> None:
    catalog = OracleAdapter().fetch(target())
    details = catalog.details["public_grants"]
    assert details["oracle_defaults"] == 3
    assert details["privileges"] == [
        grant("object:APP_OWNER.PRICES", "SELECT"),
        grant("object:SYS.ALL_USERS", "READ"),
        grant("object:SYS.DBMS_LOB", "EXECUTE"),
        grant("object:SYS.DBMS_OUTPUT", "EXECUTE"),
        grant("object:SYS.ETL_DIR", "READ"),
    ]
    assert details["roles"] == [role("APP_READ")] and details["capabilities"] == []
    public = snapshots(catalog)["PUBLIC"]
    # beyond Oracle's defaults only: an application table, and a directory (always SYS's, whoever made it)
    assert public["privileges"] == [grant("object:APP_OWNER.PRICES", "SELECT"), grant("object:SYS.ETL_DIR", "READ")]
    assert public["roles"] == [role("APP_READ")]
    assert public["attributes"]["pseudo_role"] is True
    for snap in snapshots(catalog).values():  # no account carries PUBLIC's grants
        assert grant("object:SYS.DBMS_OUTPUT", "EXECUTE") not in snap["privileges"]


# --- SQL checked with sqlglot -----------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "release"),
    [("catalog_12c.json", (12, 1)), ("catalog_19c.json", (19, 21)), ("catalog_23ai", (23, 5))],
)
def test_every_statement_parses_as_oracle_and_names_real_columns(fixture: str, release: tuple[int, int]) -> None:
    views = with_additions()["views"] if fixture == "catalog_23ai" else load(fixture)["views"]
    for read in statements(release):
        view, columns = parse_select(read.sql)
        recorded = views[view]["columns"]
        assert columns and set(columns) <= set(recorded), (read.sql, set(columns) - set(recorded))


def test_the_sql_check_can_fail() -> None:
    with pytest.raises(sqlglot.errors.ParseError):
        parse_select("SELECT (GRANTEE FROM DBA_SYS_PRIVS")
    with pytest.raises(AssertionError):
        parse_select("SELECT COUNT(*) FROM DBA_USERS")


def test_recorded_rows_as_the_helpers_give_them_to_build_catalog() -> None:
    catalog = build_catalog(rows_of(FIXTURE))
    assert len(catalog.accounts) == 35 and catalog.details["status_as_of"] == "2026-11-23T09:00:00"


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
    assert len(catalog.accounts) == n + 4  # the roles DBA, R_READ, R_WRITE and PUBLIC
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
    assert sum(a.is_superuser for a in catalog.accounts) == 101  # and the role DBA


# --- errors: real driver, real sockets ----------------------------------------------------
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


@pytest.mark.timeout(60)  # the only limit on time: a connect that never gives up fails here
def test_silent_listener_is_timeout_within_the_limit(silent_listener: int) -> None:
    before = set(threading.enumerate())
    with pytest.raises(TimeoutFailed) as info:
        OracleAdapter().fetch(target(port=silent_listener, connect_timeout=1.0))
    assert "within 1s" in str(info.value) and str(info.value).startswith("ora-prod: ")
    # what ended the wait: the adapter's bound on the whole connect (its message carries no driver text),
    # not a driver error: the driver's attempt, which has no overall timeout, is still waiting, abandoned
    # (and the adapter's join() on it returns before its bound only when the attempt has ended)
    assert "within 1s while trying to connect; check that" in str(info.value), str(info.value)
    abandoned = [t for t in threading.enumerate() if t.name == "oracle-connect-ora-prod" and t not in before]
    assert len(abandoned) == 1, "the driver's connect attempt should still be waiting on the silent port"


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


# --- 7, 8. what thin mode cannot do, from the real driver --------------------------------------


def answering_listener(packet: bytes, tls: tuple[str, str] | None = None) -> int:
    """A listener that reads the connect packet (over TLS when `tls` = (cert, key)) and answers `packet`."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def run() -> None:
        conn, _ = server.accept()
        try:
            if tls is not None:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(private_file(tls[0]), private_file(tls[1]))
                try:
                    conn = context.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    return  # the client refused our certificate
            conn.settimeout(5)
            conn.recv(65536)
            conn.sendall(packet)
            time.sleep(0.3)
        except OSError:
            pass
        finally:
            conn.close()
            server.close()

    threading.Thread(target=run, daemon=True).start()
    return server.getsockname()[1]


def accept_packet(protocol_version: int, nsi_flags: int) -> bytes:
    """A TNS ACCEPT as a listener sends it: protocol version, options, then the NSI flags (NA required: 0x10)."""
    body = struct.pack(">HH", protocol_version, 0) + bytes(10) + bytes([nsi_flags]) + bytes(9)
    body += struct.pack(">I", 8192) + bytes(5) + struct.pack(">I", 0)
    return struct.pack(">HHBBH", 8 + len(body), 0, 2, 0, 0) + body


def refuse_packet(error_code: int) -> bytes:
    data = f"(DESCRIPTION=(TMP=)(VSNNUM=0)(ERR={error_code})(ERROR_STACK=(ERROR=(CODE={error_code}))))"
    body = bytes([0x22, 0x00]) + struct.pack(">H", len(data)) + data.encode()
    return struct.pack(">HHBBH", 8 + len(body), 0, 4, 0, 0) + body


def test_native_network_encryption_required_names_the_fix() -> None:
    port = answering_listener(accept_packet(319, 0x10))
    with pytest.raises(ConfigurationError) as info:
        OracleAdapter().test_connection(target(port=port))
    message = str(info.value)
    assert "DPY-3001" in message and "requires Oracle native network encryption" in message
    assert "a TCPS listener and the instance's tls option" in message and "SQLNET.ENCRYPTION_SERVER" in message
    assert PASSWORD not in message


def test_a_server_older_than_12_1_is_refused_as_configuration() -> None:
    port = answering_listener(accept_packet(314, 0))  # below thin mode's oldest protocol version (12.1)
    with pytest.raises(ConfigurationError) as info:
        OracleAdapter().test_connection(target(port=port))
    assert "DPY-3010" in str(info.value) and "older than Oracle Database 12.1" in str(info.value)


def test_a_10g_verifier_names_the_fix() -> None:
    exc = ora_errors._create_exception(ora_errors.ERR_UNSUPPORTED_VERIFIER_TYPE, verifier_type=0x939)
    classified = classify_error(exc, target(), phase="connect")
    assert isinstance(classified, ConfigurationError)
    assert "DPY-3015" in str(classified) and "SQLNET.ALLOWED_LOGON_VERSION_SERVER" in str(classified)
    assert "reset the account's password" in str(classified)


@pytest.fixture(scope="module")
def pki():
    from tests.live.tlsservers import make_pki

    return make_pki()


def tcps(mode: str, ca: str = "") -> TlsSettings:
    return TlsSettings(mode=mode, ca_pem=ca)


def test_tcps_with_the_right_ca_reaches_the_listener(pki) -> None:
    port = answering_listener(refuse_packet(12514), tls=(pki.server_cert_pem, pki.server_key_pem))
    with pytest.raises(ConfigurationError) as info:  # the listener answers, over TLS: the service is unknown
        OracleAdapter().test_connection(target(port=port, tls_settings=tcps("verify-full", pki.ca_pem)))
    assert "does not know service 'ORCLPDB1'" in str(info.value)


def test_tcps_with_another_ca_is_not_verified(pki) -> None:
    port = answering_listener(refuse_packet(12514), tls=(pki.server_cert_pem, pki.server_key_pem))
    with pytest.raises(ConfigurationError) as info:
        OracleAdapter().test_connection(target(port=port, tls_settings=tcps("verify-ca", pki.other_ca_pem)))
    assert "could not be verified" in str(info.value) and "CERTIFICATE_VERIFY_FAILED" in str(info.value)


def test_tcps_certificate_for_another_name_is_not_verified(pki) -> None:
    """DPY-6006 is thin mode's host-name check: a configuration error, never a timeout."""
    port = answering_listener(refuse_packet(12514), tls=(pki.misnamed_cert_pem, pki.misnamed_key_pem))
    with pytest.raises(ConfigurationError) as info:
        OracleAdapter().test_connection(target(port=port, tls_settings=tcps("verify-full", pki.ca_pem)))
    assert "DPY-6006" in str(info.value) and "could not be verified" in str(info.value)
    # verify-ca checks the chain only: the same certificate is accepted
    port = answering_listener(refuse_packet(12514), tls=(pki.misnamed_cert_pem, pki.misnamed_key_pem))
    with pytest.raises(ConfigurationError, match="does not know service"):
        OracleAdapter().test_connection(target(port=port, tls_settings=tcps("verify-ca", pki.ca_pem)))


def test_tcps_against_a_plain_tcp_port_names_the_tcps_port() -> None:
    port = answering_listener(refuse_packet(12514))
    with pytest.raises(ConfigurationError) as info:
        OracleAdapter().test_connection(target(port=port, tls_settings=tcps("require")))
    assert "TLS handshake" in str(info.value) and "TCPS port" in str(info.value)
