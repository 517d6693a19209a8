"""Effective access (accountsync/effective.py) on hand-built catalogs, one rule per test.

Why hand-built: each rule (inheritance, SET ROLE reachability, default roles, PUBLIC, DENY,
deduplication, cycles) is easiest to see on the smallest catalog that shows it. The recorded
SQL Server and Oracle rows go through their real adapters' build_catalog at the end, and the
live PostgreSQL and MariaDB tests compare the same function with the servers' own answers.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from accountsync import effective
from accountsync.adapters.base import AccountRecord, Catalog, Privilege, RoleGrant
from accountsync.effective import EffectiveGrant, active_grants, effective_access

FIXTURES = Path(__file__).parent.parent / "fixtures"


def user(identity: str, *privileges: Privilege, roles: tuple[RoleGrant, ...] = (), **kw: Any) -> AccountRecord:
    return AccountRecord(identity, kw.pop("username", identity), privileges=list(privileges), roles=list(roles), **kw)


def role(identity: str, *privileges: Privilege, roles: tuple[RoleGrant, ...] = (), **kw: Any) -> AccountRecord:
    return user(identity, *privileges, roles=roles, kind="role", **kw)


def P(scope: str, privilege: str, grantable: bool = False, effect: str = "GRANT") -> Privilege:
    return Privilege(scope, privilege, grantable, effect)


def R(name: str, default: bool = True) -> RoleGrant:
    return RoleGrant(name, default=default)


def by_key(grants: list[EffectiveGrant]) -> dict[tuple[str, str, str], EffectiveGrant]:
    keys = [(g.scope, g.privilege, g.effect) for g in grants]
    assert len(keys) == len(set(keys)), "one entry per (scope, privilege, effect)"
    return dict(zip(keys, grants, strict=True))


def view(grants: list[EffectiveGrant]) -> set[tuple[str, str, tuple[str, ...], bool]]:
    """(scope, privilege, via, active) of every entry: the part most rules decide."""
    return {(g.scope, g.privilege, g.via, g.active) for g in grants}


T = "object:app.public.orders"
T2 = "object:app.public.lines"
DB = "database:app"


# --- the result type ----------------------------------------------------------------------


def test_grant_as_dict_and_label() -> None:
    g = EffectiveGrant(T, "SELECT", True, "GRANT", ("app_rw", "readers"), False)
    assert g.as_dict() == {
        "scope": T,
        "privilege": "SELECT",
        "grantable": True,
        "effect": "GRANT",
        "via": ["app_rw", "readers"],
        "active": False,
    }
    assert g.label() == f"{T} · SELECT · via app_rw → readers (SET ROLE)"
    assert EffectiveGrant(T, "DELETE", effect="DENY").label() == f"{T} · DENY DELETE · via direct"
    assert EffectiveGrant(T, "DELETE").direct and not g.direct


def test_unknown_family_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown family"):
        effective_access(Catalog(), family="db2")


def test_direct_grants_only_sorted_and_uppercased() -> None:
    cat = Catalog(accounts=[user("u", P(T2, "select"), P(DB, "CONNECT", True))])
    grants = effective_access(cat, family="postgresql")["u"]
    assert grants == [
        EffectiveGrant(DB, "CONNECT", True, "GRANT", (), True),
        EffectiveGrant(T2, "SELECT", False, "GRANT", (), True),
    ]


# --- PostgreSQL: INHERIT / NOINHERIT, SET ROLE, set_option, PUBLIC -------------------------


def test_postgresql_inherit_chain_gives_everything_in_force_with_the_path() -> None:
    cat = Catalog(
        accounts=[
            user("alice", roles=(R("app_rw"),)),
            role("app_rw", P(T, "INSERT"), roles=(R("readers"),)),
            role("readers", P(T, "SELECT")),
        ]
    )
    out = effective_access(cat, family="postgresql")
    assert view(out["alice"]) == {(T, "INSERT", ("app_rw",), True), (T, "SELECT", ("app_rw", "readers"), True)}
    assert view(out["app_rw"]) == {(T, "INSERT", (), True), (T, "SELECT", ("readers",), True)}
    assert view(out["readers"]) == {(T, "SELECT", (), True)}


def test_postgresql_noinherit_in_the_middle_of_a_chain() -> None:
    """alice INHERITs a; a's membership in b does not inherit: b and beyond only by SET ROLE b."""
    cat = Catalog(
        accounts=[
            user("alice", roles=(R("a"),)),
            role("a", P(DB, "CONNECT"), roles=(R("b", default=False),)),
            role("b", P(T, "SELECT"), roles=(R("c"),)),
            role("c", P(T, "INSERT")),
        ]
    )
    out = effective_access(cat, family="postgresql")
    assert view(out["alice"]) == {
        (DB, "CONNECT", ("a",), True),
        (T, "SELECT", ("a", "b"), False),  # SET ROLE b (alice is a member of b through a)
        (T, "INSERT", ("a", "b", "c"), False),  # ... and b inherits c
    }
    assert view(out["a"]) == {(DB, "CONNECT", (), True), (T, "SELECT", ("b",), False), (T, "INSERT", ("b", "c"), False)}


