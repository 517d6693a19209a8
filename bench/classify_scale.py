"""Classifying 100,000 accounts with 20 rules (a benchmark that prints figures, not a test).

Why: ``classification.services.classification_evaluate`` promises a fleet-wide re-evaluation
(after a rule change) in at most 5 s at 100,000 accounts and 20 rules. This builds the accounts
with their materialized facts (``classification.InstanceFacts``: per instance, inverted indexes of
capabilities, roles reached, effective privilege keys, names, attributes) over 50 instances of all
four families, 20 enabled rules (the six shipped defaults and 14 more using every operator), then
times:

- **first**: the evaluation that writes every assignment (nothing stored yet);
- **steady**: the same again, nothing changed (the cost after every rule change that moves nobody);
- **edit**: one rule edited to match a different 10 % of the fleet, evaluated again;
- **facts**: ``facts_refresh`` of one instance of 2,000 accounts from its open snapshots (the
  per-sync step before evaluation; not part of the 5 s).

It checks the counts against what the generator put in (so a fast wrong answer fails: exit status 1),
and prints ``OK`` or ``SLOW`` against the 5 s budget, with the wall and CPU time of each run. Runs
on a throwaway SQLite file and on a scratch PostgreSQL database (``whalefall_bench_classify_<pid>``,
dropped at the end, also on Ctrl-C), each in its own child process (Django's settings read DATABASE_URL once).

Usage: .venv/bin/python bench/classify_scale.py [--accounts 100000] [--instances 50] [--only sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PG_DB = f"whalefall_bench_classify_{os.getpid()}"
PG_PORT = int(os.environ.get("WHALEFALL_TEST_PG_PORT") or 5432)  # scripts/_testservers.sh
PG_ADMIN = {"host": "127.0.0.1", "port": PG_PORT, "user": "postgres", "dbname": "postgres"}
DB_TYPES = ("mysql", "postgresql", "sqlserver", "oracle")
BUDGET_S = 5.0
FACTS_ACCOUNTS = 2000

# 14 rules on top of the six shipped defaults: every operator of the language appears at least once
EXTRA_RULES: list[tuple[str, str, Any]] = [
    ("pii-readers", "", {"has_privilege": {"privilege": "SELECT", "scope": "object:sales.*.customers"}}),
    ("prod-db-writers", "", {"has_privilege": {"privilege": ["INSERT", "UPDATE"], "within": "database:prod_*"}}),
    ("ddl", "", {"has_privilege": {"privilege": ["CREATE", "DROP", "ALTER"]}}),
    ("admin-role", "", {"has_role": ["dba*", "admin_*"]}),
    ("report-role", "postgresql", {"has_role": "report_*"}),
    ("old-plugin", "mysql", {"attribute": {"name": "auth_plugin", "op": "eq", "value": "mysql_native_password"}}),
    ("conn-limit", "", {"attribute": {"name": "max_connections", "op": "gt", "value": 50}}),
    ("svc-names", "", {"all": [{"name": "svc*"}, {"not": {"kind": "role"}}]}),
    ("wild-host", "mysql", {"host": ["%", "10.*"]}),
    ("tagged-pci", "", {"tag": "pci"}),
    ("staging-any", "", {"all": [{"environment": "staging"}, {"has_privilege": {"privilege": "*"}}]}),
    ("oracle-dba", "oracle", {"any": [{"has_capability": "SUPERUSER"}, {"has_role": "DBA"}]}),
    ("sqlserver-db", "", {"all": [{"db_type": "sqlserver"}, {"has_privilege": {"privilege": "CONTROL"}}]}),
    ("locked-admins", "", {"all": [{"locked": True}, {"has_capability": ["GRANT_ADMIN", "SUPERUSER"]}]}),
]


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _subject(rng: random.Random, db_type: str, account: Any, j: int) -> Any:
    """One account's facts: a mix of privileges on prod_*/sales databases, roles, capabilities."""
    from classification.rules import Subject, privilege_key

    caps: list[str] = []
    roll = rng.random()
    if roll < 0.01:
        caps.append("SUPERUSER")
    elif roll < 0.04:
        caps.append("GRANT_ADMIN")
    if rng.random() < 0.02:
        caps.append("EXPIRED")
    keys = set()
    for _ in range(rng.randint(3, 12)):
        db = rng.choice(("prod_app", "prod_billing", "sales", "stage_app", "tmp"))
        privilege = rng.choice(("SELECT", "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "EXECUTE", "USAGE"))
        level = rng.random()
        if level < 0.3:
            scope = f"database:{db}"
        elif level < 0.5:
            scope = f"schema:{db}.public"
        else:
            scope = f"object:{db}.public.{rng.choice(('customers', 'orders', 't1', 't2', 't3'))}"
        keys.add(privilege_key(scope, privilege, grantable=rng.random() < 0.03, active=rng.random() > 0.05))
    if db_type == "sqlserver" and rng.random() < 0.05:
        keys.add(privilege_key("database:sales", "CONTROL", grantable=False, active=True))
    roles = sorted(
        {rng.choice(("app_rw", "app_ro", "report_ro", "dba", "admin_ops", "etl")) for _ in range(rng.randint(0, 3))}
    )
    attributes: dict[str, Any] = {"max_connections": rng.choice((0, 10, 100)), "is_held": j % 7 == 0}
    if db_type == "mysql":
        attributes["auth_plugin"] = rng.choice(("mysql_native_password", "caching_sha2_password", "ed25519"))
    return Subject(
        account_id=account.pk,
        username=account.username,
        host=account.host,
        kind=account.kind,
        is_locked=account.is_locked,
        capabilities=sorted(caps),
        roles=roles,
        keys=sorted(keys),
        attributes=attributes,
    )


def populate(n_accounts: int, n_instances: int) -> None:
    """Instances, accounts and their facts, bulk inserted (the bench measures evaluation, not setup)."""
    from django.utils import timezone

    from accountsync.models import InstanceAccount
    from classification.models import InstanceFacts
    from classification.rules import facts_index
    from instances.models import Credential, Instance, Tag

    rng = random.Random(20261201)
    cred = Credential(name="bench-classify", username="monitor")
    cred.set_password("bench-only-not-a-secret")
    cred.save()
    pci = Tag.objects.create(name="pci")
    now = timezone.now()
    per_instance = n_accounts // n_instances
    for i in range(n_instances):
        inst = Instance.objects.create(
            name=f"bench-{i:03d}",
            db_type=DB_TYPES[i % 4],
            host="127.0.0.1",
            port=1000 + i,
            credential=cred,
            environment=("production", "staging", "development")[i % 3],
        )
        if i % 10 == 0:
            inst.tags.add(pci)
        mysql = inst.db_type == "mysql"
        accounts = []
        for j in range(per_instance):
            kind = "role" if j % 9 == 0 else "user"
            name = f"svc{j}" if j % 3 else f"app{j}"
            host = ("%", "localhost", "10.1.%")[j % 3] if mysql and kind == "user" else None
            identity = f"'{name}'@'{host}'" if host else name
            accounts.append(
                InstanceAccount(
                    instance=inst,
                    identity=identity,
                    username=name,
                    host=host,
                    kind=kind,
                    is_locked=rng.random() < 0.03,
                    first_seen_at=now,
                    last_seen_at=now,
                )
            )
        created = InstanceAccount.objects.bulk_create(accounts, batch_size=2000)
        subjects = [_subject(rng, inst.db_type, a, j) for j, a in enumerate(created)]
        InstanceFacts.objects.create(
            instance=inst,
            index=json.dumps(facts_index(subjects)),
            accounts=len(subjects),
            digest="0" * 64,
            computed_at=now,
        )


def rules_create() -> None:
    from classification.models import Classification, ClassificationRule
    from classification.services import rule_save

    for code, db_type, expression in EXTRA_RULES:
        category = Classification.objects.create(code=code, name=code, risk_level=3)
        rule_save(rule=ClassificationRule(classification=category, name=code, db_type=db_type, expression=expression))


def expected_counts() -> dict[str, int]:
    """The counts worked out one account at a time with plain Python, independent of the compiled sets."""
    from fnmatch import fnmatchcase

    from accountsync.models import InstanceAccount
    from classification.models import InstanceFacts
    from classification.rules import split_key

    keys: dict[int, list[str]] = {}
    caps: dict[int, list[str]] = {}
    held: dict[int, bool] = {}
    for text in InstanceFacts.objects.values_list("index", flat=True):
        index = json.loads(text)
        for key, aids in index["keys"]:
            for aid in aids:
                keys.setdefault(aid, []).append(key)
        for cap, aids in index["capabilities"]:
            for aid in aids:
                caps.setdefault(aid, []).append(cap)
        for value, aids in index["attributes"].get("is_held", []):
            for aid in aids:
                held[aid] = value
    accounts = list(InstanceAccount.objects.values_list("pk", "username", "kind"))

    def priv(aid: int, names: set[str], test: Any) -> bool:
        for key in keys.get(aid, ()):
            scope, privilege, _flags = split_key(key)
            if privilege in names and test(scope):
                return True
        return False

    checks = {
        "superuser": lambda aid, name, kind: "SUPERUSER" in caps.get(aid, ()),
        "pii-readers": lambda aid, name, kind: priv(
            aid, {"SELECT"}, lambda sc: fnmatchcase(sc, "object:sales.*.customers")
        ),
        "prod-db-writers": lambda aid, name, kind: priv(
            aid, {"INSERT", "UPDATE"}, lambda sc: sc.split(":", 1)[1].startswith("prod_")
        ),
        "svc-names": lambda aid, name, kind: name.lower().startswith("app") and kind != "role",  # after the edit
        "unused-role": lambda aid, name, kind: kind == "role" and not held.get(aid) and name.lower() != "public",
    }
    return {code: sum(1 for a in accounts if check(*a)) for code, check in checks.items()}


def run_backend(database_url: str, label: str, n_accounts: int, n_instances: int) -> int:
    setup_django(database_url)
    from django.db import connection
    from django.db.models import Count

    from classification.models import ClassificationAssignment, ClassificationRule
    from classification.services import classification_evaluate, rule_save

    started = time.perf_counter()
    populate(n_accounts, n_instances)
    rules_create()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    rules = ClassificationRule.objects.filter(is_enabled=True).count()
    print(f"\n== {label}: {n_accounts} accounts on {n_instances} instances, {rules} rules "
          f"(built in {time.perf_counter() - started:.1f} s)")  # fmt: skip
    status = 0
    figures = []

    def timed(name: str) -> Any:
        cpu = time.process_time()
        result = classification_evaluate()
        figures.append((name, result, time.process_time() - cpu, os.getloadavg()[0]))
        return result

    timed("first")
    steady = timed("steady")
    rule = ClassificationRule.objects.get(name="svc-names")
    rule.expression = {"all": [{"name": "app*"}, {"not": {"kind": "role"}}]}
    rule_save(rule=rule, comment="bench edit")
    timed("edit")
    print(f"{'run':<8} {'wall s':>8} {'cpu s':>8} {'load':>5} {'accounts':>9} {'added':>8} {'removed':>8} "
          f"{'changed':>8}  budget (wall)")  # fmt: skip
    for name, r, cpu, load in figures:
        verdict = "OK" if r.seconds <= BUDGET_S else "SLOW"  # printed; the exit status is about correctness only
        print(
            f"{name:<8} {r.seconds:>8.2f} {cpu:>8.2f} {load:>5.1f} {r.accounts:>9} {r.added:>8} {r.removed:>8} "
            f"{r.changed:>8}  {verdict}"
        )
    print(
        "wall: elapsed time (the budget); cpu: this process's CPU time, which a shared, loaded machine does not "
        "inflate (PostgreSQL's own work is not in it); load: the 1-minute load average when the run ended. "
        "Every run is held to the budget, the first one (which writes every assignment) included."
    )
    if steady.added or steady.removed or steady.changed:
        print("WRONG: the steady run changed assignments")
        status = 1
    counts = dict(ClassificationAssignment.objects.values_list("classification__code").annotate(n=Count("pk")))
    for code, want in expected_counts().items():
        got = counts.get(code, 0)
        print(f"check {code:<16} {got:>7} (expected {want}) {'ok' if got == want else 'WRONG'}")
        if got != want:
            status = 1
    print(f"assignments stored: {sum(counts.values())}")
    status |= facts_bench()
    return status


def facts_bench() -> int:
    """facts_refresh of one instance of FACTS_ACCOUNTS accounts from real snapshots (roles, grants)."""
    from django.utils import timezone

    from accountsync.models import AccountPermission, InstanceAccount
    from classification.models import InstanceFacts
    from classification.services import facts_refresh
    from instances.models import Credential, Instance

    inst = Instance.objects.create(
        name="bench-facts", db_type="postgresql", host="127.0.0.1", port=999, credential=Credential.objects.first()
    )
    now = timezone.now()
    accounts = InstanceAccount.objects.bulk_create(
        [
            InstanceAccount(
                instance=inst,
                identity=f"r{j}" if j < 20 else f"u{j}",
                username=f"r{j}" if j < 20 else f"u{j}",
                kind="role" if j < 20 else "user",
                first_seen_at=now,
                last_seen_at=now,
            )
            for j in range(FACTS_ACCOUNTS)
        ]
    )
    rows = []
    for j, a in enumerate(accounts):
        privileges = [
            {"scope": f"object:db.public.t{(j + k) % 50}", "privilege": p, "grantable": False, "effect": "GRANT"}
            for k in range(3)
            for p in ("SELECT", "INSERT")
        ]
        roles = [] if j < 20 else [{"role": f"r{j % 20}", "admin_option": False, "default": True}]
        snapshot = {"schema_version": 1, "privileges": privileges, "roles": roles, "attributes": {"login": j >= 20},
                    "capabilities": [], "unknown_scopes": []}  # fmt: skip
        rows.append(
            AccountPermission(
                account=a, instance=inst, snapshot=snapshot, digest="0" * 64, collected_at=now, valid_from=now
            )
        )
    AccountPermission.objects.bulk_create(rows, batch_size=2000)
    t = time.perf_counter()
    result = facts_refresh(instance=inst)
    first = time.perf_counter() - t
    t = time.perf_counter()
    again = facts_refresh(instance=inst)
    steady = time.perf_counter() - t
    print(
        f"facts_refresh of {FACTS_ACCOUNTS} accounts: first {first:.2f} s (written: {result.written}), "
        f"unchanged {steady:.2f} s (written: {again.written})"
    )
    u25 = InstanceAccount.objects.get(instance=inst, identity="u25").pk
    index = json.loads(InstanceFacts.objects.get(instance=inst).index)
    reached = sorted(role for role, aids in index["roles"] if u25 in aids)
    if reached != ["r5"] or again.written or not result.written:
        print(f"WRONG: facts of u25 reach {reached}, second refresh wrote {again.written}")
        return 1
    return 0


def postgres_create() -> None:
    import psycopg

    with psycopg.connect(**PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DB}")
        conn.execute(f"CREATE DATABASE {PG_DB}")


def postgres_drop() -> None:
    import psycopg

    with psycopg.connect(**PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        label = "PostgreSQL" if args.child.startswith("postgres") else "SQLite"
        return run_backend(args.child, label, args.accounts, args.instances)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # SIGTERM unwinds like Ctrl-C: the scratch DB is dropped
    common = ["--accounts", str(args.accounts), "--instances", str(args.instances)]
    status = 0
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory(prefix="wf-bench-classify-") as tmp:
            url = f"sqlite:///{tmp}/classify.sqlite3"
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
