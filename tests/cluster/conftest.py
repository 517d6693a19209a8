"""Start a real `manage.py qcluster` against the test database.

The cluster is a separate process, so the tests use transactional test
databases (data committed, visible to it) and hand it the test database's
location through DATABASE_URL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def test_database_url() -> str:
    sd = connection.settings_dict
    if sd["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(sd['NAME']).resolve()}"
    if sd["ENGINE"].endswith("postgresql"):
        auth = sd["USER"] + (f":{sd['PASSWORD']}" if sd.get("PASSWORD") else "")
        return f"postgres://{auth}@{sd['HOST'] or '127.0.0.1'}:{sd['PORT'] or 5432}/{sd['NAME']}"
    pytest.skip(f"cluster tests do not support {sd['ENGINE']}")


def cluster_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env.update(
        {
            "DATABASE_URL": test_database_url(),
            # the ORM broker's queue is keyed by the cluster name: use the one this process enqueues to
            "Q_CLUSTER_NAME": settings.Q_CLUSTER["name"],
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update(extra)
    return env


class Cluster:
    def __init__(self, env: dict[str, str], workers: int) -> None:
        self.env = {**env, "Q_WORKERS": str(workers)}
        self.log = Path(ROOT / "var" / f"qcluster-{self.env['Q_CLUSTER_NAME']}.log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Cluster:
        self.log.parent.mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def worker_pids(self) -> list[int]:
        """PIDs of the cluster's processes other than the main one (sentinel, workers, monitor, pusher)."""
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-g", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split() if int(p) != self.proc.pid]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def qcluster() -> Iterator[Callable[..., Cluster]]:
    started: list[Cluster] = []

    def start(workers: int = 2, **env: str) -> Cluster:
        cluster = Cluster(cluster_env(**env), workers).start()
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.stop()
        cluster.log.unlink(missing_ok=True)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, cluster: Cluster | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    detail = f"\n--- qcluster output ---\n{cluster.output()[-4000:]}" if cluster else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