def test_postgresql_noinherit_member_reaches_only_by_set_role() -> None:
    cat = Catalog(accounts=[user("u", roles=(R("r", default=False),)), role("r", P(T, "SELECT", True))])
    (g,) = effective_access(cat, family="postgresql")["u"]
    assert g == EffectiveGrant(T, "SELECT", True, "GRANT", ("r",), False)
    assert active_grants([g]) == []


def test_postgresql_16_set_option_false_makes_a_noinherit_membership_useless() -> None:
    cat = Catalog(
        accounts=[
            user("u", roles=(R("a", default=False), R("k", default=False))),
            role("a", P(T, "SELECT"), roles=(R("b"),)),
            role("b", P(T, "INSERT")),
            role("k", P(T, "UPDATE")),
        ]
    )
    settable = {("u", "a"): False}  # GRANT a TO u WITH INHERIT FALSE, SET FALSE; k keeps SET TRUE
    out = effective_access(cat, family="postgresql", settable=settable)
    assert view(out["u"]) == {(T, "UPDATE", ("k",), False)}
    # without the mapping every membership is settable (before 16, and 16's default)
    assert view(effective_access(cat, family="postgresql")["u"]) == {
        (T, "SELECT", ("a",), False),
        (T, "INSERT", ("a", "b"), False),
        (T, "UPDATE", ("k",), False),
    }


def test_postgresql_16_set_role_needs_set_option_all_along_the_prefix() -> None:
    """u -(SET)-> a -(no INHERIT, no SET)-> b: SET ROLE a works, SET ROLE b does not, b is out of reach."""
    cat = Catalog(
        accounts=[
            user("u", roles=(R("a", default=False),)),
            role("a", P(DB, "CONNECT"), roles=(R("b", default=False),)),
            role("b", P(T, "SELECT")),
        ]
    )
    out = effective_access(cat, family="postgresql", settable={("a", "b"): False})
    assert view(out["u"]) == {(DB, "CONNECT", ("a",), False)}
    # an inheriting membership after a settable one: SET ROLE a, then a inherits b
    cat.accounts[1].roles = [R("b", default=True)]
    out = effective_access(cat, family="postgresql", settable={("a", "b"): False})
    assert view(out["u"]) == {(DB, "CONNECT", ("a",), False), (T, "SELECT", ("a", "b"), False)}


