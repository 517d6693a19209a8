"""The PostgreSQL adapter's exact picture, live: coverage gaps, values the driver cannot load,
one entry per privilege held from several grantors, time-aware digests and escalation routes.

Every test makes uniquely named roles and databases (dropped afterwards) and never assumes the
rest of the shared server stands still: other tests create roles and databases meanwhile, so
assertions look only at what the test made (and the fetches name the databases they read).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql

from accountsync.adapters import postgresql
from accountsync.adapters.base import Catalog, CoverageGap, GapKind, make_scope
from accountsync.adapters.postgresql import (
    CREATEROLE_BEFORE_16,
    SERVER_OS_ROLES,
    PostgreSQLAdapter,
    ServerRows,
)
from accountsync.diff import diff_snapshots
from tests.live.test_postgresql_adapter import P, Scratch, account, target
from tests.livedb import POSTGRES

pytestmark = pytest.mark.live

ident = sql.Identifier


@pytest.fixture
def scratch(postgres_admin: Any) -> Iterator[Scratch]:
    s = Scratch(postgres_admin)
    try:
        yield s
    finally:
        s.cleanup()


def gaps(catalog: Catalog) -> dict[str, CoverageGap]:
    return {gap.scope: gap for gap in catalog.coverage}


def fetch(**kw: Any) -> Catalog:
    return PostgreSQLAdapter().fetch(target(**kw))


# --- 1. coverage ---------------------------------------------------------------------------------


def test_refused_database_is_an_unreadable_gap_whose_fix_is_the_grant(scratch: Scratch, unique_prefix: str) -> None:
    p = unique_prefix
    mon = scratch.role(f'{p}_Mon "x"', "LOGIN")  # a name that needs quoting, inner quotes doubled
    victim = scratch.role(f"{p}_v", "LOGIN")
    locked = scratch.database(f'{p} Locked"db')
    elsewhere = scratch.database(f"{p}_other")
    scratch.run(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(ident(locked)))
    scratch.run(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(ident(locked), ident(victim)))
    scratch.run("CREATE TABLE t (id int)", db=locked)
    scratch.run(sql.SQL("GRANT SELECT ON t TO {}").format(ident(victim)), db=locked)
    options = {"databases": [locked, "postgres"]}

    catalog = fetch(username=mon, options=options)

    found = gaps(catalog)
    gap = found[make_scope("database", locked)]
    assert gap.kind == GapKind.UNREADABLE and gap.inclusive is False
    assert gap.reason.startswith(f'permission denied for database "{locked}"')  # the server's words
    quoted_db, quoted_mon = '"' + locked.replace('"', '""') + '"', '"' + mon.replace('"', '""') + '"'
    assert gap.fix == f"GRANT CONNECT ON DATABASE {quoted_db} TO {quoted_mon}"
    assert catalog.details["databases_unreadable"] == {locked: gap.reason}
    assert catalog.details["databases_read"] == ["postgres"]
    # a connectable database the option leaves out: out of scope, not unreadable
    other = found[make_scope("database", elsewhere)]
    assert (other.kind, other.inclusive) == (GapKind.OUT_OF_SCOPE, False)
    assert (other.reason, other.fix) == (
        "not in the instance's databases option",
        "add it to the databases option to audit it",
    )
    assert catalog.unknown_scopes == []
    snap = account(catalog, victim).snapshot()
    assert snap["unknown_scopes"] == []
    # the database's own ACL is read server-wide and stays exact; what lies inside is not covered by it
    assert snap["privileges"] == [
        P(make_scope("database", locked), "CONNECT"),
        P(make_scope("database", locked), "TEMPORARY"),
    ]
    assert not gap.covers(make_scope("database", locked))
    assert gap.covers(make_scope("object", locked, "public", "t"))

    # the fix, run as written, closes the gap
    scratch.run(gap.fix)
    after = fetch(username=mon, options=options)
    assert make_scope("database", locked) not in gaps(after)
    assert P(make_scope("object", locked, "public", "t"), "SELECT") in account(after, victim).snapshot()["privileges"]


def test_denied_catalog_view_is_an_unreadable_gap_with_the_servers_words(scratch: Scratch, unique_prefix: str) -> None:
    p = unique_prefix
    mon = scratch.role(f"{p}_mon", "LOGIN")
    db = scratch.database(f"{p}_cat")
    scratch.run("REVOKE SELECT ON pg_catalog.pg_class FROM PUBLIC", db=db)
    options = {"databases": [db, "postgres"]}

    catalog = fetch(username=mon, options=options)

    gap = gaps(catalog)[make_scope("database", db)]
    assert (gap.kind, gap.inclusive) == (GapKind.UNREADABLE, False)
    assert gap.reason == "permission denied for table pg_class"
    assert gap.fix == f'in database "{db}": GRANT SELECT ON pg_catalog."pg_class" TO "{mon}"'
    assert catalog.details["databases_unreadable"][db] == gap.reason
    assert sorted(catalog.details["databases_read"]) == ["postgres"]

    scratch.run(gap.fix.split(": ", 1)[1], db=db)  # the fix, in the database it names
    assert make_scope("database", db) not in gaps(fetch(username=mon, options=options))


# --- 2. values the driver cannot load ----------------------------------------------------------------

VALID_UNTIL = [
    ("infinity", "infinity", False),
    ("-infinity", "-infinity", True),
    ("epoch", "1970-01-01T00:00:00+00:00", True),
    ("4000-01-01 00:00:00+00 BC", "-3999-01-01T00:00:00+00:00", True),
    ("12000-06-01 12:00:00.5+00", "+12000-06-01T12:00:00.500000+00:00", False),
    ("2999-12-31 23:59:59.25+00", "2999-12-31T23:59:59.250000+00:00", False),
]


@pytest.mark.parametrize(("value", "text", "expired"), VALID_UNTIL, ids=[v[0] for v in VALID_UNTIL])
def test_valid_until_that_the_driver_cannot_load_never_fails_a_sync(
    scratch: Scratch, unique_prefix: str, value: str, text: str, expired: bool
) -> None:
    role = scratch.role(f"{unique_prefix}_vu", "LOGIN")
    scratch.run(sql.SQL("ALTER ROLE {} VALID UNTIL {}").format(ident(role), sql.Literal(value)))

    catalog = fetch(options={"databases": ["postgres"]})

    acc = account(catalog, role)
    assert acc.attributes["valid_until"] == text
    assert ("EXPIRED" in acc.snapshot()["capabilities"]) is expired


@pytest.mark.parametrize("client_encoding", [None, "UTF8"], ids=["default", "PGCLIENTENCODING=UTF8"])
def test_sql_ascii_database_with_invalid_utf8_names_is_read(
    scratch: Scratch, unique_prefix: str, monkeypatch: pytest.MonkeyPatch, client_encoding: str | None
) -> None:
    """A SQL_ASCII database stores names as any bytes: psycopg hands its text over as bytes, and a
    UTF-8 client makes the server refuse to convert 0xff; either used to fail the whole sync."""
    reader = scratch.role(f"{unique_prefix}_r", "LOGIN")
    db = f"{unique_prefix}_ascii"
    scratch.run(
        sql.SQL("CREATE DATABASE {} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0").format(
            ident(db)
        )
    )
    scratch.databases.append(db)
    with psycopg.connect(host="127.0.0.1", port=POSTGRES["port"], user="postgres", dbname=db, autocommit=True) as conn:
        assert conn.info.encoding == "ascii"
        reader_b = reader.encode()
        conn.execute(b'CREATE SCHEMA "s\xff"')
        conn.execute(b'CREATE TABLE "s\xff"."t\xff" (id int)')
        conn.execute(b'CREATE TABLE "s\xff"."t' + "ü".encode() + b'" (id int)')  # valid UTF-8 stays as it is
        conn.execute(b'GRANT USAGE ON SCHEMA "s\xff" TO "' + reader_b + b'"')
        conn.execute(b'GRANT SELECT ON "s\xff"."t\xff", "s\xff"."t\xc3\xbc" TO "' + reader_b + b'"')
    if client_encoding:
        monkeypatch.setenv("PGCLIENTENCODING", client_encoding)

    catalog = fetch(options={"databases": [db]})

    assert catalog.details["databases_read"] == [db]
    assert [g for g in catalog.coverage if g.kind == GapKind.UNREADABLE] == []
    assert account(catalog, reader).snapshot()["privileges"] == [
        P(make_scope("object", db, "s\\xff", "t\\xff"), "SELECT"),
        P(make_scope("object", db, "s\\xff", "tü"), "SELECT"),
        P(make_scope("schema", db, "s\\xff"), "USAGE"),
    ]


# --- 3. one privilege from two grantors --------------------------------------------------------------


def test_privilege_from_two_grantors_is_one_entry(scratch: Scratch, unique_prefix: str) -> None:
    a = scratch.role(f"{unique_prefix}_a", "NOLOGIN")
    b = scratch.role(f"{unique_prefix}_b", "LOGIN")
    db = scratch.database(f"{unique_prefix}_gr")
    scratch.run("CREATE TABLE t (id int)", db=db)
    scratch.run(sql.SQL("GRANT SELECT ON t TO {} WITH GRANT OPTION").format(ident(a)), db=db)

    def as_a(statement: str) -> None:
        scratch.run(sql.SQL("SET ROLE {}").format(ident(a)), db=db)
        try:
            scratch.run(sql.SQL(statement).format(ident(b)), db=db)
        finally:
            scratch.run("RESET ROLE", db=db)

    def b_snapshot() -> dict[str, Any]:
        return account(fetch(options={"databases": [db]}), b).snapshot()

    table = make_scope("object", db, "public", "t")
    scratch.run(sql.SQL("GRANT SELECT ON t TO {}").format(ident(b)), db=db)  # b=r/postgres
    as_a("GRANT SELECT ON t TO {} WITH GRANT OPTION")  # b=r*/a
    acl = scratch.run("SELECT relacl::text FROM pg_class WHERE relname = 't'", db=db)[0][0]
    assert f"{b}=r/postgres" in acl and f"{b}=r*/{a}" in acl
    both = b_snapshot()
    assert both["privileges"] == [P(table, "SELECT", True)]
    assert "GRANT_ADMIN" in both["capabilities"]

    scratch.run(sql.SQL("REVOKE SELECT ON t FROM {}").format(ident(b)), db=db)  # the plain copy goes
    assert b_snapshot() == both  # still held, still grantable: nothing changed for b

    scratch.run(sql.SQL("GRANT SELECT ON t TO {}").format(ident(b)), db=db)
    assert b_snapshot() == both
    as_a("REVOKE SELECT ON t FROM {}")  # the grantable copy goes
    plain = b_snapshot()
    assert plain["privileges"] == [P(table, "SELECT", False)]
    privilege_ops = [op for op in diff_snapshots(both, plain) if op["scope"] == table]
    assert privilege_ops == [
        {
            "op": "set",
            "scope": table,
            "privilege": "SELECT",
            "old": {"grantable": True, "effect": "GRANT"},
            "new": {"grantable": False, "effect": "GRANT"},
        }
    ]
    assert "GRANT_ADMIN" not in plain["capabilities"]  # what the grant option gave goes with it


# --- 4. time-aware digest ---------------------------------------------------------------------------


def test_valid_until_passing_makes_the_next_fetch_a_full_one(
    scratch: Scratch, unique_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only this test's role is kept in the rows (other tests change roles meanwhile); the digest
    is the real one, over the real rows of that role and the moments `fetch` passes."""
    role = scratch.role(f"{unique_prefix}_soon", "LOGIN")
    real_read = postgresql.read_rows

    def only_mine(tgt: Any) -> tuple[ServerRows, int]:
        rows, count = real_read(tgt)
        rows.roles = [r for r in rows.roles if r[1] == role]
        rows.members, rows.databases, rows.per_database = [], [], []
        return rows, count

    monkeypatch.setattr(postgresql, "read_rows", only_mine)
    for margin in (3, 10, 30):  # a slow machine gets a longer run-up; no assertion on elapsed time
        (until,) = scratch.run(
            sql.SQL("SELECT now() + make_interval(secs => {})").format(sql.Literal(margin)),
        )[0]
        scratch.run(sql.SQL("ALTER ROLE {} VALID UNTIL {}").format(ident(role), sql.Literal(until.isoformat())))
        first = fetch(options={"databases": ["postgres"]})
        second = fetch(options={"databases": ["postgres"]}, known_catalog_digest=first.source_digest)
        (still_ahead,) = scratch.run("SELECT now() < %s", (until,))[0]
        if still_ahead:
            break
    else:
        pytest.fail("the server's clock passed VALID UNTIL before the second fetch even with a 30 s margin")
    assert first.unchanged is False and "EXPIRED" not in account(first, role).capabilities
    assert second.unchanged is True and second.source_digest == first.source_digest

    while not scratch.run("SELECT now() > %s", (until,))[0][0]:
        time.sleep(0.2)
    while datetime.now(UTC) <= until:  # the adapter's clock decides, too
        time.sleep(0.05)

    third = fetch(options={"databases": ["postgres"]}, known_catalog_digest=first.source_digest)
    assert third.unchanged is False and third.source_digest != first.source_digest
    assert "EXPIRED" in account(third, role).snapshot()["capabilities"]


