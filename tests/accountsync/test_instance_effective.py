"""One read of an instance's open snapshots per post-sync event, shared by the findings and classification hooks (#19).

Why these tests: the memo may only ever save work. The hooks must read the snapshots once per
event, a memo must never answer for other snapshots (an apply in between, no digest), and the
outcomes (findings, facts digest, assignments) must be those of each hook reading on its own.
"""

from __future__ import annotations

import importlib
import uuid

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from accountsync.adapters.base import AccountRecord, Catalog, Privilege, RoleGrant
from accountsync.effective import effective_access
from accountsync.effective_read import instance_effective, record_from_snapshot, settable_memberships
from accountsync.models import AccountPermission
from accountsync.services import account_sync_apply
from classification.models import ClassificationAssignment, InstanceFacts
from classification.rules import Subject as FactsSubject
from classification.rules import facts_index, privilege_key
from classification.services import (
    _digest,
    _role_closure,
    _role_resolver,
    classification_on_sync_applied,
    facts_refresh,
)
from findings.models import Finding
from findings.services import findings_on_sync_applied
from instances.models import Instance
from sync.hooks import PostSyncEvent

pytestmark = pytest.mark.django_db


class NoMemo(dict):
    """A memo that keeps nothing: each hook reads on its own (what the hooks did before the memo)."""

    def __setitem__(self, key, value):
        return None


@pytest.fixture(autouse=True)
def shipped_categories(db):
    from django.apps import apps

    importlib.import_module("classification.migrations.0002_defaults").create_defaults(apps, None)


def catalog(extra: str = "") -> Catalog:
    """A PostgreSQL graph: nested roles, a grant option held through a role, PUBLIC, a superuser."""
    accounts = [
        AccountRecord(
            identity="public", username="public", kind="role", privileges=[Privilege("database:shop", "CONNECT")]
        ),
        AccountRecord(
            identity="app_owner",
            username="app_owner",
            kind="role",
            privileges=[Privilege("object:shop.public.orders", "INSERT", grantable=True)],
            capabilities={"GRANT_ADMIN"},
        ),
        AccountRecord(
            identity="readers",
            username="readers",
            kind="role",
            privileges=[Privilege("object:shop.public.items", "SELECT")],
            roles=[RoleGrant("app_owner")],
        ),
        AccountRecord(
            identity="ann",
            username="ann",
            attributes={"login": True},
            roles=[RoleGrant("readers")],
            capabilities={"GRANT_ADMIN"},
        ),
        AccountRecord(identity="bob", username="bob", attributes={"login": True}, roles=[RoleGrant("readers")]),
        AccountRecord(
            identity="root", username="root", attributes={"login": True}, capabilities={"SUPERUSER", "GRANT_ADMIN"}
        ),
    ]
    if extra:
        accounts.append(AccountRecord(identity=extra, username=extra, attributes={"login": True}))
    # the adapters' digest of what they read (an apply stores it): what a memo entry is keyed by
    return Catalog(accounts=accounts, source_digest=f"digest-{extra or 'base'}").finalize()


def applied(make_instance, extra: str = "") -> tuple[Instance, frozenset[int]]:
    instance = make_instance("postgresql", port=5432)
    result = account_sync_apply(instance=instance, catalog=catalog(extra))
    assert result.success
    instance.refresh_from_db()
    return instance, frozenset(result.changed_account_ids)


def event(instance: Instance, changed: frozenset[int], memo=None) -> PostSyncEvent:
    kw = {} if memo is None else {"memo": memo}
    return PostSyncEvent(
        instance=instance,
        session_id=uuid.uuid4(),
        result={"success": True, "details": {}},
        changed_account_ids=changed,
        catalog_unchanged=False,
        **kw,
    )


def snapshot_reads(captured: CaptureQueriesContext) -> int:
    return sum(
        1
        for q in captured.captured_queries
        if q["sql"].lstrip().upper().startswith("SELECT")
        and "accountsync_accountpermission" in q["sql"]
        and '"snapshot"' in q["sql"].replace("`", '"')
    )


def outcome(instance: Instance) -> tuple:
    return (
        sorted(
            Finding.objects.filter(instance=instance, is_open=True).values_list(
                "account__identity", "rule_code", "severity", "detail"
            ),
            key=repr,
        ),
        InstanceFacts.objects.filter(instance=instance).values_list("digest", flat=True).get(),
        sorted(
            ClassificationAssignment.objects.filter(instance=instance).values_list("account_id", "classification_id")
        ),
    )


def test_every_event_has_its_own_memo():
    first = PostSyncEvent(None, None, {}, frozenset(), False)
    second = PostSyncEvent(None, None, {}, frozenset(), False)
    assert first.memo == {} and first.memo is not second.memo


def test_findings_and_classification_read_the_snapshots_once_per_event(make_instance):
    instance, changed = applied(make_instance)
    shared = event(instance, changed)
    with CaptureQueriesContext(connection) as captured:
        findings_on_sync_applied(shared)
        classification_on_sync_applied(shared)
    assert snapshot_reads(captured) == 1
    assert shared.result["details"]["findings"]["open"] >= 2
    assert shared.result["details"]["classification"]["facts"]["accounts"] == 6

    alone = event(instance, changed, memo=NoMemo())
    with CaptureQueriesContext(connection) as captured:
        findings_on_sync_applied(alone)
        classification_on_sync_applied(alone)
    assert snapshot_reads(captured) == 2


