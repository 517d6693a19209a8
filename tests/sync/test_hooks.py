"""Post-sync hooks: who is told that an instance was applied, in which order, and what a failure costs.

The remote server is the only stand-in (a registered adapter answering a chosen catalog);
the engine, the registry, findings and alerts are real.
"""

from __future__ import annotations

import logging

import pytest
from django.core.exceptions import ImproperlyConfigured

from accountsync.models import InstanceAccount
from config.registry import post_sync_hook_register, post_sync_hook_unregister, post_sync_hooks, registry
from findings.models import Finding
from sync.hooks import PostSyncEvent
from sync.models import SyncInstanceRecord
from sync.services import sync_accounts, sync_session_run, sync_session_start
from tests.sync.helpers import account

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(chosen_server):
    chosen_server.accounts = [account("app"), account("dba", superuser=True)]
    chosen_server.digests = True
    return chosen_server


@pytest.fixture
def hooks():
    """The real store, restored after the test; yields a list the test's own hooks append to."""
    saved = dict(registry["post_sync_hooks"])
    calls: list[tuple[str, PostSyncEvent]] = []
    yield calls
    registry["post_sync_hooks"].clear()
    registry["post_sync_hooks"].update(saved)


def test_findings_then_alerts_are_registered_in_that_order():
    names = [hook.name for hook in post_sync_hooks()]
    assert names.index("findings") < names.index("alerts")


def test_order_is_explicit_and_ties_break_by_name(hooks):
    def recorder(name):
        def hook(event):
            hooks.append((name, event))

        return hook

    post_sync_hook_register(name="zz_first", order=1, func=recorder("zz_first"))
    post_sync_hook_register(name="b_late", order=900, func=recorder("b_late"))
    post_sync_hook_register(name="a_late", order=900, func=recorder("a_late"))
    assert [h.name for h in post_sync_hooks()] == [
        "zz_first",
        "findings",  # 100
        "classification",  # 150: categories from the fresh snapshots
        "baselines",  # 160: a classification's baseline needs them
        "directory",  # 170
        "alerts",  # 200: a new account's alert carries its findings
        "a_late",
        "b_late",
    ]


def test_a_taken_name_cannot_be_registered_by_another_function(hooks):
    def mine(event):
        return None

    with pytest.raises(ImproperlyConfigured, match="findings"):
        post_sync_hook_register(name="findings", order=100, func=mine)
    post_sync_hook_register(name="mine", order=5, func=mine)
    post_sync_hook_register(name="mine", order=5, func=mine)  # the same registration again is a no-op
    assert [h.name for h in post_sync_hooks()].count("mine") == 1
    post_sync_hook_unregister(name="mine")
    assert "mine" not in [h.name for h in post_sync_hooks()]


def test_the_event_carries_instance_session_result_changed_ids_and_the_unchanged_flag(server, hooks, make_instance):
    post_sync_hook_register(name="spy", order=1000, func=lambda event: hooks.append(("spy", event)))
    inst = make_instance()
    result = sync_accounts(instance=inst, sync_type="manual_single")
    assert result["success"]
    ((_, first),) = hooks
    ids = set(InstanceAccount.objects.filter(instance=inst).values_list("pk", flat=True))
    assert first.instance == inst and first.session_id is None and first.result is result
    assert first.changed_account_ids == ids and len(ids) == 2
    assert first.catalog_unchanged is False
    # the findings hook ran before the spy and put its summary into the result
    assert first.result["details"]["findings"]["opened"] >= 1

    hooks.clear()
    again = sync_accounts(instance=inst, sync_type="manual_single")
    ((_, second),) = hooks
    assert again["details"]["inventory"]["catalog_unchanged"] is True
    assert second.catalog_unchanged is True and second.changed_account_ids == frozenset()

    hooks.clear()
    server.accounts = [account("app")]
    sync_accounts(instance=inst, sync_type="manual_single")
    ((_, third),) = hooks
    dba = InstanceAccount.objects.get(instance=inst, username="dba")
    assert third.changed_account_ids == {dba.pk} and not dba.is_active


def test_a_failed_sync_is_not_announced(server, hooks, make_instance):
    post_sync_hook_register(name="spy", order=1000, func=lambda event: hooks.append(("spy", event)))
    server.accounts = []  # the guard refuses an empty catalog
    result = sync_accounts(instance=make_instance(), sync_type="manual_single")
    assert not result["success"] and result["error_kind"] == "guard"
    assert hooks == []


def test_a_raising_hook_is_logged_with_its_traceback_and_fails_neither_the_sync_nor_the_others(
    server, hooks, make_instance, caplog
):
    def broken(event):
        Finding.objects.all().delete()  # its own writes roll back to its savepoint
        raise RuntimeError("hook exploded")

    post_sync_hook_register(name="aa_broken", order=150, func=broken)
    post_sync_hook_register(name="zz_after", order=1000, func=lambda event: hooks.append(("zz_after", event)))
    inst = make_instance()
    with caplog.at_level(logging.ERROR, logger="sync.hooks"):
        result = sync_accounts(instance=inst, sync_type="manual_single")
    assert result["success"]
    assert [name for name, _ in hooks] == ["zz_after"], "the hook after the broken one still ran"
    assert Finding.objects.filter(instance=inst, is_open=True).exists(), "the broken hook's delete was rolled back"
    (record,) = [r for r in caplog.records if r.name == "sync.hooks"]
    assert "aa_broken" in record.getMessage() and "hook exploded" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    assert record.wf["phase"] == "aa_broken" and record.wf["instance_id"] == inst.pk


def test_session_records_keep_the_hook_summaries_in_their_details(server, hooks, make_instance, alice):
    inst = make_instance()
    session = sync_session_start(instances=[inst], sync_type="manual_batch", created_by=alice)
    sync_session_run(session=session)
    record = SyncInstanceRecord.objects.get(session=session)
    assert record.status == "completed"
    assert record.details["findings"]["opened"] >= 1
