"""Grant scripts, round trip on the live servers: export, replay on a scratch copy, sync, compare.

Why: a script is only worth something if running it gives the same access. A fixed seed makes
a varied set of accounts and roles with real CREATE USER/ROLE and GRANT (global, database,
schema, table, column, routine, sequence and default privileges, grant and admin options,
default roles, attributes), with names that are hostile but legal (quotes, backticks, double
quotes, semicolons, a newline, unicode, `%`/`_` hosts). WhaleFall syncs them, exports the
selection's script with every name's `o` prefix renamed to `r` (accounts and the database),
the test replays the text statement by statement on a scratch database that mirrors the
original's objects, syncs the copies and asserts that each copy's stored snapshot equals its
original's with the same renaming. Everything created is dropped afterwards, by prefix.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import pytest

from accountsync.adapters.base import ConnectionTarget, get_adapter
from accountsync.models import AccountPermission, InstanceAccount
from accountsync.services import account_sync_apply
from grantscripts.scripts import Options, Rename
from grantscripts.services import selection_script
from tests.grantscripts.replay import split_statements
from tests.livedb import MARIADB, POSTGRES

pytestmark = [pytest.mark.live, pytest.mark.django_db]

SEED = 2323
PLACEHOLDER = "wf-replay-placeholder-1"
# attributes that say when something happened, not what may be done: a copy made later differs there
TIME_ATTRIBUTES = ("password_last_changed",)


def scoped_sync(instance: Any, prefix: str) -> None:
    catalog = get_adapter(instance.db_type).fetch(ConnectionTarget.from_instance(instance)).finalize()
    catalog.accounts = [a for a in catalog.accounts if a.username.startswith(prefix)]
    account_sync_apply(instance=instance, catalog=catalog)


def stored(instance: Any, prefix: str) -> dict[str, dict[str, Any]]:
    """identity -> open snapshot (without time attributes) of the instance's accounts named with `prefix`."""
    out = {}
    for identity, snapshot in AccountPermission.objects.filter(
        instance=instance, valid_to__isnull=True, account__username__startswith=prefix
    ).values_list("account__identity", "snapshot"):
        for name in TIME_ATTRIBUTES:
            snapshot["attributes"].pop(name, None)
        out[identity] = snapshot
    return out


def renamed(snapshots: dict[str, dict[str, Any]], old: str, new: str) -> dict[str, dict[str, Any]]:
    """The snapshots once every name's unique prefix `old` is `new` (a text replace: the prefix is unique)."""
    return json.loads(json.dumps(snapshots, sort_keys=True).replace(old, new))


def export(instance: Any, src: str, dst: str) -> str:
    accounts = InstanceAccount.objects.filter(instance=instance, username__startswith=src, is_active=True)
    names = {a.username: dst + a.username[len(src) :] for a in accounts}
    options = Options(rename=Rename(accounts=names, databases=RenameAll(src, dst)), placeholder=PLACEHOLDER)
    return "".join(selection_script(accounts=accounts, options=options))


class RenameAll(dict):
    """A database mapping that renames any name starting with `src` (the scratch copies are made by rule)."""

    def __init__(self, src: str, dst: str) -> None:
        super().__init__()
        self.src, self.dst = src, dst

    def get(self, key: str, default: Any = None) -> Any:
        return self.dst + key[len(self.src) :] if key.startswith(self.src) else default


# --- MariaDB --------------------------------------------------------------------------------

MARIADB_HOSTILE = ["o'brien", 'dq"uote', "back`tick", "semi;colon", "new\nline", "ünï报", "back\\slash", "%_"]
MARIADB_HOSTS = ["%", "10.0.%", "localhost", "127.0.0.1", "h_st", "o'host"]
MARIADB_GLOBAL = ["PROCESS", "SHOW DATABASES", "RELOAD", "REPLICATION CLIENT", "CREATE USER"]
MARIADB_DB = ["SELECT", "INSERT", "UPDATE", "DELETE", "CREATE VIEW", "SHOW VIEW", "EVENT", "TRIGGER"]
MARIADB_TABLE = ["SELECT", "INSERT", "UPDATE", "DELETE", "INDEX", "ALTER", "REFERENCES"]
MARIADB_COLUMN = ["SELECT", "INSERT", "UPDATE", "REFERENCES"]