def test_outcomes_with_the_memo_equal_those_of_each_hook_reading_alone(make_instance):
    instance, changed = applied(make_instance)
    with transaction.atomic():
        findings_on_sync_applied(event(instance, changed, memo=NoMemo()))
        classification_on_sync_applied(event(instance, changed, memo=NoMemo()))
        alone = outcome(instance)
        transaction.set_rollback(True)
    assert not Finding.objects.filter(instance=instance).exists()
    shared = event(instance, changed)
    findings_on_sync_applied(shared)
    classification_on_sync_applied(shared)
    together = outcome(instance)
    assert together == alone
    assert {(identity, code) for identity, code, _s, _d in together[0]} >= {
        ("ann", "GRANT_OPTION"),
        ("root", "SUPERUSER"),
    }
    assert together[2], "the shipped categories assign someone (the superuser)"


def reference_facts_digest(instance: Instance) -> str:
    """The facts digest as instance_subjects computed it before the shared read (its own query, its own pass)."""
    rows = list(
        AccountPermission.objects.filter(instance=instance, valid_to__isnull=True, account__is_active=True)
        .order_by("account_id")
        .values_list(
            "account_id", "account__identity", "account__username", "account__kind", "account__host",
            "account__is_locked", "snapshot",
        )
    )  # fmt: skip
    records = {i: record_from_snapshot(i, u, k, h, s) for _a, i, u, k, h, _l, s in rows}
    effective = effective_access(
        Catalog(accounts=list(records.values())),
        family=instance.db_type,
        include_public=True,
        settable=settable_memberships(records.values()),
    )
    closure, resolve = _role_closure(records), _role_resolver(records)
    held = {resolve.get(g.role, g.role) for r in records.values() for g in r.roles}
    names = {i: r.username for i, r in records.items() if r.kind == "role"}
    subjects = []
    for account_id, identity, username, kind, host, locked, snapshot in rows:
        attributes = dict(snapshot.get("attributes") or {})
        attributes["is_held"] = identity in held
        subjects.append(
            FactsSubject(
                account_id=account_id,
                username=username,
                host=host,
                kind=kind,
                is_locked=bool(locked),
                capabilities=sorted(snapshot.get("capabilities") or ()),
                roles=sorted({n for role in closure.get(identity, ()) for n in (role, names.get(role, role))}),
                keys=sorted(
                    {
                        privilege_key(g.scope, g.privilege, grantable=g.grantable, active=g.active)
                        for g in effective.get(identity, ())
                        if g.effect == "GRANT"
                    }
                ),
                attributes=attributes,
            )
        )
    return _digest(facts_index(subjects))


def test_the_facts_digest_does_not_move_for_the_same_snapshots(make_instance):
    instance, changed = applied(make_instance)
    memo: dict = {}
    findings_on_sync_applied(event(instance, changed, memo=memo))  # fills the memo
    assert memo, "the findings hook left its read for the classification hook"
    facts_refresh(instance=instance, memo=memo)
    assert InstanceFacts.objects.get(instance=instance).digest == reference_facts_digest(instance)


def test_a_memo_is_never_used_for_other_snapshots(make_instance):
    instance, _changed = applied(make_instance)
    memo: dict = {}
    first = instance_effective(instance, memo)
    with CaptureQueriesContext(connection) as captured:
        again = instance_effective(instance, memo)
    assert again is first and len(captured.captured_queries) == 1  # the digest only
    # an apply in between stores another digest: the memo's entry no longer answers
    assert account_sync_apply(instance=instance, catalog=catalog(extra="carl")).success
    fresh = instance_effective(instance, memo)
    assert fresh is not first and "carl" in {a.identity for a in fresh.accounts}
    assert "carl" not in {a.identity for a in first.accounts}


def test_without_a_digest_or_a_memo_every_call_reads(make_instance):
    instance, _changed = applied(make_instance)
    assert instance_effective(instance) is not instance_effective(instance)
    Instance.objects.filter(pk=instance.pk).update(catalog_digest="")
    memo: dict = {}
    first = instance_effective(instance, memo)
    assert memo == {} and instance_effective(instance, memo) is not first


def test_shared_access_equals_a_pass_of_its_own(make_instance):
    instance, _changed = applied(make_instance)
    shared = instance_effective(instance, {})
    records = list(shared.records.values())
    alone = effective_access(Catalog(accounts=records), family="postgresql", include_public=True)
    assert shared.access(include_public=True) == alone
    assert shared.access(include_public=True) is shared.access(include_public=True)
    among = {"app_owner", "readers", "public", "ann"}
    subset = [r for r in records if r.identity in among]
    expected = effective_access(Catalog(accounts=subset), family="postgresql", include_public=False, only={"ann"})
    assert shared.access(include_public=False, only={"ann"}, among=among) == expected
