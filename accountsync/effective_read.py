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
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q

from accountsync.adapters.base import AccountRecord, Catalog, Privilege, RoleGrant
from accountsync.effective import EffectiveGrant, effective_access
from accountsync.facts import server_facts_at
from accountsync.models import AccountPermission
from instances.models import Instance

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


# --- one read per post-sync event, shared by the hooks --------------------------------------------

MEMO_KEY = "accountsync.instance_effective"


@dataclass(frozen=True, slots=True)
class OpenAccount:
    """One active account with its open snapshot, as the post-sync hooks read it."""

    account_id: int
    identity: str
    username: str
    kind: str
    host: str | None
    is_locked: bool
    snapshot: dict[str, Any]


class InstanceEffective:
    """An instance's active accounts, their open snapshots, records and effective access, read once.

    Why one object: after a changed sync the findings hook and the classification hook both need
    every open snapshot (decoded from JSON), the AccountRecords built from them and an
    effective-access pass; reading and building them once per post-sync event halves that work.
    `catalog_digest` is the instance's digest read before the snapshots: it is what the memo is
    keyed by, so an apply in between (which stores another digest) can never be answered from it.
    """

    def __init__(self, *, instance_id: int, db_type: str, catalog_digest: str, accounts: list[OpenAccount]) -> None:
        self.instance_id = instance_id
        self.db_type = db_type
        self.catalog_digest = catalog_digest
        self.accounts = accounts
        self._records: dict[str, AccountRecord] | None = None
        self._access: dict[tuple[bool, frozenset[str] | None, frozenset[str] | None], Any] = {}

    @property
    def records(self) -> dict[str, AccountRecord]:
        """identity → AccountRecord, in account order; built on first use (a refresh may need none)."""
        if self._records is None:
            self._records = {
                a.identity: record_from_snapshot(a.identity, a.username, a.kind, a.host, a.snapshot)
                for a in self.accounts
            }
        return self._records

    def access(
        self,
        *,
        include_public: bool,
        only: Iterable[str] | None = None,
        among: Iterable[str] | None = None,
    ) -> dict[str, list[EffectiveGrant]]:
        """`effective_access` over the records (those of `among` only, when given), computed once per arguments.

        `among` keeps a caller's own choice of graph (findings builds it from the role accounts and
        the accounts it asks about), so sharing the read never changes anyone's answer.
        """
        only_key = None if only is None else frozenset(only)
        among_key = None if among is None else frozenset(among)
        key = (include_public, only_key, among_key)
        found = self._access.get(key)
        if found is None:
            records = list(self.records.values())
            if among_key is not None:
                records = [r for r in records if r.identity in among_key]
            found = (
                effective_access(
                    Catalog(accounts=records),
                    family=self.db_type,
                    include_public=include_public,
                    only=only_key,
                    settable=settable_memberships(records),
                )
                if records
                else {}
            )
            self._access[key] = found
        return found


def _open_accounts(instance_id: int) -> list[OpenAccount]:
    fields = (
        "account_id",
        "account__identity",
        "account__username",
        "account__kind",
        "account__host",
        "account__is_locked",
        "snapshot",
    )
    rows = AccountPermission.objects.filter(instance_id=instance_id, valid_to__isnull=True, account__is_active=True)
    return [
        OpenAccount(aid, identity, username, kind, host, bool(locked), snapshot or {})
        for aid, identity, username, kind, host, locked, snapshot in rows.order_by("account_id").values_list(*fields)
    ]


def instance_effective(instance: Any, memo: dict[Any, Any] | None = None) -> InstanceEffective:
    """The instance's active accounts with their open snapshots (one read), shared through `memo`.

    `memo` is the post-sync event's (``sync.hooks.PostSyncEvent.memo``): the first hook that asks
    reads, the next ones reuse it. The entry is keyed by the catalog digest, read again on every
    call (one small query) before anything is reused: a sync applied since stored another digest,
    so its snapshots are read afresh; an instance without a digest (never applied, or rows written
    by hand) is never memoized. Without a memo (rule preview, admin, tests) it simply reads.
    """
    digest = Instance.objects.filter(pk=instance.pk).values_list("catalog_digest", flat=True).first() or ""
    key = (MEMO_KEY, instance.pk, digest)
    if memo is not None and digest:
        found = memo.get(key)
        if isinstance(found, InstanceEffective):
            return found
    result = InstanceEffective(
        instance_id=instance.pk,
        db_type=instance.db_type,
        catalog_digest=digest,
        accounts=_open_accounts(instance.pk),
    )
    if memo is not None and digest:
        memo[key] = result
    return result