def test_postgresql_public_reaches_every_role_login_or_not() -> None:
    cat = Catalog(
        accounts=[
            user("u", roles=(R("r"),)),
            role("r", P(T, "SELECT")),
            role("public", P(DB, "CONNECT"), P(DB, "TEMPORARY"), attributes={"pseudo_role": True}),
        ]
    )
    out = effective_access(cat, family="postgresql")
    for name in ("u", "r"):
        assert (DB, "CONNECT", ("public",), True) in view(out[name])
        assert (DB, "TEMPORARY", ("public",), True) in view(out[name])
    assert view(out["public"]) == {(DB, "CONNECT", (), True), (DB, "TEMPORARY", (), True)}
    # include_public=False: shown once (on `public`), not repeated in every list
    out = effective_access(cat, family="postgresql", include_public=False)
    assert view(out["u"]) == {(T, "SELECT", ("r",), True)} and len(out["public"]) == 2


def test_postgresql_owner_in_force_gives_grant_options_on_the_object_and_its_columns() -> None:
    """The owner's ACL entries carry no grant option, yet the owner (and who inherits it) may grant them."""
    cat = Catalog(
        accounts=[
            user("u", roles=(R("owner"), R("other_owner", default=False))),
            role("owner", P(T, "OWNER", True), P(T, "SELECT"), P("column:app.public.orders.c", "UPDATE")),
            role("other_owner", P(T2, "OWNER", True), P(T2, "SELECT")),
        ]
    )
    out = by_key(effective_access(cat, family="postgresql")["u"])
    assert out[T, "SELECT", "GRANT"].grantable and out[T, "SELECT", "GRANT"].via == ("owner",)
    assert out["column:app.public.orders.c", "UPDATE", "GRANT"].grantable
    assert not out[T2, "SELECT", "GRANT"].grantable  # owner only by SET ROLE: not in force at login


# --- deduplication --------------------------------------------------------------------------


def test_direct_wins_over_role_and_grantable_comes_from_any_in_force_path() -> None:
    cat = Catalog(accounts=[user("u", P(T, "SELECT"), roles=(R("r"),)), role("r", P(T, "SELECT", True))])
    assert effective_access(cat, family="postgresql")["u"] == [EffectiveGrant(T, "SELECT", True, "GRANT", (), True)]


def test_in_force_wins_over_set_role_even_when_longer_and_not_grantable() -> None:
    cat = Catalog(
        accounts=[
            user("u", roles=(R("a", default=False), R("z"))),
            role("a", P(T, "SELECT", True)),
            role("z", roles=(R("y"),)),
            role("y", P(T, "SELECT")),
        ]
    )
    (g,) = effective_access(cat, family="postgresql")["u"]
    # the SET ROLE path's grant option is not in force at login
    assert g == EffectiveGrant(T, "SELECT", False, "GRANT", ("z", "y"), True)


def test_shortest_path_then_sorted_for_a_diamond() -> None:
    cat = Catalog(
        accounts=[
            user("u", roles=(R("b"), R("a"), R("long"))),
            role("a", roles=(R("c"),)),
            role("b", roles=(R("c"),)),
            role("long", roles=(R("m"),)),
            role("m", roles=(R("c"),)),
            role("c", P(T, "SELECT")),
        ]
    )
    (g,) = effective_access(cat, family="postgresql")["u"]
    assert g.via == ("a", "c") and g.active


def test_result_does_not_depend_on_catalog_order() -> None:
    accounts = [
        user("u", P(T2, "UPDATE"), roles=(R("b"), R("a", default=False), R("c"))),
        role("a", P(T, "SELECT", True), roles=(R("c"),)),
        role("b", P(T, "SELECT"), roles=(R("d", default=False),)),
        role("c", P(T, "INSERT"), roles=(R("a"),)),
        role("d", P(T2, "UPDATE", True)),
    ]
    expected = effective_access(Catalog(accounts=list(accounts)), family="postgresql")
    rng = random.Random(7)
    for _ in range(10):
        shuffled = [
            AccountRecord(a.identity, a.username, a.kind, privileges=rng.sample(a.privileges, len(a.privileges)),
                          roles=rng.sample(a.roles, len(a.roles)))
            for a in accounts
        ]  # fmt: skip
        rng.shuffle(shuffled)
        assert effective_access(Catalog(accounts=shuffled), family="postgresql") == expected


