"""The exact picture, built from recorded rows: coverage gaps, escalation routes, odd values, expiry by age.

Issue #16 for MySQL/MariaDB. Every test here feeds rows shaped like the grant tables through
`read_rows`/`build_catalog` (or the whole `fetch` over a fake connection), so it runs without a
server; tests/live/test_mysql_exact.py proves the same against the live MariaDB.
"""

from __future__ import annotations

import copy
import json
import math
import re
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import MySQLdb
import pytest

from accountsync.adapters import mysql as mysql_adapter
from accountsync.adapters.base import (
    ConnectionTarget,
    CoverageGap,
    GapKind,
    PermissionDenied,
    QueryCounter,
    canonical_json,
)
from accountsync.adapters.mysql import (
    GRANT_BIT,
    MySQLAdapter,
    MySQLRows,
    ServerInfo,
    build_catalog,
    classify_error,
    coverage_gaps,
    expiry_moments,
    parse_server_info,
    read_rows,
    source_digest,
)
from tests.accountsync.test_mysql_recorded import FIXTURE, RecordedCursor

T = ConnectionTarget(name="prod-db", db_type="mysql", host="db1", port=3306, username="mon", password="Sup3r-Secret")
MARIADB = ServerInfo(flavor="mariadb", version=(10, 11, 6), version_string="10.11.6-MariaDB")
MYSQL8 = parse_server_info({"version": "8.0.36", "version_comment": "MySQL Community Server - GPL"})
ROUTE = dict(mysql_adapter._ROUTES)
GRANT_OPTION = mysql_adapter._GRANT_OPTION_ROUTE
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
BIT = {name: 1 << bit for bit, name, _since in mysql_adapter._MARIADB_ACCESS_BITS}
ALL_ACCESS = sum(BIT.values())


# --- recorded servers -----------------------------------------------------------------------------


class DenyingCursor(RecordedCursor):
    """The recorded MySQL 8 tables, except those the monitoring account may not read, and CURRENT_USER()."""

    def __init__(self, tables: dict[str, Any], denied: dict[str, tuple[int, str]], current_user: str | None):
        super().__init__(tables)
        self.denied = denied
        self.current_user = current_user

    def execute(self, sql: str, params: Any = None) -> None:
        self.statements.append(sql)
        if sql == "SELECT CURRENT_USER()":
            if self.current_user is None:
                raise MySQLdb.OperationalError(2013, "Lost connection to server during query")
            self.description, self._rows = [("CURRENT_USER()",)], [(self.current_user,)]
            return
        table = re.search(r"FROM mysql\.(\w+)", sql)
        if table and table[1] in self.denied:
            raise MySQLdb.OperationalError(*self.denied[table[1]])
        self.statements.pop()
        super().execute(sql, params)


def denied_text(table: str) -> str:
    return f"SELECT command denied to user 'mon'@'10.0.5.7' for table `mysql`.`{table}`"


def read_recorded(
    denied: dict[str, tuple[int, str]] | None = None, current_user: str | None = "mon@10.0.5.%", tables=FIXTURE
) -> tuple[MySQLRows, DenyingCursor, QueryCounter]:
    cursor = DenyingCursor(tables, denied or {}, current_user)
    counter = QueryCounter(cursor)
    rows = read_rows(counter, MYSQL8, secret=T.password)
    return rows, cursor, counter


def snapshots(catalog: Any) -> dict[str, dict[str, Any]]:
    return {a.identity: a.snapshot() for a in catalog.accounts}


FULL = snapshots(build_catalog(MYSQL8, read_recorded()[0], now=NOW).finalize())


# --- 1. coverage: a denied grant table is a gap of its level, never a failed sync ------------------


