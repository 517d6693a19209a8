"""The apply half of the sync engine, driven by hand-built catalogs (no remote server)."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accountsync.adapters.base import AccountRecord, Catalog, Privilege, RoleGrant
from accountsync.bulk import INSERT_CHUNK
from accountsync.facts import record_server_facts
from accountsync.models import AccountChangeLog, AccountPermission, InstanceAccount
from accountsync.services import account_sync_apply

pytestmark = pytest.mark.django_db

TABLES = ("accountsync_instanceaccount", "accountsync_accountpermission", "accountsync_accountchangelog")


def acct(name: str, *privs: tuple[str, str], roles: tuple[str, ...] = (), locked: bool = False, **kw) -> AccountRecord:
    return AccountRecord(
        identity=f"'{name}'@'%'",
        username=name,
        host="%",
        is_locked=locked,
        attributes={"locked": locked, "auth_plugin": "mysql_native_password"},
        privileges=[Privilege(scope, priv) for scope, priv in privs],
        roles=[RoleGrant(r) for r in roles],
        **kw,
    )


def catalog(*accounts: AccountRecord, unknown: tuple[str, ...] = ()) -> Catalog:
    return Catalog(accounts=list(accounts), unknown_scopes=list(unknown)).finalize()


def writes(ctx: CaptureQueriesContext) -> list[str]:
    return [
        q["sql"]
        for q in ctx.captured_queries
        if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")) and any(t in q["sql"] for t in TABLES)
    ]


def logs(instance) -> list[tuple[str, str, str]]:
    return sorted(
        AccountChangeLog.objects.filter(instance=instance).values_list("account__identity", "change_type", "summary")
    )


@pytest.fixture
def instance(make_instance):
    return make_instance()


def base_catalog() -> Catalog:
    return catalog(
        acct("alice", ("database:sales", "SELECT"), ("object:sales.orders", "INSERT")),
        acct("bob", ("global", "PROCESS")),
        acct("carol", ("database:hr", "SELECT")),
    )


def test_first_sync_adds_accounts_snapshots_and_logs(instance):
    session = uuid.uuid4()
    result = account_sync_apply(instance=instance, catalog=base_catalog(), session_id=session)

    assert result.success, result.message
    assert result.as_dict() == {
        "success": True,
        "message": f"{instance.name}: synced 3 accounts (3 added, 0 modified, 0 removed)",
        "synced_count": 3,
        "added_count": 3,
        "modified_count": 0,
        "removed_count": 0,
        "details": {
            "inventory": {"seen": 3, "active_before": 0, "added": 3, "removed": 0, "reactivated": 0, "updated": 0},
            "collection": {
                "processed": 3,
                "unchanged": 0,
                "modified": 0,
                "snapshots_written": 3,
                "privileges_changed": 0,
                "attributes_changed": 0,
                "reactivated": 0,
            },
            "coverage": {"gaps": [], "opened": [], "closed": []},
        },
        "error_kind": None,
    }
    assert InstanceAccount.objects.filter(instance=instance, is_active=True).count() == 3
    assert AccountPermission.objects.filter(instance=instance, valid_to__isnull=True).count() == 3
    alice = AccountChangeLog.objects.get(account__username="alice")
    assert alice.change_type == "added"
    assert alice.session_id == session
    assert alice.summary == "added 'alice'@'%': +SELECT on database:sales, +INSERT on object:sales.orders; " + (
        "auth_plugin null→mysql_native_password, locked null→false"
    )


def test_no_change_resync_writes_nothing(instance):
    account_sync_apply(instance=instance, catalog=base_catalog())
    with CaptureQueriesContext(connection) as ctx:
        result = account_sync_apply(instance=instance, catalog=base_catalog())
    assert result.success
    assert (result.added_count, result.modified_count, result.removed_count) == (0, 0, 0)
    assert result.details["collection"]["unchanged"] == 3
    assert writes(ctx) == []
    assert AccountChangeLog.objects.count() == 3
    assert AccountPermission.objects.count() == 3


def test_grant_revoke_and_attribute_change(instance):
    account_sync_apply(instance=instance, catalog=base_catalog())
    changed = catalog(
        acct("alice", ("database:sales", "SELECT"), ("database:sales", "UPDATE")),
        acct("bob", ("global", "PROCESS"), locked=True),
        acct("carol", ("database:hr", "SELECT"), roles=("reporting",)),
    )
    result = account_sync_apply(instance=instance, catalog=changed)

    assert (result.added_count, result.modified_count, result.removed_count) == (0, 3, 0)
    assert result.details["collection"]["privileges_changed"] == 2
    assert result.details["collection"]["attributes_changed"] == 1
    new_logs = AccountChangeLog.objects.exclude(change_type="added")
    by_user = {c.account.username: c for c in new_logs}
    assert by_user["alice"].change_type == "privileges_changed"
    assert by_user["alice"].summary == "+UPDATE on database:sales, -INSERT on object:sales.orders"
    assert by_user["alice"].diff == [
        {
            "op": "grant",
            "scope": "database:sales",
            "privilege": "UPDATE",
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
    ]
    assert by_user["bob"].change_type == "attributes_changed"
    assert by_user["bob"].summary == "locked false→true"
    assert by_user["bob"].diff == [{"op": "set", "scope": "attribute", "field": "locked", "old": False, "new": True}]
    assert by_user["carol"].summary == "+role reporting"
    assert InstanceAccount.objects.get(username="bob").is_locked is True
    # old snapshots are closed, not deleted: exactly one open row per account
    assert AccountPermission.objects.count() == 6
    assert AccountPermission.objects.filter(valid_to__isnull=True).count() == 3
    alice_rows = AccountPermission.objects.filter(account__username="alice").order_by("valid_from", "id")
    assert alice_rows[0].valid_to is not None and alice_rows[1].valid_to is None


def test_remove_then_reactivate(instance):
    account_sync_apply(instance=instance, catalog=base_catalog())
    gone = catalog(
        acct("alice", ("database:sales", "SELECT"), ("object:sales.orders", "INSERT")),
        acct("bob", ("global", "PROCESS")),
    )
    result = account_sync_apply(instance=instance, catalog=gone)
    assert (result.added_count, result.modified_count, result.removed_count) == (0, 0, 1)
    carol = InstanceAccount.objects.get(username="carol")
    assert carol.is_active is False and carol.deactivated_at is not None
    assert not AccountPermission.objects.filter(account=carol, valid_to__isnull=True).exists()
    assert AccountChangeLog.objects.get(account=carol, change_type="removed").summary == "removed 'carol'@'%'"

    result = account_sync_apply(instance=instance, catalog=base_catalog())
    assert (result.added_count, result.modified_count, result.removed_count) == (0, 1, 0)
    assert result.details["inventory"]["reactivated"] == 1
    carol.refresh_from_db()
    assert carol.is_active is True and carol.deactivated_at is None
    log = AccountChangeLog.objects.get(account=carol, change_type="reactivated")
    assert log.summary.startswith("reactivated 'carol'@'%': +SELECT on database:hr")
    assert InstanceAccount.objects.count() == 3  # never deleted, never duplicated


def test_guard_empty_fetch_changes_nothing(instance):
    account_sync_apply(instance=instance, catalog=base_catalog())
    with CaptureQueriesContext(connection) as ctx:
        result = account_sync_apply(instance=instance, catalog=catalog())
    assert result.success is False
    assert result.error_kind == "guard"
    assert instance.name in result.message and "no accounts" in result.message
    assert writes(ctx) == []
    assert InstanceAccount.objects.filter(is_active=True).count() == 3


def test_guard_ratio_and_force(instance, settings):
    settings.WHALEFALL_MAX_REMOVAL_RATIO = 0.5
    account_sync_apply(instance=instance, catalog=base_catalog())
    only_bob = catalog(acct("bob", ("global", "PROCESS")))
    result = account_sync_apply(instance=instance, catalog=only_bob)
    assert (result.success, result.error_kind) == (False, "guard")
    assert "deactivate 2 of 3 active accounts" in result.message
    assert InstanceAccount.objects.filter(is_active=True).count() == 3
    assert AccountChangeLog.objects.count() == 3

    forced = account_sync_apply(instance=instance, catalog=only_bob, force=True)
    assert forced.success and forced.removed_count == 2
    assert InstanceAccount.objects.filter(is_active=True).count() == 1

    # exactly at the ratio is allowed (1 of 3 with a ratio of 1/3)
    account_sync_apply(instance=instance, catalog=base_catalog())
    two = catalog(
        acct("alice", ("database:sales", "SELECT"), ("object:sales.orders", "INSERT")),
        acct("bob", ("global", "PROCESS")),
    )
    settings.WHALEFALL_MAX_REMOVAL_RATIO = 1 / 3
    assert account_sync_apply(instance=instance, catalog=two).success


def many(n: int) -> Catalog:
    return catalog(
        *(
            acct(
                f"u{i:05d}", ("database:app", "SELECT"), ("object:app.t", "INSERT"), ("global", "USAGE"), roles=("r1",)
            )
            for i in range(n)
        )
    )


def batches(model, n: int, fields: list[str] | None = None) -> int:
    """Statements needed for n rows: ceil(n / batch), where the batch is 1000 or the backend's cap.

    SQLite caps statement parameters (999), so its batches are smaller; the
    bound is still O(N / batch), never one statement per row.
    """
    if fields is None:
        fields = [f.name for f in model._meta.concrete_fields if not f.primary_key]
    size = min(1000, connection.ops.bulk_batch_size(fields, [None] * n) or 1000)
    return -(-n // size)


@pytest.mark.parametrize("n", [10, 2000])
def test_apply_query_count_is_o_n_over_batch(instance, n, django_assert_max_num_queries):
    # Inserts are one executemany per INSERT_CHUNK rows for each of the three tables.
    inserts = 3 * -(-n // INSERT_CHUNK)
    # savepoint + release, account load, new-id load, open-snapshot load, open coverage gaps, plus the inserts
    with django_assert_max_num_queries(6 + inserts):
        first = account_sync_apply(instance=instance, catalog=many(n))
    assert first.added_count == n
    assert inserts == 3
    changed = many(n)
    for rec in changed.accounts:
        rec.privileges.append(Privilege("database:app", "UPDATE"))
        rec.is_locked = True
    update_fields = [
        "pk",
        "pk",
        "is_active",
        "deactivated_at",
        "last_seen_at",
        "username",
        "host",
        "kind",
        "is_superuser",
        "is_locked",
        "attributes",
    ]
    changed_cost = (
        batches(InstanceAccount, n, update_fields)  # bulk_update of the account rows
        + -(-n // 1000) * 2  # old-snapshot loads and snapshot closes (id lists of 1000)
        + 2 * -(-n // INSERT_CHUNK)  # snapshot and change-log executemany
    )
    with django_assert_max_num_queries(5 + changed_cost):
        second = account_sync_apply(instance=instance, catalog=changed)
    assert second.modified_count == n
    with django_assert_max_num_queries(5):
        third = account_sync_apply(instance=instance, catalog=changed)
    assert third.details["collection"]["unchanged"] == n


def test_selectors_permission_at_time(instance):
    from datetime import timedelta

    from accountsync import selectors

    account_sync_apply(instance=instance, catalog=base_catalog())
    alice = InstanceAccount.objects.get(username="alice")
    first = selectors.account_current_permission(account=alice)
    account_sync_apply(
        instance=instance, catalog=catalog(acct("alice", ("global", "SELECT")), *base_catalog().accounts[1:])
    )
    second = selectors.account_current_permission(account=alice)
    assert second.pk != first.pk
    first.refresh_from_db()
    assert selectors.account_permission_at(account=alice, at=first.valid_from) == first
    assert selectors.account_permission_at(account=alice, at=second.valid_from) == second
    assert selectors.account_permission_at(account=alice, at=first.valid_from - timedelta(seconds=1)) is None
    assert [c.change_type for c in selectors.change_log_list(account=alice)] == ["privileges_changed", "added"]
    assert selectors.account_list(instance=instance).count() == 3


@pytest.mark.parametrize("phase", ["fetch", "apply"])
def test_cancel_before_fetch_or_apply_writes_nothing(instance, phase, monkeypatch):
    from accountsync import services

    class FakeAdapter:
        def fetch(self, target):
            return base_catalog()

    monkeypatch.setattr(services, "get_adapter", lambda db_type: FakeAdapter())
    seen: list[str] = []

    def hook(current: str) -> None:
        seen.append(current)
        if current == phase:
            raise services.SyncCancelled

    result = services.account_sync_run(instance=instance, before_apply=hook)
    assert (result.success, result.error_kind) == (False, "cancelled")
    assert instance.name in result.message
    assert seen == ["fetch", "apply"][: ["fetch", "apply"].index(phase) + 1]
    assert not InstanceAccount.objects.exists()
    instance.refresh_from_db()
    assert (instance.last_sync_status, instance.sync_count) == ("failed", 1)

    ok = services.account_sync_run(instance=instance, before_apply=seen.append)
    assert ok.success and ok.added_count == 3


def test_server_wide_facts_reach_the_result_details(instance):
    """PUBLIC grants and the server's password lifetime belong to no account; the result carries them."""
    cat = catalog(acct("alice", ("database:sales", "SELECT")))
    public = [{"scope": "database:sales", "privilege": "CONNECT", "grantable": False, "effect": "GRANT"}]
    cat.details.update(public_grants=public, default_password_lifetime=90, flavor="mariadb")
    details = account_sync_apply(instance=instance, catalog=cat).details
    # stored once as a version (accountsync/facts.py): the details count them and name the version
    facts_id = details["server_facts"]["id"]
    assert details["public_grants"] == {"count": 1, "facts_id": facts_id}
    assert record_server_facts(details)["public_grants"] == public
    assert details["default_password_lifetime"] == 90
    assert "flavor" not in details
    plain = account_sync_apply(instance=instance, catalog=catalog(acct("alice", ("database:sales", "SELECT"))))
    assert "public_grants" not in plain.details


