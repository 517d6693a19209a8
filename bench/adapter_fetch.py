"""Adapter fetch vs the per-account loop, directly and through a 1 ms round-trip proxy (prints figures).

Why: on loopback a round trip costs ~75 µs, so a per-account query loop looks
cheap; one network hop away it costs N round trips. This creates N accounts on
the live servers (each with grants at three levels), then times on the very
same accounts, in the same run:

  adapter  get_adapter(db_type).fetch(target): a constant number of statements
  loop     what per-account tools do:
           MariaDB     SELECT user, host FROM mysql.user, then SHOW GRANTS FOR each account
           PostgreSQL  SELECT rolname FROM pg_roles, then per role one pg_roles attribute
                       query and one privileges query (database via has_database_privilege,
                       schema via the pg_namespace ACL, tables via
                       information_schema.role_table_grants, all filtered by that role)

Both sides open their own connection inside the timing, read every account of
the server (not only the bench's), and the loop only fetches rows (it does not
parse them), so the comparison favours the loop. On PostgreSQL both read only
the scratch database (the adapter through its `databases` option, the loop by
connecting to it), since per-role tools would otherwise need a loop per database
as well.

Usage: .venv/bin/python bench/adapter_fetch.py [--accounts 10000] [--db mysql|postgresql|both] [--delay-ms 0.5]
Everything created is prefixed `wfb<hex>_` and dropped at the end (also on Ctrl-C, SIGTERM or errors).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

import MySQLdb  # noqa: E402
import psycopg  # noqa: E402
from MySQLdb.constants import CLIENT  # noqa: E402
from psycopg import sql  # noqa: E402

from accountsync.adapters.base import ConnectionTarget, get_adapter  # noqa: E402
from bench.latency_proxy import LatencyProxy  # noqa: E402

HOST = "127.0.0.1"
MYSQL_PORT = int(os.environ.get("WHALEFALL_TEST_MARIADB_PORT") or 3306)  # scripts/_testservers.sh
PG_PORT = int(os.environ.get("WHALEFALL_TEST_PG_PORT") or 5432)
TABLES = 10
BATCH = 500


def _sigterm(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


# --- MariaDB ---------------------------------------------------------------------------------


def _my_connect(port: int, multi: bool = False, db: str = "") -> Any:
    flags = CLIENT.MULTI_STATEMENTS if multi else 0
    return MySQLdb.connect(
        host=HOST,
        port=port,
        user="root",
        password="",
        database=db,
        charset="utf8mb4",
        autocommit=True,
        client_flag=flags,
    )


def _my_multi(conn: Any, statements: list[str]) -> None:
    """Send statements as multi-statement batches: one round trip per BATCH statements."""
    cur = conn.cursor()
    for i in range(0, len(statements), BATCH):
        cur.execute(";\n".join(statements[i : i + BATCH]))
        while cur.nextset():
            pass
    cur.close()


def mysql_setup(prefix: str, n: int) -> None:
    """N users '<prefix>i'@'%', each with a global, a database and a table privilege."""
    conn = _my_connect(MYSQL_PORT, multi=True)
    try:
        db = f"{prefix}db"
        stmts = [f"CREATE DATABASE `{db}`"]
        stmts += [f"CREATE TABLE `{db}`.t{t} (id INT PRIMARY KEY)" for t in range(TABLES)]
        for i in range(n):
            user = f"'{prefix}{i}'@'%'"
            stmts += [
                f"CREATE USER {user}",
                f"GRANT PROCESS ON *.* TO {user}",
                f"GRANT SELECT ON `{db}`.* TO {user}",
                f"GRANT INSERT, UPDATE ON `{db}`.t{i % TABLES} TO {user}",
            ]
        _my_multi(conn, stmts)
    finally:
        conn.close()


def mysql_cleanup(prefix: str) -> None:
    conn = _my_connect(MYSQL_PORT, multi=True)
    try:
        cur = conn.cursor()
        cur.execute("SELECT user, host FROM mysql.user WHERE user LIKE %s", (prefix.replace("_", r"\_") + "%",))
        accounts = [f"'{u.decode() if isinstance(u, bytes) else u}'@'{h}'" for u, h in cur.fetchall()]
        stmts = [f"DROP USER {', '.join(accounts[i : i + 200])}" for i in range(0, len(accounts), 200)]
        stmts.append(f"DROP DATABASE IF EXISTS `{prefix}db`")
        _my_multi(conn, stmts)
    finally:
        conn.close()


def mysql_adapter(port: int, _prefix: str) -> tuple[int, int]:
    target = ConnectionTarget(name="bench-mariadb", db_type="mysql", host=HOST, port=port, username="root", password="")
    catalog = get_adapter("mysql").fetch(target)
    return len(catalog.accounts), catalog.round_trips


def mysql_loop(port: int, _prefix: str) -> tuple[int, int]:
    conn = _my_connect(port)
    try:
        cur = conn.cursor()
        cur.execute("SELECT user, host FROM mysql.user")
        accounts = cur.fetchall()
        trips = 1
        for user, host in accounts:
            cur.execute("SHOW GRANTS FOR %s@%s", (user, host))
            cur.fetchall()
            trips += 1
        return len(accounts), trips
    finally:
        conn.close()


# --- PostgreSQL ------------------------------------------------------------------------------


def _pg_connect(port: int, db: str = "postgres") -> Any:
    return psycopg.connect(host=HOST, port=port, user="postgres", dbname=db, autocommit=True)


def pg_setup(prefix: str, n: int) -> None:
    """N login roles, each with a database, a schema and a table privilege in a scratch database."""
    db = f"{prefix}db"
    with _pg_connect(PG_PORT) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    with _pg_connect(PG_PORT, db) as conn:
        conn.execute("CREATE SCHEMA bench")
        for t in range(TABLES):
            conn.execute(sql.SQL("CREATE TABLE bench.{} (id int PRIMARY KEY)").format(sql.Identifier(f"t{t}")))
        block = """
            DO $bench$
            DECLARE r text;
            BEGIN
              FOR i IN {lo}..{hi} LOOP
                r := {prefix} || i;
                EXECUTE format('CREATE ROLE %I LOGIN', r);
                EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', {db}, r);
                EXECUTE format('GRANT USAGE ON SCHEMA bench TO %I', r);
                EXECUTE format('GRANT SELECT, INSERT ON bench.%I TO %I', 't' || (i % {tables}), r);
              END LOOP;
            END
            $bench$
        """
        for lo in range(0, n, 2000):
            hi = min(n, lo + 2000) - 1
            conn.execute(
                sql.SQL(block).format(
                    lo=sql.Literal(lo),
                    hi=sql.Literal(hi),
                    prefix=sql.Literal(prefix),
                    db=sql.Literal(db),
                    tables=sql.Literal(TABLES),
                )
            )


def pg_cleanup(prefix: str) -> None:
    db = f"{prefix}db"
    with _pg_connect(PG_PORT) as conn:
        # Dropping the database removes its ACL and every schema/table grant, so the roles are then free.
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        pattern = prefix.replace("_", r"\_") + "%"
        while True:
            names = [
                r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s LIMIT 1000", (pattern,))
            ]
            if not names:
                break
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.SQL(", ").join(map(sql.Identifier, names))))


def pg_adapter(port: int, prefix: str) -> tuple[int, int]:
    target = ConnectionTarget(
        name="bench-postgresql",
        db_type="postgresql",
        host=HOST,
        port=port,
        username="postgres",
        password="",
        database_name="postgres",
        options={"databases": [f"{prefix}db"]},
    )
    catalog = get_adapter("postgresql").fetch(target)
    return len(catalog.accounts), catalog.round_trips


PG_ROLE_ATTRS = """
    SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin,
           rolreplication, rolbypassrls, rolconnlimit, rolvaliduntil
    FROM pg_roles WHERE rolname = %(r)s
