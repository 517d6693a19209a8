"""Per post-sync hook CPU and queries of a first sync and of a 1%-changed re-sync, memo off vs on, one process.

Issue #19: on a changed sync the findings hook and the classification hook both read every
open snapshot of the instance and work out effective access; the event's memo
(``PostSyncEvent.memo``, ``accountsync.effective_read.instance_effective``) lets the second
reuse what the first read. This bench registers N instances against the live MariaDB and
PostgreSQL (bench/fleet_sync.py's ``Fixture`` of throwaway accounts, no latency proxy, as
bench/resync_cpu.py does), then per instance fetches and applies the catalog and runs every
registered post-sync hook twice on the same committed apply:

- once inside a transaction that is rolled back afterwards (its writes vanish),
- once for real,

one of the two with the memo disabled ("off": a dict that stores nothing, so each hook reads
and computes on its own, which is what the code did before the memo), the other with it ("on").
Which mode is the rolled-back one alternates per instance, so both modes see the same starting
state, the same data and the same share of warm caches. The outcomes of the two runs are
compared (open findings, the facts digest, the assignments) and the bench fails if they differ.

Printed per hook and phase (first sync, then a re-sync after ``Fixture.toggle_one_percent``):
thread CPU per instance and queries per instance, for off and on, and the on/off ratio. The
machine is shared and has two cores: absolute times move between runs, ratios within one run
hold better. ``--profile`` adds the top of a cProfile (thread CPU) of the "on" hooks; both modes are profiled.

    .venv/bin/python bench/hooks_cpu.py [--instances 20] [--accounts 150] [--servers mysql,postgresql]
        [--profile]

Everything it creates (accounts, databases) is removed at the end, also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import signal
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fleet_sync import PG_PORT, Fixture, _drop_app_db, _term, direct_instances  # noqa: E402


class NoMemo(dict):  # type: ignore[type-arg]
    """A memo that remembers nothing: every hook reads and computes for itself (the code before the memo)."""

    def __setitem__(self, key: Any, value: Any) -> None:
        return None

    def setdefault(self, key: Any, default: Any = None) -> Any:
        return default


class _Rollback(Exception):
    pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=20, help="instances, spread over the servers")
    parser.add_argument("--accounts", type=int, default=150, help="throwaway accounts per server")
    parser.add_argument("--servers", default="mysql,postgresql")
    parser.add_argument("--profile", action="store_true", help="print the top of a cProfile of the 'on' hooks")
    args = parser.parse_args()
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]

    signal.signal(signal.SIGTERM, _term)
    tag = uuid.uuid4().hex[:8]
    app_db = f"wf_bench_hooks_{tag}"
    var_dir = tempfile.mkdtemp(prefix="wf-bench-hooks-")
    os.environ.update(
        {
            "WHALEFALL_VAR_DIR": var_dir,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{PG_PORT}/{app_db}",
        }
    )
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    import psycopg

    fixture = Fixture(prefix=f"wfk{tag[:6]}", accounts=args.accounts, servers=servers)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, var_dir, ignore_errors=True)
        with psycopg.connect(host="127.0.0.1", port=PG_PORT, user="postgres", autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {app_db}")
        stack.callback(_drop_app_db, app_db)
        stack.callback(fixture.drop)
        fixture.create()

        import logging

        import django

        django.setup()
        logging.disable(logging.WARNING)  # the hooks log every opened finding
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        Run(args, fixture, servers).run()
    return 0


class Run:
    def __init__(self, args: argparse.Namespace, fixture: Fixture, servers: list[str]) -> None:
        from config.registry import post_sync_hooks

        self.args = args
        self.fixture = fixture
        self.hooks = list(post_sync_hooks())
        # both modes are profiled (the profiler's cost would skew the ratio otherwise); the 'on' one is printed
        self.profiles = {mode: cProfile.Profile(time.thread_time) for mode in ("off", "on")}
        self.instances = direct_instances(fixture, servers, args.instances, "hooks")
        self.self_check()

    def self_check(self) -> None:
        """The memo field exists and is what the hooks read: otherwise "off" and "on" would be the same code."""
        from sync.hooks import PostSyncEvent

        names = {f for f in PostSyncEvent.__dataclass_fields__}
        if "memo" not in names:
            raise SystemExit("PostSyncEvent has no memo: nothing to compare")

    def hooks_run(self, event: Any, cpu: dict[str, float], queries: dict[str, int], profile: Any) -> None:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        for hook in self.hooks:
            t0 = time.thread_time()
            with CaptureQueriesContext(connection) as captured:
                if profile is not None:
                    profile.enable()
                hook.func(event)
                if profile is not None:
                    profile.disable()
            cpu[hook.name] = cpu.get(hook.name, 0.0) + time.thread_time() - t0
            queries[hook.name] = queries.get(hook.name, 0) + len(captured.captured_queries)

    def outcome(self, instance: Any) -> tuple[Any, ...]:
        from classification.models import ClassificationAssignment, InstanceFacts
        from findings.models import Finding

        return (
            sorted(
                Finding.objects.filter(instance=instance, is_open=True).values_list(
                    "account_id", "rule_code", "severity", "detail"
                ),
                key=repr,
            ),
            InstanceFacts.objects.filter(instance=instance).values_list("digest", flat=True).first(),
            sorted(
                ClassificationAssignment.objects.filter(instance=instance).values_list(
                    "account_id", "classification_id", "source", "rule_id"
                )
            ),
        )

    def phase(self, label: str) -> None:
        from django.db import transaction

        from accountsync.adapters.base import ConnectionTarget, get_adapter
        from accountsync.services import account_sync_apply
        from sync.hooks import PostSyncEvent

        cpu: dict[str, dict[str, float]] = {"off": {}, "on": {}}
        queries: dict[str, dict[str, int]] = {"off": {}, "on": {}}
        changed = 0
        for i, instance in enumerate(self.instances):
            catalog = get_adapter(instance.db_type).fetch(ConnectionTarget.from_instance(instance)).finalize()
            result = account_sync_apply(instance=instance, catalog=catalog)
            instance.refresh_from_db()
            changed += len(result.changed_account_ids)
            rolled, real = ("off", "on") if i % 2 == 0 else ("on", "off")
            outcomes = {}
            for mode in (rolled, real):
                as_dict = result.as_dict()
                event = PostSyncEvent(
                    instance=instance,
                    session_id=None,
                    result=as_dict,
                    changed_account_ids=frozenset(result.changed_account_ids),
                    catalog_unchanged=bool(as_dict.get("details", {}).get("catalog_unchanged")),
                    memo=NoMemo() if mode == "off" else {},
                )
                profile = self.profiles[mode] if self.args.profile else None
                if mode == rolled:
                    try:
                        with transaction.atomic():
                            self.hooks_run(event, cpu[mode], queries[mode], profile)
                            outcomes[mode] = self.outcome(instance)
                            raise _Rollback
                    except _Rollback:
                        pass
                else:
                    self.hooks_run(event, cpu[mode], queries[mode], profile)
                    outcomes[mode] = self.outcome(instance)
            if outcomes["off"] != outcomes["on"]:
                raise SystemExit(f"{instance.name}: outcome with the memo differs from without it ({label})")
        n = len(self.instances)
        print(f"== {label}: {n} instances, {changed / n:.1f} changed accounts per instance (outcomes equal)")
        print(f"  {'hook':16s} {'off ms':>8s} {'on ms':>8s} {'on/off':>7s} {'off q':>7s} {'on q':>7s}")
        totals = {"off": 0.0, "on": 0.0}
        tq = {"off": 0, "on": 0}
        for hook in self.hooks:
            off, on = cpu["off"][hook.name] / n * 1000, cpu["on"][hook.name] / n * 1000
            qoff, qon = queries["off"][hook.name] / n, queries["on"][hook.name] / n
            totals["off"] += off
            totals["on"] += on
            tq["off"] += queries["off"][hook.name]
            tq["on"] += queries["on"][hook.name]
            ratio = on / off if off else float("nan")
            print(f"  {hook.name:16s} {off:8.1f} {on:8.1f} {ratio:6.2f}x {qoff:7.1f} {qon:7.1f}")
        ratio = totals["on"] / totals["off"] if totals["off"] else float("nan")
        print(
            f"  {'all hooks':16s} {totals['off']:8.1f} {totals['on']:8.1f} {ratio:6.2f}x "
            f"{tq['off'] / n:7.1f} {tq['on'] / n:7.1f}"
        )

    def run(self) -> None:
        print(
            f"per instance, thread CPU of each post-sync hook (PostgreSQL app db, {os.cpu_count()} cores, "
            "shared machine: compare within a run)"
        )
        self.phase("first sync")
        self.fixture.toggle_one_percent()
        self.phase("re-sync, 1% of accounts changed")
        if self.args.profile:
            out = io.StringIO()
            pstats.Stats(self.profiles["on"], stream=out).sort_stats("cumulative").print_stats(40)
            print(out.getvalue()[:8000])


if __name__ == "__main__":
    sys.exit(main())