def test_unchanged_catalog_writes_nothing_and_reports_what_is_stored(instance, django_assert_max_num_queries):
    first = base_catalog()
    first.source_digest = "a" * 64
    account_sync_apply(instance=instance, catalog=first)
    instance.refresh_from_db()
    assert instance.catalog_digest == "a" * 64
    active = InstanceAccount.objects.filter(instance=instance, is_active=True).count()
    # the stored digest, the active count, the open coverage gaps
    with CaptureQueriesContext(connection) as ctx, django_assert_max_num_queries(3):
        result = account_sync_apply(instance=instance, catalog=Catalog(source_digest="a" * 64, unchanged=True))
    assert result.success and writes(ctx) == [] and not any(q["sql"].startswith("UPDATE") for q in ctx.captured_queries)
    assert (result.synced_count, result.added_count, result.modified_count, result.removed_count) == (active, 0, 0, 0)
    assert result.details["inventory"]["catalog_unchanged"] is True
    # an empty catalog flagged unchanged must never read as "every account removed"
    assert InstanceAccount.objects.filter(instance=instance, is_active=True).count() == active


def test_unchanged_catalog_against_another_digest_is_refused(instance):
    first = base_catalog()
    first.source_digest = "a" * 64
    account_sync_apply(instance=instance, catalog=first)
    stale = account_sync_apply(instance=instance, catalog=Catalog(source_digest="b" * 64, unchanged=True))
    assert (stale.success, stale.error_kind) == (False, "conflict")
    assert InstanceAccount.objects.filter(instance=instance, is_active=True).count() == len(first.accounts)


