"""The PostgreSQL catalog build from plain rows (no server): coverage gaps and their fixes, VALID UNTIL
in every form the server writes, one entry per privilege, escalation routes and inert memberships.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from accountsync.adapters import postgresql
from accountsync.adapters.base import (
    AccountRecord,
    Catalog,
    ConnectionTarget,
    GapKind,
    Privilege,
    canonical_privileges,
    gaps_cover,
    rows_digest,
)
from accountsync.adapters.postgresql import (
    CREATEROLE_BEFORE_16,
    INERT_MEMBERSHIPS,
    SERVER_OS_ROLES,
    DatabaseRows,
    ServerRows,
    build_catalog,
    expiry_moments,
    quote_ident,
)
from accountsync.diff import diff_snapshots

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def role(oid: int, name: str, *, sup: bool = False, createrole: bool = False, valid_until: Any = None) -> tuple:
    return (oid, name, sup, True, createrole, False, True, False, False, -1, valid_until)


def rows(**kw: Any) -> ServerRows:
    values: dict[str, Any] = {
        "version": "15.6",
        "version_num": 150006,
        "roles": [role(10, "postgres", sup=True), role(20, "app")],
        "members": [],
        "databases": [],
        "monitor": "monitor",
    }
    values.update(kw)
    return ServerRows(**values)


def account(catalog: Catalog, name: str) -> AccountRecord:
    (acc,) = [a for a in catalog.accounts if a.identity == name]
    return acc


def db_row(name: str, grantee: int = 0, privilege: str = "CONNECT", *, allow: bool = True, template: bool = False):
    return (name, allow, template, grantee, privilege, False, 10)


# --- coverage ------------------------------------------------------------------------------------


def test_unreadable_and_out_of_scope_databases_are_coverage_gaps_not_unknown_scopes() -> None:
    catalog = build_catalog(
        rows(
            databases=[db_row("sales"), db_row("nc_sales"), db_row("ops"), db_row("hr"), db_row("archive")],
            wanted=["gone", "hr", "nc_sales", "sales", "template1"],
            per_database=[DatabaseRows(name="sales")],
            unreadable={
                "nc_sales": 'permission denied for database "nc_sales" DETAIL: User does not have CONNECT privilege.',
                "hr": "permission denied for table pg_class",
                "gone": "database does not exist",
                "template1": "database does not accept connections (datallowconn false or template)",
            },
            causes={"nc_sales": "connect", "hr": "catalog", "gone": "missing", "template1": "no_connections"},
        ),
        now=NOW,
    )

    assert catalog.unknown_scopes == []
    assert all(acc.unknown_scopes == [] for acc in catalog.accounts)
    gaps = {gap.scope: gap for gap in catalog.coverage}
    assert sorted(gaps) == [
        "database:archive",
        "database:gone",
        "database:hr",
        "database:nc_sales",
        "database:ops",
        "database:template1",
    ]
    assert all(gap.inclusive is False for gap in gaps.values())
    nc = gaps["database:nc_sales"]
    assert (nc.kind, nc.reason) == (GapKind.UNREADABLE, catalog.details["databases_unreadable"]["nc_sales"])
    assert nc.fix == 'GRANT CONNECT ON DATABASE "nc_sales" TO "monitor"'
    assert gaps["database:hr"].kind == GapKind.UNREADABLE
    assert gaps["database:hr"].fix == 'in database "hr": GRANT SELECT ON pg_catalog."pg_class" TO "monitor"'
    for name in ("gone", "template1"):
        assert gaps[f"database:{name}"].kind == GapKind.UNREADABLE
        assert gaps[f"database:{name}"].fix.startswith("fix the instance's databases option")
    for name in ("ops", "archive"):
        gap = gaps[f"database:{name}"]
        assert gap.kind == GapKind.OUT_OF_SCOPE
        assert gap.reason == "not in the instance's databases option"
        assert gap.fix == "add it to the databases option to audit it"
    assert catalog.details["databases_read"] == ["sales"]
    assert sorted(catalog.details["databases_unreadable"]) == ["gone", "hr", "nc_sales", "template1"]


def test_every_database_read_means_no_out_of_scope_gap() -> None:
    catalog = build_catalog(
        rows(databases=[db_row("a"), db_row("template1", template=True)], per_database=[DatabaseRows(name="a")])
    )
    assert catalog.coverage == []


@pytest.mark.parametrize(
    ("cause", "reason", "fix"),
    [
        ("hba", 'no pg_hba.conf entry for host "10.0.0.5", user "monitor", database "x"', "pg_hba.conf"),
        ("busy", 'too many connections for database "x"', 'ALTER DATABASE "x" CONNECTION LIMIT'),
        ("closed", 'database "x" is not currently accepting connections', 'ALTER DATABASE "x" ALLOW_CONNECTIONS'),
        ("dropped", 'database "x" does not exist', "sync again"),
        ("catalog", "permission denied for function aclexplode", 'GRANT EXECUTE ON FUNCTION pg_catalog."aclexplode"'),
        ("catalog", "permission denied for schema pg_catalog", 'GRANT USAGE ON SCHEMA "pg_catalog" TO "monitor"'),
        ("other", "something else", 'let "monitor" connect to database "x"'),
    ],
)
def test_each_refusal_gets_its_own_fix(cause: str, reason: str, fix: str) -> None:
    catalog = build_catalog(rows(databases=[db_row("x")], wanted=["x"], unreadable={"x": reason}, causes={"x": cause}))
    (gap,) = catalog.coverage
    assert (gap.scope, gap.kind, gap.reason) == ("database:x", GapKind.UNREADABLE, reason)
    assert fix in gap.fix


def test_fix_quotes_identifiers_like_the_server_reads_them() -> None:
    assert quote_ident("nc_sales") == '"nc_sales"'
    assert quote_ident('Sales "EU"') == '"Sales ""EU"""'
    catalog = build_catalog(
        rows(
            databases=[db_row('Sales "EU"')],
            unreadable={'Sales "EU"': "permission denied"},
            causes={'Sales "EU"': "connect"},
            monitor="Mon.itor",
        )
    )
    assert catalog.coverage[0].fix == 'GRANT CONNECT ON DATABASE "Sales ""EU""" TO "Mon.itor"'
    assert catalog.coverage[0].scope == 'database:"Sales ""EU"""'


