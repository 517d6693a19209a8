"""Issue #16 end to end, live: the real sync entry point against the local servers.

Every sync goes through `sync.services.sync_accounts(..., sync_type="manual_single")`: the real
adapter reads the server with a monitoring login this test creates, the real apply writes the
snapshots, change log and coverage episodes, and the post-sync hooks refresh the findings.

The servers are shared with other tests that create and drop roles, users and databases at the
same time, so:
- every object has a uuid-suffixed name and is dropped afterwards;
- assertions look only at this test's own accounts, and at the PostgreSQL pseudo-role `public`
  only as far as its grants on this test's databases go (its CONNECT/TEMPORARY on other
  tests' databases comes and goes with them);
- syncs are forced: another test dropping its users between two syncs must not trip the
  mass-removal guard, which is not under test here;
- PostgreSQL instances name their databases in the `databases` option, so every other
  database on the server is an out-of-scope gap (assertions name the unreadable ones);
- the catalog-unchanged shortcut is only expected where two reads were really the same
  (`pg_roles` is server-wide: another test's CREATE ROLE changes the digest).
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from psycopg import sql

from accountsync.adapters import postgresql
from accountsync.adapters.base import make_scope
from accountsync.adapters.mysql import routine_scope
from accountsync.models import AccountChangeLog, AccountPermission, CoverageGapEpisode, InstanceAccount
from findings.models import Finding
from sync.services import sync_accounts
from tests.live.test_mysql_adapter import Scratch as MariaScratch
from tests.live.test_postgresql_adapter import P, Scratch
from tests.livedb import MARIADB, POSTGRES

pytestmark = [pytest.mark.live, pytest.mark.django_db]

ident = sql.Identifier
MON_PW = "Mon-Pw-e2e-1"


# --- helpers ------------------------------------------------------------------------------------------


@pytest.fixture
def scratch(postgres_admin: Any) -> Iterator[Scratch]:
    s = Scratch(postgres_admin)
    try:
        yield s
    finally:
        s.cleanup()


@pytest.fixture
def maria(mariadb_admin: Any) -> Iterator[MariaScratch]:
    s = MariaScratch(mariadb_admin)
    try:
        yield s
    finally:
        s.cleanup()


def run_sync(instance: Any) -> dict[str, Any]:
    instance.refresh_from_db()
    result = sync_accounts(instance=instance, sync_type="manual_single", force=True)
    assert result["success"], result["message"]
    assert "findings" in result["details"], "the post-sync hooks ran"
    instance.refresh_from_db()
    return result


def unchanged(result: dict[str, Any]) -> bool:
    return bool(result["details"]["inventory"].get("catalog_unchanged"))


def gaps(result: dict[str, Any], kind: str | None = None) -> list[dict[str, Any]]:
    found = result["details"]["coverage"]["gaps"]
    return [g for g in found if kind is None or g["kind"] == kind]


def last_log_id() -> int:
    return AccountChangeLog.objects.order_by("-id").values_list("id", flat=True).first() or 0


def new_rows(instance: Any, mark: int) -> list[AccountChangeLog]:
    return list(AccountChangeLog.objects.filter(instance=instance, id__gt=mark).select_related("account"))


def ours(
    instance: Any, mark: int, identities: set[str], names: tuple[str, ...] = ()
) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """Change-log rows written since `mark` for `identities` (whole diff), plus `public`'s ops on `names`.

    `public` holds CONNECT/TEMPORARY on every database of the shared server, so only its ops
    whose scope names one of this test's (uuid-suffixed) databases are kept.
    """
    rows = []
    for row in new_rows(instance, mark):
        identity = row.account.identity
        if identity in identities:
            rows.append((identity, row.change_type, row.diff))
        elif identity == "public" and names:
            mine = [op for op in row.diff if any(n in op["scope"] for n in names)]
            if mine:
                rows.append((identity, row.change_type, mine))
    return sorted(rows, key=lambda r: r[0])


def empty_diffs(instance: Any, mark: int) -> list[tuple[str, str, str]]:
    """Entries since `mark` that say something changed yet carry no operation.

    Only the diff-based kinds: `removed` (and `added`/`reactivated` of an account without a
    grant) are lifecycle entries whose diff is empty by design, and other tests' roles come
    and go on the shared server between two syncs.
    """
    kinds = ("privileges_changed", "attributes_changed")
    return [
        (r.account.identity, r.change_type, r.summary)
        for r in new_rows(instance, mark)
        if r.change_type in kinds and not r.diff
    ]


def snapshot(instance: Any, identity: str) -> dict[str, Any]:
    return AccountPermission.objects.get(
        account__instance=instance, account__identity=identity, valid_to__isnull=True
    ).snapshot


def open_findings(instance: Any, identity: str, rule: str) -> list[Finding]:
    return list(Finding.objects.filter(instance=instance, account__identity=identity, rule_code=rule, is_open=True))


def grant_op(op: str, scope: str, privilege: str, grantable: bool = False) -> dict[str, Any]:
    value = {"grantable": grantable, "effect": "GRANT"}
    return {
        "op": op,
        "scope": scope,
        "privilege": privilege,
        "old": value if op == "revoke" else None,
        "new": value if op == "grant" else None,
    }


@pytest.fixture
def pg_instance(make_instance, make_credential, scratch: Scratch, unique_prefix: str):
    """An instance read by a fresh monitoring role of this test (LOGIN, no superuser, no other right)."""

    def make(databases: list[str]) -> tuple[Any, str]:
        mon = scratch.role(f"{unique_prefix}_mon", f"LOGIN PASSWORD '{MON_PW}'")
        instance = make_instance(
            "postgresql",
            port=POSTGRES["port"],
            credential=make_credential(name=f"mon-{unique_prefix}", username=mon, password=MON_PW),
            name=f"pg-{unique_prefix}",
            database_name="postgres",
            options={"databases": databases},
        )
        return instance, mon

    return make


def wait_until_passed(scratch: Scratch, until: datetime) -> None:
    """Until the server's clock and this process's clock (the adapter compares with it) are past `until`."""
    while not scratch.run("SELECT now() > %s", (until,))[0][0]:
        time.sleep(0.2)
    while datetime.now(UTC) <= until:
        time.sleep(0.05)


# --- 1. PostgreSQL: CONNECT lost on one database, four syncs -----------------------------------------


def test_postgresql_connect_lost_keeps_the_picture_and_its_return_changes_nothing(
    scratch: Scratch, pg_instance, unique_prefix: str
) -> None:
    p = unique_prefix
    sales = scratch.database(f"nc_sales_{p}")
    shop = scratch.database(f"nc_shop_{p}")
    inst, mon = pg_instance([sales, shop])
    ann = scratch.role(f"ann_{p}", "LOGIN")
    ben = scratch.role(f"ben_{p}", "LOGIN")
    scratch.run("CREATE TABLE public.orders (id int, card text)", db=sales)
    scratch.run(sql.SQL("GRANT SELECT ON public.orders TO {} WITH GRANT OPTION").format(ident(ann)), db=sales)
    scratch.run(sql.SQL("GRANT INSERT ON public.orders TO {}").format(ident(ben)), db=sales)
    scratch.run("CREATE TABLE public.items (id int)", db=shop)
    scratch.run(sql.SQL("GRANT SELECT ON public.items TO {}").format(ident(ben)), db=shop)
    mine = {mon, ann, ben}
    names = (sales, shop)
    sales_scope, orders = make_scope("database", sales), make_scope("object", sales, "public", "orders")
    items = make_scope("object", shop, "public", "items")
    # the monitoring role gets in through PUBLIC's default CONNECT only
    assert scratch.run("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (mon,)) == [(False,)]
    assert scratch.run("SELECT datacl IS NULL FROM pg_database WHERE datname = %s", (sales,)) == [(True,)]

    # sync 1: everything readable
    first = run_sync(inst)
    assert gaps(first, "unreadable") == []
    assert [g for g in gaps(first) if any(n in g["scope"] for n in names)] == []
    assert "unreadable" not in first["message"]
    assert P(orders, "SELECT", True) in snapshot(inst, ann)["privileges"]
    assert "GRANT_ADMIN" in snapshot(inst, ann)["capabilities"]
    assert snapshot(inst, ben)["privileges"] == [P(orders, "INSERT"), P(items, "SELECT")]
    # PUBLIC's default ACL on a new database: CONNECT and TEMPORARY
    public_sales = sorted(x["privilege"] for x in snapshot(inst, "public")["privileges"] if x["scope"] == sales_scope)
    assert public_sales == ["CONNECT", "TEMPORARY"]
    (finding,) = open_findings(inst, ann, "GRANT_OPTION")
    assert f"SELECT on {orders}" in str(finding.detail)
    read_at = inst.last_success_at

    # the monitoring role loses its only way into nc_sales
    scratch.run(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(ident(sales)))
    assert scratch.run("SELECT has_database_privilege(%s, %s, 'CONNECT')", (mon, sales)) == [(False,)]
    assert scratch.run("SELECT has_database_privilege('public', %s, 'TEMPORARY')", (sales,)) == [(True,)]

    # sync 2: completed with a gap; only the server-wide readable change (public's CONNECT) is logged
    mark = last_log_id()
    second = run_sync(inst)
    (gap,) = gaps(second, "unreadable")
    assert (gap["scope"], gap["kind"], gap["inclusive"]) == (sales_scope, "unreadable", False)
    assert gap["reason"].startswith(f'permission denied for database "{sales}"'), gap["reason"]
    assert gap["fix"] == f'GRANT CONNECT ON DATABASE "{sales}" TO "{mon}"'
    assert gap["last_read_at"] == read_at.isoformat()  # "last known at": the first sync's time
    assert [g for g in gaps(second) if any(n in g["scope"] for n in names)] == [gap]
    assert sales_scope in second["details"]["coverage"]["opened"]
    assert "completed with gaps" in second["message"]
    assert f"1 unreadable ({sales_scope})" in second["message"]
    assert not unchanged(second)
    assert ours(inst, mark, mine, names) == [
        ("public", "privileges_changed", [grant_op("revoke", sales_scope, "CONNECT")]),
    ]
    public_sales = sorted(x["privilege"] for x in snapshot(inst, "public")["privileges"] if x["scope"] == sales_scope)
    assert public_sales == ["TEMPORARY"]
    assert P(orders, "SELECT", True) in snapshot(inst, ann)["privileges"]  # last known, kept
    assert "GRANT_ADMIN" in snapshot(inst, ann)["capabilities"]
    assert snapshot(inst, ben)["privileges"] == [P(orders, "INSERT"), P(items, "SELECT")]
    assert [f.pk for f in open_findings(inst, ann, "GRANT_OPTION")] == [finding.pk]
    (episode,) = CoverageGapEpisode.objects.filter(instance=inst, scope=sales_scope)
    assert (episode.kind, episode.closed_at, episode.inclusive) == ("unreadable", None, False)
    assert episode.last_read_at == read_at

    # sync 3: still unreadable; nothing new
    mark = last_log_id()
    third = run_sync(inst)
    assert [g["scope"] for g in gaps(third, "unreadable")] == [sales_scope]
    assert "completed with gaps" in third["message"]
    assert ours(inst, mark, mine, names) == []
    assert list(CoverageGapEpisode.objects.filter(instance=inst, scope=sales_scope)) == [episode]
    assert CoverageGapEpisode.objects.get(pk=episode.pk).closed_at is None
    assert P(orders, "SELECT", True) in snapshot(inst, ann)["privileges"]
    assert [f.pk for f in open_findings(inst, ann, "GRANT_OPTION")] == [finding.pk]

    # the monitoring role alone gets CONNECT back (PUBLIC does not)
    scratch.run(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(ident(sales), ident(mon)))

    # sync 4: readable again; only the monitoring role's own new grant is a change
    mark = last_log_id()
    fourth = run_sync(inst)
    assert gaps(fourth, "unreadable") == []
    assert [g for g in gaps(fourth) if any(n in g["scope"] for n in names)] == []
    assert sales_scope in fourth["details"]["coverage"]["closed"]
    assert "unreadable" not in fourth["message"]
    episode.refresh_from_db()
    assert episode.closed_at is not None
    assert CoverageGapEpisode.objects.filter(instance=inst, scope=sales_scope).count() == 1
    assert ours(inst, mark, mine, names) == [
        (mon, "privileges_changed", [grant_op("grant", sales_scope, "CONNECT")]),
    ]
    assert P(orders, "SELECT", True) in snapshot(inst, ann)["privileges"]
    assert snapshot(inst, ben)["privileges"] == [P(orders, "INSERT"), P(items, "SELECT")]
    all_grant_option = Finding.objects.filter(instance=inst, account__identity=ann, rule_code="GRANT_OPTION")
    assert [(f.pk, f.is_open, f.resolved_at) for f in all_grant_option] == [(finding.pk, True, None)]
    assert Finding.objects.get(pk=finding.pk).first_seen_at == finding.first_seen_at


# --- 2. MariaDB: mysql.procs_priv unreadable ------------------------------------------------------


GRANT_TABLES = ("user", "global_priv", "db", "tables_priv", "columns_priv", "proxies_priv", "roles_mapping")


def test_mariadb_procs_priv_unreadable_keeps_routine_grants(
    maria: MariaScratch, make_instance, make_credential, unique_prefix: str
) -> None:
    p = unique_prefix
    mon = maria.user(f"{p}_mon", "%", f"IDENTIFIED BY '{MON_PW}'")
    for table in (*GRANT_TABLES, "procs_priv"):
        maria.run(f"GRANT SELECT ON mysql.{table} TO %s@'%%'", (f"{p}_mon",))
    db = maria.database(f"{p}_r")
    maria.run(f"CREATE PROCEDURE `{db}`.`refresh`() SELECT 1")
    user = maria.user(f"{p}_x", "%", "IDENTIFIED BY 'X-Pw-1'")
    maria.run(f"GRANT EXECUTE ON PROCEDURE `{db}`.`refresh` TO %s@'%%'", (f"{p}_x",))
    routine = routine_scope(db, "refresh", "PROCEDURE")
    procs = make_scope("object", "mysql", "procs_priv")
    inst = make_instance(
        "mysql",
        port=MARIADB["port"],
        credential=make_credential(name=f"mon-{p}", username=f"{p}_mon", password=MON_PW),
        name=f"maria-{p}",
    )

    first = run_sync(inst)
    assert gaps(first) == []
    assert "completed with gaps" not in first["message"]
    assert P(routine, "EXECUTE") in snapshot(inst, user)["privileges"]

    maria.run("REVOKE SELECT ON mysql.procs_priv FROM %s@'%%'", (f"{p}_mon",))
    mark = last_log_id()
    second = run_sync(inst)
    (gap,) = gaps(second)
    assert (gap["scope"], gap["kind"], gap["inclusive"]) == ("routine", "unreadable", True)
    assert "procs_priv" in gap["reason"]
    assert gap["fix"] == f"GRANT SELECT ON mysql.procs_priv TO '{p}_mon'@'%'"
    assert "completed with gaps" in second["message"]
    # the monitoring account's own revoke is read (tables_priv); nothing of the user's routine grant is
    assert ours(inst, mark, {mon, user}) == [(mon, "privileges_changed", [grant_op("revoke", procs, "SELECT")])]
    assert P(routine, "EXECUTE") in snapshot(inst, user)["privileges"]
    (episode,) = CoverageGapEpisode.objects.filter(instance=inst, scope="routine")
    assert (episode.kind, episode.closed_at) == ("unreadable", None)

    maria.run("GRANT SELECT ON mysql.procs_priv TO %s@'%%'", (f"{p}_mon",))
    mark = last_log_id()
    third = run_sync(inst)
    assert gaps(third) == []
    assert third["details"]["coverage"]["closed"] == ["routine"]
    assert ours(inst, mark, {mon, user}) == [(mon, "privileges_changed", [grant_op("grant", procs, "SELECT")])]
    assert P(routine, "EXECUTE") in snapshot(inst, user)["privileges"]
    episode.refresh_from_db()
    assert episode.closed_at is not None
    assert CoverageGapEpisode.objects.filter(instance=inst, scope="routine").count() == 1


# --- 3. PostgreSQL: VALID UNTIL passes between two syncs ---------------------------------------------


def test_postgresql_valid_until_passing_opens_password_expired_through_the_shortcut(
    scratch: Scratch, pg_instance, unique_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two syncs before the moment (the second one skips the apply), one after: a full apply, EXPIRED.

    Why the rows are watched: pg_roles and pg_database are server-wide, so another test's CREATE
    ROLE also makes the shortcut miss. When the read after the moment differs from the shortcut's,
    its full apply proves nothing about time, so the scenario is retried (bounded); if the shared
    server never stands still long enough, what time alone does is left unproven (a warning) and
    the rest is asserted.
    """
    db = scratch.database(f"{unique_prefix}_t")
    inst, _mon = pg_instance([db])
    soon = scratch.role(f"{unique_prefix}_soon", "LOGIN PASSWORD 'Soon-Pw-1'")
    reads: list[str] = []
    real_read = postgresql.read_rows

    def watched(target: Any) -> Any:
        rows, count = real_read(target)
        reads.append(hashlib.sha256(repr(rows).encode("utf-8", "surrogatepass")).hexdigest())
        return rows, count

    monkeypatch.setattr(postgresql, "read_rows", watched)

    def still_ahead(until: datetime) -> bool:
        return bool(scratch.run("SELECT now() < %s", (until,))[0][0])

    def expired_and_reported(until: datetime) -> None:
        snap = snapshot(inst, soon)
        assert "EXPIRED" in snap["capabilities"]
        assert snap["attributes"]["valid_until"] == until.astimezone(UTC).isoformat()
        (finding,) = open_findings(inst, soon, "PASSWORD_EXPIRED")
        assert finding.detail == {"valid_until": snap["attributes"]["valid_until"]}

    margin, proved = 3, False
    for _attempt in range(6):
        (until,) = scratch.run(sql.SQL("SELECT now() + make_interval(secs => {})").format(sql.Literal(margin)))[0]
        scratch.run(sql.SQL("ALTER ROLE {} VALID UNTIL {}").format(ident(soon), sql.Literal(until.isoformat())))
        first = run_sync(inst)
        assert not unchanged(first)
        shortcut: dict[str, Any] | None = None
        for _ in range(5):  # until two reads in a row are the same, while the moment is still ahead
            again = run_sync(inst)
            if not still_ahead(until):
                margin = min(margin * 2, 30)  # the moment came first: a longer run-up (no timed assertion)
                break
            if unchanged(again):
                shortcut = again
                break
        if shortcut is None:
            continue  # the moment passed, or the shared server never read the same twice: again
        assert shortcut["details"]["inventory"]["catalog_unchanged"] is True
        assert "EXPIRED" not in snapshot(inst, soon)["capabilities"]
        assert open_findings(inst, soon, "PASSWORD_EXPIRED") == []
        before_moment = reads[-1]

        wait_until_passed(scratch, until)
        after = run_sync(inst)

        assert after["details"]["inventory"].get("catalog_unchanged") in (None, False)
        expired_and_reported(until)
        if reads[-1] == before_moment:
            proved = True  # the rows were the same as the shortcut's: time alone made it a full apply
            break
    if not proved:
        wait_until_passed(scratch, until)
        run_sync(inst)
        expired_and_reported(until)
        warnings.warn(
            "the shared PostgreSQL server changed between the syncs of every attempt: the expiry and its "
            "finding were seen, but that time alone defeats the catalog-unchanged shortcut was not isolated",
            stacklevel=1,
        )