@pytest.mark.parametrize(
    ("table", "levels"),
    [
        ("db", ["database"]),
        ("tables_priv", ["object", "column"]),  # column grants take their grant option from tables_priv
        ("columns_priv", ["column"]),
        ("procs_priv", ["routine"]),
        ("proxies_priv", ["proxy"]),
        ("role_edges", ["role"]),
        ("default_roles", ["role"]),
        ("global_grants", ["global"]),
    ],
)
def test_a_denied_grant_table_is_a_gap_of_its_level(table: str, levels: list[str]) -> None:
    rows, cursor, counter = read_recorded({table: (1142, denied_text(table))})
    catalog = build_catalog(MYSQL8, rows, now=NOW).finalize()
    fix = f"GRANT SELECT ON mysql.{table} TO 'mon'@'10.0.5.%'"
    assert [gap.scope for gap in catalog.coverage] == levels
    own = catalog.coverage[0]
    assert own == CoverageGap(scope=levels[0], reason=denied_text(table), fix=fix)
    assert (own.kind, own.inclusive) == (GapKind.UNREADABLE, True)
    if table == "tables_priv":
        assert catalog.coverage[1].reason.startswith("column grants take their grant option from mysql.tables_priv: ")
        assert catalog.coverage[1].fix == fix
    # one statement more than the 9 tables of MySQL 8: CURRENT_USER(), for the fix
    assert counter.count == 10 and cursor.statements[-1] == "SELECT CURRENT_USER()"
    # everything outside the gaps is exactly what a full read gives
    got = snapshots(catalog)
    assert got.keys() == FULL.keys()
    for identity, snap in got.items():
        outside = [p for p in FULL[identity]["privileges"] if not any(g.covers(p["scope"]) for g in catalog.coverage)]
        assert [p for p in snap["privileges"] if not any(g.covers(p["scope"]) for g in catalog.coverage)] == outside
        if "role" not in levels:
            assert snap["roles"] == FULL[identity]["roles"]
    covered = [p for s in FULL.values() for p in s["privileges"] if any(g.covers(p["scope"]) for g in catalog.coverage)]
    if table not in ("role_edges", "default_roles"):
        assert covered, "the fixture has grants at this level, so the test shows them missing"


def test_both_role_tables_denied_are_one_role_gap_naming_both_fixes() -> None:
    rows, _, _ = read_recorded({t: (1142, denied_text(t)) for t in ("role_edges", "default_roles")})
    (gap,) = build_catalog(MYSQL8, rows, now=NOW).coverage
    assert gap.scope == "role"
    assert gap.reason == f"{denied_text('role_edges')}; {denied_text('default_roles')}"
    assert gap.fix == (
        "GRANT SELECT ON mysql.role_edges TO 'mon'@'10.0.5.%'; GRANT SELECT ON mysql.default_roles TO 'mon'@'10.0.5.%'"
    )


def test_gap_reason_is_scrubbed_and_the_fix_falls_back_to_a_placeholder() -> None:
    text = "SELECT command denied to user 'mon' (password Sup3r-Secret) for column 'Proc_priv'"
    rows, _, _ = read_recorded({"procs_priv": (1143, text)}, current_user=None)
    (gap,) = coverage_gaps(rows)
    assert "Sup3r-Secret" not in gap.reason and "***" in gap.reason
    assert gap.fix == "GRANT SELECT ON mysql.procs_priv TO <monitoring account>"
    # a user name may hold an @, a host never does; quotes are escaped as in every identity
    rows, _, _ = read_recorded({"procs_priv": (1142, text)}, current_user="o'@x@10.%")
    assert coverage_gaps(rows)[0].fix == "GRANT SELECT ON mysql.procs_priv TO 'o\\'@x'@'10.%'"


def test_the_account_table_denied_still_fails_the_sync() -> None:
    with pytest.raises(MySQLdb.OperationalError) as info:
        read_recorded({"user": (1142, denied_text("user"))})
    err = classify_error(info.value, T, phase="read the grant tables")
    assert isinstance(err, PermissionDenied) and "GRANT SELECT ON mysql.* TO" in str(err)


def test_other_errors_on_a_grant_table_are_not_gaps() -> None:
    with pytest.raises(MySQLdb.OperationalError):
        read_recorded({"db": (2013, "Lost connection to server during query")})
    with pytest.raises(MySQLdb.OperationalError):
        read_recorded({"procs_priv": (1146, "Table 'mysql.procs_priv' doesn't exist")})


def test_digest_differs_when_readability_changes() -> None:
    empty_procs = dict(copy.deepcopy(FIXTURE), procs_priv=[])
    readable = source_digest(T, MYSQL8, read_recorded(tables=empty_procs)[0], NOW)
    denied = source_digest(T, MYSQL8, read_recorded({"procs_priv": (1142, denied_text("procs_priv"))})[0], NOW)
    assert readable != denied  # no rows read and no rows readable are not the same catalog
    again = read_recorded({"procs_priv": (1142, denied_text("procs_priv").replace("10.0.5.7", "10.0.5.8"))})[0]
    assert source_digest(T, MYSQL8, again, NOW) == denied  # the worker's address in the text is no change


# --- 2. escalation routes -----------------------------------------------------------------------


def user_row(user: str, host: str = "localhost", *, access: int = 0, **priv: Any) -> dict[str, Any]:
    body = {"access": access, "plugin": "mysql_native_password", **priv}
    return {"User": user, "Host": host, "Priv": json.dumps(body), "auth_empty": 0}


