"""The approved set of one account, in one canonical compact form, and the delta between two of them.

Why pure: the approval, the post-sync evaluation, the API and the tests must agree to the item on
what "the same access" means, so both sides go through the same two functions and no ORM.

Canonical form (``access`` of a baseline entry), sorted, lists rather than dicts to stay small:

- ``grants``: ``[scope, privilege, effect, grantable, via]`` per (scope, privilege, effect), one
  row however many roles give it: grantable if any path gives the grant option, ``via`` the
  shortest path (``[]`` for the account's own grant, else the role path from effective access);
- ``roles``: ``[role, admin_option]`` per role the account holds itself;
- ``capabilities``: the snapshot's capabilities (``SUPERUSER``, ``GRANT_ADMIN``, ...).

Equality ignores the path: the same privilege reached through another role is not drift (the
delta shows the path so a reader sees where an extra privilege comes from). A changed grant
option is drift, reported as a ``grant_option`` item.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any

from accountsync.effective import EffectiveGrant

MAX_ITEMS = 200  # per delta list: a superuser newly outside its baseline must not make a megabyte finding
ROLE_SCOPE = "role"  # the coverage level of role memberships (a ``role`` gap: memberships unreadable)

GrantKey = tuple[str, str, str]


def canonical_access(
    grants: Iterable[EffectiveGrant], roles: Iterable[dict[str, Any]] = (), capabilities: Iterable[str] = ()
) -> dict[str, list[Any]]:
    """The canonical approved set from effective grants and the snapshot's roles and capabilities."""
    best: dict[GrantKey, list[Any]] = {}
    for grant in grants:
        key = (grant.scope, grant.privilege, grant.effect)
        via = list(grant.via)
        row = best.get(key)
        if row is None:
            best[key] = [grant.scope, grant.privilege, grant.effect, bool(grant.grantable), via]
            continue
        row[3] = row[3] or bool(grant.grantable)
        if (len(via), via) < (len(row[4]), row[4]):
            row[4] = via
    held: dict[str, bool] = {}
    for role in roles:
        name = str(role.get("role") or "")
        held[name] = held.get(name, False) or bool(role.get("admin_option"))
    return {
        "grants": [best[key] for key in sorted(best)],
        "roles": [[name, held[name]] for name in sorted(held)],
        "capabilities": sorted({str(c) for c in capabilities}),
    }