# --- 4. PostgreSQL: VALID UNTIL 'infinity' ------------------------------------------------------------


def test_postgresql_valid_until_infinity_syncs_and_never_expires(
    scratch: Scratch, pg_instance, unique_prefix: str
) -> None:
    db = scratch.database(f"{unique_prefix}_inf")
    inst, _mon = pg_instance([db])
    role = scratch.role(f"{unique_prefix}_inf", "LOGIN PASSWORD 'Inf-Pw-1'")
    scratch.run(sql.SQL("ALTER ROLE {} VALID UNTIL 'infinity'").format(ident(role)))

    run_sync(inst)

    snap = snapshot(inst, role)
    assert snap["attributes"]["valid_until"] == "infinity"
    assert InstanceAccount.objects.get(instance=inst, identity=role).attributes["valid_until"] == "infinity"
    assert "EXPIRED" not in snap["capabilities"]
    assert open_findings(inst, role, "PASSWORD_EXPIRED") == []
    assert [(identity, kind) for identity, kind, _diff in ours(inst, 0, {role})] == [(role, "added")]
    run_sync(inst)  # and the next sync too (shortcut or not)
    assert snapshot(inst, role) == snap
    assert open_findings(inst, role, "PASSWORD_EXPIRED") == []


# --- 5. PostgreSQL: one privilege from two grantors ---------------------------------------------------


