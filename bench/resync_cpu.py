"""CPU time and queries of a no-change re-sync, in one process: the findings skip off ("before") and on ("after").

Issue #19: a no-change re-sync of 1,000 instances is CPU-bound (bench/fleet_sync.py), so what
counts is the CPU one instance's re-sync costs a worker and the statements it sends to
WhaleFall's database. This bench registers N instances against the live MariaDB and PostgreSQL
(directly, no latency proxy, as fleet_sync.py's floor sample does, with its `Fixture` of
throwaway accounts), syncs them once, then runs no-change re-sync sessions exactly as a worker
does (`sync_batch_execute` over the session's records: claim, lease, heartbeat, fetch, apply,
post-sync hooks, outcome), alternating the modes round by round so that a drift of the shared
machine hits both:

- before: the findings hook re-evaluates every account (`findings.services._skippable` forced
  to None, which is what the code did before the skip);
- after: the skip as shipped.

``--compare statements`` compares the record's own statements instead (issue #19 part 1), the
findings skip on in both modes:

- before: the record path as it was (``_legacy_statements``): a separate fetch-phase heartbeat
  after ``mark_running``, the unchanged apply's fence transaction (lease UPDATE, record
  ``SELECT … FOR UPDATE``, digest re-read, completing UPDATE), the alerts hook's savepoint;
- after: as shipped (``mark_running`` checks the session, one completing UPDATE carries the
  fence and the digest check, no savepoint when the alerts hook wrote nothing).

Printed per instance: CPU (time.process_time of the whole process, all threads), queries to
WhaleFall's database (every connection, every thread), and the ratio after/before. The
machine is shared: absolute times move between runs, ratios within one run hold better.

    .venv/bin/python bench/resync_cpu.py [--instances 40] [--accounts 150] [--rounds 3]
        [--servers mysql,postgresql] [--fetch-concurrency 4] [--tables] [--compare findings|statements]

Everything it creates (accounts, databases) is removed at the end, also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fleet_sync import PG_PORT, Fixture, _drop_app_db, _term, direct_instances  # noqa: E402


class QueryCounter:
    """Counts the statements of every connection opened from now on (each thread has its own)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.total = 0
        self.tables: Counter[str] = Counter()
        self.keep_tables = False

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        with self.lock:
            self.total += 1
            if self.keep_tables:
                self.tables[_shape(sql)] += 1
        return execute(sql, params, many, context)

    def install(self) -> None:
        from django.db import connections
        from django.db.backends.signals import connection_created

        def attach(sender: Any, connection: Any, **kw: Any) -> None:
            if self not in connection.execute_wrappers:
                connection.execute_wrappers.append(self)

        connection_created.connect(attach, weak=False)
        for conn in connections.all():
            if conn.connection is not None:
                attach(None, conn)

    def reset(self) -> None:
        with self.lock:
            self.total = 0
            self.tables.clear()


