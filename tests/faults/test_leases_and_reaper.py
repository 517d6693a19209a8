"""Leases, heartbeats, the fence and the reaper under faults, in one process with real threads.

Transactional tests: the heartbeat and the reaper run on their own threads with their own
database connections, as they do in a worker, so they must see committed rows. The
remote server is the chosen-catalog adapter with a ``delay`` (a slow server); everything
from the adapter registry up runs for real.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import psycopg
import pytest
from django.core.checks import run_checks
from django.db import connection, connections
from django.utils import timezone
from django_q.models import OrmQ

from accountsync.adapters.base import AccountRecord, Privilege
from accountsync.models import AccountChangeLog, InstanceAccount
from config.registry import registry
from sync.leases import InstanceLease
from sync.models import SyncInstanceRecord, SyncSession
from sync.services import sync_accounts, sync_reap, sync_session_run, sync_session_start

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def account(name: str) -> AccountRecord:
    return AccountRecord(identity=f"'{name}'@'%'", username=name, host="%", privileges=[Privilege("global", "SELECT")])


@pytest.fixture
def slow_server(chosen_server):
    chosen_server.accounts = [account("app"), account("report")]
    chosen_server.delay = 2.0
    return chosen_server


@pytest.fixture
def fast_beats(settings):
    settings.WHALEFALL_HEARTBEAT_SECONDS = 0.2
    settings.WHALEFALL_LEASE_SECONDS = 1.0


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password="x")


class Reaper(threading.Thread):
    """The reaper, run every 0.1 s with a stale limit shorter than the fetch, as a worker would."""

    def __init__(self, stale_after: int) -> None:
        super().__init__(daemon=True)
        self.stale_after = stale_after
        self.reaped = 0
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.wait(0.1):
                self.reaped += sync_reap(stale_after=self.stale_after)
        finally:
            connections.close_all()

    def __enter__(self) -> Reaper:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join(10)


def wait_until(predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def single_sync_in_thread(inst, results: dict[str, dict], key: str) -> threading.Thread:
    """A manual single sync on its own thread (a second worker), its result put in ``results[key]``."""

    def run() -> None:
        try:
            results[key] = sync_accounts(instance=inst, sync_type="manual_single")
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_heartbeat_keeps_a_slow_fetch_alive_against_a_stale_limit_shorter_than_it(
    slow_server, fast_beats, make_instance, alice
):
    inst = make_instance()
    session = sync_session_start(instances=[inst], sync_type="manual_batch", created_by=alice, enqueue=False)
    with Reaper(stale_after=1) as reaper:
        report = sync_session_run(session=session)
    record = SyncInstanceRecord.objects.get(session=session)
    assert reaper.reaped == 0
    assert record.status == "completed", record.error_message
    assert record.items_created == 2
    assert report["status"] == "completed"
    assert InstanceAccount.objects.filter(instance=inst, is_active=True).count() == 2
    assert not InstanceLease.objects.exists()


def test_heartbeat_renews_the_lease_during_the_fetch(slow_server, fast_beats, make_instance):
    inst = make_instance()
    seen: list = []

    def watch() -> None:
        try:
            for _ in range(15):
                time.sleep(0.1)
                seen.extend(InstanceLease.objects.filter(instance=inst).values_list("expires_at", flat=True))
        finally:
            connections.close_all()

    watcher = threading.Thread(target=watch)
    watcher.start()
    result = sync_accounts(instance=inst, sync_type="manual_single")
    watcher.join()
    assert result["success"], result["message"]
    assert len(set(seen)) >= 3, seen  # the expiry moved forward while the fetch was still running
    # one lease TTL (1 s) is shorter than the fetch (2 s): without renewals it would have expired mid-fetch
    assert max(seen) - min(seen) > timedelta(seconds=0.5)


def test_a_second_sync_is_refused_while_the_first_fetches(slow_server, fast_beats, make_instance):
    inst = make_instance()
    slow_server.delay, slow_server.gate = 0.0, threading.Event()
    results: dict[str, dict] = {}
    thread = single_sync_in_thread(inst, results, "first")
    wait_until(lambda: len(InstanceLease.objects.filter(instance=inst)) == 1)
    time.sleep(1.5)  # past one lease TTL: only the heartbeat keeps the first sync's claim alive
    results["second"] = sync_accounts(instance=inst, sync_type="manual_single")
    slow_server.gate.set()
    thread.join()
    assert results["first"]["success"], results["first"]["message"]
    assert results["second"]["error_kind"] == "conflict"
    assert len(slow_server.fetches) == 1
    assert AccountChangeLog.objects.filter(instance=inst).count() == 2  # one "added" per account, once


def test_a_reaped_record_writes_nothing_when_its_heartbeat_stalled(slow_server, settings, make_instance, alice):
    """No beats (a stalled heartbeat): the reaper fails the live record; its apply is fenced off."""
    settings.WHALEFALL_HEARTBEAT_SECONDS = 60
    inst = make_instance()
    session = sync_session_start(instances=[inst], sync_type="manual_batch", created_by=alice, enqueue=False)
    with Reaper(stale_after=1) as reaper:
        report = sync_session_run(session=session)
    record = SyncInstanceRecord.objects.get(session=session)
    assert reaper.reaped == 1
    assert record.status == "failed" and record.error_kind == "timeout"
    assert "worker lost" in record.error_message
    assert report["results"][0]["error_kind"] == "conflict"
    assert "nothing was written" in report["results"][0]["message"]
    # data and history agree: the record says failed and nothing was applied
    assert not InstanceAccount.objects.filter(instance=inst).exists()
    assert not AccountChangeLog.objects.filter(instance=inst).exists()
    assert SyncSession.objects.get(pk=session.pk).status == "failed"
    assert not InstanceLease.objects.exists()


def test_an_expired_lease_taken_over_fences_off_the_first_apply(slow_server, settings, make_instance):
    """Lease not renewed (stalled heartbeat) and taken over: the loser's apply writes nothing."""
    settings.WHALEFALL_HEARTBEAT_SECONDS = 60
    settings.WHALEFALL_LEASE_SECONDS = 0.5
    inst = make_instance()
    gate = threading.Event()
    slow_server.delay, slow_server.gate = 0.0, gate
    results: dict[str, dict] = {}
    thread = single_sync_in_thread(inst, results, "first")
    wait_until(lambda: len(InstanceLease.objects.filter(instance=inst)) == 1)
    time.sleep(1.0)  # the first sync's lease (0.5 s) expired mid-fetch
    slow_server.gate = None  # the second sync's fetch answers at once
    results["second"] = sync_accounts(instance=inst, sync_type="manual_single")
    gate.set()  # now the first fetch ends, and its apply finds the lease taken
    thread.join()
    assert results["second"]["success"], results["second"]["message"]
    assert results["first"]["success"] is False
    assert results["first"]["error_kind"] == "conflict"
    assert "lost its lease" in results["first"]["message"]
    # exactly one apply: one "added" entry per account, no duplicates
    assert sorted(AccountChangeLog.objects.filter(instance=inst).values_list("change_type", flat=True)) == [
        "added",
        "added",
    ]
    assert not InstanceLease.objects.exists()


