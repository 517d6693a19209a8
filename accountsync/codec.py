"""Canonical snapshot text and first-seen change entries, built from memoised pieces.

Why: at 10,000 accounts a first sync spent most of its Python time encoding
JSON: every account's canonical snapshot, its attributes again for the account
row, and an "added" diff of twenty-odd operations. Accounts in a fleet share a
handful of privilege, role and capability sets, so each distinct set is
encoded once per apply and every account reuses the text. Only the attributes
(timestamps differ per account) are encoded per account.

The output is byte-for-byte what the generic functions produce
(`canonical_json(record.snapshot())`, `diff.diff_snapshots(None, ...)`,
`diff.summarize`): the pieces are made by those same functions and only
concatenated here. Tests compare both ways on varied snapshots.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from accountsync import diff as snapdiff
from accountsync.adapters.base import (
    SCHEMA_VERSION,
    AccountRecord,
    Privilege,
    RoleGrant,
    canonical_attributes,
    canonical_privileges,
    canonical_roles,
)
from config.scopes import ATTRIBUTE_SCOPE

# Same settings as base.canonical_json; built once (json.dumps builds an encoder per call).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
# Same settings as json_text: stored values whose key order is already fixed.
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
_PLAIN_SCALARS = frozenset({str, bool, int})
_HASHABLE_SCALARS = frozenset({str, bool, int, float, type(None)})
_PLAIN_VALUE_TYPES = frozenset({str, bool, int, type(None)})


def json_text(value: Any) -> str:
    """Compact JSON for stored values whose key order is already fixed (diff ops, canonical attributes).

    Not for snapshots: their digest is over `canonical_json`, which sorts keys.
    """
    return _COMPACT.encode(value)


def plain_json(value: Any) -> bool:
    """True when `value` survives a JSON round trip unchanged (no dates, tuples, sets, non-str keys)."""
    if value is None or type(value) in _PLAIN_SCALARS:
        return True
    if isinstance(value, dict) and all(v is None or type(v) in _PLAIN_SCALARS for v in value.values()):
        return all(isinstance(k, str) for k in value)
    if isinstance(value, list):
        return all(plain_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain_json(v) for k, v in value.items())
    return False


@dataclass(frozen=True)
class _Op:
    """One diff operation of a first-seen account: its stored JSON, whether it is a privilege, its summary text."""

    text: str
    is_privilege: bool
    description: str

    @classmethod
    def of(cls, op: dict[str, Any]) -> _Op:
        return cls(json_text(op), snapdiff.is_privilege(op), snapdiff.describe(op))


@dataclass(frozen=True)
class _Part:
    """A canonical list (privileges, roles or capabilities), its canonical text and its first-seen diff ops."""

    items: list[Any]
    text: str
    ops: tuple[_Op, ...]


@dataclass
class Prepared:
    """One account's canonical snapshot, built once for both phases of the apply."""

    snapshot: dict[str, Any]
    text: str
    digest: str
    attributes_text: str
    plain: bool  # the attributes survive a JSON round trip: `snapshot` equals what is stored
    parts: tuple[_Part, _Part, _Part] | None  # privileges, roles, capabilities (None: built the generic way)


