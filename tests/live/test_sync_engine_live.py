"""End to end on the live servers: real CREATE USER/GRANT, real adapter fetch, real apply.

The servers are shared with other tests running in parallel, so the exact
assertions are made on this test's uniquely prefixed accounts: `scoped_sync`
fetches the whole catalog for real and applies only those accounts (other
tests' users come and go concurrently). `account_sync_run` itself is
exercised unscoped in `test_run_*`.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accountsync.adapters.base import ConnectionTarget, get_adapter
from accountsync.models import AccountChangeLog, AccountPermission, InstanceAccount
from accountsync.services import SyncResult, account_sync_apply, account_sync_run
from tests.livedb import MARIADB, POSTGRES

pytestmark = [pytest.mark.live, pytest.mark.django_db]

TABLES = ("accountsync_instanceaccount", "accountsync_accountpermission", "accountsync_accountchangelog")


def scoped_sync(instance: Any, prefix: str) -> SyncResult:
    catalog = get_adapter(instance.db_type).fetch(ConnectionTarget.from_instance(instance)).finalize()
    catalog.accounts = [a for a in catalog.accounts if a.username.startswith(prefix)]
    return account_sync_apply(instance=instance, catalog=catalog)


def counts(result: SyncResult) -> tuple[int, int, int, int]:
    return (result.synced_count, result.added_count, result.modified_count, result.removed_count)


def new_logs(instance: Any, after_id: int) -> list[tuple[str, str, str]]:
    return sorted(
        AccountChangeLog.objects.filter(instance=instance, id__gt=after_id).values_list(
            "account__identity", "change_type", "summary"
        )
    )


def last_log_id() -> int:
    return AccountChangeLog.objects.order_by("-id").values_list("id", flat=True).first() or 0


def writes(ctx: CaptureQueriesContext) -> list[str]:
    return [
        q["sql"]
        for q in ctx.captured_queries
        if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")) and any(t in q["sql"] for t in TABLES)
    ]


def privs(instance: Any, identity: str) -> list[tuple[str, str]]:
    snap = AccountPermission.objects.get(account__instance=instance, account__identity=identity, valid_to=None)
    return [(p["scope"], p["privilege"]) for p in snap.snapshot["privileges"]]


@pytest.fixture
def mariadb_instance(make_instance, make_credential):
    return make_instance(
        "mysql", port=MARIADB["port"], credential=make_credential(name="root", username="root", password="")
    )


@pytest.fixture
def postgres_instance(make_instance, make_credential):
    return make_instance(
        "postgresql",
        port=POSTGRES["port"],
        credential=make_credential(name="pg", username="postgres", password=""),
        database_name="postgres",
    )


def test_mariadb_inventory_collection_and_change_log(mariadb_admin, mariadb_instance, unique_prefix):
    p, inst = unique_prefix, mariadb_instance
    cur = mariadb_admin.cursor()
    users = [f"'{p}_a'@'%'", f"'{p}_b'@'localhost'", f"'{p}_c'@'%'", f"'{p}_d'@'%'"]
    a, b, c, d = users
    role = f"{p}_role"
    try:
        cur.execute(f"CREATE DATABASE {p}_db")
        for u in users:
            cur.execute(f"CREATE USER {u} IDENTIFIED BY 'Pw-{p}'")
        cur.execute(f"CREATE ROLE {role}")
        cur.execute(f"GRANT SELECT ON {p}_db.* TO {role}")
        cur.execute(f"GRANT {role} TO {a}")
        cur.execute(f"GRANT SELECT ON {p}_db.* TO {a}")
        cur.execute(f"GRANT INSERT ON {p}_db.* TO {b}")
        cur.execute(f"GRANT PROCESS ON *.* TO {c}")
        cur.execute(f"GRANT SELECT ON {p}_db.* TO {d}")

        first = scoped_sync(inst, p)
        assert first.success, first.message
        assert counts(first) == (5, 5, 0, 0)
        assert InstanceAccount.objects.filter(instance=inst, is_active=True).count() == 5
        assert privs(inst, a) == [(f"database:{p}_db", "SELECT")]
        assert privs(inst, c) == [("global", "PROCESS")]
        a_snap = AccountPermission.objects.get(account__identity=a, valid_to=None).snapshot
        assert [r["role"] for r in a_snap["roles"]] == [f"'{role}'"]
        assert InstanceAccount.objects.get(instance=inst, identity=f"'{role}'").kind == "role"
        assert sorted(t for _i, t, _s in new_logs(inst, 0)) == ["added"] * 5

        mark = last_log_id()
        cur.execute(f"GRANT UPDATE ON {p}_db.* TO {a}")
        cur.execute(f"REVOKE INSERT ON {p}_db.* FROM {b}")
        cur.execute(f"ALTER USER {c} ACCOUNT LOCK")
        cur.execute(f"GRANT INSERT ON {p}_db.* TO {role}")
        cur.execute(f"DROP USER {d}")
        second = scoped_sync(inst, p)
        assert counts(second) == (4, 0, 4, 1)
        assert new_logs(inst, mark) == sorted(
            [
                (a, "privileges_changed", f"+UPDATE on database:{p}_db"),
                (b, "privileges_changed", f"-INSERT on database:{p}_db"),
                (c, "attributes_changed", "+LOCKED, locked false→true"),
                (d, "removed", f"removed {d}"),
                (f"'{role}'", "privileges_changed", f"+INSERT on database:{p}_db"),
            ]
        )
        assert AccountChangeLog.objects.get(account__identity=b, change_type="privileges_changed").diff == [
            {
                "op": "revoke",
                "scope": f"database:{p}_db",
                "privilege": "INSERT",
                "old": {"grantable": False, "effect": "GRANT"},
                "new": None,
            },
        ]
        assert InstanceAccount.objects.get(instance=inst, identity=c).is_locked is True
        dropped = InstanceAccount.objects.get(instance=inst, identity=d)
        assert dropped.is_active is False and dropped.deactivated_at is not None

        mark = last_log_id()
        cur.execute(f"CREATE USER {d} IDENTIFIED BY 'Pw-{p}'")
        cur.execute(f"GRANT DELETE ON {p}_db.* TO {d}")
        third = scoped_sync(inst, p)
        assert counts(third) == (5, 0, 1, 0)
        [(identity, change_type, summary)] = new_logs(inst, mark)
        assert (identity, change_type) == (d, "reactivated")
        assert summary.startswith(f"reactivated {d}: +DELETE on database:{p}_db;")
        assert privs(inst, d) == [(f"database:{p}_db", "DELETE")]
        assert InstanceAccount.objects.filter(instance=inst, identity=d).count() == 1

        before = (AccountChangeLog.objects.count(), AccountPermission.objects.count())
        with CaptureQueriesContext(connection) as ctx:
            fourth = scoped_sync(inst, p)
        assert counts(fourth) == (5, 0, 0, 0)
        assert writes(ctx) == []
        assert (AccountChangeLog.objects.count(), AccountPermission.objects.count()) == before
    finally:
        for u in users:
            cur.execute(f"DROP USER IF EXISTS {u}")
        cur.execute(f"DROP ROLE IF EXISTS {role}")
        cur.execute(f"DROP DATABASE IF EXISTS {p}_db")


def test_postgresql_inventory_collection_and_change_log(postgres_admin, make_instance, make_credential, unique_prefix):
    import psycopg

    p = unique_prefix
    db = f"{p}_db"
    a, b, c, d, role = f"{p}_a", f"{p}_b", f"{p}_c", f"{p}_d", f"{p}_role"
    run = postgres_admin.execute
    run(f"CREATE DATABASE {db}")
    dbconn = psycopg.connect(host="127.0.0.1", port=POSTGRES["port"], user="postgres", dbname=db, autocommit=True)
    inst = make_instance(
        "postgresql",
        port=POSTGRES["port"],
        credential=make_credential(name="pg", username="postgres", password=""),
        database_name="postgres",
        options={"databases": [db]},
    )
    obj = f"object:{db}.public.t"
    try:
        run(f"CREATE ROLE {role} NOLOGIN")
        for u in (a, b, c, d):
            run(f"CREATE ROLE {u} LOGIN PASSWORD 'Pw-{p}'")
        dbconn.execute("CREATE TABLE public.t (id int)")
        dbconn.execute(f"GRANT SELECT ON public.t TO {role}")
        run(f"GRANT {role} TO {a}")
        dbconn.execute(f"GRANT SELECT ON public.t TO {a}")
        dbconn.execute(f"GRANT INSERT ON public.t TO {b}")
        dbconn.execute(f"GRANT SELECT ON public.t TO {d}")

        first = scoped_sync(inst, p)
        assert first.success, first.message
        assert counts(first) == (5, 5, 0, 0)
        assert privs(inst, a) == [(obj, "SELECT")]
        assert privs(inst, b) == [(obj, "INSERT")]
        a_snap = AccountPermission.objects.get(account__identity=a, valid_to=None).snapshot
        assert [r["role"] for r in a_snap["roles"]] == [role]
        assert InstanceAccount.objects.get(instance=inst, identity=role).kind == "role"

        mark = last_log_id()
        dbconn.execute(f"GRANT UPDATE ON public.t TO {a}")
        dbconn.execute(f"REVOKE INSERT ON public.t FROM {b}")
        run(f"ALTER ROLE {c} CONNECTION LIMIT 3")
        dbconn.execute(f"GRANT INSERT ON public.t TO {role}")
        dbconn.execute(f"REVOKE ALL ON public.t FROM {d}")
        run(f"DROP ROLE {d}")
        second = scoped_sync(inst, p)
        assert counts(second) == (4, 0, 4, 1)
        assert new_logs(inst, mark) == sorted(
            [
                (a, "privileges_changed", f"+UPDATE on {obj}"),
                (b, "privileges_changed", f"-INSERT on {obj}"),
                (c, "attributes_changed", "connection_limit -1→3"),
                (d, "removed", f"removed {d}"),
                (role, "privileges_changed", f"+INSERT on {obj}"),
            ]
        )

        mark = last_log_id()
        run(f"CREATE ROLE {d} LOGIN PASSWORD 'Pw-{p}'")
        dbconn.execute(f"GRANT DELETE ON public.t TO {d}")
        third = scoped_sync(inst, p)
        assert counts(third) == (5, 0, 1, 0)
        [(identity, change_type, summary)] = new_logs(inst, mark)
        assert (identity, change_type) == (d, "reactivated")
        assert summary.startswith(f"reactivated {d}: +DELETE on {obj};")

        before = (AccountChangeLog.objects.count(), AccountPermission.objects.count())
        with CaptureQueriesContext(connection) as ctx:
            fourth = scoped_sync(inst, p)
        assert counts(fourth) == (5, 0, 0, 0)
        assert writes(ctx) == []
        assert (AccountChangeLog.objects.count(), AccountPermission.objects.count()) == before
    finally:
        dbconn.close()
        run(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        for u in (a, b, c, d, role):
            run(f"DROP ROLE IF EXISTS {u}")


def test_run_updates_instance_and_logs(mariadb_admin, mariadb_instance, make_instance, unique_prefix, caplog):
    import logging
    import uuid

    cur = mariadb_admin.cursor()
    user = f"'{unique_prefix}_run'@'%'"
    session = uuid.uuid4()
    try:
        cur.execute(f"CREATE USER {user} IDENTIFIED BY 'Pw-{unique_prefix}'")
        with caplog.at_level(logging.INFO, logger="accountsync.services"):
            result = account_sync_run(instance=mariadb_instance, session_id=session)
        assert result.success, result.message
        assert result.synced_count == result.added_count >= 2  # root and ours at least
        assert InstanceAccount.objects.filter(instance=mariadb_instance, identity=user, is_active=True).exists()
        assert AccountChangeLog.objects.get(account__identity=user).session_id == session
        mariadb_instance.refresh_from_db()
        assert (mariadb_instance.last_sync_status, mariadb_instance.sync_count) == ("completed", 1)
        assert "mariadb" in mariadb_instance.version.lower()
        phases = [r.wf["phase"] for r in caplog.records if hasattr(r, "wf")]
        assert phases[0] == "start" and "fetch" in phases and "apply" in phases and phases[-1] == "done"
        for r in caplog.records:
            if hasattr(r, "wf"):
                assert r.wf["instance_id"] == mariadb_instance.pk and r.wf["db_type"] == "mysql"
                assert r.wf["session_id"] == session
    finally:
        cur.execute(f"DROP USER IF EXISTS {user}")

    closed = make_instance("mysql", port=1, name="closed-port")
    failed = account_sync_run(instance=closed)
    assert (failed.success, failed.error_kind) == (False, "connection")
    assert "closed-port" in failed.message and "s3cr3t-Pa55" not in failed.message
    closed.refresh_from_db()
    assert (closed.last_sync_status, closed.sync_count) == ("failed", 1)
    assert not InstanceAccount.objects.filter(instance=closed).exists()


def _sync_until_unchanged(instance: Any) -> tuple[SyncResult, CaptureQueriesContext]:
    """Sync until a read equals the previous one (other test runs may add users between two reads)."""
    for _ in range(5):
        with CaptureQueriesContext(connection) as ctx:
            result = account_sync_run(instance=instance, force=True)
        assert result.success, result.message
        if result.details["inventory"].get("catalog_unchanged"):
            return result, ctx
    pytest.fail("the server's catalog never read the same twice in a row")


@pytest.mark.parametrize("server", ["mariadb", "postgresql"])
def test_unchanged_catalog_skips_the_apply_and_a_grant_does_not(
    server, mariadb_admin, postgres_admin, mariadb_instance, postgres_instance, unique_prefix
):
    p = unique_prefix
    inst = mariadb_instance if server == "mariadb" else postgres_instance
    if server == "mariadb":
        cur = mariadb_admin.cursor()
        user = f"'{p}_u'@'%'"
        create, grant, drop = (
            f"CREATE USER {user} IDENTIFIED BY 'Pw-{p}'",
            f"GRANT PROCESS ON *.* TO {user}",
            f"DROP USER IF EXISTS {user}",
        )
        run = cur.execute
    else:
        user = f"{p}_u"
        create, grant, drop = (
            f'CREATE ROLE "{user}" LOGIN',
            f'ALTER ROLE "{user}" CREATEDB',
            f'DROP ROLE IF EXISTS "{user}"',
        )
        run = postgres_admin.execute
    try:
        run(create)
        first = account_sync_run(instance=inst, force=True)
        assert first.success, first.message
        inst.refresh_from_db()
        assert len(inst.catalog_digest) == 64
        again, ctx = _sync_until_unchanged(inst)
        assert writes(ctx) == []
        assert again.synced_count == InstanceAccount.objects.filter(instance=inst, is_active=True).count()
        assert (again.added_count, again.modified_count, again.removed_count) == (0, 0, 0)

        before = last_log_id()
        run(grant)
        changed = account_sync_run(instance=inst, force=True)
        assert changed.success and not changed.details["inventory"].get("catalog_unchanged")
        ours = [row for row in new_logs(inst, before) if p in row[0]]
        assert [(kind, "+" in summary) for _identity, kind, summary in ours] == [("privileges_changed", True)]
    finally:
        run(drop)
