"""The MySQL/MariaDB adapter against the live MariaDB: real CREATE USER / GRANT.

Every test creates uniquely prefixed accounts and databases, asserts the exact
canonical snapshot, cross-checks it with the server's own `SHOW GRANTS FOR`,
and drops what it made.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import MySQLdb
import pytest

from accountsync.adapters import mysql as mysql_adapter
from accountsync.adapters.base import (
    ConnectionFailed,
    ConnectionTarget,
    PermissionDenied,
    TimeoutFailed,
    get_adapter,
)
from accountsync.adapters.mysql import MySQLAdapter, account_identity, routine_scope
from tests.livedb import MARIADB

pytestmark = pytest.mark.live

ROOT = ConnectionTarget(
    name="live-mariadb", db_type="mysql", host="127.0.0.1", port=MARIADB["port"], username="root", password=""
)


def target(**kw: Any) -> ConnectionTarget:
    values = {
        "name": "live-mariadb",
        "db_type": "mysql",
        "host": "127.0.0.1",
        "port": MARIADB["port"],
        "username": "root",
        "password": "",
    }
    values.update(kw)
    return ConnectionTarget(**values)


class Scratch:
    """Runs statements as root and remembers what to drop."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.accounts: list[tuple[str, str | None]] = []
        self.databases: list[str] = []

    def run(self, sql: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())

    def user(self, user: str, host: str, extra: str = "") -> str:
        self.run(f"CREATE USER %s@%s {extra}", (user, host))
        self.accounts.append((user, host))
        return account_identity(user, host)

    def role(self, name: str) -> str:
        self.run("CREATE ROLE %s", (name,))
        self.accounts.append((name, None))
        return account_identity(name, "", is_role=True)

    def database(self, name: str) -> str:
        self.run(f"CREATE DATABASE `{name}`")
        self.databases.append(name)
        return name

    def cleanup(self) -> None:
        for user, host in reversed(self.accounts):
            if host is None:
                self.run("DROP ROLE IF EXISTS %s", (user,))
            else:
                self.run("DROP USER IF EXISTS %s@%s", (user, host))
        for db in self.databases:
            self.run(f"DROP DATABASE IF EXISTS `{db}`")


@pytest.fixture
def scratch(mariadb_admin: Any) -> Iterator[Scratch]:
    s = Scratch(mariadb_admin)
    try:
        yield s
    finally:
        s.cleanup()


def fetch_snapshots() -> dict[str, dict[str, Any]]:
    catalog = MySQLAdapter().fetch(ROOT)
    return {acc.identity: acc.snapshot() for acc in catalog.accounts}


def p(scope: str, privilege: str, grantable: bool = False) -> dict[str, Any]:
    return {"scope": scope, "privilege": privilege, "grantable": grantable, "effect": "GRANT"}