class SnapshotCodec:
    """Per-apply memo; drop it with the apply so nothing accumulates in a long-running worker."""

    def __init__(self) -> None:
        self._privileges: dict[tuple[Privilege, ...], _Part] = {}
        self._roles: dict[tuple[RoleGrant, ...], _Part] = {}
        self._capabilities: dict[frozenset[str], _Part] = {}
        self._attribute_ops: dict[tuple[str, type, Any], _Op] = {}
        self._attribute_keys: dict[tuple[Any, ...], list[str] | None] = {}

    # --- snapshots ---------------------------------------------------------------

    def prepare(self, record: AccountRecord) -> Prepared:
        """The snapshot `record.snapshot()` gives, its canonical text and digest."""
        privileges = self._privileges_part(tuple(record.privileges))
        roles = self._roles_part(tuple(record.roles))
        capabilities = self._capabilities_part(frozenset(record.effective_capabilities or record.capabilities))
        attributes, plain = self._attributes(record.attributes)
        attributes_text = _CANONICAL.encode(attributes)
        snapshot = {
            "schema_version": SCHEMA_VERSION,
            "privileges": privileges.items,
            "roles": roles.items,
            "attributes": attributes,
            "capabilities": capabilities.items,
            "unknown_scopes": [],  # kept for the schema; coverage is the instance's (see AccountRecord.snapshot)
        }
        # json.dumps with sort_keys writes the keys in this order; each value is encoded the same way.
        text = (
            f'{{"attributes":{attributes_text},"capabilities":{capabilities.text},'
            f'"privileges":{privileges.text},"roles":{roles.text},"schema_version":{SCHEMA_VERSION},'
            f'"unknown_scopes":[]}}'
        )
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return Prepared(snapshot, text, digest, attributes_text, plain, (privileges, roles, capabilities))

    def _attributes(self, attrs: dict[Any, Any]) -> tuple[dict[str, Any], bool]:
        """(canonical_attributes(attrs), plain_json of it); the common case (str keys, plain scalar values) inline.

        An adapter gives every account the same attribute names, so the sorted key
        order is worked out once per distinct set of names.
        """
        names = tuple(attrs)
        order = self._attribute_keys.get(names, False)
        if order is False:
            order = self._attribute_keys[names] = sorted(names) if all(type(k) is str for k in names) else None
        if order is not None and set(map(type, attrs.values())) <= _PLAIN_VALUE_TYPES:
            return {k: attrs[k] for k in order}, True
        attributes = canonical_attributes(attrs)
        return attributes, plain_json(attributes)

    def _privileges_part(self, key: tuple[Privilege, ...]) -> _Part:
        part = self._privileges.get(key)
        if part is None:
            items = canonical_privileges(key)
            ops = self._first_ops({"privileges": items})
            part = self._privileges[key] = _Part(items, _CANONICAL.encode(items), ops)
        return part

    def _roles_part(self, key: tuple[RoleGrant, ...]) -> _Part:
        part = self._roles.get(key)
        if part is None:
            items = canonical_roles(key)
            part = self._roles[key] = _Part(items, _CANONICAL.encode(items), self._first_ops({"roles": items}))
        return part

    def _capabilities_part(self, key: frozenset[str]) -> _Part:
        part = self._capabilities.get(key)
        if part is None:
            items = sorted(key)
            part = self._capabilities[key] = _Part(
                items, _CANONICAL.encode(items), self._first_ops({"capabilities": items})
            )
        return part

    @staticmethod
    def _first_ops(partial: dict[str, Any]) -> tuple[_Op, ...]:
        """The ops `diff_snapshots(None, ...)` gives for this part alone (parts never interleave in a diff)."""
        snapshot = {**snapdiff.EMPTY_SNAPSHOT, **partial}
        return tuple(_Op.of(op) for op in snapdiff.diff_snapshots(None, snapshot))

    # --- first-seen change entries -----------------------------------------------

    def first_seen_diff(self, prepared: Prepared) -> tuple[str, str]:
        """(diff JSON, summary) of `diff_snapshots(None, snapshot)`: what an added account's change entry stores."""
        if prepared.parts is None or not prepared.plain:
            ops = snapdiff.diff_snapshots(None, self.stored_snapshot(prepared))
            return json_text(ops), snapdiff.summarize(ops)
        privileges, roles, capabilities = prepared.parts
        ops: list[_Op] = [*privileges.ops, *roles.ops, *capabilities.ops]
        snapshot = prepared.snapshot
        cached = self._attribute_ops.get
        for name, value in snapshot["attributes"].items():  # canonical: already in sorted order
            if value is not None:
                op = cached((name, type(value), value)) if type(value) in _HASHABLE_SCALARS else None
                ops.append(op or self._attribute_op(name, value))
        shown = ops[: snapdiff.SUMMARY_MAX_ITEMS]
        privs = ", ".join(op.description for op in shown if op.is_privilege)
        attrs = ", ".join(op.description for op in shown if not op.is_privilege)
        summary = "; ".join(part for part in (privs, attrs) if part)
        if len(ops) > snapdiff.SUMMARY_MAX_ITEMS:
            summary += f" (+{len(ops) - snapdiff.SUMMARY_MAX_ITEMS} more)"
        return "[" + ",".join(op.text for op in ops) + "]", summary

    def _attribute_op(self, name: str, value: Any) -> _Op:
        op = {"op": "set", "scope": ATTRIBUTE_SCOPE, "field": name, "old": None, "new": value}
        if type(value) not in _HASHABLE_SCALARS:
            return _Op.of(op)
        key = (name, type(value), value)  # the type keeps True and 1 apart
        cached = self._attribute_ops.get(key)
        if cached is None:
            cached = self._attribute_ops[key] = _Op.of(op)
        return cached

    @staticmethod
    def stored_snapshot(prepared: Prepared) -> dict[str, Any]:
        """The snapshot as it reads back from the database (what later diffs compare against)."""
        return prepared.snapshot if prepared.plain else json.loads(prepared.text)