def test_a_refused_apply_keeps_the_previous_digest(instance, settings):
    first = base_catalog()
    first.source_digest = "a" * 64
    account_sync_apply(instance=instance, catalog=first)
    empty = catalog()
    empty.source_digest = "c" * 64
    assert account_sync_apply(instance=instance, catalog=empty).error_kind == "guard"
    instance.refresh_from_db()
    assert instance.catalog_digest == "a" * 64


class HomedCatalog(Catalog):
    """A catalog whose adapter says which accounts live inside one database (attribute `home`)."""

    def account_scope(self, identity: str, kind: str, attributes: dict) -> str | None:
        return attributes.get("home")


def homed(*accounts: AccountRecord, unknown: tuple[str, ...] = ()) -> Catalog:
    return HomedCatalog(accounts=list(accounts), unknown_scopes=list(unknown)).finalize()


def local_user(name: str, *privs: tuple[str, str]) -> AccountRecord:
    return AccountRecord(
        identity=f"sales::{name}",
        username=name,
        attributes={"home": "database:sales"},
        privileges=[Privilege(scope, priv) for scope, priv in privs],
    )


def test_an_account_inside_an_unreadable_scope_is_carried_whole_and_removed_only_once_read(instance):
    """The engine's carry-forward, on any family: could not read is never "removed"."""
    account_sync_apply(
        instance=instance,
        catalog=homed(
            acct("alice", ("database:sales", "SELECT"), roles=("sales::readers",)),
            local_user("bob", ("object:sales.orders", "DELETE")),
            AccountRecord(
                identity="sales::readers", username="readers", kind="role", attributes={"home": "database:sales"}
            ),
        ),
    )
    entries, snapshots = AccountChangeLog.objects.count(), AccountPermission.objects.count()

    # sales unreadable: neither bob nor the role is listed, alice's grants and membership there are not either
    during = account_sync_apply(instance=instance, catalog=homed(acct("alice"), unknown=("database:sales",)))
    assert during.success and during.removed_count == 0 and during.modified_count == 0
    assert during.details["inventory"]["carried"] == 2
    assert (AccountChangeLog.objects.count(), AccountPermission.objects.count()) == (entries, snapshots)
    assert set(
        InstanceAccount.objects.filter(instance=instance, is_active=True).values_list("identity", flat=True)
    ) == {
        "'alice'@'%'",
        "sales::bob",
        "sales::readers",
    }

    # read again: bob is really gone, alice really lost SELECT; the role and the membership are still there
    after = account_sync_apply(
        instance=instance,
        catalog=homed(
            acct("alice", roles=("sales::readers",)),
            AccountRecord(
                identity="sales::readers", username="readers", kind="role", attributes={"home": "database:sales"}
            ),
        ),
    )
    assert after.removed_count == 1 and "carried" not in after.details["inventory"]
    new = AccountChangeLog.objects.order_by("id")[entries:].values_list("account__identity", "change_type", "summary")
    assert sorted(new) == [
        ("'alice'@'%'", "privileges_changed", "-SELECT on database:sales"),
        ("sales::bob", "removed", "removed sales::bob"),
    ]


def test_a_plain_catalog_carries_no_account(instance):
    """Without account_scope (MySQL, PostgreSQL) an account the catalog no longer lists is removed, gap or not."""
    account_sync_apply(instance=instance, catalog=base_catalog())
    result = account_sync_apply(
        instance=instance,
        catalog=catalog(acct("alice"), acct("bob", ("global", "PROCESS")), unknown=("database:hr",)),
    )
    assert result.removed_count == 1 and "carried" not in result.details["inventory"]
