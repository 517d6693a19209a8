"""Fleet-scale batch syncs on a real cluster: first sync, no-change re-sync and 1% changed, overlap on vs off.

The setup of issue #19: WhaleFall's own database is a throwaway PostgreSQL database on
127.0.0.1:5432, the broker is the Redis at 127.0.0.1:6379 under a private cluster name
(its keys are deleted at the end), and the monitored fleet is the local MariaDB and
PostgreSQL, each given ~150 throwaway accounts, registered N times behind
`latency_proxy.py` processes (default 10 ms per chunk each way: a 20 ms round trip).

For each fleet size and each mode a fresh set of N instances runs three sessions on a
warm `manage.py qcluster` (`--workers`, default 4): a first sync, a no-change re-sync
(the daily case) and a re-sync after 1% of the accounts changed. Mode `on` is the default
batching (`WHALEFALL_BATCH_SIZE`, `WHALEFALL_FETCH_CONCURRENCY`, one apply at a time per
worker); mode `off` is one task per record, one record at a time (`1 / 1 / 1`): what the
workers did before. The wall time of a session runs from its start (the enqueue included)
to its end, from the database's own timestamps.

The CPU floor of a first sync is measured in this process on a sample of fresh instances
read directly (no proxy): the CPU time of the apply (``account_sync_apply``) and of the
post-sync hooks, per instance, times N, over the cores. Ratios are printed next to the
times because the machine is shared: absolute times move between runs, ratios from one
run hold.

    .venv/bin/python bench/fleet_sync.py [--instances 100,300] [--modes on,off] [--workers 4]
        [--delay-ms 10] [--accounts 150] [--fetch-concurrency 8] [--batch-size 32]

Everything it creates (accounts, databases, the cluster and proxy processes, Redis keys)
is removed at the end, also on Ctrl-C, SIGTERM or an exception.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MARIADB_PORT = int(os.environ.get("WHALEFALL_TEST_MARIADB_PORT") or 3306)  # scripts/_testservers.sh
PG_PORT = int(os.environ.get("WHALEFALL_TEST_PG_PORT") or 5432)
REDIS_URL = os.environ.get("WHALEFALL_BENCH_REDIS_URL") or "redis://127.0.0.1:6379/0"
PROXIES_PER_SERVER = 4  # processes: one Python proxy process per server would be a bottleneck of its own
MODES = {
    # name: (fetch concurrency, batch size) given to the cluster (and to this process, which enqueues)
    "off": (1, 1),
}
TARGETS = {"no_change_1000_s": 25.0, "changed_1000_s": 35.0, "first_over_floor": 1.3, "linear_within": 0.15}


def _term(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# --- CPU accounting from /proc: who spent the machine's cores during a session -------------
TICK = os.sysconf("SC_CLK_TCK")


def _proc_table() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command name, CPU seconds of itself plus its reaped children)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with suppress(OSError, ValueError, IndexError):
            raw = Path(f"/proc/{entry}/stat").read_text()
            name = raw[raw.index("(") + 1 : raw.rindex(")")]
            fields = raw[raw.rindex(")") + 2 :].split()
            # utime stime cutime cstime are fields 14-17 of stat, 12-15 after "(comm) "
            cpu = sum(int(f) for f in fields[11:15]) / TICK
            table[int(entry)] = (int(fields[1]), name, cpu)
    return table


def _tree_cpu(table: dict[int, tuple[int, str, float]], roots: set[int]) -> float:
    """CPU of every live process under ``roots`` (a dead one's is in its parent's reaped-children time)."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [r for r in roots if r in table]
    while todo:
        pid = todo.pop()
        total += table[pid][2]
        todo.extend(children.get(pid, []))
    return total


