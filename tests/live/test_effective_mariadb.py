"""Effective access against what MariaDB really lets a user do, at login and after SET ROLE.

Why: MariaDB activates only the user's default role at login (and the roles that role holds),
and SET ROLE switches to exactly one other role. `effective_access` models this with `active`;
here each user logs in for real (password, 127.0.0.1) and runs SELECT, INSERT and UPDATE on
every table of the scenario, and the server's allow/deny is compared with the active grants.
Then, for every role granted to the user, SET ROLE <role> (and SET ROLE NONE) and compare again
with effective_access on the same catalog where that role is the only one in force. A fixed
seed picks roles of roles, grants (table and database level, direct, to PUBLIC) and default
roles; names carry quotes, spaces, dots and non-ASCII. Everything is dropped afterwards.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import MySQLdb
import pytest

from accountsync.adapters.base import Catalog, ConnectionTarget, make_scope
from accountsync.adapters.mysql import MySQLAdapter, account_identity
from accountsync.effective import EffectiveGrant, effective_access
from tests.livedb import MARIADB

pytestmark = pytest.mark.live

SEED = 1011
ROOT = ConnectionTarget(
    name="live-mariadb", db_type="mysql", host="127.0.0.1", port=MARIADB["port"], username="root", password=""
)
HOSTILE = ["o'brien", 'dq"uote', "dot.ted", "sp ace", "ünïcødé", "报表", "back`tick", "%_"]
PRIVILEGES = ("SELECT", "INSERT", "UPDATE")
DENIED = {1142, 1143, 1044}  # table / column / database access denied


def q(name: str) -> str:
    """A backtick-quoted identifier."""
    return "`" + name.replace("`", "``") + "`"


def lit(text: str) -> str:
    """A string literal (for user names in statements that also hold identifiers with `%`)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def at(user: str) -> str:
    return f"{lit(user)}@'127.0.0.1'"


