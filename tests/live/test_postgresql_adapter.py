"""The PostgreSQL adapter against the live PostgreSQL: real CREATE ROLE / GRANT.

Every test creates uniquely prefixed roles and a scratch database, asserts the
exact canonical snapshot, cross-checks direct grants with the server's own
has_*_privilege functions, and drops what it made.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from accountsync.adapters.base import (
    AccountRecord,
    Catalog,
    ConfigurationError,
    ConnectionFailed,
    ConnectionTarget,
    GapKind,
    PermissionDenied,
    TimeoutFailed,
    get_adapter,
    make_scope,
)
from accountsync.adapters.postgresql import (
    CREATEROLE_BEFORE_16,
    DatabaseRows,
    PostgreSQLAdapter,
    ServerRows,
    build_catalog,
)
from tests.livedb import POSTGRES

pytestmark = pytest.mark.live


def target(**kw: Any) -> ConnectionTarget:
    values: dict[str, Any] = {
        "name": "live-postgres",
        "db_type": "postgresql",
        "host": "127.0.0.1",
        "port": POSTGRES["port"],
        "username": "postgres",
        "password": "",
    }
    values.update(kw)
    return ConnectionTarget(**values)


def P(scope: str, privilege: str, grantable: bool = False) -> dict[str, Any]:
    return {"scope": scope, "privilege": privilege, "grantable": grantable, "effect": "GRANT"}


def unreadable(catalog: Catalog) -> dict[str, Any]:
    """The catalog's unreadable gaps by scope (out-of-scope ones are every other database on the shared server)."""
    return {g.scope: g for g in catalog.coverage if g.kind == GapKind.UNREADABLE}


def account(catalog: Catalog, name: str) -> AccountRecord:
    matches = [a for a in catalog.accounts if a.identity == name]
    assert len(matches) == 1, name
    return matches[0]


