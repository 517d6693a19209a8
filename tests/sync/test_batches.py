"""Batches: a worker task runs several records at once, their fetches overlapping (sync_batch_execute).

The remote servers are a registered adapter whose fetches meet at a rendezvous: a fetch
waits until the number of fetches the test expects are in flight together, so overlap is
proved by the batch finishing at all, never by timing. The waits have a generous timeout
only as a safety net (a broken overlap fails the record, and the test, instead of hanging).
Everything from the adapter registry up runs for real, on threads with their own database
connections, so the tests are transactional.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import ClassVar

import pytest
from django.db import connections
from django.utils import timezone
from django_q.models import OrmQ

from accountsync.adapters.base import (
    ADAPTERS,
    AccountRecord,
    Catalog,
    ConnectionFailed,
    ConnectionTarget,
    Privilege,
)
from accountsync.models import InstanceAccount
from config.registry import post_sync_hook_register, registry
from sync import services, tasks
from sync.leases import InstanceLease, lease_acquire
from sync.models import SyncInstanceRecord, SyncSession
from sync.services import batch_size, sync_batch_execute, sync_session_cancel, sync_session_start

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

SAFETY = 30.0  # seconds a rendezvous waits before giving up: only ever reached when the code under test is broken


class Rendezvous:
    """Fetches in flight, and a wait for a condition on them (the condition variable every fetch shares)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.in_flight = 0
        self.max_in_flight = 0
        self.started = 0
        self.finished = 0
        self.fetch_started: dict[str, datetime] = {}

    def wait_for(self, predicate: Callable[[], bool], what: str) -> None:
        """Wait until ``predicate`` holds: re-checked at every change of the fetches, and every 10 ms for
        what changes elsewhere (threads ending); only the safety timeout gives up."""
        deadline = time.monotonic() + SAFETY
        with self.cond:
            while not predicate():
                if time.monotonic() > deadline:
                    raise ConnectionFailed(f"rendezvous: gave up waiting for {what}")
                self.cond.wait(0.01)


class RendezvousAdapter:
    """A server per instance (by name): fetches wait at ``meet`` until ``until(rv)`` holds, then answer.

    ``fail`` names instances that refuse connections; ``hold`` names instances whose fetch
    also waits for ``release`` (set by the test).
    """

    db_type = "mysql"
    rv: ClassVar[Rendezvous] = Rendezvous()
    until: ClassVar[Callable[[Rendezvous], bool]] = staticmethod(lambda rv: True)
    fail: ClassVar[set[str]] = set()
    hold: ClassVar[set[str]] = set()
    release: ClassVar[threading.Event] = threading.Event()
    fetched: ClassVar[list[str]] = []

    def test_connection(self, target: ConnectionTarget) -> str:
        return "MariaDB 10.11.6"

    def fetch(self, target: ConnectionTarget) -> Catalog:
        rv = self.rv
        with rv.cond:
            rv.in_flight += 1
            rv.started += 1
            rv.fetch_started[target.name] = timezone.now()
            rv.max_in_flight = max(rv.max_in_flight, rv.in_flight)
            rv.cond.notify_all()
        try:
            rv.wait_for(lambda: self.until(rv), "the expected fetches to be in flight together")
            if target.name in self.hold and not self.release.wait(SAFETY):
                raise ConnectionFailed("rendezvous: never released")
            if target.name in self.fail:
                raise ConnectionFailed(f"cannot connect to {target.name}", instance_name=target.name)
            self.fetched.append(target.name)
            user = f"app_{target.name}"
            return Catalog(
                accounts=[
                    AccountRecord(
                        identity=f"'{user}'@'%'", username=user, host="%", privileges=[Privilege("global", "SELECT")]
                    )
                ],
                server_version="MariaDB 10.11.6",
            )
        finally:
            with rv.cond:
                rv.in_flight -= 1
                rv.finished += 1
                rv.cond.notify_all()


@pytest.fixture
def servers(monkeypatch):
    monkeypatch.setitem(ADAPTERS, "mysql", f"{__name__}.RendezvousAdapter")
    monkeypatch.setattr(RendezvousAdapter, "rv", Rendezvous())
    monkeypatch.setattr(RendezvousAdapter, "until", staticmethod(lambda rv: True))
    monkeypatch.setattr(RendezvousAdapter, "fail", set())
    monkeypatch.setattr(RendezvousAdapter, "hold", set())
    monkeypatch.setattr(RendezvousAdapter, "release", threading.Event())
    monkeypatch.setattr(RendezvousAdapter, "fetched", [])
    return RendezvousAdapter


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password="x")