def queued(session: SyncSession) -> int:
    group = str(session.session_id)
    return sum(1 for task in OrmQ.objects.all() if task.task.get("group") == group)


def backdate(session: SyncSession, seconds: int) -> None:
    """Move a session's records into the past (their creation and, if queued, their queueing)."""
    past = timezone.now() - timedelta(seconds=seconds)
    records = SyncInstanceRecord.objects.filter(session=session)
    records.update(created_at=past)
    records.filter(queued_at__isnull=False).update(queued_at=past)


def test_pending_records_whose_tasks_were_lost_are_requeued_then_failed(settings, make_instance, alice):
    settings.WHALEFALL_PENDING_REQUEUES = 2
    instances = [make_instance(name=f"lost-{n}") for n in range(3)]
    session = sync_session_start(instances=instances, sync_type="manual_batch", created_by=alice)
    assert queued(session) == 3
    OrmQ.objects.all().delete()  # the broker lost them (a cluster died holding them)

    assert sync_reap(pending_after=300) == 0  # not yet overdue
    backdate(session, 400)
    assert sync_reap(pending_after=300) == 3
    assert queued(session) == 3
    assert set(SyncInstanceRecord.objects.filter(session=session).values_list("status", "queue_attempts")) == {
        ("pending", 2)
    }
    OrmQ.objects.all().delete()
    backdate(session, 400)
    assert sync_reap(pending_after=300) == 3  # second re-queue
    OrmQ.objects.all().delete()
    backdate(session, 400)
    assert sync_reap(pending_after=300) == 3  # out of tries: failed
    records = list(SyncInstanceRecord.objects.filter(session=session))
    assert {(r.status, r.error_kind) for r in records} == {("failed", "broker")}
    assert all("never started" in r.error_message for r in records)
    assert SyncSession.objects.get(pk=session.pk).status == "failed"


