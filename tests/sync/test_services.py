"""The seed's sync_type decision table, session runs, cancel and retry, with real sync outcomes.

Failures come from an instance on a closed local port (a real, classified connection error);
successes from the live MariaDB.
"""

from __future__ import annotations

import logging
import uuid

import pytest

from accountsync.models import InstanceAccount
from sync.models import (
    SyncInstanceRecord,
    SyncSession,
)
from sync.models import (
    SyncRecordStatusChoices as R,
)
from sync.models import (
    SyncSessionStatusChoices as S,
)
from sync.models import (
    SyncTypeChoices as T,
)
from sync.services import (
    SyncRequestError,
    sync_accounts,
    sync_session_cancel,
    sync_session_retry_failed,
    sync_session_run,
    sync_session_start,
)


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password="x")


def _counts(session: SyncSession) -> tuple:
    row = SyncSession.objects.get(pk=session.pk)
    return row.status, row.total_instances, row.successful_instances, row.failed_instances


def test_manual_single_runs_without_session(dead_instance):
    inst = dead_instance()
    result = sync_accounts(instance=inst, sync_type=T.MANUAL_SINGLE)
    assert result["success"] is False
    assert result["error_kind"] == "connection"
    assert inst.name in result["message"]
    assert result["session_id"] is None
    assert SyncSession.objects.count() == 0 and SyncInstanceRecord.objects.count() == 0


@pytest.mark.parametrize("sync_type", [T.MANUAL_BATCH, T.MANUAL_TASK])
def test_session_type_without_session_id_creates_one(dead_instance, alice, sync_type):
    inst = dead_instance()
    result = sync_accounts(instance=inst, sync_type=sync_type, created_by=alice)
    session = SyncSession.objects.get()
    assert (session.sync_type, session.created_by) == (sync_type, alice)
    assert result["session_id"] == str(session.session_id)
    record = SyncInstanceRecord.objects.get()
    assert (record.session, record.instance, record.instance_name) == (session, inst, inst.name)
    assert record.status == R.FAILED and record.error_kind == "connection"
    assert inst.name in record.error_message and record.attempt == 1
    assert _counts(session) == (S.FAILED, 1, 0, 1)


@pytest.mark.parametrize("sync_type", [T.MANUAL_BATCH, T.MANUAL_TASK])
def test_manual_session_requires_created_by(dead_instance, sync_type):
    with pytest.raises(SyncRequestError, match="created_by"):
        sync_accounts(instance=dead_instance(), sync_type=sync_type)
    assert SyncSession.objects.count() == 0 and SyncInstanceRecord.objects.count() == 0


def test_scheduled_session_needs_no_user(dead_instance):
    result = sync_accounts(instance=dead_instance(), sync_type=T.SCHEDULED_TASK)
    session = SyncSession.objects.get()
    assert session.created_by is None and session.sync_type == T.SCHEDULED_TASK
    assert result["session_id"] == str(session.session_id)


@pytest.mark.parametrize("sync_type", [T.MANUAL_BATCH, T.MANUAL_TASK, T.SCHEDULED_TASK])
def test_session_id_is_reused(dead_instance, alice, sync_type):
    first, second = dead_instance("a"), dead_instance("b")
    session = sync_session_start(instances=[first, second], sync_type=sync_type, created_by=alice)
    result = sync_accounts(instance=first, sync_type=sync_type, session_id=session.session_id)
    assert result["session_id"] == str(session.session_id)
    assert SyncSession.objects.count() == 1
    assert SyncInstanceRecord.objects.get(session=session, instance=first).status == R.FAILED
    assert SyncInstanceRecord.objects.get(session=session, instance=second).status == R.PENDING
    assert _counts(session) == (S.RUNNING, 2, 0, 0)


def test_reused_session_adds_record_for_new_instance(dead_instance):
    first, other = dead_instance("a"), dead_instance("b")
    session = sync_session_start(instances=[first], sync_type=T.SCHEDULED_TASK, created_by=None)
    sync_accounts(instance=other, sync_type=T.SCHEDULED_TASK, session_id=session.session_id)
    assert SyncInstanceRecord.objects.get(session=session, instance=other).status == R.FAILED


