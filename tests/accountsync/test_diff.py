"""Pure diff functions: structured ops, classification, summary, partial-read carry-forward."""

from __future__ import annotations

from accountsync.adapters.base import AccountRecord, Privilege, RoleGrant
from accountsync.diff import carry_forward, classify, diff_snapshots, scope_is_unknown, summarize
from config.scopes import split_scope


def snap(*privs: tuple[str, str], roles=(), attrs=None, caps=(), unknown=(), grantable=()) -> dict:
    return AccountRecord(
        identity="x",
        username="x",
        privileges=[Privilege(s, p, grantable=(s, p) in grantable) for s, p in privs],
        roles=[RoleGrant(r) for r in roles],
        attributes=attrs or {},
        capabilities=set(caps),
        unknown_scopes=list(unknown),
    ).snapshot()


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
    assert scope_is_unknown("object:sales.orders", ["database:sales"])
    assert scope_is_unknown("column:sales.public.t.c", ["schema:sales.public"])
    assert scope_is_unknown("database:sales", ["database:sales"])
    assert not scope_is_unknown("database:sales2", ["database:sales"])
    assert not scope_is_unknown("object:sales2.orders", ["database:sales"])
    assert not scope_is_unknown('object:"sales.x".t', ["database:sales"])
    assert not scope_is_unknown("global", ["database:sales"])


def test_carry_forward_keeps_unreadable_privileges():
    old = snap(("database:sales", "SELECT"), ("object:sales.orders", "INSERT"), ("database:hr", "SELECT"))
    new = snap(("database:sales", "SELECT"), unknown=("database:sales",))
    merged = carry_forward(old, new)
    assert [(p["scope"], p["privilege"]) for p in merged["privileges"]] == [
        ("database:sales", "SELECT"),
        ("object:sales.orders", "INSERT"),
    ]
    ops = diff_snapshots(old, merged)
    assert [(o["op"], o["scope"]) for o in ops] == [("revoke", "database:hr"), ("set", "attribute")]
    assert carry_forward(old, snap(("global", "USAGE"))) == snap(("global", "USAGE"))


def test_carry_forward_roles_when_memberships_unreadable():
    old = snap(roles=("reporting",))
    merged = carry_forward(old, snap(unknown=("role",)))
    assert [r["role"] for r in merged["roles"]] == ["reporting"]


def test_account_state_capabilities_are_attribute_changes():
    ops = diff_snapshots(snap(attrs={"locked": False}), snap(attrs={"locked": True}, caps=("LOCKED",)))
    assert classify(ops) == "attributes_changed"
    assert summarize(ops) == "+LOCKED, locked false→true"