def test_pending_records_behind_busy_workers_are_left_queued(make_instance, alice):
    busy_inst, waiting_inst = make_instance(name="busy"), make_instance(name="waiting")
    busy = sync_session_start(instances=[busy_inst], sync_type="manual_batch", created_by=alice, enqueue=False)
    SyncInstanceRecord.objects.filter(session=busy).update(
        status="running", started_at=timezone.now() - timedelta(hours=1), heartbeat_at=timezone.now()
    )
    waiting = sync_session_start(instances=[waiting_inst], sync_type="manual_batch", created_by=alice)
    backdate(waiting, 400)
    assert sync_reap(pending_after=300) == 0
    assert SyncInstanceRecord.objects.get(session=waiting).queue_attempts == 1


def test_pending_records_of_a_stopped_in_process_run_are_failed(settings, make_instance, alice):
    session = sync_session_start(
        instances=[make_instance(name="never-reached")], sync_type="manual_batch", created_by=alice, enqueue=False
    )
    assert sync_reap(stale_after=960) == 0
    backdate(session, 1000)
    assert sync_reap(stale_after=960) == 1
    record = SyncInstanceRecord.objects.get(session=session)
    assert (record.status, record.error_kind) == ("failed", "timeout")
    assert SyncSession.objects.get(pk=session.pk).status == "failed"


def test_the_outcome_survives_losing_the_database_connection_right_after_the_commit(
    chosen_server, make_instance, alice
):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL as WhaleFall's database: pg_terminate_backend of the worker's own connection")
    chosen_server.accounts = [account("app"), account("report")]
    inst = make_instance()
    session = sync_session_start(instances=[inst], sync_type="manual_batch", created_by=alice, enqueue=False)
    killed: list[int] = []

    def terminate_own_connection(event) -> None:
        pid = connection.connection.info.backend_pid
        sd = connection.settings_dict
        with psycopg.connect(
            host=sd["HOST"] or "127.0.0.1", port=sd["PORT"] or 5432, user=sd["USER"], dbname=sd["NAME"]
        ) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        killed.append(pid)

    saved = dict(registry["post_sync_hooks"])
    from config.registry import post_sync_hook_register

    post_sync_hook_register(name="terminate", order=1, func=terminate_own_connection)
    try:
        sync_session_run(session=session)
    finally:
        registry["post_sync_hooks"].clear()
        registry["post_sync_hooks"].update(saved)
    assert killed
    record = SyncInstanceRecord.objects.get(session=session)
    # the data committed, and so did its record: history and data agree
    assert record.status == "completed"
    assert (record.items_synced, record.items_created) == (2, 2)
    assert InstanceAccount.objects.filter(instance=inst).count() == 2
    assert SyncSession.objects.get(pk=session.pk).status == "completed"
    assert not InstanceLease.objects.exists()
    inst.refresh_from_db()
    assert inst.last_sync_status == "completed"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"WHALEFALL_STALE_SECONDS": 900}, "sync.E001"),
        ({"WHALEFALL_LEASE_SECONDS": 20.0}, "sync.E002"),
        ({"Q_CLUSTER": {"timeout": 900, "retry": 900}}, "sync.E003"),
    ],
)
def test_system_check_refuses_timings_that_break_the_guarantees(settings, changes, code):
    assert not [e for e in run_checks() if e.id.startswith("sync.")]
    for name, value in changes.items():
        if name == "Q_CLUSTER":
            value = {**settings.Q_CLUSTER, **value}
        setattr(settings, name, value)
    assert [e.id for e in run_checks() if e.id.startswith("sync.")] == [code]