def access_digest(access: dict[str, list[Any]]) -> str:
    """sha256 of what equality compares (no paths): equal digests mean no drift."""
    key = {
        "grants": [row[:4] for row in access.get("grants") or []],
        "roles": access.get("roles") or [],
        "capabilities": access.get("capabilities") or [],
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _grant_item(row: list[Any], **extra: Any) -> dict[str, Any]:
    item = {"scope": row[0], "privilege": row[1], "grantable": bool(row[3]), "via": list(row[4])}
    if row[2] != "GRANT":
        item["effect"] = row[2]
    item.update(extra)
    return item


def _grant_text(item: dict[str, Any]) -> str:
    privilege = item["privilege"] if "effect" not in item else f"{item['effect']} {item['privilege']}"
    how = "direct" if not item["via"] else " → ".join(item["via"])
    if item.get("grant_option"):
        return f"grant option of {privilege} on {item['scope']} (via {how})"
    return f"{privilege} on {item['scope']}{' WITH GRANT OPTION' if item['grantable'] else ''} (via {how})"


def access_delta(
    approved: dict[str, list[Any]] | None,
    current: dict[str, list[Any]],
    unreadable: Callable[[str], str | None] = lambda scope: None,
) -> dict[str, Any]:
    """What `current` has beyond `approved` and what it lacks, split into verifiable and unverified items.

    `unreadable(scope)` names the coverage gap a scope lies in (None: readable). An item in an
    unreadable scope is last-known data, never current fact: it goes to ``unverified`` and never
    counts as added or missing. `approved` None means the account has no approved entry.
    """
    approved = approved or {"grants": [], "roles": [], "capabilities": []}
    delta: dict[str, Any] = {
        "added": [],
        "missing": [],
        "added_roles": [],
        "missing_roles": [],
        "added_capabilities": [],
        "missing_capabilities": [],
        "unverified": [],
    }

    def put(kind: str, scope: str, item: dict[str, Any]) -> None:
        gap = unreadable(scope)
        if gap is None:
            delta[kind].append(item)
        else:
            delta["unverified"].append({**item, "change": kind, "gap_scope": gap})

    before = {(r[0], r[1], r[2]): r for r in approved.get("grants") or []}
    after = {(r[0], r[1], r[2]): r for r in current.get("grants") or []}
    for key in sorted(after.keys() - before.keys()):
        put("added", key[0], _grant_item(after[key]))
    for key in sorted(before.keys() - after.keys()):
        put("missing", key[0], _grant_item(before[key]))
    for key in sorted(before.keys() & after.keys()):
        was, now = bool(before[key][3]), bool(after[key][3])
        if now and not was:
            put("added", key[0], _grant_item(after[key], grant_option=True))
        elif was and not now:
            put("missing", key[0], _grant_item(before[key], grant_option=True))

    roles_before = {r[0]: bool(r[1]) for r in approved.get("roles") or []}
    roles_after = {r[0]: bool(r[1]) for r in current.get("roles") or []}
    for name in sorted(roles_after.keys() - roles_before.keys()):
        put("added_roles", ROLE_SCOPE, {"role": name, "admin_option": roles_after[name]})
    for name in sorted(roles_before.keys() - roles_after.keys()):
        put("missing_roles", ROLE_SCOPE, {"role": name, "admin_option": roles_before[name]})
    for name in sorted(roles_before.keys() & roles_after.keys()):
        if roles_after[name] and not roles_before[name]:
            put("added_roles", ROLE_SCOPE, {"role": name, "admin_option": True, "admin_option_only": True})
        elif roles_before[name] and not roles_after[name]:
            put("missing_roles", ROLE_SCOPE, {"role": name, "admin_option": True, "admin_option_only": True})

    caps_before = set(approved.get("capabilities") or [])
    caps_after = set(current.get("capabilities") or [])
    delta["added_capabilities"] = sorted(caps_after - caps_before)
    delta["missing_capabilities"] = sorted(caps_before - caps_after)
    return delta


DRIFT_LISTS = ("added", "missing", "added_roles", "missing_roles", "added_capabilities", "missing_capabilities")


def has_drift(delta: dict[str, Any]) -> bool:
    """Whether the verifiable part of `delta` says anything (``unverified`` alone never opens nor closes drift)."""
    return any(delta[name] for name in DRIFT_LISTS)


def delta_lines(delta: dict[str, Any]) -> list[str]:
    """The delta as sentences, for the finding page and the logs (no secrets: names and privileges only)."""
    lines = [f"+ {_grant_text(item)}" for item in delta["added"]]
    lines += [f"- {_grant_text(item)}" for item in delta["missing"]]
    for sign, name in (("+", "added_roles"), ("-", "missing_roles")):
        for item in delta[name]:
            what = "admin option of role" if item.get("admin_option_only") else "role"
            lines.append(f"{sign} {what} {item['role']}")
    lines += [f"+ capability {c}" for c in delta["added_capabilities"]]
    lines += [f"- capability {c}" for c in delta["missing_capabilities"]]
    return lines


def bounded(delta: dict[str, Any]) -> dict[str, Any]:
    """The delta with each list cut to MAX_ITEMS, the full counts kept beside it."""
    out: dict[str, Any] = {}
    for name, items in delta.items():
        out[name] = items[:MAX_ITEMS]
        if len(items) > MAX_ITEMS:
            out[f"{name}_total"] = len(items)
    return out