# --- cycles ---------------------------------------------------------------------------------


def test_two_role_cycle_is_finite_and_each_member_sees_the_other() -> None:
    cat = Catalog(
        accounts=[
            user("u", roles=(R("a"),)),
            role("a", P(T, "SELECT"), roles=(R("b"),)),
            role("b", P(T, "INSERT"), roles=(R("a"),)),
        ]
    )
    out = effective_access(cat, family="postgresql")
    assert view(out["u"]) == {(T, "SELECT", ("a",), True), (T, "INSERT", ("a", "b"), True)}
    assert view(out["a"]) == {(T, "SELECT", (), True), (T, "INSERT", ("b",), True)}
    assert view(out["b"]) == {(T, "INSERT", (), True), (T, "SELECT", ("a",), True)}


def test_cycle_with_a_noinherit_edge_and_an_exit() -> None:
    """a -> b -(NOINHERIT)-> c -> a, and c -> x outside the cycle."""
    cat = Catalog(
        accounts=[
            user("u", roles=(R("a"),)),
            role("a", P(T, "SELECT"), roles=(R("b"),)),
            role("b", P(T, "INSERT"), roles=(R("c", default=False),)),
            role("c", P(T, "UPDATE"), roles=(R("a"), R("x"))),
            role("x", P(T2, "SELECT")),
        ]
    )
    stats: dict[str, int] = {}
    out = effective_access(cat, family="postgresql", stats=stats)
    assert stats["closures"] == 4  # a, b, c, x: once each
    assert view(out["u"]) == {
        (T, "SELECT", ("a",), True),
        (T, "INSERT", ("a", "b"), True),
        (T, "UPDATE", ("a", "b", "c"), False),
        (T2, "SELECT", ("a", "b", "c", "x"), False),
    }
    # from c, a and b are in force (c inherits a, a inherits b)
    assert view(out["c"]) == {
        (T, "UPDATE", (), True),
        (T, "SELECT", ("a",), True),
        (T, "INSERT", ("a", "b"), True),
        (T2, "SELECT", ("x",), True),
    }


def test_self_membership_and_unknown_roles_are_ignored() -> None:
    cat = Catalog(accounts=[user("u", P(T, "SELECT"), roles=(R("u"), R("gone")))])
    assert view(effective_access(cat, family="postgresql")["u"]) == {(T, "SELECT", (), True)}


# --- MariaDB -------------------------------------------------------------------------------


def mariadb(*accounts: AccountRecord) -> Catalog:
    return Catalog(accounts=list(accounts), details={"flavor": "mariadb"})


def test_mariadb_default_role_in_force_others_by_set_role_and_roles_of_roles_follow_their_holder() -> None:
    cat = mariadb(
        user("'u'@'%'", roles=(R("'dflt'"), R("'other'", default=False)), username="u", host="%"),
        role("'dflt'", P("database:app", "SELECT"), roles=(R("'inner'"),), username="dflt"),
        role("'other'", P("database:app", "INSERT"), roles=(R("'inner2'"),), username="other"),
        role("'inner'", P("object:app.t", "UPDATE"), username="inner"),
        role("'inner2'", P("object:app.t", "DELETE"), username="inner2"),
    )
    out = effective_access(cat, family="mysql")
    assert view(out["'u'@'%'"]) == {
        ("database:app", "SELECT", ("'dflt'",), True),
        ("object:app.t", "UPDATE", ("'dflt'", "'inner'"), True),
        ("database:app", "INSERT", ("'other'",), False),
        ("object:app.t", "DELETE", ("'other'", "'inner2'"), False),
    }
    # a role's own list: what it gives when it is in force
    assert view(out["'other'"]) == {
        ("database:app", "INSERT", (), True),
        ("object:app.t", "DELETE", ("'inner2'",), True),
    }


