"""History at scale (#19 part 3): every admin list and API list answers fast on a big PostgreSQL history.

Why a benchmark and not a test: the target is about a database of ten million change-log rows,
which takes minutes to build. This builds one in a throwaway PostgreSQL database with
``INSERT ... SELECT generate_series`` (set-based, no Python per row), then times every admin list
page (unfiltered, searched, each filter's first choice, a deep page) and every API list endpoint,
for an admin and for a Viewer, and the first megabyte of every export. It prints p50/p95 per page
and user, and the EXPLAIN ANALYZE of the slowest query of every page whose p95 is over the target.

At ``--scale 1`` (the issue's size): 200 instances, 1,000,000 accounts (one open snapshot each),
10,000,000 change-log rows over a year, 2,000 sessions x 200 records (400,000), 300,000 findings.

Usage: .venv/bin/python bench/history_scale.py [--scale 0.01] [--repeat 5] [--target-ms 300]
       [--database NAME --keep]   (keep the built database; --reuse NAME measures an existing one)
       [--only index,grant_admin] (measure only the admin index (`index`), the exports (`exports`)
                                   and the pages whose URL contains one of the other words)

Measuring the admin index also times its per-day selectors alone (the change chart also the old way,
one GROUP BY over 30 days), and the change panel once with its daily rollup emptied first
(dashboard.services.change_counts_reset: the first load after an upgrade) and then warm; the /admin/
pages are then timed warm.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG = {
    "host": "127.0.0.1",
    "port": int(os.environ.get("WHALEFALL_TEST_PG_PORT", "5432")),
    "user": "postgres",
}


def pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
        conn.execute(sql)


def setup_django(database: str) -> None:
    os.environ["DATABASE_URL"] = f"postgres://{PG['user']}@{PG['host']}:{PG['port']}/{database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver")
    import django

    django.setup()


def sql(statement: str, **numbers: int) -> None:
    """Run one statement; ``{NAME}`` is replaced by an int (no driver placeholders: the SQL is full of %)."""
    from django.db import connection

    for name, value in numbers.items():
        statement = statement.replace("{" + name + "}", str(int(value)))
    with connection.cursor() as cursor:
        cursor.execute(statement)


def insert_select(model: Any, columns: str, select: str, **numbers: int) -> None:
    """``INSERT INTO <model's table> (columns) SELECT ...``, plus every other NOT NULL column at its default.

    Why: other changes add columns to these tables; a bench that names only the columns it means
    keeps working (the defaults come from the model, as Django's migrations drop database defaults).
    """
    import json

    from django.db import connection
    from psycopg import sql as psql

    given = {c.strip() for c in columns.split(",")}
    extra_cols, extra_vals = [], []
    for field in model._meta.concrete_fields:
        if field.column in given or field.null or field.primary_key:
            continue
        default = field.get_default()
        if isinstance(default, (dict, list)):
            literal = psql.Literal(json.dumps(default)).as_string(connection.connection) + "::jsonb"
        else:
            literal = psql.Literal(default).as_string(connection.connection)
        extra_cols.append(field.column)
        extra_vals.append(literal)
    cols = ", ".join([columns, *extra_cols])
    body = select.replace("{EXTRA}", "".join(", " + v for v in extra_vals))
    sql(f"INSERT INTO {model._meta.db_table} ({cols}) {body}", **numbers)


def build(scale: float) -> dict[str, int]:
    """The history, set-based; returns the row counts it made."""
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command

    from accountsync.models import AccountChangeLog, AccountPermission, InstanceAccount
    from findings.models import Finding
    from instances.models import Credential, Instance
    from sync.models import SyncInstanceRecord, SyncSession
    from sync.roles import VIEWERS

    call_command("migrate", verbosity=0)
    n_instances = max(2, int(200 * scale))
    per_instance = max(10, int(1_000_000 * scale) // n_instances)
    changes_per_account = 10
    n_sessions = max(2, int(2000 * scale))
    cred = Credential(name="bench-history", username="monitor")
    cred.set_password("bench-only-not-a-secret")
    cred.save()
    for i in range(n_instances):
        Instance.objects.create(
            name=f"hist-{i:03d}",
            db_type=("mysql", "postgresql", "sqlserver", "oracle")[i % 4],
            host="127.0.0.1",
            port=1000 + i,
            credential=cred,
            environment=("production", "staging", "development")[i % 3],
        )
    started = time.monotonic()
    insert_select(
        InstanceAccount,
        (
            "instance_id, identity, username, host, kind, is_active, is_superuser, is_locked, attributes, "
            "first_seen_at, last_seen_at, deactivated_at"
        ),
        """
        SELECT i.id,
               CASE WHEN i.db_type = 'mysql' THEN format('''app_user_%s''@''10.%s.%s.%%''', g, g % 7, g % 250)
                    ELSE format('app_user_%s', g) END,
               format('app_user_%s', g),
               CASE WHEN i.db_type = 'mysql' THEN format('10.%s.%s.%%', g % 7, g % 250) END,
               CASE WHEN g % 20 = 0 THEN 'role' ELSE 'user' END,
               g % 50 <> 0, g % 100 = 1, g % 30 = 2,
               jsonb_build_object('plugin', 'mysql_native_password', 'last_login', '2026-10-01'),
               now() - interval '365 days', now() - (g % 3) * interval '1 day',
               CASE WHEN g % 50 = 0 THEN now() - interval '30 days' END{EXTRA}
        FROM instances_instance i CROSS JOIN generate_series(1, {PER}) g
        """,
        PER=per_instance,
    )
    insert_select(
        AccountPermission,
        "account_id, instance_id, snapshot, digest, schema_version, collected_at, valid_from, valid_to",
        """
        SELECT a.id, a.instance_id,
               jsonb_build_object(
                 'schema_version', 1,
                 'attributes', a.attributes,
                 'privileges', jsonb_build_array(
                    jsonb_build_object('scope', format('database:app_%s', a.id % 40), 'privilege', 'SELECT',
                                       'grantable', a.id % 17 = 0, 'effect', 'GRANT'),
                    jsonb_build_object('scope', format('object:app_%s.public.orders', a.id % 40),
                                       'privilege', 'UPDATE', 'grantable', false, 'effect', 'GRANT')),
                 'roles', '[]'::jsonb,
                 'capabilities', CASE WHEN a.is_superuser THEN '["SUPERUSER"]'::jsonb ELSE '[]'::jsonb END),
               md5(a.id::text) || md5(a.identity), 1, now(), now() - interval '30 days', NULL{EXTRA}
        FROM accountsync_instanceaccount a
        """,
    )
    insert_select(
        AccountChangeLog,
        "instance_id, account_id, session_id, change_type, diff, summary, detected_at",
        """
        SELECT a.instance_id, a.id, NULL,
               (ARRAY['added', 'privileges_changed', 'attributes_changed', 'roles_changed', 'removed'])[1 + k % 5],
               jsonb_build_array(jsonb_build_object('op', 'grant', 'scope', format('database:app_%s', k),
                                                    'privilege', 'SELECT')),
               format('+SELECT on database:app_%s for %s', k, a.username),
               now() - ((a.id * 7 + k * 37) % 365) * interval '1 day' - (a.id % 86400) * interval '1 second'{EXTRA}
        FROM accountsync_instanceaccount a CROSS JOIN generate_series(1, {K}) k
        """,
        K=changes_per_account,
    )
    insert_select(
        SyncSession,
        (
            "session_id, sync_type, sync_category, status, started_at, completed_at, total_instances, "
            "successful_instances, failed_instances, gapped_instances, created_at, updated_at"
        ),
        """
        SELECT md5('s' || s)::uuid, 'scheduled_task', 'account', 'completed',
               now() - s * interval '4 hours', now() - s * interval '4 hours' + interval '3 minutes',
               {N}, {N} - (s % 3), s % 3, 0, now() - s * interval '4 hours', now() - s * interval '4 hours'{EXTRA}
        FROM generate_series(1, {S}) s
        """,
        N=n_instances,
        S=n_sessions,
    )
    insert_select(
        SyncInstanceRecord,
        (
            "session_id, instance_id, instance_name, sync_category, status, started_at, completed_at, "
            "items_synced, items_created, items_updated, items_deleted, coverage_gaps, error_kind, "
            "error_message, details, attempt, queue_attempts, created_at, updated_at"
        ),
        """
        SELECT s.id, i.id, i.name, 'account',
               CASE WHEN (s.id + i.id) % 97 = 0 THEN 'failed' ELSE 'completed' END,
               s.started_at, s.completed_at, {PER}, 0, 1, 0, 0,
               CASE WHEN (s.id + i.id) % 97 = 0 THEN 'connection' ELSE '' END,
               CASE WHEN (s.id + i.id) % 97 = 0 THEN 'could not connect' ELSE '' END,
               '{}'::jsonb, 1, 1, s.started_at, s.completed_at{EXTRA}
        FROM sync_sessions s CROSS JOIN instances_instance i
        """,
        PER=per_instance,
    )
    insert_select(
        Finding,
        (
            "instance_id, account_id, rule_code, severity, detail, first_seen_at, resolved_at, is_open, "
            "session_id, resolved_session_id"
        ),
        """
        SELECT a.instance_id, a.id,
               (ARRAY['SUPERUSER', 'GRANT_OPTION', 'WILDCARD_HOST', 'PASSWORD_NEVER_EXPIRES'])[1 + a.id % 4],
               (ARRAY['critical', 'high', 'medium', 'low'])[1 + a.id % 4],
               '{}'::jsonb, now() - (a.id % 300) * interval '1 day',
               CASE WHEN a.id % 3 = 0 THEN now() - (a.id % 30) * interval '1 day' END,
               a.id % 3 <> 0, NULL, NULL{EXTRA}
        FROM accountsync_instanceaccount a WHERE a.id % 10 < 3
        """,
    )
    sql("ANALYZE")
    User.objects.create_superuser("hist-admin", "admin@example.com", "bench-only-pw")
    viewer = User.objects.create_user("hist-viewer", "viewer@example.com", "bench-only-pw", is_staff=True)
    viewer.groups.add(Group.objects.get(name=VIEWERS))
    from django.db import connection

    with connection.cursor() as cursor:
        counts = {}
        for table in (
            "accountsync_instanceaccount",
            "accountsync_accountchangelog",
            "sync_instance_records",
            "findings_finding",
        ):
            cursor.execute(f"SELECT count(*) FROM {table}")
            counts[table] = cursor.fetchone()[0]
    counts["build_seconds"] = int(time.monotonic() - started)
    return counts


ADMIN_LISTS = [
    "/admin/accountsync/instanceaccount/",
    "/admin/accountsync/accountchangelog/",
    "/admin/findings/finding/",
    "/admin/sync/syncsession/",
    "/admin/sync/syncinstancerecord/",
    "/admin/audit/auditevent/",
]
SEARCHES = ["app_user_12", "host=10.0.*", "@"]
API_LISTS = [
    "/api/v1/instances/",
    "/api/v1/accounts/",
    "/api/v1/change-logs/",
    "/api/v1/findings/",
    "/api/v1/sync-sessions/",
    "/api/v1/audit-events/",
    "/api/v1/model-history/",
]
EXPORTS = [
    "/api/v1/accounts/export/?format=csv",
    "/api/v1/change-logs/export/?format=ndjson",
    "/api/v1/permissions/export/?format=csv",
    "/api/v1/findings/export/?format=csv",
    "/api/v1/effective-access/export/?format=csv",
]
FILTER_LINK = re.compile(r'<a href="(\?[^"]+)"[^>]*>')


def filter_urls(client: Any, base: str) -> list[str]:
    """The first real choice of every filter in the page's sidebar, as the admin links it."""
    html = client.get(base).content.decode()
    start = html.find('id="changelist-filter"')
    if start < 0:
        return []
    seen: dict[str, str] = {}
    for href in FILTER_LINK.findall(html[start:]):
        href = href.replace("&amp;", "&")
        key = href[1:].split("=")[0]
        if key in ("q", "o", "p", "_facets") or key in seen:
            continue
        seen[key] = base + href
    return list(seen.values())


def timed(client: Any, url: str, repeat: int) -> tuple[list[float], int, list[dict[str, Any]]]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times: list[float] = []
    status = 0
    queries: list[dict[str, Any]] = []
    for i in range(repeat):
        with CaptureQueriesContext(connection) as ctx:
            t0 = time.perf_counter()
            response = client.get(url)
            if getattr(response, "streaming", False):
                for _ in response.streaming_content:
                    pass
            times.append((time.perf_counter() - t0) * 1000)
        status = response.status_code
        if i == repeat - 1:
            queries = list(ctx.captured_queries)
    return times, status, queries


def explain(query: str) -> str:
    from django.db import connection

    if not query.lstrip().upper().startswith("SELECT"):
        return ""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + query)
        return "\n".join("      " + row[0] for row in cursor.fetchall()[:18])