def _machine_busy() -> float:
    """Seconds of CPU the whole machine spent busy (all cores), from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / TICK


class CpuMeter:
    """CPU spent by the cluster, the servers, the proxies and this process between start() and stop()."""

    def __init__(self, groups: dict[str, set[int]]) -> None:
        self.groups = groups

    def _sample(self) -> dict[str, float]:
        table = _proc_table()
        servers = {
            "postgres": {
                p for p, (pp, n, _) in table.items() if n == "postgres" and table.get(pp, (0, ""))[1] != "postgres"
            },
            "mariadb": {p for p, (_, n, _) in table.items() if n == "mariadbd"},
            "redis": {p for p, (_, n, _) in table.items() if n == "redis-server"},
        }
        sample = {name: _tree_cpu(table, roots) for name, roots in {**self.groups, **servers}.items()}
        sample["bench"] = sum(os.times()[:2])
        sample["machine"] = _machine_busy()
        return sample

    def start(self) -> None:
        self.t0, self.s0 = time.monotonic(), self._sample()

    def stop(self) -> dict[str, float]:
        s1 = self._sample()
        out = {k: round(s1[k] - self.s0.get(k, 0.0), 2) for k in s1}
        out["others"] = round(out["machine"] - sum(v for k, v in out.items() if k != "machine"), 2)
        out["available"] = round((time.monotonic() - self.t0) * (os.cpu_count() or 1), 2)
        return out


@dataclass
class Fixture:
    """The throwaway accounts on the live servers and what to undo."""

    prefix: str
    accounts: int
    servers: list[str]
    changed: bool = False
    mysql_users: list[str] = field(default_factory=list)

    @property
    def pg_db(self) -> str:
        return f"{self.prefix}_db"

    def create(self) -> None:
        if "mysql" in self.servers:
            import MySQLdb

            conn = MySQLdb.connect(host="127.0.0.1", port=MARIADB_PORT, user="root", password="", autocommit=True)
            cur = conn.cursor()
            cur.execute(f"CREATE DATABASE {self.prefix}_db")
            cur.execute(f"CREATE TABLE {self.prefix}_db.t (id int)")
            self.mysql_users = [f"'{self.prefix}_{i:04d}'@'%'" for i in range(self.accounts)]
            users = ", ".join(self.mysql_users)
            cur.execute(f"CREATE USER {users}")
            cur.execute(f"GRANT SELECT ON {self.prefix}_db.* TO {users}")
            cur.execute(f"GRANT UPDATE ON {self.prefix}_db.t TO {users}")
            conn.close()
        if "postgresql" in self.servers:
            import psycopg

            with psycopg.connect(host="127.0.0.1", port=PG_PORT, user="postgres", autocommit=True) as admin:
                admin.execute(f"CREATE DATABASE {self.pg_db}")
                admin.execute(
                    f"DO $$ BEGIN FOR i IN 0..{self.accounts - 1} LOOP EXECUTE format('CREATE ROLE %I LOGIN', "
                    f"'{self.prefix}_' || lpad(i::text, 4, '0')); END LOOP; END $$"
                )
            with psycopg.connect(
                host="127.0.0.1", port=PG_PORT, user="postgres", dbname=self.pg_db, autocommit=True
            ) as db:
                db.execute("CREATE TABLE t (id int)")
                db.execute(
                    "DO $$ DECLARE r text; BEGIN FOR r IN SELECT rolname FROM pg_roles WHERE rolname LIKE "
                    f"'{self.prefix}\\_%' LOOP EXECUTE format('GRANT SELECT, UPDATE ON t TO %I', r); END LOOP; END $$"
                )

    def toggle_one_percent(self) -> int:
        """Grant (or revoke again) INSERT to 1% of the throwaway accounts on each server; returns how many."""
        n = max(1, round(self.accounts / 100))
        verb, prep = ("REVOKE", "FROM") if self.changed else ("GRANT", "TO")
        if "mysql" in self.servers:
            import MySQLdb

            conn = MySQLdb.connect(host="127.0.0.1", port=MARIADB_PORT, user="root", password="", autocommit=True)
            conn.cursor().execute(f"{verb} INSERT ON {self.prefix}_db.* {prep} {', '.join(self.mysql_users[:n])}")
            conn.close()
        if "postgresql" in self.servers:
            import psycopg

            roles = ", ".join(f'"{self.prefix}_{i:04d}"' for i in range(n))
            with psycopg.connect(
                host="127.0.0.1", port=PG_PORT, user="postgres", dbname=self.pg_db, autocommit=True
            ) as db:
                db.execute(f"{verb} INSERT ON t {prep} {roles}")
        self.changed = not self.changed
        return n

    def drop(self) -> None:
        if "mysql" in self.servers:
            with suppress(Exception):
                import MySQLdb

                conn = MySQLdb.connect(host="127.0.0.1", port=MARIADB_PORT, user="root", password="", autocommit=True)
                cur = conn.cursor()
                cur.execute("SELECT User, Host FROM mysql.user WHERE User LIKE %s", (self.prefix + "\\_%",))
                users = [f"'{u}'@'{h}'" for u, h in cur.fetchall()]
                if users:
                    cur.execute(f"DROP USER {', '.join(users)}")
                cur.execute(f"DROP DATABASE IF EXISTS {self.prefix}_db")
                conn.close()
        if "postgresql" in self.servers:
            with suppress(Exception):
                import psycopg

                with psycopg.connect(host="127.0.0.1", port=PG_PORT, user="postgres", autocommit=True) as admin:
                    admin.execute(f"DROP DATABASE IF EXISTS {self.pg_db} WITH (FORCE)")
                    admin.execute(
                        "DO $$ DECLARE r text; BEGIN FOR r IN SELECT rolname FROM pg_roles WHERE rolname LIKE "
                        f"'{self.prefix}\\_%' LOOP EXECUTE format('DROP ROLE %I', r); END LOOP; END $$"
                    )


def direct_instances(fixture: Fixture, servers: list[str], n: int, prefix: str) -> list[Any]:
    """`n` instances read directly (no proxy) from the live servers, alternating, each server's with one credential.

    For the one-process benches (resync_cpu.py, hooks_cpu.py): the same shape as the fleet's
    instances (the PostgreSQL ones limited to the fixture's database), without the network delay.
    """
    from instances.models import Credential, Instance

    creds = {}
    for db_type, username in (("mysql", "root"), ("postgresql", "postgres")):
        cred = Credential(name=f"bench-{db_type}", username=username)
        cred.set_password("")
        cred.save()
        creds[db_type] = cred
    instances = []
    for i in range(n):
        db_type = servers[i % len(servers)]
        options: dict[str, Any] = {"connect_timeout": 30}
        if db_type == "postgresql":
            options["databases"] = [fixture.pg_db]
        instances.append(
            Instance.objects.create(
                name=f"{prefix}-{db_type}-{i:04d}",
                db_type=db_type,
                host="127.0.0.1",
                port=MARIADB_PORT if db_type == "mysql" else PG_PORT,
                credential=creds[db_type],
                database_name=fixture.pg_db if db_type == "postgresql" else "",
                options=options,
            )
        )
    return instances


class Proxies:
    """`latency_proxy.py` processes in front of each server; instances are spread over them."""

    def __init__(self, delay_ms: float, servers: list[str]) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.ports: dict[str, list[int]] = {}
        for db_type in servers:
            target = MARIADB_PORT if db_type == "mysql" else PG_PORT
            for _ in range(PROXIES_PER_SERVER):
                command = [sys.executable, str(ROOT / "bench" / "latency_proxy.py"), "--listen", "0"]
                proc = subprocess.Popen(
                    [*command, "--target", str(target), "--delay-ms", str(delay_ms)],
                    stdout=subprocess.PIPE,
                    text=True,
                    start_new_session=True,
                )
                self.procs.append(proc)
                assert proc.stdout is not None
                self.ports.setdefault(db_type, []).append(int(proc.stdout.readline()))

    def port(self, db_type: str, i: int) -> int:
        ports = self.ports[db_type]
        return ports[i % len(ports)]

    def stop(self) -> None:
        for proc in self.procs:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


class Cluster:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.out = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything left of its process group
        self.out.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", default="100,300", help="fleet sizes, comma-separated (default 100,300)")
    parser.add_argument("--modes", default="on,off", help="on (batched, overlapping) and/or off (one at a time)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--delay-ms", type=float, default=10.0, help="per chunk each way (10 = 20 ms round trip)")
    parser.add_argument("--accounts", type=int, default=150, help="throwaway accounts per server")
    parser.add_argument("--servers", default="mysql,postgresql")
    parser.add_argument("--fetch-concurrency", type=int, default=8, help="mode on: WHALEFALL_FETCH_CONCURRENCY")
    parser.add_argument("--apply-concurrency", type=int, default=1, help="mode on: WHALEFALL_APPLY_CONCURRENCY")
    parser.add_argument("--batch-size", type=int, default=32, help="mode on: WHALEFALL_BATCH_SIZE")
    parser.add_argument("--floor-sample", type=int, default=10, help="instances per server for the CPU floor")
    args = parser.parse_args()
    sizes = [int(n) for n in args.instances.split(",")]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    MODES["on"] = (args.fetch_concurrency, args.batch_size)

    signal.signal(signal.SIGTERM, _term)
    tag = uuid.uuid4().hex[:8]
    prefix = f"wff{tag[:6]}"
    app_db = f"wf_bench_fleet_{tag}"
    cluster_name = f"wfbench{tag}"
    var_dir = tempfile.mkdtemp(prefix="wf-bench-fleet-")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    env = {
        "WHALEFALL_VAR_DIR": var_dir,  # the generated field keys: the cluster decrypts what this process wrote
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{PG_PORT}/{app_db}",
        "Q_BROKER_URL": REDIS_URL,
        "Q_CLUSTER_NAME": cluster_name,
        "Q_WORKERS": str(args.workers),
        "WHALEFALL_APPLY_CONCURRENCY": str(args.apply_concurrency),
    }
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import psycopg

    fixture = Fixture(prefix=prefix, accounts=args.accounts, servers=servers)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, var_dir, ignore_errors=True)  # field keys, cluster logs
        with psycopg.connect(host="127.0.0.1", port=PG_PORT, user="postgres", autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {app_db}")
        stack.callback(_drop_app_db, app_db)
        stack.callback(_purge_redis, cluster_name)
        stack.callback(fixture.drop)
        t0 = time.monotonic()
        fixture.create()
        print(f"fixture: {args.accounts} throwaway accounts on {', '.join(servers)} in {time.monotonic() - t0:.1f} s")

        import logging

        import django

        django.setup()
        logging.getLogger().setLevel(logging.WARNING)  # this process's sample syncs; the cluster logs as usual
        logging.getLogger("django-q").setLevel(logging.WARNING)  # one line per enqueued task otherwise
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        proxies = Proxies(args.delay_ms, servers)
        stack.callback(proxies.stop)
        bench = Bench(args=args, env=env, fixture=fixture, proxies=proxies, servers=servers, var_dir=Path(var_dir))
        bench.floor(max(sizes))
        for n in sizes:
            for mode in modes:
                bench.run_mode(n, mode)
        bench.summary(sizes, modes)
        from django.db import connections

        connections.close_all()
    return 0


def _drop_app_db(name: str) -> None:
    with suppress(Exception):
        from django.db import connections

        connections.close_all()
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=PG_PORT, user="postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _purge_redis(cluster_name: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"django_q:{cluster_name}:*"))
    if keys:
        client.delete(*keys)


def _own_cpu_ms(result: dict[str, Any], n: int) -> float:
    """CPU the sync itself cost per instance: what the machine spent minus other work on it (CpuMeter)."""
    cpu = result["cpu"]
    return sum(cpu[k] for k in ("workers", "postgres", "mariadb", "proxies", "redis")) / n * 1000


class Bench:
    def __init__(
        self,
        *,
        args: argparse.Namespace,
        env: dict[str, str],
        fixture: Fixture,
        proxies: Proxies,
        servers: list[str],
        var_dir: Path,
    ) -> None:
        from django.contrib.auth import get_user_model

        from instances.models import Credential

        self.args = args
        self.env = env
        self.fixture = fixture
        self.proxies = proxies
        self.servers = servers
        self.var_dir = var_dir
        self.user = get_user_model().objects.create_user("bench")
        self.creds = {}
        for db_type, username in (("mysql", "root"), ("postgresql", "postgres")):
            cred = Credential(name=f"bench-{db_type}", username=username)
            cred.set_password("")
            cred.save()
            self.creds[db_type] = cred
        self.results: dict[tuple[int, str], dict[str, Any]] = {}
        self.floor_cpu: dict[str, float] = {}

    def make(self, name: str, db_type: str, port: int) -> Any:
        from instances.models import Instance

        options: dict[str, Any] = {"connect_timeout": 30}
        database = ""
        if db_type == "postgresql":
            options["databases"] = [self.fixture.pg_db]
            database = self.fixture.pg_db
        return Instance.objects.create(
            name=name,
            db_type=db_type,
            host="127.0.0.1",
            port=port,
            credential=self.creds[db_type],
            database_name=database,
            options=options,
        )

    def fleet(self, n: int, label: str) -> list[Any]:
        return [
            self.make(f"{label}-{i:04d}", db_type, self.proxies.port(db_type, i))
            for i in range(n)
            for db_type in [self.servers[i % len(self.servers)]]
        ]

    def floor(self, n: int) -> None:
        """CPU time of a first sync's local work in one process, per instance, on a direct-read sample."""
        from accountsync.adapters.base import ConnectionTarget, get_adapter
        from accountsync.services import account_sync_apply
        from sync.hooks import PostSyncEvent, post_sync_announce

        per: dict[str, list[float]] = {"fetch": [], "apply": [], "hooks": []}
        for db_type in self.servers:
            port = MARIADB_PORT if db_type == "mysql" else PG_PORT
            for i in range(self.args.floor_sample):
                inst = self.make(f"floor-{db_type}-{i:02d}", db_type, port)
                t0 = time.thread_time()
                catalog = get_adapter(db_type).fetch(ConnectionTarget.from_instance(inst)).finalize()
                t1 = time.thread_time()
                result = account_sync_apply(instance=inst, catalog=catalog)
                t2 = time.thread_time()
                assert result.success, result.message
                post_sync_announce(
                    PostSyncEvent(
                        instance=inst,
                        session_id=None,
                        result=result.as_dict(),
                        changed_account_ids=frozenset(result.changed_account_ids),
                        catalog_unchanged=False,
                    )
                )
                t3 = time.thread_time()
                per["fetch"].append(t1 - t0)
                per["apply"].append(t2 - t1)
                per["hooks"].append(t3 - t2)
        self.floor_cpu = {k: sum(v) / len(v) for k, v in per.items()}
        cores = os.cpu_count() or 1
        print(
            f"CPU per instance, first sync, one process ({len(per['apply'])} sampled, direct): "
            f"fetch {self.floor_cpu['fetch'] * 1000:.1f} ms, apply {self.floor_cpu['apply'] * 1000:.1f} ms, "
            f"post-sync hooks {self.floor_cpu['hooks'] * 1000:.1f} ms; {cores} cores"
        )

    def floor_s(self, n: int, *, hooks: bool = True) -> float:
        cpu = self.floor_cpu["apply"] + (self.floor_cpu["hooks"] if hooks else 0.0)
        return n * cpu / (os.cpu_count() or 1)

    def cluster_env(self, mode: str) -> dict[str, str]:
        concurrency, batch = MODES[mode]
        return {
            **os.environ,
            **self.env,
            "PYTHONPATH": str(ROOT),
            "WHALEFALL_FETCH_CONCURRENCY": str(concurrency),
            "WHALEFALL_BATCH_SIZE": str(batch),
        }

    def session(
        self, instances: list[Any], what: str, cluster: Cluster, meter: CpuMeter | None = None
    ) -> dict[str, Any]:
        from django.db.models import Avg, Count, Q

        from sync.models import SyncSession
        from sync.services import sync_session_start

        if meter:
            meter.start()
        session = sync_session_start(instances=instances, sync_type="manual_batch", created_by=self.user)
        deadline = time.monotonic() + 3600
        while SyncSession.objects.filter(pk=session.pk, status="running").exists():
            if time.monotonic() > deadline:
                raise SystemExit(f"{what}: the session did not end within an hour")
            if cluster.proc.poll() is not None:
                raise SystemExit(f"{what}: the cluster exited ({cluster.proc.returncode}); see {cluster.log.name}")
            time.sleep(0.2)
        cpu = meter.stop() if meter else None
        session.refresh_from_db()
        wall = (session.completed_at - session.started_at).total_seconds()
        agg = session.records.aggregate(
            accounts=Avg("items_synced"),
            unchanged=Count("pk", filter=Q(details__inventory__catalog_unchanged=True)),
        )
        out = {
            "wall_s": round(wall, 2),
            "ok": session.successful_instances,
            "failed": session.failed_instances,
            "catalog_unchanged": agg["unchanged"],
            "accounts_per_instance": round(agg["accounts"] or 0, 1),
        }
        failures = list(session.records.filter(status="failed").values_list("instance_name", "error_message")[:3])
        print(f"  {what}: {json.dumps(out)}" + "".join(f"\n    failed: {n}: {m[:200]}" for n, m in failures))
        if cpu:
            out["cpu"] = cpu
            n = len(instances)
            print(
                f"    CPU s: machine busy {cpu['machine']:.1f} of {cpu['available']:.1f} "
                f"({cpu['machine'] / cpu['available']:.0%}); "
                + ", ".join(
                    f"{k} {cpu[k]:.1f} ({cpu[k] / n * 1000:.0f} ms/instance)"
                    for k in ("workers", "postgres", "mariadb", "proxies", "redis", "bench", "others")
                )
            )
        return out

    def run_mode(self, n: int, mode: str) -> None:
        from django.conf import settings

        concurrency, batch = MODES[mode]
        settings.WHALEFALL_BATCH_SIZE = batch  # this process enqueues: it decides the batches
        settings.WHALEFALL_FETCH_CONCURRENCY = concurrency
        settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": self.args.workers}
        from sync.services import batch_size

        label = f"{mode}{n}"
        print(
            f"{n} instances, mode {mode} (fetch concurrency {concurrency}, WHALEFALL_BATCH_SIZE {batch}: "
            f"{batch_size(n)} records a task, {self.args.workers} workers, {self.args.delay_ms * 2:g} ms round trip):"
        )
        instances = self.fleet(n, label)
        warm = self.fleet(2 * self.args.workers, f"warm-{label}")
        cluster = Cluster(self.cluster_env(mode), self.var_dir / f"qcluster-{label}.log")
        meter = CpuMeter({"workers": {cluster.proc.pid}, "proxies": {p.pid for p in self.proxies.procs}})
        try:
            self.session(warm, "warm-up", cluster)
            first = self.session(instances, "first sync", cluster, meter)
            again = self.session(instances, "no-change re-sync", cluster, meter)
            changed_accounts = self.fixture.toggle_one_percent()
            changed = self.session(
                instances, f"re-sync, {changed_accounts} accounts per server changed", cluster, meter
            )
            self.fixture.toggle_one_percent()  # back, so every mode sees the same servers
        finally:
            cluster.stop()
        self.results[(n, mode)] = {"first": first, "again": again, "changed": changed}
        floor = self.floor_s(n)
        print(
            f"  first sync / CPU floor ({floor:.1f} s with hooks, {self.floor_s(n, hooks=False):.1f} s apply only): "
            f"{first['wall_s'] / floor:.2f}x / {first['wall_s'] / self.floor_s(n, hooks=False):.2f}x; "
            f"no-change re-sync / first sync {again['wall_s'] / first['wall_s']:.0%}; "
            f"per instance: first {first['wall_s'] / n * 1000:.0f} ms, no-change {again['wall_s'] / n * 1000:.0f} ms, "
            f"1% changed {changed['wall_s'] / n * 1000:.0f} ms"
        )

    def summary(self, sizes: list[int], modes: list[str]) -> None:
        print("summary:")
        kinds = ("first", "again", "changed")
        names = {"first": "first sync", "again": "no-change re-sync", "changed": "1% changed re-sync"}
        for n in sizes:
            if "on" in modes and "off" in modes:
                on, off = self.results[(n, "on")], self.results[(n, "off")]
                print(
                    f"  {n} instances, off -> on: "
                    + "; ".join(
                        f"{names[k]} {off[k]['wall_s']:.1f} s -> {on[k]['wall_s']:.1f} s "
                        f"({off[k]['wall_s'] / on[k]['wall_s']:.2f}x)"
                        for k in kinds
                    )
                )
        for mode in modes:
            small, large = min(sizes), max(sizes)
            if small != large:
                per = {(n, k): self.results[(n, mode)][k]["wall_s"] / n * 1000 for n in (small, large) for k in kinds}
                growth = "; ".join(
                    f"{names[k]} {per[(large, k)]:.0f} ms vs {per[(small, k)]:.0f} ms "
                    f"({per[(large, k)] / per[(small, k)] - 1:+.0%})"
                    for k in kinds
                )
                print(
                    f"  mode {mode}, per-instance cost at {large} vs {small} "
                    f"(target within {TARGETS['linear_within']:.0%}): {growth}"
                )
                own = {(n, k): _own_cpu_ms(self.results[(n, mode)][k], n) for n in (small, large) for k in kinds}
                print(
                    f"  mode {mode}, own CPU per instance (workers, servers, proxies, redis; other load left out) at "
                    f"{large} vs {small}: "
                    + "; ".join(
                        f"{names[k]} {own[(large, k)]:.0f} ms vs {own[(small, k)]:.0f} ms "
                        f"({own[(large, k)] / own[(small, k)] - 1:+.0%})"
                        for k in kinds
                    )
                )
        if "on" in modes:
            large = max(sizes)
            on = self.results[(large, "on")]
            scale = 1000 / large
            print(
                f"  targets (mode on, {large} instances{'' if large == 1000 else ', scaled linearly to 1,000'}): "
                f"no-change {on['again']['wall_s'] * scale:.1f} s (target <= {TARGETS['no_change_1000_s']:g} s); "
                f"1% changed {on['changed']['wall_s'] * scale:.1f} s (target <= {TARGETS['changed_1000_s']:g} s); "
                f"first sync {on['first']['wall_s'] / self.floor_s(large):.2f}x the CPU floor with hooks, "
                f"{on['first']['wall_s'] / self.floor_s(large, hooks=False):.2f}x apply only "
                f"(target <= {TARGETS['first_over_floor']:g}x)"
            )


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt as exc:
        print(f"interrupted ({exc}); cleaned up", file=sys.stderr)
        raise SystemExit(130) from None