def role_row(name: str, *, access: int = 0) -> dict[str, Any]:
    return user_row(name, "", access=access, is_role=True)


DB_COLUMNS = ("Select", "Insert", "Update", "Delete", "Create", "Drop", "Grant", "References", "Index", "Alter")


def db_row(user: str, db: str, host: str = "localhost", **flags: str) -> dict[str, Any]:
    return {"Host": host, "Db": db, "User": user, **{f"{c}_priv": "N" for c in DB_COLUMNS}, **flags}


def mariadb(info: ServerInfo = MARIADB, **tables: list[dict[str, Any]]) -> dict[str, Any]:
    catalog = build_catalog(info, MySQLRows(**tables), now=NOW).finalize()
    return {a.identity: a for a in catalog.accounts}


def reasons(acc: Any) -> list[str]:
    return acc.attributes.get("capability_reasons", {}).get("SUPERUSER", [])


def test_super_file_create_user_are_superuser_with_their_reason() -> None:
    accounts = mariadb(
        users=[
            user_row("sup", access=BIT["SUPER"]),
            user_row("file", access=BIT["FILE"]),
            user_row("cu", access=BIT["CREATE USER"]),
            user_row("dba", access=ALL_ACCESS | GRANT_BIT),
            user_row("ops", access=BIT["RELOAD"] | BIT["PROCESS"] | BIT["SHUTDOWN"]),
        ]
    )
    assert reasons(accounts["'sup'@'localhost'"]) == [ROUTE["SUPER"]]
    assert reasons(accounts["'file'@'localhost'"]) == [ROUTE["FILE"]]
    assert reasons(accounts["'cu'@'localhost'"]) == [ROUTE["CREATE USER"]]
    # the other capabilities stay what they were
    assert accounts["'file'@'localhost'"].snapshot()["capabilities"] == ["FILE_ACCESS", "SUPERUSER"]
    assert accounts["'cu'@'localhost'"].snapshot()["capabilities"] == ["CREATE_USER", "SUPERUSER"]
    assert all(accounts[f"'{u}'@'localhost'"].is_superuser for u in ("sup", "file", "cu", "dba"))
    # every privilege is a superuser by definition: no route to explain
    assert accounts["'dba'@'localhost'"].snapshot()["capabilities"] == [
        "CREATE_USER",
        "FILE_ACCESS",
        "GRANT_ADMIN",
        "SHUTDOWN",
        "SUPERUSER",
    ]
    assert "capability_reasons" not in accounts["'dba'@'localhost'"].attributes
    assert not accounts["'ops'@'localhost'"].is_superuser and reasons(accounts["'ops'@'localhost'"]) == []


def test_mysql8_root_listing_every_static_privilege_needs_no_reason() -> None:
    root = next(
        a for a in build_catalog(MYSQL8, read_recorded()[0], now=NOW).finalize().accounts if a.username == "root"
    )
    assert root.is_superuser and "capability_reasons" not in root.attributes


def test_grant_option_on_everything_needs_something_to_grant() -> None:
    accounts = mariadb(
        users=[
            user_row("g_sel", access=BIT["SELECT"] | GRANT_BIT),
            user_row("g_db", access=GRANT_BIT),
            user_row("g_usage", access=GRANT_BIT),
            user_row("g_proxy", access=GRANT_BIT),  # what MariaDB sets for PROXY ... WITH GRANT OPTION
            user_row("target"),
        ],
        db=[db_row("g_db", "sales", Select_priv="Y")],
        proxies=[
            {
                "User": "g_proxy",
                "Host": "localhost",
                "Proxied_user": "target",
                "Proxied_host": "localhost",
                "With_grant": 1,
            }
        ],
    )
    assert reasons(accounts["'g_sel'@'localhost'"]) == [GRANT_OPTION]
    assert reasons(accounts["'g_db'@'localhost'"]) == [GRANT_OPTION]  # global GRANT OPTION passes db grants on too
    for name in ("g_usage", "g_proxy"):
        acc = accounts[f"'{name}'@'localhost'"]
        assert not acc.is_superuser and "GRANT_ADMIN" in acc.capabilities, name