class Scenario:
    """What the test made: roles, users (with passwords), the database and its tables; drops them all."""

    def __init__(self, admin: Any, tag: str) -> None:
        self.admin = admin
        self.tag = tag
        self.database = f"wfeff{tag}"
        self.tables: list[str] = []
        self.roles: list[str] = []
        self.users: dict[str, str] = {}  # user name -> password (host 127.0.0.1)
        self.public_grants: list[str] = []
        self.public_existed = True

    def run(self, statement: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
        with self.admin.cursor() as cur:
            cur.execute(statement, params)
            return list(cur.fetchall())

    def cleanup(self) -> None:
        for table in self.public_grants:
            self.run(f"REVOKE SELECT ON {q(self.database)}.{q(table)} FROM PUBLIC")
        if not self.public_existed:  # REVOKE leaves PUBLIC's (now empty) row behind: restore the server as found
            self.run("DELETE FROM mysql.global_priv WHERE User = 'PUBLIC' AND Host = ''")
            self.run("FLUSH PRIVILEGES")
        for user in self.users:
            self.run("DROP USER IF EXISTS %s@'127.0.0.1'", (user,))
        for role in self.roles:
            self.run("DROP ROLE IF EXISTS %s", (role,))
        self.run(f"DROP DATABASE IF EXISTS {q(self.database)}")


@pytest.fixture
def scenario(mariadb_admin: Any) -> Iterator[Scenario]:
    s = Scenario(mariadb_admin, uuid.uuid4().hex[:8])
    try:
        yield s
    finally:
        s.cleanup()


def build(s: Scenario, rng: random.Random) -> dict[str, list[str]]:
    """Roles of roles, grants, users and their (default) roles; returns user -> roles granted directly."""
    s.public_existed = bool(s.run("SELECT 1 FROM mysql.global_priv WHERE User = 'PUBLIC' AND Host = ''"))
    s.run(f"CREATE DATABASE {q(s.database)}")
    for i in range(8):
        table = f"t{i} {HOSTILE[i]}"
        s.run(f"CREATE TABLE {q(s.database)}.{q(table)} (c int)")
        s.tables.append(table)
    for i in range(8):
        name = f"r{i} {HOSTILE[(i + 3) % len(HOSTILE)]} {s.tag}"
        s.run("CREATE ROLE %s", (name,))
        s.roles.append(name)
    edges: set[tuple[int, int]] = set()
    while len(edges) < 8:  # role i holds role j > i
        i = rng.randrange(7)
        edges.add((i, rng.randrange(i + 1, 8)))
    for i, j in sorted(edges):
        s.run(f"GRANT {q(s.roles[j])} TO {q(s.roles[i])}")
    for _ in range(30):
        privilege, table, role = rng.choice(PRIVILEGES), rng.choice(s.tables), rng.choice(s.roles)
        s.run(f"GRANT {privilege} ON {q(s.database)}.{q(table)} TO {q(role)}")
    s.run(f"GRANT INSERT ON {q(s.database)}.* TO {q(s.roles[7])}")  # database level, on the deepest role

    granted: dict[str, list[str]] = {}
    for n in range(6):
        user, password = f"u{n} {HOSTILE[n]} {s.tag}", f"pw-{uuid.uuid4().hex}"
        s.run(f"CREATE USER {at(user)} IDENTIFIED BY %s", (password,))
        s.users[user] = password
        held = rng.sample(s.roles, rng.randint(1, 3))
        for role in held:
            s.run(f"GRANT {q(role)} TO {at(user)}")
        if rng.random() < 0.8:
            s.run(f"SET DEFAULT ROLE {q(rng.choice(held))} FOR {at(user)}")
        for _ in range(rng.randint(0, 2)):
            privilege, table = rng.choice(PRIVILEGES), rng.choice(s.tables)
            s.run(f"GRANT {privilege} ON {q(s.database)}.{q(table)} TO {at(user)}")
        granted[user] = held
    s.run(f"GRANT SELECT ON {q(s.database)}.{q(s.tables[5])} TO PUBLIC")  # MariaDB 10.11+
    s.public_grants.append(s.tables[5])
    return granted


def statement(s: Scenario, privilege: str, table: str) -> str:
    where = f"{q(s.database)}.{q(table)}"
    return {
        "SELECT": f"SELECT * FROM {where} LIMIT 0",
        "INSERT": f"INSERT INTO {where} (c) SELECT 1 FROM DUAL WHERE 1 = 0",
        "UPDATE": f"UPDATE {where} SET c = 1 WHERE 1 = 0",
    }[privilege]


def server_allows(s: Scenario, conn: Any) -> set[tuple[str, str]]:
    """(table, privilege) the session may use: each statement run for real, denied ones fail."""
    allowed = set()
    with conn.cursor() as cur:
        for table in s.tables:
            for privilege in PRIVILEGES:
                try:
                    cur.execute(statement(s, privilege, table))
                except MySQLdb.OperationalError as exc:
                    if exc.args[0] not in DENIED:
                        raise
                else:
                    allowed.add((table, privilege))
    return allowed


def ours_allows(s: Scenario, grants: list[EffectiveGrant]) -> set[tuple[str, str]]:
    """(table, privilege) the active effective grants cover: global, database or table level."""
    active = {(g.scope, g.privilege) for g in grants if g.active and g.effect == "GRANT"}
    database = make_scope("database", s.database)
    return {
        (table, privilege)
        for table in s.tables
        for privilege in PRIVILEGES
        if {("global", privilege), (database, privilege), (make_scope("object", s.database, table), privilege)} & active
    }


def with_active_role(catalog: Catalog, user_identity: str, role_identity: str | None) -> Catalog:
    """The catalog as a session after SET ROLE <role> sees it: that role the only one in force (None: no role)."""
    accounts = [
        replace(a, roles=[replace(r, default=r.role == role_identity) for r in a.roles])
        if a.identity == user_identity
        else a
        for a in catalog.accounts
    ]
    return Catalog(accounts=accounts, details=dict(catalog.details))


def test_effective_access_matches_what_each_user_can_do(scenario: Scenario) -> None:
    s = scenario
    granted = build(s, random.Random(SEED))
    full = MySQLAdapter().fetch(ROOT)
    assert full.details["flavor"] == "mariadb"
    mine = {account_identity(u, "127.0.0.1") for u in s.users} | {
        account_identity(r, "", is_role=True) for r in s.roles
    }
    public = account_identity("PUBLIC", "", is_role=True)
    catalog = Catalog(accounts=[a for a in full.accounts if a.identity in mine | {public}], details=full.details)
    assert {a.identity for a in catalog.accounts} == mine | {public}
    at_login = effective_access(full, family="mysql")

    mismatches: list[str] = []
    seen = {"login": 0, "set_role_only": 0, "nested": 0, "public": 0}
    for user, password in s.users.items():
        identity = account_identity(user, "127.0.0.1")
        grants = at_login[identity]
        conn = MySQLdb.connect(host="127.0.0.1", port=MARIADB["port"], user=user, password=password, charset="utf8mb4")
        try:
            login = server_allows(s, conn)
            if login != ours_allows(s, grants):
                mismatches.append(f"{user!r} at login: server {sorted(login)} != ours {sorted(ours_allows(s, grants))}")
            seen["login"] += len(login)
            seen["nested"] += any(len(g.via) >= 2 for g in grants)
            seen["public"] += any(g.via == (public,) for g in grants)
            union = set(login)
            for role in [*granted[user], None]:
                role_identity = None if role is None else account_identity(role, "", is_role=True)
                with conn.cursor() as cur:
                    cur.execute("SET ROLE NONE" if role is None else f"SET ROLE {q(role)}")
                    cur.execute("SELECT CURRENT_ROLE()")
                    assert cur.fetchall()[0][0] == role
                after = server_allows(s, conn)
                expected = ours_allows(
                    s, effective_access(with_active_role(catalog, identity, role_identity), family="mysql")[identity]
                )
                if after != expected:
                    mismatches.append(
                        f"{user!r} after SET ROLE {role!r}: server {sorted(after)} != ours {sorted(expected)}"
                    )
                union |= after
            # what effective_access calls reachable-by-SET-ROLE is exactly what some SET ROLE allowed
            reachable = ours_allows(s, [replace(g, active=True) for g in grants])
            if union != reachable:
                mismatches.append(f"{user!r} reachable: server {sorted(union)} != ours {sorted(reachable)}")
            seen["set_role_only"] += len(union - login)
        finally:
            conn.close()
    assert not mismatches, "\n".join(mismatches)
    # the scenario exercises default and non-default roles, roles of roles and PUBLIC
    assert seen["login"] > 10 and seen["set_role_only"] > 3 and seen["nested"] >= 1 and seen["public"] == 6, seen
