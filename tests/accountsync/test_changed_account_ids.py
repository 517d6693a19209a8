"""SyncResult.changed_account_ids: the accounts an apply gave a change-log row, kept out of the stored dict."""

from __future__ import annotations

import uuid

import pytest

from accountsync.adapters.base import AccountRecord, Catalog, Privilege
from accountsync.models import AccountChangeLog, AccountPermission, InstanceAccount
from accountsync.services import account_sync_apply

pytestmark = pytest.mark.django_db


def acct(name: str, *privs: str, locked: bool = False, plugin: str = "native") -> AccountRecord:
    return AccountRecord(
        identity=name,
        username=name,
        is_locked=locked,
        attributes={"plugin": plugin},
        privileges=[Privilege("global", p) for p in privs],
    )


def catalog(*accounts: AccountRecord, digest: str = "") -> Catalog:
    return Catalog(accounts=list(accounts), source_digest=digest).finalize()


def ids(*names: str) -> list[int]:
    return list(InstanceAccount.objects.filter(identity__in=names).order_by("id").values_list("id", flat=True))


def logged(session: uuid.UUID) -> list[int]:
    return list(AccountChangeLog.objects.filter(session_id=session).order_by("id").values_list("account_id", flat=True))


def apply(instance, cat: Catalog, **kw):
    session = uuid.uuid4()
    result = account_sync_apply(instance=instance, catalog=cat, session_id=session, **kw)
    assert "changed_account_ids" not in result.as_dict()
    if result.success:
        # exactly the accounts of this apply's change-log rows, in the order the rows were written
        assert result.changed_account_ids == logged(session)
    return result


def test_changed_account_ids_follow_the_change_log(make_instance) -> None:
    instance = make_instance()
    base = [acct("a", "SELECT"), acct("b", "SELECT"), acct("c", "SELECT"), acct("d", "SELECT")]

    first = apply(instance, catalog(*base))
    assert sorted(first.changed_account_ids) == ids("a", "b", "c", "d")

    assert apply(instance, catalog(*base)).changed_account_ids == []

    # a: privileges, b: attributes, c: row only (no log row), d: removed, e: added
    second = apply(
        instance,
        catalog(
            acct("a", "SELECT", "INSERT"),
            acct("b", "SELECT", plugin="sha2"),
            acct("c", "SELECT", locked=True),
            acct("e"),
        ),
    )
    assert second.details["inventory"]["updated"] == 2
    assert sorted(second.changed_account_ids) == ids("a", "b", "d", "e")

    # d back with its snapshot closed at removal (a new snapshot), and again over a reopened one (no new snapshot)
    back = [acct("a", "SELECT", "INSERT"), acct("b", "SELECT", plugin="sha2"), acct("c", "SELECT", locked=True)]
    assert apply(instance, catalog(*back, acct("d", "SELECT"), acct("e"))).changed_account_ids == ids("d")
    assert apply(instance, catalog(*back, acct("e"))).changed_account_ids == ids("d")
    AccountPermission.objects.filter(
        pk=AccountPermission.objects.filter(account_id=ids("d")[0]).latest("id").pk
    ).update(valid_to=None)
    returned = apply(instance, catalog(*back, acct("d", "SELECT"), acct("e")))
    assert returned.details["collection"] == {
        **returned.details["collection"],
        "snapshots_written": 0,
        "reactivated": 1,
    }
    assert returned.changed_account_ids == ids("d")


def test_no_ids_when_nothing_is_applied(make_instance) -> None:
    instance = make_instance()
    apply(instance, catalog(acct("a", "SELECT"), acct("b"), digest="1" * 64))

    unchanged = apply(instance, Catalog(source_digest="1" * 64, unchanged=True))
    assert unchanged.success and unchanged.changed_account_ids == []
    conflict = apply(instance, Catalog(source_digest="2" * 64, unchanged=True))
    assert (conflict.error_kind, conflict.changed_account_ids) == ("conflict", [])
    guard = apply(instance, catalog())
    assert (guard.error_kind, guard.changed_account_ids) == ("guard", [])

    forced = apply(instance, catalog(), force=True)
    assert sorted(forced.changed_account_ids) == ids("a", "b")