# --- 5. escalation routes ----------------------------------------------------------------------------


def test_member_of_pg_read_server_files_is_superuser_equivalent(scratch: Scratch, unique_prefix: str) -> None:
    user = scratch.role(f"{unique_prefix}_files", "LOGIN")
    scratch.run(sql.SQL("GRANT pg_read_server_files TO {}").format(ident(user)))

    catalog = fetch(options={"databases": ["postgres"]})

    why = f"pg_read_server_files: {SERVER_OS_ROLES['pg_read_server_files']}"
    predefined = account(catalog, "pg_read_server_files")
    assert "SUPERUSER" in predefined.snapshot()["capabilities"]
    assert predefined.attributes["capability_reasons"]["SUPERUSER"] == [why]
    acc = account(catalog, user)
    snap = acc.snapshot()
    assert "SUPERUSER" in snap["capabilities"] and acc.is_superuser is True
    assert snap["attributes"]["superuser"] is False  # the role attribute itself is untouched
    assert snap["attributes"]["capability_reasons"]["SUPERUSER"] == [f"via role pg_read_server_files ({why})"]
    for name in ("pg_execute_server_program", "pg_write_server_files"):
        assert "SUPERUSER" in account(catalog, name).snapshot()["capabilities"]


def test_createrole_before_16_is_superuser_equivalent(scratch: Scratch, unique_prefix: str) -> None:
    creator = scratch.role(f"{unique_prefix}_cr", "LOGIN CREATEROLE")
    member = scratch.role(f"{unique_prefix}_crm", "LOGIN")
    scratch.run(sql.SQL("GRANT {} TO {}").format(ident(creator), ident(member)))
    (version_num,) = scratch.run("SELECT current_setting('server_version_num')::int")[0]

    catalog = fetch(options={"databases": ["postgres"]})

    acc, via = account(catalog, creator), account(catalog, member)
    assert "CREATE_USER" in acc.snapshot()["capabilities"]
    if version_num >= 160000:
        assert "SUPERUSER" not in acc.snapshot()["capabilities"]
        return
    assert "SUPERUSER" in acc.snapshot()["capabilities"] and acc.is_superuser is True
    assert acc.attributes["capability_reasons"]["SUPERUSER"] == [CREATEROLE_BEFORE_16]
    assert via.is_superuser is True
    assert via.attributes["capability_reasons"]["SUPERUSER"] == [f"via role {creator} ({CREATEROLE_BEFORE_16})"]
    # the route itself: the CREATEROLE role makes itself a member of a predefined role above
    scratch.run(sql.SQL("SET ROLE {}").format(ident(creator)))
    try:
        scratch.run(sql.SQL("GRANT pg_execute_server_program TO {}").format(ident(creator)))
    finally:
        scratch.run("RESET ROLE")
    assert scratch.run("SELECT pg_has_role(%s, 'pg_execute_server_program', 'MEMBER')", (creator,)) == [(True,)]