def test_mariadb_public_role_reaches_every_user() -> None:
    cat = mariadb(
        user("'u'@'%'", username="u", host="%"),
        role("'r'", username="r"),
        role("'PUBLIC'", P("object:app.t", "SELECT"), username="PUBLIC"),
    )
    out = effective_access(cat, family="mariadb")
    assert view(out["'u'@'%'"]) == {("object:app.t", "SELECT", ("'PUBLIC'",), True)}
    assert out["'r'"] == []


def test_role_named_by_username_follows_finalize_lookup() -> None:
    cat = mariadb(
        user("'u'@'%'", roles=(R("reader"),), username="u", host="%"),
        role("'reader'", P("object:app.t", "SELECT"), username="reader"),
    )
    assert view(effective_access(cat, family="mysql")["'u'@'%'"]) == {("object:app.t", "SELECT", ("'reader'",), True)}


# --- MySQL 8 --------------------------------------------------------------------------------


def mysql8(*accounts: AccountRecord, **details: Any) -> Catalog:
    return Catalog(accounts=list(accounts), details={"flavor": "mysql", **details})


def mysql8_accounts() -> list[AccountRecord]:
    return [
        user("'u'@'%'", roles=(R("'dev'@'%'"), R("'ops'@'%'", default=False)), username="u", host="%"),
        # role_edges from a role: default_roles never names it, yet it is in force with its holder
        role("'dev'@'%'", P("database:app", "SELECT"), roles=(R("'base'@'%'", default=False),), username="dev"),
        role("'ops'@'%'", P("global", "PROCESS"), username="ops"),
        role("'base'@'%'", P("object:app.t", "INSERT"), username="base"),
        role("'audit'@'%'", P("database:audit", "SELECT"), username="audit"),
    ]


def test_mysql8_default_roles_at_login_others_by_set_role() -> None:
    out = effective_access(mysql8(*mysql8_accounts()), family="mysql")
    assert view(out["'u'@'%'"]) == {
        ("database:app", "SELECT", ("'dev'@'%'",), True),
        ("object:app.t", "INSERT", ("'dev'@'%'", "'base'@'%'"), True),
        ("global", "PROCESS", ("'ops'@'%'",), False),
    }
    assert view(out["'dev'@'%'"]) == {
        ("database:app", "SELECT", (), True),
        ("object:app.t", "INSERT", ("'base'@'%'",), True),
    }


def test_mysql8_activate_all_roles_on_login() -> None:
    out = effective_access(mysql8(*mysql8_accounts(), activate_all_roles_on_login=True), family="mysql")
    assert all(g.active for g in out["'u'@'%'"])
    assert ("global", "PROCESS", ("'ops'@'%'",), True) in view(out["'u'@'%'"])


@pytest.mark.parametrize(
    ("switches", "active"),
    [({}, False), ({"activate_mandatory_roles": True}, True), ({"activate_all_roles_on_login": True}, True)],
)
def test_mysql8_mandatory_roles(switches: dict[str, bool], active: bool) -> None:
    cat = mysql8(*mysql8_accounts(), mandatory_roles=["'audit'@'%'"], **switches)
    out = effective_access(cat, family="mysql")
    assert ("database:audit", "SELECT", ("'audit'@'%'",), active) in view(out["'u'@'%'"])
    assert ("database:audit", "SELECT") not in {(g.scope, g.privilege) for g in out["'dev'@'%'"]}  # users only


# --- SQL Server --------------------------------------------------------------------------------


def sqlserver(*accounts: AccountRecord) -> Catalog:
    return Catalog(accounts=list(accounts))


def login(identity: str, *privileges: Privilege, roles: tuple[RoleGrant, ...] = ()) -> AccountRecord:
    return user(identity, *privileges, roles=roles, kind="login")


def fixed(name: str) -> AccountRecord:
    return role(name, attributes={"fixed_role": True})


