"""Batches on a real `manage.py qcluster` process (ORM broker and Redis broker)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid

import pytest
from django.contrib.auth import get_user_model

from accountsync.models import AccountChangeLog
from instances.models import Credential, Instance
from sync.leases import InstanceLease
from sync.models import SyncSession
from sync.services import sync_reap, sync_session_retry_failed, sync_session_start
from tests.livedb import MARIADB, POSTGRES, REDIS_URL

from .conftest import ROOT, cluster_env, wait_for

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.live,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(240),
]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make(name: str, db_type: str, port: int, user: str, **kw) -> Instance:
    cred, _ = Credential.objects.get_or_create(name=f"cred-{user}-{db_type}", defaults={"username": user})
    cred.set_password("")
    cred.save()
    return Instance.objects.create(
        name=name, db_type=db_type, host="127.0.0.1", port=port, credential=cred, database_name=kw.pop("db", ""), **kw
    )


@pytest.fixture
def fleet(mariadb_admin, postgres_admin):
    """Six instances: two live MariaDB, two live PostgreSQL, two that refuse connections."""
    return [
        make("maria-a", "mysql", MARIADB["port"], "root"),
        make("maria-b", "mysql", MARIADB["port"], "root"),
        make("pg-a", "postgresql", POSTGRES["port"], "postgres", db="postgres", options={"databases": ["postgres"]}),
        make("pg-b", "postgresql", POSTGRES["port"], "postgres", db="postgres", options={"databases": ["postgres"]}),
        make("dead-a", "mysql", closed_port(), "root", options={"connect_timeout": 2}),
        make("dead-b", "postgresql", closed_port(), "postgres", options={"connect_timeout": 2}),
    ]


def assert_batch_outcome(session: SyncSession) -> None:
    session.refresh_from_db()
    assert session.status == "failed"
    assert (session.total_instances, session.successful_instances, session.failed_instances) == (6, 4, 2)
    records = {r.instance_name: r for r in session.records.all()}
    for name in ("maria-a", "maria-b", "pg-a", "pg-b"):
        assert records[name].status == "completed", (name, records[name].error_message)
        assert records[name].items_synced > 0
        assert records[name].items_created == records[name].items_synced  # first sync: every account is new
    for name in ("dead-a", "dead-b"):
        assert records[name].status == "failed"
        assert records[name].error_kind == "connection"
        assert name in records[name].error_message
    assert not InstanceLease.objects.exists()


def test_batch_runs_in_parallel_on_a_real_cluster_with_orm_broker(fleet, qcluster):
    alice = get_user_model().objects.create_user("alice", password="alice-pw-123")
    session = sync_session_start(instances=fleet, sync_type="manual_batch", created_by=alice)
    cluster = qcluster(workers=2)
    wait_for(lambda: SyncSession.objects.get(pk=session.pk).status != "running", 150, "the batch to finish", cluster)
    assert_batch_outcome(session)

    # retry failed: a new session over just the two dead instances, also on the workers
    retry = sync_session_retry_failed(session=session, created_by=alice)
    wait_for(lambda: SyncSession.objects.get(pk=retry.pk).status != "running", 60, "the retry to finish", cluster)
    retry.refresh_from_db()
    assert retry.retry_of_id == session.pk
    assert sorted(retry.records.values_list("instance_name", flat=True)) == ["dead-a", "dead-b"]
    assert retry.failed_instances == 2


def test_cli_async_wait_through_redis_broker(fleet, qcluster):
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("WHALEFALL_REQUIRE_LIVE") == "1":
            pytest.fail(f"Redis at {REDIS_URL} is not reachable: {exc}")
        pytest.skip(f"Redis is not reachable: {exc}")
    get_user_model().objects.create_user("bob", password="bob-pw-123")
    # a private queue name: other runs may share this Redis
    env = cluster_env(Q_BROKER_URL=REDIS_URL, Q_CLUSTER_NAME="wftest" + uuid.uuid4().hex[:8])
    cluster = qcluster(workers=2, **{k: env[k] for k in ("Q_BROKER_URL", "Q_CLUSTER_NAME", "DATABASE_URL")})
    proc = subprocess.run(
        [sys.executable, "manage.py", "sync_accounts", "--all", "--async", "--wait", "--json", "--user", "bob"],
        cwd=ROOT,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr + cluster.output()[-3000:]  # two instances fail
    report = json.loads(proc.stdout)
    assert report["status"] == "failed"
    session = SyncSession.objects.get(session_id=report["session_id"])
    assert session.sync_type == "manual_task"
    assert_batch_outcome(session)
    assert "Traceback" not in proc.stderr


def test_sigkilled_worker_is_reaped_and_rerun_succeeds_without_duplicates(mariadb_admin, qcluster):
    from bench.latency_proxy import LatencyProxy

    alice = get_user_model().objects.create_user("alice", password="alice-pw-123")
    with LatencyProxy(target_port=MARIADB["port"], delay_ms=400) as proxy:
        slow = make("slow-maria", "mysql", proxy.port, "root", options={"connect_timeout": 10})
        session = sync_session_start(instances=[slow], sync_type="manual_batch", created_by=alice)
        cluster = qcluster(workers=1)
        record = session.records.get()
        wait_for(lambda: type(record).objects.get(pk=record.pk).status == "running", 60, "the record to start", cluster)
        # the lease is taken just after the record starts: kill once both are in place
        wait_for(lambda: InstanceLease.objects.filter(instance=slow).exists(), 30, "the lease", cluster)
        os.killpg(cluster.proc.pid, signal.SIGKILL)  # the whole cluster dies mid-fetch
        cluster.proc.wait(timeout=10)
        record.refresh_from_db()
        assert record.status == "running"
        assert InstanceLease.objects.filter(instance=slow).exists()

        assert sync_reap(stale_after=0) == 1
        record.refresh_from_db()
        session.refresh_from_db()
        assert record.status == "failed" and record.error_kind == "timeout" and "worker lost" in record.error_message
        assert session.status == "failed"
        assert not InstanceLease.objects.filter(instance=slow).exists()
        assert AccountChangeLog.objects.filter(instance=slow).count() == 0  # killed before apply: nothing written

        rerun = sync_session_retry_failed(session=session, created_by=alice)
        cluster2 = qcluster(workers=1)
        wait_for(lambda: SyncSession.objects.get(pk=rerun.pk).status != "running", 150, "the rerun", cluster2)
    rerun.refresh_from_db()
    assert rerun.status == "completed", list(rerun.records.values_list("error_message", flat=True))
    added = AccountChangeLog.objects.filter(instance=slow, change_type="added")
    assert added.count() == rerun.records.get().items_created > 0
    assert added.values("account_id").distinct().count() == added.count()  # no duplicate entries


def test_two_sessions_over_one_instance_one_loses_the_lease(mariadb_admin, qcluster):
    from bench.latency_proxy import LatencyProxy

    alice = get_user_model().objects.create_user("alice", password="alice-pw-123")
    with LatencyProxy(target_port=MARIADB["port"], delay_ms=100) as proxy:
        inst = make("shared-maria", "mysql", proxy.port, "root", options={"connect_timeout": 10})
        first = sync_session_start(instances=[inst], sync_type="manual_batch", created_by=alice)
        second = sync_session_start(instances=[inst], sync_type="manual_batch", created_by=alice)
        cluster = qcluster(workers=2)
        wait_for(
            lambda: not SyncSession.objects.filter(pk__in=[first.pk, second.pk], status="running").exists(),
            150,
            "both sessions to finish",
            cluster,
        )
    outcomes = {s.pk: s.records.get() for s in SyncSession.objects.filter(pk__in=[first.pk, second.pk])}
    statuses = sorted(r.status for r in outcomes.values())
    assert statuses == ["completed", "failed"], [(r.status, r.error_message) for r in outcomes.values()]
    loser = next(r for r in outcomes.values() if r.status == "failed")
    winner = next(r for r in outcomes.values() if r.status == "completed")
    assert loser.error_kind == "conflict"
    assert f"already being synced by session {winner.session.session_id}" in loser.error_message


def overlapping(records) -> int:
    """The most records that were running at one moment (from their started/completed timestamps)."""
    edges = sorted([(r.started_at, 1) for r in records] + [(r.completed_at, -1) for r in records])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def test_a_large_session_runs_in_batches_whose_records_overlap_on_one_worker(mariadb_admin, qcluster, settings):
    """One worker, batches of four, four in flight: records overlap, never more than four at once."""
    from django_q.models import Task

    from bench.latency_proxy import LatencyProxy

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 1}  # the enqueuing process sizes the batches
    alice = get_user_model().objects.create_user("alice", password="alice-pw-123")
    with LatencyProxy(target_port=MARIADB["port"], delay_ms=50) as proxy:
        fleet = [make(f"far-{i:02d}", "mysql", proxy.port, "root", options={"connect_timeout": 10}) for i in range(16)]
        session = sync_session_start(instances=fleet, sync_type="manual_batch", created_by=alice)
        cluster = qcluster(workers=1, WHALEFALL_FETCH_CONCURRENCY="4")
        wait_for(lambda: SyncSession.objects.get(pk=session.pk).status != "running", 180, "the batches", cluster)
    session.refresh_from_db()
    assert (session.status, session.successful_instances) == ("completed", 16)
    records = list(session.records.all())
    assert all(r.attempt == 1 and r.items_synced > 0 for r in records)
    assert 2 <= overlapping(records) <= 4  # one worker process, several records at once, bounded by the setting
    assert not InstanceLease.objects.exists()
    batches = Task.objects.filter(group=str(session.session_id))
    # django-q2's monitor stores a task's result after the task returned: the last batch may end the
    # session before its Task row exists
    wait_for(lambda: batches.count() >= 4, 60, "the batch tasks' results", cluster)
    assert sorted(len(t.args[0]) for t in batches) == [4, 4, 4, 4]  # 16 // (1 worker x 4): four batch tasks
    assert {t.func for t in batches} == {"sync.tasks.run_sync_batch"}


def test_a_sigkilled_batch_is_reaped_record_by_record_and_retry_runs_the_rest(mariadb_admin, qcluster, settings):
    """A cluster killed mid-batch: its running records are reaped, its pending ones re-queued, nothing twice."""
    from bench.latency_proxy import LatencyProxy

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 1}
    alice = get_user_model().objects.create_user("alice", password="alice-pw-123")
    with LatencyProxy(target_port=MARIADB["port"], delay_ms=200) as proxy:
        fleet = [make(f"slow-{i:02d}", "mysql", proxy.port, "root", options={"connect_timeout": 10}) for i in range(16)]
        session = sync_session_start(instances=fleet, sync_type="manual_batch", created_by=alice)
        cluster = qcluster(workers=1, WHALEFALL_FETCH_CONCURRENCY="4")
        running = session.records.filter(status="running")
        wait_for(lambda: running.count() == 4, 60, "a batch of four to start", cluster)
        wait_for(lambda: InstanceLease.objects.count() == 4, 30, "their leases", cluster)
        os.killpg(cluster.proc.pid, signal.SIGKILL)  # the worker dies with four records mid-fetch
        cluster.proc.wait(timeout=10)
        assert session.records.filter(status="pending").count() == 12

        assert sync_reap(stale_after=0, pending_after=0) == 4 + 12  # four reaped, twelve queued again
        assert session.records.filter(status="failed", error_kind="timeout").count() == 4
        assert not InstanceLease.objects.exists()
        cluster2 = qcluster(workers=1, WHALEFALL_FETCH_CONCURRENCY="4")
        wait_for(lambda: SyncSession.objects.get(pk=session.pk).status != "running", 180, "the rest", cluster2)
        session.refresh_from_db()
        assert (session.status, session.successful_instances, session.failed_instances) == ("failed", 12, 4)

        retry = sync_session_retry_failed(session=session, created_by=alice)
        wait_for(lambda: SyncSession.objects.get(pk=retry.pk).status != "running", 120, "the retry", cluster2)
    retry.refresh_from_db()
    assert (retry.status, retry.successful_instances) == ("completed", 4)
    assert set(session.records.values_list("attempt", flat=True)) == {1}  # no record of the session ran twice
    assert not InstanceLease.objects.exists()
    for inst in fleet:  # every instance applied exactly once: one "added" entry per account
        added = AccountChangeLog.objects.filter(instance=inst, change_type="added")
        assert added.count() == added.values("account_id").distinct().count() > 0