def test_revoking_connect_from_public_on_an_unreadable_database_is_a_change_of_public() -> None:
    """Database ACLs come from pg_database, read server-wide: a database the monitoring login cannot
    enter still shows PUBLIC losing CONNECT on it, and the gap never hides that change."""
    refused = {"unreadable": {"nc": 'permission denied for database "nc"'}, "causes": {"nc": "connect"}}
    before = build_catalog(
        rows(databases=[db_row("nc", 0, "CONNECT"), db_row("nc", 0, "TEMPORARY")], wanted=["nc"], **refused)
    )
    after = build_catalog(rows(databases=[db_row("nc", 0, "TEMPORARY")], wanted=["nc"], **refused))

    old, new = account(before, "public").snapshot(), account(after, "public").snapshot()
    assert {"scope": "database:nc", "privilege": "CONNECT", "grantable": False, "effect": "GRANT"} in old["privileges"]
    ops = diff_snapshots(old, new)
    assert ops == [
        {
            "op": "revoke",
            "scope": "database:nc",
            "privilege": "CONNECT",
            "old": {"grantable": False, "effect": "GRANT"},
            "new": None,
        }
    ]
    assert not gaps_cover(after.coverage, "database:nc")  # so no engine keeps the old CONNECT under the gap
    assert gaps_cover(after.coverage, "schema:nc.public") and gaps_cover(after.coverage, "object:nc.public.t")
    assert not gaps_cover(after.coverage, "schema:nc2.public")