@pytest.fixture
def start(make_instance, alice):
    """start(n) -> (session, record ids in order): a session of n fresh instances, not queued."""

    def make(n: int, prefix: str = "db") -> tuple[SyncSession, list[int]]:
        instances = [make_instance(name=f"{prefix}-{i}") for i in range(n)]
        session = sync_session_start(instances=instances, sync_type="manual_batch", created_by=alice, enqueue=False)
        return session, list(session.records.order_by("pk").values_list("pk", flat=True))

    return make


@pytest.fixture
def hooks():
    saved = dict(registry["post_sync_hooks"])
    yield
    registry["post_sync_hooks"].clear()
    registry["post_sync_hooks"].update(saved)


def statuses(ids: list[int]) -> dict[str, tuple[str, str]]:
    return {r.instance_name: (r.status, r.error_kind) for r in SyncInstanceRecord.objects.filter(pk__in=ids)}


def eventually(predicate: Callable[[], bool], what: str) -> None:
    """Poll the database until ``predicate`` holds (the safety timeout only fails a broken run)."""
    deadline = time.monotonic() + SAFETY
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def in_background(func: Callable[[], dict]) -> tuple[threading.Thread, dict]:
    """Run ``func`` (a batch) on its own thread, as a worker would; its result lands in the dict."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome.update(func())
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_records_of_one_batch_fetch_at_the_same_time(servers, start, settings):
    settings.WHALEFALL_FETCH_CONCURRENCY = 4
    servers.until = staticmethod(lambda rv: rv.started == 4)  # no fetch ends before all four began
    session, ids = start(4)
    out = sync_batch_execute(record_ids=ids)
    assert (out["ok"], out["failed"]) == (4, 0), out["results"]
    assert servers.rv.max_in_flight == 4
    session.refresh_from_db()
    assert (session.status, session.successful_instances) == ("completed", 4)  # finalized once, by the batch
    assert not InstanceLease.objects.exists()


def pool_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("wf-sync-"))


def test_never_more_fetches_in_flight_than_the_setting(servers, start, settings):
    settings.WHALEFALL_FETCH_CONCURRENCY = 3
    # a fetch ends only once every thread of the batch's pool is fetching: however many threads the pool
    # had, all of them are in flight together at some point, so max_in_flight is the pool's size
    servers.until = staticmethod(lambda rv: rv.in_flight == pool_threads())
    _, ids = start(10)
    out = sync_batch_execute(record_ids=ids)
    assert out["ok"] == 10, out["results"]
    assert servers.rv.max_in_flight == 3
    assert servers.rv.finished == 10


def test_applies_are_bounded_while_fetches_overlap(servers, start, settings, hooks, monkeypatch):
    """All fetches end together; records past the apply gate stay there until every record reached it.

    So the number past the gate at once is exactly what the gate lets through: with no
    bound all four would be past it together.
    """
    settings.WHALEFALL_FETCH_CONCURRENCY = 4
    settings.WHALEFALL_APPLY_CONCURRENCY = 2
    servers.until = staticmethod(lambda rv: rv.started == 4)
    rv = Rendezvous()
    gate = {"arrived": 0, "past": 0, "max_past": 0}
    enter, leave = services._ApplyGate.enter, services._ApplyGate.leave

    def counting_enter(self) -> None:
        with rv.cond:
            gate["arrived"] += 1
            rv.cond.notify_all()
        enter(self)
        with rv.cond:
            gate["past"] += 1
            gate["max_past"] = max(gate["max_past"], gate["past"])

    def counting_leave(self) -> None:
        if self.held:
            with rv.cond:
                gate["past"] -= 1
        leave(self)

    monkeypatch.setattr(services._ApplyGate, "enter", counting_enter)
    monkeypatch.setattr(services._ApplyGate, "leave", counting_leave)

    def stay_until_all_arrived(event) -> None:  # a post-sync hook: runs past the gate, after the apply
        rv.wait_for(lambda: gate["arrived"] == 4, "every record to reach its apply phase")

    post_sync_hook_register(name="stay_until_all_arrived", order=1, func=stay_until_all_arrived)
    _, ids = start(4)
    out = sync_batch_execute(record_ids=ids)
    assert out["ok"] == 4, out["results"]
    assert gate["arrived"] == 4 and gate["past"] == 0
    assert gate["max_past"] == 2  # two applied together, never a third


def test_one_record_failing_leaves_the_others_alone(servers, start, settings):
    settings.WHALEFALL_FETCH_CONCURRENCY = 4
    servers.until = staticmethod(lambda rv: rv.started == 4)
    servers.fail = {"db-1"}
    session, ids = start(4)
    out = sync_batch_execute(record_ids=ids)
    assert (out["ok"], out["failed"]) == (3, 1)
    got = statuses(ids)
    assert got.pop("db-1") == ("failed", "connection")
    assert set(got.values()) == {("completed", "")}
    record = SyncInstanceRecord.objects.get(instance_name="db-1")
    assert "cannot connect to db-1" in record.error_message
    session.refresh_from_db()
    assert (session.status, session.successful_instances, session.failed_instances) == ("failed", 3, 1)
    assert not InstanceLease.objects.exists()


def test_a_session_cancelled_mid_fetch_stops_its_record_only(servers, start, settings, alice):
    """Records of two sessions in one batch: cancelling one session while its record fetches ends only that one."""
    settings.WHALEFALL_FETCH_CONCURRENCY = 3
    servers.until = staticmethod(lambda rv: rv.started == 3)
    servers.hold = {"a-0"}
    a, a_ids = start(1, prefix="a")
    b, b_ids = start(2, prefix="b")
    worker, outcome = in_background(lambda: sync_batch_execute(record_ids=a_ids + b_ids))
    servers.rv.wait_for(lambda: servers.rv.started == 3, "the three fetches to start")
    assert sync_session_cancel(session=a)
    servers.release.set()  # a-0's fetch ends after the cancel: its apply must not happen
    worker.join(SAFETY)
    assert not worker.is_alive()
    assert (outcome["ok"], outcome["failed"]) == (2, 1)
    got = statuses(a_ids + b_ids)
    assert got["a-0"] == ("failed", "cancelled")
    assert got["b-0"] == got["b-1"] == ("completed", "")
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.status, b.status) == ("cancelled", "completed")
    assert not InstanceLease.objects.exists()
    assert not InstanceAccount.objects.filter(instance__name="a-0").exists()
    assert InstanceAccount.objects.filter(instance__name__in=["b-0", "b-1"]).count() == 2


def test_a_lease_held_elsewhere_fails_that_record_with_conflict(servers, start, settings, alice, make_instance):
    settings.WHALEFALL_FETCH_CONCURRENCY = 3
    _, ids = start(3)
    busy = SyncInstanceRecord.objects.get(pk=ids[1])
    other = sync_session_start(
        instances=[make_instance(name="elsewhere")], sync_type="manual_batch", created_by=alice, enqueue=False
    )
    assert lease_acquire(instance_id=busy.instance_id, holder="record:999", session_id=str(other.session_id)).acquired
    out = sync_batch_execute(record_ids=ids)
    assert (out["ok"], out["failed"]) == (2, 1)
    busy.refresh_from_db()
    assert (busy.status, busy.error_kind) == ("failed", "conflict")
    assert f"already being synced by session {other.session_id}" in busy.error_message
    assert InstanceLease.objects.get(instance_id=busy.instance_id).holder == "record:999"  # not ours to touch
    assert InstanceLease.objects.count() == 1
    assert sorted(servers.fetched) == ["db-0", "db-2"]  # the busy instance was never read


def test_every_record_in_flight_keeps_beating_from_one_thread(servers, start, settings):
    """Fetches held open: each record's heartbeat and lease move on after its fetch began, from one thread."""
    settings.WHALEFALL_FETCH_CONCURRENCY = 3
    settings.WHALEFALL_HEARTBEAT_SECONDS = 0.05
    settings.WHALEFALL_LEASE_SECONDS = 1.0
    ttl = timedelta(seconds=settings.WHALEFALL_LEASE_SECONDS)
    servers.hold = {"db-0", "db-1", "db-2"}
    _, ids = start(3)
    worker, outcome = in_background(lambda: sync_batch_execute(record_ids=ids))
    try:
        servers.rv.wait_for(lambda: servers.rv.started == 3, "the three fetches to start")
        begun = dict(servers.rv.fetch_started)

        def all_beaten() -> bool:  # beaten since its fetch began; its lease renewed since it was taken
            records = list(SyncInstanceRecord.objects.filter(pk__in=ids, status="running"))
            leases = list(InstanceLease.objects.filter(instance_id__in=[r.instance_id for r in records]))
            return (
                len(records) == len(leases) == 3
                and all(r.heartbeat_at > begun[r.instance_name] for r in records)
                and all(lease.expires_at > lease.acquired_at + ttl for lease in leases)
            )

        eventually(all_beaten, "every record in flight to be beaten")
        assert servers.rv.in_flight == 3  # still fetching: the beats came from the background
        hearts = [t for t in threading.enumerate() if t.name.startswith("wf-heartbeat-")]
        assert len(hearts) == 1  # one thread for the whole batch, not one per record
    finally:
        servers.release.set()
        worker.join(SAFETY)
    assert outcome["ok"] == 3, outcome
    assert not InstanceLease.objects.exists()


