"""Each rule on snapshots built by the real adapters' pure `build_catalog` functions.

Why through the adapters: the rules read capabilities and attributes the
adapters derive (NO_PASSWORD only for password plugins, inheritance through
roles, SQL Server orphans), so building snapshots the way a sync does tests the
contract between the two, not a hand-written guess of it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from accountsync.adapters import mysql, oracle, postgresql, sqlserver
from accountsync.adapters.base import Catalog
from findings.models import SeverityChoices
from findings.rules import EVALUATED_CODES, RULES, RULES_BY_CODE, Policy, Subject, evaluate, policy_from_settings

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = Policy()
STRICT = Policy(require_password_expiry=True)


def findings_of(catalog: Catalog, db_type: str, policy: Policy = DEFAULT, context: dict[str, Any] | None = None):
    """{identity: {code: severity}} for every account of a finalized catalog."""
    out: dict[str, dict[str, str]] = {}
    for acc in catalog.accounts:
        subject = Subject.build(
            db_type=db_type,
            identity=acc.identity,
            username=acc.username,
            kind=acc.kind,
            snapshot=json.loads(json.dumps(acc.snapshot())),
            host=acc.host,
            context=context,
        )
        out[acc.identity] = {code: severity for code, (severity, _detail) in evaluate(subject, policy).items()}
    return out


def detail_of(catalog: Catalog, db_type: str, identity: str, code: str, policy: Policy = DEFAULT) -> dict[str, Any]:
    acc = next(a for a in catalog.accounts if a.identity == identity)
    subject = Subject.build(
        db_type=db_type,
        identity=acc.identity,
        username=acc.username,
        kind=acc.kind,
        snapshot=acc.snapshot(),
        host=acc.host,
    )
    return evaluate(subject, policy)[code][1]


# --- MariaDB rows (mysql.global_priv) ---------------------------------------------------

MARIADB = mysql.ServerInfo(flavor="mariadb", version=(10, 11, 6), version_string="10.11.6-MariaDB")
ALL_ACCESS = sum(1 << bit for bit, _name, _since in mysql._MARIADB_ACCESS_BITS)


def user_row(
    user: str, host: str, *, access: int = 0, plugin: str = "mysql_native_password", empty: bool = False, **priv: Any
) -> dict[str, Any]:
    body = {"access": access, "plugin": plugin, **priv}
    return {"User": user, "Host": host, "Priv": json.dumps(body), "auth_empty": int(empty)}


def mariadb(*users: dict[str, Any], db: list[dict[str, Any]] | None = None) -> Catalog:
    rows = mysql.MySQLRows(users=list(users), db=db or [])
    return mysql.build_catalog(MARIADB, rows).finalize()


DB_PRIV_COLUMNS = (
    "Select",
    "Insert",
    "Update",
    "Delete",
    "Create",
    "Drop",
    "References",
    "Index",
    "Alter",
    "Create_tmp_table",
    "Lock_tables",
    "Create_view",
    "Show_view",
    "Create_routine",
    "Alter_routine",
    "Execute",
    "Event",
    "Trigger",
    "Delete_history",
)


def db_row(user: str, host: str, db: str, *, grant: bool = False, **privs: str) -> dict[str, Any]:
    """A mysql.db row as MariaDB 10.11 has it: every `<Stem>_priv` column, 'N' unless given."""
    columns = {f"{stem}_priv": "N" for stem in DB_PRIV_COLUMNS}
    return {"User": user, "Host": host, "Db": db, **columns, "Grant_priv": "Y" if grant else "N", **privs}


def test_empty_password_is_critical_and_plugin_aware():
    cat = mariadb(
        user_row("app", "10.0.0.5", empty=True),
        user_row("sock", "localhost", plugin="unix_socket", empty=True),
        user_row("either", "localhost", empty=True, auth_or=[{}, {"plugin": "unix_socket"}]),
        user_row("pwd", "localhost", empty=False),
        user_row("locked", "localhost", empty=True, account_locked=True),
    )
    got = findings_of(cat, "mysql")
    assert got["'app'@'10.0.0.5'"] == {"EMPTY_PASSWORD": "critical"}
    assert got["'sock'@'localhost'"] == {}  # unix_socket: the OS vouches, not a password
    # unix_socket OR an empty native password: the password alternative is open
    assert got["'either'@'localhost'"] == {"EMPTY_PASSWORD": "critical"}
    assert got["'pwd'@'localhost'"] == {}
    assert got["'locked'@'localhost'"] == {}  # cannot log in while locked


def test_superuser_and_locked_privileged_partition_on_the_lock():
    cat = mariadb(
        user_row("dba", "localhost", access=ALL_ACCESS),
        user_row("sup", "localhost", access=1 << 15),
        user_row("old_dba", "localhost", access=ALL_ACCESS, account_locked=True),
        user_row("reader", "localhost", access=1),
    )
    got = findings_of(cat, "mysql")
    assert got["'dba'@'localhost'"] == {"SUPERUSER": "high"}
    assert got["'sup'@'localhost'"] == {"SUPERUSER": "high"}
    assert got["'old_dba'@'localhost'"] == {"LOCKED_PRIVILEGED": "low"}
    assert detail_of(cat, "mysql", "'old_dba'@'localhost'", "LOCKED_PRIVILEGED") == {
        "capabilities": ["CREATE_USER", "SUPERUSER"]
    }
    assert got["'reader'@'localhost'"] == {}


def test_superuser_through_a_role_is_reported_on_the_member_not_the_role():
    cat = mysql.build_catalog(
        MARIADB,
        mysql.MySQLRows(
            users=[user_row("admins", "", access=ALL_ACCESS, is_role=True), user_row("ann", "localhost")],
            roles_mapping=[{"User": "ann", "Host": "localhost", "Role": "admins", "Admin_option": "N"}],
        ),
    ).finalize()
    got = findings_of(cat, "mysql")
    assert got["'ann'@'localhost'"] == {"SUPERUSER": "high"}
    assert got["'admins'"] == {}


def test_grant_option_lists_what_can_be_granted_and_skips_superusers():
    cat = mariadb(
        user_row("lead", "localhost"),
        user_row("dba", "localhost", access=ALL_ACCESS | mysql.GRANT_BIT),
        user_row("plain", "localhost"),
        db=[
            db_row("lead", "localhost", "sales", grant=True, Select_priv="Y", Insert_priv="Y"),
            db_row("plain", "localhost", "sales", Select_priv="Y"),
        ],
    )
    got = findings_of(cat, "mysql")
    assert got["'lead'@'localhost'"] == {"GRANT_OPTION": "medium"}
    assert detail_of(cat, "mysql", "'lead'@'localhost'", "GRANT_OPTION") == {
        "grantable": {"count": 2, "examples": ["INSERT on database:sales", "SELECT on database:sales"]},
        "admin_roles": [],
    }
    assert got["'dba'@'localhost'"] == {"SUPERUSER": "high"}  # no second finding for the same power
    assert got["'plain'@'localhost'"] == {}


def test_wildcard_host_and_anonymous_account():
    cat = mariadb(
        user_row("app", "10.0.%"),
        user_row("app", "db\\_host"),  # escaped underscore: one literal host
        user_row("", "build.example"),
        user_row("any", ""),
    )
    got = findings_of(cat, "mysql")
    assert got["'app'@'10.0.%'"] == {"WILDCARD_HOST": "medium"}
    assert got["'app'@'db\\\\_host'"] == {}
    assert got["''@'build.example'"] == {"ANONYMOUS": "high"}
    assert got["'any'@''"] == {"WILDCARD_HOST": "medium"}
    assert detail_of(cat, "mysql", "'app'@'10.0.%'", "WILDCARD_HOST") == {"host": "10.0.%"}


def test_public_grants_on_mariadb_public_role():
    granted = mariadb(user_row("PUBLIC", "", is_role=True), db=[db_row("PUBLIC", "", "hr", Select_priv="Y")])
    assert findings_of(granted, "mysql")["'PUBLIC'"] == {"PUBLIC_GRANTS": "high"}
    assert detail_of(granted, "mysql", "'PUBLIC'", "PUBLIC_GRANTS")["privileges"]["examples"] == [
        "SELECT on database:hr"
    ]
    revoked = mariadb(user_row("PUBLIC", "", is_role=True))
    assert findings_of(revoked, "mysql")["'PUBLIC'"] == {}


def test_mysql_password_expiry_rules_follow_policy():
    cat = mariadb(
        user_row("never", "localhost", password_lifetime=0),
        user_row("default", "localhost"),
        user_row("rotated", "localhost", password_lifetime=90),
        user_row("expired", "localhost", password_last_changed=0),
        user_row("sock", "localhost", plugin="unix_socket", password_lifetime=0),
    )
    assert findings_of(cat, "mysql", DEFAULT)["'never'@'localhost'"] == {}  # policy off by default
    strict = findings_of(cat, "mysql", STRICT)
    assert strict["'never'@'localhost'"] == {"PASSWORD_NEVER_EXPIRES": "low"}
    assert strict["'default'@'localhost'"] == {}  # server default unknown: not assumed
    assert strict["'rotated'@'localhost'"] == {}
    assert strict["'sock'@'localhost'"] == {}  # no password to expire
    assert strict["'expired'@'localhost'"] == {"PASSWORD_EXPIRED": "low"}
    with_default = findings_of(cat, "mysql", STRICT, context={"default_password_lifetime": 0})
    assert with_default["'default'@'localhost'"] == {"PASSWORD_NEVER_EXPIRES": "low"}
    quiet = findings_of(cat, "mysql", Policy(report_expired_passwords=False))
    assert quiet["'expired'@'localhost'"] == {}


# --- PostgreSQL rows ------------------------------------------------------------------------

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def pg_role(
    oid: int,
    name: str,
    *,
    sup: bool = False,
    login: bool = True,
    createrole: bool = False,
    valid_until: datetime | None = None,
) -> tuple[Any, ...]:
    return (oid, name, sup, True, createrole, False, login, False, False, -1, valid_until)


def postgres(roles: list[tuple[Any, ...]], *, members=(), passwords: dict[int, bool] | None = None) -> Catalog:
    rows = postgresql.ServerRows(
        version="15.6", version_num=150006, roles=roles, members=list(members), databases=[], passwords=passwords
    )
    return postgresql.build_catalog(rows, now=NOW)


def test_postgresql_rules():
    cat = postgres(
        [
            pg_role(10, "postgres", sup=True),
            pg_role(20, "app"),
            pg_role(30, "old", valid_until=datetime(2020, 1, 1, tzinfo=UTC)),
            pg_role(40, "rotated", valid_until=datetime(2027, 1, 1, tzinfo=UTC)),
            pg_role(50, "forever", valid_until=datetime(9999, 12, 31, tzinfo=UTC)),
            pg_role(60, "admins", login=False, sup=True),
            pg_role(70, "lead"),
            pg_role(80, "team", login=False),
        ],
        members=[(60, 20, False), (80, 70, True)],
        passwords={10: False, 20: True, 30: True, 40: True, 50: True, 60: False, 70: True, 80: False},
    )
    got = findings_of(cat, "postgresql", STRICT)
    # peer-authenticated postgres: no "empty password", only the informational rule
    assert got["postgres"] == {"SUPERUSER": "high", "PASSWORDLESS_LOGIN": "info"}
    assert got["app"] == {"SUPERUSER": "high", "PASSWORD_NEVER_EXPIRES": "low"}  # inherited from admins
    assert got["old"] == {"PASSWORD_EXPIRED": "low"}
    assert got["rotated"] == {}
    assert got["forever"] == {"PASSWORD_NEVER_EXPIRES": "low"}
    assert got["admins"] == {} and got["team"] == {}  # NOLOGIN roles act through members
    assert got["lead"] == {"GRANT_OPTION": "medium", "PASSWORD_NEVER_EXPIRES": "low"}
    assert detail_of(cat, "postgresql", "lead", "GRANT_OPTION")["admin_roles"] == ["team"]
    assert detail_of(cat, "postgresql", "forever", "PASSWORD_NEVER_EXPIRES", STRICT) == {
        "reason": "VALID UNTIL 'infinity'"
    }


# --- SQL Server recorded catalog --------------------------------------------------------------


def sqlserver_catalog(
    extra_permissions: list[dict[str, Any]] = (), extra_database_permissions: list[dict[str, Any]] = ()
) -> Catalog:
    from tests.sqlserver_recorded import recorded_rows

    rows = recorded_rows()
    rows.server_permissions = rows.server_permissions + list(extra_permissions)
    rows.database_permissions = rows.database_permissions + list(extra_database_permissions)
    return sqlserver.build_catalog(rows)


def test_sqlserver_recorded_catalog():
    got = findings_of(sqlserver_catalog(), "sqlserver", STRICT)
    assert got["sales::orphan"] == {"ORPHANED_USER": "medium"}
    assert got["sales::etl_nologin"] == {}  # WITHOUT LOGIN: cannot connect
    assert got["sa"] == {"SUPERUSER": "high", "PASSWORD_NEVER_EXPIRES": "low"}
    assert got["admin_via_role"]["SUPERUSER"] == "high"
    assert got["denied_ctrl"].get("SUPERUSER") is None  # DENY CONTROL SERVER wins
    assert got["expired_one"] == {"PASSWORD_EXPIRED": "low"}
    assert got["locked_one"] == {"LOCKED_PRIVILEGED": "low"}  # IMPERSONATE on sa, but locked
    assert got["sysadmin"] == {} and got["public"] == {}
    assert "PASSWORD_NEVER_EXPIRES" not in got["CORP\\ops"]  # Windows login: no SQL password
    # routes to sysadmin are superusers, with the route as the reason
    assert got["CORP\\ops"]["SUPERUSER"] == "high" and got["jobs"]["SUPERUSER"] == "high"
    reasons = detail_of(sqlserver_catalog(), "sqlserver", "jobs", "SUPERUSER")["reasons"]
    assert reasons == [
        "db_owner of msdb, a TRUSTWORTHY database owned by sa (a superuser): code run there as dbo "
        "(EXECUTE AS USER = 'dbo') acts on the server as sa"
    ]
    # the databases' public roles: Microsoft's own grants are no finding, a grant on a user table is
    assert got["master::public"] == {} and got["msdb::public"] == {} and got["tempdb::public"] == {}
    assert got["sales::public"] == {"PUBLIC_GRANTS": "high"}
    assert detail_of(sqlserver_catalog(), "sqlserver", "sales::public", "PUBLIC_GRANTS")["privileges"] == {
        "count": 1,
        "examples": ["SELECT on object:sales.dbo.customers"],
    }


def test_sqlserver_public_role_grants_beyond_the_defaults():
    from tests.sqlserver_recorded import recorded

    public_id = next(row["principal_id"] for row in recorded()["logins"] if row["name"] == "public")

    def perm(name: str, cls: int = 100, major: int = 0) -> dict[str, Any]:
        return {
            "class": cls,
            "class_desc": "SERVER",
            "major_id": major,
            "minor_id": 0,
            "grantee_principal_id": public_id,
            "permission_name": name,
            "state": "G",
        }

    assert findings_of(sqlserver_catalog(), "sqlserver")["public"] == {}  # VIEW ANY DATABASE, endpoint CONNECT
    risky = findings_of(sqlserver_catalog([perm("VIEW SERVER STATE")]), "sqlserver")
    assert risky["public"] == {"PUBLIC_GRANTS": "high"}


def test_sqlserver_database_public_grant_of_a_sysadmin_only_procedure():
    xp_cmdshell = {
        "database_name": "master", "class": 1, "major_id": -1016106768, "minor_id": 0, "grantee_principal_id": 0,
        "permission_name": "EXECUTE", "state": "G", "schema_name": None, "object_name": "xp_cmdshell",
        "object_schema_name": "sys", "column_name": None, "is_ms_shipped": True,
    }  # fmt: skip
    catalog = sqlserver_catalog(extra_database_permissions=[xp_cmdshell])
    assert findings_of(catalog, "sqlserver")["master::public"] == {"PUBLIC_GRANTS": "high"}
    assert detail_of(catalog, "sqlserver", "master::public", "PUBLIC_GRANTS")["privileges"]["examples"] == [
        "EXECUTE on object:master.sys.xp_cmdshell"
    ]


# --- the table and the policy ----------------------------------------------------------------


def test_rule_table_is_well_formed_and_documented():
    codes = [rule.code for rule in RULES]
    assert len(codes) == len(set(codes)) and set(codes) == EVALUATED_CODES <= set(RULES_BY_CODE)
    doc = (ROOT / "docs" / "findings.md").read_text("utf-8")
    for rule in RULES_BY_CODE.values():  # the features' rules (drift, directory) are documented there too
        assert rule.severity in SeverityChoices.values
        assert rule.title and rule.description
        assert f"| `{rule.code}` | {rule.severity} |" in doc, rule.code


def test_disabled_rules_are_not_reported():
    cat = mariadb(user_row("app", "%", empty=True))
    assert findings_of(cat, "mysql", Policy(disabled_rules=frozenset({"WILDCARD_HOST"}))) == {
        "'app'@'%'": {"EMPTY_PASSWORD": "critical"}
    }


def test_policy_from_settings_then_environment(settings, monkeypatch):
    monkeypatch.setenv("WHALEFALL_FINDINGS_REQUIRE_PASSWORD_EXPIRY", "1")
    monkeypatch.setenv("WHALEFALL_FINDINGS_DISABLED_RULES", "wildcard_host, ANONYMOUS")
    settings.WHALEFALL_FINDINGS_POLICY = None
    assert policy_from_settings() == Policy(
        require_password_expiry=True, disabled_rules=frozenset({"WILDCARD_HOST", "ANONYMOUS"})
    )
    settings.WHALEFALL_FINDINGS_POLICY = {"require_password_expiry": False, "report_expired_passwords": False}
    policy = policy_from_settings()
    assert policy.require_password_expiry is False and policy.report_expired_passwords is False


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.code)
def test_no_rule_fires_on_a_plain_account(rule):
    """A password login with one SELECT and a rotating password is clean under the strictest policy."""
    cat = mariadb(
        user_row("clean", "localhost", password_lifetime=90),
        db=[db_row("clean", "localhost", "sales", Select_priv="Y")],
    )
    assert rule.code not in findings_of(cat, "mysql", STRICT)["'clean'@'localhost'"]


# --- Oracle rows ----------------------------------------------------------------------------


def ora_user(name: str, status: str = "OPEN", *, auth: str = "PASSWORD", expiry: str | None = "2027-01-01T00:00:00"):
    return {
        "USERNAME": name,
        "ACCOUNT_STATUS": status,
        "AUTHENTICATION_TYPE": auth,
        "EXPIRY_DATE": expiry,
        "PROFILE": "DEFAULT",
        "ORACLE_MAINTAINED": "N",
        "COMMON": "NO",
    }


def test_oracle_rules_through_the_maintained_dba_role():
    rows = oracle.OracleRows(
        users=[
            ora_user("APP_DBA"),
            ora_user("OLD_DBA", "LOCKED"),
            ora_user("APP_SCHEMA", auth="NONE", expiry=None),
            ora_user("STALE", "EXPIRED"),
            ora_user("FOREVER", expiry=None),
        ],
        roles=[{"ROLE": "DBA", "AUTHENTICATION_TYPE": "NONE", "ORACLE_MAINTAINED": "Y"}],
        role_privs=[
            {"GRANTEE": grantee, "GRANTED_ROLE": "DBA", "ADMIN_OPTION": "NO", "DEFAULT_ROLE": "YES"}
            for grantee in ("APP_DBA", "OLD_DBA", "APP_SCHEMA")
        ],
    )
    got = findings_of(oracle.build_catalog(rows), "oracle", STRICT)
    assert got["APP_DBA"] == {"SUPERUSER": "high"}
    assert got["DBA"] == {} and got["PUBLIC"] == {}  # a role, and PUBLIC holding nothing beyond the defaults
    hidden = findings_of(oracle.build_catalog(rows, include_oracle_maintained=False), "oracle", STRICT)
    assert hidden["APP_DBA"] == {"SUPERUSER": "high"}  # DBA left out as maintained, its power is kept
    assert got["OLD_DBA"] == {"LOCKED_PRIVILEGED": "low"}
    assert got["APP_SCHEMA"] == {}  # schema-only: cannot log in at all
    assert got["STALE"] == {"PASSWORD_EXPIRED": "low"}
    assert got["FOREVER"] == {"PASSWORD_NEVER_EXPIRES": "low"}


def oracle_recorded() -> Catalog:
    from tests.accountsync.oracle_rows import load, rows_of

    return oracle.build_catalog(rows_of(load("catalog_19c.json")))


ORACLE_TODAY = {"today": "2026-11-23"}  # the recorded server's day


def test_oracle_dormant_privileged_accounts():
    catalog = oracle_recorded()
    got = findings_of(catalog, "oracle", context=ORACLE_TODAY)
    # DEV_DEPLOY (SUPERUSER by CREATE ANY PROCEDURE + EXECUTE ANY PROCEDURE) last logged in 2025-12-01
    assert got["DEV_DEPLOY"] == {"SUPERUSER": "high", "DORMANT_PRIVILEGED": "medium"}
    acc = next(a for a in catalog.accounts if a.identity == "DEV_DEPLOY")
    subject = Subject.build(
        db_type="oracle", identity=acc.identity, username=acc.username, kind=acc.kind, snapshot=acc.snapshot(),
        context=ORACLE_TODAY,
    )  # fmt: skip
    assert evaluate(subject, DEFAULT)["DORMANT_PRIVILEGED"][1] == {
        "last_login": "2025-12-01",
        "no_login_since": "2025-12-01",
        "dormant_days": 90,
        "capabilities": ["SUPERUSER"],
    }
    # logged in three days ago, or holding nothing privileged, or unable to log in: not dormant
    assert "DORMANT_PRIVILEGED" not in got["JR_DBA"]
    assert "DORMANT_PRIVILEGED" not in got["OPERATOR1"]  # never logged in, but SYSOPER gives SHUTDOWN only
    assert "DORMANT_PRIVILEGED" not in got["DBSNMP"]  # locked
    # the threshold is the policy's; 0 turns the rule off
    for policy in (Policy(dormant_days=400), Policy(dormant_days=0)):
        assert "DORMANT_PRIVILEGED" not in findings_of(catalog, "oracle", policy, ORACLE_TODAY)["DEV_DEPLOY"]
    # the same login day is dormant once enough days have passed
    assert findings_of(catalog, "oracle", Policy(dormant_days=30), {"today": "2027-01-01"})["APP_SRV"] == {
        "SUPERUSER": "high",
        "DORMANT_PRIVILEGED": "medium",
    }


def test_oracle_dormancy_without_a_recorded_login_time():
    from tests.accountsync.oracle_rows import clock, sys_priv, user_row

    rows = oracle.OracleRows(
        release=(12, 1),
        clock=clock(datetime(2026, 11, 23)),
        users=[
            user_row("NEVER", LAST_LOGIN=None, CREATED=datetime(2025, 1, 1)),
            user_row("ADMIN121", LAST_LOGIN=None, CREATED=datetime(2025, 1, 1)),
        ],
        sys_privs=[sys_priv("NEVER", "CREATE USER"), sys_priv("ADMIN121", "CREATE USER")],
        pwfile=[{"USERNAME": "ADMIN121", "SYSDBA": "TRUE"}],
    )
    got = findings_of(oracle.build_catalog(rows), "oracle", context=ORACLE_TODAY)
    assert got["NEVER"] == {"DORMANT_PRIVILEGED": "medium"}
    assert got["ADMIN121"] == {"SUPERUSER": "high"}  # 12.1 keeps no AS SYSDBA login time: not judged


def test_dormant_days_from_settings_then_environment(settings, monkeypatch):
    settings.WHALEFALL_FINDINGS_POLICY = None
    assert policy_from_settings().dormant_days == 90
    monkeypatch.setenv("WHALEFALL_FINDINGS_DORMANT_DAYS", "30")
    assert policy_from_settings().dormant_days == 30
    monkeypatch.setenv("WHALEFALL_FINDINGS_DORMANT_DAYS", "soon")
    assert policy_from_settings().dormant_days == 90
    settings.WHALEFALL_FINDINGS_POLICY = {"dormant_days": 180}
    assert policy_from_settings().dormant_days == 180


def test_oracle_escalation_routes_and_proxies_are_superuser_findings_with_their_reason():
    catalog = oracle_recorded()
    got = findings_of(catalog, "oracle", context=ORACLE_TODAY)
    assert got["APP_SRV"] == {"SUPERUSER": "high"}  # a proxy into JR_DBA, a DBA
    assert got["NOROLE_SRV"] == {} and got["AUTH_SRV"] == {}
    assert got["SPLIT_DEV"] == {"SUPERUSER": "high"}
    assert detail_of(catalog, "oracle", "APP_SRV", "SUPERUSER")["reasons"] == [
        "proxy for JR_DBA (CONNECT THROUGH): may connect as JR_DBA without its password, and JR_DBA holds SUPERUSER"
    ]
    # status as of now: STALE_OPEN's password has expired though ACCOUNT_STATUS still says OPEN
    assert got["STALE_OPEN"] == {"PASSWORD_EXPIRED": "low"}


def test_oracle_public_grants_beyond_the_defaults():
    catalog = oracle_recorded()
    assert findings_of(catalog, "oracle")["PUBLIC"] == {"PUBLIC_GRANTS": "high"}
    assert detail_of(catalog, "oracle", "PUBLIC", "PUBLIC_GRANTS") == {
        "privileges": {"count": 2, "examples": ["SELECT on object:APP_OWNER.PRICES", "READ on object:SYS.ETL_DIR"]},
        "roles": ["APP_READ"],
    }


def test_postgresql_public_pseudo_role_reports_grants_beyond_the_defaults():
    def catalog(*relations: tuple[Any, ...]) -> Catalog:
        rows = postgresql.ServerRows(
            version="15.6",
            version_num=150006,
            roles=[pg_role(10, "postgres", sup=True)],
            members=[],
            databases=[("app", True, False, 0, "CONNECT", False, 10), ("app", True, False, 0, "TEMPORARY", False, 10)],
        )
        rows.per_database = [
            postgresql.DatabaseRows(name="app", schemas=[("public", 0, "USAGE", False, 10)], relations=list(relations))
        ]
        return postgresql.build_catalog(rows, now=NOW)

    defaults_only = catalog()
    assert "public" in {a.identity for a in defaults_only.accounts}  # PUBLIC is audited as a pseudo-role
    assert findings_of(defaults_only, "postgresql")["public"] == {}  # CONNECT/TEMPORARY/USAGE are the defaults
    granted = catalog(("public", "salaries", 0, "SELECT", False, 10))
    assert findings_of(granted, "postgresql")["public"] == {"PUBLIC_GRANTS": "high"}
    assert detail_of(granted, "postgresql", "public", "PUBLIC_GRANTS")["privileges"]["examples"] == [
        "SELECT on object:app.public.salaries"
    ]