def test_write_privileges_on_the_mysql_schema_at_every_level() -> None:
    users = [user_row(u) for u in ("d", "pat", "one", "other", "tab", "col", "colsel", "tabsel", "cased")]
    users.append(user_row("glob", access=BIT["UPDATE"] | BIT["SELECT"]))
    accounts = mariadb(
        users=users,
        db=[
            db_row("d", "mysql", Update_priv="Y", Select_priv="Y"),
            db_row("pat", "m%", Insert_priv="Y"),
            db_row("one", "mysq_", Drop_priv="Y"),
            db_row("other", "mysql\\_x", Alter_priv="Y"),  # escaped: only the database mysql_x
            db_row("cased", "MYSQL", Delete_priv="Y"),
            db_row("tabsel", "mysql", Select_priv="Y"),
        ],
        tables=[
            {"User": "tab", "Host": "localhost", "Db": "mysql", "Table_name": "global_priv", "Table_priv": "Update"},
            {"User": "tabsel", "Host": "localhost", "Db": "mysql", "Table_name": "user", "Table_priv": "Select"},
        ],
        columns=[
            {
                "User": "col",
                "Host": "localhost",
                "Db": "mysql",
                "Table_name": "global_priv",
                "Column_name": "Priv",
                "Column_priv": "Update",
            },
            {
                "User": "colsel",
                "Host": "localhost",
                "Db": "mysql",
                "Table_name": "global_priv",
                "Column_name": "Priv",
                "Column_priv": "Select,References",
            },
        ],
    )

    def writes(user: str) -> str | None:
        (why,) = reasons(accounts[f"'{user}'@'localhost'"]) or [None]
        return why

    assert writes("d") == mysql_adapter._write_route(["UPDATE on database:mysql"])
    assert writes("pat") == mysql_adapter._write_route(["INSERT on database:m%"])
    assert writes("one") == mysql_adapter._write_route(["DROP on database:mysq_"])
    assert writes("tab") == mysql_adapter._write_route(["UPDATE on object:mysql.global_priv"])
    assert writes("col") == mysql_adapter._write_route(["UPDATE on column:mysql.global_priv.Priv"])
    assert writes("glob") == mysql_adapter._write_route(["UPDATE on global"])
    assert writes("glob").startswith("write privileges on the mysql schema (UPDATE on global): ")
    for user in ("other", "colsel", "tabsel"):
        assert writes(user) is None, user
    # lower_case_table_names unknown: `MYSQL` may be the mysql schema; with 0 (case-sensitive) it is another one
    assert writes("cased") is not None
    sensitive = mariadb(
        info=ServerInfo("mariadb", (10, 11, 6), "10.11.6", lower_case_table_names=0),
        users=[user_row("cased")],
        db=[db_row("cased", "MYSQL", Delete_priv="Y")],
    )
    assert reasons(sensitive["'cased'@'localhost'"]) == []


def test_mysql8_partial_revoke_on_mysql_takes_the_global_write_back() -> None:
    template = FIXTURE["user"][4]  # alice: no global privilege

    def row(user: str, restrictions: list[dict[str, Any]] | None) -> dict[str, Any]:
        attributes = json.dumps({"Restrictions": restrictions}) if restrictions else None
        return dict(template, User=user, Host="%", Update_priv="Y", Insert_priv="Y", User_attributes=attributes)

    revoked = [{"Database": "mysql", "Privileges": ["UPDATE", "INSERT"]}]
    elsewhere = [{"Database": "app", "Privileges": ["UPDATE"]}]
    accounts = {
        a.username: a
        for a in build_catalog(MYSQL8, MySQLRows(users=[row("r", revoked), row("e", elsewhere)]), now=NOW)
        .finalize()
        .accounts
    }
    assert not accounts["r"].is_superuser
    assert reasons(accounts["e"]) == [mysql_adapter._write_route(["INSERT on global", "UPDATE on global"])]


def test_a_route_of_a_role_reaches_its_members_with_the_role_path() -> None:
    accounts = mariadb(
        users=[role_row("filers", access=BIT["FILE"]), role_row("wrap"), user_row("ann")],
        roles_mapping=[
            {"User": "ann", "Host": "localhost", "Role": "wrap", "Admin_option": "N"},
            {"User": "wrap", "Host": "", "Role": "filers", "Admin_option": "N"},
        ],
    )
    ann = accounts["'ann'@'localhost'"]
    assert ann.is_superuser and reasons(ann) == [f"via role wrap → filers ({ROUTE['FILE']})"]


def proxy(user: str, proxied_user: str, proxied_host: str, host: str = "localhost") -> dict[str, Any]:
    return {"User": user, "Host": host, "Proxied_user": proxied_user, "Proxied_host": proxied_host, "With_grant": 0}