def q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class MariaDBScene:
    def __init__(self, admin: Any, tag: str) -> None:
        self.admin, self.tag = admin, tag

    def run(self, statement: str) -> list[tuple[Any, ...]]:
        with self.admin.cursor() as cur:
            cur.execute(statement)
            return list(cur.fetchall() or ())

    def build_objects(self, prefix: str) -> tuple[str, list[str], dict[str, list[str]], str]:
        """The database, its tables (with columns) and a procedure, all under `prefix`; returns their names."""
        db = f"{prefix}_db'x"
        self.run(f"CREATE DATABASE {q(db)}")
        tables = {"or'ders": ["id", "na;me", 'e"mail'], "cus`tomers": ["id", "ünï", "sp ace"], "t_1": ["id", "v"]}
        for table, cols in tables.items():
            body = ", ".join(f"{q(c)} INT" for c in cols)
            self.run(f"CREATE TABLE {q(db)}.{q(table)} ({body})")
        proc = 'p"roc;1'
        self.run(f"CREATE PROCEDURE {q(db)}.{q(proc)}() SELECT 1")
        return db, list(tables), tables, proc

    def cleanup(self) -> None:
        like = self.tag.replace("_", "\\_") + "%"
        for user, host in self.run(f"SELECT User, Host FROM mysql.user WHERE User LIKE '{like}'"):
            user = user.decode() if isinstance(user, bytes) else user
            host = host.decode() if isinstance(host, bytes) else host
            if host:
                self.run(f"DROP USER IF EXISTS {q(user)}@{q(host)}")
            else:
                self.run(f"DROP ROLE IF EXISTS {q(user)}")
        for (db,) in self.run(f"SHOW DATABASES LIKE '{like}'"):
            self.run(f"DROP DATABASE IF EXISTS {q(db.decode() if isinstance(db, bytes) else db)}")


@pytest.fixture
def mariadb_scene(mariadb_admin: Any, unique_prefix: str) -> Iterator[MariaDBScene]:
    scene = MariaDBScene(mariadb_admin, unique_prefix)
    try:
        yield scene
    finally:
        scene.cleanup()


def build_mariadb(scene: MariaDBScene, rng: random.Random, src: str) -> int:
    """Random roles and users with varied grants under the `src` prefix; returns how many accounts."""
    db, tables, columns, proc = scene.build_objects(src)
    roles = [f"{src}r{i} {name}" for i, name in enumerate(rng.sample(MARIADB_HOSTILE, 3))]
    for role in roles:
        scene.run(f"CREATE ROLE {q(role)}")
    users = []
    for i, (name, host) in enumerate(zip(rng.sample(MARIADB_HOSTILE, 5), rng.sample(MARIADB_HOSTS, 5), strict=True)):
        user = f"{src}u{i}{name}"
        extras = []
        if rng.random() < 0.4:
            extras.append(f"WITH MAX_QUERIES_PER_HOUR {rng.randint(1, 99)} MAX_USER_CONNECTIONS {rng.randint(1, 9)}")
        require = " REQUIRE SSL" if rng.random() < 0.3 else ""
        secret = "" if i == 0 else " IDENTIFIED BY 'Orig-Pa55'"  # the first has no password: replayed without one
        scene.run(f"CREATE USER {q(user)}@{q(host)}{secret}{require} {' '.join(extras)}")
        if rng.random() < 0.3:
            scene.run(f"ALTER USER {q(user)}@{q(host)} ACCOUNT LOCK")
        if rng.random() < 0.3:
            scene.run(f"ALTER USER {q(user)}@{q(host)} PASSWORD EXPIRE INTERVAL {rng.randint(10, 90)} DAY")
        users.append(f"{q(user)}@{q(host)}")
    grantees = users + [q(r) for r in roles]
    option = lambda: " WITH GRANT OPTION" if rng.random() < 0.35 else ""  # noqa: E731
    for grantee in grantees:
        if rng.random() < 0.5:
            scene.run(f"GRANT {', '.join(rng.sample(MARIADB_GLOBAL, 2))} ON *.* TO {grantee}{option()}")
        if rng.random() < 0.7:
            scene.run(f"GRANT {', '.join(rng.sample(MARIADB_DB, 3))} ON {q(db)}.* TO {grantee}{option()}")
        for table in rng.sample(tables, 2):
            scene.run(f"GRANT {', '.join(rng.sample(MARIADB_TABLE, 2))} ON {q(db)}.{q(table)} TO {grantee}{option()}")
        table = rng.choice(tables)
        cols = rng.sample(columns[table], 2)
        privs = ", ".join(f"{p} ({q(c)})" for p, c in zip(rng.sample(MARIADB_COLUMN, 2), cols, strict=True))
        scene.run(f"GRANT {privs} ON {q(db)}.{q(table)} TO {grantee}")
        if rng.random() < 0.5:
            scene.run(f"GRANT EXECUTE ON PROCEDURE {q(db)}.{q(proc)} TO {grantee}{option()}")
    scene.run(f"GRANT ALL PRIVILEGES ON {q(db)}.* TO {users[-1]} WITH GRANT OPTION")
    scene.run(f"GRANT {q(roles[1])} TO {q(roles[0])}")  # a role of a role
    for j, user in enumerate(users):
        held = rng.sample(roles, 2)
        for role in held:
            admin = " WITH ADMIN OPTION" if j == 0 or rng.random() < 0.4 else ""
            scene.run(f"GRANT {q(role)} TO {user}{admin}")
        if rng.random() < 0.7:
            scene.run(f"SET DEFAULT ROLE {q(held[0])} FOR {user}")
    return len(roles) + len(users)


