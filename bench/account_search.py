"""Cross-instance account search at 100,000 accounts (a benchmark that prints figures, not a test).

Why: ``accountsync.selectors.account_search`` promises one index-served query
plan per mode whatever the fleet's size. This builds 100,000 accounts with a
current snapshot each over 50 instances of all four database types, then
times what ``GET /api/v1/accounts/search/`` runs per request (the count and a
first page of 20, with the snapshot subquery) for each mode, and prints the
EXPLAIN of each, on a throwaway SQLite file and on a scratch PostgreSQL
database (``whalefall_bench_search``, dropped at the end, also on Ctrl-C).

Usage: .venv/bin/python bench/account_search.py [--accounts 100000] [--instances 50]
       [--repeat 200] [--only sqlite|postgresql]
Each backend runs in its own child process (Django's settings read
DATABASE_URL once).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PG_DB = "whalefall_bench_search"
PG_PORT = int(os.environ.get("WHALEFALL_TEST_PG_PORT") or 5432)  # scripts/_testservers.sh
PG_ADMIN = {"host": "127.0.0.1", "port": PG_PORT, "user": "postgres", "dbname": "postgres"}
DB_TYPES = ("mysql", "postgresql", "sqlserver", "oracle")
MODES = [
    ("exact", "app_rw", "exact"),
    ("prefix", "app_*", "auto"),
    ("prefix-mode", "svc12", "prefix"),
    ("user@host", "app_rw@%", "auto"),
    ("host", "host=%", "auto"),
    ("host-prefix", "host=10.1.*", "auto"),
]


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def populate(n_accounts: int, n_instances: int) -> list[Any]:
    """``n_accounts`` accounts over ``n_instances`` instances, each with an open snapshot.

    Names: ``app_rw``/``app_ro`` on every instance (the "where does it exist"
    case), the rest ``svc<k>_<j>``; MySQL accounts get hosts '%', 'localhost'
    or a 10.<x>.% subnet. Rows are bulk inserted: the bench measures reads.
    """
    from django.utils import timezone

    from accountsync.models import AccountPermission, InstanceAccount
    from instances.models import Credential, Instance

    cred = Credential(name="bench-search", username="monitor")
    cred.set_password("bench-only-not-a-secret")
    cred.save()
    instances = [
        Instance.objects.create(
            name=f"bench-{i:03d}",
            db_type=DB_TYPES[i % 4],
            host="127.0.0.1",
            port=1000 + i,
            credential=cred,
            environment=("production", "staging")[i % 2],
        )
        for i in range(n_instances)
    ]
    now = timezone.now()
    per_instance = n_accounts // n_instances
    hosts = ["%", "localhost", "10.1.%", "10.2.%"]
    snapshot = {
        "schema_version": 1,
        "privileges": [
            {"scope": "database:app", "privilege": p, "grantable": False, "effect": "GRANT"}
            for p in ("SELECT", "INSERT")
        ],
        "roles": [],
        "capabilities": [],
    }
    batch: list[InstanceAccount] = []

    def flush() -> None:
        created = InstanceAccount.objects.bulk_create(batch, batch_size=2000)
        AccountPermission.objects.bulk_create(
            [
                AccountPermission(
                    account=a,
                    instance_id=a.instance_id,
                    snapshot=snapshot,
                    digest="0" * 64,
                    collected_at=now,
                    valid_from=now,
                )
                for a in created
            ],
            batch_size=2000,
        )
        batch.clear()

    for inst in instances:
        mysql = inst.db_type == "mysql"
        for j in range(per_instance):
            name = ("app_rw", "app_ro")[j] if j < 2 else f"svc{j % 5000}_{j}"
            host = hosts[j % len(hosts)] if mysql else None
            identity = f"'{name}'@'{host}'" if mysql else name
            batch.append(
                InstanceAccount(
                    instance=inst, identity=identity, username=name, host=host, first_seen_at=now, last_seen_at=now
                )
            )
            if len(batch) >= 10000:
                flush()
    if batch:
        flush()
    return instances


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def run_backend(database_url: str, label: str, n_accounts: int, n_instances: int, repeat: int) -> None:
    setup_django(database_url)
    from django.db import connection

    from accountsync.models import InstanceAccount
    from accountsync.selectors import account_search

    started = time.perf_counter()
    populate(n_accounts, n_instances)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # both backends: fresh statistics, as autovacuum / a real database would have
    total = InstanceAccount.objects.count()
    print(f"\n== {label}: {total} accounts on {n_instances} instances (built in {time.perf_counter() - started:.1f} s)")
    print(f"{'mode':<12} {'q':<12} {'matches':>8} {'p50 ms':>8} {'p95 ms':>8}  indexes in the page's plan")
    for name, q, mode in MODES:
        qs = account_search(q=q, mode=mode)
        timings = []
        matches = 0
        for _ in range(repeat):
            t = time.perf_counter()
            matches = qs.count()
            page = list(qs[:20])
            timings.append((time.perf_counter() - t) * 1000)
        assert matches and page, (q, mode)
        plan = qs[:20].explain()
        line = ", ".join(dict.fromkeys(re.findall(r"\b(acct_\w+|accountsync_one_open_snapshot)\b", plan))) or plan[:60]
        print(
            f"{name:<12} {q:<12} {matches:>8} {percentile(timings, 50):>8.2f} {percentile(timings, 95):>8.2f}  "
            f"{line[:90]}"
        )


def postgres_create() -> None:
    import psycopg

    with psycopg.connect(**PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DB}")
        conn.execute(f"CREATE DATABASE {PG_DB}")


def postgres_drop() -> None:
    import psycopg

    with psycopg.connect(**PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        label = "PostgreSQL" if args.child.startswith("postgres") else "SQLite"
        run_backend(args.child, label, args.accounts, args.instances, args.repeat)
        return 0
    common = ["--accounts", str(args.accounts), "--instances", str(args.instances), "--repeat", str(args.repeat)]
    status = 0
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory(prefix="wf-bench-search-") as tmp:
            url = f"sqlite:///{tmp}/search.sqlite3"
            status |= subprocess.call([sys.executable, __file__, *common, "--child", url])
    if args.only in (None, "postgresql"):
        postgres_create()
        try:
            url = f"postgres://postgres@127.0.0.1:{PG_PORT}/{PG_DB}"
            status |= subprocess.call([sys.executable, __file__, *common, "--child", url])
        finally:
            postgres_drop()
    return status


if __name__ == "__main__":
    sys.exit(main())