def proxy_fleet(*proxies: dict[str, Any]) -> dict[str, Any]:
    """MariaDB: root (every privilege), su@'%' (SUPER), member@'%' (a superuser through a role), plain@'%'."""
    users = [
        user_row("root", access=ALL_ACCESS | GRANT_BIT),
        user_row("su", "%", access=BIT["SUPER"]),
        user_row("plain", "%"),
        user_row("member", "%"),
        role_row("admins", access=ALL_ACCESS),
        *(user_row(u, h) for u, h in sorted({(p["User"], p["Host"]) for p in proxies})),
    ]
    mapping = [{"User": "member", "Host": "%", "Role": "admins", "Admin_option": "N"}]
    return mariadb(users=users, proxies=list(proxies), roles_mapping=mapping)


def proxy_reason(acc: Any) -> str | None:
    found = [r for r in reasons(acc) if r.startswith("PROXY of")]
    return found[0] if found else None


def test_proxy_of_a_superuser_names_who_it_reaches() -> None:
    accounts = proxy_fleet(
        proxy("p_root", "root", "localhost"),
        proxy("p_any_pct", "", "%"),  # empty proxied user: any user name, host exactly '%'
        proxy("p_any_blank", "", ""),  # ... host exactly '': nobody here
        proxy("p_plain", "plain", "%"),
        proxy("p_member", "member", "%"),  # a superuser through a role
        proxy("p_wrong_host", "root", "%"),  # the host is looked up exactly, not matched
        proxy("p_case", "root", "LOCALHOST"),  # ... case-insensitively
        proxy("p_pattern", "ro%", "localhost"),  # MariaDB compares the name exactly
        proxy("p_role", "admins", ""),  # a MariaDB role cannot be proxied
    )
    assert proxy_reason(accounts["'p_root'@'localhost'"]) == mysql_adapter._proxy_route(["'root'@'localhost'"])
    assert proxy_reason(accounts["'p_any_pct'@'localhost'"]) == mysql_adapter._proxy_route(["'member'@'%'", "'su'@'%'"])
    assert proxy_reason(accounts["'p_member'@'localhost'"]) == mysql_adapter._proxy_route(["'member'@'%'"])
    assert proxy_reason(accounts["'p_case'@'localhost'"]) is not None
    for user in ("p_any_blank", "p_plain", "p_wrong_host", "p_pattern", "p_role"):
        acc = accounts[f"'{user}'@'localhost'"]
        assert not acc.is_superuser and proxy_reason(acc) is None, user
    assert accounts["'p_root'@'localhost'"].is_superuser
    assert "SUPERUSER" in accounts["'p_root'@'localhost'"].snapshot()["capabilities"]
    # root's own PROXY on ''@'%' (every install has it) adds no reason to a superuser
    root = mariadb(users=[user_row("root", access=ALL_ACCESS)], proxies=[proxy("root", "", "%")])
    assert "capability_reasons" not in root["'root'@'localhost'"].attributes
    # the anonymous account ''@'' as the default proxy account (the manual's pattern) proxying root
    anonymous = mariadb(
        users=[user_row("root", access=ALL_ACCESS), user_row("", "")],
        proxies=[proxy("", "root", "localhost", host="")],
    )
    assert proxy_reason(anonymous["''@''"]) == mysql_adapter._proxy_route(["'root'@'localhost'"])
    # ... and a row proxying ''@'' (any user name, host exactly ''): that anonymous superuser is an account with host ''
    behind = mariadb(
        users=[user_row("root", access=ALL_ACCESS), user_row("", ""), user_row("p", "%")],
        proxies=[proxy("", "root", "localhost", host=""), proxy("p", "", "", host="%")],
    )
    assert proxy_reason(behind["'p'@'%'"]) == mysql_adapter._proxy_route(["''@''"])


def mysql8_user(user: str, host: str = "localhost", template: int = 4) -> dict[str, Any]:
    """A MySQL 8 mysql.user row from the recording: template 0 is root (every privilege), 4 alice (none)."""
    return dict(FIXTURE["user"][template], User=user, Host=host)