"""
PG_ROLE_PRIVS = """
    WITH r AS (SELECT oid FROM pg_roles WHERE rolname = %(r)s)
    SELECT 'database', current_database(), p
      FROM r, unnest(ARRAY['CONNECT', 'CREATE', 'TEMPORARY']) p
     WHERE has_database_privilege(r.oid, current_database(), p)
    UNION ALL
    SELECT 'schema', n.nspname, p
      FROM r, pg_namespace n, unnest(ARRAY['USAGE', 'CREATE']) p
     WHERE n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> 'information_schema'
       AND has_schema_privilege(r.oid, n.oid, p)
    UNION ALL
    SELECT 'table', n.nspname || '.' || c.relname, p
      FROM r, pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
           unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) p
     WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f')
       AND n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> 'information_schema'
       AND has_table_privilege(r.oid, c.oid, p)
"""


def pg_loop(port: int, prefix: str) -> tuple[int, int]:
    with _pg_connect(port, f"{prefix}db") as conn:
        cur = conn.cursor()
        roles = [r[0] for r in cur.execute("SELECT rolname FROM pg_roles").fetchall()]
        trips = 1
        for role in roles:
            cur.execute(PG_ROLE_ATTRS, {"r": role})
            cur.fetchall()
            cur.execute(PG_ROLE_PRIVS, {"r": role})
            cur.fetchall()
            trips += 2
        return len(roles), trips


# --- driver ----------------------------------------------------------------------------------

DATABASES: dict[str, dict[str, Any]] = {
    "mysql": {
        "label": "MariaDB",
        "port": MYSQL_PORT,
        "setup": mysql_setup,
        "cleanup": mysql_cleanup,
        "adapter": mysql_adapter,
        "loop": mysql_loop,
    },
    "postgresql": {
        "label": "PostgreSQL",
        "port": PG_PORT,
        "setup": pg_setup,
        "cleanup": pg_cleanup,
        "adapter": pg_adapter,
        "loop": pg_loop,
    },
}


def _timed(fn: Callable[[int, str], tuple[int, int]], port: int, prefix: str) -> tuple[float, int, int]:
    start = time.perf_counter()
    accounts, trips = fn(port, prefix)
    return time.perf_counter() - start, accounts, trips


def run_one(db_type: str, n: int, delay_ms: float) -> dict[str, Any]:
    """Create, measure (direct then proxied), clean up; returns the figures."""
    spec = DATABASES[db_type]
    prefix = f"wfb{uuid.uuid4().hex[:6]}_"
    results: dict[str, Any] = {}
    try:
        start = time.perf_counter()
        spec["setup"](prefix, n)
        print(f"{spec['label']}: created {n} accounts x 3 grants ({prefix}*) in {time.perf_counter() - start:.1f}s")
        for label, make_port in (("direct", None), ("proxy", delay_ms)):
            if make_port is None:
                results[label] = {
                    "adapter": _timed(spec["adapter"], spec["port"], prefix),
                    "loop": _timed(spec["loop"], spec["port"], prefix),
                }
            else:
                with LatencyProxy(target_port=spec["port"], delay_ms=delay_ms) as proxy:
                    results[label] = {
                        "adapter": _timed(spec["adapter"], proxy.port, prefix),
                        "loop": _timed(spec["loop"], proxy.port, prefix),
                    }
        _print(spec["label"], n, delay_ms, results)
    finally:
        start = time.perf_counter()
        spec["cleanup"](prefix)
        print(f"{spec['label']}: cleaned up {prefix}* in {time.perf_counter() - start:.1f}s")
    return results


def _print(label: str, n: int, delay_ms: float, results: dict[str, Any]) -> None:
    print(f"{label}, {n} bench accounts:")
    for mode, title in (("direct", "direct (loopback)"), ("proxy", f"proxy ({delay_ms} ms each way)")):
        a_t, a_n, a_rt = results[mode]["adapter"]
        l_t, l_n, l_rt = results[mode]["loop"]
        print(f"  {title:<26} adapter {a_t:8.3f}s  {a_rt:>6} round trips  {a_n} accounts")
        print(
            f"  {'':<26} loop    {l_t:8.3f}s  {l_rt:>6} round trips  {l_n} accounts"
            f"  ({l_t / l_rt * 1000:.2f} ms per round trip)"
        )
        print(f"  {'':<26} ratio loop/adapter {l_t / a_t:6.1f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--db", choices=["mysql", "postgresql", "both"], default="both")
    parser.add_argument("--delay-ms", type=float, default=0.5, help="proxy delay per direction (default 0.5)")
    args = parser.parse_args(argv)
    if args.accounts < 1:
        parser.error("--accounts must be >= 1")
    signal.signal(signal.SIGTERM, _sigterm)
    for db_type in ("mysql", "postgresql") if args.db == "both" else (args.db,):
        run_one(db_type, args.accounts, args.delay_ms)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
