"""A no-change re-sync's own statements (issue #19): what one record costs WhaleFall's database, and why it is safe.

A fleet's daily re-sync is mostly instances whose catalog did not change; at 1,000 instances
every statement of such a record is a thousand round trips on a CPU-bound database. These
tests pin the statements that ``sync`` (record, lease), the unchanged apply and the alerts
hook send for one such record, counted by table (counts, not timings), and check that each
cut keeps what it replaced: the cancel check, the lease and record fence, the digest check,
and the alerts hook's independence from its operational part.
"""

from __future__ import annotations

import logging
from collections import Counter

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accountsync.adapters.base import Catalog
from alerts.models import AlertChannel, AlertDelivery
from instances.models import Instance
from sync.leases import InstanceLease
from sync.models import SyncInstanceRecord, SyncRecordStatusChoices, SyncSession
from sync.services import LeaseFence, sync_accounts, sync_record_execute, sync_session_start
from tests.sync.helpers import account

R = SyncRecordStatusChoices


@pytest.fixture
def server(chosen_server, settings):
    chosen_server.accounts = [account("app"), account("dba", superuser=True)]
    chosen_server.digests = True
    settings.WHALEFALL_HEARTBEAT_SECONDS = 3600  # no background beat inside a measured record
    return chosen_server


def shape(sql: str) -> str:
    """'UPDATE sync_instance_records', 'SELECT alerts_alertchannel', 'SAVEPOINT': the verb and the first table."""
    words = sql.replace('"', " ").replace("`", " ").split()
    verb = words[0].upper()
    if verb in ("SAVEPOINT", "RELEASE", "ROLLBACK"):
        return verb
    if verb == "UPDATE" and len(words) > 1:  # its table comes first; a FROM may follow in a subquery
        return f"{verb} {words[1]}"
    for marker in ("FROM", "INTO"):
        for i, word in enumerate(words[:-1]):
            if word.upper() == marker:
                return f"{verb} {words[i + 1]}"
    return verb


def record_once(instance: Instance) -> tuple[SyncInstanceRecord, Counter[str]]:
    """One session record run as a worker runs it (``sync_record_execute``), its statements by shape."""
    session = sync_session_start(instances=[instance], sync_type="scheduled_task", created_by=None, enqueue=False)
    record = SyncInstanceRecord.objects.get(session=session)
    with CaptureQueriesContext(connection) as ctx:
        result = sync_record_execute(record_id=record.pk)
    assert result["success"], result
    record.refresh_from_db()
    return record, Counter(shape(q["sql"]) for q in ctx.captured_queries)


# What one no-change record costs, by the files that send it. Before issue #19's cut: 5 record
# UPDATEs and 2 SELECTs, a lease UPDATE (the fence), the digest re-read and the alerts hook's
# SAVEPOINT/RELEASE, i.e. 7 statements more than these.
OWN_CEILING = {
    # the worker's read of the record (with session, instance, credential); finalize's aggregate of the
    # session's records (a record run alone finalizes its session; a batch does it once per session)
    "SELECT sync_instance_records": 2,
    "UPDATE sync_instance_records": 4,  # running (+ cancel check), apply's cancel check, completed, hooks' details
    "INSERT sync_instance_leases": 1,
    "DELETE sync_instance_leases": 1,
    "UPDATE sync_instance_leases": 0,  # the unchanged apply's fence is part of the completing UPDATE
    "SELECT instances_instance": 0,  # so is the digest check
    "UPDATE instances_instance": 1,  # the instance's sync state
    "SELECT accountsync_instanceaccount": 1,  # the active count
    "SELECT accountsync_coveragegapepisode": 1,  # the open gaps
    "SELECT alerts_alertchannel": 1,
    "SELECT alerts_operationalalertstate": 1,
    "UPDATE sync_sessions": 1,  # finalize: the session ends
}


@pytest.mark.django_db(transaction=True)  # autocommit as in a worker: atomic blocks are real transactions
def test_a_no_change_record_sends_no_more_than_its_ceiling(server, make_instance):
    inst = make_instance()
    first, _ = record_once(inst)
    assert first.details["inventory"].get("catalog_unchanged") is not True
    record, shapes = record_once(inst)
    assert record.status == R.COMPLETED and record.details["inventory"]["catalog_unchanged"] is True
    own = {key: shapes.get(key, 0) for key in OWN_CEILING}
    assert own == OWN_CEILING, dict(shapes)
    # no hook of a no-change record needs a savepoint (the alerts hook's operational part ran without one)
    assert shapes["SAVEPOINT"] == 0, dict(shapes)
    assert record.details["findings"], "the hooks' summaries are stored with the record"


@pytest.mark.django_db(transaction=True)
def test_the_no_change_record_stores_what_the_fenced_path_stored(server, make_instance):
    """The fields of a record completed by the one-statement path are those the transaction wrote."""
    inst = make_instance()
    record_once(inst)
    record, _ = record_once(inst)
    assert (record.items_synced, record.items_created, record.items_updated, record.items_deleted) == (2, 0, 0, 0)
    assert record.completed_at is not None and record.heartbeat_at is not None and record.attempt == 1
    assert (record.error_kind, record.error_message, record.error_code, record.error_params) == ("", "", "", {})
    assert record.details["collection"] == {
        "processed": 2,
        "unchanged": 2,
        "modified": 0,
        "snapshots_written": 0,
        "privileges_changed": 0,
        "attributes_changed": 0,
        "reactivated": 0,
    }
    assert not InstanceLease.objects.filter(instance=inst).exists()
    assert SyncSession.objects.get(pk=record.session_id).status == "completed"


def unchanged_result(inst: Instance):
    from accountsync.services import _unchanged_result

    return _unchanged_result(inst, Catalog(source_digest=inst.catalog_digest, unchanged=True))


