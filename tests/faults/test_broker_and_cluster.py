"""The broker and the cluster failing for real: a private redis-server stopped and started, a qcluster SIGKILLed.

Each test asserts the end state the design promises: every record terminal within a
bounded time, no session left running, leases free.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django_q.brokers import get_broker
from django_q.conf import Conf

from instances.models import Credential, Instance
from sync.leases import InstanceLease
from sync.models import SyncInstanceRecord, SyncSession
from sync.services import SyncBrokerError, sync_reap, sync_session_retry_failed, sync_session_start
from tests.cluster.conftest import ROOT, qcluster, wait_for  # noqa: F401  (qcluster is a fixture)

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

REDIS_SERVER = "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A throwaway redis-server on its own loopback port, nothing on disk."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = ROOT / "var" / f"redis-{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def cleanup(self) -> None:
        self.stop()
        for path in self.dir.glob("*"):
            path.unlink()
        if self.dir.exists():
            self.dir.rmdir()


@pytest.fixture
def private_redis(settings, monkeypatch) -> Iterator[PrivateRedis]:
    """A private Redis as django-q2's broker for this process (and, through env, for a cluster)."""
    if not Path(REDIS_SERVER).exists():
        if os.environ.get("WHALEFALL_REQUIRE_LIVE") == "1":
            pytest.fail(f"{REDIS_SERVER} is missing (Debian package redis-server)")
        pytest.skip(f"{REDIS_SERVER} is missing")
    server = PrivateRedis()
    server.start()
    name = "wffault" + uuid.uuid4().hex[:8]
    cluster = {k: v for k, v in settings.Q_CLUSTER.items() if k != "orm"}
    settings.Q_CLUSTER = {**cluster, "redis": server.url, "name": name}
    for attr, value in (("ORM", None), ("REDIS", server.url), ("DJANGO_REDIS", None), ("BROKER_CLASS", None)):
        monkeypatch.setattr(Conf, attr, value)
    monkeypatch.setattr(Conf, "SYNC", False)
    monkeypatch.setattr(Conf, "PREFIX", name)
    monkeypatch.setattr(Conf, "CLUSTER_NAME", name)
    yield server
    server.cleanup()


def cluster_env(server: PrivateRedis) -> dict[str, str]:
    return {
        "Q_BROKER_URL": server.url,
        "Q_CLUSTER_NAME": Conf.PREFIX,
        "WHALEFALL_HEARTBEAT_SECONDS": "0.5",
        "WHALEFALL_LEASE_SECONDS": "3",
    }


def instance(name: str, port: int, **options) -> Instance:
    cred, _ = Credential.objects.get_or_create(name="fault-cred", defaults={"username": "root"})
    cred.set_password("")
    cred.save()
    return Instance.objects.create(
        name=name, db_type="mysql", host="127.0.0.1", port=port, credential=cred, options=options
    )


def end_state_is_clean(session: SyncSession) -> None:
    session.refresh_from_db()
    assert session.status in ("completed", "failed")
    assert not session.records.exclude(status__in=("completed", "failed", "cancelled")).exists()
    assert not InstanceLease.objects.exists()


def test_broker_down_when_a_batch_starts_fails_it_cleanly_and_retry_runs_it(private_redis, qcluster):  # noqa: F811
    alice = get_user_model().objects.create_user("alice", password="x")
    dead = [instance(f"dead-{n}", free_port(), connect_timeout=1) for n in range(3)]

    ok = sync_session_start(instances=dead, sync_type="manual_batch", created_by=alice)
    assert get_broker().queue_size() == 3  # the broker took them
    get_broker().purge_queue()
    SyncInstanceRecord.objects.filter(session=ok).update(status="cancelled")
    ok.finalize()

    private_redis.stop()
    with pytest.raises(SyncBrokerError) as caught:
        sync_session_start(instances=dead, sync_type="manual_batch", created_by=alice)
    session = SyncSession.objects.get(session_id=caught.value.session_id)
    assert caught.value.not_queued == 3
    assert "unreachable" in str(caught.value)
    assert session.status == "failed" and session.failed_instances == 3
    assert set(session.records.values_list("status", "error_kind")) == {("failed", "broker")}

    private_redis.start()  # the broker is back: Retry failed queues them and a cluster runs them
    retry = sync_session_retry_failed(session=session, created_by=alice)
    cluster = qcluster(workers=2, **cluster_env(private_redis))
    wait_for(lambda: SyncSession.objects.get(pk=retry.pk).status != "running", 90, "the retry to end", cluster)
    end_state_is_clean(retry)
    assert set(retry.records.values_list("error_kind", flat=True)) == {"connection"}  # they ran, and failed to connect


def test_a_sigkilled_cluster_loses_no_record(private_redis, qcluster, settings):  # noqa: F811
    """Redis hands prefetched tasks to the cluster: killed, it loses them; the reaper re-queues them."""
    settings.WHALEFALL_HEARTBEAT_SECONDS = 0.5
    alice = get_user_model().objects.create_user("alice", password="x")
    blackhole = socket.socket()  # accepts TCP connections and never says a word: each sync waits
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(64)
    try:
        port = blackhole.getsockname()[1]
        fleet = [instance(f"slow-{n}", port, connect_timeout=20) for n in range(8)]
        session = sync_session_start(instances=fleet, sync_type="manual_batch", created_by=alice)
        cluster = qcluster(workers=2, **cluster_env(private_redis))
        wait_for(lambda: session.records.filter(status="running").count() == 2, 60, "two records to start", cluster)
        wait_for(lambda: get_broker().queue_size() < 6, 30, "the cluster to prefetch tasks", cluster)
        os.killpg(cluster.proc.pid, signal.SIGKILL)
        cluster.proc.wait(timeout=10)
    finally:
        blackhole.close()
    assert session.records.filter(status="pending").count() == 6
    lost = 6 - get_broker().queue_size()
    assert lost > 0  # prefetched by the dead cluster: gone from the broker, still pending here

    time.sleep(3)  # past three heartbeats and the pending limit used below
    reaped = sync_reap(stale_after=2, pending_after=2)
    assert reaped == 2 + 6  # two silent running records failed, six pending re-queued
    assert session.records.filter(status="failed", error_kind="timeout").count() == 2
    assert set(session.records.filter(status="pending").values_list("queue_attempts", flat=True)) == {2}

    Instance.objects.filter(pk__in=[i.pk for i in fleet]).update(port=free_port())  # now they refuse at once
    cluster = qcluster(workers=2, **cluster_env(private_redis))
    wait_for(lambda: SyncSession.objects.get(pk=session.pk).status != "running", 90, "the batch to end", cluster)
    end_state_is_clean(session)
    assert session.records.filter(status="failed", error_kind="connection").count() == 6