def attrs(**over: Any) -> dict[str, Any]:
    base = {
        "auth_plugin": "mysql_native_password",
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


def snap(privileges: list[dict[str, Any]], *, roles=(), attributes=None, capabilities=()) -> dict[str, Any]:
    key = lambda d: (d["scope"], d["privilege"], d["grantable"], d["effect"])  # noqa: E731
    return {
        "schema_version": 1,
        "privileges": sorted(privileges, key=key),
        "roles": sorted(roles, key=lambda r: (r["role"], r["admin_option"], r["default"])),
        "attributes": attributes if attributes is not None else attrs(),
        "capabilities": sorted(capabilities),
        "unknown_scopes": [],
    }


ROUTE = dict(mysql_adapter._ROUTES)  # escalation route -> its reason ("SUPER: ...")
GRANT_OPTION_ROUTE = mysql_adapter._GRANT_OPTION_ROUTE


def role(name: str, admin: bool = False, default: bool = False) -> dict[str, Any]:
    return {"role": name, "admin_option": admin, "default": default}


def without_changed_at(snapshot: dict[str, Any]) -> dict[str, Any]:
    """Check password_last_changed is a fresh UTC timestamp, then drop it for exact comparison."""
    out = dict(snapshot, attributes=dict(snapshot["attributes"]))
    changed = out["attributes"].pop("password_last_changed")
    if changed is not None:
        when = datetime.strptime(changed, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert abs(datetime.now(UTC) - when) < timedelta(minutes=10), changed
    return out


# --- SHOW GRANTS parsing, for the cross-check -----------------------------------

_TOKEN = re.compile(r"`((?:[^`]|``)*)`|'((?:[^'\\]|\\.|'')*)'|([A-Za-z_][A-Za-z0-9_]*)|(\S)")


def _tokens(line: str) -> list[tuple[str, str]]:
    out = []
    for m in _TOKEN.finditer(line):
        if m[1] is not None:
            out.append(("id", m[1].replace("``", "`")))
        elif m[2] is not None:
            out.append(("str", m[2]))
        elif m[3] is not None:
            out.append(("word", m[3].upper()))
        else:
            out.append(("punct", m[4]))
    return out


def _account(tokens: list[tuple[str, str]], i: int, role_names: set[str]) -> tuple[str, int]:
    name = tokens[i][1]
    if i + 2 < len(tokens) and tokens[i + 1] == ("punct", "@"):
        return account_identity(name, tokens[i + 2][1]), i + 3
    return account_identity(name, "", is_role=name in role_names), i + 1


def parse_show_grants(lines: list[str], grantee: str, role_names: set[str]) -> tuple[set, set, str | None]:
    """Returns ({(scope, privilege, grantable)}, {(role, admin_option)}, default role) of `grantee`.

    SHOW GRANTS FOR a role also prints the grants of the roles it holds, each
    naming its own grantee, so lines for other grantees are skipped.
    """
    from accountsync.adapters.base import make_scope

    privileges: set[tuple[str, str, bool]] = set()
    roles: set[tuple[str, bool]] = set()
    default_role = None
    for line in lines:
        toks = _tokens(line)
        words = [v for k, v in toks if k == "word"]
        if toks[:3] == [("word", "SET"), ("word", "DEFAULT"), ("word", "ROLE")]:
            default_role, _ = _account(toks, 3, role_names)
            continue
        assert toks[0] == ("word", "GRANT"), line
        if _account(toks, toks.index(("word", "TO")) + 1, role_names)[0] != grantee:
            continue
        tail = " ".join(words)
        if ("word", "ON") not in toks:
            role_id, _ = _account(toks, 1, role_names)
            roles.add((role_id, "WITH ADMIN OPTION" in tail))
            continue
        grantable = "WITH GRANT OPTION" in tail
        on = toks.index(("word", "ON"))
        # privilege list: words, optionally followed by a column list
        privs: list[tuple[str, list[str]]] = []
        i, current = 1, []
        while i < on:
            kind, value = toks[i]
            if kind == "word":
                current.append(value)
            elif value == "(":
                cols = []
                i += 1
                while toks[i] != ("punct", ")"):
                    if toks[i][0] == "id":
                        cols.append(toks[i][1])
                    i += 1
                privs.append((" ".join(current), cols))
                current = []
            elif value == ",":
                if current:
                    privs.append((" ".join(current), []))
                current = []
            i += 1
        if current:
            privs.append((" ".join(current), []))
        j = on + 1
        if privs == [("PROXY", [])]:
            proxied, _ = _account(toks, j, role_names)
            privileges.add(("proxy:" + proxied, "PROXY", grantable))
            continue
        routine_type = None
        if toks[j][0] == "word" and toks[j][1] in ("PROCEDURE", "FUNCTION", "PACKAGE"):
            routine_type = toks[j][1]
            j += 1
        db, obj = toks[j], toks[j + 2]
        if db == ("punct", "*"):
            scope = "global"
        elif routine_type:
            scope = routine_scope(db[1], obj[1], routine_type)
        elif obj == ("punct", "*"):
            scope = make_scope("database", db[1])
        else:
            scope = make_scope("object", db[1], obj[1])
        for name, cols in privs:
            if name == "USAGE" and not grantable:
                continue
            if cols:
                for col in cols:
                    privileges.add((make_scope("column", db[1], obj[1], col), name, grantable))
            else:
                privileges.add((scope, name, grantable))
    return privileges, roles, default_role


def shown_by_show_grants(snapshot: dict[str, Any]) -> set[tuple[str, str, bool]]:
    """SHOW GRANTS hides column grants under a table's ALL PRIVILEGES; the grant tables keep them."""
    all_tables = {
        x["scope"].removeprefix("object:") for x in snapshot["privileges"] if x["privilege"] == "ALL PRIVILEGES"
    }
    return {
        (x["scope"], x["privilege"], x["grantable"])
        for x in snapshot["privileges"]
        if not (x["scope"].startswith("column:") and x["scope"].removeprefix("column:").rsplit(".", 1)[0] in all_tables)
    }


def cross_check(scratch: Scratch, snapshots: dict[str, dict[str, Any]]) -> int:
    """Every account the test created must agree with the server's SHOW GRANTS."""
    role_names = {u for u, h in scratch.accounts if h is None}
    checked = 0
    for user, host in scratch.accounts:
        if host is None:
            rows = scratch.run("SHOW GRANTS FOR %s", (user,))
            ident = account_identity(user, "", is_role=True)
        else:
            rows = scratch.run("SHOW GRANTS FOR %s@%s", (user, host))
            ident = account_identity(user, host)
        privileges, roles, default_role = parse_show_grants([r[0] for r in rows], ident, role_names)
        s = snapshots[ident]
        assert shown_by_show_grants(s) == privileges, ident
        assert {(r["role"], r["admin_option"]) for r in s["roles"]} == roles, ident
        if host is not None:
            assert {r["role"] for r in s["roles"] if r["default"]} == ({default_role} if default_role else set())
        checked += 1
    assert checked == len(scratch.accounts) > 0
    return checked


# --- tests --------------------------------------------------------------------------


def test_registry_and_version(mariadb_admin: Any) -> None:
    adapter = get_adapter("mysql")
    assert isinstance(adapter, MySQLAdapter)
    assert re.fullmatch(r"MariaDB 1[01]\.\d+\.\d+", adapter.test_connection(ROOT))


def test_every_grant_level_exact(scratch: Scratch, unique_prefix: str) -> None:
    db = scratch.database(f"{unique_prefix}_db")
    scratch.run(f"CREATE TABLE `{db}`.`t` (a INT, `Mixed` INT)")
    scratch.run(f"CREATE PROCEDURE `{db}`.`r`() SELECT 1")
    scratch.run(f"CREATE FUNCTION `{db}`.`r`() RETURNS INT RETURN 1")
    a = scratch.user(f"{unique_prefix}_a", "10.0.0.%", "IDENTIFIED BY 'Pw-a-1'")
    b = scratch.user(f"{unique_prefix}_b", "127.0.0.1", "IDENTIFIED BY 'Pw-b-1'")
    c = scratch.user(f"{unique_prefix}_c", "db.example", "IDENTIFIED BY 'Pw-c-1'")
    d = scratch.user(f"{unique_prefix}_d", "db.example", "IDENTIFIED BY 'Pw-d-1'")
    a_sql, b_sql = f"'{unique_prefix}_a'@'10.0.0.%'", f"'{unique_prefix}_b'@'127.0.0.1'"
    c_sql = f"'{unique_prefix}_c'@'db.example'"
    for sql in (
        f"GRANT SELECT, RELOAD, LOCK TABLES, CREATE TEMPORARY TABLES ON *.* TO {a_sql}",
        f"GRANT INSERT, UPDATE ON `{db}`.* TO {a_sql} WITH GRANT OPTION",
        f"GRANT SELECT (a, `Mixed`), UPDATE (`Mixed`) ON `{db}`.`t` TO {a_sql}",
        f"GRANT EXECUTE ON PROCEDURE `{db}`.`r` TO {a_sql}",
        f"GRANT EXECUTE, ALTER ROUTINE ON FUNCTION `{db}`.`r` TO {a_sql} WITH GRANT OPTION",
        f"GRANT ALL ON `{db}`.* TO {b_sql}",
        f"GRANT ALL ON `{db}`.`t` TO {b_sql} WITH GRANT OPTION",
        f"GRANT SELECT (a) ON `{db}`.`t` TO {b_sql}",
        f"GRANT GRANT OPTION ON `{db}`.* TO {c_sql}",
        f"GRANT FILE, SHUTDOWN, CREATE USER ON *.* TO {c_sql}",
        f"GRANT SUPER ON *.* TO {c_sql} WITH GRANT OPTION",
    ):
        scratch.run(sql)
    # Only the proxied account itself (or a holder of PROXY WITH GRANT OPTION on it) may grant PROXY.
    as_b = MySQLdb.connect(host="127.0.0.1", port=MARIADB["port"], user=f"{unique_prefix}_b", password="Pw-b-1")
    try:
        as_b.cursor().execute(f"GRANT PROXY ON {b_sql} TO {a_sql}")
        as_b.cursor().execute(f"GRANT PROXY ON {b_sql} TO '{unique_prefix}_d'@'db.example' WITH GRANT OPTION")
    finally:
        as_b.close()

    snaps = fetch_snapshots()
    fn, proc = routine_scope(db, "r", "FUNCTION"), routine_scope(db, "r", "PROCEDURE")
    assert fn == f"routine:{db}.r(function)"
    assert without_changed_at(snaps[a]) == snap(
        [
            p("global", "SELECT"),
            p("global", "RELOAD"),
            p("global", "LOCK TABLES"),
            p("global", "CREATE TEMPORARY TABLES"),
            p(f"database:{db}", "INSERT", True),
            p(f"database:{db}", "UPDATE", True),
            p(f"column:{db}.t.a", "SELECT"),
            p(f"column:{db}.t.Mixed", "SELECT"),
            p(f"column:{db}.t.Mixed", "UPDATE"),
            p(proc, "EXECUTE"),
            p(fn, "EXECUTE", True),
            p(fn, "ALTER ROUTINE", True),
            p(f"proxy:{b}", "PROXY"),
        ],
        capabilities=["GRANT_ADMIN", "WILDCARD_HOST"],
    )
    assert without_changed_at(snaps[b]) == snap(
        [
            p(f"database:{db}", "ALL PRIVILEGES"),
            p(f"object:{db}.t", "ALL PRIVILEGES", True),
            p(f"column:{db}.t.a", "SELECT", True),
        ],
        capabilities=["GRANT_ADMIN"],
    )
    assert without_changed_at(snaps[c]) == snap(
        [
            p("global", "FILE", True),
            p("global", "SHUTDOWN", True),
            p("global", "CREATE USER", True),
            p("global", "SUPER", True),
            p(f"database:{db}", "USAGE", True),
        ],
        # each of SUPER, FILE, CREATE USER and GRANT OPTION on *.* is an escalation route with its reason
        attributes=attrs(
            capability_reasons={
                "SUPERUSER": sorted([ROUTE["SUPER"], ROUTE["FILE"], ROUTE["CREATE USER"], GRANT_OPTION_ROUTE])
            }
        ),
        capabilities=["CREATE_USER", "FILE_ACCESS", "GRANT_ADMIN", "SHUTDOWN", "SUPERUSER"],
    )
    # MariaDB also sets the global grant bit for PROXY ... WITH GRANT OPTION.
    assert without_changed_at(snaps[d]) == snap(
        [p("global", "USAGE", True), p(f"proxy:{b}", "PROXY", True)], capabilities=["GRANT_ADMIN"]
    )
    assert cross_check(scratch, snaps) == 4


def test_global_all_privileges_is_superuser(scratch: Scratch, unique_prefix: str) -> None:
    u = scratch.user(f"{unique_prefix}_dba", "127.0.0.1", "IDENTIFIED BY 'Pw-d-1'")
    scratch.run("GRANT ALL PRIVILEGES ON *.* TO %s@%s", (f"{unique_prefix}_dba", "127.0.0.1"))
    catalog = MySQLAdapter().fetch(ROOT)
    acc = next(a for a in catalog.accounts if a.identity == u)
    assert acc.is_superuser is True and acc.kind == "user" and acc.host == "127.0.0.1"
    assert without_changed_at(acc.snapshot()) == snap(
        [p("global", "ALL PRIVILEGES")], capabilities=["CREATE_USER", "FILE_ACCESS", "SHUTDOWN", "SUPERUSER"]
    )
    cross_check(scratch, {acc.identity: acc.snapshot()})


def test_roles_to_users_and_roles(scratch: Scratch, unique_prefix: str) -> None:
    db = scratch.database(f"{unique_prefix}_rdb")
    reader = scratch.role(f"{unique_prefix}_reader")
    admin = scratch.role(f"{unique_prefix}_admin")
    other = scratch.role(f"{unique_prefix}_other")
    u = scratch.user(f"{unique_prefix}_u", "%", "IDENTIFIED BY 'Pw-u-1'")
    v = scratch.user(f"{unique_prefix}_v", "%", "IDENTIFIED BY 'Pw-v-1'")
    usql, vsql = f"'{unique_prefix}_u'@'%'", f"'{unique_prefix}_v'@'%'"
    for sql in (
        f"GRANT SELECT ON `{db}`.* TO `{unique_prefix}_reader`",
        f"GRANT CREATE USER, FILE ON *.* TO `{unique_prefix}_admin`",
        f"GRANT `{unique_prefix}_reader` TO `{unique_prefix}_admin`",
        f"GRANT `{unique_prefix}_admin` TO {usql} WITH ADMIN OPTION",
        f"GRANT `{unique_prefix}_other` TO {usql}",
        f"SET DEFAULT ROLE `{unique_prefix}_admin` FOR {usql}",
        f"GRANT `{unique_prefix}_reader` TO {vsql}",
        f"GRANT SUPER ON *.* TO `{unique_prefix}_other`",
    ):
        scratch.run(sql)

    catalog = MySQLAdapter().fetch(ROOT)
    accounts = {a.identity: a for a in catalog.accounts}
    snaps = {i: a.snapshot() for i, a in accounts.items()}
    assert reader == f"'{unique_prefix}_reader'"
    assert accounts[reader].kind == "role" and accounts[reader].host is None
    role_attrs = attrs(auth_plugin="", is_role=True, password_expired=False)
    assert snaps[reader] == snap(
        [p(f"database:{db}", "SELECT")], attributes=dict(role_attrs, password_last_changed=None)
    )
    admin_routes = sorted([ROUTE["CREATE USER"], ROUTE["FILE"]])
    assert snaps[admin] == snap(
        [p("global", "CREATE USER"), p("global", "FILE")],
        roles=[role(reader, default=True)],
        attributes=dict(role_attrs, password_last_changed=None, capability_reasons={"SUPERUSER": admin_routes}),
        capabilities=["CREATE_USER", "FILE_ACCESS", "SUPERUSER"],  # FILE, CREATE USER: escalation routes
    )
    assert without_changed_at(snaps[u]) == snap(
        [],
        roles=[role(admin, admin=True, default=True), role(other)],
        attributes=attrs(
            capability_reasons={
                "SUPERUSER": sorted(
                    [
                        f"via role {unique_prefix}_admin ({ROUTE['FILE']}; {ROUTE['CREATE USER']})",
                        f"via role {unique_prefix}_other ({ROUTE['SUPER']})",
                    ]
                )
            }
        ),
        capabilities=["CREATE_USER", "FILE_ACCESS", "GRANT_ADMIN", "SUPERUSER", "WILDCARD_HOST"],
    )
    assert accounts[u].is_superuser is True
    assert without_changed_at(snaps[v]) == snap([], roles=[role(reader)], capabilities=["WILDCARD_HOST"])
    cross_check(scratch, snaps)


def test_locked_expired_limits_tls_and_plugins(scratch: Scratch, unique_prefix: str) -> None:
    locked = scratch.user(
        f"{unique_prefix}_lk",
        "app.example",
        "IDENTIFIED BY 'Pw-l-1' REQUIRE SUBJECT '/CN=app' AND ISSUER '/CN=ca' AND CIPHER 'ECDHE-RSA-AES256-SHA' "
        "WITH MAX_QUERIES_PER_HOUR 10 MAX_UPDATES_PER_HOUR 20 MAX_CONNECTIONS_PER_HOUR 30 MAX_USER_CONNECTIONS 4 "
        "PASSWORD EXPIRE INTERVAL 45 DAY ACCOUNT LOCK",
    )
    expired = scratch.user(f"{unique_prefix}_ex", "app.example", "IDENTIFIED BY 'Pw-e-1' REQUIRE SSL PASSWORD EXPIRE")
    never = scratch.user(f"{unique_prefix}_nv", "app.example", "PASSWORD EXPIRE NEVER")
    sock = scratch.user(f"{unique_prefix}_so", "localhost", "IDENTIFIED VIA unix_socket")
    either = scratch.user(
        f"{unique_prefix}_or", "localhost", "IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('x1')"
    )
    snaps = fetch_snapshots()
    assert without_changed_at(snaps[locked]) == snap(
        [],
        attributes=attrs(
            locked=True,
            password_lifetime=45,
            max_questions=10,
            max_updates=20,
            max_connections=30,
            max_user_connections=4,
            ssl_type="SPECIFIED",
            ssl_cipher="ECDHE-RSA-AES256-SHA",
            x509_issuer="/CN=ca",
            x509_subject="/CN=app",
        ),
        capabilities=["LOCKED"],
    )
    assert snaps[expired] == snap(
        [],
        attributes=dict(attrs(password_expired=True, ssl_type="ANY"), password_last_changed=None),
        capabilities=["EXPIRED"],
    )
    assert without_changed_at(snaps[never]) == snap(
        [], attributes=attrs(password_lifetime=0), capabilities=["NO_PASSWORD"]
    )
    assert without_changed_at(snaps[sock]) == snap([], attributes=attrs(auth_plugin="unix_socket"))
    assert without_changed_at(snaps[either]) == snap(
        [], attributes=attrs(auth_plugin="unix_socket OR mysql_native_password")
    )
    cross_check(scratch, snaps)


def test_anonymous_wildcard_and_hostile_names(scratch: Scratch, unique_prefix: str) -> None:
    db = scratch.database(f"{unique_prefix}_h")
    scratch.run(f'CREATE TABLE `{db}`.`t.x` (`c"q` INT, `sp ace` INT)')
    wild_db = f"{unique_prefix}\\_w%"
    names = {
        "anon": ("", "wf-nowhere.invalid"),
        "any_host": (f"{unique_prefix}_any", "%"),
        "underscore_host": (f"{unique_prefix}_us", "app_1"),
        "escaped_host": (f"{unique_prefix}_es", "app\\_1"),
        "quotes": (f"{unique_prefix}'q\"b\\s", "h'1"),
        "spaces": (f"{unique_prefix} with space", "localhost"),
        "percent": (f"{unique_prefix}_%", "localhost"),
        "unicode": (f"{unique_prefix}-ünïcødé-用户", "localhost"),
        "longest": (unique_prefix + "x" * (128 - len(unique_prefix)), "localhost"),
        "collide1": (f"{unique_prefix}a'@'b", "c"),
        "collide2": (f"{unique_prefix}a", "b"),
    }
    ids = {key: scratch.user(user, host) for key, (user, host) in names.items()}
    assert len(set(ids.values())) == len(ids)
    assert ids["quotes"] == f"'{unique_prefix}\\'q\"b\\\\s'@'h\\'1'"
    assert len(names["longest"][0]) == 128
    quser, qhost = names["quotes"]
    scratch.run(f"GRANT SELECT ON `{wild_db.replace('%', '%%')}`.* TO %s@%s", (quser, qhost))
    scratch.run(f'GRANT SELECT (`c"q`), INSERT (`sp ace`) ON `{db}`.`t.x` TO %s@%s', (quser, qhost))
    scratch.run(f"GRANT DELETE ON `{db}`.`t.x` TO %s@%s WITH GRANT OPTION", names["unicode"])

    snaps = fetch_snapshots()
    nopw = ["NO_PASSWORD"]
    assert without_changed_at(snaps[ids["anon"]]) == snap([], capabilities=["ANONYMOUS", "NO_PASSWORD"])
    assert without_changed_at(snaps[ids["any_host"]]) == snap([], capabilities=["NO_PASSWORD", "WILDCARD_HOST"])
    assert without_changed_at(snaps[ids["underscore_host"]]) == snap([], capabilities=["NO_PASSWORD", "WILDCARD_HOST"])
    assert without_changed_at(snaps[ids["escaped_host"]]) == snap([], capabilities=nopw)
    assert without_changed_at(snaps[ids["percent"]]) == snap([], capabilities=nopw)
    assert without_changed_at(snaps[ids["quotes"]]) == snap(
        [
            p(f"database:{unique_prefix}\\_w%", "SELECT"),
            p(f'column:{db}."t.x"."c""q"', "SELECT"),
            p(f'column:{db}."t.x".sp ace', "INSERT"),
        ],
        capabilities=nopw,
    )
    assert without_changed_at(snaps[ids["unicode"]]) == snap(
        [p(f'object:{db}."t.x"', "DELETE", True)], capabilities=["GRANT_ADMIN", "NO_PASSWORD"]
    )
    catalog = MySQLAdapter().fetch(ROOT)
    by_id = {a.identity: a for a in catalog.accounts}
    assert (by_id[ids["longest"]].username, by_id[ids["longest"]].host) == names["longest"]
    assert (by_id[ids["collide1"]].username, by_id[ids["collide2"]].username) == (
        names["collide1"][0],
        names["collide2"][0],
    )
    cross_check(scratch, snaps)


def test_round_trips_do_not_grow_with_accounts(scratch: Scratch, unique_prefix: str) -> None:
    db = scratch.database(f"{unique_prefix}_rt")
    scratch.run(f"CREATE TABLE `{db}`.`t` (a INT)")

    def add(start: int, stop: int) -> None:
        users = [(f"{unique_prefix}_{i}", "10.1.%") for i in range(start, stop)]
        scratch.run("CREATE USER " + ", ".join(["%s@%s"] * len(users)), tuple(x for u in users for x in u))
        scratch.accounts.extend(users)
        for u in users:
            scratch.run(f"GRANT SELECT ON `{db}`.* TO %s@%s", u)
            scratch.run(f"GRANT INSERT (a) ON `{db}`.`t` TO %s@%s", u)

    add(0, 10)
    small = MySQLAdapter().fetch(ROOT)
    add(10, 300)
    large = MySQLAdapter().fetch(ROOT)
    mine = [a for a in large.accounts if a.username.startswith(unique_prefix)]
    assert len(mine) == 300
    assert all(len(a.privileges) == 2 for a in mine)
    assert len([a for a in small.accounts if a.username.startswith(unique_prefix)]) == 10
    assert small.round_trips == large.round_trips == 8


# --- faults ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_closed_port_is_connection_error() -> None:
    with pytest.raises(ConnectionFailed) as info:
        MySQLAdapter().fetch(target(port=_free_port(), connect_timeout=2))
    assert info.value.kind == "connection"
    assert "live-mariadb" in str(info.value) and "check host, port" in str(info.value)


def test_unknown_host_is_connection_error() -> None:
    with pytest.raises(ConnectionFailed):
        MySQLAdapter().test_connection(target(host="wf-no-such-host.invalid", connect_timeout=2))


def test_wrong_password_is_permission_error_without_the_password(scratch: Scratch, unique_prefix: str) -> None:
    scratch.user(f"{unique_prefix}_pw", "%", "IDENTIFIED BY 'Right-Pw-9'")
    secret = "Wrong-Secret-Pw-7"
    with pytest.raises(PermissionDenied) as info:
        MySQLAdapter().fetch(target(username=f"{unique_prefix}_pw", password=secret))
    message = str(info.value)
    assert message.startswith("live-mariadb: authentication failed for")
    assert secret not in message and secret not in repr(info.value.args)


def test_silent_listener_times_out_within_connect_timeout() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        with pytest.raises(TimeoutFailed) as info:
            MySQLAdapter().test_connection(target(port=server.getsockname()[1], connect_timeout=1))
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()
    assert held, "the adapter never reached the listener"
    # the driver's own connect bound ended the wait (ETIMEDOUT), not a refusal: no clock needed
    assert info.value.kind == "timeout" and "within 1s" in str(info.value)
    assert "system error: 110" in str(info.value) or "timed out" in str(info.value).lower()


def test_monitoring_account_without_select_is_permission_error(scratch: Scratch, unique_prefix: str) -> None:
    scratch.user(f"{unique_prefix}_mon", "%", "IDENTIFIED BY 'Mon-Pw-1'")
    with pytest.raises(PermissionDenied) as info:
        MySQLAdapter().fetch(target(username=f"{unique_prefix}_mon", password="Mon-Pw-1"))
    assert "GRANT SELECT ON mysql.* TO" in str(info.value)
    assert "Mon-Pw-1" not in str(info.value)


def test_documented_monitoring_account_can_fetch(scratch: Scratch, unique_prefix: str) -> None:
    """The least-privilege statements of docs/monitoring-accounts.md (MySQL and MariaDB) are enough for a full fetch."""
    user = f"{unique_prefix}_mon"
    scratch.user(user, "%", "IDENTIFIED BY 'Mon-Pw-2'")
    for table in ("global_priv", "db", "tables_priv", "columns_priv", "procs_priv", "proxies_priv", "roles_mapping"):
        scratch.run(f"GRANT SELECT ON mysql.{table} TO %s@%s", (user, "%"))
    db = scratch.database(f"{unique_prefix}_m")
    scratch.run(f"CREATE TABLE `{db}`.`t` (a INT)")
    scratch.run(f"CREATE PROCEDURE `{db}`.`p`() SELECT 1")
    scratch.role(f"{unique_prefix}_mr")
    scratch.user(f"{unique_prefix}_mu", "10.%", "IDENTIFIED BY 'Mu-Pw-1' ACCOUNT LOCK")
    mu = f"'{unique_prefix}_mu'@'10.%'"
    for sql in (
        f"GRANT RELOAD ON *.* TO `{unique_prefix}_mr`",
        f"GRANT `{unique_prefix}_mr` TO {mu} WITH ADMIN OPTION",
        f"SET DEFAULT ROLE `{unique_prefix}_mr` FOR {mu}",
        f"GRANT SELECT ON `{db}`.* TO {mu}",
        f"GRANT INSERT (a) ON `{db}`.`t` TO {mu}",
        f"GRANT UPDATE ON `{db}`.`t` TO {mu} WITH GRANT OPTION",
        f"GRANT EXECUTE ON PROCEDURE `{db}`.`p` TO {mu}",
    ):
        scratch.run(sql)

    mon = MySQLAdapter().fetch(target(username=user, password="Mon-Pw-2"))
    full = MySQLAdapter().fetch(ROOT)

    def mine(catalog: Any) -> dict[str, dict[str, Any]]:
        return {a.identity: a.snapshot() for a in catalog.accounts if a.username.startswith(unique_prefix)}

    assert len(mine(full)) == 3
    assert len(mine(full)[mu]["privileges"]) == 4
    assert mine(mon) == mine(full)
    assert mon.round_trips == 8