def test_proxy_name_patterns_on_mysql_and_chains() -> None:
    rows = MySQLRows(
        users=[mysql8_user("root", template=0), *(mysql8_user(u) for u in ("p_pattern", "p_under", "p_escaped"))],
        proxies=[
            proxy("p_pattern", "ro%", "localhost"),  # MySQL compares the proxied name as a pattern
            proxy("p_under", "r_ot", "localhost"),
            proxy("p_escaped", "ro\\%", "localhost"),  # only the name `ro%`
        ],
    )
    accounts = {a.identity: a for a in build_catalog(MYSQL8, rows, now=NOW).finalize().accounts}
    assert proxy_reason(accounts["'p_pattern'@'localhost'"]) == mysql_adapter._proxy_route(["'root'@'localhost'"])
    assert proxy_reason(accounts["'p_under'@'localhost'"]) is not None
    assert not accounts["'p_escaped'@'localhost'"].is_superuser
    # proxying a proxy of a superuser: decided again until nothing changes
    chain = proxy_fleet(proxy("p2", "p1", "localhost"), proxy("p1", "root", "localhost"))
    assert proxy_reason(chain["'p1'@'localhost'"]) == mysql_adapter._proxy_route(["'root'@'localhost'"])
    assert proxy_reason(chain["'p2'@'localhost'"]) == mysql_adapter._proxy_route(["'p1'@'localhost'"])


# --- 3. values the driver hands over oddly never fail a sync ----------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (10**20, "100000000000000000000"),  # past year 9999
        (-5, "1969-12-31T23:59:55Z"),
        (1717200000.7, "2024-06-01T00:00:00Z"),
        ("garbage", "garbage"),
        ("2024-06-01 08:30:00", "2024-06-01T08:30:00Z"),
        ([1], "[1]"),
        (True, "True"),
        (math.nan, "nan"),
        (math.inf, "inf"),
        (None, None),
    ],
)
def test_odd_password_last_changed_in_the_priv_json(value: Any, shown: str | None) -> None:
    row = user_row("odd", password_last_changed=value, password_lifetime=30)
    (acc,) = build_catalog(MARIADB, MySQLRows(users=[row]), now=NOW).finalize().accounts
    assert acc.attributes["password_last_changed"] == shown
    assert acc.attributes["password_expired"] is False
    canonical_json(acc.snapshot()).encode("utf-8")  # storable
    expiry_moments(MARIADB, MySQLRows(users=[row]))  # the digest's reading does not fail either


@pytest.mark.parametrize(
    ("value", "shown"), [("abc", "abc"), ("30", 30), (1.5, "1.5"), ([7], "[7]"), (-1, None), ("-1", None)]
)
def test_odd_password_lifetime_in_the_priv_json(value: Any, shown: Any) -> None:
    row = user_row("odd", password_last_changed=1717200000, password_lifetime=value)
    (acc,) = build_catalog(MARIADB, MySQLRows(users=[row]), now=NOW).finalize().accounts
    assert acc.attributes["password_lifetime"] == shown


@pytest.mark.parametrize(
    "value", [None, "0000-00-00 00:00:00", "2024-02-30 00:00:00", datetime(9999, 12, 31, 23, 59, 59)]
)
def test_zero_and_out_of_range_dates_in_mysql_user(value: Any) -> None:
    """mysqlclient reads a zero or impossible TIMESTAMP as None; as text (recorded) or at year 9999 it builds too."""
    row = dict(FIXTURE["user"][4], password_last_changed=value, password_lifetime=90)
    (acc,) = build_catalog(MYSQL8, MySQLRows(users=[row]), now=NOW).finalize().accounts
    assert "EXPIRED" not in acc.capabilities  # no readable change time, or an expiry past year 9999
    assert expiry_moments(MYSQL8, MySQLRows(users=[row])) == []


