"""Pure diff functions: structured ops, classification, summary, partial-read carry-forward."""

from __future__ import annotations

from accountsync.adapters.base import AccountRecord, CoverageGap, GapKind, Privilege, RoleGrant
from accountsync.diff import (
    carry_forward,
    classify,
    diff_snapshots,
    scope_is_unknown,
    summarize,
    without_out_of_scope,
)
from config.scopes import split_scope


def snap(*privs: tuple[str, str], roles=(), attrs=None, caps=(), grantable=()) -> dict:
    return AccountRecord(
        identity="x",
        username="x",
        privileges=[Privilege(s, p, grantable=(s, p) in grantable) for s, p in privs],
        roles=[RoleGrant(r) for r in roles],
        attributes=attrs or {},
        capabilities=set(caps),
    ).snapshot()


def gap(scope: str, *, inclusive: bool = True, kind: str = GapKind.UNREADABLE) -> CoverageGap:
    return CoverageGap(scope=scope, reason="denied", kind=kind, inclusive=inclusive)


def test_identical_snapshots_have_no_ops():
    a = snap(("database:sales", "SELECT"), roles=("r",), attrs={"locked": False})
    assert diff_snapshots(a, a) == []
    assert classify([]) is None
    assert summarize([]) == ""


def test_grant_revoke_and_attributes_summary():
    old = snap(("object:sales.orders", "INSERT"), attrs={"locked": False})
    new = snap(("database:sales", "SELECT"), attrs={"locked": True})
    ops = diff_snapshots(old, new)
    assert ops == [
        {
            "op": "grant",
            "scope": "database:sales",
            "privilege": "SELECT",
            "old": None,
            "new": {"grantable": False, "effect": "GRANT"},
        },
        {
            "op": "revoke",
            "scope": "object:sales.orders",
            "privilege": "INSERT",
            "old": {"grantable": False, "effect": "GRANT"},
            "new": None,
        },
        {"op": "set", "scope": "attribute", "field": "locked", "old": False, "new": True},
    ]
    assert classify(ops) == "privileges_changed"
    assert summarize(ops) == "+SELECT on database:sales, -INSERT on object:sales.orders; locked false→true"


def test_attribute_only_change_is_attributes_changed():
    ops = diff_snapshots(snap(attrs={"auth_plugin": "a"}), snap(attrs={"auth_plugin": "b", "password_expired": True}))
    assert classify(ops) == "attributes_changed"
    assert summarize(ops) == "auth_plugin a→b, password_expired null→true"


def test_roles_grantable_and_capabilities():
    old = snap(("global", "SELECT"), roles=("reporting",))
    new = snap(("global", "SELECT"), roles=("admin",), caps=("SUPERUSER",), grantable={("global", "SELECT")})
    ops = diff_snapshots(old, new)
    assert [(o["op"], o["scope"], o.get("privilege", o.get("field"))) for o in ops] == [
        ("set", "global", "SELECT"),
        ("grant", "role", "admin"),
        ("revoke", "role", "reporting"),
        ("set", "capability", "SUPERUSER"),
    ]
    assert classify(ops) == "privileges_changed"
    assert summarize(ops) == "~SELECT on global (grantable false→true), +role admin, -role reporting, +SUPERUSER"


def test_summary_is_capped():
    ops = diff_snapshots(None, snap(*[("database:d", f"P{i:02d}") for i in range(20)]))
    line = summarize(ops)
    assert line.endswith("(+8 more)")
    assert line.count("+P") == 12


def test_scope_containment_uses_parts_not_prefixes():
    assert split_scope('object:"a.b".t') == ("object", ["a.b", "t"])
    assert split_scope('object:"say ""hi""".t') == ("object", ['say "hi"', "t"])
    assert scope_is_unknown("object:sales.orders", [gap("database:sales")])
    assert scope_is_unknown("column:sales.public.t.c", [gap("schema:sales.public")])
    assert scope_is_unknown("database:sales", [gap("database:sales")])
    assert not scope_is_unknown("database:sales2", [gap("database:sales")])
    assert not scope_is_unknown("object:sales2.orders", [gap("database:sales")])
    assert not scope_is_unknown('object:"sales.x".t', [gap("database:sales")])
    assert not scope_is_unknown("global", [gap("database:sales")])
    # a gap of the contents only: the database's own grants were read (PostgreSQL's pg_database)
    assert not scope_is_unknown("database:sales", [gap("database:sales", inclusive=False)])
    assert scope_is_unknown("schema:sales.public", [gap("database:sales", inclusive=False)])
    # a bare level: every grant of that level (MySQL's unreadable mysql.procs_priv)
    assert scope_is_unknown('routine:app."p(x)"', [gap("routine")])
    assert not scope_is_unknown("object:app.t", [gap("routine")])


def test_carry_forward_keeps_unreadable_privileges():
    old = snap(("database:sales", "SELECT"), ("object:sales.orders", "INSERT"), ("database:hr", "SELECT"))
    new = snap(("database:sales", "SELECT"))
    merged = carry_forward(old, new, [gap("database:sales")])
    assert [(p["scope"], p["privilege"]) for p in merged["privileges"]] == [
        ("database:sales", "SELECT"),
        ("object:sales.orders", "INSERT"),
    ]
    ops = diff_snapshots(old, merged)
    assert [(o["op"], o["scope"]) for o in ops] == [("revoke", "database:hr")]  # never a visibility change
    assert carry_forward(old, snap(("global", "USAGE")), []) == snap(("global", "USAGE"))
    # an out-of-scope gap carries nothing
    assert carry_forward(old, new, [gap("database:sales", kind=GapKind.OUT_OF_SCOPE)]) == new


def test_carry_forward_keeps_the_capability_a_carried_grant_gives():
    old = snap(("object:sales.orders", "INSERT"), grantable={("object:sales.orders", "INSERT")}, caps=("GRANT_ADMIN",))
    merged = carry_forward(old, snap(), [gap("database:sales", inclusive=False)])
    assert merged["capabilities"] == ["GRANT_ADMIN"]
    assert diff_snapshots(old, merged) == []


def test_carry_forward_roles_when_memberships_unreadable():
    old = snap(roles=("reporting",), caps=("SUPERUSER",))
    merged = carry_forward(old, snap(), [gap("role")])
    assert [r["role"] for r in merged["roles"]] == ["reporting"]
    assert merged["capabilities"] == ["SUPERUSER"]


def test_out_of_scope_grants_leave_without_a_revoke():
    old = snap(("database:sales", "CONNECT"), ("object:sales.public.t", "SELECT"), ("object:hr.public.t", "SELECT"))
    new = snap(("database:sales", "CONNECT"), ("object:hr.public.t", "SELECT"))
    gaps = [gap("database:sales", inclusive=False, kind=GapKind.OUT_OF_SCOPE)]
    assert diff_snapshots(without_out_of_scope(old, gaps), new) == []
    assert without_out_of_scope(old, []) is old


def test_unknown_scopes_of_older_snapshots_are_never_a_change():
    old = {**snap(("database:sales", "SELECT")), "unknown_scopes": ["database:hr"]}
    assert diff_snapshots(old, snap(("database:sales", "SELECT"))) == []


def test_account_state_capabilities_are_attribute_changes():
    ops = diff_snapshots(snap(attrs={"locked": False}), snap(attrs={"locked": True}, caps=("LOCKED",)))
    assert classify(ops) == "attributes_changed"
    assert summarize(ops) == "+LOCKED, locked false→true"