def test_sqlserver_fixed_server_roles_imply_their_permissions() -> None:
    cat = sqlserver(
        login("ops", roles=(R("ops_team"),)), role("ops_team", roles=(R("serveradmin"),)), fixed("serveradmin")
    )
    out = effective_access(cat, family="sqlserver")
    assert ("global", "SHUTDOWN", ("ops_team", "serveradmin"), True) in view(out["ops"])
    assert {g.privilege for g in out["serveradmin"]} == {p for p, _g in effective.SERVER_FIXED_ROLES["serveradmin"]}


def test_sqlserver_fixed_database_roles_through_nested_database_roles() -> None:
    cat = sqlserver(
        login("app", roles=(R("sales::sub"),)),
        role("sales::sub", roles=(R("sales::reporting"),), username="sub"),
        role("sales::reporting", P("database:sales", "ROLE DB_DATAREADER"), username="reporting"),
    )
    out = effective_access(cat, family="sqlserver")
    assert ("database:sales", "SELECT", ("sales::sub", "sales::reporting", "sales::db_datareader"), True) in view(
        out["app"]
    )


def test_sqlserver_deny_beats_grant_from_anywhere_and_down_the_hierarchy() -> None:
    cat = sqlserver(
        login(
            "u",
            P("object:sales.dbo.orders", "SELECT"),
            P("object:sales.dbo.orders", "UPDATE"),
            P("column:sales.dbo.orders.total", "UPDATE"),
            P("object:hr.dbo.pay", "SELECT"),
            P("database:sales", "ROLE DB_DENYDATAREADER"),
            roles=(R("sales::writers"),),
        ),
        role("sales::writers", P("object:sales.dbo.orders", "UPDATE", effect="DENY"), username="writers"),
    )
    out = by_key(effective_access(cat, family="sqlserver")["u"])
    # db_denydatareader's DENY SELECT on the database beats the table-level GRANT SELECT in it
    assert ("object:sales.dbo.orders", "SELECT", "GRANT") not in out
    assert out["database:sales", "SELECT", "DENY"].via == ("sales::db_denydatareader",)
    # a DENY through a role beats the direct GRANT; the DENY stays visible with its path
    assert ("object:sales.dbo.orders", "UPDATE", "GRANT") not in out
    assert out["object:sales.dbo.orders", "UPDATE", "DENY"].via == ("sales::writers",)
    # a table-level DENY does not beat a column-level GRANT (SQL Server's documented exception) ...
    assert ("column:sales.dbo.orders.total", "UPDATE", "GRANT") in out
    # ... and nothing in another database is touched
    assert ("object:hr.dbo.pay", "SELECT", "GRANT") in out
    # with common criteria compliance the table DENY wins over the column GRANT too
    cat.details["common_criteria_compliance_enabled"] = True
    assert ("column:sales.dbo.orders.total", "UPDATE", "GRANT") not in by_key(
        effective_access(cat, family="sqlserver")["u"]
    )


def test_sqlserver_sysadmin_members_are_not_restricted_by_deny() -> None:
    cat = sqlserver(
        login("boss", P("global", "CONTROL SERVER", effect="DENY"), P("object:s.dbo.t", "SELECT"),
              P("object:s.dbo.t", "SELECT", effect="DENY"), roles=(R("admins"),)),
        role("admins", roles=(R("sysadmin"),)),
        fixed("sysadmin"),
        login("plain", P("global", "CONTROL SERVER", effect="DENY"), roles=(R("ctrl"),)),
        role("ctrl", P("global", "CONTROL SERVER")),
    )  # fmt: skip
    out = effective_access(cat, family="sqlserver")
    boss = by_key(out["boss"])
    assert boss["global", "CONTROL SERVER", "GRANT"].via == ("admins", "sysadmin")
    assert ("object:s.dbo.t", "SELECT", "GRANT") in boss
    assert ("global", "CONTROL SERVER", "GRANT") not in by_key(out["plain"])