def test_postgresql_privilege_from_two_grantors_one_entry_and_no_empty_diff(
    scratch: Scratch, pg_instance, unique_prefix: str
) -> None:
    p = unique_prefix
    db = scratch.database(f"{p}_gr")
    inst, mon = pg_instance([db])
    a = scratch.role(f"{p}_a", "NOLOGIN")
    b = scratch.role(f"{p}_b", "LOGIN PASSWORD 'B-Pw-1'")
    scratch.run("CREATE TABLE public.t (id int)", db=db)
    table = make_scope("object", db, "public", "t")

    def as_a(statement: str) -> None:
        scratch.run(sql.SQL("SET ROLE {}").format(ident(a)), db=db)
        try:
            scratch.run(sql.SQL(statement).format(ident(b)), db=db)
        finally:
            scratch.run("RESET ROLE", db=db)

    scratch.run(sql.SQL("GRANT SELECT ON public.t TO {} WITH GRANT OPTION").format(ident(a)), db=db)
    scratch.run(sql.SQL("GRANT SELECT ON public.t TO {}").format(ident(b)), db=db)  # b=r/postgres
    as_a("GRANT SELECT ON public.t TO {} WITH GRANT OPTION")  # b=r*/a
    (acl,) = scratch.run("SELECT relacl::text FROM pg_class WHERE oid = 'public.t'::regclass", db=db)[0]
    assert f"{b}=r/postgres" in acl and f"{b}=r*/{a}" in acl, acl

    run_sync(inst)
    both = snapshot(inst, b)
    assert [x for x in both["privileges"] if x["scope"] == table] == [P(table, "SELECT", True)]
    assert "GRANT_ADMIN" in both["capabilities"]

    # the plain copy goes and comes back while the grantable one stays: nothing changed for b
    for statement in ("REVOKE SELECT ON public.t FROM {}", "GRANT SELECT ON public.t TO {}"):
        scratch.run(sql.SQL(statement).format(ident(b)), db=db)
        mark = last_log_id()
        run_sync(inst)
        assert ours(inst, mark, {a, b, mon}) == []
        assert snapshot(inst, b) == both
        assert empty_diffs(inst, mark) == []
    (acl,) = scratch.run("SELECT relacl::text FROM pg_class WHERE oid = 'public.t'::regclass", db=db)[0]
    assert f"{b}=r/postgres" in acl and f"{b}=r*/{a}" in acl, acl

    as_a("REVOKE SELECT ON public.t FROM {}")  # a's grantable copy goes; the owner's plain one stays
    mark = last_log_id()
    second = run_sync(inst)

    assert not unchanged(second)
    # one entry for b: the grant option went, SELECT stays (never a revoke, never an empty diff)
    assert ours(inst, mark, {a, b, mon}) == [
        (
            b,
            "privileges_changed",
            [
                {
                    "op": "set",
                    "scope": table,
                    "privilege": "SELECT",
                    "old": {"grantable": True, "effect": "GRANT"},
                    "new": {"grantable": False, "effect": "GRANT"},
                },
                {"op": "set", "scope": "capability", "field": "GRANT_ADMIN", "old": True, "new": False},
            ],
        )
    ]
    assert [x for x in snapshot(inst, b)["privileges"] if x["scope"] == table] == [P(table, "SELECT", False)]
    assert "GRANT_ADMIN" not in snapshot(inst, b)["capabilities"]
    assert empty_diffs(inst, mark) == []
