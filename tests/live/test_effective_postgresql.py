"""Effective access against PostgreSQL's own answers, on a randomized role graph.

Why: `effective_access` claims to know what every role can do through INHERIT/NOINHERIT
chains, PUBLIC and ownership. The server knows for sure: has_table_privilege,
has_column_privilege, has_schema_privilege and has_database_privilege answer for the
privileges in force, and pg_has_role(..., 'MEMBER') says which roles SET ROLE can reach.
A fixed-seed scenario (30 roles with hostile names, roles of roles, 15 tables, columns,
~200 GRANTs, some WITH GRANT OPTION, some to PUBLIC, two tables owned by roles) is read
through the real adapter (read_rows, build_catalog) and every (role, object, privilege) of
it is compared: in force, grant option, and reachable with SET ROLE, with 100% agreement.
Only this test's roles and objects are checked: other tests may create roles meanwhile.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from accountsync.adapters.base import ConnectionTarget, make_scope
from accountsync.adapters.postgresql import build_catalog, read_rows
from accountsync.effective import EffectiveGrant, effective_access
from tests.livedb import POSTGRES

pytestmark = pytest.mark.live

SEED = 20160616
HOSTILE = ["o'brien", 'dq"uote', "dot.ted", "sp ace", "ünïcødé", "报表", "MiXeD", "semi;colon", "back\\slash", "%_"]
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE")
COLUMNS = ("id", "Col.Two", "we'ird col", "ü")


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


class Scenario:
    """What the test made (to check and to drop): roles, the database, its schema, tables and columns."""

    def __init__(self, admin: Any, tag: str) -> None:
        self.admin = admin
        self.tag = tag
        self.roles: list[str] = []
        self.database = f"wf eff.{tag} ü'db"
        self.schema = f'sch.{tag} "q"'
        self.tables: list[str] = []
        self.db_conn: Any = None

    def run(self, statement: Any, params: Any = None, *, db: bool = False) -> list[Any]:
        conn = self.db_conn if db else self.admin
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return list(cur.fetchall()) if cur.description else []

    def cleanup(self) -> None:
        if self.db_conn is not None:
            self.db_conn.close()
        self.run(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.database)))
        for name in reversed(self.roles):
            self.run(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def scenario(postgres_admin: Any) -> Iterator[Scenario]:
    s = Scenario(postgres_admin, uuid.uuid4().hex[:8])
    try:
        yield s
    finally:
        s.cleanup()


def build(s: Scenario, rng: random.Random) -> dict[str, int]:
    """Create the roles, memberships, objects and grants; returns counts of what was made."""
    ident = sql.Identifier
    for i in range(30):
        name = f"{HOSTILE[i % len(HOSTILE)]} {i} {s.tag}"
        options = ("LOGIN" if rng.random() < 0.3 else "NOLOGIN") + (" INHERIT" if rng.random() < 0.7 else " NOINHERIT")
        s.run(sql.SQL("CREATE ROLE {} " + options).format(ident(name)))
        s.roles.append(name)
    memberships: set[tuple[int, int]] = set()
    while len(memberships) < 45:  # member i holds role j > i: a DAG (PostgreSQL refuses cycles), chains up to 30 deep
        i = rng.randrange(29)
        memberships.add((i, rng.randrange(i + 1, 30)))
    for i, j in sorted(memberships):
        s.run(sql.SQL("GRANT {} TO {}").format(ident(s.roles[j]), ident(s.roles[i])))

    s.run(sql.SQL("CREATE DATABASE {}").format(ident(s.database)))
    s.db_conn = psycopg.connect(
        host="127.0.0.1", port=POSTGRES["port"], user="postgres", dbname=s.database, autocommit=True
    )
    s.run(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(ident(s.database)))
    s.run(sql.SQL("CREATE SCHEMA {}").format(ident(s.schema)), db=True)
    columns = sql.SQL(", ").join(sql.SQL("{} int").format(ident(c)) for c in COLUMNS)
    for i in range(15):
        table = f"t{i} {HOSTILE[(i * 3) % len(HOSTILE)]}"
        s.run(sql.SQL("CREATE TABLE {}.{} ({})").format(ident(s.schema), ident(table), columns), db=True)
        s.tables.append(table)
    for table in s.tables[:2]:  # owners: implicit rights and grant options, inherited by their members
        owner = s.roles[rng.randrange(30)]
        s.run(sql.SQL("ALTER TABLE {}.{} OWNER TO {}").format(ident(s.schema), ident(table), ident(owner)), db=True)

    grants = 0
    for _ in range(200):
        to_public = rng.random() < 0.06
        grantee = sql.SQL("PUBLIC") if to_public else ident(rng.choice(s.roles))
        option = sql.SQL(" WITH GRANT OPTION" if not to_public and rng.random() < 0.12 else "")
        kind = rng.choices(["table", "column", "schema", "database"], [50, 25, 12, 13])[0]
        table = sql.SQL("{}.{}").format(ident(s.schema), ident(rng.choice(s.tables)))
        if kind == "table":
            what = sql.SQL("{} ON TABLE {}").format(sql.SQL(rng.choice(TABLE_PRIVILEGES)), table)
        elif kind == "column":
            privilege = rng.choice(("SELECT", "SELECT", "UPDATE", "INSERT"))
            what = sql.SQL("{} ({}) ON TABLE {}").format(sql.SQL(privilege), ident(rng.choice(COLUMNS)), table)
        elif kind == "schema":
            schema = s.schema if rng.random() < 0.8 else "public"
            what = sql.SQL("{} ON SCHEMA {}").format(sql.SQL(rng.choice(("USAGE", "CREATE"))), ident(schema))
        else:
            privilege = rng.choice(("CONNECT", "TEMPORARY", "CREATE"))
            what = sql.SQL("{} ON DATABASE {}").format(sql.SQL(privilege), ident(s.database))
        s.run(sql.SQL("GRANT {} TO {}{}").format(what, grantee, option), db=True)
        grants += 1
    return {"memberships": len(memberships), "grants": grants}


# A check: (kind, object, privilege), object being (table) / (table, column) / (schema) / (database)
Check = tuple[str, tuple[str, ...], str]


def checks(s: Scenario) -> list[Check]:
    out: list[Check] = []
    for table in s.tables:
        out += [("table", (table,), p) for p in TABLE_PRIVILEGES]
        out += [("column", (table, c), p) for c in COLUMNS for p in TABLE_PRIVILEGES]
    out += [("schema", (schema,), p) for schema in (s.schema, "public") for p in ("USAGE", "CREATE")]
    out += [("database", (s.database,), p) for p in ("CONNECT", "TEMPORARY", "CREATE")]
    return out


def server_answers(s: Scenario, checks_: list[Check]) -> dict[tuple[str, Check], tuple[bool, bool]]:
    """(role, check) -> (has privilege, has it WITH GRANT OPTION), from the server, one statement per kind."""
    oids = dict(
        s.run(
            "SELECT c.relname, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s",
            (s.schema,),
            db=True,
        )
    )
    oids.update(s.run("SELECT nspname, oid FROM pg_namespace WHERE nspname IN (%s, 'public')", (s.schema,), db=True))
    oids.update(s.run("SELECT datname, oid FROM pg_database WHERE datname = %s", (s.database,)))
    function = {
        "table": "has_table_privilege(r::name, o::oid, {p})",
        "column": "has_column_privilege(r::name, o::oid, c, {p})",
        "schema": "has_schema_privilege(r::name, o::oid, {p})",
        "database": "has_database_privilege(r::name, o::oid, {p})",
    }
    answers: dict[tuple[str, Check], tuple[bool, bool]] = {}
    for kind, call in function.items():
        rows = [(role, check) for role in s.roles for check in checks_ if check[0] == kind]
        statement = (
            "SELECT "
            + call.format(p="p")
            + ", "
            + call.format(p="p || ' WITH GRANT OPTION'")
            + " FROM unnest(%s::text[], %s::oid[], %s::text[], %s::text[]) WITH ORDINALITY AS x(r, o, c, p, n)"
            " ORDER BY n"
        )
        params = (
            [role for role, _ in rows],
            [oids[check[1][0]] for _, check in rows],
            [check[1][1] if kind == "column" else "" for _, check in rows],
            [check[2] for _, check in rows],
        )
        result = s.run(statement, params, db=True)
        assert len(result) == len(rows)
        for (role, check), (has, grant_option) in zip(rows, result, strict=True):
            answers[(role, check)] = (bool(has), bool(grant_option))
    return answers


def server_set_options(s: Scenario) -> dict[tuple[str, str], bool]:
    """PostgreSQL 16+: (member, role) -> set_option, what the adapter will have to pass as `settable`."""
    rows = s.run(
        "SELECT m.rolname, r.rolname, bool_or(a.set_option) FROM pg_auth_members a "
        "JOIN pg_roles m ON m.oid = a.member JOIN pg_roles r ON r.oid = a.roleid GROUP BY 1, 2"
    )
    return {(member, role): bool(flag) for member, role, flag in rows}


def set_role_reach(s: Scenario, version_num: int) -> dict[str, set[str]]:
    """role -> the roles it may SET ROLE to (itself included): pg_has_role MEMBER before 16, SET from 16."""
    mode = "SET" if version_num >= 160000 else "MEMBER"
    rows = s.run(
        "SELECT r.rolname, x.rolname FROM pg_roles r JOIN pg_roles x ON pg_has_role(r.oid, x.oid, %s) "
        "WHERE r.rolname = ANY(%s)",
        (mode, s.roles),
    )
    reach: dict[str, set[str]] = {role: set() for role in s.roles}
    for role, other in rows:
        reach[role].add(other)
    return reach


def scopes(s: Scenario, check: Check) -> list[str]:
    """The effective scopes that grant a check: a column privilege also comes with the table's."""
    kind, obj, _privilege = check
    if kind == "table":
        return [make_scope("object", s.database, s.schema, obj[0])]
    if kind == "column":
        return [make_scope("column", s.database, s.schema, *obj), make_scope("object", s.database, s.schema, obj[0])]
    if kind == "schema":
        return [make_scope("schema", s.database, obj[0])]
    return [make_scope("database", obj[0])]


