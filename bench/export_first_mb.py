"""Seconds to the first megabyte of every export, admin action and API, on a big PostgreSQL history.

Why a separate benchmark: #19 part 3 wants every export to start streaming (its first megabyte)
within a second at 1,000,000 accounts and 10,000,000 change-log rows. ``bench/history_scale.py``
builds that database (``--scale 1 --keep``) and times the API exports among every list page; this
one measures only the exports, each export kind through both entry points (the API's ``export/``
endpoint and the admin action on the whole change list, "select all"), and prints the plan
PostgreSQL really chose for the export's cursor (``EXPLAIN DECLARE ...``: a cursor is planned for
its first rows, ``cursor_tuple_fraction``, unlike a plain ``EXPLAIN SELECT``).

The ``before`` column runs the same exports with the fixes of #19 part 3 switched off (the read
JIT-compiled, every column of the joined rows loaded, the effective-access rows computed per
instance up front), so one run shows before and after side by side; ``jit-on``, ``all-columns``
and ``per-instance`` switch off one fix each, to show what each one buys. Each export kind and
variant runs in a fresh process, after one warm-up request there (a running server has its
modules imported and its connection open); a figure is the median of ``--repeat`` first
megabytes, with that run's own CPU seconds: on a shared machine the wall time also holds the
waits for a core, the CPU time does not.

Usage: .venv/bin/python bench/export_first_mb.py --reuse wf_hist_full [--variants before,jit-on,after]
           [--repeat 3] [--only accounts,findings] [--explain] [--analyze]
       .venv/bin/python bench/export_first_mb.py --build 0.1 --database wf_h4_small   (build one, kept)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ADMIN = "/admin/"
# (label, entry, path or admin changelist, action or format)
CASES: list[tuple[str, str, str, str]] = [
    ("accounts", "api", "/api/v1/accounts/export/", "csv"),
    ("accounts", "api", "/api/v1/accounts/export/", "json"),
    ("accounts", "admin", "accountsync/instanceaccount", "export_accounts_csv"),
    ("accounts", "admin", "accountsync/instanceaccount", "export_accounts_json"),
    ("permissions", "api", "/api/v1/permissions/export/", "csv"),
    ("permissions", "admin", "accountsync/instanceaccount", "export_permissions_csv"),
    ("effective_access", "api", "/api/v1/effective-access/export/", "csv"),
    ("effective_access", "admin", "accountsync/instanceaccount", "export_effective_access_csv"),
    ("findings", "api", "/api/v1/findings/export/", "csv"),
    ("findings", "admin", "findings/finding", "export_findings_csv"),
    ("change_logs", "api", "/api/v1/change-logs/export/", "ndjson"),
    ("change_logs", "admin", "accountsync/accountchangelog", "export_change_logs_csv"),
]


def setup_django(database: str) -> None:
    from bench.history_scale import PG

    os.environ["DATABASE_URL"] = f"postgres://{PG['user']}@{PG['host']}:{PG['port']}/{database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver")
    import django

    django.setup()


# each fix of #19 part 3 and the switch that turns it off (module, attribute)
FIXES = {
    "jit-on": ("exports.writers", "NO_JIT"),
    "all-columns": ("exports.columns", "LEAN_JOINS"),
    "per-instance": ("exports.columns", "EFFECTIVE_LAZY"),
}
VARIANTS = ("before", "after", *FIXES)


def switch_off(variant: str) -> None:
    """``before``: every fix off (the exports as they were); a name of ``FIXES``: that one only; ``after``: none."""
    import importlib

    for fix, (module, attribute) in FIXES.items():
        if variant in ("before", fix):
            setattr(importlib.import_module(module), attribute, False)


def explain(sql: str, params: Any, *, analyze: bool) -> list[str]:
    """The plan of the export's read as its cursor gets it (DECLARE: planned for the first rows)."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        import exports.writers

        exports.writers.without_jit(cursor)
        if analyze:  # runs the whole query: minutes on the change log
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        else:
            cursor.execute("EXPLAIN DECLARE bench_export NO SCROLL CURSOR FOR " + sql, params)
        return [row[0] for row in cursor.fetchall()]


