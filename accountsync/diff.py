"""Structured diffs between canonical snapshots (pure functions, no ORM).

Why pure: the engine, the admin and the tests all need the same answer to
"what changed", and a function of two dicts is trivially testable. Snapshots
have the canonical shape of docs/architecture.md (`AccountRecord.snapshot()`).
"""

from __future__ import annotations

import json
from typing import Any

from accountsync.adapters.base import INHERITABLE_CAPABILITIES, snapshot_digest
from config.scopes import ATTRIBUTE_SCOPE, CAPABILITY_SCOPE, ROLE_SCOPE, split_scope

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


def scope_is_unknown(scope: str, unknown_scopes: list[str] | set[str]) -> bool:
    """True when `scope` equals an unknown scope or lies under one.

    Containment is by leading name parts: `database:sales` covers
    `object:sales.orders` and `schema:sales.public`; `schema:sales.public`
    covers `object:sales.public.orders`. Matching on parsed parts (not string
    prefixes) keeps `database:sales` from covering `database:sales2`.
    """
    if scope in unknown_scopes:
        return True
    _level, parts = split_scope(scope)
    for unknown in unknown_scopes:
        u_level, u_parts = split_scope(unknown)
        if u_level in ("database", "schema") and len(parts) > len(u_parts) and parts[: len(u_parts)] == u_parts:
            return True
    return False


def carry_forward(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """Return `new` with `old`'s entries restored where `new` could not read.

    "Could not read" is not "revoked": a privilege whose scope is unknown in
    the new snapshot keeps its last known value, so no revoke is reported and
    it reappears as a real revoke only once the scope is readable again.
    Role memberships are carried the same way when `role` is unknown.
    """
    unknown = set(new.get("unknown_scopes") or [])
    if not old or not unknown:
        return new
    result = dict(new)
    keys = {(p["scope"], p["privilege"]) for p in new["privileges"]}
    kept = [p for p in old.get("privileges", []) if scope_is_unknown(p["scope"], unknown)]
    extra = [p for p in kept if (p["scope"], p["privilege"]) not in keys]
    if extra:
        merged = list(new["privileges"]) + extra
        result["privileges"] = sorted(
            merged, key=lambda p: (p["scope"], p["privilege"], p.get("grantable", False), p.get("effect", "GRANT"))
        )
    if ROLE_SCOPE in unknown:
        names = {r["role"] for r in new["roles"]}
        old_roles = [r for r in old.get("roles", []) if r["role"] not in names]
        if old_roles:
            result["roles"] = sorted(
                list(new["roles"]) + old_roles, key=lambda r: (r["role"], r["admin_option"], r["default"])
            )
    return result


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

    old_u, new_u = sorted(old.get("unknown_scopes", [])), sorted(new.get("unknown_scopes", []))
    if old_u != new_u:
        ops.append({"op": "set", "scope": ATTRIBUTE_SCOPE, "field": "unknown_scopes", "old": old_u, "new": new_u})
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
