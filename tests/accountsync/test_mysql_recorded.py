"""MySQL 8 and 5.7 through the same parsing code, fed with rows shaped like their grant tables.

Why recorded rows: there is no MySQL 8 server here, and MySQL-only tables
(role_edges, default_roles, global_grants) must still be proven. The cursor
is the only fake: `read_rows` chooses the statements, `build_catalog` parses
exactly what a live fetch would parse.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import MySQLdb
import pytest

from accountsync.adapters import mysql as mysql_adapter
from accountsync.adapters.base import (
    ConnectionTarget,
    PermissionDenied,
    QueryCounter,
    TimeoutFailed,
    rows_digest,
)
from accountsync.adapters.mysql import (
    MySQLRows,
    account_identity,
    build_catalog,
    classify_error,
    mariadb_access_privileges,
    parse_server_info,
    read_rows,
)

FIXTURE = json.loads((Path(__file__).parent.parent / "fixtures" / "mysql8_grant_tables.json").read_text("utf-8"))

MYSQL8_STATIC = [
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "DROP",
    "RELOAD",
    "SHUTDOWN",
    "PROCESS",
    "FILE",
    "REFERENCES",
    "INDEX",
    "ALTER",
    "SHOW DATABASES",
    "SUPER",
    "CREATE TEMPORARY TABLES",
    "LOCK TABLES",
    "EXECUTE",
    "REPLICATION SLAVE",
    "REPLICATION CLIENT",
    "CREATE VIEW",
    "SHOW VIEW",
    "CREATE ROUTINE",
    "ALTER ROUTINE",
    "CREATE USER",
    "EVENT",
    "TRIGGER",
    "CREATE TABLESPACE",
    "CREATE ROLE",
    "DROP ROLE",
]


class RecordedCursor:
    """Answers each `SELECT ... FROM mysql.<table>` with the recorded rows of that table."""

    def __init__(self, tables: dict[str, Any]) -> None:
        self.tables = tables
        self.statements: list[str] = []
        self.description: list[tuple[str]] = []
        self._rows: list[tuple[Any, ...]] = []

    def execute(self, sql: str, params: Any = None) -> None:
        self.statements.append(sql)
        if sql.startswith("SHOW GLOBAL VARIABLES"):
            self.description = [("Variable_name",), ("Value",)]
            self._rows = list(self.tables["variables"].items())
            return
        table = re.search(r"FROM mysql\.(\w+)", sql)[1]
        rows = self.tables[table]
        wanted = re.match(r"SELECT (.*) FROM mysql\.", sql)[1]
        columns = list(rows[0]) if rows and wanted == "*" else select_names(wanted)
        self.description = [(c,) for c in columns]
        self._rows = [tuple(row[c] for c in columns) for row in rows]  # a column not recorded: KeyError

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows


def select_names(select_list: str) -> list[str]:
    """The column names a select list gives its rows: `u.Host` -> Host, `expr AS name` -> name."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(select_list + ","):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(select_list[start:i].strip())
            start = i + 1
    return [re.split(r" AS ", item)[-1].split(".")[-1] for item in items]


def recorded_catalog(version: str = "8.0.36", comment: str = "MySQL Community Server - GPL"):
    tables = dict(FIXTURE, variables=dict(FIXTURE["variables"], version=version, version_comment=comment))
    cursor = RecordedCursor(tables)
    counter = QueryCounter(cursor)
    info = parse_server_info(dict(counter.fetchall("SHOW GLOBAL VARIABLES WHERE Variable_name IN ('version')")))
    rows = read_rows(counter, info)
    catalog = build_catalog(info, rows)
    catalog.round_trips = counter.count
    return catalog.finalize(), cursor


def p(scope: str, privilege: str, grantable: bool = False) -> dict[str, Any]:
    return {"scope": scope, "privilege": privilege, "grantable": grantable, "effect": "GRANT"}


