"""Sync engine at scale on the live MariaDB and PostgreSQL (a benchmark that prints figures, not a test).

Why: the engine's claims (O(1) remote round trips, O(N/batch) local queries,
no writes on an unchanged re-sync) are cheap to state and easy to lose; this
prints them next to two references measured in the same run: the floor (raw
catalog queries plus one executemany of the same rows into a scratch table)
and the seed's way (SHOW GRANTS per account plus per-row ORM writes).

Usage: .venv/bin/python bench/sync_scale.py [--accounts 10000] [--only mysql|postgresql]
The local app database is a throwaway SQLite file; users/roles are created with
a unique prefix and dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
MARIADB_PORT = int(os.environ.get("WHALEFALL_TEST_MARIADB_PORT") or 3306)  # scripts/_testservers.sh
PG_PORT = int(os.environ.get("WHALEFALL_TEST_PG_PORT") or 5432)
TMP = Path(tempfile.mkdtemp(prefix="wf-bench-"))
os.environ["DATABASE_URL"] = f"sqlite:///{TMP / 'bench.sqlite3'}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from accountsync.adapters.base import ConnectionTarget, get_adapter  # noqa: E402
from accountsync.models import AccountChangeLog, AccountPermission, InstanceAccount  # noqa: E402
from accountsync.services import account_sync_apply  # noqa: E402
from instances.models import Credential, Instance  # noqa: E402

CHUNK = 500


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_instance(db_type: str, port: int, username: str, options: dict[str, Any]) -> Instance:
    cred = Credential(name=f"bench-{db_type}-{uuid.uuid4().hex[:6]}", username=username)
    cred.set_password("")
    cred.save()
    return Instance.objects.create(
        name=f"bench-{db_type}-{uuid.uuid4().hex[:6]}",
        db_type=db_type,
        host="127.0.0.1",
        port=port,
        credential=cred,
        database_name="postgres" if db_type == "postgresql" else "",
        options=options,
    )


def rows_written(instance: Instance) -> tuple[int, int, int]:
    return (
        InstanceAccount.objects.filter(instance=instance).count(),
        AccountPermission.objects.filter(instance=instance).count(),
        AccountChangeLog.objects.filter(instance=instance).count(),
    )


def engine_sync(instance: Instance) -> dict[str, Any]:
    before = rows_written(instance)
    rss0 = rss_mb()
    t0 = time.perf_counter()
    catalog = get_adapter(instance.db_type).fetch(ConnectionTarget.from_instance(instance)).finalize()
    t1 = time.perf_counter()
    connection.queries_log.clear()  # the log keeps 9,000 queries: an earlier seed's-way run would hide ours
    with CaptureQueriesContext(connection) as ctx:
        result = account_sync_apply(instance=instance, catalog=catalog, force=True)
    t2 = time.perf_counter()
    after = rows_written(instance)
    assert result.success, result.message
    return {
        "accounts": result.synced_count,
        "remote_round_trips": catalog.round_trips,
        "fetch_s": round(t1 - t0, 3),
        "apply_s": round(t2 - t1, 3),
        "total_s": round(t2 - t0, 3),
        "local_queries": len(ctx.captured_queries),
        "rows_written": {
            "accounts+updates": result.added_count + result.modified_count + result.removed_count,
            "new_snapshots": after[1] - before[1],
            "new_change_logs": after[2] - before[2],
        },
        "peak_rss_growth_mb": round(rss_mb() - rss0, 1),
        "catalog_unchanged": bool(result.details["inventory"].get("catalog_unchanged")),
    }


def floor(raw_queries: list[str], connect: Any) -> float:
    """Raw catalog reads plus one executemany of one row per account/grant: what no sync can beat."""
    t0 = time.perf_counter()
    conn = connect()
    cur = conn.cursor()
    rows: list[tuple[str]] = []
    for sql in raw_queries:
        cur.execute(sql)
        rows.extend((json.dumps(r, default=str),) for r in cur.fetchall())
    conn.close()
    scratch = sqlite3.connect(TMP / "floor.sqlite3")
    scratch.execute("CREATE TABLE IF NOT EXISTS t (row TEXT)")
    scratch.executemany("INSERT INTO t VALUES (?)", rows)
    scratch.commit()
    scratch.close()
    return round(time.perf_counter() - t0, 3)


def seed_way_mysql(prefix: str, port: int = MARIADB_PORT) -> float:
    """SHOW GRANTS per account and one ORM write per row, committed one by one (the seed's pattern)."""
    import MySQLdb

    instance = make_instance("mysql", port, "root", {})
    t0 = time.perf_counter()
    conn = MySQLdb.connect(host="127.0.0.1", port=port, user="root", password="")
    cur = conn.cursor()
    cur.execute("SELECT User, Host FROM mysql.user WHERE User LIKE %s", (prefix + "%",))
    for user, host in cur.fetchall():
        cur.execute(f"SHOW GRANTS FOR '{user}'" + (f"@'{host}'" if host else ""))
        grants = [g[0] for g in cur.fetchall()]
        now = django.utils.timezone.now()
        acc = InstanceAccount.objects.create(
            instance=instance,
            identity=f"'{user}'@'{host}'",
            username=user,
            host=host,
            first_seen_at=now,
            last_seen_at=now,
        )
        AccountPermission.objects.create(
            account=acc,
            instance=instance,
            snapshot={"grants": grants},
            digest="0" * 64,
            collected_at=now,
            valid_from=now,
        )
    conn.close()
    return round(time.perf_counter() - t0, 3)


def bench_mysql(n: int, prefix: str) -> None:
    import MySQLdb

    admin = MySQLdb.connect(host="127.0.0.1", port=MARIADB_PORT, user="root", password="", autocommit=True)
    cur = admin.cursor()
    db = f"{prefix}_db"
    users = [f"'{prefix}_{i:06d}'@'%'" for i in range(n)]
    roles = [f"{prefix}_r{i}" for i in range(3)]
    try:
        t0 = time.perf_counter()
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE TABLE {db}.t (id int)")
        for r in roles:
            cur.execute(f"CREATE ROLE {r}")
            cur.execute(f"GRANT SELECT ON {db}.* TO {r}")
        for i in range(0, n, CHUNK):
            chunk = ", ".join(users[i : i + CHUNK])
            cur.execute(f"CREATE USER {chunk}")
            cur.execute(f"GRANT SELECT, INSERT ON {db}.* TO {chunk}")
            cur.execute(f"GRANT UPDATE ON {db}.t TO {chunk}")
            cur.execute(f"GRANT {roles[(i // CHUNK) % 3]} TO {chunk}")
        print(f"mysql: created {n} users with 3 grants and a role each in {time.perf_counter() - t0:.1f}s")
        instance = make_instance("mysql", MARIADB_PORT, "root", {})
        first = engine_sync(instance)
        again = engine_sync(instance)
        instance.catalog_digest = ""  # the same no-change re-sync without the unchanged-rows shortcut
        again_full = engine_sync(instance)
        tables = ("global_priv", "db", "tables_priv", "columns_priv", "procs_priv", "roles_mapping")
        raw = [f"SELECT * FROM mysql.{t}" for t in tables]
        flo = floor(raw, lambda: MySQLdb.connect(host="127.0.0.1", port=MARIADB_PORT, user="root", password=""))
        seed = seed_way_mysql(prefix)
        report("mysql", first, again, flo, seed, again_full)
        from latency_proxy import LatencyProxy

        with LatencyProxy(target_port=MARIADB_PORT, delay_ms=0.5) as proxy:
            proxied = engine_sync(make_instance("mysql", proxy.port, "root", {}))
            seed_proxied = seed_way_mysql(prefix, proxy.port)
        print(
            f"mysql via 1 ms RTT proxy: engine first sync {proxied['total_s']}s, seed's way {seed_proxied}s "
            f"-> {seed_proxied / proxied['total_s']:.1f}x faster"
        )
    finally:
        for i in range(0, n, CHUNK):
            cur.execute(f"DROP USER IF EXISTS {', '.join(users[i : i + CHUNK])}")
        for r in roles:
            cur.execute(f"DROP ROLE IF EXISTS {r}")
        cur.execute(f"DROP DATABASE IF EXISTS {db}")
        admin.close()


def bench_postgresql(n: int, prefix: str) -> None:
    import psycopg

    from accountsync.adapters import postgresql as pg

    admin = psycopg.connect(host="127.0.0.1", port=PG_PORT, user="postgres", dbname="postgres", autocommit=True)
    db = f"{prefix}_db"
    try:
        t0 = time.perf_counter()
        admin.execute(f"CREATE DATABASE {db}")
        admin.execute(
            f"DO $$ BEGIN FOR i IN 0..2 LOOP EXECUTE format('CREATE ROLE %I', '{prefix}_r' || i); END LOOP; "
            f"FOR i IN 0..{n - 1} LOOP EXECUTE format('CREATE ROLE %I LOGIN IN ROLE %I', "
            f"'{prefix}_' || lpad(i::text, 6, '0'), '{prefix}_r' || (i % 3)); END LOOP; END $$"
        )
        with psycopg.connect(host="127.0.0.1", port=PG_PORT, user="postgres", dbname=db, autocommit=True) as dbc:
            # one table per 500 grantees: a single ACL cannot hold 10,000 entries (8 kB row limit)
            dbc.execute(
                f"DO $$ DECLARE r record; BEGIN FOR i IN 0..{n // 500} LOOP EXECUTE format('CREATE TABLE %I (id int)', "
                f"'t' || i); END LOOP; FOR r IN SELECT rolname, row_number() OVER (ORDER BY rolname) AS k "
                "FROM pg_roles "
                f"WHERE rolname LIKE '{prefix}\\_%' LOOP EXECUTE format('GRANT SELECT, INSERT, UPDATE ON %I TO %I', "
                "'t' || (r.k / 500), r.rolname); END LOOP; END $$"
            )
        print(f"postgresql: created {n} roles with 3 grants and a role each in {time.perf_counter() - t0:.1f}s")
        instance = make_instance("postgresql", PG_PORT, "postgres", {"databases": [db]})
        first = engine_sync(instance)
        again = engine_sync(instance)
        instance.catalog_digest = ""
        again_full = engine_sync(instance)
        raw = [pg.ROLES_SQL, pg.MEMBERS_SQL, pg.DATABASES_SQL]
        flo = floor(raw, lambda: psycopg.connect(host="127.0.0.1", port=PG_PORT, user="postgres", dbname="postgres"))
        flo += floor(
            [pg.SCHEMAS_SQL, pg.RELATIONS_SQL],
            lambda: psycopg.connect(host="127.0.0.1", port=PG_PORT, user="postgres", dbname=db),
        )
        report("postgresql", first, again, round(flo, 3), None, again_full)
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.execute(
            f"DO $$ DECLARE r text; BEGIN FOR r IN SELECT rolname FROM pg_roles WHERE rolname LIKE '{prefix}\\_%' "
            "ORDER BY rolname DESC LOOP EXECUTE format('DROP ROLE %I', r); END LOOP; END $$"
        )
        admin.close()


def report(
    name: str, first: dict[str, Any], again: dict[str, Any], flo: float, seed: float | None, again_full: dict[str, Any]
) -> None:
    print(f"{name} first sync : {json.dumps(first)}")
    print(f"{name} re-sync    : {json.dumps(again)}")
    print(f"{name} re-sync without the unchanged-rows shortcut: {json.dumps(again_full)}")
    print(f"{name} floor      : {flo}s  -> first sync = {first['total_s'] / flo:.1f}x floor")
    if seed is not None:
        print(
            f"{name} seed's way : {seed}s -> engine first sync {seed / first['total_s']:.1f}x faster (direct, no proxy)"
        )
    print(
        f"{name} re-sync/first: {again['total_s'] / first['total_s']:.0%} "
        f"(without the shortcut {again_full['total_s'] / first['total_s']:.0%}; apply only "
        f"{again_full['apply_s'] / first['apply_s']:.0%})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--only", choices=["mysql", "postgresql"])
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    prefix = "wfb" + uuid.uuid4().hex[:6]
    if args.only in (None, "mysql"):
        bench_mysql(args.accounts, prefix)
    if args.only in (None, "postgresql"):
        bench_postgresql(args.accounts, prefix)


if __name__ == "__main__":
    main()