def test_mariadb_grant_script_round_trip(mariadb_scene: MariaDBScene, make_instance, make_credential) -> None:
    print(f"grant-script round trip seed: {SEED}")
    rng = random.Random(SEED)
    src, dst = mariadb_scene.tag + "o", mariadb_scene.tag + "r"
    count = build_mariadb(mariadb_scene, rng, src)
    instance = make_instance(
        "mysql", port=MARIADB["port"], credential=make_credential(name="root", username="root", password="")
    )
    scoped_sync(instance, src)
    originals = stored(instance, src)
    assert len(originals) == count

    script = export(instance, src, dst)
    assert "Orig-Pa55" not in script and PLACEHOLDER in script
    assert "passwords and hashes are never stored" in script
    mariadb_scene.build_objects(dst)  # the scratch copy of the objects, empty of grants
    for statement in split_statements(script):
        try:
            mariadb_scene.run(statement)
        except Exception as exc:  # name the statement that did not replay
            raise AssertionError(f"replay failed: {statement!r}: {exc}") from exc

    scoped_sync(instance, src[:-1])  # originals and copies: the originals stay active
    copies = stored(instance, dst)
    assert set(copies) == set(renamed({k: 1 for k in originals}, src, dst))
    expected = renamed(originals, src, dst)
    for identity, snapshot in sorted(copies.items()):
        assert snapshot == expected[identity], identity
    # the copies really hold something: the comparison is not over empty snapshots
    assert sum(len(s["privileges"]) for s in copies.values()) > 3 * count
    assert any(r["admin_option"] for s in copies.values() for r in s["roles"])
    assert any(p["grantable"] for s in copies.values() for p in s["privileges"])


# --- PostgreSQL --------------------------------------------------------------------------

PG_HOSTILE = ["o'brien", 'dq"uote', "dot.ted", "sp ace", "ünïcødé", "报表", "MiXeD", "semi;colon", "new\nline", "%_"]
PG_TABLE = ["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"]
PG_COLUMN = ["SELECT", "INSERT", "UPDATE", "REFERENCES"]