class Scratch:
    """Runs statements as the superuser and remembers what to drop."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.roles: list[str] = []
        self.databases: list[str] = []
        self.db_conns: dict[str, Any] = {}

    def run(self, statement: Any, params: tuple[Any, ...] | None = None, db: str | None = None) -> list[Any]:
        conn = self.conn if db is None else self.db_conns[db]
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return list(cur.fetchall()) if cur.description else []

    def role(self, name: str, options: str = "NOLOGIN") -> str:
        self.run(sql.SQL("CREATE ROLE {} " + options).format(sql.Identifier(name)))
        self.roles.append(name)
        return name

    def database(self, name: str, owner: str | None = None) -> str:
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if owner:
            stmt = stmt + sql.SQL(" OWNER {}").format(sql.Identifier(owner))
        self.run(stmt)
        self.databases.append(name)
        self.db_conns[name] = psycopg.connect(
            host="127.0.0.1", port=POSTGRES["port"], user="postgres", dbname=name, autocommit=True
        )
        return name

    def cleanup(self) -> None:
        for conn in self.db_conns.values():
            conn.close()
        for db in reversed(self.databases):
            self.run(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        for role in reversed(self.roles):
            self.run(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture
def scratch(postgres_admin: Any) -> Iterator[Scratch]:
    s = Scratch(postgres_admin)
    try:
        yield s
    finally:
        s.cleanup()


def test_registry_and_version() -> None:
    adapter = get_adapter("postgresql")
    assert isinstance(adapter, PostgreSQLAdapter)
    version = adapter.test_connection(target())
    assert version.startswith("PostgreSQL 15.")
    assert version.split()[1].replace(".", "").isdigit()


def test_every_level_exact_snapshot_and_cross_check(scratch: Scratch, unique_prefix: str) -> None:
    p = unique_prefix
    own = scratch.role(f"{p}_own")
    user = scratch.role(f"{p}_u", "LOGIN PASSWORD 'pw-not-shown' CONNECTION LIMIT 3")
    admin_role = scratch.role(f"{p}_r", "NOLOGIN CREATEROLE")
    su_role = scratch.role(f"{p}_su", "NOLOGIN SUPERUSER")
    su_holder = scratch.role(f"{p}_x", "LOGIN")
    expired = scratch.role(f"{p}_exp", "LOGIN VALID UNTIL '2000-01-01 00:00:00+00'")
    db = scratch.database(f"{p}_db", owner=own)
    ident = sql.Identifier
    scratch.run(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident(db)))
    scratch.run(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(ident(db), ident(user)))
    scratch.run(sql.SQL("GRANT CREATE ON DATABASE {} TO {} WITH GRANT OPTION").format(ident(db), ident(user)))
    for stmt in (
        "CREATE SCHEMA s AUTHORIZATION {own}",
        "CREATE TABLE s.t (id int, c text)",
        "CREATE SEQUENCE s.seq",
        "CREATE FUNCTION s.f(integer) RETURNS integer LANGUAGE sql AS 'SELECT 1'",
        "ALTER TABLE s.t OWNER TO {own}",
        "ALTER SEQUENCE s.seq OWNER TO {own}",
        "ALTER FUNCTION s.f(integer) OWNER TO {own}",
        "GRANT USAGE ON SCHEMA s TO {u}",
        "GRANT SELECT ON s.t TO {u}",
        "GRANT INSERT ON s.t TO {u} WITH GRANT OPTION",
        "GRANT UPDATE (c) ON s.t TO {u}",
        "GRANT USAGE ON SEQUENCE s.seq TO {u}",
        "GRANT EXECUTE ON FUNCTION s.f(integer) TO {u}",
        "ALTER DEFAULT PRIVILEGES FOR ROLE {own} IN SCHEMA s GRANT SELECT ON TABLES TO {u}",
    ):
        scratch.run(sql.SQL(stmt).format(own=ident(own), u=ident(user)), db=db)
    scratch.run(sql.SQL("GRANT {} TO {} WITH ADMIN OPTION").format(ident(admin_role), ident(user)))
    scratch.run(sql.SQL("GRANT {} TO {}").format(ident(su_role), ident(su_holder)))

    catalog = PostgreSQLAdapter().fetch(target(options={"databases": [db]}))

    assert catalog.round_trips == 10  # 5 instance-wide + 5 for the one database
    assert catalog.details["databases_read"] == [db]
    assert unreadable(catalog) == {}
    assert "database:postgres" in {g.scope for g in catalog.coverage if g.kind == GapKind.OUT_OF_SCOPE}
    pre16 = int(catalog.server_version.split()[1].split(".")[0]) < 16
    sdb, ss, st = f"database:{db}", f"schema:{db}.s", f"object:{db}.s.t"
    sseq, sf = f"object:{db}.s.seq", f"routine:{db}.s.f(integer)"
    user_snap = account(catalog, user).snapshot()
    reasons = user_snap["attributes"].pop("capability_reasons", {})
    # before PostgreSQL 16 the CREATEROLE of admin_role is an escalation route to SUPERUSER, named with its path
    assert reasons.get("SUPERUSER") == ([f"via role {admin_role} ({CREATEROLE_BEFORE_16})"] if pre16 else None)
    assert user_snap == {
        "schema_version": 1,
        "privileges": [
            P(f"column:{db}.s.t.c", "UPDATE"),
            P(sdb, "CONNECT"),
            P(sdb, "CREATE", True),
            P(f"default:{db}.s.tables.{own}", "SELECT"),
            P(sseq, "USAGE"),
            P(st, "INSERT", True),
            P(st, "SELECT"),
            P(sf, "EXECUTE"),
            P(ss, "USAGE"),
        ],
        "roles": [{"role": admin_role, "admin_option": True, "default": True}],
        "attributes": {
            "bypassrls": False,
            "connection_limit": 3,
            "createdb": False,
            "createrole": False,
            "inherit": True,
            "login": True,
            "password_set": True,
            "replication": False,
            "superuser": False,
            "valid_until": None,
        },
        "capabilities": ["CREATE_USER", "GRANT_ADMIN", *(["SUPERUSER"] if pre16 else [])],
        "unknown_scopes": [],
    }
    table_privs = ["DELETE", "INSERT", "REFERENCES", "SELECT", "TRIGGER", "TRUNCATE", "UPDATE"]
    owner_snap = account(catalog, own).snapshot()
    assert owner_snap["privileges"] == sorted(
        [P(sdb, x) for x in ("CONNECT", "CREATE", "TEMPORARY")]
        + [P(ss, x) for x in ("CREATE", "USAGE")]
        + [P(st, x) for x in table_privs]
        + [P(sseq, x) for x in ("SELECT", "UPDATE", "USAGE")]
        + [P(sf, "EXECUTE")]
        + [P(scope, "OWNER", True) for scope in (sdb, ss, st, sseq, sf)],
        key=lambda d: (d["scope"], d["privilege"], d["grantable"]),
    )
    assert owner_snap["capabilities"] == ["GRANT_ADMIN"]
    assert owner_snap["attributes"]["login"] is False
    assert account(catalog, own).kind == "role"
    assert account(catalog, user).kind == "user"

    holder = account(catalog, su_holder)
    assert holder.snapshot()["capabilities"] == ["NO_PASSWORD", "SUPERUSER"]
    assert holder.snapshot()["roles"] == [{"role": su_role, "admin_option": False, "default": True}]
    assert holder.is_superuser is True
    assert account(catalog, su_role).snapshot()["capabilities"] == ["SUPERUSER"]
    exp = account(catalog, expired).snapshot()
    assert exp["capabilities"] == ["EXPIRED", "NO_PASSWORD"]
    assert exp["attributes"]["valid_until"] == "2000-01-01T00:00:00+00:00"
    assert exp["privileges"] == []
    assert {"scope": sf, "privilege": "EXECUTE", "grantable": False} in catalog.details["public_grants"]
    assert not [g for g in catalog.details["public_grants"] if g["scope"] == sdb]

    # The server's own view agrees with every direct privilege (and absence) of the user.
    snap_privs = {(d["scope"], d["privilege"]) for d in account(catalog, user).snapshot()["privileges"]}
    for priv in ("CONNECT", "CREATE", "TEMPORARY"):
        (has,) = scratch.run("SELECT has_database_privilege(%s, %s, %s)", (user, db, priv))[0]
        assert has is ((sdb, priv) in snap_privs), priv
    for priv in ("USAGE", "CREATE"):
        (has,) = scratch.run("SELECT has_schema_privilege(%s, 's', %s)", (user, priv), db=db)[0]
        assert has is ((ss, priv) in snap_privs), priv
    for priv in table_privs:
        (has,) = scratch.run("SELECT has_table_privilege(%s, 's.t', %s)", (user, priv), db=db)[0]
        assert has is ((st, priv) in snap_privs), priv
        if priv in ("SELECT", "INSERT", "UPDATE", "REFERENCES"):
            (col,) = scratch.run("SELECT has_column_privilege(%s, 's.t', 'c', %s)", (user, priv), db=db)[0]
            assert col is (has or (f"column:{db}.s.t.c", priv) in snap_privs), priv
    (grant_opt,) = scratch.run("SELECT has_table_privilege(%s, 's.t', 'INSERT WITH GRANT OPTION')", (user,), db=db)[0]
    assert grant_opt is True


def test_hostile_names(scratch: Scratch, unique_prefix: str) -> None:
    p = unique_prefix
    quirky = scratch.role(f'{p} it\'s "q" \\ %_. ü', "LOGIN")
    longest = scratch.role(f"{p}_" + "é" * ((63 - len(p) - 1) // 2), "NOLOGIN")
    assert len(longest.encode()) == 63
    db = scratch.database(f'{p} d.b"%_')
    schema, table, column = 'a.b"c', "t \\ %_ 😀", "col.x"
    ident = sql.Identifier
    scratch.run(sql.SQL("CREATE SCHEMA {}").format(ident(schema)), db=db)
    scratch.run(sql.SQL("CREATE TABLE {}.{} ({} int)").format(ident(schema), ident(table), ident(column)), db=db)
    scratch.run(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(ident(schema), ident(quirky)), db=db)
    scratch.run(sql.SQL("GRANT SELECT ON {}.{} TO {}").format(ident(schema), ident(table), ident(longest)), db=db)
    scratch.run(
        sql.SQL("GRANT UPDATE ({}) ON {}.{} TO {}").format(ident(column), ident(schema), ident(table), ident(quirky)),
        db=db,
    )
    scratch.run(sql.SQL("GRANT {} TO {}").format(ident(longest), ident(quirky)))

    catalog = PostgreSQLAdapter().fetch(target(options={"databases": [db]}))

    quoted_db = '"' + db.replace('"', '""') + '"'
    assert make_scope("schema", db, schema) == f'schema:{quoted_db}."a.b""c"'
    assert account(catalog, quirky).snapshot()["privileges"] == [
        P(f'column:{quoted_db}."a.b""c".{table}."col.x"', "UPDATE"),
        P(f'schema:{quoted_db}."a.b""c"', "USAGE"),
    ]
    assert account(catalog, quirky).snapshot()["roles"] == [{"role": longest, "admin_option": False, "default": True}]
    assert account(catalog, longest).snapshot()["privileges"] == [P(make_scope("object", db, schema, table), "SELECT")]
    qualified = sql.Identifier(schema, table).as_string(scratch.conn)
    (has,) = scratch.run("SELECT has_table_privilege(%s, %s, 'SELECT')", (longest, qualified), db=db)[0]
    assert has is True


def test_round_trips_do_not_grow_with_roles(scratch: Scratch, unique_prefix: str) -> None:
    db = scratch.database(f"{unique_prefix}_rt")
    scratch.run("CREATE TABLE t (id int)", db=db)

    def add_roles(start: int, stop: int) -> None:
        for i in range(start, stop):
            name = scratch.role(f"{unique_prefix}_{i:03d}", "LOGIN")
            ident = sql.Identifier(name)
            scratch.run(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(db), ident))
            scratch.run(sql.SQL("GRANT SELECT ON t TO {}").format(ident), db=db)

    tgt = target(options={"databases": [db]})
    add_roles(0, 10)
    small = PostgreSQLAdapter().fetch(tgt)
    add_roles(10, 300)
    large = PostgreSQLAdapter().fetch(tgt)
    mine = [a for a in large.accounts if a.identity.startswith(unique_prefix + "_")]
    assert len([a for a in small.accounts if a.identity.startswith(unique_prefix + "_")]) == 10
    assert len(mine) == 300
    assert all(P(f"object:{db}.public.t", "SELECT") in a.snapshot()["privileges"] for a in mine)
    assert small.round_trips == large.round_trips == 10


def test_unreadable_database_is_unknown_not_empty(scratch: Scratch, unique_prefix: str) -> None:
    p = unique_prefix
    mon = scratch.role(f"{p}_mon", "LOGIN")
    victim = scratch.role(f"{p}_v", "LOGIN")
    locked = scratch.database(f"{p}_locked")
    ident = sql.Identifier
    scratch.run(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(ident(locked)))
    scratch.run(sql.SQL("CREATE TABLE t (id int)"), db=locked)
    scratch.run(sql.SQL("GRANT SELECT ON t TO {}").format(ident(victim)), db=locked)

    catalog = PostgreSQLAdapter().fetch(target(username=mon, options={"databases": [locked, "postgres"]}))

    gap = unreadable(catalog)[f"database:{locked}"]
    assert list(unreadable(catalog)) == [f"database:{locked}"]
    assert f'permission denied for database "{locked}"' in gap.reason
    assert gap.fix == f'GRANT CONNECT ON DATABASE "{locked}" TO "{mon}"'
    assert gap.inclusive is False  # the database's own ACL is read server-wide and stays exact
    assert catalog.unknown_scopes == []
    assert catalog.details["databases_read"] == ["postgres"]
    assert f'permission denied for database "{locked}"' in catalog.details["databases_unreadable"][locked]
    snap = account(catalog, victim).snapshot()
    assert snap["unknown_scopes"] == []
    assert snap["privileges"] == []
    # pg_authid is superuser-only: password_set is omitted, never guessed.
    assert "password_set" not in snap["attributes"]
    assert "NO_PASSWORD" not in snap["capabilities"]
    assert catalog.round_trips == 4 + 5  # no pg_authid read; one database read


def test_maintenance_database_without_connect_names_the_grant(scratch: Scratch, unique_prefix: str) -> None:
    mon = scratch.role(f"{unique_prefix}_mon", "LOGIN")
    locked = scratch.database(f"{unique_prefix}_m")
    scratch.run(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(sql.Identifier(locked)))
    with pytest.raises(PermissionDenied) as err:
        PostgreSQLAdapter().fetch(target(username=mon, database_name=locked))
    assert err.value.instance_name == "live-postgres"
    assert "GRANT CONNECT ON DATABASE" in str(err.value)
    assert locked in str(err.value)


def test_closed_port_is_connection_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionFailed) as err:
        PostgreSQLAdapter().test_connection(target(port=port, password="hunter2-secret"))
    assert "live-postgres" in str(err.value)
    assert "hunter2-secret" not in str(err.value)


def test_unknown_user_is_authentication_failure(unique_prefix: str) -> None:
    with pytest.raises(PermissionDenied) as err:
        PostgreSQLAdapter().fetch(target(username=f"{unique_prefix}_nobody", password="hunter2-secret"))
    assert f"authentication failed for '{unique_prefix}_nobody'" in str(err.value)
    assert "hunter2-secret" not in str(err.value)


@pytest.mark.timeout(60)  # the only limit on time: a connect that never gives up fails here
def test_silent_listener_times_out_within_connect_timeout() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        with pytest.raises(TimeoutFailed) as err:
            PostgreSQLAdapter().test_connection(target(port=server.getsockname()[1], connect_timeout=2))
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()
    assert accepted, "the adapter never reached the silent listener"
    assert "did not answer within 2s" in str(err.value)
    # what ended the wait: psycopg's own connect_timeout, in the driver's words that the adapter keeps
    assert getattr(err.value, "server_words", None) == "connection timeout expired", vars(err.value)


def test_documented_monitoring_role_reads_what_the_superuser_reads(scratch: Scratch, unique_prefix: str) -> None:
    p = unique_prefix
    mon = f"{p}_whalefall"
    ident = sql.Identifier
    scratch.roles.append(mon)
    # The statements of docs/monitoring-accounts.md (PostgreSQL), with the role name made unique.
    scratch.run(
        sql.SQL(
            "CREATE ROLE {} LOGIN PASSWORD 'long-random' NOSUPERUSER NOCREATEDB NOCREATEROLE "
            "NOINHERIT NOREPLICATION CONNECTION LIMIT 2"
        ).format(ident(mon))
    )
    scratch.run(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(ident(mon)))
    user = scratch.role(f"{p}_u", "LOGIN")
    db = scratch.database(f"{p}_app")
    scratch.run(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(ident(db)))
    scratch.run(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(ident(db), ident(mon)))
    scratch.run("CREATE TABLE t (id int)", db=db)
    scratch.run(sql.SQL("GRANT SELECT, UPDATE ON t TO {} WITH GRANT OPTION").format(ident(user)), db=db)

    options = {"databases": [db, "postgres"]}
    as_super = PostgreSQLAdapter().fetch(target(options=options))
    as_mon = PostgreSQLAdapter().fetch(target(username=mon, password="long-random", options=options))

    def mine(catalog: Catalog) -> dict[str, dict[str, Any]]:
        out = {}
        for acc in catalog.accounts:
            if acc.identity.startswith(p):
                snap = acc.snapshot()
                snap["attributes"].pop("password_set", None)
                snap["capabilities"] = [c for c in snap["capabilities"] if c != "NO_PASSWORD"]
                out[acc.identity] = snap
        return out

    assert unreadable(as_mon) == {}
    assert sorted(as_mon.details["databases_read"]) == sorted([db, "postgres"])
    assert mine(as_mon) == mine(as_super)
    assert P(f"object:{db}.public.t", "UPDATE", True) in mine(as_mon)[user]["privileges"]
    assert "password_set" not in account(as_mon, user).attributes
    assert account(as_super, user).attributes["password_set"] is False


def test_databases_option_missing_template_and_invalid(scratch: Scratch, unique_prefix: str) -> None:
    missing = f"{unique_prefix}_absent"
    catalog = PostgreSQLAdapter().fetch(target(options={"databases": ["template1", missing]}))
    gaps = unreadable(catalog)
    assert sorted(gaps) == sorted([f"database:{missing}", "database:template1"])
    assert "databases option" in gaps[f"database:{missing}"].fix
    assert "databases option" in gaps["database:template1"].fix
    out_of_scope = {g.scope for g in catalog.coverage if g.kind == GapKind.OUT_OF_SCOPE}
    assert "database:postgres" in out_of_scope and "database:template1" not in out_of_scope
    assert catalog.unknown_scopes == []
    assert catalog.details["databases_read"] == []
    assert catalog.round_trips == 5
    with pytest.raises(ConfigurationError) as err:
        PostgreSQLAdapter().fetch(target(options={"databases": "postgres"}))
    assert "must be a list of database names" in str(err.value)
    assert err.value.instance_name == "live-postgres"


def test_pg16_membership_options_and_newer_privileges_from_rows() -> None:
    """PostgreSQL 16+/17 only (the live server is 15): rows shaped as those servers return them."""
    role_row = (False, True, False, False, True, False, False, -1, None)
    rows = ServerRows(
        version="17.2 (Debian)",
        version_num=170002,
        roles=[(10, "app", *role_row), (11, "reader", *role_row), (12, "ops", *role_row)],
        members=[(11, 10, False, False, True), (12, 10, True, True, False)],
        databases=[("appdb", True, False, 10, "CONNECT", False, 12)],
        per_database=[
            DatabaseRows(name="appdb", relations=[("public", "t", 10, "MAINTAIN", False, 12)]),
        ],
        passwords={10: True, 11: False, 12: True},
    )
    catalog = build_catalog(rows)
    assert catalog.server_version == "PostgreSQL 17.2"
    snap = account(catalog, "app").snapshot()
    assert snap["roles"] == [
        {"role": "ops", "admin_option": True, "default": True},
        {"role": "reader", "admin_option": False, "default": False},
    ]
    assert snap["privileges"] == [P("database:appdb", "CONNECT"), P("object:appdb.public.t", "MAINTAIN")]
    assert snap["capabilities"] == ["GRANT_ADMIN"]
    assert account(catalog, "reader").snapshot()["capabilities"] == ["NO_PASSWORD"]


@pytest.mark.timeout(60)  # the only limit on time: a statement nothing interrupts fails here
def test_slow_catalog_query_hits_statement_timeout(
    scratch: Scratch, unique_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the client-side statement deadline (normally 2 s here) moved past the test's timeout: only the server's
    # statement_timeout (query_timeout, 1 s) can end the wait on the lock, however slow the machine
    monkeypatch.setattr("accountsync.adapters.postgresql.query_deadline", lambda target: 120.0)
    db = scratch.database(f"{unique_prefix}_slow")
    blocker = psycopg.connect(host="127.0.0.1", port=POSTGRES["port"], user="postgres", dbname=db)
    try:
        blocker.execute("LOCK TABLE pg_catalog.pg_default_acl IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(TimeoutFailed) as err:
            PostgreSQLAdapter().fetch(target(query_timeout=1.0, options={"databases": [db]}))
    finally:
        blocker.rollback()
        blocker.close()
    message = str(err.value)
    assert "exceeded the 1s query timeout" in message
    # the server's own words: it cancelled the statement at its statement_timeout (the client did not)
    assert "canceling statement due to statement timeout" in message and "interrupted" not in message, message
    assert err.value.instance_name == "live-postgres"


def test_grants_to_public_appear_as_the_public_pseudo_role(scratch: Scratch, unique_prefix: str) -> None:
    db = scratch.database(f"{unique_prefix}_pub")
    scratch.run("CREATE TABLE t (id int)", db=db)
    scratch.run("GRANT SELECT, INSERT ON t TO PUBLIC", db=db)
    catalog = PostgreSQLAdapter().fetch(target(options={"databases": [db]}))
    public = account(catalog, "public")
    assert (public.kind, public.attributes) == ("role", {"pseudo_role": True})
    privileges = public.snapshot()["privileges"]
    assert P(f"object:{db}.public.t", "SELECT") in privileges and P(f"object:{db}.public.t", "INSERT") in privileges
    # the server agrees: a role that holds nothing itself can read the table through PUBLIC
    nobody = scratch.role(f"{unique_prefix}_nobody", "LOGIN")
    check = sql.SQL("SELECT has_table_privilege({}, 't', 'SELECT')").format(sql.Literal(nobody))
    assert scratch.run(check, db=db) == [(True,)]
    scratch.run("REVOKE ALL ON t FROM PUBLIC", db=db)
    after = PostgreSQLAdapter().fetch(target(options={"databases": [db]}))
    still = [a for a in after.accounts if a.identity == "public"]  # other databases may keep default grants
    remaining = {(p["scope"], p["privilege"]) for a in still for p in a.snapshot()["privileges"]}
    assert not {s for s in remaining if s[0] == f"object:{db}.public.t"}
    assert scratch.run(check, db=db) == [(False,)]
