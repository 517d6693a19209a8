"""Catalogs applied by the real engine (only the remote fetch is replaced), as in tests/findings."""

from __future__ import annotations

from typing import Any

from accountsync.adapters.base import AccountRecord, Catalog, CoverageGap, Privilege, RoleGrant
from accountsync.services import account_sync_apply
from classification.services import classification_evaluate, facts_refresh


def mysql_account(
    name: str,
    *privileges: Privilege,
    host: str = "localhost",
    roles: tuple[str, ...] = (),
    kind: str = "user",
    locked: bool = False,
    caps: set[str] | None = None,
    plugin: str = "mysql_native_password",
) -> AccountRecord:
    derived = set(caps or ())
    if Privilege("global", "ALL PRIVILEGES") in privileges:
        derived.add("SUPERUSER")
    if any(p.grantable for p in privileges):
        derived.add("GRANT_ADMIN")
    return AccountRecord(
        identity=f"'{name}'@'{host}'" if kind == "user" else f"'{name}'",  # a MariaDB role: just 'name'
        username=name,
        host=host if kind == "user" else None,
        kind=kind,
        privileges=list(privileges),
        roles=[RoleGrant(f"'{r}'") for r in roles],
        capabilities=derived,
        is_locked=locked,
        attributes={"auth_plugin": plugin, "locked": locked},
    )


def apply(instance: Any, *accounts: AccountRecord, coverage: list[CoverageGap] | None = None) -> None:
    catalog = Catalog(accounts=list(accounts), coverage=list(coverage or ())).finalize()
    result = account_sync_apply(instance=instance, catalog=catalog, force=True)
    assert result.success, result.message


def apply_and_classify(instance: Any, *accounts: AccountRecord, coverage: list[CoverageGap] | None = None):
    """Apply as a sync does, then what the post-sync hook does: facts, then this instance's evaluation."""
    apply(instance, *accounts, coverage=coverage)
    facts_refresh(instance=instance)
    return classification_evaluate(instance_ids=[instance.pk])


def members(code: str, instance: Any = None) -> set[str]:
    """Identities currently in the classification `code` (through the public selector)."""
    from accountsync.models import InstanceAccount
    from classification.models import Classification
    from classification.selectors import classification_account_ids

    found = Classification.objects.get(code=code)
    ids = classification_account_ids(classification_id=found.pk, instance_ids=[instance.pk] if instance else None)
    return set(InstanceAccount.objects.filter(pk__in=ids).values_list("identity", flat=True))