@pytest.fixture
def leased(server, make_instance):
    from django.utils import timezone

    inst = make_instance()
    assert sync_accounts(instance=inst, sync_type="manual_single")["success"]
    inst.refresh_from_db()
    session = sync_session_start(instances=[inst], sync_type="scheduled_task", created_by=None, enqueue=False)
    record = SyncInstanceRecord.objects.get(session=session)
    assert record.mark_running(while_session_runs=True)
    holder = f"record:{record.pk}"
    InstanceLease.objects.create(instance=inst, holder=holder, expires_at=timezone.now())
    return inst, record, holder


@pytest.mark.django_db
@pytest.mark.parametrize("lost", ["nothing", "lease", "session", "record", "digest"])
def test_commit_unchanged_completes_only_what_the_fence_would_have_let_commit(leased, lost):
    inst, record, holder = leased
    if lost == "lease":
        InstanceLease.objects.filter(instance=inst).update(holder="record:999999")
    elif lost == "session":
        assert SyncSession.objects.get(pk=record.session_id).mark_cancelled()
    elif lost == "record":
        SyncInstanceRecord.objects.filter(pk=record.pk).update(status=R.FAILED)
    digest = inst.catalog_digest if lost != "digest" else "f" * 64
    fence = LeaseFence(instance_id=inst.pk, holder=holder, record=record)
    done = fence.commit_unchanged(unchanged_result(inst), catalog_digest=digest)
    status = SyncInstanceRecord.objects.values_list("status", flat=True).get(pk=record.pk)
    if lost == "nothing":
        assert done is True and status == R.COMPLETED
    else:
        assert done is False and status != R.COMPLETED
    # without a record (manual_single) the same conditions are one read
    alone = LeaseFence(instance_id=inst.pk, holder=holder)
    assert alone.commit_unchanged(unchanged_result(inst), catalog_digest=digest) is (
        lost in ("nothing", "session", "record")
    )


@pytest.mark.django_db
def test_an_unchanged_apply_that_lost_its_lease_says_so_and_writes_nothing(leased):
    from accountsync.services import account_sync_apply

    inst, record, holder = leased
    InstanceLease.objects.filter(instance=inst).update(holder="single:someone-else")
    fence = LeaseFence(instance_id=inst.pk, holder=holder, record=record)
    result = account_sync_apply(
        instance=inst, catalog=Catalog(source_digest=inst.catalog_digest, unchanged=True), fence=fence
    )
    assert (result.success, result.error_kind) == (False, "conflict")
    assert "lost its lease" in result.message
    assert SyncInstanceRecord.objects.values_list("status", flat=True).get(pk=record.pk) == R.RUNNING


@pytest.mark.django_db
def test_an_unchanged_apply_after_another_sync_applied_is_refused(leased):
    from accountsync.services import account_sync_apply

    inst, record, holder = leased
    Instance.objects.filter(pk=inst.pk).update(catalog_digest="e" * 64)  # someone else's apply in between
    fence = LeaseFence(instance_id=inst.pk, holder=holder, record=record)
    result = account_sync_apply(
        instance=inst, catalog=Catalog(source_digest=inst.catalog_digest, unchanged=True), fence=fence
    )
    assert (result.success, result.error_kind) == (False, "conflict")
    assert "another sync was applied meanwhile" in result.message
    assert SyncInstanceRecord.objects.values_list("status", flat=True).get(pk=record.pk) == R.RUNNING


@pytest.mark.django_db
def test_mark_running_while_the_session_runs_refuses_a_cancelled_session_and_changes_nothing(leased):
    inst, _, _ = leased
    session = sync_session_start(instances=[inst], sync_type="scheduled_task", created_by=None, enqueue=False)
    pending = SyncInstanceRecord.objects.get(session=session)
    assert session.mark_cancelled()
    assert pending.mark_running(while_session_runs=True) is False
    row = SyncInstanceRecord.objects.get(pk=pending.pk)
    assert (row.status, row.attempt, row.started_at) == (R.PENDING, 0, None)


def broken_close(event):
    raise RuntimeError("operational store unavailable")


@pytest.mark.django_db
def test_a_failing_operational_close_without_deliveries_is_logged_by_alerts_and_fails_no_hook(
    server, make_instance, monkeypatch, caplog
):
    import alerts.operational

    inst = make_instance()
    assert sync_accounts(instance=inst, sync_type="manual_single")["success"]
    monkeypatch.setattr(alerts.operational, "operational_on_sync_applied", broken_close)
    with caplog.at_level(logging.ERROR):
        result = sync_accounts(instance=inst, sync_type="manual_single")
    assert result["success"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("closing operational alerts failed" in m for m in messages), messages
    assert not any("post-sync hook 'alerts' failed" in m for m in messages), messages


@pytest.mark.django_db
def test_a_failing_operational_close_keeps_the_deliveries_detection_wrote(server, make_instance, monkeypatch, caplog):
    import alerts.operational

    inst = make_instance()
    server.accounts = [account("app")]
    assert sync_accounts(instance=inst, sync_type="manual_single")["success"]  # the baseline
    AlertChannel.objects.create(name="ops", kind="webhook", webhook_url="https://hooks.example.com/x")
    server.accounts = [account("app", superuser=True)]
    monkeypatch.setattr(alerts.operational, "operational_on_sync_applied", broken_close)
    with caplog.at_level(logging.ERROR):
        result = sync_accounts(instance=inst, sync_type="manual_single")
    assert result["success"] and result["details"]["alerts"]["deliveries"] == 1
    assert AlertDelivery.objects.filter(instance=inst).count() == 1
    assert any("closing operational alerts failed" in r.getMessage() for r in caplog.records)
