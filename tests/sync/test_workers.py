"""Worker plumbing without a cluster: leases, reaper, idempotent tasks, enqueue, schedules."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from sync import tasks
from sync.leases import InstanceLease, lease_acquire, lease_release
from sync.management.commands.setup_schedules import SCHEDULES
from sync.models import SyncInstanceRecord, SyncRecordStatusChoices, SyncSession, SyncTypeChoices
from sync.services import (
    sync_accounts,
    sync_reap,
    sync_record_execute,
    sync_scheduled_start,
    sync_session_retry_failed,
    sync_session_start,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password="alice-pw-123")


def test_lease_is_exclusive_until_released_or_expired(dead_instance):
    inst = dead_instance()
    sid = str(uuid.uuid4())
    assert lease_acquire(instance_id=inst.pk, holder="a", session_id=sid).acquired
    lost = lease_acquire(instance_id=inst.pk, holder="b")
    assert not lost.acquired and lost.session_id == sid and lost.holder == "a"
    assert lease_acquire(instance_id=inst.pk, holder="a").acquired  # re-entrant for its holder
    assert not lease_release(instance_id=inst.pk, holder="b")  # only the holder releases
    InstanceLease.objects.filter(instance_id=inst.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert lease_acquire(instance_id=inst.pk, holder="b").acquired  # a dead worker's lease runs out
    assert lease_release(instance_id=inst.pk, holder="b")
    assert not InstanceLease.objects.exists()


def test_record_fails_fast_when_another_session_holds_the_instance(dead_instance, alice):
    inst = dead_instance()
    other = sync_session_start(instances=[inst], sync_type=SyncTypeChoices.MANUAL_BATCH, created_by=alice)
    assert lease_acquire(instance_id=inst.pk, holder="record:999", session_id=str(other.session_id)).acquired
    session = sync_session_start(instances=[inst], sync_type=SyncTypeChoices.MANUAL_BATCH, created_by=alice)
    record = session.records.get()
    result = sync_record_execute(record_id=record.pk)
    assert not result["success"]
    assert result["error_kind"] == "conflict"
    assert f"already being synced by session {other.session_id}" in result["message"]
    record.refresh_from_db()
    session.refresh_from_db()
    assert record.status == "failed" and record.error_kind == "conflict"
    assert session.status == "failed"
    # the lease of the other session is untouched
    assert InstanceLease.objects.get(instance_id=inst.pk).holder == "record:999"


def test_manual_single_respects_the_lease_and_releases_its_own(dead_instance):
    inst = dead_instance()
    sid = str(uuid.uuid4())
    assert lease_acquire(instance_id=inst.pk, holder="record:1", session_id=sid).acquired
    busy = sync_accounts(instance=inst, sync_type="manual_single")
    assert busy["error_kind"] == "conflict" and f"already being synced by session {sid}" in busy["message"]
    lease_release(instance_id=inst.pk, holder="record:1")
    ran = sync_accounts(instance=inst, sync_type="manual_single")
    assert ran["error_kind"] == "connection"  # it really ran (closed port)
    assert not InstanceLease.objects.exists()


def test_duplicate_delivery_runs_a_record_once(dead_instance, alice):
    inst = dead_instance()
    session = sync_session_start(instances=[inst], sync_type=SyncTypeChoices.MANUAL_BATCH, created_by=alice)
    record = session.records.get()
    first = tasks.run_sync_record(record.pk)
    assert first["error_kind"] == "connection"
    record.refresh_from_db()
    attempts, finished = record.attempt, record.completed_at
    second = tasks.run_sync_record(record.pk)
    assert second["duplicate"] is True and "already failed" in second["message"]
    record.refresh_from_db()
    assert record.attempt == attempts == 1
    assert record.completed_at == finished
    assert tasks.run_sync_record(10**9)["error_kind"] == "configuration"


def test_session_start_enqueues_one_task_per_record_on_commit(dead_instance, alice, django_capture_on_commit_callbacks):
    a, b = dead_instance("a"), dead_instance("b")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        session = sync_session_start(instances=[a, b], sync_type=SyncTypeChoices.MANUAL_BATCH, created_by=alice)
    assert len(callbacks) == 1
    queued = [q.task for q in OrmQ.objects.all()]
    assert len(queued) == 2
    assert {t["func"] for t in queued} == {"sync.tasks.run_sync_record"}
    assert {t["group"] for t in queued} == {str(session.session_id)}
    assert sorted(t["args"][0] for t in queued) == sorted(session.records.values_list("pk", flat=True))


def test_session_start_without_enqueue_queues_nothing(dead_instance, alice, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        sync_session_start(
            instances=[dead_instance()], sync_type=SyncTypeChoices.MANUAL_BATCH, created_by=alice, enqueue=False
        )
    assert OrmQ.objects.count() == 0


def test_reaper_fails_silent_records_and_finalizes_sessions(dead_instance, alice):
    a, b = dead_instance("a"), dead_instance("b")
    session = sync_session_start(
        instances=[a, b], sync_type=SyncTypeChoices.MANUAL_BATCH, created_by=alice, enqueue=False
    )
    stale, fresh = session.records.order_by("pk")
    assert stale.mark_running() and fresh.mark_running()
    lease_acquire(instance_id=a.pk, holder=f"record:{stale.pk}", session_id=str(session.session_id))
    SyncInstanceRecord.objects.filter(pk=stale.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=120))
    assert sync_reap(stale_after=60) == 1
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.status == "failed" and stale.error_kind == "timeout"
    assert "worker lost" in stale.error_message
    assert fresh.status == "running"
    assert not InstanceLease.objects.filter(instance_id=a.pk).exists()
    session.refresh_from_db()
    assert session.status == "running"  # one record still running
    fresh.mark_completed(synced=1, created=1, updated=0, deleted=0, details={})
    SyncInstanceRecord.objects.filter(pk=fresh.pk).update(status=SyncRecordStatusChoices.RUNNING)
    SyncInstanceRecord.objects.filter(pk=fresh.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=120))
    assert sync_reap(stale_after=60) == 1
    session.refresh_from_db()
    assert session.status == "failed" and session.failed_instances == 2
    assert sync_reap(stale_after=60) == 0  # nothing left: idempotent


def test_reap_command(dead_instance, alice):
    session = sync_session_start(
        instances=[dead_instance()], sync_type=SyncTypeChoices.MANUAL_BATCH, created_by=alice, enqueue=False
    )
    record = session.records.get()
    record.mark_running()
    SyncInstanceRecord.objects.filter(pk=record.pk).update(heartbeat_at=timezone.now() - timedelta(hours=2))
    from io import StringIO

    out = StringIO()
    call_command("sync_reap", stdout=out)
    assert "reaped 1 stale record(s)" in out.getvalue()


def test_retry_failed_enqueues_only_failed(dead_instance, alice, django_capture_on_commit_callbacks):
    a, b = dead_instance("a"), dead_instance("b")
    session = sync_session_start(
        instances=[a, b], sync_type=SyncTypeChoices.MANUAL_BATCH, created_by=alice, enqueue=False
    )
    first, second = session.records.order_by("pk")
    first.mark_running() and first.mark_failed(error_kind="connection", error_message="x")
    second.mark_running() and second.mark_completed(synced=1, created=0, updated=0, deleted=0, details={})
    with django_capture_on_commit_callbacks(execute=True):
        retry = sync_session_retry_failed(session=session, created_by=alice)
    assert retry.retry_of == session
    assert list(retry.records.values_list("instance_id", flat=True)) == [a.pk]
    assert [q.task["args"][0] for q in OrmQ.objects.all()] == [retry.records.get().pk]


def test_scheduled_start_covers_active_instances_only(dead_instance):
    assert sync_scheduled_start() is None
    a = dead_instance("a")
    b = dead_instance("b")
    b.is_active = False
    b.save()
    session = sync_scheduled_start()
    assert session.sync_type == "scheduled_task" and session.created_by is None
    assert list(session.records.values_list("instance_id", flat=True)) == [a.pk]
    assert tasks.run_scheduled_sync() != str(session.session_id)
    assert SyncSession.objects.count() == 2


def test_setup_schedules_is_idempotent(settings):
    settings.WHALEFALL_SYNC_CRON = "30 2 * * *"
    call_command("setup_schedules")
    call_command("setup_schedules")
    schedules = {s.name: s for s in Schedule.objects.all()}
    assert set(schedules) == set(SCHEDULES)  # the features' entries too (directory sync, classification counts)
    check = schedules["whalefall: operational alert check"]  # docs/alerts.md, "Operational alerts"
    assert check.func == "alerts.tasks.check_operational_alerts" and check.minutes == 15
    daily = schedules["whalefall: daily account sync"]
    assert daily.func == "sync.tasks.run_scheduled_sync" and daily.cron == "30 2 * * *"
    reaper = schedules["whalefall: reap stale sync records"]
    assert reaper.func == "sync.tasks.reap_stale_records" and reaper.minutes == 1
    retention = schedules["whalefall: history retention"]  # docs/retention.md; a no-op while the policy is off
    assert retention.func == "exports.tasks.run_history_retention" and retention.minutes == 1440
    settings.WHALEFALL_SYNC_CRON = "0 3 * * 1"
    call_command("setup_schedules")
    assert Schedule.objects.count() == len(SCHEDULES)
    assert Schedule.objects.get(name="whalefall: daily account sync").cron == "0 3 * * 1"
    settings.WHALEFALL_SYNC_CRON = "not a cron"
    with pytest.raises(CommandError, match="not a valid cron"):
        call_command("setup_schedules")