def sort_privs(privs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(privs, key=lambda d: (d["scope"], d["privilege"], d["grantable"], d["effect"]))


def attrs(**over: Any) -> dict[str, Any]:
    base = {
        "auth_plugin": "caching_sha2_password",
        "is_role": False,
        "locked": False,
        "max_connections": 0,
        "max_questions": 0,
        "max_updates": 0,
        "max_user_connections": 0,
        "password_expired": False,
        "password_lifetime": None,
        "ssl_cipher": "",
        "ssl_type": "",
        "x509_issuer": "",
        "x509_subject": "",
    }
    base.update(over)
    return base


FILE_ROUTE = dict(mysql_adapter._ROUTES)["FILE"]
CREATE_USER_ROUTE = dict(mysql_adapter._ROUTES)["CREATE USER"]


def test_mysql8_reads_role_and_dynamic_tables_in_ten_statements() -> None:
    catalog, cursor = recorded_catalog()
    assert catalog.server_version == "MySQL 8.0.36"
    assert catalog.round_trips == len(cursor.statements) == 10
    read = [re.search(r"FROM mysql\.(\w+)", s)[1] for s in cursor.statements[1:]]
    assert read == [
        "user",
        "db",
        "tables_priv",
        "columns_priv",
        "procs_priv",
        "proxies_priv",
        "role_edges",
        "default_roles",
        "global_grants",
    ]
    assert len(catalog.accounts) == 8


def test_mysql8_root_lists_static_and_dynamic_privileges() -> None:
    catalog, _ = recorded_catalog()
    root = next(a for a in catalog.accounts if a.identity == "'root'@'localhost'").snapshot()
    assert root["privileges"] == sort_privs(
        [p("global", name, True) for name in MYSQL8_STATIC]
        + [
            p("global", "BACKUP_ADMIN", True),
            p("global", "SYSTEM_VARIABLES_ADMIN", True),
            p("proxy:''@''", "PROXY", True),
        ]
    )
    assert root["capabilities"] == ["CREATE_USER", "FILE_ACCESS", "GRANT_ADMIN", "SHUTDOWN", "SUPERUSER"]
    assert root["attributes"] == attrs(password_last_changed="2024-05-02T09:15:11Z")


def test_mysql8_roles_default_roles_and_inherited_capabilities() -> None:
    catalog, _ = recorded_catalog()
    accounts = {a.identity: a for a in catalog.accounts}
    alice = accounts["'alice'@'10.0.%'"]
    assert alice.snapshot() == {
        "schema_version": 1,
        "privileges": [p("database:reports", "SELECT", True)],
        "roles": [
            {"role": "'app_write'@'%'", "admin_option": True, "default": True},
            {"role": "'ops'@'%'", "admin_option": False, "default": False},
        ],
        "attributes": attrs(password_last_changed="2024-06-01T08:30:00Z", password_lifetime=90, ssl_type="X509")
        | {
            "max_user_connections": 5,
            # FILE and CREATE USER are escalation routes: the role ops is a superuser, and so its holder
            "capability_reasons": {"SUPERUSER": [f"via role ops ({FILE_ROUTE}; {CREATE_USER_ROUTE})"]},
        },
        # EXPIRED: 90 days after 2024-06-01 have passed
        "capabilities": [
            "CREATE_USER",
            "EXPIRED",
            "FILE_ACCESS",
            "GRANT_ADMIN",
            "SHUTDOWN",
            "SUPERUSER",
            "WILDCARD_HOST",
        ],
        "unknown_scopes": [],
    }
    app_write = accounts["'app_write'@'%'"]
    assert app_write.kind == "role" and app_write.attributes["is_role"] is True
    assert app_write.snapshot()["roles"] == [{"role": "'app_read'@'%'", "admin_option": False, "default": False}]
    assert sort_privs(app_write.snapshot()["privileges"]) == sort_privs(
        [p("database:app", "INSERT"), p("database:app", "UPDATE"), p("database:app", "DELETE")]
    )
    # locked, password-less roles: MySQL 8 roles are accounts, so LOCKED/NO_PASSWORD/WILDCARD_HOST hold
    assert app_write.snapshot()["capabilities"] == ["LOCKED", "NO_PASSWORD", "WILDCARD_HOST"]
    assert accounts["'ops'@'%'"].kind == "role"
    assert accounts["'ops'@'%'"].is_superuser is True  # FILE, CREATE USER: superuser-equivalent


def test_mysql8_table_column_routine_levels_and_socket_auth() -> None:
    catalog, _ = recorded_catalog()
    bob = next(a for a in catalog.accounts if a.identity == "'bob'@'localhost'").snapshot()
    assert bob["privileges"] == sort_privs(
        [
            p("global", "PROCESS"),
            p("global", "RELOAD"),
            p("global", "BACKUP_ADMIN"),
            p("object:app.orders", "SELECT", True),
            p("column:app.orders.total", "UPDATE", True),
            p('object:app."order.lines"', "ALL PRIVILEGES"),
            p("routine:app.refresh(procedure)", "EXECUTE"),
            p("routine:app.refresh(function)", "EXECUTE", True),
            p("routine:app.refresh(function)", "ALTER ROUTINE", True),
        ]
    )
    assert bob["roles"] == [{"role": "'app_read'@'%'", "admin_option": False, "default": False}]
    # auth_socket with an empty authentication string is not a password-less account
    assert bob["capabilities"] == ["EXPIRED", "GRANT_ADMIN"]
    assert bob["attributes"]["auth_plugin"] == "auth_socket"
    assert bob["attributes"]["password_expired"] is True


def test_mysql8_anonymous_ops_and_session_accounts() -> None:
    catalog, _ = recorded_catalog()
    accounts = {a.identity: a.snapshot() for a in catalog.accounts}
    anon = accounts["''@'localhost'"]
    assert anon["capabilities"] == ["ANONYMOUS", "NO_PASSWORD"]
    assert anon["attributes"]["auth_plugin"] == "mysql_native_password"
    ops = accounts["'ops'@'%'"]
    assert ops["privileges"] == sort_privs(
        [
            p("global", "SELECT"),
            {"scope": "database:mysql", "privilege": "SELECT", "grantable": False, "effect": "DENY"},
            p("global", "CREATE USER"),
            p("global", "FILE"),
            p("global", "SHUTDOWN"),
            p("global", "CONNECTION_ADMIN", True),
            p("database:app\\_%", "ALL PRIVILEGES", True),
            p("column:app.customers.email", "SELECT"),
            p("column:app.customers.email", "REFERENCES"),
        ]
    )
    assert ops["attributes"] == attrs(
        password_last_changed="2024-06-04T00:00:00Z",
        ssl_type="SPECIFIED",
        ssl_cipher="ECDHE-RSA-AES128-GCM-SHA256",
        x509_issuer="/CN=ops-ca",
        x509_subject="/CN=ops",
        max_questions=100,
        max_updates=10,
        max_connections=20,
        is_role=True,
        failed_login_attempts=3,
        password_lock_time_days=2,
        capability_reasons={"SUPERUSER": [CREATE_USER_ROUTE, FILE_ROUTE]},
    )
    session = accounts["'mysql.session'@'localhost'"]
    assert session["capabilities"] == ["LOCKED", "SUPERUSER"]
    assert [x["scope"] for x in session["privileges"]].count("global") == 3


def test_mysql8_user_select_names_columns_and_reads_no_hash() -> None:
    """Least data: named columns, the server's auth_empty flag, User_attributes without secrets."""
    _, cursor = recorded_catalog()
    users = next(s for s in cursor.statements if "FROM mysql.user" in s)
    assert "*" not in users and ", u.authentication_string = '' AS auth_empty FROM" in users
    assert users.count("authentication_string") == 3  # the flag and the two factor secrets removed
    assert "JSON_REMOVE(u.User_attributes, '$.additional_password'" in users
    names = select_names(re.match(r"SELECT (.*) FROM", users)[1])
    assert not {"authentication_string", "Password"} & set(names)
    assert set(names) == set(FIXTURE["user"][0])  # the recording has exactly the columns asked for
    assert "$A$005$" not in json.dumps(FIXTURE)
    _, cursor57 = recorded_catalog(version="5.7.44-log", comment="MySQL Community Server (GPL)")
    users57 = next(s for s in cursor57.statements if "FROM mysql.user" in s)
    assert "User_attributes" not in users57 and "Create_role_priv" not in users57


def test_mariadb_103_user_select_computes_empty_from_both_hash_columns() -> None:
    info = parse_server_info({"version": "10.3.39-MariaDB", "version_comment": "MariaDB Server"})
    sql = mysql_adapter.user_sql(info)
    assert "(u.authentication_string = '' AND u.Password = '') AS auth_empty" in sql
    names = select_names(re.match(r"SELECT (.*) FROM", sql)[1])
    assert {"is_role", "default_role", "Delete_history_priv"} <= set(names)
    assert not {"authentication_string", "Password", "password_last_changed"} & set(names)


# Rows exactly as MariaDB 10.11.19 answered _GLOBAL_PRIV_SQL for accounts made with
#   CREATE USER 'wfprobe1'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('x')
#     OR unix_socket OR mysql_native_password USING PASSWORD('') OR mysql_native_password USING PASSWORD('y');
#   CREATE USER 'wfprobe2'@'%' IDENTIFIED BY 'abc';  CREATE USER 'wfprobe3'@'%';
MARIADB_GLOBAL_PRIV_ROWS = [
    (
        "wfprobe1",
        "%",
        '{"access": 0, "version_id": 101119, "plugin": "mysql_native_password", "auth_or": [{}, '
        '{"plugin": "unix_socket"}, {"plugin": "mysql_native_password"}, {"plugin": "mysql_native_password"}], '
        '"password_last_changed": 1796132396}',
        0,
        "11101111",
    ),
    (
        "wfprobe2",
        "%",
        '{"access": 0, "version_id": 101119, "plugin": "mysql_native_password", "password_last_changed": 1796132396}',
        0,
        "11111111",
    ),
    (
        "wfprobe3",
        "%",
        '{"access": 0, "version_id": 101119, "plugin": "mysql_native_password", "password_last_changed": 1796132396}',
        1,
        "11111111",
    ),
]


def test_mariadb_global_priv_rows_carry_flags_not_hashes() -> None:
    """The server removes every secret from Priv and says per alternative whether it was empty."""
    sql = mysql_adapter._GLOBAL_PRIV_SQL
    assert sql.count("JSON_REMOVE(") == 1 and "'$.auth_or[7].authentication_string'" in sql
    assert re.match(
        r"SELECT User, Host, CASE .* END AS Priv, .* AS auth_empty, CONCAT\(.*\) AS auth_or_empty FROM", sql
    )
    columns = ("User", "Host", "Priv", "auth_empty", "auth_or_empty")
    rows = MySQLRows(users=[dict(zip(columns, row, strict=True)) for row in MARIADB_GLOBAL_PRIV_ROWS])
    accounts = {a.username: a for a in build_catalog(MARIADB_1011, rows).finalize().accounts}
    # an empty native password as third alternative is an open door, whatever the first says
    assert "NO_PASSWORD" in accounts["wfprobe1"].capabilities
    assert accounts["wfprobe1"].attributes["auth_plugin"] == (
        "mysql_native_password OR unix_socket OR mysql_native_password OR mysql_native_password"
    )
    assert "NO_PASSWORD" not in accounts["wfprobe2"].capabilities
    assert "NO_PASSWORD" in accounts["wfprobe3"].capabilities
    only_hashed = dict(rows.users[0], auth_or_empty="11001111")  # as if the 3rd had a secret
    alone = build_catalog(MARIADB_1011, MySQLRows(users=[only_hashed])).finalize().accounts[0]
    assert "NO_PASSWORD" not in alone.capabilities  # every password alternative has a secret


def test_mariadb_too_many_alternatives_is_unexpected_contents() -> None:
    """Beyond MAX_AUTH_ALTERNATIVES the server sends no Priv at all; the build refuses it."""
    row = {"User": "many", "Host": "%", "Priv": None, "auth_empty": 0, "auth_or_empty": "00000000"}
    with pytest.raises(ValueError, match="more than 8 authentication alternatives"):
        build_catalog(MARIADB_1011, MySQLRows(users=[row]))


def test_no_password_hash_survives_parsing() -> None:
    catalog, _ = recorded_catalog()
    dumped = json.dumps([a.snapshot() for a in catalog.accounts]) + repr(catalog.accounts)
    assert "$A$005$" not in dumped and "authentication_string" not in dumped
    assert "additional_password" not in dumped


def test_mysql57_collapses_all_privileges_and_skips_role_tables() -> None:
    catalog, cursor = recorded_catalog(version="5.7.44-log", comment="MySQL Community Server (GPL)")
    assert catalog.server_version == "MySQL 5.7.44"
    assert catalog.round_trips == 7
    assert not any("role_edges" in s or "global_grants" in s for s in cursor.statements)
    root = next(a for a in catalog.accounts if a.identity == "'root'@'localhost'").snapshot()
    assert root["privileges"] == [p("global", "ALL PRIVILEGES", True), p("proxy:''@''", "PROXY", True)]


@pytest.mark.parametrize(
    ("version", "comment", "flavor", "numbers", "label"),
    [
        ("10.11.19-MariaDB-0+deb12u1", "Debian 12", "mariadb", (10, 11, 19), "MariaDB 10.11.19"),
        ("5.5.5-10.6.12-MariaDB-log", "MariaDB Server", "mariadb", (10, 6, 12), "MariaDB 10.6.12"),
        ("11.4.2-MariaDB", "mariadb.org binary distribution", "mariadb", (11, 4, 2), "MariaDB 11.4.2"),
        ("8.0.36", "MySQL Community Server - GPL", "mysql", (8, 0, 36), "MySQL 8.0.36"),
        ("8.4.0-commercial", "MySQL Enterprise Server", "mysql", (8, 4, 0), "MySQL 8.4.0"),
        ("5.7.44-log", "MySQL Community Server (GPL)", "mysql", (5, 7, 44), "MySQL 5.7.44"),
    ],
)
def test_flavour_and_version_detection(version, comment, flavor, numbers, label) -> None:
    info = parse_server_info({"version": version, "version_comment": comment})
    assert (info.flavor, info.version, info.label) == (flavor, numbers, label)
    assert info.uses_global_priv == (flavor == "mariadb" and numbers >= (10, 4, 0))
    assert info.has_mysql_roles == (flavor == "mysql" and numbers >= (8, 0, 0))


def test_mariadb_access_bits_depend_on_version() -> None:
    full_1011 = (1 << 39) - 1
    names, all_set = mariadb_access_privileges(full_1011, (10, 11, 6))
    assert all_set and "BINLOG MONITOR" in names and "SLAVE MONITOR" in names and len(names) == 38
    # 11.3 added SHOW CREATE ROUTINE: the 10.11 mask is no longer everything
    names, all_set = mariadb_access_privileges(full_1011, (11, 4, 0))
    assert not all_set and "SHOW CREATE ROUTINE" not in names
    names, all_set = mariadb_access_privileges((1 << 20) | (1 << 10), (10, 4, 30))
    assert (names, all_set) == (["REPLICATION CLIENT"], False)


def test_mariadb_103_rows_use_mysql_user() -> None:
    """MariaDB before 10.4 keeps accounts in mysql.user with is_role/default_role columns."""
    info = parse_server_info({"version": "10.3.39-MariaDB", "version_comment": "MariaDB Server"})
    row = {k: v for k, v in FIXTURE["user"][4].items() if k not in ("Create_role_priv", "Drop_role_priv")}
    role_row = dict(FIXTURE["user"][2], Host="", User="r1", is_role="Y", default_role="")
    user_row = dict(row, is_role="N", default_role="r1", Password="", plugin="mysql_native_password")
    rows = MySQLRows(
        users=[user_row, role_row],
        roles_mapping=[{"User": "alice", "Host": "10.0.%", "Role": "r1", "Admin_option": "N"}],
    )
    catalog = build_catalog(info, rows).finalize()
    accounts = {a.identity: a for a in catalog.accounts}
    assert accounts["'r1'"].kind == "role" and accounts["'r1'"].host is None
    assert accounts["'alice'@'10.0.%'"].snapshot()["roles"] == [
        {"role": "'r1'", "admin_option": False, "default": True}
    ]


def test_identities_never_collide() -> None:
    pairs = [("a'@'b", "c"), ("a", "b'@'c"), ("a\\", "b"), ("a", "\\b"), ("", "%"), ("%", ""), ("r", "")]
    identities = {account_identity(u, h) for u, h in pairs} | {account_identity("r", "", is_role=True)}
    assert len(identities) == len(pairs) + 1


T = ConnectionTarget(name="prod-db", db_type="mysql", host="db1", port=3306, username="mon", password="Sup3r-Secret")


@pytest.mark.parametrize(
    ("code", "phase", "cls", "needle"),
    [
        (1045, "connect", PermissionDenied, "authentication failed for 'mon' at db1:3306"),
        (1142, "read the grant tables", PermissionDenied, "GRANT SELECT ON mysql.* TO"),
        (2013, "read the grant tables", TimeoutFailed, "within 300s"),
        (2013, "connect", TimeoutFailed, "within 5s"),
    ],
)
def test_error_classification_scrubs_password(code, phase, cls, needle) -> None:
    exc = MySQLdb.OperationalError(code, "Access denied for user 'mon' (using password: Sup3r-Secret)")
    err = classify_error(exc, T, phase=phase)
    assert isinstance(err, cls)
    assert needle in str(err) and str(err).startswith("prod-db: ")
    assert "Sup3r-Secret" not in str(err)


# --- memoised parsing: accounts of one shape share work, never results that differ -------

MARIADB_1011 = parse_server_info({"version": "10.11.6-MariaDB", "version_comment": "MariaDB Server"})
DB_FLAGS = ("Select", "Insert", "Update", "Delete", "Create", "Drop", "Grant", "References", "Index", "Alter")


def global_priv_row(user: str, **priv: Any) -> dict[str, Any]:
    body = {"access": 1, "plugin": "mysql_native_password", "password_last_changed": 1717200000, **priv}
    return {"User": user, "Host": "%", "Priv": json.dumps(body), "auth_empty": 0}


def mariadb_db_row(user: str, db: str = "app", **flags: str) -> dict[str, Any]:
    return {"Host": "%", "Db": db, "User": user, **{f"{s}_priv": "N" for s in DB_FLAGS}, **flags}


def template_fleet() -> MySQLRows:
    """Accounts made from a few templates: same Priv JSON, or the same but for the password change time."""
    users = [
        global_priv_row("a1"),
        global_priv_row("a2"),  # same text as a1
        global_priv_row("a3", password_last_changed=1717300000),  # same shape, other time
        global_priv_row("a4", password_last_changed=0),  # same shape, expired
        global_priv_row("a5", password_last_changed=None),  # same shape, never changed
        global_priv_row("b1", access=(1 << 9) | mysql_adapter.GRANT_BIT, account_locked=True),
        global_priv_row("b2", access=(1 << 9) | mysql_adapter.GRANT_BIT, account_locked=1),  # 1 is not true
        global_priv_row("r", is_role=True),
    ]
    db = [mariadb_db_row(u, Select_priv="Y") for u in ("a1", "a2", "a3")] + [
        mariadb_db_row("b1", Select_priv="Y", Grant_priv="Y"),
        mariadb_db_row("b2", db="other", Select_priv="Y"),
    ]
    tables = [
        {"User": u, "Host": "%", "Db": "app", "Table_name": "t", "Table_priv": "Select,Update,Grant"}
        for u in ("a1", "a2", "b1")
    ]
    roles = [{"User": u, "Host": "%", "Role": "r", "Admin_option": "N"} for u in ("a1", "a2", "a3")]
    return MySQLRows(users=users, db=db, tables=tables, roles_mapping=roles)


def own_rows(rows: MySQLRows, user: str) -> MySQLRows:
    """Only `user`'s rows (and the role's account): built alone, nothing is shared with other accounts."""
    mine = [u for u in rows.users if u["User"] in (user, "r")]
    return MySQLRows(
        users=mine,
        db=[r for r in rows.db if r["User"] == user],
        tables=[r for r in rows.tables if r["User"] == user],
        roles_mapping=[r for r in rows.roles_mapping if r["User"] == user],
    )


def account_facts(acc: Any) -> tuple[Any, ...]:
    return (
        acc.identity,
        acc.kind,
        acc.host,
        acc.is_superuser,
        acc.is_locked,
        acc.attributes,
        acc.privileges,
        acc.roles,
        acc.capabilities,
        acc.effective_capabilities,
        acc.snapshot(),
    )


def test_memoised_accounts_equal_accounts_built_alone() -> None:
    rows = template_fleet()
    fleet = {a.identity: a for a in build_catalog(MARIADB_1011, rows).finalize().accounts}
    for user in ("a1", "a2", "a3", "a4", "a5", "b1", "b2"):
        alone = build_catalog(MARIADB_1011, own_rows(rows, user)).finalize()
        acc = next(a for a in alone.accounts if a.username == user)
        assert account_facts(fleet[acc.identity]) == account_facts(acc), user
    a1, a2, a3, a4, a5 = (fleet[f"'a{i}'@'%'"] for i in range(1, 6))
    # the shared shape really was shared: same immutable objects, separate per-account containers
    assert a1.privileges[0] is a2.privileges[0] and a1.privileges is not a2.privileges
    assert a1.attributes is not a2.attributes
    assert a1.attributes["password_last_changed"] == "2024-06-01T00:00:00Z"
    assert a3.attributes["password_last_changed"] == "2024-06-02T03:46:40Z"
    assert (a4.attributes["password_expired"], "EXPIRED" in a4.capabilities) == (True, True)
    assert (a5.attributes["password_expired"], a5.attributes["password_last_changed"]) == (False, None)
    a1.attributes["locked"] = True  # an account's own dict: changing it changes no other account
    assert a2.attributes["locked"] is False
    b1, b2 = fleet["'b1'@'%'"], fleet["'b2'@'%'"]
    assert b1.is_locked and b2.is_locked  # JSON true and 1 parse apart but both lock
    assert b1.snapshot()["privileges"] == [
        p("database:app", "SELECT", True),
        p("global", "FILE", True),
        p("object:app.t", "SELECT", True),
        p("object:app.t", "UPDATE", True),
    ]


def test_global_priv_memo_keys_on_exact_json_values() -> None:
    """1, 1.0 and true are equal in Python but not in the Priv JSON: none may share a shape."""
    memo = mysql_adapter._Memo(MARIADB_1011.version)
    for value in (True, 1, 1.0, 0, False, "Y"):
        text = json.dumps({"access": 1, "account_locked": value, "password_last_changed": 5})
        assert memo.global_priv(text, 0) == mysql_adapter._global_priv_shape(text, 0, MARIADB_1011.version)
    text = json.dumps({"access": 1, "password_last_changed": 5})
    assert memo.global_priv(text, 1) != memo.global_priv(text, 0)  # auth_empty is part of the key
    unhashable = bytearray(b"1")  # not a memo key, still parsed like b"1"
    assert memo.global_priv(text, unhashable) == mysql_adapter._global_priv_shape(text, b"1", MARIADB_1011.version)


def test_flag_memo_shares_only_text_flags() -> None:
    """Y/N text flags are shared across rows; numeric ones are not, as 1 == 1.0 but only 1 reads as yes."""
    memo = mysql_adapter._Memo(MARIADB_1011.version)
    rows = [mariadb_db_row(u, Select_priv="Y", Grant_priv="Y") for u in ("x", "y")]
    first, second = (memo.flags(r) for r in rows)
    alone = mysql_adapter._Memo(MARIADB_1011.version).flags(rows[0])  # a fresh memo shares nothing
    assert first is second and first == alone == (("SELECT",), False, True)
    one, one_float = mariadb_db_row("x", Select_priv=1), mariadb_db_row("y", Select_priv=1.0)
    assert memo.flags(one)[0] == ("SELECT",)
    assert memo.flags(one_float)[0] == ()


def test_digest_covers_the_rows_as_read() -> None:
    """read_rows keeps the row tuples for the digest: equal rows digest equally, a changed row does not."""

    def digest(tables: dict[str, Any]) -> str:
        counter = QueryCounter(RecordedCursor(tables))
        info = parse_server_info(dict(counter.fetchall("SHOW GLOBAL VARIABLES")))
        rows = read_rows(counter, info)
        assert [name for name, _columns, _rows in rows.raw][:2] == ["users", "db"]
        return rows_digest(mysql_adapter.__file__, T, info, mysql_adapter._digest_source(rows))

    base = digest(FIXTURE)
    assert base == digest(json.loads(json.dumps(FIXTURE)))
    changed = json.loads(json.dumps(FIXTURE))
    changed["db"][0]["Select_priv"] = "N" if changed["db"][0]["Select_priv"] == "Y" else "Y"
    assert digest(changed) != base


def _catalog_with(**variables: str):
    tables = dict(FIXTURE, variables=dict(FIXTURE["variables"], **variables))
    counter = QueryCounter(RecordedCursor(tables))
    info = parse_server_info(dict(counter.fetchall("SHOW GLOBAL VARIABLES WHERE Variable_name IN ('version')")))
    return build_catalog(info, read_rows(counter, info)).finalize(), info


def test_mysql8_mandatory_roles_are_held_by_every_user_and_active_only_when_activated() -> None:
    """mandatory_roles grants to every account without a role_edges row; activate_all_roles_on_login decides."""
    catalog, info = _catalog_with(mandatory_roles="`app_read`@`%`", activate_all_roles_on_login="OFF")
    assert info.mandatory_roles == "`app_read`@`%`" and info.activate_all_roles_on_login is False
    users = [a for a in catalog.accounts if a.kind != "role"]
    assert users and all("'app_read'@'%'" in {r.role for r in a.roles} for a in users)
    alice = next(a for a in catalog.accounts if a.identity == "'alice'@'10.0.%'")
    assert ("'app_read'@'%'", False) in {(r.role, r.default) for r in alice.roles}  # reachable with SET ROLE only
    role = next(a for a in catalog.accounts if a.identity == "'app_read'@'%'")
    assert role.kind == "role" and "'app_read'@'%'" not in {r.role for r in role.roles}

    active, _ = _catalog_with(mandatory_roles="app_read", activate_all_roles_on_login="ON")
    alice = next(a for a in active.accounts if a.identity == "'alice'@'10.0.%'")
    assert {(r.role, r.default) for r in alice.roles} >= {("'app_read'@'%'", True), ("'ops'@'%'", True)}


def test_role_list_parser_reads_every_quoting() -> None:
    from accountsync.adapters.mysql import parse_role_list

    assert parse_role_list("r1, `r2`@`localhost`,'r,3'@'%', \"r4\"@10.0.%") == [
        ("r1", "%"),
        ("r2", "localhost"),
        ("r,3", "%"),
        ("r4", "10.0.%"),
    ]
    assert parse_role_list("") == []
