"""Effective access of stored accounts: the role graph rebuilt from the snapshots valid at a moment.

Why from the stored snapshots and not from a fetch: the account page, the API, the exports
and the point-in-time answer must say what an account could do at any moment, and the
snapshots of that moment are the record. An account's page loads only the accounts its role
graph reaches (one query per level of nesting, rarely more than three); an export of a whole
instance loads its snapshots once and computes everyone's in one pass (accountsync/effective.py
computes each role's closure once).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.models import Q

from accountsync.adapters.base import AccountRecord, Catalog, Privilege, RoleGrant
from accountsync.effective import EffectiveGrant, effective_access
from accountsync.facts import server_facts_at
from accountsync.models import AccountPermission

MAX_DEPTH = 32  # role nesting deeper than any server allows; stops a corrupt graph from looping


def _valid_at(at: datetime | None) -> Q:
    if at is None:
        return Q(valid_to__isnull=True)
    return Q(valid_from__lte=at) & (Q(valid_to__isnull=True) | Q(valid_to__gt=at))


def record_from_snapshot(
    identity: str, username: str, kind: str, host: str | None, snapshot: dict[str, Any]
) -> AccountRecord:
    """A stored snapshot back as the AccountRecord the role graph is built from."""
    return AccountRecord(
        identity=identity,
        username=username,
        kind=kind,
        host=host,
        attributes=dict(snapshot.get("attributes") or {}),
        privileges=[
            Privilege(p["scope"], p["privilege"], bool(p.get("grantable")), p.get("effect") or "GRANT")
            for p in snapshot.get("privileges") or []
        ],
        roles=[
            RoleGrant(r["role"], bool(r.get("admin_option")), bool(r.get("default", True)))
            for r in snapshot.get("roles") or []
        ],
        capabilities=set(snapshot.get("capabilities") or ()),
    )


def stored_details(instance_id: int, family: str, at: datetime | None) -> dict[str, Any]:
    """The server facts a role graph with PUBLIC needs at `at`: on Oracle, PUBLIC's grants (no account holds them).

    Why only Oracle: elsewhere PUBLIC is an account with its own snapshot. The facts are the
    version valid at `at` (accountsync/facts.py), so the point-in-time answer includes what
    PUBLIC gave then; without a version (never synced since facts were stored) the pseudo-role
    PUBLIC's snapshot stands in.
    """
    if family != "oracle":
        return {}
    public = server_facts_at(instance_id, at).get("public_grants")
    return {"public_grants": public} if public else {}


def _rows(instance_id: int, at: datetime | None, match: Q | None) -> list[AccountRecord]:
    qs = AccountPermission.objects.filter(_valid_at(at), instance_id=instance_id)
    if match is not None:
        qs = qs.filter(match)
    fields = ("account__identity", "account__username", "account__kind", "account__host", "snapshot")
    return [record_from_snapshot(*row) for row in qs.order_by().values_list(*fields)]


def account_effective_access(
    *, account: Any, at: datetime | None = None, include_public: bool = False
) -> list[EffectiveGrant]:
    """What `account` could do at `at` (now when None), through its roles, with the path.

    PUBLIC's grants (PostgreSQL's `public` pseudo-role, MariaDB's PUBLIC role) are left out
    unless `include_public`: they are the same for every account and shown once, with PUBLIC.
    """
    instance_id = account.instance_id
    family = account.instance.db_type
    # without include_public PUBLIC's grants reach no one, and PUBLIC's own page keeps its snapshot
    details = stored_details(instance_id, family, at) if include_public else {}
    found: dict[str, AccountRecord] = {}
    # Oracle: the pseudo-role PUBLIC and the roles granted to it are reached by every user
    public = details.get("public_grants") or {}
    frontier = {account.identity, *(r["role"] for r in public.get("roles") or ())}
    wanted = {account.identity}
    for _level in range(MAX_DEPTH):
        match = Q(account__identity__in=frontier) | Q(account__kind="role", account__username__in=frontier)
        if not found:
            public_names = ("public", "PUBLIC") if family == "oracle" else ("public",)
            match |= Q(account__identity__in=public_names, account__kind="role")
        fresh = [r for r in _rows(instance_id, at, match) if r.identity not in found]
        for record in fresh:
            found[record.identity] = record
        names = {role.role for record in fresh for role in record.roles}
        known = set(found) | {r.username for r in found.values() if r.kind == "role"}
        frontier = names - known
        if not frontier:
            break
    if account.identity not in found:
        return []
    records = list(found.values())
    return effective_access(
        Catalog(accounts=records, details=details),
        family=family,
        include_public=include_public,
        only=wanted,
        settable=settable_memberships(records),
    ).get(account.identity, [])


def settable_memberships(records: Iterable[AccountRecord]) -> dict[tuple[str, str], bool]:
    """PostgreSQL 16+ memberships whose SET option is false, from the snapshot attribute the adapter writes."""
    return {
        (record.identity, role): False
        for record in records
        for role in record.attributes.get("memberships_without_set") or ()
    }


def instance_effective_access(
    *, instance_id: int, db_type: str, at: datetime | None = None, identities: Iterable[str] | None = None
) -> dict[str, list[EffectiveGrant]]:
    """Everyone's effective access on one instance at `at`, in one pass (exports)."""
    records = _rows(instance_id, at, None)
    # PUBLIC's grants are left out here (include_public=False): Oracle's stored facts (megabytes)
    # would reach no one, and would turn PUBLIC's own row (a baseline, an export) from its snapshot
    # into every one of Oracle's defaults; account_effective_access(include_public=True) reads them.
    return effective_access(
        Catalog(accounts=records),
        family=db_type,
        include_public=False,
        only=identities,
        settable=settable_memberships(records),
    )