def child(
    label: str, entry: str, where: str, what: str, variant: str, *, repeat: int, show_plan: bool, analyze: bool
) -> dict:
    """One export in this fresh process: seconds to the first MB (and to the first byte), its plan."""
    import logging

    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    logging.disable(logging.WARNING)
    switch_off(variant)
    client = Client()
    client.force_login(User.objects.get(username="hist-admin"))
    if entry == "api":
        model_pk = None
        request = lambda: client.get(f"{where}?format={what}")  # noqa: E731
    else:
        from django.apps import apps

        model_pk = apps.get_model(*where.split("/")).objects.order_by().values_list("pk", flat=True).first()
        request = lambda: client.post(  # noqa: E731
            f"{ADMIN}{where}/",
            {"action": what, "select_across": "1", "index": "0", "_selected_action": [model_pk]},
        )
    # a running server has its modules imported and its connection open: one warm-up request (its
    # first piece only) keeps a fresh process's one-time costs out of the figure
    warm = request()
    next(iter(warm.streaming_content), None)
    warm.close()
    runs: list[tuple[float, float]] = []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as ctx:
            started, cpu = time.perf_counter(), time.process_time()
            response = request()
            got = 0
            for chunk in response.streaming_content:
                got += len(chunk)
                if got >= 1_000_000:
                    runs.append((time.perf_counter() - started, time.process_time() - cpu))
                    break
            response.close()
    first_mb, first_mb_cpu = sorted(runs)[len(runs) // 2] if len(runs) == repeat else (None, None)
    out: dict[str, Any] = {
        "status": response.status_code,
        "first_mb_s": first_mb,
        "first_mb_cpu_s": first_mb_cpu,
        "bytes": got,
        "queries": len(ctx.captured_queries),
    }
    if show_plan:
        # the export's read: the statement of the server-side cursor (psycopg sends it as DECLARE ... FOR SELECT)
        read = next((q["sql"] for q in ctx.captured_queries if q["sql"].startswith("DECLARE ")), None)
        if read is not None:
            out["plan"] = explain(read[read.index(" CURSOR FOR ") + len(" CURSOR FOR ") :], None, analyze=analyze)
    return out


def build(scale: float, database: str) -> None:
    from bench.history_scale import build as build_history
    from bench.history_scale import pg_admin

    pg_admin(f'CREATE DATABASE "{database}"')
    setup_django(database)
    print(f"building at scale {scale} in {database} (kept) ...", flush=True)
    print(build_history(scale), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reuse", help="an existing database built by bench/history_scale.py --keep")
    parser.add_argument("--build", type=float, help="build a database at this scale first (needs --database)")
    parser.add_argument("--database")
    parser.add_argument(
        "--variants",
        default="before,after",
        help=f"comma-separated columns, of: {', '.join(VARIANTS)} (jit-on: every fix but the JIT one, and so on)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="first megabytes timed per figure (the median)")
    parser.add_argument("--only", help="comma-separated kinds (accounts, permissions, ...)")
    parser.add_argument("--explain", action="store_true", help="print the plan of every export's read")
    parser.add_argument("--analyze", action="store_true", help="EXPLAIN ANALYZE instead (runs the whole read)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        setup_django(args.reuse)
        label, entry, where, what, variant = args.child
        plan = {"show_plan": args.explain, "analyze": args.analyze}
        print(json.dumps(child(label, entry, where, what, variant, repeat=args.repeat, **plan)))
        return 0
    if args.build:
        if not args.database:
            parser.error("--build needs --database")
        build(args.build, args.database)
        return 0
    if not args.reuse:
        parser.error("--reuse NAME (or --build SCALE --database NAME)")
    only = set(args.only.split(",")) if args.only else None
    variants = tuple(args.variants.split(","))
    if not set(variants) <= set(VARIANTS):
        parser.error(f"--variants: choose among {', '.join(VARIANTS)}")
    print(f"first MB of every export on {args.reuse} (each in a fresh process; shared, noisy machine)")
    print(f"first MB: wall seconds (this process's own CPU seconds), median of {args.repeat}, after a warm-up request")
    print(f"{'kind':<17} {'entry':<6} {'as':<28} " + " ".join(f"{v:>16}" for v in variants))
    worst = 0.0
    for label, entry, where, what in CASES:
        if only and label not in only:
            continue
        figures = []
        plans = []
        for variant in variants:
            cmd = [sys.executable, __file__, "--reuse", args.reuse, "--repeat", str(args.repeat)]
            cmd += ["--child", label, entry, where, what, variant]
            if args.explain and variant == variants[-1]:
                cmd.append("--analyze" if args.analyze else "--explain")
            done = subprocess.run(cmd, check=True, capture_output=True, text=True)
            r = json.loads(done.stdout.strip().splitlines()[-1])
            if r["status"] != 200:
                figures.append(f"{'HTTP ' + str(r['status']):>16}")
                continue
            mb = r["first_mb_s"]
            shown = f"{mb:.2f} ({r['first_mb_cpu_s']:.2f})" if mb is not None else "<1MB total"
            figures.append(f"{shown:>16}")
            if variant == variants[-1]:
                worst = max(worst, mb or 0.0)
            plans += r.get("plan", [])
        print(f"{label:<17} {entry:<6} {what:<28} " + " ".join(figures), flush=True)
        for line in plans:
            print("      " + line)
    print(f"slowest first MB ({variants[-1]}): {worst:.2f} s (target 1 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