def first_megabyte(client: Any, url: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    response = client.get(url)
    got = 0
    for chunk in response.streaming_content:
        got += len(chunk)
        if got >= 1_000_000:
            break
    seconds = time.perf_counter() - t0
    response.close()
    return seconds, got


def selected(url: str, only: list[str] | None) -> bool:
    """Whether `--only` asks for `url`: `index` is the admin index, other words match inside the URL."""
    if not only:
        return True
    return any(
        (word == "index" and url == "/admin/") or (word not in ("index", "exports") and word in url) for word in only
    )


def dashboard_timings(repeat: int) -> None:
    """The admin index's per-day selectors alone, and the change chart cold (rollup emptied) then warm."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from dashboard import selectors, services
    from dashboard.panels import change_panel

    def run(label: str, func: Any, times: int) -> None:
        ms = []
        for _ in range(times):
            with CaptureQueriesContext(connection) as ctx:
                t0 = time.perf_counter()
                func()
                ms.append((time.perf_counter() - t0) * 1000)
        print(f"  {label:44} p50 {statistics.median(ms):7.0f}  max {max(ms):7.0f} ms  q={len(ctx.captured_queries)}")

    print("\n== dashboard selectors alone (ms)")
    run("syncs_per_day (one GROUP BY, 30 days)", selectors.syncs_per_day, repeat)
    run(
        "changes: old way, one GROUP BY over 30 days",
        lambda: selectors._per_day(
            selectors.AccountChangeLog.objects,
            field_name="detected_at",
            key="change_type",
            keys=selectors.CHANGE_TYPES,
            days=selectors.DAYS,
            now=None,
            tz=None,
        ),
        repeat,
    )
    services.change_counts_reset()
    run("change panel, rollup cold (reset first)", change_panel, 1)
    run("change panel, rollup warm", change_panel, repeat)
    print(
        "  (the rollup stays filled: the /admin/ figures below are the steady state, a first load adds the cold line)"
    )


def measure(repeat: int, target_ms: float, only: list[str] | None = None) -> int:
    import logging

    from django.contrib.auth.models import User
    from django.test import Client

    from accountsync.models import InstanceAccount
    from sync.models import SyncSession

    logging.disable(logging.WARNING)  # 403s of the Viewer and 404s of short lists are expected, not news
    latest = SyncSession.objects.order_by("-started_at").values_list("session_id", flat=True).first()
    slow = 0
    deep = InstanceAccount.objects.order_by().count() // 100 > 500
    if selected("/admin/", only):
        dashboard_timings(repeat)
    for username in ("hist-admin", "hist-viewer"):
        client = Client()
        client.force_login(User.objects.get(username=username))
        urls = ["/admin/"]
        for base in ADMIN_LISTS:
            urls.append(base)
            urls += [f"{base}?q={q}" for q in SEARCHES]
            if deep:
                urls.append(f"{base}?p=500")
            urls += filter_urls(client, base)
        for base in API_LISTS:
            urls += [base, f"{base}?search=app_user_12", f"{base}?page=500"]
        urls.append(f"/api/v1/sync-records/?session={latest}")
        urls = [url for url in urls if selected(url, only)]
        print(f"\n== {username}: {len(urls)} pages, {repeat} runs each (p50 / p95 ms, queries)")
        for url in urls:
            times, status, queries = timed(client, url, repeat)
            p50 = statistics.median(times)
            p95 = sorted(times)[max(0, round(0.95 * len(times)) - 1)]
            mark = "SLOW" if p95 > target_ms else "ok"
            print(f"  {mark:4} {p50:8.0f} {p95:8.0f}  q={len(queries):3}  {status}  {url}")
            if p95 > target_ms:
                slow += 1
                worst = max(queries, key=lambda q: float(q.get("time") or 0), default=None)
                if worst:
                    print(f"      slowest query {float(worst['time']) * 1000:.0f} ms: {worst['sql'][:300]}")
                    print(explain(worst["sql"]))
        for url in EXPORTS if not only or "exports" in only else []:
            seconds, got = first_megabyte(client, url)
            mark = "SLOW" if seconds > 1 else "ok"
            print(f"  {mark:4} first {got / 1e6:.1f} MB in {seconds * 1000:.0f} ms  {url}")
            slow += seconds > 1
    return slow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--target-ms", type=float, default=300)
    parser.add_argument("--database")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--reuse")
    parser.add_argument("--only", help="comma-separated: index, exports, or words of the URLs to measure")
    args = parser.parse_args()
    database = args.reuse or args.database or f"wf_history_{uuid.uuid4().hex[:8]}"
    if not args.reuse:
        pg_admin(f'CREATE DATABASE "{database}"')
    try:
        setup_django(database)
        if not args.reuse:
            print(f"building at scale {args.scale} in {database} ...", flush=True)
            print(build(args.scale), flush=True)
        only = [word.strip() for word in args.only.split(",") if word.strip()] if args.only else None
        slow = measure(args.repeat, args.target_ms, only)
        print(f"\n{slow} pages or exports over target (p95 > {args.target_ms:.0f} ms, first MB > 1 s)")
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep and not args.reuse:
            pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