# --- VALID UNTIL ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "text", "expired"),
    [
        (None, None, False),
        ("infinity", "infinity", False),
        ("-infinity", "-infinity", True),
        ("1970-01-01T00:00:00.000000 AD", "1970-01-01T00:00:00+00:00", True),
        ("2030-02-03T04:05:06.700000 AD", "2030-02-03T04:05:06.700000+00:00", False),
        ("4000-01-01T00:00:00.000000 BC", "-3999-01-01T00:00:00+00:00", True),
        ("0001-01-01T00:00:00.000000 BC", "0000-01-01T00:00:00+00:00", True),
        ("12000-06-01T12:00:00.500000 AD", "+12000-06-01T12:00:00.500000+00:00", False),
        ("9999-12-31T23:59:59.999999 AD", "9999-12-31T23:59:59.999999+00:00", False),
        # older recorded rows: datetimes, year 9999 standing for infinity
        (datetime(2020, 1, 1, tzinfo=UTC), "2020-01-01T00:00:00+00:00", True),
        (datetime(2027, 1, 1, 2, tzinfo=UTC) + timedelta(0), "2027-01-01T02:00:00+00:00", False),
        (datetime(9999, 12, 31, tzinfo=UTC), "infinity", False),
    ],
)
def test_valid_until_in_every_form(cell: Any, text: str | None, expired: bool) -> None:
    catalog = build_catalog(rows(roles=[role(20, "app", valid_until=cell)]), now=NOW)
    acc = account(catalog, "app")
    assert acc.attributes["valid_until"] == text
    assert ("EXPIRED" in acc.capabilities) is expired


def test_expiry_moments_are_the_finite_times_python_can_hold() -> None:
    server_rows = rows(
        roles=[
            role(1, "a", valid_until="2030-02-03T04:05:06.700000 AD"),
            role(2, "b", valid_until="infinity"),
            role(3, "c", valid_until="4000-01-01T00:00:00.000000 BC"),
            role(4, "d"),
            role(5, "e", valid_until="1999-01-01T00:00:00.000000 AD"),
        ]
    )
    assert expiry_moments(server_rows) == [
        datetime(2030, 2, 3, 4, 5, 6, 700000, tzinfo=UTC),
        datetime(1999, 1, 1, tzinfo=UTC),
    ]


def test_fetch_passes_the_moments_to_the_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    soon = datetime.now(UTC) + timedelta(hours=1)
    server_rows = rows(roles=[role(20, "app", valid_until=soon.strftime("%Y-%m-%dT%H:%M:%S.%f AD"))])
    monkeypatch.setattr(postgresql, "read_rows", lambda target: (server_rows, 5))
    target = ConnectionTarget(name="x", db_type="postgresql", host="127.0.0.1", port=5432, username="m", password="")
    catalog = postgresql.PostgreSQLAdapter().fetch(target)
    assert catalog.source_digest == rows_digest(postgresql.__file__, target, server_rows, moments=[soon])
    assert catalog.source_digest != rows_digest(postgresql.__file__, target, server_rows)


# --- one entry per privilege -----------------------------------------------------------------------


def test_canonical_privileges_one_entry_per_scope_privilege_effect_grantable_when_any() -> None:
    got = canonical_privileges(
        [
            Privilege("object:d.s.t", "select", False),
            Privilege("object:d.s.t", "SELECT", True),
            Privilege("object:d.s.t", "SELECT", False),
            Privilege("object:d.s.t", "INSERT", False),
            Privilege("object:d.s.t", "INSERT", False),
            Privilege("database:d", "CONNECT", False, "DENY"),
            Privilege("database:d", "CONNECT", True),
        ]
    )
    assert got == [
        {"scope": "database:d", "privilege": "CONNECT", "grantable": False, "effect": "DENY"},
        {"scope": "database:d", "privilege": "CONNECT", "grantable": True, "effect": "GRANT"},
        {"scope": "object:d.s.t", "privilege": "INSERT", "grantable": False, "effect": "GRANT"},
        {"scope": "object:d.s.t", "privilege": "SELECT", "grantable": True, "effect": "GRANT"},
    ]


