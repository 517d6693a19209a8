"""Streamed exports at 100,000 rows: rows/s and peak memory (a benchmark that prints figures, not a test).

Why: exports promise flat memory (a generator over ``.iterator(chunk_size)``,
never a list of rows or a whole document). This builds 100,000 accounts over
50 instances (each with a current snapshot and a change log entry) in a
throwaway SQLite file, then exports 10,000 and 100,000 rows of each kind and
format through ``exports.http.export_response`` (the StreamingHttpResponse the
API returns), consuming it like a WSGI server would. Each export runs in a
fresh child process, so its peak RSS (VmHWM) is its own: flat memory means
the 100,000-row figure is about the 10,000-row one.

Usage: .venv/bin/python bench/export_stream.py [--accounts 100000] [--instances 50]
       [--database-url postgres://...]   (an existing, empty database instead of SQLite)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CASES = [("accounts", "csv"), ("accounts", "json"), ("permissions", "csv"), ("change_logs", "ndjson")]


def vm_kb(field: str) -> int:
    """VmRSS / VmHWM of this process in KiB, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def setup_django(database_url: str, *, migrate: bool) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)


def build(n_accounts: int, n_instances: int) -> None:
    """Accounts (via bench/account_search.py's builder) plus one change log entry each."""
    from django.utils import timezone

    from accountsync.models import AccountChangeLog, InstanceAccount
    from bench.account_search import populate

    populate(n_accounts, n_instances)
    now = timezone.now()
    batch: list[AccountChangeLog] = []
    for account_id, instance_id in InstanceAccount.objects.values_list("pk", "instance_id").iterator(5000):
        batch.append(
            AccountChangeLog(
                instance_id=instance_id,
                account_id=account_id,
                change_type="added",
                summary="added",
                detected_at=now,
                diff=[],
            )
        )
        if len(batch) >= 5000:
            AccountChangeLog.objects.bulk_create(batch)
            batch.clear()
    AccountChangeLog.objects.bulk_create(batch)


def child(kind: str, fmt: str, limit_instances: int, *, hold: bool = False) -> dict[str, float]:
    """Export in this (fresh) process and report rows, bytes, seconds, the first megabyte's seconds and memory.

    ``hold``: read outside a transaction, as before #19 (config.db.read_in_transaction bypassed), so
    one run shows what the transaction buys on PostgreSQL (a WITH HOLD cursor computes everything
    before the first row).
    """
    if hold:
        import exports.writers

        exports.writers.read_in_transaction = lambda rows: rows
    from accountsync.models import AccountChangeLog, InstanceAccount
    from exports.columns import current_permissions
    from exports.http import export_response
    from instances.models import Instance

    instances = list(Instance.objects.order_by("pk").values_list("pk", flat=True)[:limit_instances])
    accounts = InstanceAccount.objects.filter(instance_id__in=instances)
    queryset = {
        "accounts": accounts,
        "permissions": current_permissions(accounts),
        "change_logs": AccountChangeLog.objects.filter(instance_id__in=instances),
    }[kind]
    base_rss = vm_kb("VmRSS")
    started = time.perf_counter()
    response = export_response(kind, queryset, fmt)
    n_bytes = n_lines = 0
    first_mb = None
    for chunk in response.streaming_content:
        n_bytes += len(chunk)
        n_lines += chunk.count(b"\n")
        if first_mb is None and n_bytes >= 1_000_000:
            first_mb = time.perf_counter() - started
    seconds = time.perf_counter() - started
    rows = n_lines - {"csv": 1, "json": 2}.get(fmt, 0)  # the header; the "[" line and the closing "]"
    return {
        "rows": rows,
        "bytes": n_bytes,
        "seconds": seconds,
        "first_mb_s": first_mb if first_mb is not None else seconds,
        "base_mb": base_rss / 1024,
        "peak_mb": vm_kb("VmHWM") / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--database-url")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        setup_django(args.database_url, migrate=False)
        kind, fmt, limit, hold = args.child
        print(json.dumps(child(kind, fmt, int(limit), hold=hold == "hold")))
        return 0
    with tempfile.TemporaryDirectory(prefix="wf-bench-export-") as tmp:
        url = args.database_url or f"sqlite:///{tmp}/export.sqlite3"
        setup_django(url, migrate=True)
        started = time.perf_counter()
        build(args.accounts, args.instances)
        print(f"built {args.accounts} accounts on {args.instances} instances in {time.perf_counter() - started:.1f} s")
        print(
            f"{'kind':<12} {'fmt':<7} {'read':<11} {'rows':>8} {'MB out':>7} {'s':>6} {'1st MB s':>8} "
            f"{'rows/s':>8} {'base MB':>8} {'peak MB':>8} {'peak-base':>9}"
        )
        # "hold": outside a transaction, as before (only differs on PostgreSQL)
        reads = ("transaction", "hold") if url.startswith("postgres") else ("transaction",)
        for kind, fmt in CASES:
            for share in (args.instances // 10, args.instances):
                for read in reads:
                    out = subprocess.run(
                        [sys.executable, __file__, "--database-url", url, "--child", kind, fmt, str(share), read],
                        check=True,
                        capture_output=True,
                        text=True,
                    )
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    print(
                        f"{kind:<12} {fmt:<7} {read:<11} {r['rows']:>8} {r['bytes'] / 1e6:>7.1f} "
                        f"{r['seconds']:>6.2f} {r['first_mb_s']:>8.2f} {r['rows'] / r['seconds']:>8.0f} "
                        f"{r['base_mb']:>8.1f} {r['peak_mb']:>8.1f} {r['peak_mb'] - r['base_mb']:>9.1f}"
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