def test_a_duplicate_batch_delivery_runs_nothing_twice(servers, start, settings):
    settings.WHALEFALL_FETCH_CONCURRENCY = 2
    _, ids = start(3)
    first = tasks.run_sync_batch(ids)
    assert first["ok"] == 3
    again = tasks.run_sync_batch(ids)
    assert (again["ok"], again["failed"], again["duplicate"]) == (0, 0, 3)
    assert len(servers.fetched) == 3
    assert set(SyncInstanceRecord.objects.filter(pk__in=ids).values_list("attempt", flat=True)) == {1}


def test_records_not_started_in_the_first_half_of_the_task_timeout_are_queued_again(
    servers, start, settings, monkeypatch
):
    settings.WHALEFALL_FETCH_CONCURRENCY = 1
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 900}
    clock = iter([0.0, 0.0])  # the batch starts, its first record starts; then half the timeout has gone
    monkeypatch.setattr(services, "_clock", lambda: next(clock, 10_000.0))
    session, ids = start(3)
    SyncInstanceRecord.objects.filter(pk__in=ids).update(queue_attempts=1)
    out = sync_batch_execute(record_ids=ids)
    assert (out["ok"], out["requeued"]) == (1, 2)
    records = {r.pk: r for r in SyncInstanceRecord.objects.filter(pk__in=ids)}
    assert records[ids[0]].status == "completed"
    assert {(records[pk].status, records[pk].queue_attempts) for pk in ids[1:]} == {("pending", 2)}
    queued = [task.task["args"][0] for task in OrmQ.objects.all()]  # a batch of two is two single tasks
    assert sorted(queued) == ids[1:]
    session.refresh_from_db()
    assert session.status == "running"  # two records still to run