def test_sqlserver_public_server_role_reaches_logins_only() -> None:
    cat = sqlserver(
        login("app"),
        role("public", P("global", "VIEW ANY DATABASE")),
        user("sales::contained", kind="user", username="contained"),
    )
    out = effective_access(cat, family="sqlserver")
    assert view(out["app"]) == {("global", "VIEW ANY DATABASE", ("public",), True)}
    assert out["sales::contained"] == []


def test_sqlserver_recorded_catalog_through_the_adapter() -> None:
    from accountsync.adapters.sqlserver import build_catalog
    from tests.sqlserver_recorded import recorded_rows

    cat = build_catalog(recorded_rows())
    out = effective_access(cat, family="sqlserver")
    app = view(out["app"])
    assert (
        "database:sales",
        "SELECT",
        ("sales::reporting.sub", "sales::reporting", "sales::db_datareader"),
        True,
    ) in app
    assert ("schema:sales.reporting", "SELECT", ("sales::reporting.sub", "sales::reporting"), True) in app
    # denied_ctrl holds ctrl_role (CONTROL SERVER) but is denied it; admin_via_role is a sysadmin member
    assert ("global", "CONTROL SERVER", "GRANT") not in by_key(out["denied_ctrl"])
    assert ("global", "CONTROL SERVER", "DENY") in by_key(out["denied_ctrl"])
    assert ("global", "CONTROL SERVER", ("sub_admin", "sysadmin"), True) in view(out["admin_via_role"])
    assert ("global", "ALTER ANY LOGIN", ("ops]admin", "securityadmin"), True) in view(out["CORP\\ops"])


# --- Oracle ---------------------------------------------------------------------------------


def test_oracle_default_non_default_nested_roles_and_public() -> None:
    cat = Catalog(
        accounts=[
            user("APP", roles=(R("APP_READ"), R("APP_ADMIN", default=False))),
            role("APP_READ", P("object:OWN.T", "SELECT")),
            role("APP_ADMIN", roles=(R("APP_WRITE", default=False),)),  # a role's roles: always with it
            role("APP_WRITE", P("object:OWN.T", "INSERT")),
            role("APP_REPORT", P("object:OWN.R", "SELECT")),
        ],
        details={
            "public_grants": {
                "privileges": [{"scope": "object:SYS.DBMS_OUTPUT", "privilege": "EXECUTE", "grantable": False}],
                "roles": [
                    {"role": "APP_READ", "admin_option": False, "default": True},
                    {"role": "APP_REPORT", "admin_option": False, "default": False},  # SET ROLE APP_REPORT
                ],
            }
        },
    )
    out = effective_access(cat, family="oracle")
    assert view(out["APP"]) == {
        ("object:OWN.T", "SELECT", ("APP_READ",), True),
        ("object:OWN.T", "INSERT", ("APP_ADMIN", "APP_WRITE"), False),
        ("object:SYS.DBMS_OUTPUT", "EXECUTE", ("PUBLIC",), True),
        ("object:OWN.R", "SELECT", ("PUBLIC", "APP_REPORT"), False),
    }
    assert view(out["APP_ADMIN"]) == {("object:OWN.T", "INSERT", ("APP_WRITE",), True)}