def test_two_grantors_in_an_acl_are_one_privilege_in_the_snapshot() -> None:
    acl = [("public", "t", 30, "SELECT", False, 10), ("public", "t", 30, "SELECT", True, 10)]  # b=r/postgres, b=r*/a
    catalog = build_catalog(
        rows(
            roles=[role(10, "postgres", sup=True), role(20, "a"), role(30, "b")],
            per_database=[DatabaseRows(name="d", relations=acl)],
        )
    )
    assert account(catalog, "b").snapshot()["privileges"] == [
        {"scope": "object:d.public.t", "privilege": "SELECT", "grantable": True, "effect": "GRANT"}
    ]


# --- escalation routes ------------------------------------------------------------------------------


@pytest.mark.parametrize("predefined", sorted(SERVER_OS_ROLES))
def test_server_os_predefined_roles_are_superuser_for_their_members(predefined: str) -> None:
    catalog = build_catalog(
        rows(roles=[role(4200, predefined), role(20, "app")], members=[(4200, 20, False)], version_num=170000)
    )
    why = f"{predefined}: {SERVER_OS_ROLES[predefined]}"
    held = account(catalog, predefined)
    assert "SUPERUSER" in held.capabilities
    assert held.attributes["capability_reasons"] == {"SUPERUSER": [why]}
    member = account(catalog, "app")
    assert "SUPERUSER" in member.snapshot()["capabilities"] and member.is_superuser is True
    assert member.attributes["capability_reasons"]["SUPERUSER"] == [f"via role {predefined} ({why})"]
    assert member.attributes["superuser"] is False
    assert "superuser-level access" in why


@pytest.mark.parametrize(("version_num", "superuser"), [(150006, True), (160000, False), (170002, False)])
def test_createrole_is_superuser_only_before_16(version_num: int, superuser: bool) -> None:
    catalog = build_catalog(rows(roles=[role(20, "maker", createrole=True)], version_num=version_num))
    acc = account(catalog, "maker")
    assert "CREATE_USER" in acc.capabilities
    assert ("SUPERUSER" in acc.capabilities) is superuser
    assert acc.is_superuser is superuser
    reasons = acc.attributes.get("capability_reasons", {})
    assert reasons.get("SUPERUSER") == ([CREATEROLE_BEFORE_16] if superuser else None)


def test_real_superuser_with_createrole_gets_no_escalation_reason() -> None:
    catalog = build_catalog(rows(roles=[role(10, "postgres", sup=True, createrole=True)]))
    assert "capability_reasons" not in account(catalog, "postgres").attributes


PG16_MEMBERS = [
    # roleid, member, admin_option, inherit_option, set_option
    ((10, 20, False, False, False), False),  # neither SET nor INHERIT nor ADMIN: nothing of the role
    ((10, 20, False, False, True), True),  # SET ROLE postgres
    ((10, 20, False, True, False), True),  # inherits what postgres holds
    ((10, 20, True, False, False), True),  # ADMIN OPTION: can change the grant's options
]


@pytest.mark.parametrize(("member_row", "superuser"), PG16_MEMBERS)
def test_pg16_membership_without_set_or_inherit_gives_nothing(member_row: tuple, superuser: bool) -> None:
    catalog = build_catalog(rows(version_num=160002, members=[member_row]))
    acc = account(catalog, "app")
    assert ("SUPERUSER" in acc.snapshot()["capabilities"]) is superuser
    assert acc.is_superuser is superuser
    if superuser:
        assert [r.role for r in acc.roles] == ["postgres"]
        assert INERT_MEMBERSHIPS not in acc.attributes
    else:
        assert acc.roles == []
        assert acc.attributes[INERT_MEMBERSHIPS] == ["postgres"]
        # the engine finalizes the fetched catalog once more: still nothing flows
        again = account(Catalog(accounts=catalog.accounts).finalize(), "app")
        assert "SUPERUSER" not in again.effective_capabilities and again.is_superuser is False


