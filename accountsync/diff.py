"""Structured diffs between canonical snapshots (pure functions, no ORM).

Why pure: the engine, the admin and the tests all need the same answer to
"what changed", and a function of two dicts is trivially testable. Snapshots
have the canonical shape of docs/architecture.md (`AccountRecord.snapshot()`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from accountsync.adapters.base import (
    INHERITABLE_CAPABILITIES,
    CoverageGap,
    GapKind,
    gaps_cover,
    snapshot_digest,
)
from config.scopes import ATTRIBUTE_SCOPE, CAPABILITY_SCOPE, ROLE_SCOPE

PRIVILEGES_CHANGED = "privileges_changed"
ATTRIBUTES_CHANGED = "attributes_changed"
SUMMARY_MAX_ITEMS = 12

EMPTY_SNAPSHOT: dict[str, Any] = {
    "schema_version": 1,
    "privileges": [],
    "roles": [],
    "attributes": {},
    "capabilities": [],
    "unknown_scopes": [],
}


def scope_is_unknown(scope: str, gaps: Iterable[CoverageGap]) -> bool:
    """True when a privilege on `scope` lies in one of the `gaps` (see CoverageGap.covers)."""
    return gaps_cover(gaps, scope)


def _privilege_order(p: dict[str, Any]) -> tuple[Any, ...]:
    return (p["scope"], p["privilege"], p.get("grantable", False), p.get("effect", "GRANT"))


def carry_forward(old: dict[str, Any] | None, new: dict[str, Any], gaps: Sequence[CoverageGap]) -> dict[str, Any]:
    """Return `new` with `old`'s entries restored where this sync could not read (`gaps` of kind unreadable).

    "Could not read" is not "revoked": a privilege in an unreadable gap keeps its last
    known value, so no revoke is reported, the capabilities it gave stay (a grantable
    privilege still means GRANT_ADMIN) and the findings whose evidence lies there stay
    open; once the scope is readable again, what is read is compared with what was
    known, so only a real difference becomes a change. Role memberships (and the
    capabilities that flow through them) are carried the same way under a `role` gap.
    """
    unreadable = [gap for gap in gaps if gap.kind == GapKind.UNREADABLE]
    if not old or not unreadable:
        return new
    result = dict(new)
    keys = {(p["scope"], p["privilege"]) for p in new["privileges"]}
    extra = [
        p
        for p in old.get("privileges", [])
        if (p["scope"], p["privilege"]) not in keys and gaps_cover(unreadable, p["scope"])
    ]
    capabilities = set(new.get("capabilities") or ())
    if extra:
        result["privileges"] = sorted([*new["privileges"], *extra], key=_privilege_order)
        if any(p.get("grantable") and p.get("effect", "GRANT") == "GRANT" for p in extra):
            capabilities.add("GRANT_ADMIN")
    if any(gap.scope == ROLE_SCOPE for gap in unreadable):
        names = {r["role"] for r in new["roles"]}
        old_roles = [r for r in old.get("roles", []) if r["role"] not in names]
        if old_roles:
            result["roles"] = sorted(
                list(new["roles"]) + old_roles, key=lambda r: (r["role"], r["admin_option"], r["default"])
            )
        capabilities |= set(old.get("capabilities") or ()) & INHERITABLE_CAPABILITIES
    if capabilities != set(new.get("capabilities") or ()):
        result["capabilities"] = sorted(capabilities)
    return result


def without_out_of_scope(old: dict[str, Any] | None, gaps: Sequence[CoverageGap]) -> dict[str, Any] | None:
    """`old` without its privileges in out-of-scope gaps: what a new snapshot is diffed against.

    Why: a database the instance's options no longer include is no longer audited. Its
    grants leave the new snapshot, but they were not revoked, so the diff must not say so.
    """
    dropped = [gap for gap in gaps if gap.kind == GapKind.OUT_OF_SCOPE]
    if not old or not dropped:
        return old
    kept = [p for p in old.get("privileges", []) if not gaps_cover(dropped, p["scope"])]
    if len(kept) == len(old.get("privileges", [])):
        return old
    view = {**old, "privileges": kept}
    # the grant option that only the dropped grants gave is no longer audited either, not given up
    gone = [p for p in old.get("privileges", []) if gaps_cover(dropped, p["scope"])]
    if any(p.get("grantable") for p in gone) and not any(p.get("grantable") for p in kept):
        view["capabilities"] = [c for c in old.get("capabilities", []) if c != "GRANT_ADMIN"]
    return view


def digest(snapshot: dict[str, Any]) -> str:
    return snapshot_digest(snapshot)


def diff_snapshots(old: dict[str, Any] | None, new: dict[str, Any]) -> list[dict[str, Any]]:
    """Ordered list of grant/revoke/set operations turning `old` into `new`."""
    old = old or EMPTY_SNAPSHOT
    ops: list[dict[str, Any]] = []

    def priv_map(snap: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
        return {
            (p["scope"], p["privilege"]): {"grantable": p.get("grantable", False), "effect": p.get("effect", "GRANT")}
            for p in snap.get("privileges", [])
        }

    new_p = priv_map(new)
    if not old.get("privileges"):
        # a new account (the bulk of a first sync): every privilege is a grant, no key merge needed
        ops.extend(
            {"op": "grant", "scope": scope, "privilege": privilege, "old": None, "new": after}
            for (scope, privilege), after in sorted(new_p.items(), key=lambda item: item[0])
        )
    else:
        old_p = priv_map(old)
        for key in sorted(old_p.keys() | new_p.keys()):
            scope, privilege = key
            before, after = old_p.get(key), new_p.get(key)
            if before == after:
                continue
            op = "grant" if before is None else "revoke" if after is None else "set"
            ops.append({"op": op, "scope": scope, "privilege": privilege, "old": before, "new": after})

    def role_map(snap: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {
            r["role"]: {"admin_option": r.get("admin_option", False), "default": r.get("default", True)}
            for r in snap.get("roles", [])
        }

    old_r, new_r = role_map(old), role_map(new)
    for role in sorted(old_r.keys() | new_r.keys()):
        before, after = old_r.get(role), new_r.get(role)
        if before == after:
            continue
        op = "grant" if before is None else "revoke" if after is None else "set"
        ops.append({"op": op, "scope": ROLE_SCOPE, "privilege": role, "old": before, "new": after})

    old_c, new_c = set(old.get("capabilities", [])), set(new.get("capabilities", []))
    for cap in sorted(old_c ^ new_c):
        ops.append({"op": "set", "scope": CAPABILITY_SCOPE, "field": cap, "old": cap in old_c, "new": cap in new_c})

    old_a, new_a = old.get("attributes", {}) or {}, new.get("attributes", {}) or {}
    for name in sorted(old_a.keys() | new_a.keys()):
        if old_a.get(name) != new_a.get(name):
            ops.append(
                {"op": "set", "scope": ATTRIBUTE_SCOPE, "field": name, "old": old_a.get(name), "new": new_a.get(name)}
            )
    # `unknown_scopes` is never diffed: what a sync could see is the instance's coverage, not a change of the
    # account (snapshots written before coverage was tracked may still carry it)
    return ops


def is_privilege(op: dict[str, Any]) -> bool:
    """Grants, roles and capabilities that flow through roles are privileges.

    Capabilities that describe the account itself (LOCKED, EXPIRED,
    WILDCARD_HOST, ...) mirror attributes, so they count as attribute changes.
    """
    if op["scope"] == ATTRIBUTE_SCOPE:
        return False
    if op["scope"] == CAPABILITY_SCOPE:
        return op["field"] in INHERITABLE_CAPABILITIES
    return True


def classify(ops: list[dict[str, Any]]) -> str | None:
    """`privileges_changed` if any grant, role or privilege-like capability moved, else `attributes_changed`."""
    if not ops:
        return None
    if any(is_privilege(op) for op in ops):
        return PRIVILEGES_CHANGED
    return ATTRIBUTES_CHANGED


_SCALAR_TEXT = {True: "true", False: "false", None: "null"}


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool):
        return _SCALAR_TEXT[value]
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, sort_keys=True, default=str)


def describe(op: dict[str, Any]) -> str:
    """One operation as the summary line shows it (public: the codec builds summaries from the same text)."""
    scope = op["scope"]
    if scope == ROLE_SCOPE:
        name = f"role {op['privilege']}"
        if op["op"] == "grant":
            return f"+{name}"
        if op["op"] == "revoke":
            return f"-{name}"
        changes = [
            f"{k} {_value(op['old'][k])}→{_value(op['new'][k])}" for k in op["new"] if op["old"][k] != op["new"][k]
        ]
        return f"~{name} ({', '.join(changes)})"
    if scope == CAPABILITY_SCOPE:
        return f"{'+' if op['new'] else '-'}{op['field']}"
    if scope == ATTRIBUTE_SCOPE:
        return f"{op['field']} {_value(op['old'])}→{_value(op['new'])}"
    what = f"{op['privilege']} on {scope}"
    if op["op"] == "grant":
        suffix = " WITH GRANT OPTION" if op["new"]["grantable"] else ""
        return f"{'+DENY ' if op['new']['effect'] == 'DENY' else '+'}{what}{suffix}"
    if op["op"] == "revoke":
        return f"-{'DENY ' if op['old']['effect'] == 'DENY' else ''}{what}"
    changes = [f"{k} {_value(op['old'][k])}→{_value(op['new'][k])}" for k in op["new"] if op["old"][k] != op["new"][k]]
    return f"~{what} ({', '.join(changes)})"


def summarize(ops: list[dict[str, Any]]) -> str:
    """One human line: privilege and role changes, then `; ` and attribute changes.

    Capped at SUMMARY_MAX_ITEMS items so a mass grant stays one readable line;
    the full detail is in the structured diff.
    """
    shown = ops[:SUMMARY_MAX_ITEMS]
    privs = [describe(op) for op in shown if is_privilege(op)]
    attrs = [describe(op) for op in shown if not is_privilege(op)]
    line = "; ".join(part for part in (", ".join(privs), ", ".join(attrs)) if part)
    if len(ops) > SUMMARY_MAX_ITEMS:
        line += f" (+{len(ops) - SUMMARY_MAX_ITEMS} more)"
    return line
