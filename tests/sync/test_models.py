"""State machines of SyncSession and SyncInstanceRecord: every legal and illegal transition."""

from __future__ import annotations

import pytest

from sync.models import (
    SyncInstanceRecord,
    SyncSession,
    SyncTypeChoices,
)
from sync.models import (
    SyncRecordStatusChoices as R,
)
from sync.models import (
    SyncSessionStatusChoices as S,
)


@pytest.fixture
def session(db):
    return SyncSession.objects.create(sync_type=SyncTypeChoices.SCHEDULED_TASK)


@pytest.fixture
def make_record(session, make_instance):
    def make(status: str = R.PENDING) -> SyncInstanceRecord:
        inst = make_instance()
        return SyncInstanceRecord.objects.create(session=session, instance=inst, instance_name=inst.name, status=status)

    return make


def _db_status(obj) -> str:
    return type(obj).objects.values_list("status", flat=True).get(pk=obj.pk)


RECORD_MOVES = {
    "mark_running": ({R.PENDING}, R.RUNNING),
    "mark_completed": ({R.RUNNING}, R.COMPLETED),
    "mark_failed": ({R.RUNNING}, R.FAILED),
}
ARGS = {
    "mark_completed": {"synced": 5, "created": 2, "updated": 1, "deleted": 1, "details": {"inventory": {"x": 1}}},
    "mark_failed": {"error_kind": "connection", "error_message": "cannot reach db1"},
}


@pytest.mark.parametrize("method", sorted(RECORD_MOVES))
@pytest.mark.parametrize("start", list(R.values))
def test_record_transition_matrix(make_record, method, start):
    record = make_record(start)
    allowed, target = RECORD_MOVES[method]
    done = getattr(record, method)(**ARGS.get(method, {}))
    assert done is (start in allowed)
    assert _db_status(record) == (target if done else start)
    assert record.status == (target if done else start)


def test_record_running_sets_timestamps_and_attempt(make_record):
    record = make_record()
    assert record.mark_running()
    row = SyncInstanceRecord.objects.get(pk=record.pk)
    assert row.attempt == 1
    assert row.started_at is not None and row.heartbeat_at == row.started_at
    assert row.completed_at is None


def test_record_completed_and_failed_store_outcome(make_record):
    ok, bad = make_record(R.RUNNING), make_record(R.RUNNING)
    assert ok.mark_completed(**ARGS["mark_completed"])
    assert bad.mark_failed(**ARGS["mark_failed"])
    ok_row, bad_row = SyncInstanceRecord.objects.get(pk=ok.pk), SyncInstanceRecord.objects.get(pk=bad.pk)
    assert (ok_row.items_synced, ok_row.items_created, ok_row.items_updated, ok_row.items_deleted) == (5, 2, 1, 1)
    assert ok_row.details == {"inventory": {"x": 1}}
    assert ok_row.completed_at is not None and ok_row.error_kind == ""
    assert (bad_row.error_kind, bad_row.error_message) == ("connection", "cannot reach db1")


def test_heartbeat_only_while_the_record_and_its_session_run(session, make_record):
    pending, running = make_record(), make_record(R.RUNNING)
    assert pending.heartbeat() is False
    assert running.heartbeat() is True
    assert SyncInstanceRecord.objects.get(pk=pending.pk).heartbeat_at is None
    beat = SyncInstanceRecord.objects.get(pk=running.pk).heartbeat_at
    assert beat is not None
    assert session.mark_cancelled()
    assert running.heartbeat() is False, "a cancelled session's record must stop"
    assert SyncInstanceRecord.objects.get(pk=running.pk).heartbeat_at == beat


@pytest.mark.parametrize("start", list(S.values))
def test_session_cancel_only_from_running(session, start):
    SyncSession.objects.filter(pk=session.pk).update(status=start)
    session.status = start
    done = session.mark_cancelled()
    assert done is (start == S.RUNNING)
    assert _db_status(session) == (S.CANCELLED if done else start)


def test_finalize_waits_for_open_records(session, make_record):
    make_record(R.COMPLETED)
    make_record(R.RUNNING)
    make_record(R.PENDING)
    assert session.finalize() is False
    assert _db_status(session) == S.RUNNING


def test_finalize_completed_exactly_once(session, make_record):
    make_record(R.COMPLETED)
    make_record(R.COMPLETED)
    make_record(R.CANCELLED)
    assert session.finalize() is True
    assert SyncSession.objects.get(pk=session.pk).finalize() is False
    row = SyncSession.objects.get(pk=session.pk)
    assert row.status == S.COMPLETED
    assert (row.total_instances, row.successful_instances, row.failed_instances) == (3, 2, 0)
    assert row.completed_at is not None


def test_finalize_failed_when_any_record_failed(session, make_record):
    make_record(R.COMPLETED)
    make_record(R.FAILED)
    assert session.finalize() is True
    assert session.finalize() is False
    row = SyncSession.objects.get(pk=session.pk)
    assert (row.status, row.total_instances, row.successful_instances, row.failed_instances) == (S.FAILED, 2, 1, 1)


def test_finalize_leaves_cancelled_session_cancelled(session, make_record):
    make_record(R.FAILED)
    assert session.mark_cancelled()
    assert session.finalize() is False
    assert _db_status(session) == S.CANCELLED


def test_record_history_survives_instance_deletion(session, make_record):
    record = make_record(R.COMPLETED)
    name = record.instance_name
    record.instance.delete()
    row = SyncInstanceRecord.objects.get(pk=record.pk)
    assert row.instance_id is None and row.instance_name == name