@pytest.mark.parametrize(("status", "kind"), [(S.COMPLETED, "configuration"), (S.CANCELLED, "cancelled")])
def test_finished_session_is_not_reused(dead_instance, status, kind):
    first, late = dead_instance("a"), dead_instance("b")
    session = sync_session_start(instances=[first], sync_type=T.SCHEDULED_TASK, created_by=None)
    SyncSession.objects.filter(pk=session.pk).update(status=status)
    result = sync_accounts(instance=late, sync_type=T.SCHEDULED_TASK, session_id=session.session_id)
    assert (result["success"], result["error_kind"]) == (False, kind)
    assert f"already {status}" in result["message"] and "b" in result["message"]
    assert list(session.records.values_list("instance_name", flat=True)) == ["a"]


def test_unknown_session_id_is_a_classified_error(dead_instance):
    missing = uuid.uuid4()
    inst = dead_instance()
    result = sync_accounts(instance=inst, sync_type=T.MANUAL_BATCH, session_id=missing)
    assert result["success"] is False and result["error_kind"] == "configuration"
    assert str(missing) in result["message"] and inst.name in result["message"]
    assert SyncSession.objects.count() == 0


def test_unknown_type_falls_back_to_manual_single_with_warning(dead_instance, caplog):
    inst = dead_instance()
    with caplog.at_level(logging.WARNING, logger="sync.services"):
        result = sync_accounts(instance=inst, sync_type="nightly", created_by=None)
    warnings = [r for r in caplog.records if r.name == "sync.services" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "'nightly'" in warnings[0].getMessage() and "manual_single" in warnings[0].getMessage()
    assert warnings[0].wf["instance_id"] == inst.pk
    assert result["error_kind"] == "connection" and result["session_id"] is None
    assert SyncSession.objects.count() == 0


def test_rerun_of_finished_record_is_refused(dead_instance):
    inst = dead_instance()
    session = sync_session_start(instances=[inst], sync_type=T.SCHEDULED_TASK, created_by=None)
    sync_session_run(session=session)
    again = sync_accounts(instance=inst, sync_type=T.SCHEDULED_TASK, session_id=session.session_id)
    assert again["success"] is False and "already failed" in again["message"]
    assert SyncInstanceRecord.objects.get().attempt == 1


def test_session_start_creates_pending_records(dead_instance, alice):
    insts = [dead_instance("a"), dead_instance("b"), dead_instance("c")]
    session = sync_session_start(instances=insts, sync_type=T.MANUAL_BATCH, created_by=alice)
    records = list(session.records.order_by("pk"))
    assert [r.instance for r in records] == insts
    assert {r.status for r in records} == {R.PENDING}
    assert _counts(session) == (S.RUNNING, 3, 0, 0)


def test_session_start_rejects_bad_requests(dead_instance):
    with pytest.raises(SyncRequestError, match="cannot have a session"):
        sync_session_start(instances=[dead_instance()], sync_type=T.MANUAL_SINGLE, created_by=None)
    with pytest.raises(SyncRequestError, match="at least one instance"):
        sync_session_start(instances=[], sync_type=T.SCHEDULED_TASK, created_by=None)
    assert SyncSession.objects.count() == 0


def test_batch_of_failures_ends_failed_with_counts(dead_instance, alice):
    session = sync_session_start(
        instances=[dead_instance("a"), dead_instance("b")], sync_type="manual_batch", created_by=alice
    )
    seen = []
    report = sync_session_run(
        session=session, progress=lambda i, n, rec, res: seen.append((i, n, rec.instance_name, res is None))
    )
    assert seen == [(1, 2, "a", True), (1, 2, "a", False), (2, 2, "b", True), (2, 2, "b", False)]
    assert (report["status"], report["total_instances"], report["failed_instances"]) == (S.FAILED, 2, 2)
    assert [r["instance"] for r in report["results"]] == ["a", "b"]
    assert _counts(session) == (S.FAILED, 2, 0, 2)
    assert sync_session_run(session=session)["results"] == []


def test_deleted_instance_record_fails_cleanly(dead_instance):
    inst = dead_instance()
    session = sync_session_start(instances=[inst], sync_type=T.SCHEDULED_TASK, created_by=None)
    inst.delete()
    report = sync_session_run(session=session)
    assert report["status"] == S.FAILED
    record = SyncInstanceRecord.objects.get()
    assert record.error_kind == "configuration" and "was deleted" in record.error_message


def test_cancel_marks_pending_records_and_stops_run(dead_instance):
    session = sync_session_start(
        instances=[dead_instance("a"), dead_instance("b")], sync_type="scheduled_task", created_by=None
    )
    assert sync_session_cancel(session=session) is True
    assert sync_session_cancel(session=session) is False
    report = sync_session_run(session=session)
    assert report["results"] == [] and report["status"] == S.CANCELLED
    assert set(session.records.values_list("status", flat=True)) == {R.CANCELLED}


def test_cancel_between_records_keeps_session_cancelled(dead_instance):
    session = sync_session_start(
        instances=[dead_instance("a"), dead_instance("b")], sync_type="scheduled_task", created_by=None
    )

    def cancel_after_first(index, total, record, result):
        if result is not None and index == 1:
            sync_session_cancel(session=SyncSession.objects.get(pk=session.pk))

    report = sync_session_run(session=session, progress=cancel_after_first)
    assert report["status"] == S.CANCELLED
    assert [r["instance"] for r in report["results"]] == ["a", "b"]
    assert report["results"][1]["error_kind"] == "cancelled"
    statuses = dict(session.records.values_list("instance_name", "status"))
    assert statuses == {"a": R.FAILED, "b": R.CANCELLED}


def test_cancel_racing_a_starting_record_stops_it_before_fetch(dead_instance):
    """A cancel that lands after the worker picked the record is seen by the before_apply hook."""
    inst = dead_instance()
    session = sync_session_start(instances=[inst], sync_type=T.SCHEDULED_TASK, created_by=None)

    def cancel_session_only(index, total, record, result):
        if result is None:
            assert SyncSession.objects.get(pk=session.pk).mark_cancelled()

    report = sync_session_run(session=session, progress=cancel_session_only)
    assert report["results"][0]["error_kind"] == "cancelled"
    assert inst.name in report["results"][0]["message"]
    record = SyncInstanceRecord.objects.get()
    assert (record.status, record.error_kind, record.attempt) == (R.FAILED, "cancelled", 1)
    assert _db_status_session(session) == S.CANCELLED


def _db_status_session(session: SyncSession) -> str:
    return SyncSession.objects.values_list("status", flat=True).get(pk=session.pk)


@pytest.mark.live
def test_retry_failed_starts_new_session_with_failed_instances(dead_instance, alice, live_mariadb_instance):
    dead = dead_instance()
    session = sync_session_start(instances=[live_mariadb_instance, dead], sync_type=T.MANUAL_BATCH, created_by=alice)
    sync_session_run(session=session)
    retry = sync_session_retry_failed(session=session, created_by=alice)
    assert retry.retry_of == session and retry.sync_type == T.MANUAL_BATCH
    assert [r.instance for r in retry.records.all()] == [dead]
    assert retry.status == S.RUNNING and retry.total_instances == 1


@pytest.mark.live
def test_live_batch_success_and_failure(dead_instance, alice, live_mariadb_instance):
    dead = dead_instance()
    session = sync_session_start(instances=[live_mariadb_instance, dead], sync_type=T.MANUAL_BATCH, created_by=alice)
    report = sync_session_run(session=session)
    ok, bad = report["results"]
    assert ok["success"] is True, ok["message"]
    assert ok["synced_count"] > 0 and ok["added_count"] == ok["synced_count"]
    assert bad["error_kind"] == "connection"
    assert _counts(session) == (S.FAILED, 2, 1, 1)
    record = SyncInstanceRecord.objects.get(session=session, instance=live_mariadb_instance)
    assert record.status == R.COMPLETED
    assert (record.items_synced, record.items_created) == (ok["synced_count"], ok["added_count"])
    assert set(record.details) >= {"inventory", "collection"}
    active = InstanceAccount.objects.filter(instance=live_mariadb_instance, is_active=True).count()
    assert record.items_synced == active
    assert record.heartbeat_at is not None and record.heartbeat_at >= record.started_at


@pytest.mark.live
def test_live_scheduled_session_then_sessionless_resync(live_mariadb_instance, mariadb_admin, unique_prefix):
    user = f"{unique_prefix}_s"
    cur = mariadb_admin.cursor()
    cur.execute(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY 'Pw-123456'")
    try:
        cur.execute(f"GRANT SELECT ON mysql.* TO '{user}'@'localhost'")
        result = sync_accounts(instance=live_mariadb_instance, sync_type=T.SCHEDULED_TASK)
        assert result["success"] is True, result["message"]
        assert InstanceAccount.objects.filter(instance=live_mariadb_instance, username=user, is_active=True).exists()
        session = SyncSession.objects.get()
        assert _counts(session) == (S.COMPLETED, 1, 1, 0)
        again = sync_accounts(instance=live_mariadb_instance, sync_type=T.MANUAL_SINGLE)
        assert (again["success"], again["session_id"]) == (True, None), again["message"]
        assert SyncSession.objects.count() == 1
    finally:
        cur.execute(f"DROP USER IF EXISTS '{user}'@'localhost'")
