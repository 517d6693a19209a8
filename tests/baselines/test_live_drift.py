"""Live: drift on real servers, through the real sync entry point and its post-sync hooks.

For MariaDB and PostgreSQL: a uniquely named user gets real grants, a real sync stores its
snapshot, its current access is approved as the account's baseline; an extra GRANT and a sync
open a DRIFT finding with exactly that delta (with the role path where the grant reaches the
user through a role), REVOKE and a sync close it; a GRANT again and approving again close it too.
The servers are shared with other tests: names carry a uuid prefix, everything is dropped after,
syncs are forced (another test's dropped users must not trip the mass-removal guard), and the
assertions look only at this test's accounts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from psycopg import sql

from accountsync.adapters.base import make_scope
from accountsync.models import InstanceAccount
from baselines.services import baseline_approve
from findings.models import Finding
from sync.services import sync_accounts
from tests.live.test_mysql_adapter import Scratch as MariaScratch
from tests.live.test_postgresql_adapter import Scratch as PgScratch
from tests.livedb import MARIADB, POSTGRES

pytestmark = [pytest.mark.live, pytest.mark.django_db]


@pytest.fixture
def maria(mariadb_admin: Any) -> Iterator[MariaScratch]:
    s = MariaScratch(mariadb_admin)
    try:
        yield s
    finally:
        s.cleanup()


@pytest.fixture
def pgs(postgres_admin: Any) -> Iterator[PgScratch]:
    s = PgScratch(postgres_admin)
    try:
        yield s
    finally:
        s.cleanup()


def run_sync(instance: Any) -> dict[str, Any]:
    instance.refresh_from_db()
    result = sync_accounts(instance=instance, sync_type="manual_single", force=True)
    assert result["success"], result["message"]
    assert "baselines" in result["details"], "the baselines hook ran"
    return result


def open_drift(account: InstanceAccount) -> list[Finding]:
    return list(Finding.objects.filter(account=account, rule_code="DRIFT", is_open=True))


def one_drift(account: InstanceAccount) -> dict[str, Any]:
    (finding,) = open_drift(account)
    assert finding.severity == "high"
    return finding.detail


def test_mariadb_grant_opens_drift_revoke_closes_it_approval_closes_it(
    maria: MariaScratch, make_instance, make_credential, unique_prefix: str, alice
) -> None:
    p = unique_prefix
    db = maria.database(f"{p}_bl")
    maria.run(f"CREATE TABLE `{db}`.`orders` (id int)")
    identity = maria.user(f"{p}_app", "%", "IDENTIFIED BY 'App-Pw-1'")
    maria.run(f"GRANT SELECT ON `{db}`.`orders` TO %s@'%%'", (f"{p}_app",))
    instance = make_instance(
        "mysql",
        port=MARIADB["port"],
        credential=make_credential(name=f"root-{p}", username="root", password=""),
        name=f"maria-{p}",
    )
    run_sync(instance)
    account = InstanceAccount.objects.get(instance=instance, identity=identity)
    orders = make_scope("object", db, "orders")
    version = baseline_approve(kind="account", subject=account, comment="app reads orders", user=alice)
    assert version.entries.get().access["grants"] == [[orders, "SELECT", "GRANT", False, []]]
    assert open_drift(account) == []

    # an extra GRANT, then a sync: drift with exactly that delta
    maria.run(f"GRANT INSERT ON `{db}`.`orders` TO %s@'%%'", (f"{p}_app",))
    run_sync(instance)
    detail = one_drift(account)
    assert detail["added"] == [{"scope": orders, "privilege": "INSERT", "grantable": False, "via": []}]
    assert (detail["missing"], detail["added_roles"], detail["missing_roles"]) == ([], [], [])
    assert (detail["baseline"]["id"], detail["baseline"]["version"]) == (version.baseline_id, 1)

    # REVOKE, then a sync: closed
    maria.run(f"REVOKE INSERT ON `{db}`.`orders` FROM %s@'%%'", (f"{p}_app",))
    run_sync(instance)
    assert open_drift(account) == []
    assert Finding.objects.get(account=account, rule_code="DRIFT").resolved_at is not None

    # GRANT again (now with the grant option on SELECT too): open; approving again closes it
    maria.run(f"GRANT INSERT ON `{db}`.`orders` TO %s@'%%'", (f"{p}_app",))
    maria.run(f"GRANT SELECT ON `{db}`.`orders` TO %s@'%%' WITH GRANT OPTION", (f"{p}_app",))
    run_sync(instance)
    detail = one_drift(account)
    assert {(a["privilege"], a["grantable"], a.get("grant_option", False)) for a in detail["added"]} == {
        ("INSERT", True, False),  # MySQL's grant option covers every privilege at that level
        ("SELECT", True, True),
    }
    again = baseline_approve(kind="account", subject=account, comment="INSERT approved in CHG-12", user=alice)
    assert again.version == 2
    assert open_drift(account) == []
    run_sync(instance)
    assert open_drift(account) == []  # and stays closed on the next sync


def test_postgresql_role_path_drift_through_real_syncs(
    pgs: PgScratch, make_instance, make_credential, unique_prefix: str, alice
) -> None:
    p = unique_prefix
    db = pgs.database(f"{p}_bl")
    role = pgs.role(f"{p}_readers")
    user = pgs.role(f"{p}_ann", "LOGIN PASSWORD 'Ann-Pw-1'")
    pgs.run("CREATE TABLE public.orders (id int)", db=db)
    pgs.run(sql.SQL("GRANT SELECT ON public.orders TO {}").format(sql.Identifier(role)), db=db)
    pgs.run(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(user)))
    instance = make_instance(
        "postgresql",
        port=POSTGRES["port"],
        credential=make_credential(name=f"pg-{p}", username="postgres", password=""),
        name=f"pg-{p}",
        database_name="postgres",
        options={"databases": [db]},
    )
    run_sync(instance)
    account = InstanceAccount.objects.get(instance=instance, identity=user)
    orders = make_scope("object", db, "public", "orders")
    version = baseline_approve(kind="account", subject=account, comment="ann reads orders via readers", user=alice)
    access = version.entries.get().access
    assert [orders, "SELECT", "GRANT", False, [role]] in access["grants"]
    assert access["roles"] == [[role, False]]

    # the role gets INSERT: ann drifts, and the delta names the path
    pgs.run(sql.SQL("GRANT INSERT ON public.orders TO {}").format(sql.Identifier(role)), db=db)
    run_sync(instance)
    detail = one_drift(account)
    assert detail["added"] == [{"scope": orders, "privilege": "INSERT", "grantable": False, "via": [role]}]
    assert detail["missing"] == []
    assert detail["lines"] == [f"+ INSERT on {orders} (via {role})"]

    pgs.run(sql.SQL("REVOKE INSERT ON public.orders FROM {}").format(sql.Identifier(role)), db=db)
    run_sync(instance)
    assert open_drift(account) == []

    # short of the baseline: the membership is revoked
    pgs.run(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(role), sql.Identifier(user)))
    run_sync(instance)
    detail = one_drift(account)
    assert detail["missing_roles"] == [{"role": role, "admin_option": False}]
    assert {"scope": orders, "privilege": "SELECT", "grantable": False, "via": [role]} in detail["missing"]
    assert detail["added"] == []

    # restored, then a direct GRANT: open again; approving again closes it
    pgs.run(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(user)))
    pgs.run(sql.SQL("GRANT UPDATE ON public.orders TO {}").format(sql.Identifier(user)), db=db)
    run_sync(instance)
    detail = one_drift(account)
    assert detail["added"] == [{"scope": orders, "privilege": "UPDATE", "grantable": False, "via": []}]
    assert detail["missing"] == [] and detail["missing_roles"] == []
    baseline_approve(kind="account", subject=account, comment="UPDATE approved", user=alice)
    assert open_drift(account) == []
    run_sync(instance)
    assert open_drift(account) == []