def test_large_sessions_are_queued_in_batches_small_ones_per_record(servers, make_instance, alice, settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 2}
    settings.WHALEFALL_BATCH_SIZE = 5
    assert [batch_size(n) for n in (1, 7, 8, 15, 16, 40, 41, 1000)] == [1, 1, 1, 1, 2, 5, 5, 5]
    instances = [make_instance(name=f"big-{i}") for i in range(24)]
    session = sync_session_start(instances=instances, sync_type="manual_batch", created_by=alice)
    queued = [task.task for task in OrmQ.objects.all()]
    assert {t["func"] for t in queued} == {"sync.tasks.run_sync_batch"}
    assert [len(t["args"][0]) for t in queued] == [3] * 8  # 24 // (2 workers x 4 tasks each) = 3 a batch
    assert sorted(pk for t in queued for pk in t["args"][0]) == sorted(session.records.values_list("pk", flat=True))
    assert {t["group"] for t in queued} == {str(session.session_id)}
    settings.WHALEFALL_BATCH_SIZE = 1  # one task per record, as before batches
    OrmQ.objects.all().delete()
    sync_session_start(instances=instances, sync_type="manual_batch", created_by=alice)
    assert {t.task["func"] for t in OrmQ.objects.all()} == {"sync.tasks.run_sync_record"}
    assert OrmQ.objects.count() == 24


@pytest.mark.parametrize("name", ["WHALEFALL_FETCH_CONCURRENCY", "WHALEFALL_APPLY_CONCURRENCY", "WHALEFALL_BATCH_SIZE"])
def test_system_check_refuses_batch_bounds_below_one(settings, name):
    from django.core.checks import run_checks

    assert not [e for e in run_checks() if e.id == "sync.E004"]
    setattr(settings, name, 0)
    assert [e.id for e in run_checks() if e.id.startswith("sync.")] == ["sync.E004"]
