"""Batch sync wall time with 1 worker vs N workers, each instance a distant server.

Every instance is registered behind its own `LatencyProxy` (default 20 ms per
forwarded chunk each way, like a far data centre) in front of the live MariaDB
or PostgreSQL. A `manual_batch` session over all of them runs on a real
`manage.py qcluster` with 1 worker, then with N; the script prints the wall time
of each (first record start to session end, from the database's own
timestamps) and the speed-up. WhaleFall's own database is a throwaway SQLite
file, so the bench touches no real data.

    .venv/bin/python bench/batch_parallel.py [--instances 24] [--workers 4] [--delay-ms 20]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARIADB_PORT = int(os.environ.get("WHALEFALL_TEST_MARIADB_PORT") or 3306)  # scripts/_testservers.sh
PG_PORT = int(os.environ.get("WHALEFALL_TEST_PG_PORT") or 5432)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=24)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    args = parser.parse_args()

    var_dir = tempfile.mkdtemp(prefix="wf-bench-")
    os.environ.update({"WHALEFALL_VAR_DIR": var_dir, "DJANGO_SETTINGS_MODULE": "config.settings"})
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("Q_BROKER_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db.models import Min

    from bench.latency_proxy import LatencyProxy
    from instances.models import Credential, Instance
    from sync.models import SyncSession
    from sync.services import sync_session_start

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench")
    creds = {}
    for db_type, username in (("mysql", "root"), ("postgresql", "postgres")):
        cred = Credential(name=f"bench-{db_type}", username=username)
        cred.set_password("")
        cred.save()
        creds[db_type] = cred

    results: dict[int, float] = {}
    with ExitStack() as stack:
        instances = []
        for i in range(args.instances):
            db_type, port = ("mysql", MARIADB_PORT) if i % 2 == 0 else ("postgresql", PG_PORT)
            proxy = stack.enter_context(LatencyProxy(target_port=port, delay_ms=args.delay_ms))
            instances.append(
                Instance.objects.create(
                    name=f"far-{db_type}-{i:02d}",
                    db_type=db_type,
                    host="127.0.0.1",
                    port=proxy.port,
                    credential=creds[db_type],
                    database_name="postgres" if db_type == "postgresql" else "",
                    options={"connect_timeout": 30, "databases": ["postgres"]} if db_type == "postgresql" else {},
                )
            )
        for workers in (1, args.workers):
            session = sync_session_start(instances=instances, sync_type="manual_batch", created_by=user)
            env = {**os.environ, "Q_WORKERS": str(workers), "PYTHONPATH": str(ROOT)}
            log = open(Path(var_dir) / f"qcluster-{workers}.log", "wb")  # noqa: SIM115
            proc = subprocess.Popen(
                [sys.executable, "manage.py", "qcluster"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                deadline = time.monotonic() + 1800
                while SyncSession.objects.get(pk=session.pk).status == "running":
                    if time.monotonic() > deadline:
                        raise SystemExit(f"session with {workers} worker(s) did not finish in 30 minutes")
                    time.sleep(0.5)
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                log.close()
            session.refresh_from_db()
            first = session.records.aggregate(t=Min("started_at"))["t"]
            wall = (session.completed_at - first).total_seconds()
            results[workers] = wall
            print(
                f"workers={workers}: {session.total_instances} instances, {session.successful_instances} ok, "
                f"{session.failed_instances} failed, wall {wall:.2f} s"
            )
            for record in session.records.filter(status="failed")[:3]:
                print(f"  failed: {record.instance_name}: {record.error_message}")
    speedup = results[1] / results[args.workers]
    print(
        f"speed-up with {args.workers} workers: {speedup:.2f}x "
        f"({args.instances} instances, {args.delay_ms:g} ms per chunk each way)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