def dq(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresScene:
    def __init__(self, admin: Any, tag: str) -> None:
        self.admin, self.tag = admin, tag
        self.conns: dict[str, Any] = {}

    def run(self, statement: str, db: str | None = None) -> list[tuple[Any, ...]]:
        conn = self.admin if db is None else self.conn(db)
        with conn.cursor() as cur:
            cur.execute(statement.encode())
            return list(cur.fetchall()) if cur.description else []

    def conn(self, db: str) -> Any:
        import psycopg

        if db not in self.conns:
            self.conns[db] = psycopg.connect(**{**POSTGRES, "dbname": db}, autocommit=True)
        return self.conns[db]

    def build_objects(self, prefix: str) -> tuple[str, str, list[str], dict[str, list[str]], str, str]:
        db, schema = f"{prefix}_db'x", 'sch."q";1'
        self.run(f"CREATE DATABASE {dq(db)}")
        self.run(f"CREATE SCHEMA {dq(schema)}", db)
        tables = {"or'ders": ["id", "na;me", 'e"mail'], "Cust.omers": ["id", "ünï", "sp ace"]}
        for table, cols in tables.items():
            body = ", ".join(f"{dq(c)} int" for c in cols)
            self.run(f"CREATE TABLE {dq(schema)}.{dq(table)} ({body})", db)
        sequence = "se'q"
        self.run(f"CREATE SEQUENCE {dq(schema)}.{dq(sequence)}", db)
        function = "f'n(x)"
        self.run(f"CREATE FUNCTION {dq(schema)}.{dq(function)}(a integer) RETURNS int LANGUAGE sql AS 'SELECT 1'", db)
        return db, schema, list(tables), tables, sequence, function

    def cleanup(self) -> None:
        for conn in self.conns.values():
            conn.close()
        like = self.tag + "%"
        for (db,) in self.run(f"SELECT datname FROM pg_database WHERE datname LIKE '{like}'"):
            self.run(f"DROP DATABASE IF EXISTS {dq(db)} WITH (FORCE)")
        roles = [r for (r,) in self.run(f"SELECT rolname FROM pg_roles WHERE rolname LIKE '{like}'")]
        for role in roles:  # default privileges held in other databases are gone with them
            self.run(f"DROP OWNED BY {dq(role)}")
        for role in roles:
            self.run(f"DROP ROLE IF EXISTS {dq(role)}")


@pytest.fixture
def postgres_scene(postgres_admin: Any, unique_prefix: str) -> Iterator[PostgresScene]:
    scene = PostgresScene(postgres_admin, unique_prefix)
    try:
        yield scene
    finally:
        scene.cleanup()


def build_postgres(scene: PostgresScene, rng: random.Random, src: str) -> tuple[int, str]:
    db, schema, tables, columns, sequence, function = scene.build_objects(src)
    names = rng.sample(PG_HOSTILE, 7)
    roles = [f"{src}r{i} {name}" for i, name in enumerate(names[:3])]
    users = [f"{src}u{i} {name}" for i, name in enumerate(names[3:])]
    for role in roles:
        scene.run(f"CREATE ROLE {dq(role)} {rng.choice(['NOINHERIT', 'INHERIT'])}")
    for i, user in enumerate(users):
        words = ["LOGIN"]
        if i:
            words.append("PASSWORD 'Orig-Pa55'")
        if rng.random() < 0.5:
            words.append(f"CONNECTION LIMIT {rng.randint(1, 20)}")
        if rng.random() < 0.5:
            words.append("VALID UNTIL '2031-02-03 04:05:06+00'")
        words += rng.sample(["CREATEDB", "CREATEROLE", "REPLICATION", "BYPASSRLS", "NOINHERIT"], 2)
        scene.run(f"CREATE ROLE {dq(user)} {' '.join(words)}")
    option = lambda: " WITH GRANT OPTION" if rng.random() < 0.35 else ""  # noqa: E731
    qualified = lambda name: f"{dq(schema)}.{dq(name)}"  # noqa: E731
    for grantee in (dq(n) for n in roles + users):
        scene.run(
            f"GRANT {', '.join(rng.sample(['CONNECT', 'CREATE', 'TEMPORARY'], 2))} ON DATABASE {dq(db)} "
            f"TO {grantee}{option()}"
        )
        scene.run(
            f"GRANT {rng.choice(['USAGE', 'CREATE', 'USAGE, CREATE'])} ON SCHEMA {dq(schema)} TO {grantee}{option()}",
            db,
        )
        for table in rng.sample(tables, rng.randint(1, 2)):
            scene.run(
                f"GRANT {', '.join(rng.sample(PG_TABLE, 3))} ON TABLE {qualified(table)} TO {grantee}{option()}", db
            )
        table = rng.choice(tables)
        privs = ", ".join(
            f"{p} ({dq(c)})" for p, c in zip(rng.sample(PG_COLUMN, 2), rng.sample(columns[table], 2), strict=True)
        )
        scene.run(f"GRANT {privs} ON TABLE {qualified(table)} TO {grantee}{option()}", db)
        if rng.random() < 0.6:
            scene.run(
                f"GRANT {rng.choice(['USAGE', 'SELECT', 'USAGE, UPDATE'])} ON SEQUENCE {qualified(sequence)} "
                f"TO {grantee}{option()}",
                db,
            )
        if rng.random() < 0.6:
            scene.run(f"GRANT EXECUTE ON FUNCTION {qualified(function)}(integer) TO {grantee}{option()}", db)
    # default privileges: what objects a role creates later will grant
    creator = roles[0]
    scene.run(
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {dq(creator)} IN SCHEMA {dq(schema)} "
        f"GRANT SELECT, INSERT ON TABLES TO {dq(users[0])} WITH GRANT OPTION",
        db,
    )
    scene.run(f"ALTER DEFAULT PRIVILEGES FOR ROLE {dq(creator)} GRANT USAGE ON SEQUENCES TO {dq(roles[1])}", db)
    # ownership of a table
    scene.run(f"ALTER TABLE {qualified(tables[1])} OWNER TO {dq(roles[2])}", db)
    # memberships: roles of roles and users, some with ADMIN OPTION
    scene.run(f"GRANT {dq(roles[1])} TO {dq(roles[0])}")
    for user in users:
        for role in rng.sample(roles, 2):
            scene.run(
                f"GRANT {dq(role)} TO {dq(user)}"
                f"{' WITH ADMIN OPTION' if user == users[0] or rng.random() < 0.4 else ''}"
            )
    scene.run(f"GRANT pg_read_all_stats TO {dq(users[1])}")
    return len(roles) + len(users), db


def test_postgresql_grant_script_round_trip(postgres_scene: PostgresScene, make_instance, make_credential) -> None:
    print(f"grant-script round trip seed: {SEED}")
    rng = random.Random(SEED)
    src, dst = postgres_scene.tag + "o", postgres_scene.tag + "r"
    count, src_db = build_postgres(postgres_scene, rng, src)
    dst_db = dst + src_db[len(src) :]
    instance = make_instance(
        "postgresql",
        port=POSTGRES["port"],
        credential=make_credential(name="pg", username="postgres", password=""),
        database_name="postgres",
        options={"databases": [src_db, dst_db]},
    )
    scoped_sync(instance, src)
    originals = stored(instance, src)
    assert len(originals) == count

    script = export(instance, src, dst)
    assert "Orig-Pa55" not in script and PLACEHOLDER in script
    postgres_scene.build_objects(dst)
    current: str | None = None
    for statement in split_statements(script):
        if statement.startswith("\\connect "):
            name = statement[len("\\connect ") :]
            assert name.startswith('"') and name.endswith('"')
            current = name[1:-1].replace('""', '"')
            continue
        try:
            postgres_scene.run(statement, current)
        except Exception as exc:
            raise AssertionError(f"replay failed in {current!r}: {statement!r}: {exc}") from exc

    scoped_sync(instance, src[:-1])  # originals and copies: the originals stay active
    copies = stored(instance, dst)
    expected = renamed(originals, src, dst)
    assert set(copies) == set(expected)
    for identity, snapshot in sorted(copies.items()):
        assert snapshot == expected[identity], identity
    assert sum(len(s["privileges"]) for s in copies.values()) > 4 * count
    assert any(p["scope"].startswith("default:") for s in copies.values() for p in s["privileges"])
    assert any(p["privilege"] == "OWNER" for s in copies.values() for p in s["privileges"])
    assert any(r["admin_option"] for s in copies.values() for r in s["roles"])