def test_names_that_are_not_utf8_decode_with_replacement_characters() -> None:
    """Bytes from binary-collated columns (or a bytes-mode read): every name decodes, with U+FFFD for bad bytes."""
    priv = json.dumps({"access": BIT["SELECT"], "plugin": "mysql_native_password"}).encode()
    rows = MySQLRows(
        users=[
            {"User": b"app\xff", "Host": b"10.0.\xfe%", "Priv": priv, "auth_empty": 0, "auth_or_empty": b"00000000"},
            {"User": b"r\xff", "Host": b"", "Priv": b'{"access": 0, "is_role": true}', "auth_empty": 1},
        ],
        db=[db_row(b"app\xff", b"sales\xff", host=b"10.0.\xfe%", Select_priv=b"Y")],
        tables=[
            {"User": b"app\xff", "Host": b"10.0.\xfe%", "Db": b"s", "Table_name": b"t\xff", "Table_priv": b"Select"}
        ],
        columns=[
            {
                "User": b"app\xff",
                "Host": b"10.0.\xfe%",
                "Db": b"s",
                "Table_name": b"t\xff",
                "Column_name": b"c\xc3",
                "Column_priv": b"Update",
            },
        ],
        procs=[
            {
                "User": b"app\xff",
                "Host": b"10.0.\xfe%",
                "Db": b"s",
                "Routine_name": b"p\xff",
                "Routine_type": b"PROCEDURE",
                "Proc_priv": b"Execute",
            },
        ],
        proxies=[
            {"User": b"app\xff", "Host": b"10.0.\xfe%", "Proxied_user": b"x\xff", "Proxied_host": b"%", "With_grant": 0}
        ],
        roles_mapping=[{"User": b"app\xff", "Host": b"10.0.\xfe%", "Role": b"r\xff", "Admin_option": b"N"}],
    )
    accounts = {a.identity: a for a in build_catalog(MARIADB, rows, now=NOW).finalize().accounts}
    app = accounts["'app\ufffd'@'10.0.\ufffd%'"]
    assert app.snapshot()["privileges"] == [
        {"scope": "column:s.t\ufffd.c\ufffd", "privilege": "UPDATE", "grantable": False, "effect": "GRANT"},
        {"scope": "database:sales\ufffd", "privilege": "SELECT", "grantable": False, "effect": "GRANT"},
        {"scope": "global", "privilege": "SELECT", "grantable": False, "effect": "GRANT"},
        {"scope": "object:s.t\ufffd", "privilege": "SELECT", "grantable": False, "effect": "GRANT"},
        {"scope": "proxy:'x\ufffd'@'%'", "privilege": "PROXY", "grantable": False, "effect": "GRANT"},
        {"scope": "routine:s.p\ufffd(procedure)", "privilege": "EXECUTE", "grantable": False, "effect": "GRANT"},
    ]
    assert app.snapshot()["roles"] == [{"role": "'r\ufffd'", "admin_option": False, "default": False}]
    assert accounts["'r\ufffd'"].kind == "role"
    canonical_json(app.snapshot()).encode("utf-8")