def _shape(sql: str) -> str:
    """'SELECT findings_refreshstate' / 'UPDATE sync_syncinstancerecord': the verb and the first table."""
    words = sql.replace('"', " ").replace("`", " ").split()
    verb = words[0].upper() if words else "?"
    if verb in ("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT", "SET"):
        return verb
    if verb == "UPDATE" and len(words) > 1:  # its table comes first; a FROM may follow in a subquery
        return f"{verb} {words[1]}"
    for marker in ("FROM", "INTO"):
        for i, word in enumerate(words[:-1]):
            if word.upper() == marker:
                return f"{verb} {words[i + 1]}"
    return verb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=40, help="instances, spread over the servers")
    parser.add_argument("--accounts", type=int, default=150, help="throwaway accounts per server")
    parser.add_argument("--rounds", type=int, default=3, help="before/after pairs, alternated")
    parser.add_argument("--servers", default="mysql,postgresql")
    parser.add_argument("--fetch-concurrency", type=int, default=4)
    parser.add_argument("--tables", action="store_true", help="print the statements per instance by table")
    parser.add_argument(
        "--compare",
        choices=("findings", "statements"),
        default="findings",
        help="findings: the findings skip off/on; statements: the record's statements before/after issue #19 part 1",
    )
    args = parser.parse_args()
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]

    signal.signal(signal.SIGTERM, _term)
    tag = uuid.uuid4().hex[:8]
    app_db = f"wf_bench_resync_{tag}"
    var_dir = tempfile.mkdtemp(prefix="wf-bench-resync-")
    os.environ.update(
        {
            "WHALEFALL_VAR_DIR": var_dir,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{PG_PORT}/{app_db}",
            "WHALEFALL_FETCH_CONCURRENCY": str(args.fetch_concurrency),
        }
    )
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    import psycopg

    fixture = Fixture(prefix=f"wfr{tag[:6]}", accounts=args.accounts, servers=servers)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, var_dir, ignore_errors=True)
        with psycopg.connect(host="127.0.0.1", port=PG_PORT, user="postgres", autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {app_db}")
        stack.callback(_drop_app_db, app_db)
        stack.callback(fixture.drop)
        fixture.create()

        import django

        django.setup()
        logging.getLogger().setLevel(logging.ERROR)  # the fixture's out-of-scope databases warn on each first sync
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        Run(args, fixture, servers).run()
    return 0


class Run:
    def __init__(self, args: argparse.Namespace, fixture: Fixture, servers: list[str]) -> None:
        from django.contrib.auth import get_user_model

        self.args = args
        self.user = get_user_model().objects.create_user("bench")
        self.instances = direct_instances(fixture, servers, args.instances, "resync")
        self.counter = QueryCounter()
        self.counter.install()

    def session(self) -> tuple[float, int, dict[str, Any]]:
        """One session over every instance, run as a worker runs a batch: (CPU s, queries, outcome)."""
        from sync.models import SyncInstanceRecord
        from sync.services import sync_batch_execute, sync_session_start

        session = sync_session_start(
            instances=self.instances, sync_type="manual_batch", created_by=self.user, enqueue=False
        )
        ids = list(SyncInstanceRecord.objects.filter(session=session).order_by("pk").values_list("pk", flat=True))
        self.counter.reset()
        t0 = time.process_time()
        outcome = sync_batch_execute(record_ids=ids)
        cpu = time.process_time() - t0
        queries = self.counter.total
        assert outcome["ok"] == len(ids), outcome
        details = list(SyncInstanceRecord.objects.filter(session=session).values_list("details", flat=True))
        outcome["unchanged"] = sum(bool(d["inventory"].get("catalog_unchanged")) for d in details)
        outcome["skipped"] = sum(bool((d.get("findings") or {}).get("skipped")) for d in details)
        return cpu, queries, outcome

    def run(self) -> None:
        import findings.services

        n = len(self.instances)
        cpu, queries, _ = self.session()
        print(f"first sync of {n} instances: {cpu / n * 1000:.1f} ms CPU, {queries / n:.1f} queries per instance")
        self.session()  # a warm-up re-sync: the second sync of an instance may still apply (coverage, facts)
        skippable = findings.services._skippable
        statements = self.args.compare == "statements"
        per: dict[str, list[tuple[float, int]]] = {"before": [], "after": []}
        tables: dict[str, Counter[str]] = {"before": Counter(), "after": Counter()}
        for round_no in range(self.args.rounds):
            order = ("before", "after") if round_no % 2 == 0 else ("after", "before")
            for mode in order:
                if not statements:
                    findings.services._skippable = skippable if mode == "after" else (lambda *a, **k: None)
                self.counter.keep_tables = self.args.tables
                with _legacy_statements() if statements and mode == "before" else contextlib.nullcontext():
                    cpu, queries, outcome = self.session()
                tables[mode].update(self.counter.tables)
                # a catalog that did change (another user of the shared PostgreSQL created or dropped a
                # database, which the adapter lists) applies and refreshes in both modes: counted, shown
                skips = outcome["unchanged"] if mode == "after" or statements else 0
                assert outcome["skipped"] == skips, outcome
                per[mode].append((cpu, queries))
                print(
                    f"  round {round_no + 1} {mode:6s}: {cpu / n * 1000:6.1f} ms CPU, "
                    f"{queries / n:5.1f} queries per instance ({outcome['unchanged']} of {n} unchanged, "
                    f"{outcome['skipped']} findings skipped)"
                )
        findings.services._skippable = skippable
        mean = {m: (sum(c for c, _ in v) / len(v) / n, sum(q for _, q in v) / len(v) / n) for m, v in per.items()}
        b, a = mean["before"], mean["after"]
        labels = (
            ("record path as it was", "record path as shipped")
            if statements
            else ("findings re-evaluated", "findings skipped")
        )
        print(
            f"no-change re-sync, {n} instances x {self.args.rounds} rounds, one process "
            f"(fetch concurrency {self.args.fetch_concurrency}, {os.cpu_count()} cores, shared machine):\n"
            f"  before ({labels[0]}): {b[0] * 1000:.1f} ms CPU, {b[1]:.1f} queries per instance\n"
            f"  after  ({labels[1]}): {a[0] * 1000:.1f} ms CPU, {a[1]:.1f} queries per instance\n"
            f"  after/before: CPU {a[0] / b[0]:.2f}x, queries {a[1] / b[1]:.2f}x"
        )
        if self.args.tables:
            rounds = self.args.rounds
            for mode in ("before", "after"):
                print(f"statements per instance, {mode}:")
                for shape, count in tables[mode].most_common():
                    print(f"  {count / rounds / n:5.2f}  {shape}")


@contextlib.contextmanager
def _legacy_statements() -> Iterator[None]:
    """The no-change record's statements before issue #19 part 1, for ``--compare statements``.

    Three stand-ins, each sending exactly what the code did: ``mark_running`` without the
    session check (so the fetch phase beats again), the unchanged apply's fenced transaction
    (``_fence_check``, the digest re-read, ``fence.commit``), and the alerts hook's savepoint
    whether or not detection wrote.
    """
    import accountsync.services as acc
    import alerts.services as alerts
    from sync.models import SyncInstanceRecord

    mark_running = SyncInstanceRecord.mark_running
    apply_unchanged_catalog = acc._apply_unchanged_catalog
    after_sync = alerts._after_sync

    def legacy_mark_running(self: Any, *, while_session_runs: bool = False) -> bool:
        return False if while_session_runs else mark_running(self)  # the caller then asks plainly, as before

    def legacy_apply_unchanged_catalog(instance: Any, catalog: Any, session_id: Any, started: float, fence: Any) -> Any:
        from django.db import transaction

        if fence is None:
            return apply_unchanged_catalog(instance, catalog, session_id, started, fence)
        try:
            with transaction.atomic():
                acc._fence_check(instance, fence)
                result = acc._apply_unchanged(instance, catalog, session_id)
                if result is not None:
                    fence.commit(result)
        except acc._Fenced as exc:
            return acc.SyncResult(success=False, message=str(exc), error_kind="conflict")
        assert result is not None, "the bench's catalogs do not move under it"
        acc._log_apply(instance, session_id, logging.INFO, result.message, "apply", started)
        return result

    def legacy_after_sync(**kwargs: Any) -> tuple[Any, bool]:
        return after_sync(**kwargs)[0], True

    SyncInstanceRecord.mark_running = legacy_mark_running  # type: ignore[method-assign]
    acc._apply_unchanged_catalog = legacy_apply_unchanged_catalog
    alerts._after_sync = legacy_after_sync
    try:
        yield
    finally:
        SyncInstanceRecord.mark_running = mark_running  # type: ignore[method-assign]
        acc._apply_unchanged_catalog = apply_unchanged_catalog
        alerts._after_sync = after_sync


if __name__ == "__main__":
    sys.exit(main())