def ours(s: Scenario, grants: list[EffectiveGrant], check: Check) -> tuple[bool, bool, bool]:
    """(in force, in force with grant option, reachable with SET ROLE or in force) by effective_access."""
    wanted = set(scopes(s, check))
    found = [g for g in grants if g.scope in wanted and g.privilege == check[2] and g.effect == "GRANT"]
    active = [g for g in found if g.active]
    return bool(active), any(g.grantable for g in active), bool(found)


def test_effective_access_agrees_with_has_privilege_functions(scenario: Scenario) -> None:
    s = scenario
    rng = random.Random(SEED)
    made = build(s, rng)
    rows, _statements = read_rows(target(options={"databases": [s.database]}))
    catalog = build_catalog(rows)
    # on 16+ the adapter sets RoleGrant.default from inherit_option but does not carry set_option yet
    settable = server_set_options(s) if rows.version_num >= 160000 else None
    effective = effective_access(catalog, family="postgresql", settable=settable)
    accounts = {a.identity: a for a in catalog.accounts}
    assert set(s.roles) <= set(accounts)
    assert not any(accounts[r].is_superuser for r in s.roles)  # has_* is always true for superusers: none here

    all_checks = checks(s)
    answers = server_answers(s, all_checks)
    reach = set_role_reach(s, rows.version_num)
    mismatches: list[str] = []
    seen = {"active": 0, "grant_option": 0, "set_role_only": 0, "via_public": 0, "deep_path": 0, "owner": 0}
    for role in s.roles:
        grants = effective[role]
        seen["via_public"] += any(g.via[:1] == ("public",) for g in grants)
        seen["deep_path"] += any(len(g.via) >= 3 for g in grants)
        seen["owner"] += any(g.privilege == "OWNER" for g in grants)
        for check in all_checks:
            has, grant_option = answers[(role, check)]
            reachable = any(answers[(other, check)][0] for other in reach[role])
            mine = ours(s, grants, check)
            server = (has, grant_option, reachable)
            if mine != server:
                mismatches.append(f"{role!r} {check}: effective_access {mine} != server {server}")
            seen["active"] += has
            seen["grant_option"] += grant_option
            seen["set_role_only"] += reachable and not has
    total = len(s.roles) * len(all_checks)
    assert not mismatches, f"{len(mismatches)} of {total} checks disagree:\n" + "\n".join(mismatches[:30])

    # the scenario really exercises every rule (so 100% agreement means something)
    assert made == {"memberships": 45, "grants": 200}
    assert total == 30 * (15 * (3 + 4 * 3) + 4 + 3)
    assert seen["active"] > 300 and seen["grant_option"] > 10 and seen["set_role_only"] > 50, seen
    assert seen["via_public"] == 30 and seen["deep_path"] > 3 and seen["owner"] >= 1, seen