class FakeConnection:
    """What `fetch` needs of a mysqlclient connection: a cursor, a socket number for the watchdog, close()."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor
        self._sockets = socket.socketpair()

    def cursor(self) -> Any:
        return self._cursor

    def fileno(self) -> int:
        return self._sockets[0].fileno()

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()


def bytes_tables() -> dict[str, Any]:
    """The recorded MySQL 8 tables as a bytes-mode read returns them: every text cell as UTF-8 bytes."""

    def cell(value: Any) -> Any:
        return value.encode() if isinstance(value, str) else value

    tables = {
        name: [{k: cell(v) for k, v in row.items()} for row in rows]
        for name, rows in FIXTURE.items()
        if isinstance(rows, list)
    }
    tables["variables"] = {cell(k): cell(v) for k, v in FIXTURE["variables"].items()}
    return tables


class Recorded(MySQLAdapter):
    """The adapter over recorded tables; a text read meets a cell the driver cannot decode."""

    def __init__(self, undecodable: bool = True, now: datetime = NOW, tables: dict[str, Any] | None = None) -> None:
        self.undecodable = undecodable
        self.fixed_now = now
        self.tables = tables
        self.modes: list[bool] = []

    def _now(self) -> datetime:
        return self.fixed_now

    def _connect(self, target: ConnectionTarget, *, use_unicode: bool = True) -> Any:
        self.modes.append(use_unicode)
        if self.tables is not None:
            return FakeConnection(RecordedCursor(self.tables))
        if use_unicode and self.undecodable:
            return FakeConnection(UndecodableCursor(FIXTURE))
        return FakeConnection(RecordedCursor(bytes_tables() if not use_unicode else FIXTURE))


class UndecodableCursor(RecordedCursor):
    def execute(self, sql: str, params: Any = None) -> None:
        super().execute(sql, params)
        if "FROM mysql.tables_priv" in sql:
            raise UnicodeDecodeError("utf-8", b"t\xff", 1, 2, "invalid start byte")


def test_a_cell_the_driver_cannot_decode_makes_fetch_read_again_in_bytes() -> None:
    adapter = Recorded()
    catalog = adapter.fetch(T)
    assert adapter.modes == [True, False]
    assert catalog.round_trips == 4 + 10  # the text read got to tables_priv, then the whole bytes read
    text_read = Recorded(undecodable=False).fetch(T)
    assert snapshots(catalog) == snapshots(text_read)


# --- 4. expiry by age: one `now` for the digest and the build -----------------------------------------


def aged(user: str, changed: datetime | int | None, lifetime: int | None = None, **priv: Any) -> dict[str, Any]:
    stamp = int(changed.timestamp()) if isinstance(changed, datetime) else changed
    extra = {} if lifetime is None else {"password_lifetime": lifetime}
    return user_row(user, password_last_changed=stamp, **extra, **priv)


def test_expired_by_age_with_the_accounts_own_or_the_servers_lifetime() -> None:
    day = timedelta(days=1)
    users = [
        aged("own_old", NOW - 31 * day, 30),
        aged("own_new", NOW - 29 * day, 30),
        aged("own_exact", NOW - 30 * day, 30),  # the moment itself counts as passed, as in rows_digest
        aged("default_old", NOW - 31 * day),
        aged("never", NOW - 999 * day, 0),
        aged("flagged", 0),  # PASSWORD EXPIRE
        aged("no_time", None, 30),
        aged("role", NOW - 999 * day, 30, is_role=True),
    ]
    with_default = ServerInfo("mariadb", (10, 11, 6), "10.11.6", default_password_lifetime=30)
    accounts = {a.username: a for a in build_catalog(with_default, MySQLRows(users=users), now=NOW).accounts}
    expired = {name for name, acc in accounts.items() if "EXPIRED" in acc.capabilities}
    assert expired == {"own_old", "own_exact", "default_old", "flagged"}
    assert accounts["own_old"].attributes["password_expired"] is False  # the attribute stays the server's flag
    plain = {a.username: a for a in build_catalog(MARIADB, MySQLRows(users=users), now=NOW).accounts}
    assert "EXPIRED" not in plain["default_old"].capabilities  # no server default known: never by age
    # the digest's moments are the build's: one per account whose age can expire it
    moments = expiry_moments(with_default, MySQLRows(users=users))
    assert moments == [
        NOW - 1 * day,
        NOW + 1 * day,
        NOW,
        NOW - 1 * day,
    ]


def test_mysql8_rows_expire_by_age_too() -> None:
    rows = MySQLRows(users=[dict(FIXTURE["user"][4])])  # alice: 90 days from 2024-06-01 08:30
    moment = datetime(2024, 8, 30, 8, 30, tzinfo=UTC)
    assert expiry_moments(MYSQL8, rows) == [moment]
    before = build_catalog(MYSQL8, rows, now=moment - timedelta(seconds=1)).accounts[0]
    after = build_catalog(MYSQL8, rows, now=moment).accounts[0]
    assert "EXPIRED" not in before.capabilities and "EXPIRED" in after.capabilities


def test_digest_changes_when_a_moment_passes_and_only_then() -> None:
    day = timedelta(days=1)
    rows = MySQLRows(users=[aged("a", NOW - 10 * day, 30), aged("b", NOW - 20 * day, 30)])
    # moments: NOW + 20 days and NOW + 10 days
    future_twice = {source_digest(T, MARIADB, rows, NOW), source_digest(T, MARIADB, rows, NOW + 9 * day)}
    assert len(future_twice) == 1  # nothing passed at either instant: the same digest
    one_passed = source_digest(T, MARIADB, rows, NOW + 11 * day)
    both_passed = source_digest(T, MARIADB, rows, NOW + 21 * day)
    assert len({*future_twice, one_passed, both_passed}) == 3
    assert source_digest(T, MARIADB, rows, NOW + 365 * day) == both_passed


def test_the_first_fetch_after_an_expiry_is_a_full_apply_that_sees_it() -> None:
    moment = datetime(2024, 8, 30, 8, 30, tzinfo=UTC)  # alice's, in the recorded MySQL 8 tables
    first = Recorded(undecodable=False, now=moment - timedelta(hours=1), tables=FIXTURE).fetch(T)
    alice = next(a for a in first.accounts if a.username == "alice")
    assert "EXPIRED" not in alice.capabilities
    known = ConnectionTarget(**{**vars(T), "known_catalog_digest": first.source_digest})
    assert Recorded(now=moment - timedelta(minutes=1), tables=FIXTURE).fetch(known).unchanged
    after = Recorded(now=moment, tables=FIXTURE).fetch(known)
    assert not after.unchanged and after.source_digest != first.source_digest
    assert "EXPIRED" in next(a for a in after.accounts if a.username == "alice").capabilities


def test_an_unchanged_fetch_still_reports_its_gaps() -> None:
    class Denied(Recorded):
        def _connect(self, target: ConnectionTarget, *, use_unicode: bool = True) -> Any:
            return FakeConnection(DenyingCursor(FIXTURE, {"procs_priv": (1142, denied_text("procs_priv"))}, "mon@%"))

    first = Denied(undecodable=False).fetch(T)
    assert [g.scope for g in first.coverage] == ["routine"] and first.round_trips == 11
    known = ConnectionTarget(**{**vars(T), "known_catalog_digest": first.source_digest})
    again = Denied(undecodable=False).fetch(known)
    assert again.unchanged and again.coverage == first.coverage
