"""Bytes of sync-record details per Oracle sync, before and after server facts were stored apart.

Why: issue #19 part 2, "records stay small". Oracle grants PUBLIC tens of thousands of
privileges on its own objects; a sync record used to copy them into its details on every
sync. This syncs one Oracle instance (the recorded 19c dictionary, tests/fixtures/oracle,
with --public extra default grants to PUBLIC) --syncs times through the real engine and
prints, per sync, the bytes of the record's details as stored now and as the old shape
(the same details with the facts copied in), and how many facts versions were written.

Usage: .venv/bin/python bench/record_size.py [--public 31842] [--syncs 3]
The app database is a throwaway SQLite file; only `oracledb.connect` is replaced.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TMP = Path(tempfile.mkdtemp(prefix="wf-bench-"))
os.environ["DATABASE_URL"] = f"sqlite:///{TMP / 'bench.sqlite3'}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from accountsync.models import InstanceServerFacts  # noqa: E402
from instances.models import Credential, Instance  # noqa: E402
from sync.models import SyncInstanceRecord  # noqa: E402
from sync.services import sync_accounts  # noqa: E402
from tests.accountsync.oracle_rows import load, recorded_server  # noqa: E402


class _Patch:
    """The one thing recorded_server needs of pytest's monkeypatch."""

    def setattr(self, target: Any, name: str, value: Any) -> None:
        setattr(target, name, value)


def _bytes(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--public", type=int, default=31842, help="extra Oracle default grants to PUBLIC")
    parser.add_argument("--syncs", type=int, default=3)
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    fixture = load("catalog_19c.json")
    fixture["views"]["DBA_TAB_PRIVS"]["rows"] += [
        ["PUBLIC", "SYS", f"BENCH_VIEW_{i:06d}", "SYS", "SELECT", "NO", "NO", "NO", "VIEW", "NO"]
        for i in range(args.public)
    ]
    recorded_server(_Patch(), fixture)
    credential = Credential(name="bench-oracle", username="monitor")
    credential.set_password("")
    credential.save()
    instance = Instance.objects.create(
        name="bench-oracle",
        db_type="oracle",
        host="127.0.0.1",
        port=1521,
        database_name="ORCLPDB1",
        credential=credential,
    )
    print(f"Oracle instance, {args.public} extra default PUBLIC grants, {args.syncs} syncs")
    print(f"{'sync':>4}  {'details before (bytes)':>22}  {'details after (bytes)':>21}  {'facts versions':>14}")
    total_before = total_after = 0
    for n in range(1, args.syncs + 1):
        result = sync_accounts(instance=instance, sync_type="scheduled_task")
        if not result["success"]:
            raise SystemExit(result["message"])
        record = SyncInstanceRecord.objects.filter(instance=instance).latest("id")
        facts = InstanceServerFacts.objects.get(pk=record.details["server_facts"]["id"]).facts
        before, after = _bytes({**record.details, **facts}), _bytes(record.details)
        total_before += before
        total_after += after
        versions = InstanceServerFacts.objects.filter(instance=instance).count()
        print(f"{n:>4}  {before:>22}  {after:>21}  {versions:>14}")
    stored = sum(
        _bytes(f) for f in InstanceServerFacts.objects.filter(instance=instance).values_list("facts", flat=True)
    )
    print(
        f"total over {args.syncs} syncs: before {total_before} bytes in records; after {total_after} bytes in records "
        f"+ {stored} bytes of facts stored once"
    )


if __name__ == "__main__":
    try:
        main()
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