def test_pre16_membership_rows_keep_their_meaning() -> None:
    catalog = build_catalog(rows(members=[(10, 20, False)]))
    acc = account(catalog, "app")
    assert "SUPERUSER" in acc.snapshot()["capabilities"]
    assert INERT_MEMBERSHIPS not in acc.attributes


# --- names the driver cannot decode ------------------------------------------------------------------


class _FakeAdapters:
    def __init__(self) -> None:
        self.loaders: dict[str, type] = {}

    def register_loader(self, name: str, loader: type) -> None:
        self.loaders[name] = loader


class _FakeConn:
    """Enough of a psycopg connection for `_Counter`: the first cursor's results fail to decode."""

    def __init__(self) -> None:
        self.adapters = _FakeAdapters()
        self.cursors = 0
        self.info = type("Info", (), {"encoding": "utf-8"})()

    def fileno(self) -> int:
        return -1

    def cursor(self) -> Any:
        self.cursors += 1
        conn, strict = self, self.cursors == 1

        class Cursor:
            description = None

            def execute(self, sql: str, params: Any = None) -> None:
                pass

            def fetchall(self) -> list[tuple[Any, ...]]:
                raw = b"wf\xffrole"
                if strict:
                    raw.decode("utf-8")  # raises, as psycopg's own loader does
                return [(conn.adapters.loaders["name"](0).load(raw),)]

        return Cursor()


def test_a_name_that_is_not_utf8_is_re_read_leniently_not_a_failure() -> None:
    conn = _FakeConn()
    target = ConnectionTarget(name="x", db_type="postgresql", host="127.0.0.1", port=5432, username="m", password="")
    counter = postgresql._counter(conn, target)
    assert counter.fetchall("SELECT rolname FROM pg_roles") == [("wf\\xffrole",)]
    assert counter.count == 2  # the retry is a round trip of its own
    assert set(conn.adapters.loaders) == {"text", "name", "varchar", "bpchar", '"char"'}
    assert counter.fetchall("SELECT 1") == [("wf\\xffrole",)] and conn.cursors == 2  # lenient from then on


def test_pg16_membership_without_set_is_recorded_and_effective_access_honours_it() -> None:
    """INHERIT TRUE, SET FALSE: the privileges are in force, but nothing behind a NOINHERIT step is reachable."""
    from accountsync.adapters.postgresql import UNSETTABLE_MEMBERSHIPS
    from accountsync.effective import effective_access
    from accountsync.effective_read import settable_memberships

    mid = (30, "mid", False, False, False, False, False, False, False, -1, None)  # NOLOGIN, NOINHERIT role
    inner = (40, "inner", False, True, False, False, False, False, False, -1, None)
    roles = [role(10, "postgres", sup=True), role(20, "app"), mid, inner]
    # roleid, member, admin_option, inherit_option, set_option
    members = [(30, 20, False, True, False), (40, 30, False, False, True)]
    catalog = build_catalog(rows(version_num=160002, roles=roles, members=members), now=NOW)
    app = account(catalog, "app")
    assert app.attributes[UNSETTABLE_MEMBERSHIPS] == ["mid"]
    assert [(r.role, r.default) for r in app.roles] == [("mid", True)]
    account(catalog, "inner").privileges.append(Privilege("object:db.public.t", "SELECT"))
    settable = settable_memberships(catalog.accounts)
    assert settable == {("app", "mid"): False}
    grants = effective_access(catalog, family="postgresql", only={"app"}, settable=settable)["app"]
    assert grants == []  # inner is behind mid's NOINHERIT step, and SET ROLE mid is refused
    free = effective_access(catalog, family="postgresql", only={"app"})["app"]  # were SET allowed
    assert [(g.privilege, g.via, g.active) for g in free] == [("SELECT", ("mid", "inner"), False)]