def test_oracle_recorded_catalog_through_the_adapter() -> None:
    from accountsync.adapters.oracle import build_catalog
    from tests.accountsync.oracle_rows import load, rows_of

    catalog = build_catalog(rows_of(load("catalog_19c.json")))
    out = effective_access(catalog, family="oracle")
    owner = view(out["APP_OWNER"])
    # APP_ADMIN is granted to APP_OWNER as a non-default (password) role: only after SET ROLE
    assert ("global", "CREATE USER", ("APP_ADMIN", "USER_MGR"), False) in owner
    assert ("object:APP_OWNER.ORDERS", "INSERT", ("APP_ADMIN", "APP_WRITE"), False) in owner
    # SELECT on ORDERS: PUBLIC holds APP_READ, in force for every user
    assert ("object:APP_OWNER.ORDERS", "SELECT", ("PUBLIC", "APP_READ"), True) in owner
    assert ("object:SYS.DBMS_OUTPUT", "EXECUTE", ("PUBLIC",), True) in view(out["BACKUP_OP"])
    assert ("object:APP_OWNER.ORDERS", "SELECT", ("APP_READ",), True) in view(out['Mixed.Case"User'])
    # who may connect through whom (DBA_PROXIES) is the proxy's own access
    assert ("proxy:JR_DBA", "CONNECT THROUGH", (), True) in view(out["APP_SRV"])
    assert ("proxy:APP_OWNER", "CONNECT THROUGH WITH ROLE APP_ADMIN", (), True) in view(out["REPORT_SRV"])
    # PUBLIC's own list keeps its grants, Oracle's defaults included; other lists leave them out on request
    assert ("object:SYS.DBMS_LOB", "EXECUTE", (), True) in view(out["PUBLIC"])
    quiet = effective_access(catalog, family="oracle", include_public=False)
    assert not any(g.via[:1] == ("PUBLIC",) for g in quiet["APP_OWNER"])


# --- set-based: one closure per role, whatever the number of accounts ---------------------


def test_five_thousand_accounts_sharing_twenty_roles_compute_twenty_closures(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(16)
    roles = [
        role(f"r{i}", P(f"object:app.public.t{i}", "SELECT"), P(DB, "CONNECT", i % 3 == 0),
             roles=tuple(R(f"r{j}", default=rng.random() < 0.7) for j in range(i + 1, 20) if rng.random() < 0.15))
        for i in range(20)
    ]  # fmt: skip
    users = [
        user(f"u{n}", P(f"object:app.public.own{n % 50}", "UPDATE"),
             roles=tuple(R(f"r{i}", default=rng.random() < 0.8) for i in rng.sample(range(20), 3)))
        for n in range(5000)
    ]  # fmt: skip
    cat = Catalog(accounts=[*users, *roles])

    calls: list[str] = []
    real = effective._Graph._closure

    def counting(self: Any, start: str, component: set[str]) -> Any:
        calls.append(start)
        return real(self, start, component)

    monkeypatch.setattr(effective._Graph, "_closure", counting)
    stats: dict[str, int] = {}
    out = effective_access(cat, family="postgresql", stats=stats)
    assert stats == {"closures": 20, "accounts": 5020}
    assert sorted(calls) == sorted(f"r{i}" for i in range(20))  # once per role, none per account
    assert len(out) == 5020 and all(out[f"u{n}"] for n in range(5000))

    # spot-check the shared answer against a naive per-account walk
    for n in rng.sample(range(5000), 25):
        assert {(g.scope, g.privilege, g.active) for g in out[f"u{n}"]} == naive_postgresql(cat, f"u{n}")


def naive_postgresql(cat: Catalog, start: str) -> set[tuple[str, str, bool]]:
    """Reference: every path walked from scratch (fine for a spot check, too slow for all accounts)."""
    accounts = {a.identity: a for a in cat.accounts}
    found: dict[tuple[str, str], bool] = {}

    def walk(identity: str, in_force: bool, prefix_settable: bool, seen: frozenset[str]) -> None:
        acc = accounts[identity]
        for p in acc.privileges:
            key = (p.scope, p.privilege.upper())
            found[key] = found.get(key, False) or in_force
        for g in acc.roles:
            if g.role in seen or g.role not in accounts:
                continue
            # with every membership settable, whatever is a member of is reachable: in force only by inheriting
            walk(g.role, in_force and g.default, prefix_settable, seen | {g.role})

    walk(start, True, True, frozenset({start}))
    return {(s, p, a) for (s, p), a in found.items()}
