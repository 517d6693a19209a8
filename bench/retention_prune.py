"""History retention at 1,000,000 change-log rows on PostgreSQL: archive and prune rows/s (prints figures).

Why: the retention run (exports/retention.py) must archive then delete a large history without one
huge transaction and without memory growing with the rows. This builds, in a throwaway PostgreSQL
database (``INSERT ... SELECT generate_series``, set-based), N accounts with an open snapshot and a
closed one each, and ``--changes`` change-log rows of which ``--old-share`` are older than the cutoff;
then runs ``history_prune(days=30)`` once and prints, per phase (archive = write + verify the gzip
CSV; delete = read the ids back and delete them batch by batch), the seconds and rows/s, the archive
sizes and the process's peak RSS growth. The machine is shared: compare figures of one run.

Usage: .venv/bin/python bench/retention_prune.py [--changes 1000000] [--accounts 100000]
       [--old-share 0.9] [--batch-size 5000] [--no-archive]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.history_scale import insert_select, pg_admin, setup_django  # noqa: E402


def rss_kb(field: str = "VmHWM") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def build(accounts: int, changes: int, old_share: float) -> None:
    from django.core.management import call_command

    from accountsync.models import AccountChangeLog, AccountPermission, InstanceAccount
    from instances.models import Credential, Instance

    call_command("migrate", verbosity=0)
    cred = Credential(name="bench-retention", username="monitor")
    cred.set_password("bench-only-not-a-secret")
    cred.save()
    n_instances = 100
    for i in range(n_instances):
        Instance.objects.create(name=f"ret-{i:03d}", db_type="mysql", host="127.0.0.1", port=1000 + i, credential=cred)
    insert_select(
        InstanceAccount,
        "instance_id, identity, username, host, kind, is_active, first_seen_at, last_seen_at",
        """
        SELECT i.id, format('''app_%s''@''%%''', g), format('app_%s', g), '%', 'user', true,
               now() - interval '2 years', now(){EXTRA}
        FROM instances_instance i CROSS JOIN generate_series(1, {PER}) g
        """,
        PER=max(1, accounts // n_instances),
    )
    snapshot = """jsonb_build_object('privileges', jsonb_build_array(
                     jsonb_build_object('scope', 'database:app', 'privilege', 'SELECT'),
                     jsonb_build_object('scope', 'database:app', 'privilege', 'INSERT')),
                   'roles', '[]'::jsonb, 'capabilities', '["WILDCARD_HOST"]'::jsonb)"""
    # one closed snapshot per account, replaced a year ago, and the open one (never pruned)
    for valid_to in ("now() - interval '1 year'", "NULL"):
        insert_select(
            AccountPermission,
            "account_id, instance_id, snapshot, digest, schema_version, collected_at, valid_from, valid_to",
            f"""
            SELECT a.id, a.instance_id, {snapshot}, md5(a.id::text) || md5(a.identity), 1,
                   now() - interval '2 years', now() - interval '2 years', {valid_to}{{EXTRA}}
            FROM accountsync_instanceaccount a
            """,
        )
    per_account = max(1, changes // InstanceAccount.objects.count())
    old_every = max(1, round(1 / max(1e-9, 1 - old_share))) if old_share < 1 else 0
    insert_select(
        AccountChangeLog,
        "instance_id, account_id, change_type, diff, summary, detected_at",
        f"""
        SELECT a.instance_id, a.id, 'privileges_changed',
               jsonb_build_array(jsonb_build_object('op', 'grant', 'scope', format('database:app_%s', k),
                                                    'privilege', 'SELECT')),
               format('+SELECT on database:app_%s for %s', k, a.username),
               CASE WHEN {old_every} > 0 AND (a.id + k) % {old_every} = 0 THEN now() - interval '1 day'
                    ELSE now() - interval '200 days' - k * interval '1 minute' END{{EXTRA}}
        FROM accountsync_instanceaccount a CROSS JOIN generate_series(1, {{K}}) k
        """,
        K=per_account,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--old-share", type=float, default=0.9)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--no-archive", action="store_true")
    args = parser.parse_args()
    database = f"wf_retention_{uuid.uuid4().hex[:8]}"
    pg_admin(f'CREATE DATABASE "{database}"')
    try:
        setup_django(database)
        from accountsync.models import AccountChangeLog, AccountPermission
        from exports import retention

        started = time.monotonic()
        build(args.accounts, args.changes, args.old_share)
        print(
            f"built {AccountChangeLog.objects.count()} change logs, {AccountPermission.objects.count()} snapshots "
            f"in {time.monotonic() - started:.1f} s",
            flush=True,
        )
        phases: dict[str, float] = {}

        def timed(name, func):
            def run(*a, **kw):
                t0 = time.monotonic()
                try:
                    return func(*a, **kw)
                finally:
                    phases[name] = phases.get(name, 0.0) + time.monotonic() - t0

            return run

        retention._archive_all = timed("archive", retention._archive_all)
        retention._delete_all = timed("delete", retention._delete_all)
        with tempfile.TemporaryDirectory() as folder:
            base = rss_kb("VmRSS")
            t0 = time.monotonic()
            result = retention.history_prune(
                days=30, archive_dir=folder, archive=not args.no_archive, batch_size=args.batch_size
            )
            total = time.monotonic() - t0
            peak = rss_kb("VmHWM")
            rows = sum(k.pruned for k in result.kinds)
            print(f"batch size {args.batch_size}, archive {'off' if args.no_archive else 'on'}")
            print(f"{'kind':<12} {'pruned':>9} {'archive MB':>10}")
            for k in result.kinds:
                size = Path(k.archive).stat().st_size / 1e6 if k.archive else 0.0
                print(f"{k.kind:<12} {k.pruned:>9} {size:>10.1f}")
            for name, seconds in phases.items():
                print(f"{name:<8} {seconds:7.1f} s  {rows / seconds:9.0f} rows/s")
            print(f"total    {total:7.1f} s  {rows / total:9.0f} rows/s")
            print(f"RSS before {base / 1024:.0f} MB, peak {peak / 1024:.0f} MB (+{(peak - base) / 1024:.0f} MB)")
            kept = AccountChangeLog.objects.count(), AccountPermission.objects.filter(valid_to__isnull=True).count()
            print(f"left: {kept[0]} recent change logs, {kept[1]} open snapshots")
    finally:
        from django.db import connections

        connections.close_all()
        pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
