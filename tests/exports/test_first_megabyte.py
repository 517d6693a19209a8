"""What makes an export's first megabyte come fast at scale (#19 part 3), and that the rows stay the same.

Three causes were measured on a million accounts and ten million change-log rows
(bench/export_first_mb.py): PostgreSQL JIT-compiling the read before its first row, every
column of the joined account and instance turned into Python for each row, and the
effective-access export computing a whole instance before its first row. Each test here pins
one fix by what the export reads (statements, columns, what is computed before the first
rows), never by a timing, and checks that the exported text is the one the old way gives.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import exports.columns
from accountsync.adapters.base import AccountRecord, Privilege, RoleGrant
from accountsync.effective_read import instance_effective_access
from accountsync.models import AccountChangeLog, AccountPermission, InstanceAccount
from exports.columns import current_permissions
from exports.writers import stream_export
from findings.models import Finding
from findings.services import findings_refresh
from tests.exports.conftest import apply


def text_of(kind: str, queryset, fmt: str = "csv", **kw) -> str:
    chunks, _ctype, _name = stream_export(kind, queryset, fmt, **kw)
    return "".join(chunks)


def _show(setting: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW {setting}")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)  # as in production: the export's own transaction is the outer one
def test_the_read_runs_without_jit_and_the_setting_ends_with_it(bulk_accounts) -> None:
    bulk_accounts(450, instances=2)
    before = _show("jit") if connection.vendor == "postgresql" else None
    with CaptureQueriesContext(connection) as ctx:
        chunks, _, _ = stream_export("change_logs", AccountChangeLog.objects.all(), "ndjson", chunk_size=5)
        first = next(chunks)
        if connection.vendor == "postgresql":
            assert _show("jit") == "off"  # set before the cursor was declared, inside the read's transaction
        rest = list(chunks)
    statements = [q["sql"] for q in ctx.captured_queries]
    if connection.vendor == "postgresql":
        jit = [i for i, sql in enumerate(statements) if sql == "SET LOCAL jit = off"]
        cursor = [i for i, sql in enumerate(statements) if sql.startswith("DECLARE ")]
        assert jit and cursor and jit[0] < cursor[0], statements
        assert _show("jit") == before  # SET LOCAL: gone with the export's transaction
    else:
        assert not any("jit" in sql for sql in statements)  # nothing sent to other databases
    assert sum(chunk.count("\n") for chunk in [first, *rest]) == 450


# --- joined rows: only the columns the rows read ----------------------------------------


def _querysets(fleet) -> dict[str, object]:
    findings_refresh(instance=fleet["mysql"])
    assert Finding.objects.exists()
    accounts = InstanceAccount.objects.order_by("instance_id", "identity")
    return {
        "accounts": accounts,
        "permissions": current_permissions(accounts),
        "effective_access": AccountPermission.objects.filter(valid_to__isnull=True),
        "findings": Finding.objects.order_by("-first_seen_at", "-id"),
        "change_logs": AccountChangeLog.objects.order_by("-detected_at", "-id"),
    }


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["accounts", "permissions", "effective_access", "findings", "change_logs"])
def test_joined_rows_load_only_what_the_rows_read_and_the_export_is_unchanged(kind, fleet, monkeypatch) -> None:
    queryset = _querysets(fleet)[kind]
    with CaptureQueriesContext(connection) as lean:
        text = text_of(kind, queryset, "json")
    read = max((q["sql"] for q in lean.captured_queries), key=len)  # the export's read: every join
    assert '"instances_instance"."options"' not in read  # the instance's JSON options and timestamps...
    assert '"instances_instance"."created_at"' not in read
    if kind != "accounts":  # ...and, where only its identity is shown, the account's attributes
        assert '"accountsync_instanceaccount"."attributes"' not in read

    monkeypatch.setattr(exports.columns, "LEAN_JOINS", False)  # every column, as before
    with CaptureQueriesContext(connection) as whole:
        assert text_of(kind, queryset, "json") == text
    # no deferred column is read back row by row: the same statements either way
    assert len(lean.captured_queries) == len(whole.captured_queries)


# --- effective access: a batch of the stream at a time ----------------------------------


def account(name: str, *privileges: Privilege, kind: str = "user", roles=(), host: str | None = None):
    identity = f"'{name}'@'{host}'" if host else name
    return AccountRecord(
        identity=identity, username=name, host=host, kind=kind, privileges=list(privileges), roles=list(roles)
    )


@pytest.fixture
def role_fleet(make_instance):
    """Role graphs on PostgreSQL and MySQL: nesting, a role held from several batches, PUBLIC, a cycle."""
    pg = make_instance("postgresql", name="pg-roles", port=5432)
    my = make_instance("mysql", name="my-roles")
    sel, upd = Privilege("database:sales", "SELECT"), Privilege("object:sales.public.orders", "UPDATE")
    apply(
        pg,
        account("public", Privilege("database:sales", "CONNECT"), kind="role"),
        account("u_first", roles=[RoleGrant("r_outer")]),
        account("r_outer", sel, kind="role", roles=[RoleGrant("r_inner", admin_option=True)]),
        account("r_inner", upd, kind="role", roles=[RoleGrant("r_outer")]),  # a cycle
        account("u_plain", Privilege("database:hr", "SELECT")),
        account("u_late", roles=[RoleGrant("r_inner"), RoleGrant("r_setrole", default=False)]),
        account("r_setrole", Privilege("database:hr", "DELETE"), kind="role"),
        account("u_direct", sel, roles=[RoleGrant("r_outer")]),
    )
    apply(
        my,
        account("app", sel, host="%", roles=[RoleGrant("'reporting'@'%'")]),
        account("reporting", upd, host="%", kind="role"),
        account("other", host="10.0.%", roles=[RoleGrant("'reporting'@'%'"), RoleGrant("missing")]),
    )
    return {"pg": pg, "mysql": my}


@pytest.mark.django_db
@pytest.mark.parametrize("batch", [1, 2, 3, 500])
def test_effective_rows_are_the_whole_instance_computation_whatever_the_batch(batch, role_fleet, monkeypatch) -> None:
    current = AccountPermission.objects.filter(valid_to__isnull=True)
    monkeypatch.setattr(exports.columns, "EFFECTIVE_LAZY", False)  # the old way: each instance computed up front
    expected = text_of("effective_access", current)
    monkeypatch.setattr(exports.columns, "EFFECTIVE_LAZY", True)
    monkeypatch.setattr(exports.columns, "EFFECTIVE_BATCH", batch)
    assert text_of("effective_access", current) == expected
    # and the fixture really goes through roles: paths, SET ROLE only grants, both instances
    assert "r_outer → r_inner" in expected and ",false\r\n" in expected and "my-roles" in expected
    by_account = instance_effective_access(instance_id=role_fleet["pg"].pk, db_type="postgresql")
    assert {g.privilege for g in by_account["u_late"]} == {"UPDATE", "SELECT", "DELETE"}


@pytest.mark.django_db
def test_effective_export_computes_one_batch_before_its_first_rows(bulk_accounts, monkeypatch) -> None:
    bulk_accounts(1200, instances=1)
    computed: list[int | None] = []
    real = exports.columns.effective_access

    def spy(catalog, **kw):
        only = kw.get("only")
        computed.append(None if only is None else len(set(only)))
        return real(catalog, **kw)

    monkeypatch.setattr(exports.columns, "effective_access", spy)
    chunks, _, _ = stream_export("effective_access", AccountPermission.objects.filter(valid_to__isnull=True), "csv")
    next(chunks)  # the header
    first = next(chunks)  # the first rows
    assert first.count("\n") > 0
    assert computed == [exports.columns.EFFECTIVE_BATCH]  # one batch of 500, not the instance's 1,200
    rest = "".join(chunks)
    assert computed == [500, 500, 200]
    assert (first + rest).count("\n") == 1200  # one grant each (bulk snapshots: SELECT on global)


@pytest.mark.django_db
def test_effective_export_reads_each_instances_roles_once(role_fleet) -> None:
    """Batches of one account: the roles are read when first held, then kept for the instance."""
    exports_batch = exports.columns.EFFECTIVE_BATCH
    try:
        exports.columns.EFFECTIVE_BATCH = 1
        with CaptureQueriesContext(connection) as ctx:
            text_of("effective_access", AccountPermission.objects.filter(valid_to__isnull=True))
    finally:
        exports.columns.EFFECTIVE_BATCH = exports_batch
    snapshot_reads = [
        q["sql"]
        for q in ctx.captured_queries
        if q["sql"].startswith("SELECT")
        and 'FROM "accountsync_accountpermission"' in q["sql"]
        and 'ORDER BY "accountsync_accountpermission"."instance_id"' not in q["sql"]  # not the export's own read
    ]
    # PostgreSQL: PUBLIC, then r_outer (u_first), r_inner (its holder), r_setrole (u_late); MySQL: PUBLIC, then
    # reporting, then "missing" (looked up once, found nowhere). Never a read of a whole instance.
    assert 2 <= len(snapshot_reads) <= 7, snapshot_reads
    assert all("IN (" in sql for sql in snapshot_reads), snapshot_reads
